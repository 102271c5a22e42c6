//! Genesis: what a ledger is before its first entry (id, currency, who governs it).

use cercle_limits::{EXPONENT_MAX, GOVERNANCE_KEYS_MAX, OPERATION_SIGNATURES_MAX};
use sha2::{Digest, Sha256};

use crate::amount::AMBIGUOUS_EXPONENT;
use crate::codec::{DecodeError, Reader, Writer};
use crate::ids::{LedgerId, PublicKey};

/// Version 1: no quorum field (a quorum of one). Version 2 adds the quorum; a genesis with a
/// quorum of one is still written as version 1, so existing ledgers keep their hash.
const GENESIS_VERSION: u8 = 1;
const GENESIS_VERSION_QUORUM: u8 = 2;
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
    /// How many administrators sign a sensitive act (`Roles::quorum`) from the start: 1 to
    /// the number of administrators, at most `OPERATION_SIGNATURES_MAX`.
    pub quorum: u8,
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
    #[error(
        "invalid quorum {quorum}: give 1 to the number of administrators ({admins}), at most {OPERATION_SIGNATURES_MAX}"
    )]
    Quorum { quorum: u8, admins: usize },
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
        let q = usize::from(self.quorum);
        if q == 0 || q > self.admin_keys.len() || q > OPERATION_SIGNATURES_MAX {
            return Err(GenesisError::Quorum { quorum: self.quorum, admins: self.admin_keys.len() });
        }
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
        let version = if self.quorum == 1 { GENESIS_VERSION } else { GENESIS_VERSION_QUORUM };
        w.u8(version).fixed(&self.ledger_id.0).str(&self.currency).u8(self.exponent);
        for keys in [&self.admin_keys, &self.auditor_keys] {
            w.u16(keys.len() as u16);
            for k in keys.iter() {
                w.fixed(&k.0);
            }
        }
        w.fixed(&self.node_key.0);
        if version == GENESIS_VERSION_QUORUM {
            w.u8(self.quorum);
        }
        w.buf
    }

    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let version = r.u8("genesis version")?;
        if version != GENESIS_VERSION && version != GENESIS_VERSION_QUORUM {
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
        let quorum = if version == GENESIS_VERSION_QUORUM {
            match r.u8("quorum")? {
                // Version 2 exists for a quorum above one: one is written as version 1.
                0 | 1 => return Err(DecodeError::Invalid("a version 2 genesis with a quorum below 2")),
                q => q,
            }
        } else {
            1
        };
        r.finish()?;
        Ok(Genesis { ledger_id, currency, exponent, admin_keys, auditor_keys, node_key, quorum })
    }

    /// The hash the first entry chains to, so the log is bound to its genesis.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(GENESIS_TAG);
        h.update(self.encode());
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn genesis(admins: u8, quorum: u8) -> Genesis {
        let key = |seed: u8| crate::sign::Keypair::from_seed(&[seed; 32]).public_key();
        Genesis {
            ledger_id: LedgerId([1; 16]),
            currency: "CHW".into(),
            exponent: 2,
            admin_keys: (1..=admins).map(key).collect(),
            auditor_keys: vec![],
            node_key: key(100),
            quorum,
        }
    }

    #[test]
    fn a_quorum_of_one_keeps_the_version_1_bytes_and_a_larger_one_round_trips() {
        let one = genesis(2, 1);
        assert_eq!(one.encode()[0], GENESIS_VERSION);
        assert_eq!(Genesis::decode(&one.encode()), Ok(one.clone()));
        let two = genesis(2, 2);
        assert_eq!(two.encode()[0], GENESIS_VERSION_QUORUM);
        assert_eq!(two.encode().len(), one.encode().len() + 1);
        assert_eq!(Genesis::decode(&two.encode()), Ok(two.clone()));
        assert_ne!(one.hash(), two.hash(), "the quorum is part of what the log chains to");
        // A version 2 genesis that says a quorum of one is not canonical.
        let mut bytes = two.encode();
        *bytes.last_mut().unwrap() = 1;
        assert!(Genesis::decode(&bytes).is_err());
    }

    #[test]
    fn a_quorum_must_be_within_the_administrators_reach() {
        assert_eq!(genesis(2, 2).validate(), Ok(()));
        for (admins, quorum) in [(2, 0), (2, 3), (9, 9)] {
            assert_eq!(
                genesis(admins, quorum).validate(),
                Err(GenesisError::Quorum { quorum, admins: usize::from(admins) }),
                "{quorum} of {admins}"
            );
        }
    }
}
