// "History never rewritten": the node's signed tree head, checked against the one this
// browser saw last with a consistency proof (RFC 9162 §2.1.4.2, as
// `cercle_core::merkle::verify_consistency`): the log this browser saw is a prefix of the
// log now. The wallet's `cercle proof check` does the same.

import { concat, toHex } from "./keys.js";

const TREE_HEAD_TAG = new TextEncoder().encode("cercle/tree-head/v1");

async function sha256(...parts) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", concat(...parts)));
}

const nodeHash = (left, right) => sha256(Uint8Array.of(1), left, right);
const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

/** Why a check failed: `kind` is "signature", "proof" or "rewritten". */
export class ProofError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

/** Checks the node's signature over a tree head: "cercle/tree-head/v1" || ledger || size || root || time. */
/**
 * The node key in force for a tree head of `size` (`info`: the ledger's `LedgerInfo`): the
 * last key of the history whose first size is at or below it; the genesis's key when the
 * ledger's key was never rotated (an empty history).
 */
export function nodeKeyFor(info, size) {
  let key = info.nodeKey;
  for (const era of info.nodeKeys ?? []) {
    if (era.fromSize <= size) key = era.key;
  }
  return key;
}

export async function verifyTreeHead(nodeKey, head) {
  const numbers = new DataView(new ArrayBuffer(16));
  numbers.setBigUint64(0, BigInt(head.treeSize));
  numbers.setBigUint64(8, BigInt(head.timestampMs));
  const message = concat(TREE_HEAD_TAG, head.ledgerId, new Uint8Array(numbers.buffer, 0, 8), head.rootHash, new Uint8Array(numbers.buffer, 8, 8));
  const key = await crypto.subtle.importKey("raw", nodeKey, { name: "Ed25519" }, false, ["verify"]);
  if (!(await crypto.subtle.verify("Ed25519", key, head.signature, message))) {
    throw new ProofError("signature", "the tree head is not signed by the ledger's node key");
  }
}

/**
 * Checks that the tree of `oldSize` leaves with root `oldRoot` is a prefix of the tree of
 * `newSize` leaves with root `newRoot`, by `proof`. Throws `ProofError`.
 */
export async function verifyConsistency(oldSize, newSize, oldRoot, newRoot, proof) {
  const [m, n] = [BigInt(oldSize), BigInt(newSize)];
  const bad = (why) => new ProofError("proof", why);
  if (m > n) throw bad(`the old size ${m} exceeds the new size ${n}`);
  if (m === 0n) throw bad("nothing to compare with");
  if (m === n) {
    if (proof.length !== 0) throw bad("a proof between equal sizes must be empty");
    if (!same(oldRoot, newRoot)) throw new ProofError("rewritten", `two different roots for ${m} entries`);
    return;
  }
  const powerOfTwo = (m & (m - 1n)) === 0n;
  const path = [...proof];
  const seed = powerOfTwo ? oldRoot : path.shift();
  if (seed === undefined) throw bad("the proof is too short");
  let [fn, sn] = [m - 1n, n - 1n];
  while ((fn & 1n) === 1n) {
    fn >>= 1n;
    sn >>= 1n;
  }
  let [fr, sr] = [seed, seed];
  for (const c of path) {
    if (sn === 0n) throw bad("the proof is too long");
    if ((fn & 1n) === 1n || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw bad("the proof is too short");
  if (!same(fr, oldRoot)) {
    throw new ProofError("rewritten", `the ${m} entries this browser saw have root ${toHex(oldRoot)}, the node's proof gives ${toHex(fr)}`);
  }
  if (!same(sr, newRoot)) throw bad("the proof does not lead to the node's signed root");
}

/** The leaf hash of an entry's commitment: SHA-256(0x00 || commitment), its entry hash. */
export const leafHash = (commitment) => sha256(Uint8Array.of(0), commitment);

/**
 * Checks that `leaf` is leaf `index` of the tree of `size` leaves with root `root`, by
 * `proof` (RFC 9162 §2.1.3.2, as `cercle_core::merkle::verify_inclusion`). Throws
 * `ProofError`.
 */
export async function verifyInclusion(leaf, index, size, proof, root) {
  const [i, n] = [BigInt(index), BigInt(size)];
  const bad = (why) => new ProofError("proof", why);
  if (i >= n) throw bad(`leaf ${i} is outside a tree of ${n}`);
  let [fn, sn] = [i, n - 1n];
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) throw bad("the proof is too long");
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw bad("the proof is too short");
  if (!same(r, root)) throw bad(`entry ${i + 1n} is not in the signed tree`);
}
