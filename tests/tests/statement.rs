//! Signed statements: a firm gets one from the node and anyone checks it offline against
//! the node's public key; any alteration of the file is caught.

use std::process::Command;

use cercle_e2e::{Node, binary, cercle, genesis};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_verifies_offline_and_tampering_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut node = Node::init_and_start(&data, &[]);
    let url = node.url();
    let node_key = genesis(&node).await.node_key.to_hex();
    let admin = data.join("admin.key");
    let admin = Some(admin.as_path());
    let key = |name: &str| {
        let path = tmp.path().join(format!("{name}.key"));
        let out = cercle(&url, None, &["keygen", "--out", path.to_str().unwrap()]).ok();
        (path, out.stdout.split_whitespace().last().unwrap().to_string())
    };
    let (alice, alice_pub) = key("alice");
    let (bob, bob_pub) = key("bob");
    cercle(&url, admin, &["admin", "register", "alice", "--pubkey", &alice_pub, "--credit-limit", "500"])
        .ok();
    cercle(&url, admin, &["admin", "register", "bobby", "--pubkey", &bob_pub, "--credit-limit", "500"]).ok();
    cercle(&url, Some(&alice), &["pay", "--from", "alice", "bobby", "100.25"]).ok();
    cercle(&url, Some(&bob), &["pay", "--from", "bobby", "alice", "40"]).ok();
    cercle(&url, Some(&alice), &["pay", "--from", "alice", "bobby", "5"]).ok();

    // Anyone can ask the node for the key to pin, with no key of their own.
    let info = cercle(&url, None, &["--json", "info"]).ok().json();
    assert_eq!(info["node_key"], node_key.as_str());
    assert_eq!((info["currency"].as_str(), info["exponent"].as_u64()), (Some("CHW"), Some(2)));
    assert_eq!(info["log_size"], 5, "two registrations and three payments");
    assert_eq!(info["admin_keys"].as_array().map(Vec::len), Some(1));
    let text = cercle(&url, None, &["info"]).ok().stdout;
    assert!(text.contains(&format!("node key      {node_key}")), "{text}");

    let file = tmp.path().join("alice-statement.json");
    let file_s = file.to_str().unwrap();
    cercle(&url, Some(&alice), &["statement", "alice", "--out", file_s]).ok();
    // A period that ends after the node cut the statement: provisional, and signed so.
    let running = tmp.path().join("running.json");
    let out = cercle(
        &url,
        Some(&alice),
        &[
            "statement",
            "alice",
            "--from",
            "2020-01-01",
            "--to",
            "2099-12-31",
            "--out",
            running.to_str().unwrap(),
        ],
    )
    .ok();
    assert!(out.stdout.contains("VALID (provisional: period not ended when cut at 20"), "{}", out.stdout);
    // The credit limit is a positive amount; the floor it sets is said as such.
    assert!(out.stdout.contains("credit limit      500.00 CHW (floor -500.00 CHW)"), "{}", out.stdout);
    // A period that has ended: final.
    let yesterday = cercle_audit::utc_date(cercle_e2e::now_ms() - 86_400_000);
    let ended = tmp.path().join("ended.json");
    let out = cercle(
        &url,
        Some(&alice),
        &[
            "--json",
            "statement",
            "alice",
            "--from",
            "2020-01-01",
            "--to",
            &yesterday,
            "--out",
            ended.to_str().unwrap(),
        ],
    )
    .ok()
    .json();
    assert_eq!((out["provisional"].as_bool(), out["verdict"].as_str()), (Some(false), Some("VALID (final)")));
    assert_eq!(out["closing_balance_minor"], 0, "nothing happened before today");
    // Another firm may not get Alice's statement.
    let out =
        cercle(&url, Some(&bob), &["statement", "alice", "--out", tmp.path().join("x").to_str().unwrap()]);
    let out = out.failed();
    assert!(out.stderr.contains("may not read"), "{}", out.stderr);
    node.stop();

    // Offline, against the node key the association publishes.
    let verified = cercle(
        "http://127.0.0.1:1",
        None,
        &["--json", "statement", "verify", file_s, "--node-key", &node_key],
    )
    .ok()
    .json();
    assert_eq!(verified["valid"], true);
    // No --to: up to the end of time, so never over.
    assert_eq!(verified["provisional"], true);
    assert!(verified["cut_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{verified}");
    let running = cercle(
        "http://127.0.0.1:1",
        None,
        &["--json", "statement", "verify", running.to_str().unwrap(), "--node-key", &node_key],
    )
    .ok()
    .json();
    assert_eq!(running["provisional"], true);
    assert_eq!(running["closing_balance_minor"], -6_525);
    assert_eq!(verified["account"], "alice");
    assert_eq!(verified["opening_balance_minor"], 0);
    assert_eq!(verified["closing_balance_minor"], -6_525);
    assert_eq!(verified["turnover_in_minor"], 4_000);
    assert_eq!(verified["turnover_out_minor"], 10_525);
    assert_eq!(verified["credit_limit_minor"], 50_000);
    assert_eq!(verified["entry_count"], 4);

    // Without the key the association publishes, nothing is VALID: the key written in the
    // file proves nothing by itself (exit 2, bad usage).
    let unpinned = cercle("http://127.0.0.1:1", None, &["statement", "verify", file_s]).failed();
    assert_eq!(unpinned.code, 2);
    assert!(unpinned.stderr.contains("node key was not given"), "{}", unpinned.stderr);
    assert!(!unpinned.stdout.contains("VALID"), "{}", unpinned.stdout);
    let unpinned = cercle("http://127.0.0.1:1", None, &["--json", "statement", "verify", file_s]).failed();
    assert_eq!(unpinned.json()["error"]["kind"], "usage");
    // The key as the association publishes it, in a file with comments.
    let published = tmp.path().join("node-key.txt");
    std::fs::write(&published, format!("# Cercle node key of our association\n\n{node_key}\n")).unwrap();
    let out = cercle(
        "http://127.0.0.1:1",
        None,
        &["statement", "verify", file_s, "--node-key-file", published.to_str().unwrap()],
    )
    .ok();
    assert!(out.stdout.contains("VALID"), "{}", out.stdout);
    // Or in the environment.
    let out = Command::new(binary("cercle"))
        .args(["--node", "http://127.0.0.1:1", "statement", "verify", file_s])
        .env("CERCLE_NODE_KEY", &node_key)
        .env_remove("CERCLE_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Against another key, it fails.
    let other = "1".repeat(64);
    let key_check =
        cercle("http://127.0.0.1:1", None, &["statement", "verify", file_s, "--node-key", &other]);
    let key_check = key_check.failed();
    assert_eq!(key_check.code, 5, "an invalid statement is a failed audit");
    assert!(key_check.stderr.contains("STATEMENT INVALID"));

    // Any alteration is caught.
    let original: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let check_tampered = |name: &str, change: &dyn Fn(&mut Value), needle: &str| {
        let mut doc = original.clone();
        change(&mut doc);
        let path = tmp.path().join(format!("tampered-{name}.json"));
        std::fs::write(&path, serde_json::to_string(&doc).unwrap()).unwrap();
        let out = cercle(
            "http://127.0.0.1:1",
            None,
            &["statement", "verify", path.to_str().unwrap(), "--node-key", &node_key],
        );
        let out = out.failed();
        assert!(out.stderr.contains(needle), "{name}: expected {needle:?} in {}", out.stderr);
    };
    let flip_hex = |text: &str, at: usize| {
        let mut bytes = hex_decode(text);
        bytes[at] ^= 1;
        Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect())
    };
    check_tampered(
        "statement",
        &|d| d["statement"] = flip_hex(d["statement"].as_str().unwrap(), 60),
        "signature",
    );
    check_tampered(
        "dropped-entry",
        &|d| {
            d["entries"].as_array_mut().unwrap().remove(1);
        },
        "not the ones the statement lists",
    );
    check_tampered(
        "entry",
        &|d| {
            let e = d["entries"][2]["commitment"].as_str().unwrap().to_string();
            d["entries"][2]["commitment"] = flip_hex(&e, 30);
        },
        "not in the log",
    );
    check_tampered(
        "proof",
        &|d| {
            let h = d["entries"][0]["proof"][0].as_str().unwrap().to_string();
            d["entries"][0]["proof"][0] = flip_hex(&h, 0);
        },
        "not in the log",
    );
    check_tampered("tree-head", &|d| d["tree_head"]["tree_size"] = Value::from(99), "tree head");
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}
