//! The derived state in sled: a checkpoint of the ledger's state (accounts, invoices, the
//! head it was taken at) and the per-account indexes (history, invoices), written in one
//! sled batch per checkpoint, never on the write path.
//!
//! sled keys, integers big-endian so key order is numeric order; every value ends with a
//! CRC32 of its key and its bytes, so a damaged or misplaced record is noticed on load:
//!
//! | key                              | value                                            |
//! |----------------------------------|--------------------------------------------------|
//! | `m/head`                         | version, size, hash, timestamp, account count, invoice count |
//! | `m/roles`                        | `Roles::encode`: administrators, auditors and quorum, once one changed |
//! | `m/groups`                       | `Groups::encode`: member groups and their limits, once one was created |
//! | `m/fees`                         | `FeeSchedule::encode`: the fee schedule, once one is set |
//! | `m/fees_charged`                 | `LastCharge::encode`: the last period charged, once one is |
//! | `m/node_keys`                    | `NodeKeys::encode`: the node key rotations, once there is one |
//! | `a` handle                       | `Account::encode`                                |
//! | `i` invoice id                   | `Invoice::encode`                                |
//! | `n` handle `0x00` issued seq     | invoice id (each firm's invoices, by issue)      |
//! | `g` issued seq, invoice id       | empty (every invoice, by issue)                  |
//! | `h` handle `0x00` first seq      | a history block: count, then the sequences as varint deltas |
//!
//! A history block holds up to `HISTORY_BLOCK_MAX` of an account's sequences; the last
//! block of each account is rewritten as it grows (sled rewrites a value cheaply; it
//! inserts scattered new keys expensively, so one key per entry would cost ten times more).
//!
//! Crash contract: a checkpoint is one `sled::Batch`, 100% visible or 0% after recovery
//! (sled's own guarantee); each is flushed into sled's file on the checkpointer's thread
//! (a killed process keeps it), never synced (sled's `flush` is only `sync_file_range`),
//! so after a power cut the checkpoint found may be an older one. It is a
//! prefix of the log either way (the caller checks its head against the log) and the log
//! replays from it.
//!
//! On a full disk sled cannot even be opened (it writes as it recovers). The store then
//! starts without it (`Derived::unopened`): reads find nothing in it, which is right, since
//! the caller rolled the whole log forward and holds it in memory; the first checkpoint
//! that finds room opens it, empties it (nothing in it was checked against the log) and
//! writes the whole state (`Derived::adopt`).

use std::collections::HashMap;
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use cercle_core::charges::LastCharge;
use cercle_core::{
    Account, AccountId, FeeSchedule, Genesis, Groups, Head, Invoice, InvoiceId, NodeKeys, Roles,
};
use cercle_limits::HISTORY_BLOCK_MAX;

use crate::StoreError;

pub(crate) const HEAD_KEY: &[u8] = b"m/head";
/// Absent until a checkpoint after the first role change: the genesis's roles hold until
/// then, so checkpoints written before roles could change are read as they are.
const ROLES_KEY: &[u8] = b"m/roles";
/// Absent until a checkpoint after the first group was created: no groups until then.
const GROUPS_KEY: &[u8] = b"m/groups";
/// Absent until a checkpoint after the first fee schedule: a ledger without one has none.
const FEES_KEY: &[u8] = b"m/fees";
/// Absent until a checkpoint after the first periodic charge.
const FEES_CHARGED_KEY: &[u8] = b"m/fees_charged";
/// Absent until a checkpoint after the first node key rotation: the genesis's key alone.
const NODE_KEYS_KEY: &[u8] = b"m/node_keys";
const ACCOUNT_PREFIX: u8 = b'a';
const INVOICE_PREFIX: u8 = b'i';
const ACCOUNT_INVOICES_PREFIX: u8 = b'n';
const ALL_INVOICES_PREFIX: u8 = b'g';
const HISTORY_PREFIX: u8 = b'h';
/// 4: account records may carry extensions (profile, activity); a checkpoint of version 3
/// is not read, so the state is rebuilt from the log, which computes them. 5: accounts
/// keep their sales by ledger month (extension 8), derived from every payment: a
/// checkpoint of version 4 has none, so it is not read either, and the log rebuilds them.
const HEAD_VERSION: u8 = 5;
const BLOCK_VERSION: u8 = 1;

