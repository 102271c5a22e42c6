//! The storage adapter: persists what the core decided, durably, and reads it back.
//!
//! A ledger directory holds three things:
//!
//! - `genesis.bin`: the genesis, written once at creation and synced.
//! - `entries.log`: the log of entries, append-only and checksummed (`log` module). It is
//!   the source of truth, and the only file the node waits on: each group of entries is
//!   written with one `write` and one `fdatasync` before any of them is acknowledged.
//! - `state/`: a sled database holding what is derived from the log: accounts, the
//!   operation-id index, each account's history index, the position of every entry in the
//!   log, and the head it has applied. sled is never synced on the write path (its
//!   `flush` is only `sync_file_range` on Linux); it can always be rolled forward or
//!   rebuilt from the log.
//!
//! sled keys, integers big-endian so key order is numeric order:
//!
//! | key                          | value                                   |
//! |------------------------------|-----------------------------------------|
//! | `m/head`                     | version, size u64, hash, timestamp u64  |
//! | `l` sequence                 | version, log offset u64, length u32, leaf hash |
//! | `a` handle                   | `Account::encode`                       |
//! | `o` operation id             | version, sequence u64                   |
//! | `h` handle `0x00` sequence   | empty (the account's history index)     |
//! | `t` level u8, index u64      | hash of a complete Merkle subtree (level >= 1) |
//! | `i` invoice id               | `Invoice::encode`                       |
//! | `n` handle `0x00` sequence   | invoice id (each firm's invoices, by issue) |
//!
//! Crash contract. After a crash or power cut at any moment, on the next open:
//! - every group whose `fdatasync` completed (so every acknowledged operation) is in the
//!   log, exactly once, and its effects are in the state;
//! - a group whose write was interrupted is either entirely present (the sync happened but
//!   the acknowledgement did not get out) or cut away as a torn tail;
//! - the state is the replay of the log: if sled lags behind it is rolled forward, if it
//!   disagrees or cannot be opened it is rebuilt from the log.

pub mod log;

use std::path::{Path, PathBuf};

use std::sync::Mutex;

use cercle_core::checkpoint::TreeHead;
use cercle_core::merkle::{self, Frontier, Hash, HashSource};
use cercle_core::{
    Account, AccountId, Entry, Genesis, Head, Invoice, InvoiceId, Ledger, OperationId, ReplayError, Replayer,
    State,
};

use crate::log::{LogFile, RecordPos, Witness, WitnessCheck, sync_dir};

const HEAD_KEY: &[u8] = b"m/head";
const LOG_PREFIX: u8 = b'l';
const ACCOUNT_PREFIX: u8 = b'a';
const OPERATION_PREFIX: u8 = b'o';
const HISTORY_PREFIX: u8 = b'h';
const SUBTREE_PREFIX: u8 = b't';
const INVOICE_PREFIX: u8 = b'i';
const INVOICE_INDEX_PREFIX: u8 = b'n';

/// A page of history stops after the entry that takes it past this many bytes: clearing
/// entries can be megabytes, and a page must fit a response.
pub const PAGE_BYTES_MAX: usize = 4 * 1024 * 1024;
const RECORD_VERSION: u8 = 1;
const HEAD_VERSION: u8 = 2;
const HEAD_BYTES: usize = 1 + 8 + 32 + 8 + 4;

const GENESIS_FILE: &str = "genesis.bin";
/// The node's last signed tree head: a witness of how far the log reached.
const TREE_HEAD_FILE: &str = "tree-head";
const TREE_HEAD_MAGIC: &[u8; 8] = b"CERCLTH1";
/// Every loss an operator accepted, one JSON object a line.
const LOSSES_FILE: &str = "LOSSES.jsonl";
const TREE_HEAD_BYTES: usize = 8 + 8 + 32 + 8 + 64;
const LOG_FILE: &str = "entries.log";
const STATE_DIR: &str = "state";
const LOCK_FILE: &str = "LOCK";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database error: {0}")]
    Sled(#[from] sled::Error),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the data directory {0} already holds a ledger")]
    AlreadyInitialised(String),
    #[error("the data directory {0} holds no ledger: run `cercle-node init` first")]
    NotInitialised(String),
    #[error("the ledger in {0} is in use by another process (a running node?)")]
    InUse(String),
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("the log does not replay: {0}")]
    Replay(#[from] ReplayError),
    /// The log lost or changed entries that were committed. Nothing was changed.
    #[error(
        "the log {path} is corrupt at entry {} (byte {}): {}; {}. Nothing was changed. To recover, restore the data directory from a backup, or accept the loss of entry {} and every later one with `cercle-node recover --accept-loss` (it keeps the damaged file and records the loss)",
        damage.sequence, damage.offset, damage.reason, damage.why_not_torn, damage.sequence
    )]
    LogCorrupt { path: String, damage: log::Damage },
    /// A bound of the storage format would be broken.
    #[error("{0}")]
    Bound(String),
}

fn corrupt(key: &[u8], reason: impl ToString) -> StoreError {
    StoreError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), reason: reason.to_string() }
}

/// One accepted operation, ready to persist.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub entry: Entry,
    pub operation_id: OperationId,
    /// The new state of every account the operation touched.
    pub accounts: Vec<Account>,
    /// The new state of every invoice the operation touched.
    pub invoices: Vec<Invoice>,
}

/// Why a group could not be committed, and what that means for it.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Nothing of the group is durable: it may be reported as failed.
    #[error("the group was not written: {0}")]
    NotWritten(StoreError),
    /// The group is durable in the log but the state could not be updated. The state is
    /// now behind the log; the node must stop and roll forward on the next start.
    #[error("the group is in the log but the state could not be updated: {0}")]
    NotIndexed(StoreError),
}

/// How `Store::open` found the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenOutcome {
    /// The stored state equals the replayed log.
    Verified,
    /// The state was behind the log by this many entries and was rolled forward.
    RolledForward(u64),
    /// The state disagreed with the log, or was missing or unreadable: rebuilt from it.
    Rebuilt,
}

/// Options of `Store::open`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    /// Check every entry's signature again while replaying (an audit, and `rebuild`).
    /// Without it the replay trusts the signatures checked when the entries were written.
    pub verify_signatures: bool,
}

/// What `Store::open` did, for the start-up log line.
#[derive(Debug, Clone)]
pub struct OpenReport {
    pub outcome: OpenOutcome,
    pub recovery: log::Recovery,
}

pub struct Store {
    dir: PathBuf,
    genesis: Genesis,
    log: LogFile,
    db: sled::Db,
    /// The directory's exclusive lock, released when the store is dropped.
    _lock: std::fs::File,
    /// The right edge of the Merkle tree over the entries the state has applied.
    frontier: Mutex<Frontier>,
}

fn log_key(sequence: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = LOG_PREFIX;
    k[1..].copy_from_slice(&sequence.to_be_bytes());
    k
}

fn account_key(id: &AccountId) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.as_str().len());
    k.push(ACCOUNT_PREFIX);
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

