// The firm's signing key, held by WebCrypto (Ed25519) and kept in IndexedDB as a
// non-extractable CryptoKey: pages of this origin can sign with it, none can read it.
// Signatures use the wallet's domain separation (crates/cercle-core/src/sign.rs):
// operations "cercle/op/v1" || ledger_id || body, reads `readAuthMessage`.

const DB_NAME = "cercle";
const STORE = "keys";
const SLOT = "signing-key";

const OP_TAG = new TextEncoder().encode("cercle/op/v1");
const READ_TAG = new TextEncoder().encode("cercle/read/v2");
const KEY_FILE_HEADER = "cercle-ed25519-secret-key-v1";
const KEY_FILE_PUBLIC_KEY = "# public key:";
// The DER prefix of a PKCS #8 Ed25519 private key (RFC 8410); the 32-byte seed follows.
const PKCS8_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]);

export const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

export function fromHex(text) {
  if (!/^([0-9a-fA-F]{2})*$/.test(text)) throw new Error("not hex");
  return Uint8Array.from(text.match(/../g) ?? [], (h) => parseInt(h, 16));
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function withStore(mode, action) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const request = action(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

/** A key the app signs with: the private CryptoKey (not extractable) and the public key's bytes. */
export class SigningKey {
  constructor(privateKey, publicKey) {
    this.privateKey = privateKey;
    this.publicKey = publicKey;
  }

  get publicHex() {
    return toHex(this.publicKey);
  }

  async sign(message) {
    return new Uint8Array(await crypto.subtle.sign("Ed25519", this.privateKey, message));
  }

  /** The signature of an operation body for the ledger `ledgerId`. */
  signOperation(ledgerId, body) {
    return this.sign(concat(OP_TAG, ledgerId, body));
  }

  /** The signature of a read: `readAuthMessage`. */
  async signRead(ledgerId, method, timestampMs, request) {
    return this.sign(await readAuthMessage(ledgerId, method, timestampMs, request));
  }
}

/** "cercle/read/v2" || ledger_id || u32 len(method) || method || u64 timestamp || SHA-256(request). */
export async function readAuthMessage(ledgerId, method, timestampMs, request) {
  const methodBytes = new TextEncoder().encode(method);
  const numbers = new DataView(new ArrayBuffer(12));
  numbers.setUint32(0, methodBytes.length);
  numbers.setBigUint64(4, BigInt(timestampMs));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", request));
  return concat(READ_TAG, ledgerId, new Uint8Array(numbers.buffer, 0, 4), methodBytes, new Uint8Array(numbers.buffer, 4, 8), digest);
}

/** The key kept in this browser, or null. */
export async function loadKey() {
  const saved = await withStore("readonly", (s) => s.get(SLOT));
  return saved ? new SigningKey(saved.privateKey, new Uint8Array(saved.publicKey)) : null;
}

async function saveKey(key) {
  await withStore("readwrite", (s) => s.put({ privateKey: key.privateKey, publicKey: key.publicKey }, SLOT));
  return key;
}

export async function forgetKey() {
  await withStore("readwrite", (s) => s.delete(SLOT));
}

/** Makes a new key in the browser; its secret is never extractable. */
export async function generateKey() {
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
  const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return saveKey(new SigningKey(pair.privateKey, publicKey));
}

/** A refusal of a key file: `kind` is "notKeyFile" or "damaged" (with the two keys). */
export class KeyFileError extends Error {
  constructor(kind, params = {}) {
    super(kind);
    this.kind = kind;
    this.params = params;
  }
}

/**
 * Imports the text of a key file made by `cercle keygen`, with the wallet's checks
 * (`decode_key_file`): the header, the 64-digit seed, and a public key line that must be
 * the seed's key. The seed goes through an extractable key only long enough to learn
 * its public key; what is kept is a non-extractable copy.
 */
export async function importKeyFile(text) {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== "");
  if (lines[0] !== KEY_FILE_HEADER || !/^[0-9a-fA-F]{64}$/.test(lines[1] ?? "")) {
    throw new KeyFileError("notKeyFile");
  }
  const pkcs8 = concat(PKCS8_PREFIX, fromHex(lines[1]));
  const probe = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, true, ["sign"]);
  const jwk = await crypto.subtle.exportKey("jwk", probe);
  const publicKey = Uint8Array.from(atob(jwk.x.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
  for (const line of lines.slice(2)) {
    if (line.startsWith(KEY_FILE_PUBLIC_KEY)) {
      const stated = line.slice(KEY_FILE_PUBLIC_KEY.length).trim().toLowerCase();
      if (stated !== toHex(publicKey)) {
        throw new KeyFileError("damaged", { stated, derived: toHex(publicKey) });
      }
    } else if (!line.startsWith("#")) {
      throw new KeyFileError("notKeyFile");
    }
  }
  const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
  return saveKey(new SigningKey(privateKey, publicKey));
}
