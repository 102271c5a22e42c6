//! The README's walkthrough of a firm's employee keys, end to end with the real binaries: a
//! ledger whose day is offset from UTC; a payer key within its caps, refused above them
//! (per transfer and for the day); a viewer that reads and signs nothing; an invoicer that
//! issues and cancels but does not accept; `key list` (text and JSON) with what the payer
//! paid today; the last owner key kept; a key removed; all of it across a restart, then
//! the auditor's replay.

use std::path::{Path, PathBuf};

use cercle_e2e::{CliOutput, Node, cercle};

struct Key {
    path: PathBuf,
    pubkey: String,
}

fn keygen(url: &str, dir: &Path, name: &str) -> Key {
    let path = dir.join(format!("{name}.key"));
    let out = cercle(url, None, &["keygen", "--out", path.to_str().unwrap()]).ok();
    let pubkey = out.stdout.split_whitespace().last().expect("public key").to_string();
    assert_eq!(pubkey.len(), 64, "keygen prints the public key in hex: {}", out.stdout);
    Key { path, pubkey }
}

#[track_caller]
fn assert_mentions(out: &CliOutput, needle: &str) {
    assert!(
        out.stderr.contains(needle) || out.stdout.contains(needle),
        "expected {needle:?}\nstdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
}

fn balance(url: &str, key: &Path, account: &str) -> i64 {
    let b = cercle(url, Some(key), &["--json", "balance", account]).ok().json();
    b["balance_minor"].as_i64().expect("a balance")
}

#[test]
fn employee_keys_sign_what_their_roles_allow() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let init = std::process::Command::new(cercle_e2e::binary("cercle-node"))
        .args(["init", "--day-offset", "+01:00", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let said = String::from_utf8_lossy(&init.stdout);
    assert!(
        said.contains(
            "the ledger's day starts at midnight UTC+01:00 (a fixed offset, no daylight saving time)"
        ),
        "{said}"
    );
    let mut node = Node::start(&data);
    let url = node.url();
    let admin = data.join("admin.key");
    let info = cercle(&url, Some(&admin), &["--json", "info"]).ok().json();
    assert_eq!(info["day_offset"], "+01:00", "{info}");
    let alice = keygen(&url, tmp.path(), "alice-new");
    let bob = keygen(&url, tmp.path(), "bob");
    for (account, key) in [("alice-bakery", &alice), ("bob-mill", &bob)] {
        cercle(
            &url,
            Some(&admin),
            &["admin", "register", account, "--pubkey", &key.pubkey, "--credit-limit", "5000"],
        )
        .ok();
    }

    // The README: a payer key with its caps.
    let clerk = keygen(&url, tmp.path(), "alice-clerk");
    cercle(
        &url,
        Some(&alice.path),
        &[
            "key",
            "add",
            "alice-bakery",
            "--pubkey",
            &clerk.pubkey,
            "--role",
            "payer",
            "--per-transfer-cap",
            "500",
            "--daily-cap",
            "2000",
        ],
    )
    .ok();
    cercle(&url, Some(&clerk.path), &["pay", "--from", "alice-bakery", "bob-mill", "450"]).ok();
    let out = cercle(&url, Some(&clerk.path), &["pay", "--from", "alice-bakery", "bob-mill", "600"]).failed();
    assert_mentions(&out, "KEY_CAP_EXCEEDED, code 91");
    assert_mentions(&out, "payment of 600.00 CHW is above the cap of 500.00 CHW per transfer of payer key");
    for _ in 0..3 {
        cercle(&url, Some(&clerk.path), &["pay", "--from", "alice-bakery", "bob-mill", "500"]).ok();
    }
    // 1,950.00 paid today: 50.01 more is over the day's cap, 50.00 is not.
    let out =
        cercle(&url, Some(&clerk.path), &["pay", "--from", "alice-bakery", "bob-mill", "50.01"]).failed();
    assert_mentions(&out, "KEY_CAP_EXCEEDED, code 91");
    assert_mentions(&out, "1,950.00 CHW of 2,000.00 CHW paid today, 50.00 CHW left");
    cercle(&url, Some(&clerk.path), &["pay", "--from", "alice-bakery", "bob-mill", "50"]).ok();
    // An owner key has no cap.
    cercle(&url, Some(&alice.path), &["pay", "--from", "alice-bakery", "bob-mill", "700"]).ok();
    assert_eq!(balance(&url, &alice.path, "alice-bakery"), -270_000);

    // A viewer reads and signs nothing.
    let books = keygen(&url, tmp.path(), "alice-books");
    cercle(
        &url,
        Some(&alice.path),
        &["key", "add", "alice-bakery", "--pubkey", &books.pubkey, "--role", "viewer"],
    )
    .ok();
    assert_eq!(balance(&url, &books.path, "alice-bakery"), -270_000);
    let out = cercle(&url, Some(&books.path), &["pay", "--from", "alice-bakery", "bob-mill", "1"]).failed();
    assert_mentions(&out, "KEY_ROLE_NOT_ALLOWED, code 90");
    assert_mentions(
        &out,
        "is a viewer key of account 'alice-bakery': it cannot pay; its owner and payer keys sign that",
    );
    // Nor does a payer change the keys.
    let out = cercle(&url, Some(&clerk.path), &["key", "remove", "alice-bakery", "--pubkey", &books.pubkey])
        .failed();
    assert_mentions(&out, "KEY_ROLE_NOT_ALLOWED, code 90");

    // An invoicer issues and cancels; only an owner accepts an invoice.
    let sales = keygen(&url, tmp.path(), "bob-sales");
    cercle(
        &url,
        Some(&bob.path),
        &["key", "add", "bob-mill", "--pubkey", &sales.pubkey, "--role", "invoicer"],
    )
    .ok();
    let issued = cercle(
        &url,
        Some(&sales.path),
        &[
            "--json",
            "invoice",
            "issue",
            "--from",
            "bob-mill",
            "--to",
            "alice-bakery",
            "300",
            "--reference",
            "F-17",
        ],
    )
    .ok()
    .json();
    let invoice = issued["invoice_id"].as_str().expect("an invoice id").to_string();
    let out = cercle(&url, Some(&clerk.path), &["invoice", "accept", &invoice]).failed();
    assert_mentions(&out, "KEY_ROLE_NOT_ALLOWED, code 90");
    cercle(&url, Some(&sales.path), &["invoice", "cancel", &invoice, "--reason", "wrong amount"]).ok();

    // The list: roles, caps and what the payer paid today.
    let list = cercle(&url, Some(&books.path), &["--json", "key", "list", "alice-bakery"]).ok().json();
    assert_eq!(list["day_offset"], "+01:00", "{list}");
    let keys = list["keys"].as_array().expect("keys");
    let roles: Vec<&str> = keys.iter().map(|k| k["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["owner", "payer", "viewer"], "{list}");
    assert_eq!(keys[1]["public_key"], clerk.pubkey.as_str());
    assert_eq!(keys[1]["per_transfer_cap_minor"], 50_000);
    assert_eq!(keys[1]["daily_cap_minor"], 200_000);
    assert_eq!(keys[1]["spent_today_minor"], 200_000, "{list}");
    let text = cercle(&url, Some(&alice.path), &["key", "list", "alice-bakery"]).ok();
    assert_mentions(&text, "500.00 CHW a transfer, 2,000.00 CHW a day (2,000.00 CHW paid today)");

    // The last owner stays; a key is removed and then signs nothing.
    let out = cercle(&url, Some(&alice.path), &["key", "remove", "alice-bakery", "--pubkey", &alice.pubkey])
        .failed();
    assert_mentions(&out, "LAST_OWNER_KEY, code 92");
    let out = cercle(
        &url,
        Some(&alice.path),
        &["key", "add", "alice-bakery", "--pubkey", &books.pubkey, "--role", "viewer"],
    )
    .failed();
    assert_mentions(&out, "KEY_ALREADY_ON_ACCOUNT, code 93");
    let out = cercle(
        &url,
        Some(&alice.path),
        &["key", "add", "alice-bakery", "--pubkey", &bob.pubkey, "--role", "viewer"],
    )
    .failed();
    assert_mentions(&out, "KEY_ALREADY_REGISTERED, code 36");
    cercle(&url, Some(&alice.path), &["key", "remove", "alice-bakery", "--pubkey", &books.pubkey]).ok();
    let out = cercle(&url, Some(&alice.path), &["key", "remove", "alice-bakery", "--pubkey", &books.pubkey])
        .failed();
    assert_mentions(&out, "KEY_NOT_ON_ACCOUNT, code 94");
    cercle(&url, Some(&books.path), &["balance", "alice-bakery"]).failed();

    // Caps and usage survive a restart: the day's cap is still spent.
    node.stop();
    let node = Node::start(&data);
    let url = node.url();
    let out = cercle(&url, Some(&clerk.path), &["pay", "--from", "alice-bakery", "bob-mill", "1"]).failed();
    assert_mentions(&out, "KEY_CAP_EXCEEDED, code 91");
    let history = cercle(&url, Some(&alice.path), &["--json", "history", "alice-bakery"]).ok().json();
    let kinds: Vec<&str> =
        history["entries"].as_array().expect("entries").iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"add_key") && kinds.contains(&"remove_key"), "{kinds:?}");
    let verdict = cercle(&url, Some(&admin), &["--json", "audit", "verify"]).ok().json();
    assert_eq!(verdict["ok"], true, "{verdict}");
}
