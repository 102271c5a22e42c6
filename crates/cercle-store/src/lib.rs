//! The storage adapter: persists what the core decided, durably, and reads it back. It
//! knows the formats, never the rules: it replays nothing and decides nothing.
//!
//! A ledger directory holds:
//!
//! - `genesis.bin`: the genesis, written once at creation and synced.
//! - `entries.log`: the log of entries, append-only and checksummed (`log`). It is the
//!   source of truth, and the only file the node waits on: each group of entries is
//!   written with one `write` and one `fdatasync` before any of them is acknowledged.
//! - `tree-head`: the node's last signed tree head, a witness of how far the log reached.
//! - `state/`: a sled database with a checkpoint of the state and the per-account indexes
//!   (`derived`), written every few seconds off the write path. It can always be rebuilt
//!   from the log.
//!
//! The log's index (where each entry is, the Merkle tree) lives in memory (`index`): the
//! start-up scan, which reads and checks every record anyway, rebuilds it.
//!
//! Crash contract. After a crash or power cut at any moment, on the next open:
//! - every group whose `fdatasync` completed (so every acknowledged operation) is in the
//!   log, exactly once;
//! - a group whose write was interrupted is either entirely present (the sync happened but
//!   the acknowledgement did not get out) or cut away as a torn tail; damage anywhere else
//!   is corruption, refused (see `log`);
//! - the state's checkpoint is some earlier point of the same log (or unreadable, then
//!   rebuilt): the node replays the log from it.

pub mod derived;
pub mod index;
pub mod log;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use cercle_core::checkpoint::{SignedTreeHead, TreeHead};
use cercle_core::merkle::{self, Hash, HashSource};
use cercle_core::{AccountId, Entry, Genesis, Head, Invoice, InvoiceId, PublicKey};
use cercle_limits::{STATE_CACHE_BYTES, STATE_LOCK_WAIT};

use derived::Derived;
pub use derived::{Checkpoint, CheckpointHead, Snapshot};
use index::{BLOCK_ENTRIES, LogIndex};
use log::{LogFile, sync_dir};
pub use log::{RecordInfo, RecordPos, Witness, WitnessCheck};

const GENESIS_FILE: &str = "genesis.bin";
/// The node's last signed tree head: a witness of how far the log reached.
const TREE_HEAD_FILE: &str = "tree-head";
const TREE_HEAD_MAGIC: &[u8; 8] = b"CERCLTH1";
/// A tree head signed by a rotated node key: the version 1 bytes, then the signer's public
/// key (the genesis's key is never written, so a ledger that never rotated keeps version 1).
const TREE_HEAD_MAGIC_SIGNER: &[u8; 8] = b"CERCLTH2";
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

impl StoreError {
    /// True when the error is the disk being full: the node refuses writes and retries.
    pub fn is_disk_full(&self) -> bool {
        let full = |e: &std::io::Error| {
            e.raw_os_error() == Some(libc_enospc()) || e.kind() == std::io::ErrorKind::StorageFull
        };
        match self {
            StoreError::Io { source, .. } => full(source),
            StoreError::Sled(sled::Error::Io(e)) => full(e),
            _ => false,
        }
    }
}

/// ENOSPC on Linux.
const fn libc_enospc() -> i32 {
    28
}

fn corrupt(key: &[u8], reason: impl ToString) -> StoreError {
    StoreError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), reason: reason.to_string() }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Io { path: path.display().to_string(), source: e }
}

