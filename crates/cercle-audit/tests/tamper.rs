//! Tampering with an exported log, in process: a signed log of 1,200 entries built with the
//! core's `Ledger`, written in the jsonl format, then changed byte by byte and entry by
//! entry. Every change must fail the audit, naming the first bad line.

use std::io::Cursor;

use cercle_audit::synth::{SynthLog, envelope, sign_log, sign_tree_head, synth_log};
use cercle_audit::{AuditFailure, Options, SignedTreeHead, Verdict, jsonl, verify};
use cercle_core::sign::Keypair;
use cercle_core::{Entry, Ledger, OpKind, Operation, OperationId, RegisterAccount, Transfer};

const ENTRIES: usize = 1_200;

/// What a failed audit names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Named {
    /// The first bad line of the file.
    Line(u64),
    /// The tree head (the last line), or the end of the file.
    TreeHead,
}

fn options() -> Options {
    Options { threads: 2, line_offset: Some(jsonl::LINE_OFFSET), allow_entries_after_tree_head: false }
}

/// Audits a jsonl log held in memory.
fn audit(bytes: &[u8]) -> Result<Verdict, (Named, String)> {
    let log = match jsonl::from_reader(Cursor::new(bytes)) {
        Ok(log) => log,
        Err(e) => return Err((e.line.map_or(Named::TreeHead, Named::Line), e.to_string())),
    };
    verify(&log.genesis, log.entries, Some(&log.tree_head), &options(), |_| {}).map_err(|f: AuditFailure| {
        let named = match f.position() {
            Some(at) => Named::Line(at.line.expect("a jsonl source has lines")),
            None => Named::TreeHead,
        };
        (named, f.to_string())
    })
}

#[track_caller]
fn check(bytes: &[u8], expected: Named, reason: &str) {
    match audit(bytes) {
        Ok(v) => {
            panic!("the audit passed ({} entries), expected a failure at {expected:?}", v.entries_checked)
        }
        Err((named, message)) => {
            assert_eq!(named, expected, "{message}");
            assert!(message.contains(reason), "{message:?} does not say {reason:?}");
        }
    }
}

fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    lines.concat()
}

/// The log with `entries` and tree head `head` instead of the honest ones.
fn rewritten(log: &SynthLog, entries: &[Entry], head: &SignedTreeHead) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = jsonl::Writer::new(&mut out, &log.genesis).unwrap();
        for e in entries {
            w.write_entry(e).unwrap();
        }
    }
    // A tree head for another size than the entries written is refused by the writer;
    // write the line by hand.
    out.extend_from_slice(jsonl::tree_head_line(head).as_bytes());
    out.push(b'\n');
    out
}

/// A valid, signed transfer chained after the first `after` entries.
fn forged_transfer(log: &SynthLog, after: usize) -> Entry {
    let mut replayer = cercle_core::Replayer::new(log.genesis.clone(), false);
    for e in &log.entries[..after] {
        replayer.replay(e).unwrap();
    }
    let mut ledger: Ledger = replayer.into_ledger();
    let (payer, key) = &log.firms[0];
    let op = Operation {
        id: OperationId([0xEE; 16]),
        valid_until_ms: ledger.head().timestamp_ms + 60_000,
        kind: OpKind::Transfer(Transfer {
            payer: payer.clone(),
            payee: log.firms[1].0.clone(),
            amount_minor: 1,
            memo: "forged".into(),
            invoice_ref: None,
            invoice: None,
        }),
    };
    let ts = ledger.head().timestamp_ms;
    match ledger.execute(ts, envelope(&log.genesis, key, &op), &op).unwrap() {
        cercle_core::Executed::Accepted { entry, .. } => entry,
        cercle_core::Executed::Duplicate { sequence } => panic!("a duplicate of entry {sequence}"),
    }
}

#[test]
fn an_honest_log_passes_with_the_ledgers_own_state() {
    let log = synth_log(ENTRIES, 1);
    let verdict = audit(&log.jsonl()).unwrap();
    assert_eq!(verdict.entries_checked, ENTRIES as u64);
    assert_eq!(verdict.state_digest, log.ledger.state().digest());
    assert_eq!(verdict.ledger.head(), log.ledger.head());
    assert_eq!(verdict.merkle_root, log.tree_head.head.root_hash);
    // One thread or many: the same verdict.
    let single = Options { threads: 1, ..options() };
    let v1 = verify(&log.genesis, log.entries.iter().cloned().map(Ok), Some(&log.tree_head), &single, |_| {})
        .unwrap();
    assert_eq!((v1.state_digest, v1.merkle_root), (verdict.state_digest, verdict.merkle_root));
}

