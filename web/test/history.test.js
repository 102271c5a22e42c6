// The history's rows from entries shaped as the node sends them (the generated types): each
// row's amount is what the entry moved the account's balance by, the levy named on a
// levied payment, the fee account's levies and periodic charges shown as received, a
// charge, a clearing run and a write-off with the amount they moved (web/src/history.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { OperationBodySchema } from "../src/gen/cercle/v1/operation_pb.js";
import { describeEntries, KIND_KEYS } from "../src/history.js";
import { MESSAGES } from "../src/i18n.js";

/** The core's codec, big-endian (`cercle_core::codec::Writer`), to build section parts. */
class Writer {
  constructor() {
    this.bytes = [];
  }
  n(size, value) {
    const view = new DataView(new ArrayBuffer(size));
    if (size === 8) view.setBigInt64(0, BigInt(value));
    else if (size === 4) view.setUint32(0, value);
    else if (size === 2) view.setUint16(0, value);
    else view.setUint8(0, value);
    this.bytes.push(...new Uint8Array(view.buffer));
    return this;
  }
  str(text) {
    const b = new TextEncoder().encode(text);
    this.n(4, b.length);
    this.bytes.push(...b);
    return this;
  }
  done() {
    return new Uint8Array(this.bytes);
  }
}

// `charges::FirmCharge::encode`, `ChargeRecord::header` and `clearing::FirmPart::encode`.
const chargePart = (account, membership, balanceAfter, notCharged = 0) => {
  const w = new Writer().n(1, 1).str(account).n(8, membership).n(8, 0).n(1, notCharged);
  if (notCharged === 1) w.n(8, balanceAfter - membership).n(8, 100_000);
  return w.n(8, balanceAfter).done();
};
const chargeHeader = (feeAccount, feeBalanceAfter, firms, charged) =>
  new Writer().n(1, 1).n(2, 2026).n(1, 11).str(feeAccount).n(8, feeBalanceAfter).n(4, firms).n(8, charged).n(8, 0).done();
const clearingPart = (account, payment, balanceAfter) =>
  new Writer().str(account).n(8, 0).n(8, 0).n(8, payment).n(1, 1).n(1, 1).n(8, balanceAfter).n(4, 0).done();

let sequence = 0n;
/** An entry as ListEntries gives it: the signed body, the balances, the shown parts. */
function entry(kind, balances = {}, sections = []) {
  sequence += 1n;
  const body = toBinary(OperationBodySchema, create(OperationBodySchema, { operationId: new Uint8Array(16), kind }));
  return {
    sequence,
    timestampMs: 1_700_000_000_000n + sequence,
    envelope: { body },
    balancesAfter: Object.entries(balances).map(([account, minor]) => ({ account, balanceMinor: BigInt(minor) })),
    sections: sections.map(({ tag, parts }) => ({ tag, partCount: parts.length, parts })),
  };
}

const pay = (payer, payee, amountMinor, memo = "") => ({ case: "transfer", value: { payer, payee, amountMinor: BigInt(amountMinor), memo } });

// alice pays bob 125.50 before any fee; then 80.00 under a 1% levy, split (0.40 each);
// her clerk's 60.00 is held, then approved under a 1% levy on the payer (0.60); November's
// fees charge her 50.00 (bob is not charged: his credit limit); a clearing run with credit
// takes 10.00 from her.
const ledger = [
  entry({ case: "registerAccount", value: { account: "alice-bakery" } }),
  entry(pay("alice-bakery", "bob-mill", 12_550, "flour"), { "alice-bakery": -12_550, "bob-mill": 12_550 }),
  entry({ case: "setFees", value: { account: "association", transferLevyBp: 100, levyOn: 3, reason: "budget 2027" } }),
  entry(pay("alice-bakery", "bob-mill", 8_000, "rye"), { "alice-bakery": -20_590, "bob-mill": 20_510, association: 80 }),
  entry(pay("alice-bakery", "bob-mill", 6_000, "oven repair")),
  entry({ case: "approvePending", value: { account: "alice-bakery", pendingId: 5n, payee: "bob-mill", amountMinor: 6_000n } }, { "alice-bakery": -26_650, "bob-mill": 26_510, association: 140 }),
  entry({ case: "chargeFees", value: { period: "2026-11" } }, {}, [
    { tag: 3, parts: [{ index: 0, data: chargeHeader("association", 5_140, 2, 5_000) }, { index: 1, data: chargePart("alice-bakery", 5_000, -31_650) }, { index: 2, data: chargePart("bob-mill", 5_000, 26_510, 1) }] },
  ]),
  entry({ case: "runClearing", value: { withCredit: true, reason: "December" } }, {}, [
    { tag: 1, parts: [{ index: 0, data: new Uint8Array([1]) }, { index: 1, data: clearingPart("alice-bakery", 1_000, -32_650) }] },
  ]),
];

