//! Genesis: what a ledger is before its first entry (id, currency, who governs it).

use cercle_limits::{DAY_OFFSET_MS_MAX, EXPONENT_MAX, GOVERNANCE_KEYS_MAX, OPERATION_SIGNATURES_MAX};
use sha2::{Digest, Sha256};

use crate::amount::AMBIGUOUS_EXPONENT;
use crate::codec::{DecodeError, Reader, Writer};
use crate::ids::{LedgerId, PublicKey};

/// Version 1: no quorum field (a quorum of one). Version 2 adds the quorum; a genesis with a
/// quorum of one is still written as version 1, so existing ledgers keep their hash.
/// Version 3 adds the ledger's day offset after the quorum, and is written only when the
/// offset is not zero (UTC), so every genesis of before keeps its bytes and its hash.
const GENESIS_VERSION: u8 = 1;
const GENESIS_VERSION_QUORUM: u8 = 2;
const GENESIS_VERSION_DAY_OFFSET: u8 = 3;
const DAY_MS: i64 = 86_400_000;
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
    /// The ledger's day: a fixed offset from UTC, in minutes (`+01:00` is 60), which decides
    /// when a day starts for the daily cap of a payer key. Fixed, with no daylight saving
    /// time, so a replay decides every cap the same way forever, whatever time zone
    /// database a machine has. Zero (UTC) unless `cercle-node init --day-offset` says.
    pub day_offset_minutes: i16,
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
    #[error("invalid day offset {0} minutes: at most 14 hours either side of UTC")]
    DayOffset(i16),
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
        if i64::from(self.day_offset_minutes).unsigned_abs() * 60_000 > DAY_OFFSET_MS_MAX {
            return Err(GenesisError::DayOffset(self.day_offset_minutes));
        }
        Ok(())
    }

    /// The ledger's day of the instant `timestamp_ms`: days since 1970-01-01 in the
    /// genesis's fixed offset from UTC.
    pub fn day(&self, timestamp_ms: u64) -> i64 {
        ledger_day(self.day_offset_minutes, timestamp_ms)
    }

    pub fn is_admin(&self, key: &PublicKey) -> bool {
        self.admin_keys.contains(key)
    }

    pub fn is_auditor(&self, key: &PublicKey) -> bool {
        self.auditor_keys.contains(key)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        let version = match (self.quorum, self.day_offset_minutes) {
            (1, 0) => GENESIS_VERSION,
            (_, 0) => GENESIS_VERSION_QUORUM,
            _ => GENESIS_VERSION_DAY_OFFSET,
        };
        w.u8(version).fixed(&self.ledger_id.0).str(&self.currency).u8(self.exponent);
        for keys in [&self.admin_keys, &self.auditor_keys] {
            w.u16(keys.len() as u16);
            for k in keys.iter() {
                w.fixed(&k.0);
            }
        }
        w.fixed(&self.node_key.0);
        if version >= GENESIS_VERSION_QUORUM {
            w.u8(self.quorum);
        }
        if version == GENESIS_VERSION_DAY_OFFSET {
            w.u16(self.day_offset_minutes as u16);
        }
        w.buf
    }

    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let version = r.u8("genesis version")?;
        if !(GENESIS_VERSION..=GENESIS_VERSION_DAY_OFFSET).contains(&version) {
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
        let quorum = match version {
            GENESIS_VERSION => 1,
            GENESIS_VERSION_QUORUM => match r.u8("quorum")? {
                // Version 2 exists for a quorum above one: one is written as version 1.
                0 | 1 => return Err(DecodeError::Invalid("a version 2 genesis with a quorum below 2")),
                q => q,
            },
            _ => match r.u8("quorum")? {
                0 => return Err(DecodeError::Invalid("a genesis with a quorum of 0")),
                q => q,
            },
        };
        let day_offset_minutes = if version == GENESIS_VERSION_DAY_OFFSET {
            match r.u16("day offset")? as i16 {
                // Version 3 exists for an offset: UTC is written as version 1 or 2.
                0 => return Err(DecodeError::Invalid("a version 3 genesis with a day offset of 0")),
                m => m,
            }
        } else {
            0
        };
        r.finish()?;
        Ok(Genesis {
            ledger_id,
            currency,
            exponent,
            admin_keys,
            auditor_keys,
            node_key,
            quorum,
            day_offset_minutes,
        })
    }

    /// The hash the first entry chains to, so the log is bound to its genesis.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(GENESIS_TAG);
        h.update(self.encode());
        h.finalize().into()
    }
}

