// The statement file names each entry by its commitment, which the app rebuilds from the
// wire's entry: held here to the core's known-answer vector (tests/fixtures/vectors.json,
// an entry's encoding and hash), so the browser and the core write the same bytes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fromHex, toHex } from "../src/keys.js";
import { leafHash } from "../src/proof.js";
import { entryCommitment } from "../src/statement.js";

const vectors = JSON.parse(readFileSync(new URL("../../tests/fixtures/vectors.json", import.meta.url)));

test("an entry's commitment and hash are the core's", async () => {
  const { entry, operation, key } = vectors;
  const wire = {
    sequence: BigInt(entry.sequence),
    timestampMs: BigInt(entry.timestamp_ms),
    prevHash: fromHex(entry.prev_hash),
    envelope: { body: fromHex(operation.body), signer: fromHex(key.public_key), signature: fromHex(operation.signature), cosignatures: [] },
    balancesAfter: entry.balances_after.map((b) => ({ account: b.account, balanceMinor: BigInt(b.balance_minor) })),
    sections: [],
  };
  const commitment = entryCommitment(wire);
  assert.equal(toHex(commitment), entry.encoding, "an entry without sections commits to its encoding");
  assert.equal(toHex(await leafHash(commitment)), entry.hash);
});

test("the node key in force for a size is the last rotation's at or before it", async () => {
  const { nodeKeyFor } = await import("../src/proof.js");
  const [genesis, second, third] = [new Uint8Array([1]), new Uint8Array([2]), new Uint8Array([3])];
  // Never rotated: the genesis's key signs every size (an empty history, or a node from
  // before rotations that sends none).
  assert.equal(nodeKeyFor({ nodeKey: genesis, nodeKeys: [] }, 99n), genesis);
  assert.equal(nodeKeyFor({ nodeKey: genesis }, 99n), genesis);
  const info = {
    nodeKey: genesis,
    nodeKeys: [
      { fromSize: 0n, key: genesis },
      { fromSize: 5n, key: second },
      { fromSize: 9n, key: third },
    ],
  };
  const keys = [0n, 4n, 5n, 8n, 9n, 1000n].map((size) => nodeKeyFor(info, size)[0]);
  assert.deepEqual(keys, [1, 1, 2, 2, 3, 3]);
});