/// What `Store::open` found.
#[derive(Debug, Clone)]
pub struct OpenReport {
    pub recovery: log::Recovery,
    /// Why the state database was set aside, when it was (it is then empty, to rebuild).
    pub state_set_aside: Option<String>,
    /// Why the state database could not be opened for want of disk space, when it could
    /// not: it is then left as it is, not read (reads find nothing in it), and opened,
    /// emptied and written whole by the first checkpoint that finds room.
    pub state_unopened: Option<String>,
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

pub struct Store {
    dir: PathBuf,
    genesis: Genesis,
    log: LogFile,
    index: RwLock<LogIndex>,
    derived: Derived,
    /// The hashes of the last complete block read back for a proof.
    block_cache: Mutex<Option<(u64, Vec<Hash>)>>,
    /// The directory's exclusive lock, released when the store is dropped.
    _lock: std::fs::File,
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
        Ok((head, _, _)) => Some(Witness {
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

/// The tree head, its signer and signature. The signature is checked here against the key
/// the file names (the genesis's for version 1); whether that key is the one in force for
/// the head's size is the caller's check, once it knows the node key history (the log's).
fn decode_tree_head(bytes: &[u8], genesis: &Genesis) -> Result<(TreeHead, PublicKey, [u8; 64]), String> {
    let signer = if bytes.len() == TREE_HEAD_BYTES && &bytes[..8] == TREE_HEAD_MAGIC {
        genesis.node_key
    } else if bytes.len() == TREE_HEAD_BYTES + 32 && &bytes[..8] == TREE_HEAD_MAGIC_SIGNER {
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[TREE_HEAD_BYTES..]);
        PublicKey(key)
    } else {
        return Err("not a tree-head file of this version".into());
    };
    let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
    let mut root_hash = [0u8; 32];
    root_hash.copy_from_slice(&bytes[16..48]);
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&bytes[56..120]);
    let head =
        TreeHead { ledger_id: genesis.ledger_id, tree_size: u64_at(8), root_hash, timestamp_ms: u64_at(48) };
    head.verify(&signer, &signature).map_err(|e| format!("its signature by node key {signer}: {e}"))?;
    Ok((head, signer, signature))
}

impl Store {
    /// Persists the node's signed tree head (`tree-head`, written to a temporary file,
    /// synced, renamed, and the directory synced): the witness that the log held at least
    /// `head.tree_size` entries with this root. Call it only for a size whose entries are
    /// durable, with `signer` the node key in force for that size.
    pub fn write_tree_head(
        &self,
        head: &TreeHead,
        signer: &PublicKey,
        signature: &[u8; 64],
    ) -> Result<(), StoreError> {
        head.verify(signer, signature)
            .map_err(|e| StoreError::Bound(format!("a tree head not signed by node key {signer}: {e}")))?;
        let rotated = *signer != self.genesis.node_key;
        let mut bytes = Vec::with_capacity(TREE_HEAD_BYTES + 32);
        bytes.extend_from_slice(if rotated { TREE_HEAD_MAGIC_SIGNER } else { TREE_HEAD_MAGIC });
        bytes.extend_from_slice(&head.tree_size.to_be_bytes());
        bytes.extend_from_slice(&head.root_hash);
        bytes.extend_from_slice(&head.timestamp_ms.to_be_bytes());
        bytes.extend_from_slice(signature);
        if rotated {
            bytes.extend_from_slice(&signer.0);
        }
        let tmp = self.dir.join("tree-head.tmp");
        let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        std::io::Write::write_all(&mut file, &bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, self.dir.join(TREE_HEAD_FILE)).map_err(io(&self.dir))?;
        sync_dir(&self.dir)
    }

    /// The tree head last written by `write_tree_head`, if any.
    pub fn last_tree_head(&self) -> Option<TreeHead> {
        self.last_signed_tree_head().map(|(h, _)| h.head)
    }

    /// The tree head last written by `write_tree_head` and the key that signed it, if any.
    pub fn last_signed_tree_head(&self) -> Option<(SignedTreeHead, PublicKey)> {
        let bytes = std::fs::read(self.dir.join(TREE_HEAD_FILE)).ok()?;
        decode_tree_head(&bytes, &self.genesis)
            .ok()
            .map(|(head, signer, signature)| (SignedTreeHead { head, signature }, signer))
    }

    /// What a backup copies, read without the directory's lock (a node may be running):
    /// the genesis and the node's last signed tree head, whose signature is checked. The
    /// tree head is persisted only for entries already durable, so the first
    /// `tree_size` entries of the log are final; `None` when no tree head was written yet.
    pub fn read_committed(dir: &Path) -> Result<(Genesis, Option<SignedTreeHead>), StoreError> {
        if !Store::exists(dir) {
            return Err(StoreError::NotInitialised(dir.display().to_string()));
        }
        let genesis_path = dir.join(GENESIS_FILE);
        let bytes = std::fs::read(&genesis_path).map_err(io(&genesis_path))?;
        let genesis = Genesis::decode(&bytes).map_err(|e| corrupt(GENESIS_FILE.as_bytes(), e))?;
        let path = dir.join(TREE_HEAD_FILE);
        let head = match std::fs::read(&path) {
            Ok(bytes) => {
                let (head, _, signature) = decode_tree_head(&bytes, &genesis)
                    .map_err(|reason| StoreError::Corrupt { key: path.display().to_string(), reason })?;
                Some(SignedTreeHead { head, signature })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&path)(e)),
        };
        Ok((genesis, head))
    }

