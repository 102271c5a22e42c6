//! Fault injection on a ledger of several thousand entries (issue #11): bit flips across
//! the log, truncations, an older copy of the log, random bytes in sled's files, sled's
//! directory deleted, a torn last write. Every case must end in one of two ways: the node
//! refuses to start, names the first bad entry and its byte offset, and changes nothing;
//! or it starts with every acknowledged operation present. Never in silent loss.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cercle_core::sign::Keypair;
use cercle_core::{AccountId, OpKind, Operation, OperationId, RegisterAccount, Transfer};
use cercle_server::now_ms;
use common::{TestNode, keypair, sign_op};

/// Entries in the ledger the faults are injected into.
const ENTRIES: u64 = 3_002;
/// Operations submitted together, so the writer makes groups of up to this many.
const CHUNK: usize = 250;
/// Where the older copy of the log is taken.
const OLD_COPY_AT: u64 = 1_502;
const HOUR_MS: u64 = 60 * 60 * 1000;

fn handle(text: &str) -> AccountId {
    AccountId::parse(text).expect("a valid handle")
}

fn op(n: u64, kind: OpKind) -> Operation {
    let mut id = [0u8; 16];
    id[8..].copy_from_slice(&n.to_be_bytes());
    Operation { id: OperationId(id), valid_until_ms: now_ms() + HOUR_MS, kind }
}

fn register(n: u64, account: &str, key: &Keypair) -> Operation {
    op(
        n,
        OpKind::RegisterAccount(RegisterAccount {
            account: handle(account),
            display_name: account.into(),
            keys: vec![key.public_key()],
            credit_limit_minor: 1_000_000,
            max_balance_minor: None,
            profile: Default::default(),
            allow_shared_key: false,
        }),
    )
}

fn transfer(n: u64, payer: &str, payee: &str) -> Operation {
    op(
        n,
        OpKind::Transfer(Transfer {
            payer: handle(payer),
            payee: handle(payee),
            amount_minor: 1,
            memo: format!("invoice {n}"),
            invoice_ref: None,
            invoice: None,
        }),
    )
}

/// Every file under `dir`, with its bytes: a snapshot to compare.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("readable directory") {
            let path = e.expect("an entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(
                    path.strip_prefix(dir).expect("below").to_path_buf(),
                    std::fs::read(&path).expect("readable"),
                );
            }
        }
    }
    out
}

fn restore(files: &BTreeMap<PathBuf, Vec<u8>>, dir: &Path) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).expect("removable");
    }
    for (rel, bytes) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("a directory");
        std::fs::write(&path, bytes).expect("writable");
    }
}

/// Where each record of a log starts, from its length fields: (offset, length of header
/// and payload).
fn records(log: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 40;
    while at + 10 <= log.len() {
        let len = u32::from_be_bytes(log[at..at + 4].try_into().expect("4 bytes")) as usize;
        out.push((at, 10 + len));
        at += 10 + len;
    }
    assert_eq!(at, log.len(), "the pristine log is whole");
    out
}

struct Bench {
    node: TestNode,
    ledger_dir: PathBuf,
    pristine: BTreeMap<PathBuf, Vec<u8>>,
    old_log: Vec<u8>,
    head_hash: [u8; 32],
}

fn bench() -> Bench {
    let admin = keypair(1);
    let (alpha, bravo) = (keypair(11), keypair(12));
    let mut node = TestNode::start_new(&admin);
    let ledger_id = node.genesis.ledger_id;
    for r in [register(1, "alpha", &alpha), register(2, "bravo", &bravo)] {
        node.submit(sign_op(&ledger_id, &admin, &r)).expect("registered");
    }
    let ledger_dir = node.root().join("ledger");
    let mut old_log = Vec::new();
    let mut n = 3;
    while n <= ENTRIES {
        let end = (n + CHUNK as u64).min(ENTRIES + 1);
        let envelopes: Vec<_> = (n..end)
            .map(|i| {
                let (key, payer, payee) =
                    if i % 2 == 1 { (&alpha, "alpha", "bravo") } else { (&bravo, "bravo", "alpha") };
                sign_op(&ledger_id, key, &transfer(i, payer, payee))
            })
            .collect();
        for r in node.submit_all(envelopes) {
            r.expect("every transfer is acknowledged");
        }
        if n <= OLD_COPY_AT && OLD_COPY_AT < end {
            // Not exactly at OLD_COPY_AT: wherever the chunk ends.
            old_log = std::fs::read(ledger_dir.join("entries.log")).expect("the log");
        }
        n = end;
    }
    assert!(!old_log.is_empty());
    node.persist_witness();
    assert_eq!(node.log_size(), ENTRIES);
    node.stop();
    let head_hash = node.open_store().ledger.head().hash;
    let pristine = snapshot(&ledger_dir);
    Bench { node, ledger_dir, pristine, old_log, head_hash }
}

