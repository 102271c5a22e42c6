//! Signature rules: what is signed, and how a signature is checked.
//!
//! Every message starts with a fixed domain tag and the ledger id, so a signature made
//! for one purpose or one ledger is worthless for another. Verification is strict
//! (`verify_strict`): non-canonical signatures and small-order keys are refused.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::ids::{LedgerId, PublicKey};

/// Domain tag of an operation signature.
pub const OP_TAG: &[u8] = b"cercle/op/v1";
/// Domain tag of a read-authentication signature. v2 covers the whole request.
pub const READ_TAG: &[u8] = b"cercle/read/v2";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the public key is not a valid ed25519 point")]
    InvalidKey,
    #[error("the public key has small order and cannot sign")]
    WeakKey,
    #[error("the public key is not in canonical encoding (its y coordinate is not reduced)")]
    NonCanonicalKey,
    #[error("the signature does not verify")]
    BadSignature,
}

/// The bytes an operation signature covers: `OP_TAG || ledger_id || body`.
pub fn op_message(ledger_id: &LedgerId, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(OP_TAG.len() + 16 + body.len());
    msg.extend_from_slice(OP_TAG);
    msg.extend_from_slice(&ledger_id.0);
    msg.extend_from_slice(body);
    msg
}

/// The bytes a read-authentication signature covers:
/// `READ_TAG || ledger_id || u32 len(method) || method || u64 timestamp_ms || SHA-256(request)`.
///
/// `method` is the gRPC method name (e.g. `GetAccount`); `request` is the request message
/// in canonical protobuf encoding (fields in field-number order, fields at their default
/// value left out, no unknown fields: what prost and the common protobuf libraries write),
/// so a captured signature is worth nothing for another page, account or period. The
/// node re-encodes the request it decoded and checks the signature over that.
pub fn read_auth_message(ledger_id: &LedgerId, method: &str, timestamp_ms: u64, request: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let mut msg = Vec::with_capacity(READ_TAG.len() + 16 + 4 + method.len() + 8 + 32);
    msg.extend_from_slice(READ_TAG);
    msg.extend_from_slice(&ledger_id.0);
    msg.extend_from_slice(&(method.len() as u32).to_be_bytes());
    msg.extend_from_slice(method.as_bytes());
    msg.extend_from_slice(&timestamp_ms.to_be_bytes());
    msg.extend_from_slice(&sha2::Sha256::digest(request));
    msg
}

/// Checks that a key may be registered: a valid point, not of small order.
pub fn check_public_key(key: &PublicKey) -> Result<(), SignatureError> {
    let vk = VerifyingKey::from_bytes(&key.0).map_err(|_| SignatureError::InvalidKey)?;
    if vk.is_weak() {
        return Err(SignatureError::WeakKey);
    }
    // A point has one canonical encoding; decompression also accepts y >= p and the sign
    // bit of x = 0 set, which name the same point under other bytes. Registering those
    // would let one key appear as several.
    if vk.to_edwards().compress().to_bytes() != key.0 {
        return Err(SignatureError::NonCanonicalKey);
    }
    Ok(())
}

/// Strict ed25519 verification of `signature` by `key` over `message`.
pub fn verify(key: &PublicKey, message: &[u8], signature: &[u8; 64]) -> Result<(), SignatureError> {
    let vk = VerifyingKey::from_bytes(&key.0).map_err(|_| SignatureError::InvalidKey)?;
    if vk.is_weak() {
        return Err(SignatureError::WeakKey);
    }
    let sig = Signature::from_bytes(signature);
    vk.verify_strict(message, &sig).map_err(|_| SignatureError::BadSignature)
}

/// A signing key held by a client (wallet, node). Generating one needs randomness, which
/// the caller provides as a 32-byte seed: the core never reads a random source itself.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Keypair { signing: SigningKey::from_bytes(seed) }
    }

    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// Signs an operation body for `ledger_id`.
    pub fn sign_op(&self, ledger_id: &LedgerId, body: &[u8]) -> [u8; 64] {
        self.sign(&op_message(ledger_id, body))
    }
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(f, "Keypair({})", self.public_key())
    }
}