/// The day of the instant `timestamp_ms` at a fixed offset of `offset_minutes` from UTC:
/// days since 1970-01-01, counted from midnight in that offset.
pub fn ledger_day(offset_minutes: i16, timestamp_ms: u64) -> i64 {
    let local_ms = i128::from(timestamp_ms) + i128::from(offset_minutes) * 60_000;
    // A u64 of milliseconds over a day fits an i64 with room to spare.
    local_ms.div_euclid(i128::from(DAY_MS)) as i64
}

/// `+01:00`, `-05:30`, `+00:00`: how the offset is written (the form `--day-offset` reads).
pub fn format_day_offset(offset_minutes: i16) -> String {
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let m = offset_minutes.unsigned_abs();
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

/// Reads `+01:00`, `-05:30`, `+0`, `0`, `+05`, `-0930`: a sign and hours, with optional minutes.
pub fn parse_day_offset(text: &str) -> Result<i16, String> {
    let bad =
        || format!("invalid day offset '{text}': give a fixed offset from UTC such as +01:00, -05:30 or 0");
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => (1, text),
    };
    let (hours, minutes) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(hours) || !digits(minutes) {
        return Err(bad());
    }
    let (h, m): (i16, i16) = (hours.parse().map_err(|_| bad())?, minutes.parse().map_err(|_| bad())?);
    if m >= 60 {
        return Err(bad());
    }
    let total = sign * (h * 60 + m);
    if i64::from(total).unsigned_abs() * 60_000 > DAY_OFFSET_MS_MAX {
        return Err(format!("invalid day offset '{text}': at most 14 hours either side of UTC"));
    }
    Ok(total)
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
            day_offset_minutes: 0,
        }
    }

    #[test]
    fn a_day_offset_is_version_3_and_utc_keeps_the_older_bytes() {
        for quorum in [1, 2] {
            let utc = genesis(2, quorum);
            let paris = Genesis { day_offset_minutes: 60, ..utc.clone() };
            assert_eq!(paris.encode()[0], GENESIS_VERSION_DAY_OFFSET);
            assert_eq!(Genesis::decode(&paris.encode()), Ok(paris.clone()));
            assert_ne!(utc.hash(), paris.hash(), "the day offset is part of what the log chains to");
            let west = Genesis { day_offset_minutes: -330, ..utc.clone() };
            assert_eq!(Genesis::decode(&west.encode()), Ok(west));
            // A version 3 genesis that says UTC is not canonical.
            let mut bytes = paris.encode();
            let n = bytes.len();
            bytes[n - 2..].copy_from_slice(&[0, 0]);
            assert!(Genesis::decode(&bytes).is_err());
        }
        assert_eq!(Genesis { day_offset_minutes: 14 * 60, ..genesis(1, 1) }.validate(), Ok(()));
        assert_eq!(
            Genesis { day_offset_minutes: -14 * 60 - 1, ..genesis(1, 1) }.validate(),
            Err(GenesisError::DayOffset(-14 * 60 - 1))
        );
    }

    #[test]
    fn the_ledger_day_starts_at_midnight_in_its_offset() {
        // 2026-11-30T23:30:00Z is the 30th in UTC and the 1st of December at +01:00.
        let t = 1_796_081_400_000u64;
        assert_eq!(ledger_day(0, t), ledger_day(0, t - 23 * 3_600_000));
        assert_eq!(ledger_day(60, t), ledger_day(0, t) + 1);
        assert_eq!(ledger_day(-300, t), ledger_day(0, t));
        assert_eq!(ledger_day(0, 0), 0);
        assert_eq!(ledger_day(-60, 0), -1);
        for (text, minutes) in [("+01:00", 60), ("-05:30", -330), ("0", 0), ("+0930", 570), ("+14:00", 840)] {
            assert_eq!(parse_day_offset(text), Ok(minutes), "{text}");
        }
        for bad in ["", "+", "1:60", "+15:00", "UTC", "+1:2:3", "++1"] {
            assert!(parse_day_offset(bad).is_err(), "{bad}");
        }
        assert_eq!(format_day_offset(-330), "-05:30");
        assert_eq!(format_day_offset(0), "+00:00");
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
