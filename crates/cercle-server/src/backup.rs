//! Backups and restores of a ledger, in the auditor's format.
//!
//! A backup is the log up to the node's last signed tree head, written as a `cercle-log/v1`
//! file (`cercle_audit::jsonl`): the genesis, every entry, the signed tree head. It holds
//! only what the ledger publishes to its auditors, never a secret, so it may be kept and
//! copied like any export, and any auditor's `cercle audit export --format jsonl` is a
//! backup too. `backup` reads a running node's directory without its lock: the tree head
//! is persisted only once its entries are durable (`persist_witness`), and durable entries
//! are never rewritten, so the copy is consistent as of that tree head. It checks the
//! chain and the Merkle root against the signed head before the file is put in place, and
//! never overwrites a file.
//!
//! `restore` checks everything before it writes anything: every signature, every hash
//! link, a full replay with the core, the Merkle root against the signed tree head (all by
//! `cercle_audit::verify`, which names the first bad entry). Then it writes the log, the
//! tree head and the node key into a new (or empty) directory, rebuilds the state from the
//! log, and checks that the rebuilt state has the digest the replay computed.
//!
//! The node's signing key is secret and is never in a backup. The genesis names the first
//! one and each `RotateNodeKey` entry the next (tree heads and statements are signed with
//! the key in force for their size): a restore takes the key file of the key in force at
//! the backup's tree head (`node.key` if the key was never rotated, else the rotation's
//! file under `node-keys/`, kept apart from backups) and checks it is that key.

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cercle_core::checkpoint::SignedTreeHead;
use cercle_core::merkle::{Frontier, Hash};
use cercle_core::sign::decode_key_file;
use cercle_store::Store;

use crate::{DataDir, NodeError, io_err};

use cercle_limits::{
    BACKUP_TREE_HEAD_WAIT, RESTORE_GROUP_BYTES_MAX, RESTORE_GROUP_ENTRIES_MAX, WITNESS_INTERVAL,
};

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub tree_head: SignedTreeHead,
    pub bytes: u64,
    pub path: PathBuf,
    pub elapsed_ms: u64,
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub tree_head: SignedTreeHead,
    pub accounts: u64,
    pub state_digest: [u8; 32],
    pub verify_ms: u64,
    pub write_ms: u64,
}

