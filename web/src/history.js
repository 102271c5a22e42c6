// An account's history as it sees it: one row per entry, with what the entry moved its
// balance by.
//
// The page loads the whole history oldest first, so each row's movement is exact: its
// balance after, less the balance after the row before (0 before the first). That is the
// row's amount whenever the balance moved: a levied transfer moved the payer's balance by
// the amount and its share of the levy (the row names the levy: the difference), the
// association's fee account received the levy on a payment between two other firms, a
// periodic charge, a clearing run through mutual credit or a write-off moved it without an
// amount in the operation. The wallet's history does the same (`settle` in
// wallet-cli/src/cmd/history.rs).
//
// Where the entry keeps a balance: `balances_after` for most; a periodic charge and a
// clearing run keep each firm's in its own part of the entry's section (the node shows a
// firm its own part), as `EntryView::balance_of` in crates/cercle-core/src/entry.rs reads
// them. The parts are decoded here in the core's codec (big-endian, strings with a u32
// length): `charges::FirmCharge`, `charges::ChargeHeader`, `clearing::FirmPart`.
//
// Pure: the words and the money format come in (`t`, `money`), so the tests run it in Node.

import { decodeBody } from "./client.js";

// Section tags (`entry::SectionTag`).
const CLEARING = 1;
const CHARGES = 3;
const PART_VERSION = 1;

/** What a charge was not made for (`charges::NotCharged`, its byte). */
const NOT_CHARGED = { 1: "credit_limit", 2: "fee_account_max", 3: "overflow" };

/** A big-endian reader of the core's codec (`cercle_core::codec::Reader`). */
class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.at = 0;
  }
  take(n) {
    if (this.at + n > this.bytes.length) throw new Error("a part is cut short");
    this.at += n;
    return this.at - n;
  }
  u8() {
    return this.view.getUint8(this.take(1));
  }
  u16() {
    return this.view.getUint16(this.take(2));
  }
  u32() {
    return this.view.getUint32(this.take(4));
  }
  i64() {
    return this.view.getBigInt64(this.take(8));
  }
  string() {
    const n = this.u32();
    const at = this.take(n);
    return new TextDecoder().decode(this.bytes.subarray(at, at + n));
  }
  optI64() {
    return this.u8() === 0 ? undefined : this.i64();
  }
}

/** The parts of the entry's section `tag` the view shows, header (index 0) or firms'. */
function parts(entry, tag, header) {
  const section = entry.sections?.find((s) => s.tag === tag);
  return (section?.parts ?? []).filter((p) => (p.index === 0) === header);
}

/** Decodes `data` with `read`, or undefined for a part this page cannot read. */
function tryRead(data, read) {
  try {
    return read(new Reader(data));
  } catch {
    return undefined;
  }
}

/** A firm's part of a periodic charge: what it owed, whether it was charged, its balance. */
export function firmCharge(entry, account) {
  for (const p of parts(entry, CHARGES, false)) {
    const charge = tryRead(p.data, (r) => {
      if (r.u8() !== PART_VERSION) return undefined;
      const c = { account: r.string(), membershipMinor: r.i64(), demurrageMinor: r.i64() };
      const outcome = r.u8();
      // Refused over the credit limit: the balance it would have left, and the limit.
      if (outcome === 1) [c.wouldLeaveMinor, c.creditLimitMinor] = [r.i64(), r.i64()];
      c.notCharged = outcome === 0 ? null : NOT_CHARGED[outcome] ?? "unknown";
      c.balanceAfterMinor = r.i64();
      return c;
    });
    if (charge?.account === account) return charge;
  }
  return undefined;
}

/** The header of a periodic charge: the period, the fee account and its balance after. */
export function chargeHeader(entry) {
  const [p] = parts(entry, CHARGES, true);
  return p && tryRead(p.data, (r) => {
    if (r.u8() !== PART_VERSION) return undefined;
    const period = `${String(r.u16()).padStart(4, "0")}-${String(r.u8()).padStart(2, "0")}`;
    return { period, feeAccount: r.string(), feeBalanceAfterMinor: r.i64(), firms: r.u32(), chargedMinor: r.i64(), notChargedMinor: r.i64() };
  });
}

/** A firm's part of a clearing run: its payment into the circuit and balance after, if any. */
export function clearingPart(entry, account) {
  for (const p of parts(entry, CLEARING, false)) {
    const part = tryRead(p.data, (r) => {
      const name = r.string();
      const [, , paymentMinor] = [r.i64(), r.i64(), r.i64()];
      r.u8();
      return { account: name, paymentMinor, balanceAfterMinor: r.optI64() };
    });
    if (part?.account === account) return part;
  }
  return undefined;
}

/** `account`'s balance after `entry`, if the entry changed it and shows it to this reader. */
export function balanceOf(entry, account) {
  const listed = entry.balancesAfter.find((b) => b.account === account);
  if (listed) return listed.balanceMinor;
  const charge = firmCharge(entry, account);
  if (charge) return charge.balanceAfterMinor;
  const header = chargeHeader(entry);
  if (header?.feeAccount === account) return header.feeBalanceAfterMinor;
  return clearingPart(entry, account)?.balanceAfterMinor;
}

/**
 * The rows of `account`'s history from its entries, oldest first (as `ListEntries` gives
 * them): `{ sequence, timestampMs, kind, counterparty, amountMinor, levyMinor,
 * balanceAfterMinor, memo }`. `amountMinor` is what the entry moved the balance by (null
 * when it moved nothing); `levyMinor` the account's share of a transfer's levy (null
 * without one), also named in the memo.
 */
