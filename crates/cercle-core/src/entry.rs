//! Entries: accepted operations as written in the log, their canonical encoding, and the
//! commitment that is hashed into the chain and the Merkle tree.
//!
//! The encoding is frozen (version 1): integers big-endian, strings and bytes with a u32
//! length, the envelope verbatim so anyone can check its signatures again.
//!
//! ```text
//! u8 version (1) | u64 sequence | u64 timestamp_ms | [32] prev_hash
//! | bytes body | u8 signature count | ([32] signer | [64] signature)*
//! | u32 balance count | (str account | i64 balance)*
//! | u8 section count | (u8 tag | u32 part count | (bytes part)*)*
//! ```
//!
//! A **section** is a list of parts that an entry carries beside its operation: a clearing
//! run's record is one, with a part per firm. The **commitment** is the same encoding with
//! each section's parts replaced by the RFC 9162 Merkle root of their leaf hashes
//! (`u8 tag | u32 part count | [32] root`): the entry's hash (the next entry's `prev_hash`)
//! and its leaf in the log's Merkle tree are over the commitment. So a firm can be shown
//! its own part of a section with a path to the root, and verify the entry's inclusion in
//! the log, without seeing the other firms' parts. An entry without sections has a
//! commitment equal to its encoding.
//!
//! An entry's hash is its leaf hash, `SHA-256(0x00 || commitment)` (RFC 9162): the next
//! entry's `prev_hash` names it, and the log's Merkle tree has it as a leaf, so one hash
//! per entry serves both.

use cercle_limits::{BALANCES_MAX, PARTS_MAX, SECTIONS_MAX, SIGNATURES_MAX};
use sha2::{Digest, Sha256};

use crate::codec::{DecodeError, Reader, Writer};
use crate::ids::{AccountId, PublicKey};
use crate::merkle::{self, Hash};

const ENTRY_VERSION: u8 = 1;

/// One signature of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    pub signer: PublicKey,
    pub signature: [u8; 64],
}

/// A signed operation as it travels and as it is stored: the body exactly as signed, and
/// one or more signatures over it (several for acts that need a quorum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub body: Vec<u8>,
    pub signatures: Vec<Signature>,
}

impl Envelope {
    /// An envelope with one signature.
    pub fn single(body: Vec<u8>, signer: PublicKey, signature: [u8; 64]) -> Self {
        Envelope { body, signatures: vec![Signature { signer, signature }] }
    }

    /// The first signer: the one who submits, and who acts for an account.
    pub fn signer(&self) -> PublicKey {
        self.signatures.first().map_or(PublicKey([0; 32]), |s| s.signer)
    }

    /// Every signer, the first one first.
    pub fn signers(&self) -> Vec<PublicKey> {
        self.signatures.iter().map(|s| s.signer).collect()
    }

    /// SHA-256 of the body.
    pub fn body_hash(&self) -> [u8; 32] {
        Sha256::digest(&self.body).into()
    }

    /// What makes two envelopes the same operation: the same body signed by the same
    /// keys. An ed25519 signature is deterministic and binds its key and message, so the
    /// first signature's bytes tell envelopes apart: SHA-256 of the signers and the first
    /// signature, 16 bytes of it (a forger would need a second body with the same
    /// signature under the same key).
    pub fn fingerprint(&self) -> [u8; 16] {
        let mut h = Sha256::new();
        h.update(b"cercle/envelope/v1");
        h.update([self.signatures.len() as u8]);
        for s in &self.signatures {
            h.update(s.signer.0);
        }
        if let Some(first) = self.signatures.first() {
            h.update(first.signature);
        }
        let full: [u8; 32] = h.finalize().into();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }
}

/// One balance an operation changed, after the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceAfter {
    pub account: AccountId,
    pub balance_minor: i64,
}

/// What a section holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum SectionTag {
    /// A clearing run's record: a header part, then a part per firm (`clearing`).
    Clearing = 1,
    /// A limit rule's application: a header part, then a part per firm (`limitrule`).
    LimitRule = 2,
    /// A periodic charge's record: a header part, then a part per firm (`charges`).
    Charges = 3,
}

