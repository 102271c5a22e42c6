//! Genesis: what a ledger is before its first entry (id, currency, who governs it).

use cercle_limits::{EXPONENT_MAX, GOVERNANCE_KEYS_MAX};
use sha2::{Digest, Sha256};

use crate::amount::AMBIGUOUS_EXPONENT;
use crate::codec::{DecodeError, Reader, Writer};
use crate::ids::{LedgerId, PublicKey};

const GENESIS_VERSION: u8 = 1;
const GENESIS_TAG: &[u8] = b"cercle/genesis/v1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Genesis {
    pub ledger_id: LedgerId,
    /// Currency code, 3 to 12 characters A-Z and 0-9, e.g. `CHW`.
    pub currency: String,
    /// Digits after the decimal point of the currency's major unit.
    pub exponent: u8,
    pub admin_keys: Vec<PublicKey>,
    pub auditor_keys: Vec<PublicKey>,
    pub node_key: PublicKey,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    #[error("invalid currency code '{0}': use 3 to 12 characters A-Z and 0-9")]
    Currency(String),
    #[error("invalid exponent {0}: at most {EXPONENT_MAX}")]
    Exponent(u8),
    #[error(
        "invalid exponent {AMBIGUOUS_EXPONENT}: with three decimals 1.250 reads both as 1.25 and as 1250; use 2 or 4"
    )]
    AmbiguousExponent,
    #[error("a ledger needs at least one administrator key")]
    NoAdmin,
    #[error("too many {0} keys: at most {GOVERNANCE_KEYS_MAX}")]
    TooManyKeys(&'static str),
    #[error("invalid {0} key {1}: {2}")]
    Key(&'static str, PublicKey, crate::sign::SignatureError),
}

impl Genesis {
    pub fn validate(&self) -> Result<(), GenesisError> {
        let c = &self.currency;
        if !(3..=12).contains(&c.len()) || !c.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
            return Err(GenesisError::Currency(c.clone()));
        }
        if self.exponent > EXPONENT_MAX {
            return Err(GenesisError::Exponent(self.exponent));
        }
        if self.exponent == AMBIGUOUS_EXPONENT {
            return Err(GenesisError::AmbiguousExponent);
        }
        if self.admin_keys.is_empty() {
            return Err(GenesisError::NoAdmin);
        }
        for (what, keys) in [("administrator", &self.admin_keys), ("auditor", &self.auditor_keys)] {
            if keys.len() > GOVERNANCE_KEYS_MAX {
                return Err(GenesisError::TooManyKeys(what));
            }
            for k in keys.iter() {
                crate::sign::check_public_key(k).map_err(|e| GenesisError::Key(what, *k, e))?;
            }
        }
        crate::sign::check_public_key(&self.node_key)
            .map_err(|e| GenesisError::Key("node", self.node_key, e))?;
        Ok(())
    }

    pub fn is_admin(&self, key: &PublicKey) -> bool {
        self.admin_keys.contains(key)
    }

    pub fn is_auditor(&self, key: &PublicKey) -> bool {
        self.auditor_keys.contains(key)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(GENESIS_VERSION).fixed(&self.ledger_id.0).str(&self.currency).u8(self.exponent);
        for keys in [&self.admin_keys, &self.auditor_keys] {
            w.u16(keys.len() as u16);
            for k in keys.iter() {
                w.fixed(&k.0);
            }
        }
        w.fixed(&self.node_key.0);
        w.buf
    }

    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let version = r.u8("genesis version")?;
        if version != GENESIS_VERSION {
            return Err(DecodeError::Version(version));
        }
        let ledger_id = LedgerId(r.array("ledger id")?);
        let currency = r.string("currency")?;
        let exponent = r.u8("exponent")?;
        let read_keys = |r: &mut Reader<'_>| -> Result<Vec<PublicKey>, DecodeError> {
            let n = usize::from(r.u16("key count")?);
            if n > GOVERNANCE_KEYS_MAX {
                return Err(DecodeError::Invalid("key count"));
            }
            (0..n).map(|_| Ok(PublicKey(r.array("key")?))).collect()
        };
        let admin_keys = read_keys(&mut r)?;
        let auditor_keys = read_keys(&mut r)?;
        let node_key = PublicKey(r.array("node key")?);
        r.finish()?;
        Ok(Genesis { ledger_id, currency, exponent, admin_keys, auditor_keys, node_key })
    }

    /// The hash the first entry chains to, so the log is bound to its genesis.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(GENESIS_TAG);
        h.update(self.encode());
        h.finalize().into()
    }
}