fn operation_key(id: &OperationId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = OPERATION_PREFIX;
    k[1..].copy_from_slice(&id.0);
    k
}

fn history_prefix(id: &AccountId) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + id.as_str().len() + 8);
    k.push(HISTORY_PREFIX);
    k.extend_from_slice(id.as_str().as_bytes());
    // Handles never contain 0x00, so "abc\0" cannot be a prefix of another handle's rows.
    k.push(0);
    k
}

fn history_key(id: &AccountId, sequence: u64) -> Vec<u8> {
    let mut k = history_prefix(id);
    k.extend_from_slice(&sequence.to_be_bytes());
    k
}

fn invoice_key(id: &InvoiceId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = INVOICE_PREFIX;
    k[1..].copy_from_slice(&id.0);
    k
}

fn invoice_index_prefix(account: &AccountId) -> Vec<u8> {
    let mut k = history_prefix(account);
    k[0] = INVOICE_INDEX_PREFIX;
    k
}

fn invoice_index_key(account: &AccountId, sequence: u64) -> Vec<u8> {
    let mut k = invoice_index_prefix(account);
    k.extend_from_slice(&sequence.to_be_bytes());
    k
}

/// Stores an invoice, and when it is new (issued by this entry) indexes it under both firms.
fn put_invoice(batch: &mut sled::Batch, invoice: &Invoice, sequence: u64) {
    batch.insert(&invoice_key(&invoice.id), invoice.encode());
    if invoice.issued_at_sequence == sequence {
        for firm in [&invoice.payer, &invoice.payee] {
            batch.insert(invoice_index_key(firm, invoice.issued_at_sequence), &invoice.id.0);
        }
    }
}

fn encode_head(head: &Head) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEAD_BYTES);
    v.push(HEAD_VERSION);
    v.extend_from_slice(&head.size.to_be_bytes());
    v.extend_from_slice(&head.hash);
    v.extend_from_slice(&head.timestamp_ms.to_be_bytes());
    let crc = crc32fast::hash(&v);
    v.extend_from_slice(&crc.to_be_bytes());
    v
}

/// The head record is checksummed: it is a witness of the log's size, so a damaged one
/// must not pass for a true one.
fn decode_head(v: &[u8]) -> Result<Head, StoreError> {
    if v.len() != HEAD_BYTES || v[0] != HEAD_VERSION {
        return Err(corrupt(HEAD_KEY, "bad length or version"));
    }
    let (body, crc) = v.split_at(HEAD_BYTES - 4);
    if crc32fast::hash(body).to_be_bytes() != crc {
        return Err(corrupt(HEAD_KEY, "checksum mismatch"));
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&v[1..9]);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&v[9..41]);
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&v[41..49]);
    Ok(Head { size: u64::from_be_bytes(size), hash, timestamp_ms: u64::from_be_bytes(ts) })
}

/// An entry's position in the log and its Merkle leaf hash (level 0 of the tree).
fn encode_pos(pos: RecordPos, leaf: &Hash) -> [u8; 45] {
    let mut v = [0u8; 45];
    v[0] = RECORD_VERSION;
    v[1..9].copy_from_slice(&pos.offset.to_be_bytes());
    v[9..13].copy_from_slice(&pos.len.to_be_bytes());
    v[13..45].copy_from_slice(leaf);
    v
}

fn decode_pos(key: &[u8], v: &[u8]) -> Result<(RecordPos, Hash), StoreError> {
    if v.len() != 45 || v[0] != RECORD_VERSION {
        return Err(corrupt(key, "bad log position"));
    }
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&v[1..9]);
    let mut len = [0u8; 4];
    len.copy_from_slice(&v[9..13]);
    let mut leaf = [0u8; 32];
    leaf.copy_from_slice(&v[13..45]);
    Ok((RecordPos { offset: u64::from_be_bytes(offset), len: u32::from_be_bytes(len) }, leaf))
}

fn subtree_key(level: u32, index: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = SUBTREE_PREFIX;
    k[1] = level as u8;
    k[2..].copy_from_slice(&index.to_be_bytes());
    k
}

fn encode_sequence(sequence: u64) -> [u8; 9] {
    let mut v = [0u8; 9];
    v[0] = RECORD_VERSION;
    v[1..].copy_from_slice(&sequence.to_be_bytes());
    v
}

fn decode_sequence(key: &[u8], v: &[u8]) -> Result<u64, StoreError> {
    if v.len() != 9 || v[0] != RECORD_VERSION {
        return Err(corrupt(key, "bad operation record"));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&v[1..]);
    Ok(u64::from_be_bytes(seq))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Io { path: path.display().to_string(), source: e }
}

/// Adds an entry's derived rows (position and leaf hash, operation id, the Merkle subtrees
/// it completes) to `batch`, and advances `frontier`.
fn index_entry(
    batch: &mut sled::Batch,
    frontier: &mut Frontier,
    entry_bytes: &[u8],
    sequence: u64,
    operation_id: &OperationId,
    pos: RecordPos,
) -> Result<(), StoreError> {
    let leaf = merkle::leaf_hash(entry_bytes);
    batch.insert(&log_key(sequence), encode_pos(pos, &leaf).as_slice());
    batch.insert(&operation_key(operation_id), &encode_sequence(sequence));
    let completed = frontier.push(leaf).map_err(|e| corrupt(b"tree", e))?;
    for subtree in completed {
        // Level 0 lives in the position record.
        if subtree.level > 0 {
            batch.insert(&subtree_key(subtree.level, subtree.index), &subtree.hash);
        }
    }
    Ok(())
}

fn index_history(batch: &mut sled::Batch, account: &AccountId, sequence: u64) {
    batch.insert(history_key(account, sequence), &[]);
}

/// What `Store::accept_loss` did.
#[derive(Debug, Clone)]
pub struct LossReport {
    /// Entries the log holds now.
    pub kept_entries: u64,
    /// Entries the log or a witness said had been committed: the difference is lost.
    pub claimed_entries: u64,
    /// What was wrong after the kept entries (`None`: the log was only short).
    pub damage: Option<String>,
    /// Where the damaged log was kept.
    pub damaged_file: String,
}

/// What one pass over the log gave: the open log, the replayed ledger, and the entries
/// the state has not applied yet.
struct Replayed {
    log: LogFile,
    recovery: log::Recovery,
    ledger: Ledger,
    missing: Vec<(RecordPos, OperationId)>,
}

/// One pass over the log: check each record against the chain and the witnesses, replay
/// it, and keep the positions of the entries after `state_size` (to roll the state forward).
fn replay_log(
    dir: &Path,
    genesis: &Genesis,
    options: OpenOptions,
    state_size: u64,
    witnesses: &[Witness],
) -> Result<Replayed, StoreError> {
    let mut replayer = Replayer::new(genesis.clone(), options.verify_signatures);
    let mut missing: Vec<(RecordPos, OperationId)> = Vec::new();
    let (log, recovery) = LogFile::open(&dir.join(LOG_FILE), genesis, witnesses, |entry, pos| {
        let op = cercle_proto::decode_operation(&entry.envelope.body).map_err(|r| r.message("", 0));
        replayer.replay(entry, op.as_ref().map_err(Clone::clone))?;
        if entry.sequence > state_size
            && let Ok(op) = &op
        {
            missing.push((pos, op.id));
        }
        Ok(())
    })?;
    Ok(Replayed { log, recovery, ledger: replayer.into_ledger(), missing })
}

