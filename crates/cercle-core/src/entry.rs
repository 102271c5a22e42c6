//! Entries: accepted operations as written in the log, and their canonical encoding.
//!
//! The canonical encoding is what is hashed (the hash chain, later the Merkle tree) and
//! persisted. Integers are big-endian; the envelope is kept verbatim so anyone can check
//! its signature again.
//!
//! Two versions: 1 for every entry without a clearing record, 2 (a u32 balance count and
//! the record) for clearing runs, whose outcome can change many balances.

use sha2::{Digest, Sha256};

use crate::clearing::ClearingRecord;
use crate::codec::{DecodeError, Reader, Writer};
use crate::ids::{AccountId, PublicKey};
use crate::op::Operation;

const ENTRY_VERSION: u8 = 1;
const ENTRY_VERSION_CLEARING: u8 = 2;

/// A signed operation as it travels and as it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The encoded operation body, exactly as signed.
    pub body: Vec<u8>,
    pub signer: PublicKey,
    pub signature: [u8; 64],
}

impl Envelope {
    /// SHA-256 of the body: two envelopes with the same operation id are the same
    /// operation only if their bodies hash the same.
    pub fn body_hash(&self) -> [u8; 32] {
        Sha256::digest(&self.body).into()
    }
}

/// One balance an operation changed, after the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceAfter {
    pub account: AccountId,
    pub balance_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1 for the first entry.
    pub sequence: u64,
    /// The node's clock when it accepted the operation, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Hash of the previous entry, or of the genesis for the first entry.
    pub prev_hash: [u8; 32],
    pub envelope: Envelope,
    /// The outcome: every balance the operation changed.
    pub balances_after: Vec<BalanceAfter>,
    /// For a clearing run: what it cleared, and the certificate that it is optimal.
    pub clearing: Option<ClearingRecord>,
}

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        let version = if self.clearing.is_some() { ENTRY_VERSION_CLEARING } else { ENTRY_VERSION };
        w.u8(version)
            .u64(self.sequence)
            .u64(self.timestamp_ms)
            .fixed(&self.prev_hash)
            .fixed(&self.envelope.signer.0)
            .fixed(&self.envelope.signature)
            .bytes(&self.envelope.body);
        if version == ENTRY_VERSION {
            w.u16(self.balances_after.len() as u16);
        } else {
            w.u32(self.balances_after.len() as u32);
        }
        for b in &self.balances_after {
            w.str(b.account.as_str()).i64(b.balance_minor);
        }
        if let Some(record) = &self.clearing {
            record.encode_into(&mut w);
        }
        w.buf
    }

    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let version = r.u8("entry version")?;
        if version != ENTRY_VERSION && version != ENTRY_VERSION_CLEARING {
            return Err(DecodeError::Version(version));
        }
        let sequence = r.u64("sequence")?;
        let timestamp_ms = r.u64("timestamp")?;
        let prev_hash = r.array("previous hash")?;
        let signer = PublicKey(r.array("signer")?);
        let signature = r.array("signature")?;
        let body = r.bytes("body")?.to_vec();
        let n = if version == ENTRY_VERSION {
            u32::from(r.u16("balance count")?)
        } else {
            r.u32("balance count")?
        };
        if n as usize > crate::clearing::CLEARING_FIRMS_MAX {
            return Err(DecodeError::Invalid("balance count"));
        }
        let mut balances_after = Vec::with_capacity(n.min(16) as usize);
        for _ in 0..n {
            let account =
                AccountId::parse(&r.string("account")?).map_err(|_| DecodeError::Invalid("account"))?;
            let balance_minor = r.i64("balance")?;
            balances_after.push(BalanceAfter { account, balance_minor });
        }
        let clearing =
            if version == ENTRY_VERSION_CLEARING { Some(ClearingRecord::decode_from(&mut r)?) } else { None };
        r.finish()?;
        Ok(Entry {
            sequence,
            timestamp_ms,
            prev_hash,
            envelope: Envelope { body, signer, signature },
            balances_after,
            clearing,
        })
    }

    /// Every account this entry concerns, given its decoded operation: those the operation
    /// names, and for a clearing run the firms it changed. Histories index on these.
    pub fn accounts<'a>(&'a self, op: &'a Operation) -> Vec<&'a AccountId> {
        let mut accounts = op.kind.accounts();
        if let Some(record) = &self.clearing {
            accounts.extend(record.changed_accounts());
        }
        accounts
    }

    /// SHA-256 of the canonical encoding: the next entry's `prev_hash`.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trips_and_every_byte_matters() {
        let entry = Entry {
            sequence: 42,
            timestamp_ms: 1_700_000_000_000,
            prev_hash: [3; 32],
            envelope: Envelope { body: vec![1, 2, 3], signer: PublicKey([4; 32]), signature: [5; 64] },
            balances_after: vec![
                BalanceAfter { account: AccountId::parse("abc").unwrap(), balance_minor: -7 },
                BalanceAfter { account: AccountId::parse("xyz").unwrap(), balance_minor: 7 },
            ],
            clearing: None,
        };
        let bytes = entry.encode();
        assert_eq!(Entry::decode(&bytes), Ok(entry.clone()));
        let hash = entry.hash();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1;
            if let Ok(e) = Entry::decode(&b) {
                assert_ne!(e.hash(), hash, "flipping byte {i} kept the hash");
            }
        }
        assert!(Entry::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Entry::decode(&longer), Err(DecodeError::Trailing(1)));
    }
}
