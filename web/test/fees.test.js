// The transfer levy the pay confirmation shows, against the vectors the core is held to
// (levy_vectors.json: tests/tests/web.rs runs `FeeSchedule::levy` on the same), so the
// browser shows before signing exactly what the ledger will charge.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { levy, levyMinor } from "../src/fees.js";

const { vectors } = JSON.parse(readFileSync(new URL("./levy_vectors.json", import.meta.url)));

function check(v) {
  const fees = { account: v.fee_account, transferLevyBp: v.transfer_levy_bp, levyOn: v.levy_on };
  const got = levy(fees, v.payer, v.payee, BigInt(v.amount_minor));
  const expected = { payerMinor: BigInt(v.payer_minor), payeeMinor: BigInt(v.payee_minor) };
  assert.deepEqual(got, { ...expected, totalMinor: expected.payerMinor + expected.payeeMinor }, v.note);
}

test("the levy is the core's: half up, the odd unit of a split on the payer, none to or from the fee account", () => {
  assert.ok(vectors.length >= 15);
  for (const v of vectors) check(v);
});

test("no schedule, no levy; the rounding is exact far beyond a float's precision", () => {
  assert.deepEqual(levy(undefined, "a-firm", "b-firm", 100_000n), { payerMinor: 0n, payeeMinor: 0n, totalMinor: 0n });
  // 2^53 + 1 minor units at 1 bp: a float would lose the last unit before rounding.
  assert.equal(levyMinor(2n ** 53n * 10_000n + 5_000n, 1), 2n ** 53n + 1n);
  assert.equal(levyMinor(2n ** 53n * 10_000n + 4_999n, 1), 2n ** 53n);
  assert.throws(() => levy({ account: "association", transferLevyBp: 5, levyOn: "nobody" }, "a-firm", "b-firm", 100n));
});