/// The node's last signed tree head, as a witness, if the file is there and its signature
/// holds. A damaged file is reported and left out: the other witnesses still hold.
fn read_tree_head(dir: &Path, genesis: &Genesis) -> Option<Witness> {
    let path = dir.join(TREE_HEAD_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the last signed tree head");
            return None;
        }
    };
    match decode_tree_head(&bytes, genesis) {
        Ok((head, _)) => Some(Witness {
            source: format!("the node's last signed tree head ({})", path.display()),
            size: head.tree_size,
            check: WitnessCheck::Root(head.root_hash),
        }),
        Err(reason) => {
            tracing::warn!(path = %path.display(), %reason, "the last signed tree head is damaged; ignoring it");
            None
        }
    }
}

fn decode_tree_head(bytes: &[u8], genesis: &Genesis) -> Result<(TreeHead, [u8; 64]), String> {
    if bytes.len() != TREE_HEAD_BYTES || &bytes[..8] != TREE_HEAD_MAGIC {
        return Err("not a tree-head file of this version".into());
    }
    let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
    let mut root_hash = [0u8; 32];
    root_hash.copy_from_slice(&bytes[16..48]);
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&bytes[56..120]);
    let head =
        TreeHead { ledger_id: genesis.ledger_id, tree_size: u64_at(8), root_hash, timestamp_ms: u64_at(48) };
    head.verify(&genesis.node_key, &signature).map_err(|e| format!("its signature: {e}"))?;
    Ok((head, signature))
}

impl Store {
    /// Persists the node's signed tree head (`tree-head`, written to a temporary file,
    /// synced, renamed, and the directory synced): the witness that the log held at least
    /// `head.tree_size` entries with this root. Call it only for a size whose entries are
    /// durable.
    pub fn write_tree_head(&self, head: &TreeHead, signature: &[u8; 64]) -> Result<(), StoreError> {
        head.verify(&self.genesis.node_key, signature)
            .map_err(|e| StoreError::Bound(format!("a tree head not signed by the node key: {e}")))?;
        let mut bytes = Vec::with_capacity(TREE_HEAD_BYTES);
        bytes.extend_from_slice(TREE_HEAD_MAGIC);
        bytes.extend_from_slice(&head.tree_size.to_be_bytes());
        bytes.extend_from_slice(&head.root_hash);
        bytes.extend_from_slice(&head.timestamp_ms.to_be_bytes());
        bytes.extend_from_slice(signature);
        let tmp = self.dir.join("tree-head.tmp");
        let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        std::io::Write::write_all(&mut file, &bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, self.dir.join(TREE_HEAD_FILE)).map_err(io(&self.dir))?;
        sync_dir(&self.dir)
    }

    /// The tree head last written by `write_tree_head`, if any.
    pub fn last_tree_head(&self) -> Option<TreeHead> {
        let bytes = std::fs::read(self.dir.join(TREE_HEAD_FILE)).ok()?;
        decode_tree_head(&bytes, &self.genesis).ok().map(|(h, _)| h)
    }

    /// Accepts the loss of a corrupt log's damaged part, explicitly: keeps its good prefix
    /// as the log, keeps the damaged file beside it (`entries.log.damaged-<ms>`), sets the
    /// witnesses that claimed more aside (the state and the last tree head, renamed, not
    /// deleted), and appends what was lost to `LOSSES.jsonl`. The next start rebuilds the
    /// state from what is left. `now_ms` names the files and dates the record.
    pub fn accept_loss(dir: &Path, now_ms: u64) -> Result<LossReport, StoreError> {
        if !Store::exists(dir) {
            return Err(StoreError::NotInitialised(dir.display().to_string()));
        }
        let _lock = lock_dir(dir)?;
        let genesis_path = dir.join(GENESIS_FILE);
        let bytes = std::fs::read(&genesis_path).map_err(io(&genesis_path))?;
        let genesis = Genesis::decode(&bytes).map_err(|e| corrupt(GENESIS_FILE.as_bytes(), e))?;
        let log_path = dir.join(LOG_FILE);
        let (kept, end, damage) = LogFile::good_prefix(&log_path, &genesis)?;
        let claimed = read_tree_head(dir, &genesis).map_or(0, |w| w.size);
        let claimed = match open_state(&dir.join(STATE_DIR)) {
            Ok(db) => read_state_head(&db, &genesis).map_or(claimed, |h| h.size.max(claimed)),
            Err(_) => claimed,
        };
        // The good prefix becomes the log, through a new file: the damaged one is kept whole.
        let damaged = dir.join(format!("{LOG_FILE}.damaged-{now_ms}"));
        let fresh = dir.join(format!("{LOG_FILE}.new"));
        {
            let mut from = std::fs::File::open(&log_path).map_err(io(&log_path))?;
            let mut to = std::fs::File::create(&fresh).map_err(io(&fresh))?;
            std::io::copy(&mut std::io::Read::take(&mut from, end), &mut to).map_err(io(&fresh))?;
            to.sync_all().map_err(io(&fresh))?;
        }
        std::fs::rename(&log_path, &damaged).map_err(io(&log_path))?;
        std::fs::rename(&fresh, &log_path).map_err(io(&fresh))?;
        for name in [TREE_HEAD_FILE, STATE_DIR] {
            let from = dir.join(name);
            if from.exists() {
                let to = dir.join(format!("{name}.before-loss-{now_ms}"));
                std::fs::rename(&from, &to).map_err(io(&from))?;
            }
        }
        let report = LossReport {
            kept_entries: kept,
            claimed_entries: claimed.max(kept),
            damage,
            damaged_file: damaged.display().to_string(),
        };
        let line = format!(
            "{{\"time_ms\":{now_ms},\"kept_entries\":{},\"claimed_entries\":{},\"first_lost_sequence\":{},\"damaged_file\":{:?},\"reason\":{:?}}}\n",
            report.kept_entries,
            report.claimed_entries,
            kept + 1,
            report.damaged_file,
            report.damage.as_deref().unwrap_or("the log is shorter than what was committed"),
        );
        let losses = dir.join(LOSSES_FILE);
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(&losses).map_err(io(&losses))?;
        std::io::Write::write_all(&mut file, line.as_bytes()).map_err(io(&losses))?;
        file.sync_all().map_err(io(&losses))?;
        sync_dir(dir)?;
        Ok(report)
    }

    /// True when `dir` holds a Cercle ledger.
    pub fn exists(dir: &Path) -> bool {
        dir.join(GENESIS_FILE).exists()
    }