impl SectionTag {
    pub fn from_u8(v: u8) -> Result<Self, DecodeError> {
        match v {
            1 => Ok(SectionTag::Clearing),
            2 => Ok(SectionTag::LimitRule),
            3 => Ok(SectionTag::Charges),
            _ => Err(DecodeError::Invalid("section tag")),
        }
    }
}

/// A list of parts an entry carries beside its operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub tag: SectionTag,
    pub parts: Vec<Vec<u8>>,
}

impl Section {
    /// The Merkle root over the parts' leaf hashes.
    pub fn root(&self) -> Hash {
        let leaves: Vec<Hash> = self.parts.iter().map(|p| merkle::leaf_hash(p)).collect();
        merkle::root(&leaves)
    }
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
    /// The outcome: every balance the operation changed (a section may record more).
    pub balances_after: Vec<BalanceAfter>,
    pub sections: Vec<Section>,
}

impl Entry {
    /// Everything before the sections, shared by the encoding and the commitment.
    fn encode_head(&self, w: &mut Writer) {
        w.u8(ENTRY_VERSION).u64(self.sequence).u64(self.timestamp_ms).fixed(&self.prev_hash);
        w.bytes(&self.envelope.body).u8(self.envelope.signatures.len() as u8);
        for s in &self.envelope.signatures {
            w.fixed(&s.signer.0).fixed(&s.signature);
        }
        w.u32(self.balances_after.len() as u32);
        for b in &self.balances_after {
            w.str(b.account.as_str()).i64(b.balance_minor);
        }
    }

    /// The canonical encoding, as stored in the log.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.encode_head(&mut w);
        w.u8(self.sections.len() as u8);
        for s in &self.sections {
            w.u8(s.tag as u8).u32(s.parts.len() as u32);
            for p in &s.parts {
                w.bytes(p);
            }
        }
        w.buf
    }

    /// The bytes that are hashed: the encoding with each section's parts replaced by their
    /// root. Equal to `encode()` for an entry without sections.
    pub fn commitment(&self) -> Vec<u8> {
        let roots: Vec<(SectionTag, u32, Hash)> =
            self.sections.iter().map(|s| (s.tag, s.parts.len() as u32, s.root())).collect();
        EntryView::commitment_of(self, &roots)
    }

    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let mut entry = Entry::decode_head(&mut r)?;
        entry.sections = decode_sections(&mut r)?;
        r.finish()?;
        Ok(entry)
    }

    /// Everything before the sections, the same in an entry and in its commitment: the
    /// entry, with no sections yet.
    fn decode_head(r: &mut Reader<'_>) -> Result<Entry, DecodeError> {
        let version = r.u8("entry version")?;
        if version != ENTRY_VERSION {
            return Err(DecodeError::Version(version));
        }
        let sequence = r.u64("sequence")?;
        let timestamp_ms = r.u64("timestamp")?;
        let prev_hash = r.array("previous hash")?;
        let body = r.bytes("body")?.to_vec();
        let n = usize::from(r.u8("signature count")?);
        if n == 0 || n > SIGNATURES_MAX {
            return Err(DecodeError::Invalid("signature count"));
        }
        let mut signatures = Vec::with_capacity(n);
        for _ in 0..n {
            signatures
                .push(Signature { signer: PublicKey(r.array("signer")?), signature: r.array("signature")? });
        }
        let n = r.u32("balance count")? as usize;
        if n > BALANCES_MAX {
            return Err(DecodeError::Invalid("balance count"));
        }
        let mut balances_after = Vec::with_capacity(n);
        for _ in 0..n {
            let account =
                AccountId::parse(&r.string("account")?).map_err(|_| DecodeError::Invalid("account"))?;
            balances_after.push(BalanceAfter { account, balance_minor: r.i64("balance")? });
        }
        Ok(Entry {
            sequence,
            timestamp_ms,
            prev_hash,
            envelope: Envelope { body, signatures },
            balances_after,
            sections: Vec::new(),
        })
    }

    /// The entry's hash: the leaf hash of its commitment, which the next entry's
    /// `prev_hash` names and the log's Merkle tree holds.
    pub fn hash(&self) -> [u8; 32] {
        merkle::leaf_hash(&self.commitment())
    }

    /// Every balance the entry changed, after the change: those it records itself, then
    /// those of its clearing run's firms that paid or received, in handle order.
    pub fn balances(&self) -> Vec<BalanceAfter> {
        let mut all = self.balances_after.clone();
        for part in crate::clearing::firm_parts(self) {
            if let Some(balance_minor) = part.balance_after {
                all.push(BalanceAfter { account: part.firm.account, balance_minor });
            }
        }
        all
    }

    /// The section with `tag`, if the entry has one.
    pub fn section(&self, tag: SectionTag) -> Option<&Section> {
        self.sections.iter().find(|s| s.tag == tag)
    }
}

