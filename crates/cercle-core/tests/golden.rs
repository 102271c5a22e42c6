//! The golden log: a small ledger written once and committed (`tests/fixtures/golden/`),
//! with a genesis, every kind of operation and a clearing run. It must replay, signatures
//! checked, to the head, Merkle root and state digest it recorded, in this change and in
//! every change after it: the entry format, the operation bodies, the rules and the state
//! digest are frozen, and this is what holds them. `examples/golden.rs` wrote it; no test
//! runs it.

use std::collections::BTreeSet;

use cercle_core::{Entry, Genesis, Replayer, SectionTag, body, merkle};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/golden");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}/{name}")).unwrap_or_else(|e| panic!("{DIR}/{name}: {e}"))
}

fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text.trim()).unwrap_or_else(|e| panic!("not hex ({e}): {text}"))
}

/// `expected.txt`: `name hex-or-number` lines.
fn expected(name: &str) -> String {
    let text = read("expected.txt");
    let line = text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' '));
    line.unwrap_or_else(|| panic!("expected.txt has no {name}")).to_string()
}

#[test]
fn the_golden_log_replays_to_its_recorded_state() {
    let genesis = Genesis::decode(&unhex(&read("genesis.hex"))).unwrap();
    let encoded: Vec<Vec<u8>> = read("entries.hex").lines().map(unhex).collect();
    let mut replayer = Replayer::new(genesis, true);
    let mut kinds = BTreeSet::new();
    let mut clearing_runs = 0;
    for (n, bytes) in encoded.iter().enumerate() {
        let entry = Entry::decode(bytes).unwrap_or_else(|e| panic!("entry {} does not decode: {e}", n + 1));
        assert_eq!(&entry.encode(), bytes, "entry {} re-encodes to other bytes", n + 1);
        kinds.insert(body::decode(&entry.envelope.body).unwrap().kind.name());
        clearing_runs += usize::from(entry.section(SectionTag::Clearing).is_some());
        replayer.replay(&entry).unwrap_or_else(|e| panic!("the golden log no longer replays: {e}"));
    }
    let ledger = replayer.into_ledger();
    ledger.state().check_invariants().unwrap();

    // Every kind of operation, written out so that a new kind must be added here (and to
    // a new golden log) on purpose.
    let every_kind = [
        "accept_invoice",
        "cancel_invoice",
        "freeze_account",
        "issue_invoice",
        "register_account",
        "reject_invoice",
        "rotate_keys",
        "run_clearing",
        "set_invoice_clearing",
        "set_limits",
        "transfer",
        "unfreeze_account",
    ];
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), every_kind);
    assert_eq!(clearing_runs, 1);

    let hashes: Vec<_> = encoded.iter().map(|e| Entry::decode(e).unwrap().hash()).collect();
    assert_eq!(ledger.head().size.to_string(), expected("entries"));
    assert_eq!(hex::encode(ledger.head().hash), expected("head_hash"), "head hash");
    assert_eq!(hex::encode(merkle::root(&hashes)), expected("merkle_root"), "Merkle root");
    // Version 1 of the digest, which this log recorded; version 2 (`digest`) also covers
    // the accounts' activity, added after it.
    assert_eq!(hex::encode(ledger.state().digest_v1()), expected("state_digest"), "state digest");
}