/// The head a checkpoint was taken at, and how many records it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointHead {
    pub head: Head,
    pub accounts: u64,
    pub invoices: u64,
}

/// The state as a checkpoint holds it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub head: CheckpointHead,
    pub accounts: Vec<Account>,
    pub invoices: Vec<Invoice>,
    /// The governance roles at `head`; `None`: the genesis's.
    pub roles: Option<Roles>,
    /// The member groups at `head`; `None`: none.
    pub groups: Option<Groups>,
    /// The fee schedule at `head`; `None`: none was ever set.
    pub fees: Option<FeeSchedule>,
    /// The last period charged at `head`; `None`: none was.
    pub last_charge: Option<LastCharge>,
    /// The node key history at `head`; `None`: the genesis's key was never rotated.
    pub node_keys: Option<NodeKeys>,
}

/// What changed since the last checkpoint, to write as the next one.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    /// The head after the last entry the checkpoint covers, and the ledger's totals then.
    pub head: Option<CheckpointHead>,
    /// Every account and invoice that changed, as it stands at `head`.
    pub accounts: Vec<Account>,
    pub invoices: Vec<Invoice>,
    /// Every entry that concerns each account, since the last checkpoint, in order.
    pub history: Vec<(AccountId, Vec<u64>)>,
    /// The governance roles at `head`, when they differ from the genesis's.
    pub roles: Option<Roles>,
    /// The member groups at `head`, when a group changed since the last checkpoint.
    pub groups: Option<Groups>,
    /// The fee schedule at `head`, once one is set.
    pub fees: Option<FeeSchedule>,
    /// The last period charged at `head`, once one is.
    pub last_charge: Option<LastCharge>,
    /// The node key history at `head`, once the key was rotated.
    pub node_keys: Option<NodeKeys>,
}

pub(crate) fn seal(key: &[u8], mut value: Vec<u8>) -> Vec<u8> {
    let mut h = crc32fast::Hasher::new();
    h.update(key);
    h.update(&value);
    value.extend_from_slice(&h.finalize().to_be_bytes());
    value
}

/// The bytes of a sealed value, if its checksum holds.
pub(crate) fn unseal<'a>(key: &[u8], value: &'a [u8]) -> Result<&'a [u8], StoreError> {
    let corrupt = || StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: "checksum mismatch".into(),
    };
    let split = value.len().checked_sub(4).ok_or_else(corrupt)?;
    let (body, crc) = value.split_at(split);
    let mut h = crc32fast::Hasher::new();
    h.update(key);
    h.update(body);
    if h.finalize().to_be_bytes() != crc {
        return Err(corrupt());
    }
    Ok(body)
}

fn keyed(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(prefix);
    k.extend_from_slice(rest);
    k
}

fn account_key(id: &AccountId) -> Vec<u8> {
    keyed(ACCOUNT_PREFIX, id.as_str().as_bytes())
}

fn invoice_key(id: &InvoiceId) -> Vec<u8> {
    keyed(INVOICE_PREFIX, &id.0)
}

/// `prefix handle 0x00`: handles never contain 0x00, so one handle's rows are not a prefix
/// of another's.
fn per_account_prefix(prefix: u8, id: &AccountId) -> Vec<u8> {
    let mut k = keyed(prefix, id.as_str().as_bytes());
    k.push(0);
    k
}

fn per_account_key(prefix: u8, id: &AccountId, sequence: u64) -> Vec<u8> {
    let mut k = per_account_prefix(prefix, id);
    k.extend_from_slice(&sequence.to_be_bytes());
    k
}

fn encode_head(h: &CheckpointHead) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + 8 + 32 + 8 + 16);
    v.push(HEAD_VERSION);
    v.extend_from_slice(&h.head.size.to_be_bytes());
    v.extend_from_slice(&h.head.hash);
    v.extend_from_slice(&h.head.timestamp_ms.to_be_bytes());
    v.extend_from_slice(&h.accounts.to_be_bytes());
    v.extend_from_slice(&h.invoices.to_be_bytes());
    seal(HEAD_KEY, v)
}

