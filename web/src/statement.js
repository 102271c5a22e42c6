// A signed statement of an account, for a bank or the tax office: the node's answer to
// GetStatement, checked here and written as the file `cercle statement` writes
// ("cercle-statement-v2"), so that `cercle statement verify FILE --node-key HEX` checks it
// offline against the node key the association publishes.
//
// The file names each entry by its commitment (`cercle_core::entry`: the entry's frozen
// encoding, version 1, with each section's parts replaced by their Merkle root), which the
// node does not send: it is rebuilt here from the entry and must hash to the entry's hash.

import { concat, toHex } from "./keys.js";
import { leafHash, nodeKeyFor, ProofError, verifyInclusion, verifyTreeHead } from "./proof.js";

const FORMAT = "cercle-statement-v2";
const ENTRY_VERSION = 1;
const STATEMENT_VERSION = 2;
const STATEMENT_TAG = new TextEncoder().encode("cercle/statement/v1");

/** Big-endian writer of the core's codec (`cercle_core::codec::Writer`). */
class Writer {
  constructor() {
    this.parts = [];
  }
  number(bytes, set, value) {
    const view = new DataView(new ArrayBuffer(bytes));
    set.call(view, 0, value);
    this.parts.push(new Uint8Array(view.buffer));
    return this;
  }
  u8(v) {
    return this.number(1, DataView.prototype.setUint8, v);
  }
  u32(v) {
    return this.number(4, DataView.prototype.setUint32, v);
  }
  u64(v) {
    return this.number(8, DataView.prototype.setBigUint64, BigInt(v));
  }
  i64(v) {
    return this.number(8, DataView.prototype.setBigInt64, BigInt(v));
  }
  fixed(bytes) {
    this.parts.push(bytes);
    return this;
  }
  bytes(bytes) {
    return this.u32(bytes.length).fixed(bytes);
  }
  finish() {
    return concat(...this.parts);
  }
}

/** An entry's commitment, from the wire's `Entry` (`EntryView::commitment`). */
export function entryCommitment(entry) {
  const envelope = entry.envelope;
  const signatures = [{ signer: envelope.signer, signature: envelope.signature }, ...envelope.cosignatures];
  const w = new Writer().u8(ENTRY_VERSION).u64(entry.sequence).u64(entry.timestampMs).fixed(entry.prevHash);
  w.bytes(envelope.body).u8(signatures.length);
  for (const s of signatures) w.fixed(s.signer).fixed(s.signature);
  w.u32(entry.balancesAfter.length);
  for (const b of entry.balancesAfter) w.bytes(new TextEncoder().encode(b.account)).i64(b.balanceMinor);
  w.u8(entry.sections.length);
  for (const s of entry.sections) w.u8(s.tag).u32(s.partCount).fixed(s.root);
  return w.finish();
}

/** Reads what `Statement::encode` wrote (version 2). */
export function decodeStatement(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const take = (n) => {
    if (at + n > bytes.length) throw new ProofError("proof", "the statement is cut short");
    const slice = bytes.subarray(at, at + n);
    at += n;
    return slice;
  };
  const u8 = () => take(1)[0];
  const u32 = () => (take(4), view.getUint32(at - 4));
  const u64 = () => (take(8), view.getBigUint64(at - 8));
  const i64 = () => (take(8), view.getBigInt64(at - 8));
  const u128 = () => (u64() << 64n) | u64();
  if (u8() !== STATEMENT_VERSION) throw new ProofError("proof", "not a version 2 statement");
  const s = { ledgerId: take(16) };
  s.account = new TextDecoder().decode(take(u32()));
  s.fromMs = u64();
  s.toMs = u64();
  s.cutAtMs = u64();
  s.provisional = u8() === 1;
  s.treeSize = u64();
  s.rootHash = take(32);
  s.openingMinor = i64();
  s.closingMinor = i64();
  s.turnoverInMinor = u128();
  s.turnoverOutMinor = u128();
  s.creditLimitMinor = i64();
  s.maxBalanceMinor = u8() === 1 ? i64() : undefined;
  const status = u8(); // 0 active, 1 frozen, 2 closed
  s.frozen = status === 1;
  s.closed = status === 2;
  s.entryCount = u32();
  return s;
}

const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * Checks the node's statement against the ledger's node key (`info`: the ledger's
 * `LedgerInfo`) as `cercle statement` does before writing it: both signatures, and each
 * entry's hash and inclusion at the signed tree head. Returns the file's text and what
 * the statement says. Throws `ProofError`.
 */
export async function checkedStatement(info, reply) {
  const head = reply.treeHead;
  if (!head || !same(head.ledgerId, info.ledgerId)) throw new ProofError("signature", "the tree head is another ledger's");
  // The key in force for the head's size: the genesis's, or the last rotation's before it.
  const nodeKey = nodeKeyFor(info, head.treeSize);
  await verifyTreeHead(nodeKey, head);
  const key = await crypto.subtle.importKey("raw", nodeKey, { name: "Ed25519" }, false, ["verify"]);
  if (!(await crypto.subtle.verify("Ed25519", key, reply.signature, concat(STATEMENT_TAG, reply.statement)))) {
    throw new ProofError("signature", "the statement is not signed by the ledger's node key");
  }
  const statement = decodeStatement(reply.statement);
  if (statement.treeSize !== head.treeSize || !same(statement.rootHash, head.rootHash)) {
    throw new ProofError("proof", "the statement and its tree head disagree");
  }
  const entries = [];
  for (const proof of reply.entries) {
    const entry = proof.entry;
    const commitment = entryCommitment(entry);
    const leaf = await leafHash(commitment);
    if (!same(leaf, entry.entryHash)) throw new ProofError("proof", `entry ${entry.sequence} does not hash to its entry hash`);
    await verifyInclusion(leaf, entry.sequence - 1n, head.treeSize, proof.hashes, head.rootHash);
    entries.push({
      sequence: Number(entry.sequence),
      commitment: toHex(commitment),
      parts: entry.sections.flatMap((s) => s.parts.map((p) => ({ tag: s.tag, index: p.index, data: toHex(p.data), path: p.path.map(toHex) }))),
      proof: proof.hashes.map(toHex),
    });
  }
  const document = {
    format: FORMAT,
    ledger_id: toHex(info.ledgerId),
    node_key: toHex(nodeKey),
    node_keys: (info.nodeKeys ?? []).map((e) => ({ from_size: Number(e.fromSize), key: toHex(e.key) })),
    currency: info.currency,
    exponent: info.exponent,
    statement: toHex(reply.statement),
    signature: toHex(reply.signature),
    tree_head: {
      tree_size: Number(head.treeSize),
      root_hash: toHex(head.rootHash),
      timestamp_ms: Number(head.timestampMs),
      signature: toHex(head.signature),
    },
    entries,
  };
  return { text: `${JSON.stringify(document, null, 2)}\n`, statement };
}
