// The node's Ledger API over gRPC-web, on the origin that served the page, with reads
// signed by the firm's key and operations signed before they are sent.

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { EnvelopeSchema, Ledger } from "./gen/cercle/v1/ledger_pb.js";
import { OperationBodySchema } from "./gen/cercle/v1/operation_pb.js";
import { toHex } from "./keys.js";

/** Reads that need no signature (see ledger.proto). */
const PUBLIC_METHODS = new Set(["GetLedgerInfo", "GetTreeHead", "Submit", "SubmitBatch"]);

/** How long a signed operation stays valid: the wallet's default, one hour. */
export const VALID_FOR_MS = 60 * 60 * 1000;

export class Node {
  constructor(baseUrl) {
    this.key = null;
    this.info = null;
    const signReads = (next) => async (req) => {
      if (!PUBLIC_METHODS.has(req.method.name)) {
        if (!this.key || !this.info) throw new Error(`${req.method.name} needs a key`);
        const now = Date.now();
        const encoded = toBinary(req.method.input, req.message);
        const signature = await this.key.signRead(this.info.ledgerId, req.method.name, now, encoded);
        req.header.set("x-cercle-pubkey", this.key.publicHex);
        req.header.set("x-cercle-timestamp", String(now));
        req.header.set("x-cercle-signature", toHex(signature));
      }
      return next(req);
    };
    this.api = createClient(Ledger, createGrpcWebTransport({ baseUrl, interceptors: [signReads] }));
  }

  async ledgerInfo() {
    this.info ??= await this.api.getLedgerInfo({});
    return this.info;
  }

  /**
   * The ledger info as it stands now: what may change while the page is open (the fee
   * schedule, the roles, the node keys) read again, e.g. before a payment is shown.
   */
  async freshInfo() {
    this.info = await this.api.getLedgerInfo({});
    return this.info;
  }

  /**
   * Builds an operation's body: `kind` is the body's oneof (`{ case: "transfer", value:
   * {...} }`), with a new operation id. Nothing is signed yet: the page shows it first.
   */
  async prepare(kind) {
    const info = await this.ledgerInfo();
    const operationId = crypto.getRandomValues(new Uint8Array(16));
    const body = toBinary(
      OperationBodySchema,
      create(OperationBodySchema, { operationId, validUntilMs: BigInt(Date.now() + VALID_FOR_MS), kind }),
    );
    return { operationId, body, envelope: null, ledgerId: info.ledgerId };
  }

  /**
   * Signs a prepared operation (once) and sends it; returns its receipt. A retry after a
   * lost connection sends the very same envelope, so the ledger sees one operation id
   * however many times it arrives.
   */
  async signAndSubmit(prepared) {
    if (!prepared.envelope) {
      const signature = await this.key.signOperation(prepared.ledgerId, prepared.body);
      prepared.envelope = create(EnvelopeSchema, { body: prepared.body, signer: this.key.publicKey, signature });
    }
    const response = await this.api.submit({ envelope: prepared.envelope });
    return response.receipt;
  }
}

/** The operation an envelope's body holds. */
export function decodeBody(body) {
  return fromBinary(OperationBodySchema, body);
}

/** google.rpc.ErrorInfo's reason and code, read from the error's details. */
function errorInfo(err) {
  for (const d of err.details ?? []) {
    if (d.type !== "google.rpc.ErrorInfo" || !(d.value instanceof Uint8Array)) continue;
    const reader = new BinaryReader(d.value);
    const info = { reason: "", metadata: {} };
    while (reader.pos < reader.len) {
      const [field, wireType] = reader.tag();
      if (field === 1) info.reason = reader.string();
      else if (field === 3) {
        const entry = new BinaryReader(reader.bytes());
        let k = "";
        let v = "";
        while (entry.pos < entry.len) {
          const [f] = entry.tag();
          if (f === 1) k = entry.string();
          else v = entry.string();
        }
        info.metadata[k] = v;
      } else reader.skip(wireType);
    }
    return info;
  }
  return null;
}

/**
 * What went wrong, for the page: `network` (the node could not be reached: the same
 * envelope may be sent again), `rejected` (the ledger's decision: `name`, the reason's
 * stable name such as KEY_ALREADY_REGISTERED; `reason`, that name and its code, to show;
 * and its message) or `other`.
 */
export function describeError(err) {
  const e = ConnectError.from(err);
  const unreachable =
    e.code === Code.Unavailable ||
    (e.code === Code.Unknown && /fetch|network/i.test(e.rawMessage)) ||
    e.code === Code.DeadlineExceeded;
  if (unreachable) return { kind: "network", message: e.rawMessage };
  const info = errorInfo(e);
  if (info) {
    const code = info.metadata.code ? `, code ${info.metadata.code}` : "";
    return { kind: "rejected", name: info.reason, reason: `${info.reason}${code}`, message: e.rawMessage };
  }
  return { kind: "other", message: e.rawMessage || String(err) };
}
