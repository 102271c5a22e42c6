// The keys of an account, as an owner changes them from the browser: a pasted public key
// read as `cercle key add --pubkey` reads it, a payer's caps read as `--per-transfer-cap`
// and `--daily-cap` are (the app's amount rule, a cap of zero only as
// `--require-approval`), the `AddKey` and `RemoveKey` operations the wallet signs
// (wallet-cli/src/cmd/key.rs), and what a payer paid on the ledger's day as `key list`
// counts it.
//
// Pure: no page, no node; the tests run it in Node (test/accountkeys.test.js).

import { parseAmount } from "./amount.js";
import { AccountKeyRole } from "./gen/cercle/v1/operation_pb.js";
import { fromHex, toHex } from "./keys.js";

/** The roles, in the order the page offers them (`AccountKey.role` names them so). */
export const ROLES = ["owner", "payer", "invoicer", "viewer"];

const ROLE_ENUM = {
  owner: AccountKeyRole.OWNER,
  payer: AccountKeyRole.PAYER,
  invoicer: AccountKeyRole.INVOICER,
  viewer: AccountKeyRole.VIEWER,
};

const PUBLIC_KEY_HEX_DIGITS = 64;
const SECRET_KEY_FILE_HEADER = "cercle-ed25519-secret-key-v1";
const DAY_MS = 86_400_000;

/**
 * A refusal of what was typed, before anything is signed: `kind` names the case (its words
 * are `keys.<kind>` in i18n.js), `params` fill them in.
 */
export class KeyFormError extends Error {
  constructor(kind, params = {}) {
    super(kind);
    this.kind = kind;
    this.params = params;
  }
}

/**
 * The 32 bytes of a pasted public key: 64 hex digits, either case. Spaces and line breaks
 * are dropped (a key copied from a wrapped line or read aloud in groups); anything else is
 * refused, saying what is wrong. A pasted secret key file is named as such: it must never
 * leave its owner.
 */
export function parsePublicKey(text) {
  const trimmed = text.trim();
  if (trimmed === "") throw new KeyFormError("pubkeyEmpty");
  if (trimmed.includes(SECRET_KEY_FILE_HEADER)) throw new KeyFormError("pubkeySecret");
  const digits = trimmed.replace(/\s+/g, "");
  const bad = [...digits].findIndex((c) => !/[0-9a-fA-F]/.test(c));
  if (bad >= 0) throw new KeyFormError("pubkeyNotHex", { char: [...digits][bad], position: bad + 1 });
  if (digits.length !== PUBLIC_KEY_HEX_DIGITS) throw new KeyFormError("pubkeyLength", { given: digits.length });
  return fromHex(digits.toLowerCase());
}

/** A public key in hex, shortened for a table: its first 8 and last 4 digits. */
export function shortKey(hex) {
  return hex.length <= 12 ? hex : `${hex.slice(0, 8)}…${hex.slice(-4)}`;
}

/**
 * A payer's caps in minor units from what was typed: `{ perTransferMinor, dailyMinor }`.
 * With `requireApproval`, both are zero and the fields are not read (`--require-approval`);
 * otherwise each is a positive amount (`--per-transfer-cap`, `--daily-cap`: zero is the
 * checkbox's), and a payment may not be capped above the day (the core's rule,
 * `0 <= per transfer <= daily`). Throws `AmountError` with `field` set, or `KeyFormError`.
 */
export function payerCaps({ perTransfer, daily, requireApproval }, exponent, lang) {
  if (requireApproval) return { perTransferMinor: 0n, dailyMinor: 0n };
  const read = (text, field) => {
    let minor;
    try {
      minor = parseAmount(text, exponent, lang);
    } catch (e) {
      e.field = field;
      throw e;
    }
    if (minor === 0n) throw new KeyFormError("capZero", { field });
    return minor;
  };
  const perTransferMinor = read(perTransfer, "perTransfer");
  const dailyMinor = read(daily, "daily");
  if (perTransferMinor > dailyMinor) throw new KeyFormError("capOrder", { perTransferMinor, dailyMinor });
  return { perTransferMinor, dailyMinor };
}

/**
 * The body's `AddKey` for `role` ("owner", "payer", "invoicer", "viewer"): a payer's two
 * caps, none for the other roles (`cercle key add`).
 */
export function addKeyOperation({ account, publicKey, role, caps, allowSharedKey = false }) {
  if (!(role in ROLE_ENUM)) throw new Error(`no role ${role}`);
  const payer = role === "payer";
  if (payer !== (caps !== undefined)) throw new Error("a payer has caps, and only a payer");
  return {
    case: "addKey",
    value: {
      account,
      publicKey,
      role: ROLE_ENUM[role],
      perTransferCapMinor: payer ? caps.perTransferMinor : undefined,
      dailyCapMinor: payer ? caps.dailyMinor : undefined,
      allowSharedKey,
    },
  };
}

/** The body's `RemoveKey` (`cercle key remove`). */
export function removeKeyOperation(account, publicKey) {
  return { case: "removeKey", value: { account, publicKey } };
}

/**
 * The ledger day of `timestampMs`: days since 1970-01-01 at the genesis's fixed offset
 * (`cercle_core::genesis::ledger_day`).
 */
export function ledgerDay(offsetMinutes, timestampMs) {
  return BigInt(Math.floor((Number(timestampMs) + offsetMinutes * 60_000) / DAY_MS));
}

/** What a payer key (`AccountKey`) paid on ledger day `today`: nothing on a later day. */
export function paidOn(key, today) {
  return key.day === today ? key.spentMinor : 0n;
}

/** Whether the key `hex` is the account's only owner key (the ledger keeps that one). */
export function isLastOwner(keys, hex) {
  const owners = keys.filter((k) => k.role === "owner");
  return owners.length === 1 && toHex(owners[0].publicKey) === hex;
}
