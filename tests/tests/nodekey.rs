//! The README's node key rotation walkthrough, end to end with the real binaries: a ledger
//! under a quorum of two; a payment, a proof and a statement verified with the genesis's
//! key; the node makes its next key (`cercle-node key new`), two administrators sign the
//! rotation; a payment, a proof (consistent with the head the genesis's key signed) and a
//! statement verified with the new key; a restart; the auditor's replay of the whole log
//! finds the history in the log; without the key in force the node does not start; a
//! backup restores with the key in force only. A rotation to a key the node lacks, to the
//! key in force and back to a key used before are refused, each with its number.

use std::path::Path;

use cercle_e2e::{CliOutput, Key, Node, assert_mentions, cercle, keygen};

fn node_cmd(args: &[&str]) -> std::process::Output {
    std::process::Command::new(cercle_e2e::binary("cercle-node")).args(args).output().unwrap()
}

/// Signs a rotation with `first`, cosigns it with `second`, submits it.
fn rotate(url: &str, dir: &Path, first: &Key, second: &Key, pubkey: &str, name: &str) -> CliOutput {
    let file = dir.join(format!("{name}.jsonl"));
    let file_s = file.to_str().unwrap();
    cercle(
        url,
        Some(&first.path),
        &[
            "admin",
            "node-key",
            "rotate",
            "--pubkey",
            pubkey,
            "--reason",
            "yearly rotation",
            "--save",
            file_s,
            "--no-submit",
        ],
    )
    .ok();
    cercle(url, Some(&second.path), &["cosign", "--file", file_s]).ok();
    cercle(url, None, &["submit", "--file", file_s])
}

fn statement(url: &str, alice: &Key, out: &Path, node_key: &str) -> serde_json::Value {
    let out_s = out.to_str().unwrap();
    cercle(url, Some(&alice.path), &["statement", "alice-bakery", "--out", out_s]).ok();
    cercle(url, None, &["--json", "statement", "verify", out_s, "--node-key", node_key]).ok().json()
}

fn proof(url: &str, alice: &Key, state: &Path) -> serde_json::Value {
    let state_s = state.to_str().unwrap();
    cercle(url, Some(&alice.path), &["--json", "proof", "check", "alice-bakery", "--state", state_s])
        .ok()
        .json()
}

