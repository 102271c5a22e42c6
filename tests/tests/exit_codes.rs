//! A script tells failures apart by the exit code, and by the `error.kind` of the one JSON
//! object `--json` prints: a ledger rejection (3), a node out of reach (4), a failed audit
//! (5), bad input (2), and success (0) all look different.

use std::path::Path;

use cercle_e2e::{CliOutput, Node, cercle};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The one JSON object on stdout.
#[track_caller]
fn object(out: &CliOutput) -> serde_json::Value {
    assert_eq!(out.stdout.lines().count(), 1, "one object on one line: {}", out.stdout);
    out.json()
}

#[track_caller]
fn check(out: CliOutput, code: i32, kind: &str) -> serde_json::Value {
    assert_eq!(out.code, code, "exit code\nstdout: {}\nstderr: {}", out.stdout, out.stderr);
    let value = object(&out);
    assert_eq!(value["ok"], false, "{value}");
    assert_eq!(value["error"]["kind"], kind, "{value}");
    assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
    value
}

#[test]
fn each_kind_of_failure_has_its_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut node = Node::init_and_start(&data, &[]);
    let url = node.url();
    let admin = data.join("admin.key");
    let admin = Some(admin.as_path());
    let alice = tmp.path().join("alice.key");
    let pubkey = cercle(&url, None, &["keygen", "--out", path(&alice)]).ok();
    let pubkey = pubkey.stdout.split_whitespace().last().unwrap().to_string();
    let bob = tmp.path().join("bob.key");
    let bob_pubkey = cercle(&url, None, &["keygen", "--out", path(&bob)]).ok();
    let bob_pubkey = bob_pubkey.stdout.split_whitespace().last().unwrap().to_string();
    for (name, key) in [("alice", &pubkey), ("bobby", &bob_pubkey)] {
        cercle(&url, admin, &["admin", "register", name, "--pubkey", key, "--credit-limit", "100"]).ok();
    }
    let alice = Some(alice.as_path());

    // 0: success is one object with "ok": true.
    let paid = cercle(&url, alice, &["--json", "pay", "--from", "alice", "bobby", "10"]).ok();
    let paid = object(&paid);
    assert_eq!(paid["ok"], true);
    assert!(paid["sequence"].as_u64().is_some(), "{paid}");

    // 3: the ledger refuses, with its reason's name and number.
    let out = cercle(&url, alice, &["--json", "pay", "--from", "alice", "bobby", "500"]);
    let rejected = check(out, 3, "rejected");
    assert_eq!(rejected["error"]["reason"], "CREDIT_LIMIT_EXCEEDED");
    assert_eq!(rejected["error"]["code"], 50);
    assert!(rejected["error"]["message"].as_str().unwrap().contains("credit limit"), "{rejected}");
    // Without --json the exit code is the same, and stdout stays empty.
    let out = cercle(&url, alice, &["pay", "--from", "alice", "bobby", "500"]);
    assert_eq!((out.code, out.stdout.as_str()), (3, ""));

    // 2: bad input never reaches the ledger.
    let out = cercle(&url, alice, &["--json", "pay", "--from", "alice", "bobby", "1.234"]);
    check(out, 2, "usage");

    // 5: an audit that fails, told apart from the network failing.
    let log = tmp.path().join("log.jsonl");
    cercle(&url, admin, &["audit", "export", "--format", "jsonl", "--out", path(&log)]).ok();
    let text = std::fs::read_to_string(&log).unwrap();
    let tampered = tmp.path().join("tampered.jsonl");
    std::fs::write(&tampered, text.replacen("\"alice\"", "\"alicf\"", 1)).unwrap();
    let out = cercle(&url, None, &["--json", "audit", "verify", "--log", path(&tampered)]);
    check(out, 5, "audit_failed");

    // 4: the node is gone; the same commands now fail to reach it.
    node.stop();
    let out = cercle(&url, alice, &["--json", "balance", "alice"]);
    check(out, 4, "unreachable");
    let out = cercle(&url, admin, &["--json", "audit", "verify"]);
    check(out, 4, "unreachable");
    let out = cercle(&url, alice, &["--json", "pay", "--from", "alice", "bobby", "1"]);
    check(out, 4, "unreachable");
}

#[test]
fn submit_prints_one_object_per_envelope_and_exits_by_the_first_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = Node::init_and_start(&data, &[]);
    let url = node.url();
    let admin = data.join("admin.key");
    let admin = Some(admin.as_path());
    let alice = tmp.path().join("alice.key");
    let out = cercle(&url, None, &["keygen", "--out", path(&alice)]).ok();
    let pubkey = out.stdout.split_whitespace().last().unwrap().to_string();
    let bob = tmp.path().join("bob.key");
    let out = cercle(&url, None, &["keygen", "--out", path(&bob)]).ok();
    let bob_pubkey = out.stdout.split_whitespace().last().unwrap().to_string();
    cercle(&url, admin, &["admin", "register", "alice", "--pubkey", &pubkey, "--credit-limit", "100"]).ok();
    cercle(&url, admin, &["admin", "register", "bobby", "--pubkey", &bob_pubkey]).ok();
    let file = tmp.path().join("ops.jsonl");
    for amount in ["10", "500"] {
        let args = ["pay", "--from", "alice", "bobby", amount, "--save", path(&file), "--no-submit"];
        cercle(&url, Some(&alice), &args).ok();
    }
    let out = cercle(&url, None, &["--json", "submit", "--file", path(&file)]);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    let lines: Vec<serde_json::Value> =
        out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert_eq!((lines[0]["ok"].as_bool(), lines[0]["line"].as_u64()), (Some(true), Some(1)));
    assert!(lines[0]["sequence"].as_u64().is_some());
    assert_eq!((lines[1]["ok"].as_bool(), lines[1]["line"].as_u64()), (Some(false), Some(2)));
    assert_eq!(lines[1]["error"]["kind"], "rejected");
    assert_eq!(lines[1]["error"]["reason"], "CREDIT_LIMIT_EXCEEDED");
    assert_eq!(lines[1]["error"]["code"], 50);
}