impl Bench {
    fn log_path(&self) -> PathBuf {
        self.ledger_dir.join("entries.log")
    }

    fn pristine_log(&self) -> &[u8] {
        &self.pristine[Path::new("entries.log")]
    }

    /// Starts the node on the damaged directory and expects a refusal naming `entry` at
    /// `offset`, with nothing changed but sled's own files.
    fn expect_refusal(&mut self, case: &str, entry: u64, offset: usize) {
        let before = snapshot(&self.ledger_dir);
        let err = self.node.try_start().err().unwrap_or_else(|| panic!("{case}: the node started"));
        let message = err.to_string();
        let named = format!("corrupt at entry {entry} (byte {offset})");
        assert!(message.contains(&named), "{case}: expected {named:?} in {message}");
        assert!(message.contains("accept-loss") && message.contains("backup"), "{case}: {message}");
        let after = snapshot(&self.ledger_dir);
        let outside_state = |m: &BTreeMap<PathBuf, Vec<u8>>| {
            m.iter()
                .filter(|(p, _)| !p.starts_with("state"))
                .map(|(p, b)| (p.clone(), b.clone()))
                .collect::<Vec<_>>()
        };
        assert!(
            outside_state(&before) == outside_state(&after),
            "{case}: a refused start changed the ledger"
        );
        assert!(!self.ledger_dir.join("state.broken").exists(), "{case}: the state was moved aside");
    }

    /// Starts the node and expects every acknowledged entry, exactly as they were.
    fn expect_all_present(&mut self, case: &str) {
        self.node.try_start().unwrap_or_else(|e| panic!("{case}: the node refused: {e}"));
        assert_eq!(self.node.log_size(), ENTRIES, "{case}");
        self.node.stop();
        let recovered = self.node.open_store();
        assert_eq!(recovered.ledger.head().hash, self.head_hash, "{case}: the history differs");
    }

    fn reset(&self) {
        restore(&self.pristine, &self.ledger_dir);
    }
}

#[test]
fn damage_to_committed_entries_is_refused_and_named_never_cut() {
    let mut b = bench();
    let log = b.pristine_log().to_vec();
    let recs = records(&log);
    assert_eq!(recs.len() as u64, ENTRIES);
    // Bit flips from the first record to the last byte of the last group.
    let count = 48;
    for k in 0..count {
        let at = 40 + (log.len() - 41) * k / (count - 1);
        let (index, &(start, _)) =
            recs.iter().enumerate().rev().find(|(_, (s, _))| *s <= at).expect("a record holds every byte");
        b.reset();
        let mut damaged = log.clone();
        damaged[at] ^= 0x10;
        std::fs::write(b.log_path(), &damaged).expect("writable");
        b.expect_refusal(&format!("bit flip at byte {at}"), index as u64 + 1, start);
    }
    // Truncations at many places, record boundaries included.
    for k in 0..24 {
        let at = 40 + (log.len() - 40) * k / 24 + (k % 3) * 5;
        let kept = recs.iter().take_while(|(s, len)| s + len <= at).count();
        let end = recs.get(kept).map_or(log.len(), |r| r.0);
        b.reset();
        std::fs::write(b.log_path(), &log[..at]).expect("writable");
        b.expect_refusal(&format!("truncated at byte {at}"), kept as u64 + 1, end);
    }
    // An older copy of the log put back in place.
    b.reset();
    std::fs::write(b.log_path(), &b.old_log).expect("writable");
    let kept = records(&b.old_log).len();
    b.expect_refusal("an older copy of the log", kept as u64 + 1, b.old_log.len());
    // The same without the state: the signed tree head alone still witnesses the size.
    b.reset();
    std::fs::remove_dir_all(b.ledger_dir.join("state")).expect("removable");
    std::fs::write(b.log_path(), &b.old_log).expect("writable");
    b.expect_refusal("an older copy, no state", kept as u64 + 1, b.old_log.len());
}