/// The fixed fields at the start of an encoded entry, read without decoding the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryHead {
    pub sequence: u64,
    pub timestamp_ms: u64,
    pub prev_hash: [u8; 32],
}

/// What identifies an encoded entry's operation for idempotency: its id, validity and
/// fingerprint, read without decoding the whole entry (the log's start-up scan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryIdentity {
    pub operation_id: crate::ids::OperationId,
    pub valid_until_ms: u64,
    pub fingerprint: [u8; 16],
}

impl Entry {
    /// Reads the sequence, timestamp and previous hash of an encoded entry.
    pub fn peek(data: &[u8]) -> Result<EntryHead, DecodeError> {
        let mut r = Reader::new(data);
        let version = r.u8("entry version")?;
        if version != ENTRY_VERSION {
            return Err(DecodeError::Version(version));
        }
        Ok(EntryHead {
            sequence: r.u64("sequence")?,
            timestamp_ms: r.u64("timestamp")?,
            prev_hash: r.array("previous hash")?,
        })
    }

    /// The hash of an encoded entry (`Entry::hash`), decoding it only when it has sections.
    pub fn hash_of_encoding(data: &[u8]) -> Result<Hash, DecodeError> {
        let mut r = Reader::new(data);
        r.take(1 + 8 + 8 + 32, "entry head")?;
        r.bytes("body")?;
        let n = usize::from(r.u8("signature count")?);
        r.take(n * 96, "signatures")?;
        let n = r.u32("balance count")? as usize;
        if n > BALANCES_MAX {
            return Err(DecodeError::Invalid("balance count"));
        }
        for _ in 0..n {
            r.bytes("account")?;
            r.take(8, "balance")?;
        }
        if r.u8("section count")? == 0 {
            r.finish()?;
            return Ok(merkle::leaf_hash(data));
        }
        Ok(Entry::decode(data)?.hash())
    }

    /// The operation id, validity and fingerprint of an encoded entry, reading only what
    /// they need (the body is decoded by `body::decode` only when it is not in the
    /// canonical form every encoder produces for these first two fields).
    pub fn identity(data: &[u8]) -> Result<EntryIdentity, DecodeError> {
        let mut r = Reader::new(data);
        r.take(1 + 8 + 8 + 32, "entry head")?;
        let body = r.bytes("body")?;
        let n = usize::from(r.u8("signature count")?);
        let mut signatures = Vec::with_capacity(n.min(SIGNATURES_MAX));
        for _ in 0..n.min(SIGNATURES_MAX) {
            signatures
                .push(Signature { signer: PublicKey(r.array("signer")?), signature: r.array("signature")? });
        }
        let op = crate::body::decode_identity(body).ok_or(DecodeError::Invalid("operation body"))?;
        let envelope = Envelope { body: Vec::new(), signatures };
        Ok(EntryIdentity { operation_id: op.0, valid_until_ms: op.1, fingerprint: envelope.fingerprint() })
    }
}

fn decode_sections(r: &mut Reader<'_>) -> Result<Vec<Section>, DecodeError> {
    let n = usize::from(r.u8("section count")?);
    if n > SECTIONS_MAX {
        return Err(DecodeError::Invalid("section count"));
    }
    let mut sections: Vec<Section> = Vec::with_capacity(n);
    for _ in 0..n {
        let tag = SectionTag::from_u8(r.u8("section tag")?)?;
        if sections.last().is_some_and(|s| s.tag >= tag) {
            return Err(DecodeError::Invalid("section order"));
        }
        let count = r.u32("part count")? as usize;
        if count > PARTS_MAX {
            return Err(DecodeError::Invalid("part count"));
        }
        let mut parts = Vec::with_capacity(count.min(4096));
        for _ in 0..count {
            parts.push(r.bytes("part")?.to_vec());
        }
        sections.push(Section { tag, parts });
    }
    Ok(sections)
}