export function describeEntries(entries, account, { t, money }) {
  let before = 0n;
  return entries.map((entry) => {
    const row = describeEntry(entry, account, { t, money }, before);
    if (row.balanceAfterMinor !== undefined) before = row.balanceAfterMinor;
    return row;
  });
}

/** Each row kind's words (`kind.*` in i18n.js): every operation, a held payment, a levy. */
export const KIND_KEYS = {
  transfer: "kind.transfer",
  levy: "kind.levy",
  registerAccount: "kind.register_account",
  setLimits: "kind.set_limits",
  freezeAccount: "kind.freeze_account",
  unfreezeAccount: "kind.unfreeze_account",
  rotateKeys: "kind.rotate_keys",
  issueInvoice: "kind.issue_invoice",
  acceptInvoice: "kind.accept_invoice",
  rejectInvoice: "kind.reject_invoice",
  cancelInvoice: "kind.cancel_invoice",
  setInvoiceClearing: "kind.set_invoice_clearing",
  runClearing: "kind.run_clearing",
  held: "kind.held",
  approvePending: "kind.approve_pending",
  declinePending: "kind.decline_pending",
  addKey: "kind.add_key",
  removeKey: "kind.remove_key",
  closeAccount: "kind.close_account",
  assignGroup: "kind.assign_group",
  followGroupLimits: "kind.follow_group_limits",
  chargeFees: "kind.charge_fees",
  applyLimitRule: "kind.apply_limit_rule",
  setProfile: "kind.set_profile",
  setRole: "kind.set_role",
  setQuorum: "kind.set_quorum",
  rotateNodeKey: "kind.rotate_node_key",
  createGroup: "kind.create_group",
  setGroupLimits: "kind.set_group_limits",
  setFees: "kind.set_fees",
};

const joined = (...parts) => parts.filter(Boolean).join(" · ");

/** One entry as `account` sees it, its balance before the entry being `before`. */
function describeEntry(entry, me, { t, money }, before) {
  const op = decodeBody(entry.envelope.body);
  const balance = balanceOf(entry, me);
  const movement = balance === undefined ? 0n : balance - before;
  const row = {
    sequence: entry.sequence,
    timestampMs: entry.timestampMs,
    kind: op.kind.case,
    counterparty: "",
    amountMinor: movement === 0n ? null : movement,
    levyMinor: null,
    balanceAfterMinor: balance,
    memo: "",
  };
  const v = op.kind.value;
  // A payment: the payer's and the payee's rows name the other side and the levy this
  // account paid (what its balance moved beyond the amount); the fee account, neither
  // side, received the levy on it.
  const payment = (payer, payee, amountMinor, memo) => {
    if (payer !== me && payee !== me) {
      row.kind = "levy";
      row.memo = t("history.levyOn", { payer, payee });
      return;
    }
    row.counterparty = payer === me ? payee : payer;
    const signed = payer === me ? -amountMinor : amountMinor;
    if (balance === undefined) row.amountMinor = signed;
    else if (signed - movement > 0n) row.levyMinor = signed - movement;
    row.memo = joined(memo, row.levyMinor !== null && t("history.levy", { amount: money(row.levyMinor) }));
  };
  switch (op.kind.case) {
    case "transfer":
      // A payment held for approval moved nothing (its entry records no balance): its
      // approval is the payment.
      if (entry.balancesAfter.length === 0) {
        row.kind = "held";
        row.counterparty = v.payer === me ? v.payee : v.payer;
        row.memo = joined(money(v.amountMinor), v.memo || v.invoiceRef);
        break;
      }
      payment(v.payer, v.payee, v.amountMinor, v.memo || v.invoiceRef || "");
      break;
    case "approvePending":
      payment(v.account, v.payee, v.amountMinor, t("pending.number", { id: String(v.pendingId) }));
      break;
    case "declinePending":
      row.memo = `${t("pending.number", { id: String(v.pendingId) })} · ${v.reason}`;
      break;
    case "issueInvoice":
      // An invoice moves no money: its amount goes with its reference.
      row.counterparty = v.payee === me ? v.payer : v.payee;
      row.memo = `${v.reference} (${money(v.amountMinor)})`;
      break;
    case "acceptInvoice":
    case "rejectInvoice":
    case "cancelInvoice":
    case "setInvoiceClearing":
      row.counterparty = v.invoice.payee === me ? v.invoice.payer : v.invoice.payee;
      row.memo = v.reason ?? "";
      break;
    case "chargeFees": {
      const charge = firmCharge(entry, me);
      if (charge?.notCharged) {
        row.memo = t("history.chargeNot", { period: v.period, why: t(`charge.${charge.notCharged}`) });
      } else if (charge) {
        row.memo = t("history.charge", { period: v.period });
      } else if (chargeHeader(entry)?.feeAccount === me) {
        row.memo = t("history.chargeReceived", { period: v.period });
      }
      break;
    }
    case "closeAccount":
      // A write-off: the reserve takes the leaving firm's debt, as if it paid it.
      if (v.writeOffTo) row.counterparty = v.account === me ? v.writeOffTo : v.account;
      row.memo = v.reason;
      break;
    default:
      row.memo = v?.reason ?? "";
  }
  return row;
}