/// Flips byte `at` of `bytes` with a mask that depends on the position.
fn flipped(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let mask = (at.wrapping_mul(0x9E37_79B9) >> 7) as u8 | 1;
    b[at] ^= mask;
    b
}

/// The line a flip at `at` must be reported on; `starts` holds where each line starts.
fn expected_for_flip(bytes: &[u8], starts: &[usize], at: usize) -> Named {
    let line = starts.partition_point(|&start| start <= at) as u64;
    let line_count = starts.len() as u64;
    // A flipped line end joins a line to the next; the joined line is the bad one. The
    // tree head is the last line, so joining the last entry to it spoils the tree head.
    let last_line_touched = if bytes[at] == b'\n' { line + 1 >= line_count } else { line == line_count };
    if last_line_touched { Named::TreeHead } else { Named::Line(line) }
}

#[test]
fn flipping_any_byte_fails_at_its_line() {
    let log = synth_log(ENTRIES, 2);
    let bytes = log.jsonl();
    // Where each line starts, and where the file ends.
    let mut starts: Vec<usize> = vec![0];
    starts.extend(bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1));
    let end = starts.pop().unwrap();
    assert_eq!(end, bytes.len());
    let line_range = |line: usize| starts[line - 1]..starts.get(line).copied().unwrap_or(end);
    let first_transfer = 1 + log
        .entries
        .iter()
        .position(|e| {
            matches!(cercle_core::body::decode(&e.envelope.body).unwrap().kind, OpKind::Transfer(_))
        })
        .unwrap();
    // Every byte of: the genesis, the first entry (an administrator's registration), the
    // first transfer (a firm's), and the tree head.
    let mut positions: Vec<usize> = Vec::new();
    for line in [1, 2, first_transfer + 1, ENTRIES + 2] {
        positions.extend(line_range(line));
    }
    // And a sample of positions anywhere.
    let mut x = 0x1234_5678_9abc_def1u64;
    for _ in 0..300 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        positions.push((x % bytes.len() as u64) as usize);
    }
    for at in positions {
        let expected = expected_for_flip(&bytes, &starts, at);
        match audit(&flipped(&bytes, at)) {
            Ok(_) => panic!("flipping byte {at} ({:?}) passed the audit", bytes[at] as char),
            Err((named, message)) => assert_eq!(named, expected, "byte {at}: {message}"),
        }
    }
}

#[test]
fn deleting_reordering_duplicating_or_inserting_entries_fails_at_the_first_bad_line() {
    let log = synth_log(ENTRIES, 3);
    let honest = lines(&log.jsonl());
    // Entry n is on line n + 1, honest[n] in 0-based terms.
    let edit = |f: &dyn Fn(&mut Vec<Vec<u8>>)| {
        let mut l = honest.clone();
        f(&mut l);
        join(&l)
    };
    // Deleting entry 500: its place holds entry 501.
    check(&edit(&|l| drop(l.remove(500))), Named::Line(501), "expected sequence 500");
    // Deleting entry 1.
    check(&edit(&|l| drop(l.remove(1))), Named::Line(2), "expected sequence 1");
    // Deleting the last entry: the tree head commits to it.
    check(
        &edit(&|l| drop(l.remove(ENTRIES))),
        Named::Line(ENTRIES as u64 + 1),
        "the log ends after 1199 entries, but the node's signed tree head commits to 1200",
    );
    // Swapping entries 700 and 701.
    check(&edit(&|l| l.swap(700, 701)), Named::Line(701), "expected sequence 700");
    // Entry 300 twice.
    check(&edit(&|l| l.insert(301, l[300].clone())), Named::Line(302), "expected sequence 301");
    // An entry from another ledger.
    let other = lines(&synth_log(400, 9).jsonl());
    check(&edit(&|l| l.insert(51, other[51].clone())), Named::Line(52), "previous hash does not match");
    // A validly signed entry slipped in after entry 800: it chains, but entry 801 no
    // longer does.
    let forged = jsonl::entry_line(&forged_transfer(&log, 800)) + "\n";
    check(&edit(&|l| l.insert(801, forged.clone().into_bytes())), Named::Line(803), "expected sequence 802");
    // The same entry appended after the last one: the tree head does not cover it.
    let forged = jsonl::entry_line(&forged_transfer(&log, ENTRIES)) + "\n";
    check(
        &edit(&|l| l.insert(ENTRIES + 1, forged.clone().into_bytes())),
        Named::Line(ENTRIES as u64 + 2),
        "is not covered by the node's signed tree head",
    );
    // A changed signature or body, with the entry's hash recomputed to match: the
    // signature no longer verifies.
    let mut entry = log.entries[399].clone();
    entry.envelope.signatures[0].signature[10] ^= 1;
    let resealed = jsonl::entry_line(&entry) + "\n";
    check(&edit(&|l| l[400] = resealed.clone().into_bytes()), Named::Line(401), "signature does not verify");
    let mut entry = log.entries[399].clone();
    let last = entry.envelope.body.len() - 1;
    entry.envelope.body[last] ^= 1;
    let resealed = jsonl::entry_line(&entry) + "\n";
    check(&edit(&|l| l[400] = resealed.clone().into_bytes()), Named::Line(401), "signature does not verify");
    // The tree head, kept, must be the last line.
    check(&edit(&|l| drop(l.pop())), Named::TreeHead, "not a tree-head line");
}