#[test]
fn the_node_key_rotates_under_the_quorum_and_every_verifier_follows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("cercle-data");
    let data_s = data.to_str().unwrap();
    let board_a = keygen(dir, "board-a");
    let board_b = keygen(dir, "board-b");
    let alice = keygen(dir, "alice");
    let bob = keygen(dir, "bob");
    let mut node = Node::init_and_start(
        &data,
        &["--admin-pubkey", &board_a.pubkey, "--admin-pubkey", &board_b.pubkey, "--quorum", "2"],
    );
    let url = node.url();
    let info = cercle(&url, None, &["--json", "info"]).ok().json();
    let genesis_key = info["node_key"].as_str().unwrap().to_string();
    assert_eq!(info["node_key_in_force"], genesis_key.as_str());
    assert_eq!(info["node_keys"].as_array().map(Vec::len), Some(1), "{info}");
    for (account, key) in [("alice-bakery", &alice), ("bob-mill", &bob)] {
        cercle(
            &url,
            Some(&board_a.path),
            &["admin", "register", account, "--pubkey", &key.pubkey, "--credit-limit", "1000"],
        )
        .ok();
    }
    cercle(&url, Some(&alice.path), &["pay", "--from", "alice-bakery", "bob-mill", "125.50"]).ok();

    // Before the rotation: the genesis's key signs the proof's head and the statement.
    let state = dir.join("alice-proof.json");
    let before = proof(&url, &alice, &state);
    assert_eq!(before["node_key"], genesis_key.as_str(), "{before}");
    let verified = statement(&url, &alice, &dir.join("before.json"), &genesis_key);
    assert_eq!(verified["valid"], true, "{verified}");

    // A key the node does not hold is refused before the log.
    let stranger = keygen(dir, "stranger");
    let out = cercle(
        &url,
        Some(&board_a.path),
        &["admin", "node-key", "rotate", "--pubkey", &stranger.pubkey, "--reason", "typo"],
    )
    .failed();
    assert_mentions(&out, "does not hold the secret of node key");
    // Refused for certain, before the log: not a failure that may have been accepted.
    assert_mentions(&out, "rejected (NODE_KEY_MISSING)");
    assert!(!out.stderr.contains("may or may not"), "{}", out.stderr);
    assert_eq!(out.code, 3, "a rejection's exit code: {}", out.stderr);
    assert_mentions(&out, "cercle-node key new");

    // The node makes its next key; one administrator's signature is not enough.
    let made = node_cmd(&["key", "new", "--data-dir", data_s]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let said = String::from_utf8_lossy(&made.stderr).to_string() + &String::from_utf8_lossy(&made.stdout);
    let new_key = said.split_whitespace().nth(2).expect("node key HEX made in FILE").to_string();
    assert_eq!(new_key.len(), 64, "{said}");
    assert!(said.contains("node-keys"), "{said}");
    let out = cercle(
        &url,
        Some(&board_a.path),
        &["admin", "node-key", "rotate", "--pubkey", &new_key, "--reason", "alone"],
    )
    .failed();
    assert_mentions(&out, "QUORUM_NOT_MET, code 15");
    assert_mentions(&out, "a rotation of the node's signing key");

    // Two administrators rotate it, with no restart: the node loads the key by itself.
    rotate(&url, dir, &board_a, &board_b, &new_key, "rotate").ok();
    let info = cercle(&url, None, &["--json", "info"]).ok().json();
    let rotated_at = info["log_size"].as_u64().unwrap();
    assert_eq!(info["node_key_in_force"], new_key.as_str(), "{info}");
    assert_eq!(info["node_keys"][1]["from_size"], rotated_at, "{info}");
    assert_eq!(info["node_key"], genesis_key.as_str(), "the genesis's key never changes");
    let text = cercle(&url, None, &["info"]).ok().stdout;
    assert!(text.contains(&format!("{new_key} from tree size {rotated_at}")), "{text}");

    // Refused, each with its number (cosigned, so the quorum is not what refuses them).
    assert_mentions(
        &rotate(&url, dir, &board_a, &board_b, &new_key, "again").failed(),
        "NODE_KEY_IN_FORCE, code 73",
    );
    assert_mentions(
        &rotate(&url, dir, &board_a, &board_b, &genesis_key, "back").failed(),
        "NODE_KEY_USED_BEFORE, code 74",
    );

    // After: a payment, a proof consistent with the head the genesis's key signed, a
    // statement signed by the new key.
    cercle(&url, Some(&bob.path), &["pay", "--from", "bob-mill", "alice-bakery", "20"]).ok();
    let after = proof(&url, &alice, &state);
    assert_eq!(after["node_key"], new_key.as_str(), "{after}");
    assert_eq!(after["previous_tree_size"], before["tree_size"], "{after}");
    let after_json = dir.join("after.json");
    let verified = statement(&url, &alice, &after_json, &new_key);
    assert_eq!(verified["valid"], true, "{verified}");
    assert_eq!(verified["node_key"], new_key.as_str(), "{verified}");
    // Pinned to the genesis's key, the new statement is refused, saying which key to pin.
    let out = cercle(
        &url,
        None,
        &["statement", "verify", after_json.to_str().unwrap(), "--node-key", &genesis_key],
    );
    let out = out.failed();
    assert_mentions(&out, "STATEMENT INVALID");
    assert_mentions(&out, &format!("{new_key} from tree size {rotated_at}"));
    // The statement made before the rotation still verifies with the genesis's key.
    let old = cercle(
        &url,
        None,
        &["statement", "verify", dir.join("before.json").to_str().unwrap(), "--node-key", &genesis_key],
    );
    old.ok();

    // A restart: the node loads the key in force and signs with it.
    node.stop();
    let mut node = Node::start(&data);
    let url = node.url();
    let again = proof(&url, &alice, &state);
    assert_eq!(again["node_key"], new_key.as_str(), "{again}");
    let info = cercle(&url, None, &["--json", "info"]).ok().json();
    assert_eq!(info["node_key_in_force"], new_key.as_str(), "{info}");

    // The auditor's replay finds the history in the log and checks the head with it.
    let verdict = cercle(&url, Some(&board_a.path), &["--json", "audit", "verify"]).ok().json();
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert_eq!(verdict["node_key_in_force"], new_key.as_str(), "{verdict}");
    assert_eq!(verdict["node_keys"][1]["from_size"], rotated_at, "{verdict}");
    // The export holds the history too: it verifies offline, and the figures read it.
    let export = dir.join("log.jsonl");
    let export_s = export.to_str().unwrap();
    cercle(&url, Some(&board_a.path), &["audit", "export", "--out", export_s, "--format", "jsonl"]).ok();
    let offline = cercle(&url, None, &["--json", "audit", "verify", "--log", export_s]).ok().json();
    assert_eq!(offline["node_key_in_force"], new_key.as_str(), "{offline}");
    cercle(
        &url,
        None,
        &[
            "--json",
            "indicators",
            "--log",
            export_s,
            "--from",
            "2020-01-01",
            "--to",
            "2035-12-31",
            "--by",
            "year",
        ],
    )
    .ok();
    cercle(
        &url,
        Some(&board_a.path),
        &["--json", "indicators", "--from", "2020-01-01", "--to", "2035-12-31", "--by", "year"],
    )
    .ok();

    // Without the key in force, the node refuses to start, saying which key it lacks.
    node.stop();
    let keys_dir = data.join("node-keys");
    let moved = dir.join("moved-keys");
    std::fs::rename(&keys_dir, &moved).unwrap();
    let run = node_cmd(&["run", "--data-dir", data_s, "--listen", "127.0.0.1:0"]);
    assert!(!run.status.success());
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(said.contains(&format!("the node key in force is {new_key}")), "{said}");
    std::fs::rename(&moved, &keys_dir).unwrap();
    let mut node = Node::start(&data);
    cercle(&node.url(), Some(&alice.path), &["balance", "alice-bakery"]).ok();
    node.stop();

    // A backup of the rotated ledger (its last head signed by the new key) restores with
    // the key in force, not with the genesis's.
    let backup = dir.join("backup.jsonl");
    let made = node_cmd(&["backup", "--data-dir", data_s, "--out", backup.to_str().unwrap()]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let new_key_file = std::fs::read_dir(&keys_dir).unwrap().next().unwrap().unwrap().path();
    let restore = |target: &Path, key: &Path| {
        node_cmd(&[
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--data-dir",
            target.to_str().unwrap(),
            "--node-key",
            key.to_str().unwrap(),
        ])
    };
    let refused = restore(&dir.join("restored-old"), &data.join("node.key"));
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains(&format!("the node key in force at the backup's tree head is {new_key}")),
        "{said}"
    );
    let restored = dir.join("restored");
    let done = restore(&restored, &new_key_file);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let node = Node::start(&restored);
    let url = node.url();
    let info = cercle(&url, None, &["--json", "info"]).ok().json();
    assert_eq!(info["node_key_in_force"], new_key.as_str(), "{info}");
    let after_restore = proof(&url, &alice, &state);
    assert_eq!(after_restore["node_key"], new_key.as_str(), "{after_restore}");
}