const words = { t: (key, params = {}) => [key, ...Object.values(params)].join(" "), money: (minor) => `${minor}` };

/** The rows' kind, counterparty, amount, balance after and memo. */
function check(account, entries, expected) {
  const rows = describeEntries(entries, account, words).map((r) => [
    r.kind,
    r.counterparty,
    r.amountMinor === null ? null : Number(r.amountMinor),
    r.balanceAfterMinor === undefined ? null : Number(r.balanceAfterMinor),
    r.memo,
  ]);
  assert.deepEqual(rows, expected, account);
}

test("the payer's rows move by the amount and its share of the levy, named", () => {
  check("alice-bakery", ledger, [
    ["registerAccount", "", null, null, ""],
    ["transfer", "bob-mill", -12_550, -12_550, "flour"],
    ["setFees", "", null, null, "budget 2027"],
    ["transfer", "bob-mill", -8_040, -20_590, "rye · history.levy 40"],
    ["held", "bob-mill", null, null, "6000 · oven repair"],
    ["approvePending", "bob-mill", -6_060, -26_650, "pending.number 5 · history.levy 60"],
    ["chargeFees", "", -5_000, -31_650, "history.charge 2026-11"],
    ["runClearing", "", -1_000, -32_650, "December"],
  ]);
  const rows = describeEntries(ledger, "alice-bakery", words);
  assert.deepEqual(rows.map((r) => r.levyMinor), [null, null, null, 40n, null, 60n, null, null]);
});

test("the payee's rows move by the amount less its share; a charge not made moves nothing", () => {
  check("bob-mill", ledger.filter((e) => e.balancesAfter.some((b) => b.account === "bob-mill") || e.sections.some((s) => s.tag === 3)), [
    ["transfer", "alice-bakery", 12_550, 12_550, "flour"],
    ["transfer", "alice-bakery", 7_960, 20_510, "rye · history.levy 40"],
    // The payer paid all of this levy: the payee received the whole amount.
    ["approvePending", "alice-bakery", 6_000, 26_510, "pending.number 5"],
    ["chargeFees", "", null, 26_510, "history.chargeNot 2026-11 charge.credit_limit"],
  ]);
});

test("the fee account receives each levy and the periodic fees; its own payments pay none", () => {
  const own = entry(pay("association", "bob-mill", 1_000, "refund"), { association: 4_140, "bob-mill": 27_510 });
  const shown = ledger.filter((e) => e.balancesAfter.some((b) => b.account === "association") || e.sections.some((s) => s.tag === 3));
  check("association", [...shown, own], [
    ["levy", "", 80, 80, "history.levyOn alice-bakery bob-mill"],
    ["levy", "", 60, 140, "history.levyOn alice-bakery bob-mill"],
    ["chargeFees", "", 5_000, 5_140, "history.chargeReceived 2026-11"],
    ["transfer", "bob-mill", -1_000, 4_140, "refund"],
  ]);
});

test("a write-off moves the reserve by the debt it takes, from the leaving firm", () => {
  const entries = [
    entry({ case: "registerAccount", value: { account: "reserve" } }),
    entry({ case: "closeAccount", value: { account: "dave-shop", reason: "bankrupt", writeOffTo: "reserve" } }, { "dave-shop": 0, reserve: -7_500 }),
  ];
  check("reserve", entries, [
    ["registerAccount", "", null, null, ""],
    ["closeAccount", "dave-shop", -7_500, -7_500, "bankrupt"],
  ]);
  // The leaving firm's debt is gone: its balance rose back to zero.
  const owed = entry(pay("dave-shop", "bob-mill", 7_500), { "dave-shop": -7_500, "bob-mill": 35_010 });
  check("dave-shop", [owed, entries[1]], [
    ["transfer", "bob-mill", -7_500, -7_500, ""],
    ["closeAccount", "reserve", 7_500, 0, "bankrupt"],
  ]);
});

test("every kind of row has its words in every language", () => {
  const operations = OperationBodySchema.oneofs[0].fields.map((f) => f.localName);
  for (const kind of [...operations, "held", "levy"]) {
    assert.ok(KIND_KEYS[kind], `a word for ${kind}`);
    for (const [lang, messages] of Object.entries(MESSAGES)) assert.ok(messages[KIND_KEYS[kind]], `${KIND_KEYS[kind]} in ${lang}`);
  }
  // And every word at all: the levy's and the charges' included.
  for (const [lang, messages] of Object.entries(MESSAGES)) {
    assert.deepEqual(Object.keys(messages).sort(), Object.keys(MESSAGES.en).sort(), `the words of ${lang}`);
  }
});
