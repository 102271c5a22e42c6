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