pub(crate) fn decode_head(v: &[u8]) -> Result<CheckpointHead, StoreError> {
    let v = unseal(HEAD_KEY, v)?;
    let bad = || StoreError::Corrupt { key: "m/head".into(), reason: "bad length or version".into() };
    if v.len() != 1 + 8 + 32 + 8 + 16 || v[0] != HEAD_VERSION {
        return Err(bad());
    }
    let u64_at = |at: usize| u64::from_be_bytes(v[at..at + 8].try_into().unwrap_or([0; 8]));
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&v[9..41]);
    Ok(CheckpointHead {
        head: Head { size: u64_at(1), hash, timestamp_ms: u64_at(41) },
        accounts: u64_at(49),
        invoices: u64_at(57),
    })
}

/// A history block being filled: where it starts, and its sequences.
#[derive(Debug, Clone, Default)]
struct Block {
    first: u64,
    sequences: Vec<u64>,
}

impl Block {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(3 + self.sequences.len() * 3);
        v.push(BLOCK_VERSION);
        v.extend_from_slice(&(self.sequences.len() as u16).to_be_bytes());
        let mut previous = self.first;
        for &s in &self.sequences {
            let mut d = s - previous;
            previous = s;
            loop {
                let byte = (d & 0x7f) as u8;
                d >>= 7;
                if d == 0 {
                    v.push(byte);
                    break;
                }
                v.push(byte | 0x80);
            }
        }
        v
    }

    fn decode(first: u64, v: &[u8]) -> Option<Block> {
        let (&version, rest) = v.split_first()?;
        if version != BLOCK_VERSION || rest.len() < 2 {
            return None;
        }
        let count = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let mut sequences = Vec::with_capacity(count);
        let (mut previous, mut value, mut shift) = (first, 0u64, 0u32);
        for &byte in &rest[2..] {
            value |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                previous = previous.checked_add(value)?;
                sequences.push(previous);
                (value, shift) = (0, 0);
            } else if shift > 63 {
                return None;
            }
        }
        (sequences.len() == count && count <= HISTORY_BLOCK_MAX && shift == 0)
            .then_some(Block { first, sequences })
    }
}

/// The sled side of the store.
pub(crate) struct Derived {
    /// `None` while sled could not be opened for want of disk space: reads then find
    /// nothing here (see the module's docs).
    db: RwLock<Option<sled::Db>>,
    /// Each account's last history block, as written (loaded on first use).
    tails: Mutex<HashMap<AccountId, Block>>,
}

impl Derived {
    pub(crate) fn new(db: sled::Db) -> Self {
        Derived { db: RwLock::new(Some(db)), tails: Mutex::new(HashMap::new()) }
    }

    /// The state database not opened (the disk is full): empty to readers until `adopt`.
    pub(crate) fn unopened() -> Self {
        Derived { db: RwLock::new(None), tails: Mutex::new(HashMap::new()) }
    }

