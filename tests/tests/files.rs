//! The wallet never writes through a symbolic link: a link planted where it writes a
//! temporary file (`FILE.partial`) or at the file itself cannot make it truncate a file
//! elsewhere. Exports, statements, the tree-head state, keys, clearing results and saved
//! envelopes are checked, with the real binaries.

#![cfg(unix)]

use std::os::unix::fs::symlink;
use std::path::Path;

use cercle_e2e::{Node, cercle};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

const PRECIOUS: &str = "precious: must survive";

#[test]
fn no_write_goes_through_a_link() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = Node::init_and_start(&data, &[]);
    let url = node.url();
    let admin = data.join("admin.key");
    let admin = Some(admin.as_path());
    let alice = tmp.path().join("alice.key");
    let out = cercle(&url, None, &["keygen", "--out", path(&alice)]).ok();
    let pubkey = out.stdout.split_whitespace().last().unwrap().to_string();
    cercle(&url, admin, &["admin", "register", "alice", "--pubkey", &pubkey, "--credit-limit", "10"]).ok();
    let bob = tmp.path().join("bob.key");
    let out = cercle(&url, None, &["keygen", "--out", path(&bob)]).ok();
    let bob_pubkey = out.stdout.split_whitespace().last().unwrap().to_string();
    cercle(&url, admin, &["admin", "register", "bobby", "--pubkey", &bob_pubkey]).ok();
    let alice = Some(alice.as_path());

    let victim = tmp.path().join("victim.txt");
    std::fs::write(&victim, PRECIOUS).unwrap();
    let intact = || assert_eq!(std::fs::read_to_string(&victim).unwrap(), PRECIOUS, "the victim was written");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();

    // A link where the old code put its temporary file.
    let export = work.join("log.jsonl");
    symlink(&victim, work.join("log.jsonl.partial")).unwrap();
    cercle(&url, admin, &["audit", "export", "--format", "jsonl", "--out", path(&export)]).ok();
    intact();
    cercle(&url, None, &["audit", "verify", "--log", path(&export)]).ok();
    let state = work.join("state.json");
    symlink(&victim, work.join("state.json.partial")).unwrap();
    cercle(&url, alice, &["proof", "check", "alice", "--state", path(&state)]).ok();
    intact();

    // A link at the file itself: refused, or replaced with --force, never followed.
    let linked = work.join("linked.out");
    symlink(&victim, &linked).unwrap();
    let out = cercle(&url, admin, &["audit", "export", "--format", "csv", "--out", path(&linked)]).failed();
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
    cercle(&url, alice, &["statement", "alice", "--out", path(&linked)]).failed();
    cercle(&url, None, &["keygen", "--out", path(&linked)]).failed();
    let save = ["pay", "--from", "alice", "bobby", "1", "--save", path(&linked), "--no-submit"];
    let out = cercle(&url, alice, &save).failed();
    assert!(out.stderr.contains("symbolic link"), "{}", out.stderr);
    let csv = work.join("invoices.csv");
    std::fs::write(&csv, "a,b,10\nb,a,5\n").unwrap();
    cercle(&url, None, &["clearing", "solve", "--input", path(&csv), "--out", path(&linked)]).failed();
    intact();
    cercle(&url, alice, &["statement", "alice", "--out", path(&linked), "--force"]).ok();
    intact();
    assert!(!std::fs::symlink_metadata(&linked).unwrap().file_type().is_symlink());
    let state_link = work.join("state-link.json");
    symlink(&victim, &state_link).unwrap();
    cercle(&url, alice, &["proof", "check", "alice", "--state", path(&state_link)]).failed();
    intact();

    // statement: an existing file is kept unless --force.
    let statement = work.join("statement.json");
    cercle(&url, alice, &["statement", "alice", "--out", path(&statement)]).ok();
    let before = std::fs::read(&statement).unwrap();
    let out = cercle(&url, alice, &["statement", "alice", "--out", path(&statement)]).failed();
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    assert_eq!(std::fs::read(&statement).unwrap(), before);
    cercle(&url, alice, &["pay", "--from", "alice", "bobby", "2"]).ok();
    cercle(&url, alice, &["statement", "alice", "--out", path(&statement), "--force"]).ok();
    assert_ne!(std::fs::read(&statement).unwrap(), before, "replaced with --force");

    // No temporary file is left behind.
    let mut names: Vec<String> =
        std::fs::read_dir(&work).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "invoices.csv",
            "linked.out",
            "log.jsonl",
            "log.jsonl.partial",
            "state-link.json",
            "state.json",
            "state.json.partial",
            "statement.json"
        ]
    );
}