/// First line of a key file.
pub const KEY_FILE_HEADER: &str = "cercle-ed25519-secret-key-v1";
/// The start of a key file's line that states its public key.
pub const KEY_FILE_PUBLIC_KEY: &str = "# public key:";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    #[error("not a Cercle key file: the first line must be '{KEY_FILE_HEADER}'")]
    Header,
    #[error("the key file's second line must be 64 hex digits (the 32-byte secret seed)")]
    Seed,
    #[error("the key file's '{KEY_FILE_PUBLIC_KEY}' line is not a public key in hex")]
    PublicKeyLine,
    #[error(
        "the key file is damaged: its public key line says {stated}, but its secret is the key of {derived} (restore the file from a backup)"
    )]
    PublicKeyMismatch { stated: PublicKey, derived: PublicKey },
    #[error("the key file has an unexpected line after the secret; only '#' comment lines may follow it")]
    ExtraLine,
}

/// The text of a key file: a header line, the secret seed in hex, and the public key as a
/// comment, which `decode_key_file` checks against the seed.
pub fn encode_key_file(keypair: &Keypair) -> String {
    format!(
        "{KEY_FILE_HEADER}\n{}\n{KEY_FILE_PUBLIC_KEY} {}\n",
        hex::encode(keypair.seed()),
        keypair.public_key()
    )
}

