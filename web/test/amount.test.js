// The amount rule against the vectors shared with the wallet's parser
// (crates/cercle-core/amount_vectors.json), and formatting in both languages.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { AmountError, formatAmount, parseAmount } from "../src/amount.js";

const { vectors } = JSON.parse(readFileSync(new URL("../../crates/cercle-core/amount_vectors.json", import.meta.url)));

function check(text, exponent, lang, expected) {
  let got;
  try {
    got = parseAmount(text, exponent, lang).toString();
  } catch (e) {
    assert.ok(e instanceof AmountError, `${text}: ${e}`);
    got = { error: e.kind };
  }
  assert.deepEqual(got, expected, `${JSON.stringify(text)} (exponent ${exponent}, ${lang})`);
}

test("amounts as the wallet reads them (en) and with the French decimal comma (fr)", () => {
  assert.ok(vectors.length > 40);
  for (const v of vectors) {
    check(v.text, v.exponent, "en", v.en);
    check(v.text, v.exponent, "fr", v.fr);
  }
});

test("an amount formatted in either language reads back the same, or is refused as ambiguous", () => {
  for (const minor of [125050n, 100000000n, 9223372036854775807n]) {
    for (const lang of ["en", "fr"]) {
      const text = formatAmount(minor, 2, lang);
      assert.equal(parseAmount(text, 2, lang), minor, text);
    }
  }
  // Below a thousand, French writes a lone comma: `125,50` could be 125.50 or 12550, so it
  // is refused with both readings, in French as in the wallet; never read a hundred times off.
  assert.throws(() => parseAmount(formatAmount(12550n, 2, "fr"), 2, "fr"), (e) => e.kind === "Ambiguous");
  assert.equal(parseAmount(formatAmount(12550n, 2, "en"), 2, "en"), 12550n);
  assert.equal(formatAmount(-125050n, 2, "en"), "-1,250.50");
  assert.equal(formatAmount(-125050n, 2, "fr"), "-1\u202f250,50");
});