    fn db(&self) -> RwLockReadGuard<'_, Option<sled::Db>> {
        self.db.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether sled is open (it is, unless the node started on a full disk and no
    /// checkpoint has found room since).
    pub(crate) fn is_open(&self) -> bool {
        self.db().is_some()
    }

    /// Takes `db`, opened late, in place of the database that could not be opened: nothing
    /// in it was read or checked against the log, so it is emptied (its head first, so that
    /// an interruption leaves a database the next start rebuilds), for the caller to write
    /// the whole state into it.
    pub(crate) fn adopt(&self, db: sled::Db) -> Result<(), StoreError> {
        db.remove(HEAD_KEY)?;
        db.flush()?;
        db.clear()?;
        self.tails.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        *self.db.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(db);
        Ok(())
    }

    /// Flushes sled's buffers into its file, if it is open.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        if let Some(db) = self.db().as_ref() {
            db.flush()?;
        }
        Ok(())
    }

    /// Bytes sled uses on disk (0 when it is not open).
    pub(crate) fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(match self.db().as_ref() {
            Some(db) => db.size_on_disk()?,
            None => 0,
        })
    }

    /// The checkpoint's head, `None` when there is no checkpoint.
    pub(crate) fn head(&self) -> Result<Option<CheckpointHead>, StoreError> {
        let db = self.db();
        let Some(db) = db.as_ref() else { return Ok(None) };
        match db.get(HEAD_KEY)? {
            None => Ok(None),
            Some(v) => decode_head(&v).map(Some),
        }
    }

    /// The state the checkpoint holds, every record checked (checksums, decoding, counts).
    pub(crate) fn snapshot(&self, genesis: &Genesis) -> Result<Option<Snapshot>, StoreError> {
        let Some(head) = self.head()? else { return Ok(None) };
        let accounts = self.scan(ACCOUNT_PREFIX, |_, v| Account::decode(v).map_err(|e| e.to_string()))?;
        let invoices = self.scan(INVOICE_PREFIX, |_, v| Invoice::decode(v).map_err(|e| e.to_string()))?;
        if accounts.len() as u64 != head.accounts || invoices.len() as u64 != head.invoices {
            return Err(StoreError::Corrupt {
                key: "m/head".into(),
                reason: format!(
                    "it counts {} accounts and {} invoices, the state holds {} and {}",
                    head.accounts,
                    head.invoices,
                    accounts.len(),
                    invoices.len()
                ),
            });
        }
        let roles = match self.db().as_ref().map(|db| db.get(ROLES_KEY)).transpose()?.flatten() {
            None => None,
            Some(v) => Some(
                Roles::decode(unseal(ROLES_KEY, &v)?)
                    .map_err(|e| StoreError::Corrupt { key: "m/roles".into(), reason: e.to_string() })?,
            ),
        };
        let groups = match self.db().as_ref().map(|db| db.get(GROUPS_KEY)).transpose()?.flatten() {
            None => None,
            Some(v) => Some(
                Groups::decode(unseal(GROUPS_KEY, &v)?)
                    .map_err(|e| StoreError::Corrupt { key: "m/groups".into(), reason: e.to_string() })?,
            ),
        };
        let fees = match self.db().as_ref().map(|db| db.get(FEES_KEY)).transpose()?.flatten() {
            None => None,
            Some(v) => Some(
                FeeSchedule::decode(unseal(FEES_KEY, &v)?)
                    .map_err(|e| StoreError::Corrupt { key: "m/fees".into(), reason: e.to_string() })?,
            ),
        };
        let last_charge =
            match self.db().as_ref().map(|db| db.get(FEES_CHARGED_KEY)).transpose()?.flatten() {
                None => None,
                Some(v) => Some(LastCharge::decode(unseal(FEES_CHARGED_KEY, &v)?).map_err(|e| {
                    StoreError::Corrupt { key: "m/fees_charged".into(), reason: e.to_string() }
                })?),
            };
        let node_keys = match self.db().as_ref().map(|db| db.get(NODE_KEYS_KEY)).transpose()?.flatten() {
            None => None,
            Some(v) => Some(
                NodeKeys::decode(genesis, unseal(NODE_KEYS_KEY, &v)?)
                    .map_err(|e| StoreError::Corrupt { key: "m/node_keys".into(), reason: e.to_string() })?,
            ),
        };
        Ok(Some(Snapshot { head, accounts, invoices, roles, groups, fees, last_charge, node_keys }))
    }

    fn scan<T>(
        &self,
        prefix: u8,
        decode: impl Fn(&[u8], &[u8]) -> Result<T, String>,
    ) -> Result<Vec<T>, StoreError> {
        let db = self.db();
        let Some(db) = db.as_ref() else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for item in db.scan_prefix([prefix]) {
            let (key, value) = item?;
            let body = unseal(&key, &value)?;
            out.push(decode(&key, body).map_err(|reason| StoreError::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                reason,
            })?);
        }
        Ok(out)
    }

    /// Writes `c` as one batch: the records, the new invoices' index rows, the history,
    /// then the head. Invoices issued since the last checkpoint are those whose issue
    /// sequence is past its head.
    pub(crate) fn write(&self, c: &Checkpoint) -> Result<(), StoreError> {
        let previous = self.head()?.map_or(0, |h| h.head.size);
        let db = self.db();
        let Some(db) = db.as_ref() else {
            return Err(StoreError::Bound("a checkpoint written to a state database not opened".into()));
        };
        let mut batch = sled::Batch::default();
        for a in &c.accounts {
            let key = account_key(&a.id);
            batch.insert(key.clone(), seal(&key, a.encode()));
        }
        for i in &c.invoices {
            let key = invoice_key(&i.id);
            batch.insert(key.clone(), seal(&key, i.encode()));
            if i.issued_at_sequence > previous {
                for firm in [&i.payer, &i.payee] {
                    let key = per_account_key(ACCOUNT_INVOICES_PREFIX, firm, i.issued_at_sequence);
                    batch.insert(key.clone(), seal(&key, i.id.0.to_vec()));
                }
                let mut key = keyed(ALL_INVOICES_PREFIX, &i.issued_at_sequence.to_be_bytes());
                key.extend_from_slice(&i.id.0);
                batch.insert(key.clone(), seal(&key, Vec::new()));
            }
        }
        let mut tails = self.tails.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (account, sequences) in &c.history {
            self.append_history(db, &mut tails, &mut batch, account, sequences)?;
        }
        if let Some(roles) = &c.roles {
            batch.insert(ROLES_KEY, seal(ROLES_KEY, roles.encode()));
        }
        if let Some(groups) = &c.groups {
            batch.insert(GROUPS_KEY, seal(GROUPS_KEY, groups.encode()));
        }
        if let Some(fees) = &c.fees {
            batch.insert(FEES_KEY, seal(FEES_KEY, fees.encode()));
        }
        if let Some(last) = &c.last_charge {
            batch.insert(FEES_CHARGED_KEY, seal(FEES_CHARGED_KEY, last.encode()));
        }
        if let Some(node_keys) = &c.node_keys {
            batch.insert(NODE_KEYS_KEY, seal(NODE_KEYS_KEY, node_keys.encode()));
        }
        if let Some(head) = &c.head {
            batch.insert(HEAD_KEY, encode_head(head));
        }
        db.apply_batch(batch)?;
        // Into the file, so a killed process keeps it; `flush` does not fsync, so a power
        // cut may still take it (the checkpoint found is then an older one).
        db.flush()?;
        Ok(())
    }

    /// Whether the state database holds nothing at all (a new ledger's, or one cleared, or
    /// one not opened).
    pub(crate) fn is_empty(&self) -> bool {
        self.db().as_ref().is_none_or(|db| db.is_empty())
    }

    fn append_history(
        &self,
        db: &sled::Db,
        tails: &mut HashMap<AccountId, Block>,
        batch: &mut sled::Batch,
        account: &AccountId,
        sequences: &[u64],
    ) -> Result<(), StoreError> {
        let tail = match tails.entry(account.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(last_block(db, account)?.unwrap_or_default())
            }
        };
        for &s in sequences {
            if tail.sequences.last().is_some_and(|&last| last >= s) {
                continue;
            }
            if tail.sequences.len() == HISTORY_BLOCK_MAX || tail.sequences.is_empty() {
                if tail.sequences.len() == HISTORY_BLOCK_MAX {
                    let key = per_account_key(HISTORY_PREFIX, account, tail.first);
                    batch.insert(key.clone(), seal(&key, tail.encode()));
                }
                *tail = Block { first: s, sequences: Vec::new() };
            }
            tail.sequences.push(s);
        }
        if !tail.sequences.is_empty() {
            let key = per_account_key(HISTORY_PREFIX, account, tail.first);
            batch.insert(key.clone(), seal(&key, tail.encode()));
        }
        Ok(())
    }

    /// Up to `limit` sequences of `account`'s history after `after`, oldest first.
    pub(crate) fn history(
        &self,
        account: &AccountId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let db = self.db();
        let Some(db) = db.as_ref() else { return Ok(Vec::new()) };
        let prefix = per_account_prefix(HISTORY_PREFIX, account);
        // The block holding `after + 1` starts at or before it: begin from the last block
        // that starts at or before, then go forward.
        let start_key = per_account_key(HISTORY_PREFIX, account, after.saturating_add(1));
        let first = match db.range(prefix.clone()..=start_key.clone()).next_back() {
            Some(item) => item?.0.to_vec(),
            None => start_key,
        };
        let mut out = Vec::new();
        for item in db.range(first..) {
            let (key, value) = item?;
            if !key.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            let block = decode_block(&prefix, &key, &value)?;
            out.extend(block.sequences.into_iter().filter(|&s| s > after).take(limit - out.len()));
        }
        Ok(out)
    }

    /// Up to `limit` sequences of `account`'s history before `before`, newest first.
    pub(crate) fn history_back(
        &self,
        account: &AccountId,
        before: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let db = self.db();
        let Some(db) = db.as_ref() else { return Ok(Vec::new()) };
        let prefix = per_account_prefix(HISTORY_PREFIX, account);
        let end = per_account_key(HISTORY_PREFIX, account, before);
        let mut out = Vec::new();
        for item in db.range(prefix.clone()..end).rev() {
            let (key, value) = item?;
            if out.len() >= limit {
                break;
            }
            let block = decode_block(&prefix, &key, &value)?;
            out.extend(block.sequences.into_iter().rev().filter(|&s| s < before).take(limit - out.len()));
        }
        Ok(out)
    }

    pub(crate) fn invoice(&self, id: &InvoiceId) -> Result<Option<Invoice>, StoreError> {
        let db = self.db();
        let Some(db) = db.as_ref() else { return Ok(None) };
        let key = invoice_key(id);
        match db.get(&key)? {
            None => Ok(None),
            Some(v) => Invoice::decode(unseal(&key, &v)?).map(Some).map_err(|e| corrupt(&key, e)),
        }
    }

    /// Up to `limit` ids of `account`'s invoices issued after `after_sequence`, oldest
    /// first, with their issue sequence.
    pub(crate) fn account_invoices(
        &self,
        account: &AccountId,
        after_sequence: u64,
        limit: usize,
    ) -> Result<Vec<(u64, InvoiceId)>, StoreError> {
        let db = self.db();
        let Some(db) = db.as_ref() else { return Ok(Vec::new()) };
        let prefix = per_account_prefix(ACCOUNT_INVOICES_PREFIX, account);
        let start = per_account_key(ACCOUNT_INVOICES_PREFIX, account, after_sequence.saturating_add(1));
        let mut out = Vec::new();
        for item in db.range(start..) {
            let (key, value) = item?;
            if !key.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            let id: [u8; 16] =
                unseal(&key, &value)?.try_into().map_err(|_| corrupt(&key, "bad invoice index"))?;
            let seq: [u8; 8] =
                key[prefix.len()..].try_into().map_err(|_| corrupt(&key, "bad invoice index key"))?;
            out.push((u64::from_be_bytes(seq), InvoiceId(id)));
        }
        Ok(out)
    }

    /// Up to `limit` invoice ids of the whole ledger issued after `after_sequence`, in
    /// issue order, with their issue sequence.
    pub(crate) fn all_invoices(
        &self,
        after_sequence: u64,
        limit: usize,
    ) -> Result<Vec<(u64, InvoiceId)>, StoreError> {
        let db = self.db();
        let Some(db) = db.as_ref() else { return Ok(Vec::new()) };
        let start = keyed(ALL_INVOICES_PREFIX, &after_sequence.saturating_add(1).to_be_bytes());
        let mut out = Vec::new();
        for item in db.range(start..) {
            let (key, value) = item?;
            if key.first() != Some(&ALL_INVOICES_PREFIX) || out.len() >= limit {
                break;
            }
            unseal(&key, &value)?;
            let seq: [u8; 8] = key[1..9].try_into().map_err(|_| corrupt(&key, "bad invoice order key"))?;
            let id: [u8; 16] = key[9..].try_into().map_err(|_| corrupt(&key, "bad invoice order key"))?;
            out.push((u64::from_be_bytes(seq), InvoiceId(id)));
        }
        Ok(out)
    }

    /// Removes everything: the state is about to be rebuilt.
    pub(crate) fn clear(&self) -> Result<(), StoreError> {
        if let Some(db) = self.db().as_ref() {
            db.clear()?;
        }
        self.tails.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        Ok(())
    }
}

