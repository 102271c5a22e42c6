//! Identifiers: account handles, operation ids, ledger ids and public keys.

use std::fmt;

use cercle_limits::{HANDLE_LEN_MAX, HANDLE_LEN_MIN};

/// An account handle: `[a-z0-9][a-z0-9-]{2,31}`, e.g. `boulangerie-martin`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid account handle '{0}': use 3 to 32 characters a-z, 0-9 and '-', starting with a letter or digit"
)]
pub struct InvalidHandle(pub String);

impl AccountId {
    pub fn parse(text: &str) -> Result<Self, InvalidHandle> {
        let bytes = text.as_bytes();
        let valid = (HANDLE_LEN_MIN..=HANDLE_LEN_MAX).contains(&bytes.len())
            && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
            && bytes[1..].iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid {
            Ok(AccountId(text.to_string()))
        } else {
            // Keep the echoed text short: the handle may be attacker-sized.
            let shown: String = text.chars().take(40).collect();
            Err(InvalidHandle(shown))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The client-chosen id of an operation, 16 bytes. Retries reuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OperationId(pub [u8; 16]);

impl fmt::Display for OperationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// The ledger id, 16 random bytes chosen at init. Signatures bind to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LedgerId(pub [u8; 16]);

impl fmt::Display for LedgerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// An ed25519 public key as 32 bytes. Whether it is a valid, non-weak point is checked
/// when a signature is verified against it (see `sign::verify`), and when it is
/// registered for an account (see `sign::check_public_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let bytes =
            hex::decode(text.trim()).map_err(|e| format!("public key '{}' is not hex: {e}", text.trim()))?;
        let arr: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!("a public key is 32 bytes (64 hex digits), got {} bytes", b.len())
        })?;
        Ok(PublicKey(arr))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles() {
        let check = |text: &str, ok: bool| assert_eq!(AccountId::parse(text).is_ok(), ok, "{text:?}");
        check("boulangerie-martin", true);
        check("abc", true);
        check("0ab", true);
        check("a-b", true);
        check(&"a".repeat(32), true);
        check(&"a".repeat(33), false);
        check("ab", false);
        check("-ab", false);
        check("Abc", false);
        check("ab_c", false);
        check("ab c", false);
        check("café", false);
        check("", false);
    }

    #[test]
    fn public_key_hex() {
        assert!(PublicKey::from_hex(&"ab".repeat(32)).is_ok());
        assert!(PublicKey::from_hex(&"ab".repeat(31)).unwrap_err().contains("32 bytes"));
        assert!(PublicKey::from_hex("zz").unwrap_err().contains("not hex"));
    }
}