#[test]
fn a_log_the_node_itself_signed_is_still_replayed() {
    let log = synth_log(ENTRIES, 4);
    let n = ENTRIES as u64;
    // A tree head that is not the node's.
    let impostor = Keypair::from_seed(&[0x42; 32]);
    let forged = sign_tree_head(&log.genesis, &impostor, n, log.tree_head.head.root_hash, 1);
    check(&rewritten(&log, &log.entries, &forged), Named::TreeHead, "does not verify with the node key");
    // A tree head of the node, over another root.
    let wrong_root = sign_tree_head(&log.genesis, &log.node, n, [7; 32], 1);
    check(
        &rewritten(&log, &log.entries, &wrong_root),
        Named::TreeHead,
        "the Merkle root of the first 1200 entries",
    );
    // The node signs a log whose last entry, a transfer, records a wrong outcome: the
    // replay catches it.
    let last_transfer = log.entries.iter().rposition(|e| e.balances_after.len() == 2).unwrap();
    let mut entries = log.entries[..=last_transfer].to_vec();
    entries[last_transfer].balances_after[0].balance_minor += 1;
    let head = sign_log(&log.genesis, &log.node, &entries);
    let line = last_transfer as u64 + 2;
    check(&rewritten(&log, &entries, &head), Named::Line(line), "the recorded outcome differs");
    // An administrative act signed by a firm, chained and covered by the node's signature.
    let mut entries = log.entries.clone();
    let (_, firm_key) = &log.firms[0];
    let op = Operation {
        id: OperationId([0xAB; 16]),
        valid_until_ms: log.ledger.head().timestamp_ms + 60_000,
        kind: OpKind::RegisterAccount(RegisterAccount {
            account: cercle_core::AccountId::parse("self-made").unwrap(),
            display_name: "Self-made".into(),
            keys: vec![firm_key.public_key()],
            credit_limit_minor: 1_000_000_000,
            max_balance_minor: None,
            profile: Default::default(),
            allow_shared_key: false,
        }),
    };
    entries.push(Entry {
        sequence: n + 1,
        timestamp_ms: log.ledger.head().timestamp_ms,
        prev_hash: log.ledger.head().hash,
        envelope: envelope(&log.genesis, firm_key, &op),
        balances_after: vec![cercle_core::BalanceAfter {
            account: cercle_core::AccountId::parse("self-made").unwrap(),
            balance_minor: 0,
        }],
        sections: vec![],
    });
    let head = sign_log(&log.genesis, &log.node, &entries);
    check(&rewritten(&log, &entries, &head), Named::Line(n + 2), "not an administrator");
}

#[test]
fn a_longer_log_may_be_checked_against_an_older_tree_head_when_asked() {
    let log = synth_log(300, 5);
    let older = log.tree_head_at(200);
    let entries = || log.entries.iter().cloned().map(Ok);
    let strict = Options { line_offset: None, ..options() };
    let err = verify(&log.genesis, entries(), Some(&older), &strict, |_| {}).unwrap_err();
    assert_eq!(err.position().map(|p| p.index), Some(201), "{err}");
    let lenient = Options { allow_entries_after_tree_head: true, ..strict };
    let verdict = verify(&log.genesis, entries(), Some(&older), &lenient, |_| {}).unwrap();
    assert_eq!(verdict.entries_checked, 300);
    assert_eq!(verdict.merkle_root, log.tree_head.head.root_hash);
    // Without a tree head the log is still replayed in full.
    let verdict = verify(&log.genesis, entries(), None, &strict, |_| {}).unwrap();
    assert_eq!(verdict.state_digest, log.ledger.state().digest());
}