/// Writes a backup of the ledger in `dir` to `out`, which must not exist, as of the
/// node's last signed tree head. Safe while the node runs.
pub fn backup(dir: &DataDir, out: &Path) -> Result<BackupReport, NodeError> {
    let started = Instant::now();
    if out.symlink_metadata().is_ok() {
        return Err(NodeError::Invalid(format!(
            "{} exists: a backup never replaces a file; name a new one",
            out.display()
        )));
    }
    let ledger = dir.ledger();
    let (genesis, tree_head) = committed(&ledger)?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".cercle-backup-")
        .suffix(".partial")
        .tempfile_in(&parent)
        .map_err(io_err(&parent))?;
    let mut writer = cercle_audit::jsonl::Writer::new(BufWriter::new(tmp.as_file()), &genesis)
        .map_err(io_err(tmp.path()))?;
    let mut frontier = Frontier::new();
    let mut write_error = None;
    Store::read_log_prefix(&ledger, &genesis, tree_head.head.tree_size, |entry, hash| {
        frontier
            .push(hash)
            .map_err(|e| cercle_store::StoreError::Bound(format!("the log's Merkle tree: {e}")))?;
        if let Err(e) = writer.write_entry(&entry) {
            write_error = Some(e);
            return Err(cercle_store::StoreError::Bound("cannot write the backup".into()));
        }
        Ok(())
    })
    .map_err(|e| match write_error.take() {
        Some(io) => NodeError::Io { path: tmp.path().to_path_buf(), source: io },
        None => NodeError::Store(e),
    })?;
    if frontier.root() != tree_head.head.root_hash {
        return Err(NodeError::Invalid(format!(
            "the first {} entries of {} do not have the Merkle root the node signed: the log is damaged; no backup was written",
            tree_head.head.tree_size,
            ledger.display()
        )));
    }
    writer.write_tree_head(&tree_head).map_err(io_err(tmp.path()))?;
    drop(writer);
    tmp.as_file().sync_all().map_err(io_err(tmp.path()))?;
    let bytes = tmp.as_file().metadata().map_err(io_err(tmp.path()))?.len();
    // Linked into place only if nothing took the name meanwhile.
    tmp.persist_noclobber(out).map_err(|e| {
        NodeError::Invalid(format!("cannot put the backup in place at {}: {}", out.display(), e.error))
    })?;
    cercle_store::log::sync_dir(&parent)?;
    Ok(BackupReport {
        tree_head,
        bytes,
        path: out.to_path_buf(),
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

/// The genesis and the last signed tree head of the ledger in `ledger`. A running node
/// writes its first tree head within `WITNESS_INTERVAL` of its first entries, so a backup
/// taken in that window waits for it (polling, up to `BACKUP_TREE_HEAD_WAIT`) rather than
/// fail; a ledger that has none after that (no node has served it since its entries were
/// written) is an error.
fn committed(ledger: &Path) -> Result<(cercle_core::Genesis, SignedTreeHead), NodeError> {
    let deadline = Instant::now() + BACKUP_TREE_HEAD_WAIT;
    loop {
        if let (genesis, Some(tree_head)) = Store::read_committed(ledger)? {
            return Ok((genesis, tree_head));
        }
        if Instant::now() >= deadline {
            return Err(NodeError::Invalid(format!(
                "{} has no signed tree head yet: a running node writes one within {} ms of its first entry, and at shutdown; start the node once, then back up",
                ledger.display(),
                WITNESS_INTERVAL.as_millis()
            )));
        }
        std::thread::sleep(WITNESS_INTERVAL / 10);
    }
}

/// True when `path` does not exist or is an empty directory.
fn is_new_or_empty(path: &Path) -> Result<bool, NodeError> {
    match std::fs::read_dir(path) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(NodeError::Io { path: path.to_path_buf(), source: e }),
    }
}

/// Restores the backup (or auditor's jsonl export) `from` into `dir`, which must be new or
/// empty, with the node key in `node_key`. Nothing is written unless every check passes.
pub fn restore(from: &Path, dir: &DataDir, node_key: &Path) -> Result<RestoreReport, NodeError> {
    let started = Instant::now();
    if !is_new_or_empty(&dir.root)? {
        return Err(NodeError::Invalid(format!(
            "{} is not empty: a restore writes only into a new or empty directory",
            dir.root.display()
        )));
    }
    let key_text = std::fs::read_to_string(node_key).map_err(io_err(node_key))?;
    let keypair =
        decode_key_file(&key_text).map_err(|e| NodeError::Invalid(format!("{}: {e}", node_key.display())))?;
    let refused = |what: String| {
        NodeError::Invalid(format!("the backup {} is refused: {what}; nothing was written", from.display()))
    };
    let log = cercle_audit::jsonl::read(from).map_err(|e| refused(source_error(&e)))?;
    let genesis = log.genesis.clone();
    // The replay says which key is in force at the tree head (the genesis's, unless the
    // log rotated it).
    let wrong_key = |in_force: cercle_core::PublicKey| {
        NodeError::Invalid(format!(
            "{} holds the key {}, but the node key in force at the backup's tree head is {in_force}: give that key's file ({})",
            node_key.display(),
            keypair.public_key(),
            if in_force == genesis.node_key {
                "the node key the ledger was created with"
            } else {
                "the rotation's key file, under node-keys/"
            }
        ))
    };
    let options = cercle_audit::Options {
        line_offset: Some(cercle_audit::jsonl::LINE_OFFSET),
        ..cercle_audit::Options::default()
    };
    let verdict = cercle_audit::verify(&genesis, log.entries, Some(&log.tree_head), &options, |_| {})
        .map_err(|e| refused(e.to_string()))?;
    let in_force = verdict.ledger.state().node_keys().current();
    if keypair.public_key() != in_force {
        return Err(wrong_key(in_force));
    }
    let verify_ms = started.elapsed().as_millis() as u64;
    let created_root = !dir.root.exists();
    let written = write_restored(from, dir, &keypair, &log.tree_head);
    let report = written.and_then(|()| rebuild_state(dir));
    let (accounts, state_digest) = match report {
        Ok(done) => done,
        Err(e) => {
            // Take back what was written, so that a failed restore leaves the directory as
            // it found it (new or empty).
            if created_root {
                let _ = std::fs::remove_dir_all(&dir.root);
            } else {
                let _ = std::fs::remove_dir_all(dir.ledger());
                let _ = std::fs::remove_file(dir.node_key());
            }
            return Err(e);
        }
    };
    if state_digest != verdict.state_digest {
        return Err(NodeError::Invalid(format!(
            "the state rebuilt in {} differs from the replay of the backup (digest {} against {}); the directory is left for inspection",
            dir.root.display(),
            hex::encode(state_digest),
            hex::encode(verdict.state_digest)
        )));
    }
    Ok(RestoreReport {
        tree_head: log.tree_head,
        accounts,
        state_digest,
        verify_ms,
        write_ms: started.elapsed().as_millis() as u64 - verify_ms,
    })
}

fn source_error(e: &cercle_audit::SourceError) -> String {
    match e.line {
        Some(line) => format!("line {line}: {}", e.message),
        None => e.message.clone(),
    }
}

/// Writes the node key, the genesis, the log and the tree head of a verified backup.
fn write_restored(
    from: &Path,
    dir: &DataDir,
    keypair: &cercle_core::sign::Keypair,
    tree_head: &SignedTreeHead,
) -> Result<(), NodeError> {
    std::fs::create_dir_all(&dir.root).map_err(io_err(&dir.root))?;
    crate::write_key_file(&dir.node_key(), keypair)?;
    // Read a second time: the first pass verified it, and the file is checked again on
    // the way (an entry that changed in between fails the chain, or the digest below).
    let log = cercle_audit::jsonl::read(from).map_err(|e| NodeError::Invalid(source_error(&e)))?;
    Store::create(&dir.ledger(), &log.genesis)?;
    let (store, _) = Store::open(&dir.ledger(), |_| |_: cercle_store::RecordInfo<'_>| Ok(()))?;
    let mut entries: Vec<Vec<u8>> = Vec::new();
    let mut hashes: Vec<Hash> = Vec::new();
    let mut bytes = 0;
    for entry in log.entries {
        let entry = entry.map_err(|e| NodeError::Invalid(source_error(&e)))?;
        let encoded = entry.encode();
        bytes += encoded.len();
        hashes.push(entry.hash());
        entries.push(encoded);
        if entries.len() >= RESTORE_GROUP_ENTRIES_MAX || bytes >= RESTORE_GROUP_BYTES_MAX {
            store.append_group(&entries, &hashes)?;
            (entries, hashes, bytes) = (Vec::new(), Vec::new(), 0);
        }
    }
    if !entries.is_empty() {
        store.append_group(&entries, &hashes)?;
    }
    if store.tree() != (tree_head.head.tree_size, tree_head.head.root_hash) {
        return Err(NodeError::Invalid(format!(
            "the log written in {} does not match the backup's tree head",
            dir.ledger().display()
        )));
    }
    store.write_tree_head(&tree_head.head, &keypair.public_key(), &tree_head.signature)?;
    store.close()?;
    Ok(())
}

/// Rebuilds the state of the restored log and writes its checkpoint; returns the number
/// of accounts and the state's digest.
fn rebuild_state(dir: &DataDir) -> Result<(u64, [u8; 32]), NodeError> {
    let options = crate::recovery::RecoverOptions { verify_signatures: false, rebuild: true };
    let recovered = crate::recovery::recover(&dir.ledger(), options)?;
    let state = recovered.ledger.state();
    let done = (state.account_count() as u64, state.digest());
    crate::checkpointer::write_now(&recovered.store, recovered.pending)?;
    Ok(done)
}
