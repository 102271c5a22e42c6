// The account's keys as the keys page reads and changes them (web/src/accountkeys.js): a
// pasted public key, a payer's caps, the AddKey and RemoveKey operations encoded as the
// wallet's, and what a payer paid on the ledger's day.
import { test } from "node:test";
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { AccountKeyRole, OperationBodySchema } from "../src/gen/cercle/v1/operation_pb.js";
import { AmountError } from "../src/amount.js";
import { addKeyOperation, isLastOwner, KeyFormError, ledgerDay, paidOn, parsePublicKey, payerCaps, removeKeyOperation, shortKey } from "../src/accountkeys.js";
import { toHex } from "../src/keys.js";
import { MESSAGES } from "../src/i18n.js";

const HEX = "4be0a1c2d3e4f5061728394a5b6c7d8e9fa0b1c2d3e4f5061728394a5b6c77f3";

/** `parsePublicKey(text)` gives `expected`: the key in hex, or `{ error, params }`. */
function checkKey(text, expected) {
  let got;
  try {
    got = toHex(parsePublicKey(text));
  } catch (e) {
    assert.ok(e instanceof KeyFormError, `${JSON.stringify(text)}: ${e}`);
    got = { error: e.kind, params: e.params };
  }
  assert.deepEqual(got, expected, JSON.stringify(text));
}

test("a pasted public key: 64 hex digits, and what is wrong otherwise", () => {
  checkKey(HEX, HEX);
  checkKey(` ${HEX.toUpperCase()}\n`, HEX);
  // Groups or a wrapped line, as copied from a page or read aloud.
  checkKey(HEX.match(/.{16}/g).join(" "), HEX);
  checkKey(`${HEX.slice(0, 32)}\n${HEX.slice(32)}`, HEX);
  checkKey("", { error: "pubkeyEmpty", params: {} });
  checkKey("   ", { error: "pubkeyEmpty", params: {} });
  checkKey(HEX.slice(0, 63), { error: "pubkeyLength", params: { given: 63 } });
  checkKey(`${HEX}00`, { error: "pubkeyLength", params: { given: 66 } });
  checkKey(`${HEX.slice(0, 10)}g${HEX.slice(11)}`, { error: "pubkeyNotHex", params: { char: "g", position: 11 } });
  checkKey(`0x${HEX}`, { error: "pubkeyNotHex", params: { char: "x", position: 2 } });
  // A secret key file is never what to paste: said so, not "not hex".
  checkKey(`cercle-ed25519-secret-key-v1\n${HEX}\n# public key: ${HEX}\n`, { error: "pubkeySecret", params: {} });
  for (const kind of ["pubkeyEmpty", "pubkeySecret", "pubkeyNotHex", "pubkeyLength", "capZero", "capOrder"]) {
    for (const [lang, messages] of Object.entries(MESSAGES)) assert.ok(messages[`keys.${kind}`], `keys.${kind} in ${lang}`);
  }
});

test("a shortened key keeps its ends", () => {
  assert.equal(shortKey(HEX), "4be0a1c2…77f3");
});

/** `payerCaps(form)` at exponent 2 gives `expected`: the caps, or the refusal. */
function checkCaps(form, lang, expected) {
  let got;
  try {
    const caps = payerCaps(form, 2, lang);
    got = [caps.perTransferMinor, caps.dailyMinor];
  } catch (e) {
    if (e instanceof AmountError) got = { amount: e.kind, field: e.field };
    else if (e instanceof KeyFormError) got = { error: e.kind, params: e.params };
    else throw e;
  }
  assert.deepEqual(got, expected, `${JSON.stringify(form)} (${lang})`);
}

test("a payer's caps are amounts as the app reads them, positive, a payment within the day", () => {
  checkCaps({ perTransfer: "500", daily: "2,000.00" }, "en", [50_000n, 200_000n]);
  checkCaps({ perTransfer: "500", daily: "2000" }, "en", [50_000n, 200_000n]);
  checkCaps({ perTransfer: "500", daily: "2 000,50" }, "fr", [50_000n, 200_050n]);
  checkCaps({ perTransfer: "50", daily: "50" }, "en", [5_000n, 5_000n]);
  // An amount that reads two ways is refused, naming the field.
  checkCaps({ perTransfer: "10,00", daily: "200" }, "en", { amount: "Ambiguous", field: "perTransfer" });
  checkCaps({ perTransfer: "10", daily: "125,50" }, "fr", { amount: "Ambiguous", field: "daily" });
  checkCaps({ perTransfer: "10", daily: "2,000" }, "en", { amount: "Ambiguous", field: "daily" });
  checkCaps({ perTransfer: "10", daily: "" }, "en", { amount: "Empty", field: "daily" });
  checkCaps({ perTransfer: "-5", daily: "10" }, "en", { amount: "Signed", field: "perTransfer" });
  // Zero is `--require-approval`'s, said as such.
  checkCaps({ perTransfer: "0", daily: "10" }, "en", { error: "capZero", params: { field: "perTransfer" } });
  checkCaps({ perTransfer: "0.00", daily: "0" }, "en", { error: "capZero", params: { field: "perTransfer" } });
  checkCaps({ perTransfer: "500", daily: "200" }, "en", { error: "capOrder", params: { perTransferMinor: 50_000n, dailyMinor: 20_000n } });
  // Every payment needs approval: caps of zero, whatever the fields hold.
  checkCaps({ perTransfer: "10,00", daily: "", requireApproval: true }, "en", [0n, 0n]);
});