/// A part of a section as shown to a reader: its place, its bytes, and (when the reader
/// is not shown every part) its Merkle path to the section's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownPart {
    pub index: u32,
    pub data: Vec<u8>,
    pub path: Vec<Hash>,
}

/// A section as shown to a reader: its root, and the parts the reader may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionView {
    pub tag: SectionTag,
    pub part_count: u32,
    pub root: Hash,
    pub parts: Vec<ShownPart>,
}

/// An entry as shown to a reader: everything but the parts of its sections that are not
/// the reader's. Its commitment, hence its hash and leaf hash, is the entry's own, so a
/// view proves the entry's inclusion in the log like the whole entry does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryView {
    /// The entry with its sections emptied (their parts are in `sections`).
    pub entry: Entry,
    pub sections: Vec<SectionView>,
}

/// Why a view does not hold together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("section {tag:?}: part {index} is not part of its root")]
    PartNotInRoot { tag: SectionTag, index: u32 },
    #[error("section {tag:?}: part {index} is beyond its {count} parts")]
    PartOutOfRange { tag: SectionTag, index: u32, count: u32 },
}

impl EntryView {
    /// The view of `entry` showing the parts for which `show(tag, index)` holds, each with
    /// its path. Showing every part gives the whole entry back (`into_entry`).
    pub fn of(entry: &Entry, show: impl Fn(SectionTag, u32) -> bool) -> EntryView {
        let sections = entry
            .sections
            .iter()
            .map(|s| {
                let leaves: Vec<Hash> = s.parts.iter().map(|p| merkle::leaf_hash(p)).collect();
                let tree: merkle::MemoryTree = leaves.iter().copied().collect();
                let size = leaves.len() as u64;
                let all = (0..s.parts.len() as u32).all(|i| show(s.tag, i));
                let parts = s
                    .parts
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| show(s.tag, *i as u32))
                    .map(|(i, p)| ShownPart {
                        index: i as u32,
                        data: p.clone(),
                        // Every index is below the tree's size, so the proof exists.
                        path: if all {
                            Vec::new()
                        } else {
                            merkle::inclusion_proof(i as u64, size, &tree).unwrap_or_default()
                        },
                    })
                    .collect();
                SectionView {
                    tag: s.tag,
                    part_count: s.parts.len() as u32,
                    root: merkle::root(&leaves),
                    parts,
                }
            })
            .collect();
        EntryView { entry: Entry { sections: Vec::new(), ..entry.clone() }, sections }
    }

    fn commitment_of(entry: &Entry, roots: &[(SectionTag, u32, Hash)]) -> Vec<u8> {
        let mut w = Writer::default();
        entry.encode_head(&mut w);
        w.u8(roots.len() as u8);
        for (tag, count, root) in roots {
            w.u8(*tag as u8).u32(*count).fixed(root);
        }
        w.buf
    }

    /// A view from its commitment (the bytes that are hashed) and the parts it shows,
    /// each checked against its section's root.
    pub fn from_commitment(
        commitment: &[u8],
        shown: Vec<(SectionTag, ShownPart)>,
    ) -> Result<EntryView, DecodeError> {
        let mut r = Reader::new(commitment);
        let entry = Entry::decode_head(&mut r)?;
        let count = usize::from(r.u8("section count")?);
        if count > SECTIONS_MAX {
            return Err(DecodeError::Invalid("section count"));
        }
        let mut sections: Vec<SectionView> = Vec::with_capacity(count);
        for _ in 0..count {
            let tag = SectionTag::from_u8(r.u8("section tag")?)?;
            let part_count = r.u32("part count")?;
            let root = r.array("section root")?;
            sections.push(SectionView { tag, part_count, root, parts: Vec::new() });
        }
        r.finish()?;
        for (tag, part) in shown {
            let section =
                sections.iter_mut().find(|s| s.tag == tag).ok_or(DecodeError::Invalid("a part's section"))?;
            section.parts.push(part);
        }
        let view = EntryView { entry, sections };
        view.check_parts().map_err(|_| DecodeError::Invalid("a part not in its section's root"))?;
        Ok(view)
    }

    /// The bytes that are hashed, as for the whole entry.
    pub fn commitment(&self) -> Vec<u8> {
        let roots: Vec<(SectionTag, u32, Hash)> =
            self.sections.iter().map(|s| (s.tag, s.part_count, s.root)).collect();
        EntryView::commitment_of(&self.entry, &roots)
    }

    /// The entry's hash (its leaf hash), as for the whole entry.
    pub fn hash(&self) -> [u8; 32] {
        merkle::leaf_hash(&self.commitment())
    }

    /// Checks every shown part against its section's root: a view whose parts were not
    /// committed to by the entry is refused.
    pub fn check_parts(&self) -> Result<(), ViewError> {
        for s in &self.sections {
            let whole = s.parts.len() as u32 == s.part_count
                && s.parts.iter().enumerate().all(|(i, p)| p.index == i as u32);
            if whole {
                let leaves: Vec<Hash> = s.parts.iter().map(|p| merkle::leaf_hash(&p.data)).collect();
                if merkle::root(&leaves) != s.root {
                    return Err(ViewError::PartNotInRoot { tag: s.tag, index: 0 });
                }
                continue;
            }
            for p in &s.parts {
                if p.index >= s.part_count {
                    return Err(ViewError::PartOutOfRange {
                        tag: s.tag,
                        index: p.index,
                        count: s.part_count,
                    });
                }
                let leaf = merkle::leaf_hash(&p.data);
                merkle::verify_inclusion(
                    &leaf,
                    u64::from(p.index),
                    u64::from(s.part_count),
                    &p.path,
                    &s.root,
                )
                .map_err(|_| ViewError::PartNotInRoot { tag: s.tag, index: p.index })?;
            }
        }
        Ok(())
    }

    /// The whole entry, when every part of every section is shown (and matches its root).
    pub fn into_entry(self) -> Option<Entry> {
        self.check_parts().ok()?;
        let mut entry = self.entry;
        for s in self.sections {
            if s.parts.len() as u32 != s.part_count {
                return None;
            }
            entry.sections.push(Section { tag: s.tag, parts: s.parts.into_iter().map(|p| p.data).collect() });
        }
        Some(entry)
    }

    /// The view an account's holder is shown: everything but other firms' parts. Of a
    /// clearing section or a limit rule's, the header and the account's own part.
    pub fn for_account(entry: &Entry, account: &AccountId) -> EntryView {
        let own = entry.section(SectionTag::Clearing).and_then(|s| crate::clearing::part_index(s, account));
        let own_limit =
            entry.section(SectionTag::LimitRule).and_then(|s| crate::limitrule::part_index(s, account));
        let charged = entry.section(SectionTag::Charges).and_then(|s| crate::charges::part_index(s, account));
        EntryView::of(entry, |tag, index| match tag {
            SectionTag::Clearing => index == 0 || Some(index) == own,
            SectionTag::LimitRule => index == 0 || Some(index) == own_limit,
            SectionTag::Charges => index == 0 || Some(index) == charged,
        })
    }

    /// The view that shows everything (administrators and auditors).
    pub fn whole(entry: &Entry) -> EntryView {
        EntryView::of(entry, |_, _| true)
    }

    /// The balance of `account` after the entry, if the entry changed it and the view
    /// shows it.
    pub fn balance_of(&self, account: &AccountId) -> Option<i64> {
        if let Some(b) = self.entry.balances_after.iter().find(|b| &b.account == account) {
            return Some(b.balance_minor);
        }
        if let Some(charge) = crate::charges::firm_charge(self, account) {
            return Some(charge.balance_after_minor);
        }
        if let Some(h) = crate::charges::header(self).filter(|h| &h.fee_account == account) {
            return Some(h.fee_balance_after_minor);
        }
        crate::clearing::firm_part(self, account).and_then(|p| p.balance_after)
    }

    /// Does the entry concern `account`: named by its operation, its balance changed (the
    /// association's account by a levy), changed by its clearing run, or its limit changed
    /// by a limit rule?
    pub fn concerns(&self, op: &crate::op::Operation, account: &AccountId) -> bool {
        op.kind.accounts().contains(&account)
            || self.entry.balances_after.iter().any(|b| &b.account == account)
            || crate::clearing::firm_part(self, account).is_some_and(|p| p.firm.changed)
            || crate::charges::firm_charge(self, account).is_some()
            || crate::charges::header(self).is_some_and(|h| &h.fee_account == account)
            || self.limit_part(account).is_some_and(|p| p.changed())
    }

    /// `account`'s part of the entry's limit rule section, if the view shows it.
    pub fn limit_part(&self, account: &AccountId) -> Option<crate::limitrule::FirmLimit> {
        let s = self.sections.iter().find(|s| s.tag == SectionTag::LimitRule)?;
        s.parts
            .iter()
            .filter(|p| p.index > 0)
            .filter_map(|p| crate::limitrule::FirmLimit::decode(&p.data).ok())
            .find(|f| &f.account == account)
    }

    /// The part `index` of the section `tag`, if shown.
    pub fn part(&self, tag: SectionTag, index: u32) -> Option<&[u8]> {
        let s = self.sections.iter().find(|s| s.tag == tag)?;
        s.parts.iter().find(|p| p.index == index).map(|p| p.data.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sections: Vec<Section>) -> Entry {
        Entry {
            sequence: 42,
            timestamp_ms: 1_700_000_000_000,
            prev_hash: [3; 32],
            envelope: Envelope::single(vec![1, 2, 3], PublicKey([4; 32]), [5; 64]),
            balances_after: vec![
                BalanceAfter { account: AccountId::parse("abc").unwrap(), balance_minor: -7 },
                BalanceAfter { account: AccountId::parse("xyz").unwrap(), balance_minor: 7 },
            ],
            sections,
        }
    }

    #[test]
    fn entry_round_trips_and_every_byte_matters() {
        let clearing = Section { tag: SectionTag::Clearing, parts: vec![vec![9; 5], vec![8; 3], vec![]] };
        for e in [entry(vec![]), entry(vec![clearing])] {
            let bytes = e.encode();
            assert_eq!(Entry::decode(&bytes), Ok(e.clone()));
            let hash = e.hash();
            for i in 0..bytes.len() {
                let mut b = bytes.clone();
                b[i] ^= 1;
                if let Ok(changed) = Entry::decode(&b) {
                    assert_ne!(changed.hash(), hash, "flipping byte {i} kept the hash");
                }
            }
            assert!(Entry::decode(&bytes[..bytes.len() - 1]).is_err());
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(Entry::decode(&longer), Err(DecodeError::Trailing(1)));
        }
        // Without sections, the commitment is the encoding.
        let plain = entry(vec![]);
        assert_eq!(plain.commitment(), plain.encode());
    }

    #[test]
    fn a_view_shows_some_parts_and_proves_the_same_entry() {
        let parts: Vec<Vec<u8>> = (0..7u8).map(|i| vec![i; usize::from(i) + 1]).collect();
        let e = entry(vec![Section { tag: SectionTag::Clearing, parts }]);
        let view = EntryView::of(&e, |_, i| i == 0 || i == 4);
        assert_eq!(view.hash(), e.hash());
        assert_eq!(view.check_parts(), Ok(()));
        assert_eq!(view.part(SectionTag::Clearing, 4), Some(&[4u8; 5][..]));
        assert_eq!(view.part(SectionTag::Clearing, 3), None);
        assert_eq!(view.clone().into_entry(), None, "a partial view is not the whole entry");
        // A part changed after the fact is not in the root.
        let mut forged = view.clone();
        forged.sections[0].parts[1].data[0] ^= 1;
        assert_eq!(
            forged.check_parts(),
            Err(ViewError::PartNotInRoot { tag: SectionTag::Clearing, index: 4 })
        );
        // Showing every part gives the entry back.
        let all = EntryView::of(&e, |_, _| true);
        assert_eq!(all.into_entry(), Some(e.clone()));
        // A view rebuilt from its commitment and its shown parts is the same view.
        let shown: Vec<(SectionTag, ShownPart)> =
            view.sections.iter().flat_map(|s| s.parts.iter().map(|p| (s.tag, p.clone()))).collect();
        assert_eq!(EntryView::from_commitment(&view.commitment(), shown), Ok(view.clone()));
        let mut wrong = view.sections[0].parts[0].clone();
        wrong.data.push(0);
        assert!(EntryView::from_commitment(&view.commitment(), vec![(SectionTag::Clearing, wrong)]).is_err());
    }
}