/// Reads a key file. The public key line is optional, but when present it must be the
/// key of the seed: a changed digit in either is a damaged file, not another key.
pub fn decode_key_file(text: &str) -> Result<Keypair, KeyFileError> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some(KEY_FILE_HEADER) {
        return Err(KeyFileError::Header);
    }
    let seed_hex = lines.next().ok_or(KeyFileError::Seed)?;
    let seed: [u8; 32] =
        hex::decode(seed_hex).ok().and_then(|b| b.try_into().ok()).ok_or(KeyFileError::Seed)?;
    let keypair = Keypair::from_seed(&seed);
    for line in lines {
        if let Some(stated) = line.strip_prefix(KEY_FILE_PUBLIC_KEY) {
            let stated = PublicKey::from_hex(stated).map_err(|_| KeyFileError::PublicKeyLine)?;
            let derived = keypair.public_key();
            if stated != derived {
                return Err(KeyFileError::PublicKeyMismatch { stated, derived });
            }
        } else if !line.starts_with('#') {
            return Err(KeyFileError::ExtraLine);
        }
    }
    Ok(keypair)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair(n: u8) -> Keypair {
        Keypair::from_seed(&[n; 32])
    }

    #[test]
    fn signature_binds_to_ledger_and_body() {
        let kp = keypair(1);
        let ledger_a = LedgerId([1; 16]);
        let ledger_b = LedgerId([2; 16]);
        let body = b"pay 10 to bakery".to_vec();
        let sig = kp.sign_op(&ledger_a, &body);
        let check = |ledger: &LedgerId, body: &[u8], sig: &[u8; 64]| {
            verify(&kp.public_key(), &op_message(ledger, body), sig)
        };
        assert_eq!(check(&ledger_a, &body, &sig), Ok(()));
        assert_eq!(check(&ledger_b, &body, &sig), Err(SignatureError::BadSignature));
        for i in 0..body.len() {
            let mut flipped = body.clone();
            flipped[i] ^= 1;
            assert_eq!(check(&ledger_a, &flipped, &sig), Err(SignatureError::BadSignature));
        }
        for i in 0..64 {
            let mut flipped = sig;
            flipped[i] ^= 0x10;
            assert!(check(&ledger_a, &body, &flipped).is_err(), "flipped signature byte {i}");
        }
        // Another key does not verify.
        let other = keypair(2).public_key();
        assert_eq!(verify(&other, &op_message(&ledger_a, &body), &sig), Err(SignatureError::BadSignature));
    }

    #[test]
    fn small_order_keys_are_refused() {
        // The identity point (y = 1) has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let key = PublicKey(identity);
        assert_eq!(check_public_key(&key), Err(SignatureError::WeakKey));
        assert_eq!(verify(&key, b"m", &[0; 64]), Err(SignatureError::WeakKey));
        assert_eq!(check_public_key(&keypair(3).public_key()), Ok(()));
    }

    #[test]
    fn non_canonical_key_encodings_are_refused() {
        // y + p for y < 19 still fits 255 bits: the same point as y, under other bytes.
        let mut found = 0;
        for y in 0u8..19 {
            let mut bytes = [0xffu8; 32];
            bytes[0] = 0xed + y;
            bytes[31] = 0x7f;
            let Ok(vk) = VerifyingKey::from_bytes(&bytes) else { continue };
            if vk.is_weak() {
                continue;
            }
            assert_eq!(check_public_key(&PublicKey(bytes)), Err(SignatureError::NonCanonicalKey), "y = {y}");
            found += 1;
        }
        assert!(found > 0, "no non-canonical encoding of a strong point was tried");
    }

    #[test]
    fn non_canonical_s_is_refused() {
        let kp = keypair(4);
        let msg = b"hello";
        let mut sig = kp.sign(msg);
        // Adding the group order L to s gives a non-canonical encoding of the same scalar.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(sig[32 + i]) + u16::from(L[i]) + carry;
            sig[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        assert!(verify(&kp.public_key(), msg, &sig).is_err());
    }

    #[test]
    fn read_auth_messages_differ_by_every_field() {
        let l = LedgerId([7; 16]);
        let base = read_auth_message(&l, "GetAccount", 5, b"abc");
        assert_ne!(base, read_auth_message(&LedgerId([8; 16]), "GetAccount", 5, b"abc"));
        assert_ne!(base, read_auth_message(&l, "ListEntries", 5, b"abc"));
        assert_ne!(base, read_auth_message(&l, "GetAccount", 6, b"abc"));
        assert_ne!(base, read_auth_message(&l, "GetAccount", 5, b"abd"));
        // The method's length is part of the message: no shifting of bytes between fields.
        assert_ne!(read_auth_message(&l, "Get", 5, b""), read_auth_message(&l, "GetA", 5, b""));
    }

    #[test]
    fn key_file_round_trips() {
        let kp = keypair(9);
        let text = encode_key_file(&kp);
        let back = decode_key_file(&text).unwrap();
        assert_eq!(back.public_key(), kp.public_key());
        assert_eq!(decode_key_file("nope\n").unwrap_err(), KeyFileError::Header);
        assert_eq!(decode_key_file(&format!("{KEY_FILE_HEADER}\nzz\n")).unwrap_err(), KeyFileError::Seed);
    }

    #[test]
    fn a_key_file_whose_public_key_line_disagrees_is_refused() {
        let kp = keypair(9);
        let seed = hex::encode(kp.seed());
        let public = kp.public_key().to_hex();
        let check = |text: String, expected: Result<(), KeyFileError>| {
            assert_eq!(
                decode_key_file(&text).map(|k| assert_eq!(k.public_key(), kp.public_key())),
                expected,
                "{text}"
            );
        };
        // One changed hex digit in the seed, or in the public key line: refused.
        let flip = |hex: &str| {
            let (first, rest) = hex.split_at(1);
            format!("{}{rest}", if first == "0" { "1" } else { "0" })
        };
        let changed_seed = flip(&seed);
        let derived =
            Keypair::from_seed(&hex::decode(&changed_seed).unwrap().try_into().unwrap()).public_key();
        check(
            format!("{KEY_FILE_HEADER}\n{changed_seed}\n{KEY_FILE_PUBLIC_KEY} {public}\n"),
            Err(KeyFileError::PublicKeyMismatch { stated: kp.public_key(), derived }),
        );
        let changed_public = flip(&public);
        check(
            format!("{KEY_FILE_HEADER}\n{seed}\n{KEY_FILE_PUBLIC_KEY} {changed_public}\n"),
            Err(KeyFileError::PublicKeyMismatch {
                stated: PublicKey::from_hex(&changed_public).unwrap(),
                derived: kp.public_key(),
            }),
        );
        check(
            format!("{KEY_FILE_HEADER}\n{seed}\n{KEY_FILE_PUBLIC_KEY} xyz\n"),
            Err(KeyFileError::PublicKeyLine),
        );
        // No public key line, or comments: accepted. Anything else after the seed: refused.
        check(format!("{KEY_FILE_HEADER}\n{seed}\n"), Ok(()));
        check(
            format!(
                "{KEY_FILE_HEADER}\n{seed}\n# made on the shop's laptop\n{KEY_FILE_PUBLIC_KEY} {public}\n"
            ),
            Ok(()),
        );
        check(format!("{KEY_FILE_HEADER}\n{seed}\n{seed}\n"), Err(KeyFileError::ExtraLine));
    }
}