    /// Creates a new ledger in `dir` with `genesis`: the genesis file and an empty log,
    /// both synced, then an empty state.
    pub fn create(dir: &Path, genesis: &Genesis) -> Result<(), StoreError> {
        if Store::exists(dir) {
            return Err(StoreError::AlreadyInitialised(dir.display().to_string()));
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        LogFile::create(&dir.join(LOG_FILE), genesis)?;
        // The genesis file is written last, through a rename: its presence is what makes
        // the directory a ledger, so a crash during creation leaves no half ledger.
        let tmp = dir.join("genesis.bin.tmp");
        std::fs::write(&tmp, genesis.encode()).map_err(io(&tmp))?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io(&tmp))?;
        std::fs::rename(&tmp, dir.join(GENESIS_FILE)).map_err(io(dir))?;
        sync_dir(dir)?;
        Ok(())
    }

    /// Opens the ledger in `dir`: recovers the log (cutting a torn tail, refusing
    /// corruption without touching anything), replays it, and brings the state in line with
    /// it (verified, rolled forward, or rebuilt). A state that cannot be opened or read, or
    /// that disagrees with the log, is rebuilt: never a reason not to start.
    pub fn open(dir: &Path, options: OpenOptions) -> Result<(Store, Ledger, OpenReport), StoreError> {
        if !Store::exists(dir) {
            return Err(StoreError::NotInitialised(dir.display().to_string()));
        }
        let lock = lock_dir(dir)?;
        let genesis_path = dir.join(GENESIS_FILE);
        let bytes = std::fs::read(&genesis_path).map_err(io(&genesis_path))?;
        let genesis = Genesis::decode(&bytes).map_err(|e| corrupt(GENESIS_FILE.as_bytes(), e))?;
        let state_path = dir.join(STATE_DIR);
        // The state is opened before the log is read (its head is a witness), but it is
        // not moved aside, whatever its condition, until the log is known to be sound.
        let opened = open_state(&state_path);
        let state_head = match &opened {
            Ok(db) => read_state_head(db, &genesis),
            Err(_) => None,
        };
        let mut witnesses: Vec<Witness> = read_tree_head(dir, &genesis).into_iter().collect();
        if let Some(h) = state_head.filter(|h| h.size > 0) {
            witnesses.push(Witness {
                source: format!("the state database ({})", state_path.display()),
                size: h.size,
                check: WitnessCheck::EntryHash(h.hash),
            });
        }
        let replayed = replay_log(dir, &genesis, options, state_head.map_or(0, |h| h.size), &witnesses)?;
        let db = match opened {
            Ok(db) => db,
            Err(reason) => fresh_state(&state_path, &reason)?,
        };
        let store = Store {
            dir: dir.to_path_buf(),
            genesis,
            log: replayed.log,
            db,
            _lock: lock,
            frontier: Mutex::new(Frontier::new()),
        };
        let ledger = replayed.ledger;
        let outcome = match state_head {
            Some(h) if h.size == ledger.head().size => OpenOutcome::Verified,
            Some(h) if h.size < ledger.head().size => OpenOutcome::RolledForward(ledger.head().size - h.size),
            _ => OpenOutcome::Rebuilt,
        };
        let store = store.reconcile(&ledger, outcome, &replayed.missing)?;
        let outcome = store.1;
        let store = store.0;
        Ok((store, ledger, OpenReport { outcome, recovery: replayed.recovery }))
    }

