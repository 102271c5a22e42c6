//! History rewritten after a tree head was published: two nodes run copies of one ledger
//! (same genesis, same node key) made before its first entry, and record different
//! histories. Each log is valid on its own, so `cercle audit verify` passes on both; a
//! firm that ran `cercle proof check` against one is told, loudly, when the other shows it
//! another history, and its state file keeps the evidence.

use std::path::Path;
use std::process::Command;

use cercle_e2e::{Node, binary, cercle};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_rewritten_history_is_caught_by_proof_check() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let out =
        Command::new(binary("cercle-node")).args(["init", "--data-dir", path(&dir_a)]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    copy_dir(&dir_a, &dir_b);
    let a = Node::start(&dir_a);
    let b = Node::start(&dir_b);
    let (url_a, url_b) = (a.url(), b.url());
    let admin = dir_a.join("admin.key");
    let admin = Some(admin.as_path());

    let key = |name: &str| {
        let file = tmp.path().join(format!("{name}.key"));
        let out = cercle(&url_a, None, &["keygen", "--out", path(&file)]).ok();
        (file, out.stdout.split_whitespace().last().unwrap().to_string())
    };
    let (alice, alice_pub) = key("alice");
    let (bob, bob_pub) = key("bob");
    for url in [&url_a, &url_b] {
        cercle(url, admin, &["admin", "register", "alice", "--pubkey", &alice_pub, "--credit-limit", "500"])
            .ok();
        cercle(url, admin, &["admin", "register", "bobby", "--pubkey", &bob_pub, "--credit-limit", "500"])
            .ok();
    }
    let pay = |url: &str, amount: &str| {
        cercle(url, Some(&alice), &["pay", "--from", "alice", "bobby", amount]).ok();
    };
    // Same size, different histories.
    pay(&url_a, "10");
    pay(&url_b, "20");

    let state = tmp.path().join("alice-state.json");
    let check = |url: &str| {
        cercle(url, Some(&alice), &["--json", "proof", "check", "alice", "--state", path(&state)])
    };

    // Against A: the first check records A's tree head.
    let first = check(&url_a).ok().json();
    assert_eq!(first["tree_size"], 3);
    assert_eq!(first["previous_tree_size"], serde_json::Value::Null);
    assert_eq!(first["entries_checked"], 2, "alice's registration and payment");
    let saved = std::fs::read(&state).unwrap();

    // Against B, same size, another root: rewritten. The state file keeps A's tree head.
    let out = check(&url_b).failed();
    assert_eq!(out.code, 6, "history rewritten exits 6");
    assert!(out.stderr.contains("HISTORY REWRITTEN"), "{}", out.stderr);
    assert!(out.stderr.contains("different roots"), "{}", out.stderr);
    let error = out.json();
    assert_eq!(
        (error["ok"].as_bool(), error["error"]["kind"].as_str()),
        (Some(false), Some("history_rewritten"))
    );
    assert_eq!(std::fs::read(&state).unwrap(), saved, "the state file is not advanced");

    // B grows past A's size: its log still does not extend A's.
    pay(&url_b, "5");
    let out = check(&url_b).failed();
    assert!(out.stderr.contains("HISTORY REWRITTEN"), "{}", out.stderr);
    assert!(out.stderr.contains("old root"), "{}", out.stderr);
    assert_eq!(std::fs::read(&state).unwrap(), saved, "the state file is not advanced");

    // A grows honestly: the check passes and advances the state.
    pay(&url_a, "1");
    pay(&url_a, "2");
    let later = check(&url_a).ok().json();
    assert_eq!(later["previous_tree_size"], 3);
    assert_eq!(later["tree_size"], 5);
    assert_eq!(later["entries_checked"], 4);
    assert_ne!(std::fs::read(&state).unwrap(), saved);

    // B is now shorter than what A signed: its log shrank, as far as this firm can tell.
    let out = check(&url_b).failed();
    assert!(out.stderr.contains("HISTORY REWRITTEN") && out.stderr.contains("shrank"), "{}", out.stderr);

    // Each log is valid on its own: only the consistency check tells them apart.
    for url in [&url_a, &url_b] {
        cercle(url, admin, &["audit", "verify"]).ok();
    }

    // Without --state, the state lives under $XDG_STATE_HOME/cercle/<ledger id>.json.
    let xdg = tmp.path().join("xdg");
    let out = Command::new(binary("cercle"))
        .args(["--node", &url_a, "--key", path(&bob), "proof", "check", "bobby"])
        .env("XDG_STATE_HOME", &xdg)
        .env_remove("CERCLE_KEY")
        .env_remove("CERCLE_NODE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let files: Vec<_> =
        std::fs::read_dir(xdg.join("cercle")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].to_string_lossy().ends_with(".json"));
    // Bob may not check Alice's entries.
    let out =
        cercle(&url_a, Some(&bob), &["proof", "check", "alice", "--state", path(&tmp.path().join("x"))]);
    assert!(out.failed().stderr.contains("may not read"));
}