#[test]
fn damage_to_derived_state_or_an_unacknowledged_tail_loses_nothing() {
    let mut b = bench();
    // sled's directory deleted: rebuilt from the log.
    b.reset();
    std::fs::remove_dir_all(b.ledger_dir.join("state")).expect("removable");
    b.expect_all_present("sled deleted");
    // Random bytes written into sled's files, in several places: the state is rebuilt.
    let state_files: Vec<PathBuf> =
        b.pristine.keys().filter(|p| p.starts_with("state") && b.pristine[*p].len() > 64).cloned().collect();
    assert!(!state_files.is_empty());
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..12 {
        b.reset();
        for rel in &state_files {
            let path = b.ledger_dir.join(rel);
            let mut bytes = std::fs::read(&path).expect("readable");
            for _ in 0..4 {
                let at = (next() as usize) % (bytes.len() - 32);
                for byte in &mut bytes[at..at + 32] {
                    *byte = next() as u8;
                }
            }
            std::fs::write(&path, bytes).expect("writable");
        }
        b.expect_all_present(&format!("random bytes in sled, round {round}"));
    }
    // Each sled file truncated to half, zeroed at its start, or deleted (sled 0.34 panics on
    // some of these while it recovers: "tried to serialize Uninitialized").
    for (k, rel) in state_files.iter().enumerate() {
        for damage in ["half", "zeros", "gone"] {
            b.reset();
            let path = b.ledger_dir.join(rel);
            let bytes = &b.pristine[rel];
            match damage {
                "half" => std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("writable"),
                "zeros" => {
                    let mut z = bytes.clone();
                    z[..bytes.len().min(4096)].fill(0);
                    std::fs::write(&path, z).expect("writable");
                }
                _ => std::fs::remove_file(&path).expect("removable"),
            }
            b.expect_all_present(&format!("sled file {k} ({}): {damage}", rel.display()));
        }
    }
    // A torn write of a group that was never acknowledged, at the end: cut back.
    let log = b.pristine_log().to_vec();
    let last = *records(&log).last().expect("records");
    for tail in [3usize, 10, 11, last.1 - 1] {
        b.reset();
        let mut torn = log.clone();
        torn.extend_from_slice(&log[last.0..last.0 + tail]);
        std::fs::write(b.log_path(), &torn).expect("writable");
        b.expect_all_present(&format!("torn tail of {tail} bytes"));
        assert_eq!(std::fs::read(b.log_path()).expect("the log"), log, "the torn tail is cut");
    }
}

#[test]
fn an_accepted_loss_keeps_the_good_prefix_and_records_it() {
    let mut b = bench();
    let log = b.pristine_log().to_vec();
    let recs = records(&log);
    let (start, _) = recs[1_499];
    let mut damaged = log.clone();
    damaged[start + 30] ^= 0x01;
    std::fs::write(b.log_path(), &damaged).expect("writable");
    b.expect_refusal("before accepting the loss", 1_500, start);
    let report = cercle_store::Store::accept_loss(&b.ledger_dir, 1_700_000_000_000).expect("accepted");
    assert_eq!((report.kept_entries, report.claimed_entries), (1_499, ENTRIES));
    assert_eq!(std::fs::read(b.ledger_dir.join("entries.log.damaged-1700000000000")).expect("kept"), damaged);
    let losses = std::fs::read_to_string(b.ledger_dir.join("LOSSES.jsonl")).expect("recorded");
    assert!(
        losses.contains("\"kept_entries\":1499") && losses.contains("\"first_lost_sequence\":1500"),
        "{losses}"
    );
    b.node.try_start().expect("starts on what is left");
    assert_eq!(b.node.log_size(), 1_499);
}