    /// Brings the state to the replayed `ledger`: rolls it forward or rebuilds it, then
    /// checks everything it derived. Any failure of the state (an error, or a panic inside
    /// sled) means a rebuild from scratch, once; a rebuilt state that still disagrees is an
    /// error.
    fn reconcile(
        mut self,
        ledger: &Ledger,
        planned: OpenOutcome,
        missing: &[(RecordPos, OperationId)],
    ) -> Result<(Store, OpenOutcome), StoreError> {
        let attempt = |store: &Store, outcome: OpenOutcome| -> Result<(), String> {
            let run = || -> Result<(), StoreError> {
                match outcome {
                    OpenOutcome::Verified => {}
                    OpenOutcome::RolledForward(n) => {
                        let start = ledger.head().size - n;
                        store.roll_forward(ledger, start, &missing[missing.len() - n as usize..])?
                    }
                    OpenOutcome::Rebuilt => store.rebuild_state(ledger)?,
                }
                store.check_derived(ledger)?;
                store.load_frontier(ledger.head().size)
            };
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("the state database panicked while it was read".into()),
            }
        };
        let Err(reason) = attempt(&self, planned) else { return Ok((self, planned)) };
        if planned == OpenOutcome::Rebuilt {
            return Err(corrupt(b"state", format!("the rebuilt state does not match the log: {reason}")));
        }
        tracing::warn!(%reason, "the state does not match the log; rebuilding it from the log");
        let path = self.dir.join(STATE_DIR);
        self.db = fresh_state_replacing(self.db, &path, &reason)?;
        attempt(&self, OpenOutcome::Rebuilt).map_err(|reason| {
            corrupt(b"state", format!("the rebuilt state does not match the log: {reason}"))
        })?;
        Ok((self, OpenOutcome::Rebuilt))
    }

    /// Checks what the state derived against the replayed ledger: every account, every
    /// invoice, the head.
    fn check_derived(&self, ledger: &Ledger) -> Result<(), StoreError> {
        let stored = State::from_parts(&self.genesis, self.accounts()?, self.invoices(None)?);
        if stored.digest() != ledger.state().digest() {
            return Err(corrupt(b"state", "its accounts or invoices differ from the log's"));
        }
        if self.head()? != *ledger.head() {
            return Err(corrupt(HEAD_KEY, "its head differs from the log's"));
        }
        Ok(())
    }

    fn load_frontier(&self, size: u64) -> Result<(), StoreError> {
        let frontier = Frontier::from_source(size, self)?;
        *self.frontier.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = frontier;
        Ok(())
    }

    /// Deletes the state and rebuilds it from the log, checking every signature again.
    pub fn rebuild(dir: &Path) -> Result<(Store, Ledger, OpenReport), StoreError> {
        if !Store::exists(dir) {
            return Err(StoreError::NotInitialised(dir.display().to_string()));
        }
        let state = dir.join(STATE_DIR);
        {
            let _lock = lock_dir(dir)?;
            if state.exists() {
                std::fs::remove_dir_all(&state).map_err(io(&state))?;
            }
        }
        let (store, ledger, mut report) = Store::open(dir, OpenOptions { verify_signatures: true })?;
        report.outcome = OpenOutcome::Rebuilt;
        Ok((store, ledger, report))
    }

    /// Replays the log file alone (not the state) into a ledger: where the ledger stands
    /// after the last durable group.
    pub fn replay_log(&self) -> Result<Ledger, StoreError> {
        let mut replayer = Replayer::new(self.genesis.clone(), false);
        LogFile::open(&self.dir.join(LOG_FILE), &self.genesis, &[], |entry, _| {
            let op = cercle_proto::decode_operation(&entry.envelope.body).map_err(|r| r.message("", 0));
            replayer.replay(entry, op.as_ref().map_err(Clone::clone))?;
            Ok(())
        })?;
        Ok(replayer.into_ledger())
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The head the state has applied (equal to the log's head while the node runs).
    pub fn head(&self) -> Result<Head, StoreError> {
        match self.db.get(HEAD_KEY)? {
            Some(v) => decode_head(&v),
            None => Ok(Head::empty(&self.genesis)),
        }
    }

    /// Applies the entries the state missed (from `start_size` on), then stores every
    /// account and the head.
    fn roll_forward(
        &self,
        ledger: &Ledger,
        start_size: u64,
        missing: &[(RecordPos, OperationId)],
    ) -> Result<(), StoreError> {
        tracing::info!(entries = missing.len(), "rolling the state forward from the log");
        let mut frontier = Frontier::from_source(start_size, self)?;
        for chunk in missing.chunks(4096) {
            let mut batch = sled::Batch::default();
            for (pos, id) in chunk {
                let entry = self.log.read(*pos)?;
                index_entry(&mut batch, &mut frontier, &entry.encode(), entry.sequence, id, *pos)?;
                if let Ok(op) = cercle_proto::decode_operation(&entry.envelope.body) {
                    for account in entry.accounts(&op) {
                        index_history(&mut batch, account, entry.sequence);
                    }
                }
            }
            self.db.apply_batch(batch)?;
        }
        self.write_accounts_and_head(ledger)
    }

    fn write_accounts_and_head(&self, ledger: &Ledger) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for prefix in [ACCOUNT_PREFIX, INVOICE_PREFIX, INVOICE_INDEX_PREFIX] {
            for item in self.db.scan_prefix([prefix]) {
                let (key, _) = item?;
                batch.remove(key);
            }
        }
        for account in ledger.state().accounts() {
            batch.insert(account_key(&account.id), account.encode());
        }
        for invoice in ledger.state().invoices() {
            put_invoice(&mut batch, invoice, invoice.issued_at_sequence);
        }
        batch.insert(HEAD_KEY, encode_head(ledger.head()));
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// Replaces everything in the state by what the log says.
    fn rebuild_state(&self, ledger: &Ledger) -> Result<(), StoreError> {
        self.db.clear()?;
        let mut all = Vec::new();
        let genesis = self.genesis.clone();
        // A second pass over the log for the positions; the first one already checked it.
        let (_, _) = LogFile::open(&self.dir.join(LOG_FILE), &genesis, &[], |entry, pos| {
            if let Ok(op) = cercle_proto::decode_operation(&entry.envelope.body) {
                all.push((pos, op.id));
            }
            Ok(())
        })?;
        self.roll_forward(ledger, 0, &all)
    }

    /// Persists a group of accepted operations: first the log (one write, one
    /// `fdatasync`), then the derived state in one sled batch (not synced: it can be
    /// rebuilt from the log). When this returns `Ok`, the group is durable.
    pub fn commit(&self, accepted: &[Accepted], head: &Head) -> Result<(), CommitError> {
        let encoded: Vec<Vec<u8>> = accepted.iter().map(|a| a.entry.encode()).collect();
        let positions = self.log.append_group(&encoded).map_err(CommitError::NotWritten)?;
        let mut frontier_guard = self.frontier.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut frontier = frontier_guard.clone();
        let mut batch = sled::Batch::default();
        for ((a, pos), bytes) in accepted.iter().zip(positions).zip(&encoded) {
            index_entry(&mut batch, &mut frontier, bytes, a.entry.sequence, &a.operation_id, pos)
                .map_err(CommitError::NotIndexed)?;
            for account in &a.accounts {
                batch.insert(account_key(&account.id), account.encode());
                index_history(&mut batch, &account.id, a.entry.sequence);
            }
            for invoice in &a.invoices {
                put_invoice(&mut batch, invoice, a.entry.sequence);
            }
        }
        batch.insert(HEAD_KEY, encode_head(head));
        self.db.apply_batch(batch).map_err(|e| CommitError::NotIndexed(e.into()))?;
        *frontier_guard = frontier;
        Ok(())
    }

    /// The size and Merkle root of the log as the state has applied it.
    pub fn tree(&self) -> (u64, Hash) {
        let frontier = self.frontier.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (frontier.size(), frontier.root())
    }

    /// The Merkle root of the first `size` entries (at most the current size).
    pub fn root_of_size(&self, size: u64) -> Result<Hash, StoreError> {
        merkle::root_of_size(size, self)
    }

    /// The inclusion proof of entry `sequence` in the tree of `tree_size` entries.
    pub fn inclusion_proof(&self, sequence: u64, tree_size: u64) -> Result<Vec<Hash>, ProofRequestError> {
        let index = sequence.checked_sub(1).ok_or(ProofRequestError::Invalid(
            merkle::MerkleError::IndexOutOfRange { index: 0, size: tree_size },
        ))?;
        self.check_size(tree_size)?;
        merkle::inclusion_proof(index, tree_size, self).map_err(ProofRequestError::from)
    }

    /// The consistency proof between the trees of `old_size` and `new_size` entries.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, ProofRequestError> {
        self.check_size(new_size)?;
        merkle::consistency_proof(old_size, new_size, self).map_err(ProofRequestError::from)
    }

    fn check_size(&self, size: u64) -> Result<(), ProofRequestError> {
        let current = self.tree().0;
        if size > current {
            return Err(ProofRequestError::BeyondLog { size, current });
        }
        Ok(())
    }

    /// The sequence of the entry that accepted operation `id`, if any.
    pub fn operation(&self, id: &OperationId) -> Result<Option<u64>, StoreError> {
        let key = operation_key(id);
        match self.db.get(key)? {
            None => Ok(None),
            Some(v) => decode_sequence(&key, &v).map(Some),
        }
    }

    pub fn entry(&self, sequence: u64) -> Result<Option<Entry>, StoreError> {
        let key = log_key(sequence);
        match self.db.get(key)? {
            None => Ok(None),
            Some(v) => self.log.read(decode_pos(&key, &v)?.0).map(Some),
        }
    }

    pub fn account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        let key = account_key(id);
        match self.db.get(&key)? {
            None => Ok(None),
            Some(v) => Account::decode(&v).map(Some).map_err(|e| corrupt(&key, e)),
        }
    }

    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.db
            .scan_prefix([ACCOUNT_PREFIX])
            .map(|item| {
                let (key, value) = item?;
                Account::decode(&value).map_err(|e| corrupt(&key, e))
            })
            .collect()
    }

    pub fn invoice(&self, id: &InvoiceId) -> Result<Option<Invoice>, StoreError> {
        let key = invoice_key(id);
        match self.db.get(key)? {
            None => Ok(None),
            Some(v) => Invoice::decode(&v).map(Some).map_err(|e| corrupt(&key, e)),
        }
    }

    /// Every stored invoice in id order, or only the open ones (`Some(true)`).
    pub fn invoices(&self, open_only: Option<bool>) -> Result<Vec<Invoice>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix([INVOICE_PREFIX]) {
            let (key, value) = item?;
            let invoice = Invoice::decode(&value).map_err(|e| corrupt(&key, e))?;
            if open_only != Some(true) || invoice.state.is_open() {
                out.push(invoice);
            }
        }
        Ok(out)
    }

    /// Up to `limit` invoices after `after` (in id order), and whether more may follow.
    pub fn invoices_page(
        &self,
        after: Option<InvoiceId>,
        limit: usize,
        open_only: bool,
    ) -> Result<(Vec<Invoice>, bool), StoreError> {
        let start = match after {
            Some(id) => {
                let mut k = invoice_key(&id).to_vec();
                k.push(0);
                k
            }
            None => vec![INVOICE_PREFIX],
        };
        let mut out = Vec::new();
        for item in self.db.range(start..) {
            let (key, value) = item?;
            if key.first() != Some(&INVOICE_PREFIX) {
                break;
            }
            let invoice = Invoice::decode(&value).map_err(|e| corrupt(&key, e))?;
            if open_only && !invoice.state.is_open() {
                continue;
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push(invoice);
        }
        Ok((out, false))
    }

    /// Up to `limit` invoices of `account` (issued or received) issued after
    /// `after_sequence`, oldest first, and whether more may follow.
    pub fn account_invoices(
        &self,
        account: &AccountId,
        after_sequence: u64,
        limit: usize,
        open_only: bool,
    ) -> Result<(Vec<Invoice>, bool), StoreError> {
        let prefix = invoice_index_prefix(account);
        let start = invoice_index_key(account, after_sequence.saturating_add(1));
        let mut out = Vec::new();
        for item in self.db.range(start..) {
            let (key, value) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            let id: [u8; 16] = value.as_ref().try_into().map_err(|_| corrupt(&key, "bad invoice index"))?;
            let invoice = self
                .invoice(&InvoiceId(id))?
                .ok_or_else(|| corrupt(&key, "index names a missing invoice"))?;
            if open_only && !invoice.state.is_open() {
                continue;
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push(invoice);
        }
        Ok((out, false))
    }

    /// Up to `limit` entries touching `id` with a sequence above `after_sequence`, oldest
    /// first, and whether more follow. A page also stops after `PAGE_BYTES_MAX` bytes.
    pub fn history(
        &self,
        id: &AccountId,
        after_sequence: u64,
        limit: usize,
    ) -> Result<(Vec<Entry>, bool), StoreError> {
        let prefix = history_prefix(id);
        let start = history_key(id, after_sequence.saturating_add(1));
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        for item in self.db.range(start..) {
            let (key, _) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            if entries.len() == limit || bytes > PAGE_BYTES_MAX {
                return Ok((entries, true));
            }
            let seq_bytes: [u8; 8] =
                key[prefix.len()..].try_into().map_err(|_| corrupt(&key, "bad history key"))?;
            let seq = u64::from_be_bytes(seq_bytes);
            let entry = self.entry(seq)?.ok_or_else(|| corrupt(&key, "history names a missing entry"))?;
            bytes += entry.clearing.as_ref().map_or(256, |c| 64 * (c.firms.len() + c.invoices.len()));
            entries.push(entry);
        }
        Ok((entries, false))
    }

    /// Bytes used on disk by the log and the state.
    pub fn size_on_disk(&self) -> Result<(u64, u64), StoreError> {
        Ok((self.log.len_bytes(), self.db.size_on_disk()?))
    }

    /// Flushes the state (a clean shutdown makes the next start a plain verification).
    pub fn close(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Damages the stored state on purpose (tests of the start-up check only).
    #[doc(hidden)]
    pub fn corrupt_state_for_tests(&self, id: &AccountId, balance_minor: i64) -> Result<(), StoreError> {
        if let Some(mut account) = self.account(id)? {
            account.balance_minor = balance_minor;
            self.db.insert(account_key(id), account.encode())?;
            self.db.flush()?;
        }
        Ok(())
    }
}

/// Why a proof could not be given.
#[derive(Debug, thiserror::Error)]
pub enum ProofRequestError {
    #[error("{0}")]
    Invalid(merkle::MerkleError),
    #[error("tree size {size} is beyond the log, which has {current} entries")]
    BeyondLog { size: u64, current: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<merkle::ProofError<StoreError>> for ProofRequestError {
    fn from(e: merkle::ProofError<StoreError>) -> Self {
        match e {
            merkle::ProofError::Invalid(m) => ProofRequestError::Invalid(m),
            merkle::ProofError::Source(s) => ProofRequestError::Store(s),
        }
    }
}

/// The stored Merkle tree: leaf hashes live in the position records, complete subtrees of
/// level 1 and up under `t`.
impl HashSource for Store {
    type Error = StoreError;

    fn subtree_hash(&self, level: u32, index: u64) -> Result<Hash, StoreError> {
        if level == 0 {
            let key = log_key(index + 1);
            let v = self.db.get(key)?.ok_or_else(|| corrupt(&key, "missing leaf"))?;
            return Ok(decode_pos(&key, &v)?.1);
        }
        let key = subtree_key(level, index);
        let v = self.db.get(key)?.ok_or_else(|| corrupt(&key, "missing Merkle subtree"))?;
        v.as_ref().try_into().map_err(|_| corrupt(&key, "bad subtree hash"))
    }
}

/// Opens the sled state, or says why it cannot: sled's own errors and its panics (a
/// damaged database can make sled 0.34 panic while it recovers) alike. A lock still held
/// is waited for, within a bound: the directory is locked by `Store::open` before this
/// runs, so nothing else can be using the state.
fn open_state(path: &Path) -> Result<sled::Db, String> {
    let deadline = std::time::Instant::now() + STATE_LOCK_WAIT;
    loop {
        let open = || sled::Config::new().path(path).cache_capacity(STATE_CACHE_BYTES).open();
        match std::panic::catch_unwind(open) {
            Ok(Ok(db)) => return Ok(db),
            // sled 0.34 may release its file lock a moment after its last handle is
            // dropped in this process (spacejam/sled#1234): wait for it, within a bound.
            Ok(Err(sled::Error::Io(e)))
                if (e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("lock"))
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Ok(Err(e)) => return Err(format!("sled cannot open it: {e}")),
            Err(_) => return Err("sled panicked while opening it".into()),
        }
    }
}

/// Moves the state at `path` aside (it is derived: never deleted, in case a person wants
/// to look at it) and opens a fresh one, to be rebuilt from the log.
fn fresh_state(path: &Path, reason: &str) -> Result<sled::Db, StoreError> {
    if path.exists() {
        let mut aside = path.with_extension("broken");
        let mut n = 1;
        while aside.exists() {
            aside = path.with_extension(format!("broken.{n}"));
            n += 1;
        }
        tracing::warn!(
            %reason,
            moved_to = %aside.display(),
            "the state database cannot be used; moving it aside and rebuilding it from the log"
        );
        std::fs::rename(path, &aside).map_err(io(path))?;
    }
    open_state(path).map_err(|reason| corrupt(b"state", reason))
}

/// `fresh_state` for a state that is open: closes it first.
fn fresh_state_replacing(db: sled::Db, path: &Path, reason: &str) -> Result<sled::Db, StoreError> {
    drop(db);
    fresh_state(path, reason)
}

/// The head the state has applied: `Head::empty` for a new state, `None` when it cannot
/// be read or fails its checksum (then the state is not a witness and will be rebuilt).
fn read_state_head(db: &sled::Db, genesis: &Genesis) -> Option<Head> {
    let read = || db.get(HEAD_KEY);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)) {
        Ok(Ok(None)) => Some(Head::empty(genesis)),
        Ok(Ok(Some(v))) => decode_head(&v).ok(),
        Ok(Err(_)) | Err(_) => None,
    }
}

/// sled's page cache. sled's default (1 GiB) made the node's memory grow with the log;
/// the state's hot part (accounts, recent indexes) fits in far less.
const STATE_CACHE_BYTES: u64 = 128 * 1024 * 1024;

/// How long `open_state` waits for sled's own lock to be released.
const STATE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Takes the exclusive lock of a ledger directory, held for the store's lifetime: a second
/// node (or `rebuild`) on a directory in use is refused with a clear error instead of
/// writing beside the first one.
fn lock_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse(dir.display().to_string())),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(StoreError::Io { path: path.display().to_string(), source: e })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cercle_core::sign::Keypair;
    use cercle_core::{Envelope, LedgerId, OpKind, Operation, RegisterAccount, Transfer};

    fn genesis(admin: &Keypair) -> Genesis {
        Genesis {
            ledger_id: LedgerId([4; 16]),
            currency: "CHW".into(),
            exponent: 2,
            admin_keys: vec![admin.public_key()],
            auditor_keys: vec![],
            node_key: Keypair::from_seed(&[8; 32]).public_key(),
        }
    }

    /// Runs `ops` through a ledger and commits each accepted one as its own group.
    fn write(store: &Store, ledger: &mut Ledger, ops: &[(Keypair, Operation)]) {
        for (key, op) in ops {
            let body = cercle_proto::encode_operation(op);
            let envelope = Envelope {
                signature: key.sign_op(&ledger.genesis().ledger_id, &body),
                body,
                signer: key.public_key(),
            };
            let (entry, effects) = ledger.execute(1_000, envelope, op).unwrap();
            let accounts =
                effects.touched.iter().map(|a| ledger.state().account(a).unwrap().clone()).collect();
            let invoices =
                effects.invoices.iter().map(|i| ledger.state().invoice(i).unwrap().clone()).collect();
            store
                .commit(&[Accepted { entry, operation_id: op.id, accounts, invoices }], ledger.head())
                .unwrap();
        }
    }

    fn ops(admin: &Keypair, firm: &Keypair) -> Vec<(Keypair, Operation)> {
        let register = |n: u8, name: &str| Operation {
            id: OperationId([n; 16]),
            valid_until_ms: 5_000,
            kind: OpKind::RegisterAccount(RegisterAccount {
                account: AccountId::parse(name).unwrap(),
                display_name: name.into(),
                keys: vec![firm.public_key()],
                credit_limit_minor: 10_000,
                max_balance_minor: None,
            }),
        };
        let pay = Operation {
            id: OperationId([3; 16]),
            valid_until_ms: 5_000,
            kind: OpKind::Transfer(Transfer {
                payer: AccountId::parse("payer").unwrap(),
                payee: AccountId::parse("payee").unwrap(),
                amount_minor: 2_500,
                memo: "m".into(),
                invoice_ref: None,
                invoice: None,
            }),
        };
        vec![
            (admin.clone(), register(1, "payer")),
            (admin.clone(), register(2, "payee")),
            (firm.clone(), pay),
        ]
    }

    fn open(dir: &Path) -> (Store, Ledger, OpenOutcome) {
        let (store, ledger, report) = Store::open(dir, OpenOptions::default()).unwrap();
        (store, ledger, report.outcome)
    }

    #[test]
    fn state_survives_reopen_and_is_rebuilt_when_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let admin = Keypair::from_seed(&[1; 32]);
        let firm = Keypair::from_seed(&[2; 32]);
        let g = genesis(&admin);
        let payer = AccountId::parse("payer").unwrap();
        Store::create(dir.path(), &g).unwrap();
        let digest = {
            let (store, mut ledger, outcome) = open(dir.path());
            assert_eq!(outcome, OpenOutcome::Verified);
            write(&store, &mut ledger, &ops(&admin, &firm));
            assert_eq!(store.account(&payer).unwrap().unwrap().balance_minor, -2_500);
            let (history, more) = store.history(&payer, 0, 10).unwrap();
            assert_eq!((history.len(), more), (2, false));
            let (page, more) = store.history(&payer, 0, 1).unwrap();
            assert_eq!((page[0].sequence, more), (1, true));
            assert_eq!(store.operation(&OperationId([3; 16])).unwrap(), Some(3));
            assert_eq!(store.entry(3).unwrap().unwrap().sequence, 3);
            ledger.state().digest()
        };
        {
            let (store, ledger, outcome) = open(dir.path());
            assert_eq!(outcome, OpenOutcome::Verified);
            assert_eq!(ledger.state().digest(), digest);
            store.corrupt_state_for_tests(&payer, 777).unwrap();
        }
        let (store, ledger, outcome) = open(dir.path());
        assert_eq!(outcome, OpenOutcome::Rebuilt);
        assert_eq!(ledger.state().digest(), digest);
        assert_eq!(store.account(&payer).unwrap().unwrap().balance_minor, -2_500);
        drop(store);
        // A deleted state is rebuilt, every signature checked again.
        let (store, ledger, report) = Store::rebuild(dir.path()).unwrap();
        assert_eq!(report.outcome, OpenOutcome::Rebuilt);
        assert_eq!(ledger.state().digest(), digest);
        assert_eq!(store.history(&payer, 0, 10).unwrap().0.len(), 2);
        drop(store);
        assert_eq!(open(dir.path()).2, OpenOutcome::Verified);
    }

    #[test]
    fn a_state_behind_the_log_is_rolled_forward() {
        let dir = tempfile::tempdir().unwrap();
        let admin = Keypair::from_seed(&[1; 32]);
        let firm = Keypair::from_seed(&[2; 32]);
        let g = genesis(&admin);
        Store::create(dir.path(), &g).unwrap();
        let all = ops(&admin, &firm);
        {
            let (store, mut ledger, _) = open(dir.path());
            write(&store, &mut ledger, &all[..2]);
            store.close().unwrap();
        }
        // Keep a copy of the state as it is after two entries, write the third, then put
        // the old state back: the state now lags the log by one entry.
        let state = dir.path().join(STATE_DIR);
        let saved = dir.path().join("saved-state");
        copy_dir(&state, &saved);
        let digest = {
            let (store, mut ledger, _) = open(dir.path());
            write(&store, &mut ledger, &all[2..]);
            ledger.state().digest()
        };
        std::fs::remove_dir_all(&state).unwrap();
        copy_dir(&saved, &state);
        let (store, ledger, outcome) = open(dir.path());
        assert_eq!(outcome, OpenOutcome::RolledForward(1));
        assert_eq!(ledger.state().digest(), digest);
        assert_eq!(store.operation(&OperationId([3; 16])).unwrap(), Some(3));
        assert_eq!(store.history(&AccountId::parse("payee").unwrap(), 0, 10).unwrap().0.len(), 2);
    }

    /// Runs `ops` through a ledger and commits them as one group.
    fn write_group(store: &Store, ledger: &mut Ledger, ops: &[(Keypair, Operation)]) {
        let mut accepted = Vec::new();
        for (key, op) in ops {
            let body = cercle_proto::encode_operation(op);
            let envelope = Envelope {
                signature: key.sign_op(&ledger.genesis().ledger_id, &body),
                body,
                signer: key.public_key(),
            };
            let (entry, effects) = ledger.execute(1_000, envelope, op).unwrap();
            let accounts =
                effects.touched.iter().map(|a| ledger.state().account(a).unwrap().clone()).collect();
            accepted.push(Accepted { entry, operation_id: op.id, accounts, invoices: vec![] });
        }
        store.commit(&accepted, ledger.head()).unwrap();
    }

    fn pay(n: u8, firm: &Keypair) -> (Keypair, Operation) {
        let mut op = ops(&Keypair::from_seed(&[1; 32]), firm).pop().unwrap().1;
        op.id = OperationId([n; 16]);
        (firm.clone(), op)
    }

    /// A ledger of two registrations, each its own group, with a copy of the state as it
    /// was then; then `groups` written after it. Returns the directory, the saved state,
    /// and the log's bytes.
    fn ledger_with(groups: &[&[u8]]) -> (tempfile::TempDir, PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let admin = Keypair::from_seed(&[1; 32]);
        let firm = Keypair::from_seed(&[2; 32]);
        Store::create(dir.path(), &genesis(&admin)).unwrap();
        let all = ops(&admin, &firm);
        let (store, mut ledger, _) = open(dir.path());
        write(&store, &mut ledger, &all[..2]);
        store.close().unwrap();
        let saved = dir.path().join("saved-state");
        copy_dir(&dir.path().join(STATE_DIR), &saved);
        for group in groups {
            let payments: Vec<_> = group.iter().map(|n| pay(*n, &firm)).collect();
            write_group(&store, &mut ledger, &payments);
        }
        drop(store);
        let log = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
        (dir, saved, log)
    }

    /// Puts `log` and the saved state (two entries applied) in place: the state of a crash
    /// before any later group was acknowledged.
    fn crash_with(dir: &Path, saved: &Path, log: &[u8]) {
        std::fs::remove_dir_all(dir.join(STATE_DIR)).unwrap();
        copy_dir(saved, &dir.join(STATE_DIR));
        std::fs::write(dir.join(LOG_FILE), log).unwrap();
    }

    /// Where each record of `log` starts.
    fn record_starts(log: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut at = log::HEADER_BYTES as usize;
        while at < log.len() {
            out.push(at);
            at += log::RECORD_HEADER_BYTES + u32::from_be_bytes(log[at..at + 4].try_into().unwrap()) as usize;
        }
        out
    }

    #[test]
    fn a_torn_tail_is_cut_back_to_the_last_complete_entry() {
        let (dir, saved, full) = ledger_with(&[&[3]]);
        let last_start = record_starts(&full)[2];
        // Every possible torn length of the last record: back to two entries.
        for cut in [last_start + 1, last_start + 8, full.len() - 1] {
            crash_with(dir.path(), &saved, &full[..cut]);
            let (_, ledger, report) = Store::open(dir.path(), OpenOptions::default()).unwrap();
            assert_eq!(ledger.head().size, 2, "cut at {cut}");
            assert_eq!(report.recovery.cut_bytes, (cut - last_start) as u64);
            assert!(report.recovery.cut_reason.is_some());
            assert_eq!(std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len(), last_start as u64);
        }
        // A flipped byte in the last record: its checksum catches it.
        let mut damaged = full.clone();
        damaged[full.len() - 3] ^= 0x40;
        crash_with(dir.path(), &saved, &damaged);
        let (_, ledger, report) = Store::open(dir.path(), OpenOptions::default()).unwrap();
        assert_eq!(ledger.head().size, 2);
        assert!(report.recovery.cut_reason.unwrap().contains("checksum"));
    }

    #[test]
    fn a_hole_in_the_last_group_is_torn_but_damage_before_a_later_group_is_corruption() {
        // One group of three entries (3, 4, 5): its pages may reach the disk out of order,
        // so a damaged entry 4 followed by a good entry 5 of the same group is torn.
        let (dir, saved, full) = ledger_with(&[&[3, 4, 5]]);
        let starts = record_starts(&full);
        let mut damaged = full.clone();
        damaged[starts[3] + 20] ^= 0x01;
        crash_with(dir.path(), &saved, &damaged);
        let (_, ledger, report) = Store::open(dir.path(), OpenOptions::default()).unwrap();
        assert_eq!(ledger.head().size, 3);
        assert_eq!(report.recovery.cut_bytes, (full.len() - starts[3]) as u64);
        // Groups (3), (4): entry 4 was written after entry 3's group was synced, so damage
        // to entry 3 is corruption, whatever the state says.
        let (dir, saved, full) = ledger_with(&[&[3], &[4]]);
        let starts = record_starts(&full);
        let mut damaged = full.clone();
        damaged[starts[2] + 20] ^= 0x01;
        crash_with(dir.path(), &saved, &damaged);
        let log_before = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
        let err = Store::open(dir.path(), OpenOptions::default()).err().unwrap();
        let message = err.to_string();
        assert!(message.contains(&format!("corrupt at entry 3 (byte {})", starts[2])), "{message}");
        assert!(message.contains("a good record of a later group (entry 4"), "{message}");
        assert_eq!(std::fs::read(dir.path().join(LOG_FILE)).unwrap(), log_before, "nothing changed");
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let target = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), target).unwrap();
            }
        }
    }

    #[test]
    fn a_directory_in_use_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let admin = Keypair::from_seed(&[1; 32]);
        Store::create(dir.path(), &genesis(&admin)).unwrap();
        let (first, _, _) = open(dir.path());
        let err = Store::open(dir.path(), OpenOptions::default()).err().unwrap();
        assert!(err.to_string().contains("in use by another process"), "{err}");
        let err = Store::rebuild(dir.path()).err().unwrap();
        assert!(err.to_string().contains("in use"), "{err}");
        assert!(!dir.path().join("state.broken").exists());
        drop(first);
        assert_eq!(open(dir.path()).2, OpenOutcome::Verified);
    }

    #[test]
    fn opening_an_empty_directory_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let err = Store::open(dir.path(), OpenOptions::default()).err().unwrap();
        assert!(err.to_string().contains("holds no ledger"), "{err}");
        let admin = Keypair::from_seed(&[1; 32]);
        Store::create(dir.path(), &genesis(&admin)).unwrap();
        let err = Store::create(dir.path(), &genesis(&admin)).err().unwrap();
        assert!(err.to_string().contains("already holds a ledger"), "{err}");
    }
}