/** The body the operation encodes to, decoded again: what the node will read. */
function roundTrip(kind) {
  const body = toBinary(OperationBodySchema, create(OperationBodySchema, { operationId: new Uint8Array(16), validUntilMs: 1n, kind }));
  return fromBinary(OperationBodySchema, body).kind;
}

test("AddKey and RemoveKey as the wallet signs them", () => {
  const publicKey = parsePublicKey(HEX);
  const payer = roundTrip(addKeyOperation({ account: "alice-bakery", publicKey, role: "payer", caps: { perTransferMinor: 50_000n, dailyMinor: 200_000n } }));
  assert.equal(payer.case, "addKey");
  assert.equal(payer.value.account, "alice-bakery");
  assert.equal(toHex(payer.value.publicKey), HEX);
  assert.equal(payer.value.role, AccountKeyRole.PAYER);
  assert.equal(payer.value.perTransferCapMinor, 50_000n);
  assert.equal(payer.value.dailyCapMinor, 200_000n);
  assert.equal(payer.value.allowSharedKey, false);
  // `--require-approval`: both caps present, zero (absent caps would be refused for a payer).
  const approval = roundTrip(addKeyOperation({ account: "alice-bakery", publicKey, role: "payer", caps: { perTransferMinor: 0n, dailyMinor: 0n } }));
  assert.equal(approval.value.perTransferCapMinor, 0n);
  assert.equal(approval.value.dailyCapMinor, 0n);
  // Any other role has no caps; sharing is the owner's choice.
  for (const [role, value] of [["owner", AccountKeyRole.OWNER], ["invoicer", AccountKeyRole.INVOICER], ["viewer", AccountKeyRole.VIEWER]]) {
    const op = roundTrip(addKeyOperation({ account: "alice-bakery", publicKey, role, allowSharedKey: true }));
    assert.equal(op.value.role, value, role);
    assert.equal(op.value.perTransferCapMinor, undefined, role);
    assert.equal(op.value.dailyCapMinor, undefined, role);
    assert.equal(op.value.allowSharedKey, true, role);
  }
  assert.throws(() => addKeyOperation({ account: "a-b-c", publicKey, role: "payer" }));
  assert.throws(() => addKeyOperation({ account: "a-b-c", publicKey, role: "viewer", caps: { perTransferMinor: 1n, dailyMinor: 1n } }));
  assert.throws(() => addKeyOperation({ account: "a-b-c", publicKey, role: "boss" }));
  const removal = roundTrip(removeKeyOperation("alice-bakery", publicKey));
  assert.equal(removal.case, "removeKey");
  assert.equal(removal.value.account, "alice-bakery");
  assert.equal(toHex(removal.value.publicKey), HEX);
});

test("what a payer paid counts on the ledger day it paid only", () => {
  // 2026-11-30T23:30:00Z: the 30th in UTC, the 1st of December at +01:00.
  const ms = Date.UTC(2026, 10, 30, 23, 30);
  const utcDay = BigInt(Math.floor(ms / 86_400_000));
  assert.equal(ledgerDay(0, ms), utcDay);
  assert.equal(ledgerDay(60, ms), utcDay + 1n);
  assert.equal(ledgerDay(-330, Date.UTC(2026, 10, 30, 2, 0)), utcDay - 1n);
  assert.equal(ledgerDay(0, 0), 0n);
  const key = { day: utcDay, spentMinor: 12_345n };
  assert.equal(paidOn(key, utcDay), 12_345n);
  assert.equal(paidOn(key, utcDay + 1n), 0n);
  assert.equal(paidOn({ day: 0n, spentMinor: 0n }, utcDay), 0n);
});

test("the last owner key is the only owner's", () => {
  const key = (hex, role) => ({ publicKey: parsePublicKey(hex), role });
  const other = HEX.replace(/^4b/, "5c");
  assert.ok(isLastOwner([key(HEX, "owner"), key(other, "payer")], HEX));
  assert.ok(!isLastOwner([key(HEX, "owner"), key(other, "payer")], other));
  assert.ok(!isLastOwner([key(HEX, "owner"), key(other, "owner")], HEX));
});