/// The last history block of `account` in `db`.
fn last_block(db: &sled::Db, account: &AccountId) -> Result<Option<Block>, StoreError> {
    let prefix = per_account_prefix(HISTORY_PREFIX, account);
    match db.scan_prefix(&prefix).next_back() {
        None => Ok(None),
        Some(item) => {
            let (key, value) = item?;
            decode_block(&prefix, &key, &value).map(Some)
        }
    }
}

fn decode_block(prefix: &[u8], key: &[u8], value: &[u8]) -> Result<Block, StoreError> {
    let body = unseal(key, value)?;
    let first: [u8; 8] = key[prefix.len()..].try_into().map_err(|_| corrupt(key, "bad history key"))?;
    Block::decode(u64::from_be_bytes(first), body).ok_or_else(|| corrupt(key, "bad history block"))
}

fn corrupt(key: &[u8], reason: impl ToString) -> StoreError {
    StoreError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), reason: reason.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_round_trips() {
        let block = Block { first: 5, sequences: vec![5, 6, 200, 70_000, 1 << 40] };
        assert_eq!(Block::decode(5, &block.encode()).map(|b| b.sequences), Some(block.sequences.clone()));
        let mut bad = block.encode();
        bad[2] += 1;
        assert!(Block::decode(5, &bad).is_none(), "a wrong count is refused");
    }

    #[test]
    fn history_pages_forward_and_back_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let derived = Derived::new(sled::Config::new().path(dir.path()).temporary(true).open().unwrap());
        let alice = AccountId::parse("alice").unwrap();
        let all: Vec<u64> = (1..=1_000).map(|i| i * 3).collect();
        for chunk in all.chunks(77) {
            let c = Checkpoint { history: vec![(alice.clone(), chunk.to_vec())], ..Checkpoint::default() };
            derived.write(&c).unwrap();
        }
        assert_eq!(derived.history(&alice, 0, 5_000).unwrap(), all);
        assert_eq!(derived.history(&alice, 300, 3).unwrap(), [303, 306, 309]);
        assert_eq!(derived.history(&alice, 2_999, 10).unwrap(), [3_000]);
        assert_eq!(derived.history_back(&alice, 3_001, 2).unwrap(), [3_000, 2_997]);
        assert_eq!(derived.history_back(&alice, 770, 3).unwrap(), [768, 765, 762]);
        // A fresh handle finds the last block again and continues it.
        let reopened = Derived::new(derived.db().clone().unwrap());
        reopened
            .write(&Checkpoint { history: vec![(alice.clone(), vec![3_003])], ..Checkpoint::default() })
            .unwrap();
        assert_eq!(reopened.history(&alice, 2_990, 10).unwrap(), [2_991, 2_994, 2_997, 3_000, 3_003]);
        assert!(derived.history(&AccountId::parse("bob").unwrap(), 0, 10).unwrap().is_empty());
    }

    #[test]
    fn an_unopened_database_reads_empty_and_is_emptied_when_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let alice = AccountId::parse("alice").unwrap();
        let db = sled::Config::new().path(dir.path()).temporary(true).open().unwrap();
        let old = Checkpoint { history: vec![(alice.clone(), vec![1, 2, 3])], ..Checkpoint::default() };
        Derived::new(db.clone()).write(&old).unwrap();

        let derived = Derived::unopened();
        assert!(derived.is_empty() && !derived.is_open());
        assert!(derived.history(&alice, 0, 10).unwrap().is_empty());
        assert!(derived.head().unwrap().is_none());
        assert!(derived.write(&Checkpoint::default()).is_err(), "nothing is written before it is opened");
        derived.adopt(db).unwrap();
        assert!(derived.is_open());
        assert!(derived.is_empty(), "what it held was never checked against the log: emptied");
        let new = Checkpoint { history: vec![(alice.clone(), vec![2, 5])], ..Checkpoint::default() };
        derived.write(&new).unwrap();
        assert_eq!(derived.history(&alice, 0, 10).unwrap(), [2, 5]);
    }
}