    /// The first `count` entries of the log in `dir`, each checked, read without the
    /// directory's lock (see `LogFile::read_prefix`).
    pub fn read_log_prefix(
        dir: &Path,
        genesis: &Genesis,
        count: u64,
        visitor: impl FnMut(Entry, Hash) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        LogFile::read_prefix(&dir.join(LOG_FILE), genesis, count, visitor)
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

    /// Opens the ledger in `dir`: reads and checks every record of the log against the
    /// chain and the witnesses (the last signed tree head and the state's checkpoint head),
    /// cuts a torn tail and refuses corruption without touching anything, and indexes the
    /// log. `visitor` is given the state's checkpoint head (if it can be read) and returns
    /// what sees every good record, in order. A state database that cannot be opened is
    /// set aside (once the log is known sound) and left empty, to rebuild.
    pub fn open<V>(
        dir: &Path,
        visitor: impl FnOnce(Option<CheckpointHead>) -> V,
    ) -> Result<(Store, OpenReport), StoreError>
    where
        V: FnMut(RecordInfo<'_>) -> Result<(), StoreError>,
    {
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
        if let Err(StateOpenError::NoSpace(reason)) = &opened {
            tracing::warn!(%reason, path = %state_path.display(), "the state database cannot be opened on a full disk; it is left as it is and opened once there is room");
        }
        let mut witnesses: Vec<Witness> = read_tree_head(dir, &genesis).into_iter().collect();
        let checkpoint = opened.as_ref().ok().and_then(read_checkpoint_head);
        if let Some(h) =
            opened.as_ref().ok().and_then(|db| read_state_head(db, &genesis)).filter(|h| h.size > 0)
        {
            witnesses.push(Witness {
                source: format!("the state database ({})", state_path.display()),
                size: h.size,
                check: WitnessCheck::EntryHash(h.hash),
            });
        }
        let mut index = LogIndex::default();
        let mut visit = visitor(checkpoint);
        let (log, recovery) = LogFile::open(&dir.join(LOG_FILE), &genesis, &witnesses, |record| {
            index.push(record.pos, record.hash);
            visit(record)
        })?;
        let (derived, state_set_aside, state_unopened) = match opened {
            Ok(db) => (Derived::new(db), None, None),
            // Not a damaged database: one that needs room to open. Never set aside for that.
            Err(StateOpenError::NoSpace(reason)) => (Derived::unopened(), None, Some(reason)),
            Err(StateOpenError::Unusable(reason)) => {
                (Derived::new(fresh_state(&state_path, &reason)?), Some(reason), None)
            }
        };
        let store = Store {
            dir: dir.to_path_buf(),
            genesis,
            log,
            index: RwLock::new(index),
            derived,
            block_cache: Mutex::new(None),
            _lock: lock,
        };
        Ok((store, OpenReport { recovery, state_set_aside, state_unopened }))
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, LogIndex> {
        self.index.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    // ---------------------------------------------------------------------------------
    // The log

    /// Appends a group of encoded entries with one write and one `fdatasync`, then
    /// indexes them: when this returns, they are durable and readable. `hashes` are the
    /// entries' hashes (`Entry::hash`), in order.
    pub fn append_group(&self, entries: &[Vec<u8>], hashes: &[Hash]) -> Result<(), StoreError> {
        assert_eq!(entries.len(), hashes.len(), "one hash per entry");
        let positions = self.log.append_group(entries)?;
        let mut index = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (pos, hash) in positions.into_iter().zip(hashes) {
            index.push(pos, *hash);
        }
        Ok(())
    }

    /// Makes sure `bytes` more can be appended without the disk filling up (the log's file
    /// is extended ahead of the writes, `fallocate`): an error here, and nothing was
    /// written. Filesystems without `fallocate` are not checked ahead.
    pub fn reserve(&self, bytes: u64) -> Result<(), StoreError> {
        self.log.reserve(bytes)
    }

    /// Free bytes on the filesystem of the log.
    pub fn free_bytes(&self) -> Option<u64> {
        let stat = nix::sys::statvfs::statvfs(&self.dir).ok()?;
        Some(stat.blocks_available() * stat.fragment_size())
    }

    /// Durable entries in the log.
    pub fn size(&self) -> u64 {
        self.index().size()
    }

    pub fn entry(&self, sequence: u64) -> Result<Option<Entry>, StoreError> {
        let Some(pos) = self.index().position(sequence) else { return Ok(None) };
        self.log.read(pos).map(Some)
    }

    /// Bytes of the log file.
    pub fn log_bytes(&self) -> u64 {
        self.log.len_bytes()
    }

    /// The size and Merkle root of the durable log.
    pub fn tree(&self) -> (u64, Hash) {
        let index = self.index();
        (index.size(), index.root())
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
        let current = self.size();
        if size > current {
            return Err(ProofRequestError::BeyondLog { size, current });
        }
        Ok(())
    }

    /// The hashes of the entries of complete block `block`, read back from the log.
    fn block_hashes(&self, block: u64) -> Result<Vec<Hash>, StoreError> {
        let mut cache = self.block_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((b, hashes)) = cache.as_ref()
            && *b == block
        {
            return Ok(hashes.clone());
        }
        let positions: Vec<RecordPos> = self.index().block_positions(block).to_vec();
        let hashes = positions
            .into_iter()
            .map(|pos| self.log.read(pos).map(|e| e.hash()))
            .collect::<Result<Vec<_>, _>>()?;
        *cache = Some((block, hashes.clone()));
        Ok(hashes)
    }

    // ---------------------------------------------------------------------------------
    // The derived state

    /// The state of the last checkpoint, every record checked; `None` without one. An
    /// error means the state database is damaged: clear it and rebuild.
    pub fn snapshot(&self) -> Result<Option<Snapshot>, StoreError> {
        let read = || self.derived.snapshot(&self.genesis);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(read))
            .unwrap_or_else(|_| Err(corrupt(b"state", "the state database panicked while it was read")))
    }

    /// Writes a checkpoint (one sled batch, flushed into sled's file, not synced). When the
    /// state database could not be opened at start (a full disk), it is opened and emptied
    /// first: `c` must then hold the whole state (what the log held at start, rolled
    /// forward from genesis, and everything since). A disk still full is `is_disk_full`.
    pub fn write_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError> {
        if !self.derived.is_open() {
            let path = self.dir.join(STATE_DIR);
            let db = match open_state(&path) {
                Ok(db) => db,
                Err(StateOpenError::NoSpace(reason)) => {
                    return Err(StoreError::Io {
                        path: path.display().to_string(),
                        source: std::io::Error::new(std::io::ErrorKind::StorageFull, reason),
                    });
                }
                // Damaged, as a start would have found it: set aside, and a fresh one written.
                Err(StateOpenError::Unusable(reason)) => fresh_state(&path, &reason)?,
            };
            self.derived.adopt(db)?;
            tracing::info!(path = %path.display(), "the state database is open again, now that there is room");
        }
        self.derived.write(c)
    }

    /// Whether the state database is open: it is, unless the node started on a full disk
    /// and no checkpoint has found room since.
    pub fn derived_is_open(&self) -> bool {
        self.derived.is_open()
    }

    /// Whether the state database holds nothing (no checkpoint was ever written, or it was
    /// cleared): the state is then the log rolled forward from genesis.
    pub fn derived_is_empty(&self) -> bool {
        self.derived.is_empty()
    }

    /// Empties the state database, to rebuild it.
    pub fn clear_derived(&self) -> Result<(), StoreError> {
        self.derived.clear()
    }

    /// The head of the last checkpoint, if any.
    pub fn checkpoint_head(&self) -> Result<Option<CheckpointHead>, StoreError> {
        self.derived.head()
    }

    /// An invoice as the last checkpoint holds it.
    pub fn invoice(&self, id: &InvoiceId) -> Result<Option<Invoice>, StoreError> {
        self.derived.invoice(id)
    }

    /// Up to `limit` sequences of `account`'s history after `after`, oldest first, as
    /// checkpointed.
    pub fn history(&self, account: &AccountId, after: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        self.derived.history(account, after, limit)
    }

    /// Up to `limit` sequences of `account`'s history before `before`, newest first, as
    /// checkpointed.
    pub fn history_back(
        &self,
        account: &AccountId,
        before: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        self.derived.history_back(account, before, limit)
    }

    /// `account`'s invoices issued after `after_sequence` (issue sequence, id), oldest
    /// first, as checkpointed.
    pub fn account_invoices(
        &self,
        account: &AccountId,
        after_sequence: u64,
        limit: usize,
    ) -> Result<Vec<(u64, InvoiceId)>, StoreError> {
        self.derived.account_invoices(account, after_sequence, limit)
    }

    /// Every invoice issued after `after_sequence` (issue sequence, id), in issue order,
    /// as checkpointed.
    pub fn all_invoices(
        &self,
        after_sequence: u64,
        limit: usize,
    ) -> Result<Vec<(u64, InvoiceId)>, StoreError> {
        self.derived.all_invoices(after_sequence, limit)
    }

    /// Bytes used on disk by the log and the state database.
    pub fn size_on_disk(&self) -> Result<(u64, u64), StoreError> {
        Ok((self.log.len_bytes(), self.derived.size_on_disk()?))
    }

    /// Flushes the state database (a clean shutdown finds its last checkpoint).
    pub fn close(&self) -> Result<(), StoreError> {
        self.derived.flush()
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

/// The stored Merkle tree: subtrees of 64 entries and up from the index, lower ones from
/// the entries themselves, read back from the log.
impl HashSource for Store {
    type Error = StoreError;

    fn subtree_hash(&self, level: u32, index: u64) -> Result<Hash, StoreError> {
        if let Some(hash) = self.index().subtree(level, index) {
            return Ok(hash);
        }
        let first = index << level;
        let block = first / BLOCK_ENTRIES;
        let hashes = self.block_hashes(block)?;
        let start = (first % BLOCK_ENTRIES) as usize;
        let leaves = hashes
            .get(start..start + (1usize << level))
            .ok_or_else(|| corrupt(b"tree", format!("missing subtree at level {level}, index {index}")))?;
        Ok(merkle::root(leaves))
    }
}

/// Opens the sled state, or says why it cannot: sled's own errors and its panics (a
/// damaged database can make sled 0.34 panic while it recovers) alike. A lock still held
/// is waited for, within a bound: the directory is locked by `Store::open` before this
/// runs, so nothing else can be using the state.
fn open_state(path: &Path) -> Result<sled::Db, StateOpenError> {
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
            // sled writes as it opens (a snapshot of its recovery): on a full disk it
            // cannot, which says nothing about the database.
            Ok(Err(sled::Error::Io(e)))
                if e.raw_os_error() == Some(libc_enospc()) || e.kind() == std::io::ErrorKind::StorageFull =>
            {
                return Err(StateOpenError::NoSpace(format!("sled cannot open it: {e}")));
            }
            Ok(Err(e)) => return Err(StateOpenError::Unusable(format!("sled cannot open it: {e}"))),
            // A panic on a disk with no room left is taken for the want of room too.
            Err(_) if no_room_left(path) => {
                return Err(StateOpenError::NoSpace(
                    "sled panicked while opening it, with no room left".into(),
                ));
            }
            Err(_) => return Err(StateOpenError::Unusable("sled panicked while opening it".into())),
        }
    }
}

/// Why the state database could not be opened.
enum StateOpenError {
    /// For want of disk space: the database is left as it is.
    NoSpace(String),
    /// Damaged (or sled cannot read it): it is set aside and rebuilt.
    Unusable(String),
}

/// Whether the filesystem holding `path` (or its nearest existing parent) has no byte
/// left for this process.
fn no_room_left(path: &Path) -> bool {
    let existing = path.ancestors().find(|p| p.exists()).unwrap_or(path);
    nix::sys::statvfs::statvfs(existing).is_ok_and(|s| s.blocks_available() == 0)
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
    open_state(path).map_err(|e| match e {
        StateOpenError::NoSpace(reason) | StateOpenError::Unusable(reason) => corrupt(b"state", reason),
    })
}

/// The state's checkpoint head, when it can be read and its checksum holds.
fn read_checkpoint_head(db: &sled::Db) -> Option<CheckpointHead> {
    let read = || db.get(derived::HEAD_KEY);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)) {
        Ok(Ok(Some(v))) => derived::decode_head(&v).ok(),
        _ => None,
    }
}

/// The head of the state's checkpoint: `Head::empty` for a new state, `None` when it
/// cannot be read or fails its checksum (then the state is no witness and is rebuilt).
fn read_state_head(db: &sled::Db, genesis: &Genesis) -> Option<Head> {
    let read = || db.get(derived::HEAD_KEY);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)) {
        Ok(Ok(None)) => Some(Head::empty(genesis)),
        Ok(Ok(Some(v))) => derived::decode_head(&v).ok().map(|h| h.head),
        Ok(Err(_)) | Err(_) => None,
    }
}

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
