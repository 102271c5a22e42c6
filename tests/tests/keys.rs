//! The README's walkthrough of a firm's employee keys, end to end with the real binaries: a
//! ledger whose day is offset from UTC; a payer key within its caps, and above them (per
//! transfer and for the day) a pending payment that reserves the payer's headroom, approved
//! or declined by an owner only, and keeping the account from closing; a viewer that reads
//! and signs nothing; an invoicer that issues and cancels but does not accept; `key list`
//! (text and JSON) with what the payer paid today; the last owner key kept; a key removed;
//! all of it across a restart, then the auditor's replay.

use std::path::Path;

use cercle_e2e::{CliOutput, Node, assert_mentions, cercle, keygen};

fn balance(url: &str, key: &Path, account: &str) -> i64 {
    let b = cercle(url, Some(key), &["--json", "balance", account]).ok().json();
    b["balance_minor"].as_i64().expect("a balance")
}

/// `cercle pay`, with the key at `key`, from alice-bakery to bob-mill.
fn pay(url: &str, key: &Path, amount: &str) -> CliOutput {
    cercle(url, Some(key), &["pay", "--from", "alice-bakery", "bob-mill", amount])
}

/// A payment held for approval, by its JSON receipt: its pending id.
#[track_caller]
fn held(url: &str, key: &Path, amount: &str) -> String {
    let receipt =
        cercle(url, Some(key), &["--json", "pay", "--from", "alice-bakery", "bob-mill", amount]).ok().json();
    assert_eq!(receipt["state"], "pending", "{receipt}");
    assert_eq!(receipt["balances_after"], serde_json::json!([]), "nothing moved: {receipt}");
    receipt["pending_id"].as_u64().expect("a pending id").to_string()
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
    let alice = keygen(tmp.path(), "alice-new");
    let bob = keygen(tmp.path(), "bob");
    for (account, key) in [("alice-bakery", &alice), ("bob-mill", &bob)] {
        let args = ["admin", "register", account, "--pubkey", &key.pubkey, "--credit-limit", "5000"];
        cercle(&url, Some(&admin), &args).ok();
    }

    // The README: a payer key with its caps.
    let clerk = keygen(tmp.path(), "alice-clerk");
    let add = [
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
    ];
    cercle(&url, Some(&alice.path), &add).ok();
    pay(&url, &clerk.path, "450").ok();
    // Above the cap per transfer: held, with its id, and said so.
    let out = pay(&url, &clerk.path, "600").ok();
    assert_mentions(&out, "PENDING: held for an owner's approval as pending payment");
    let first =
        out.stdout.split("pending payment ").nth(1).and_then(|t| t.split(',').next()).unwrap().to_string();
    for _ in 0..3 {
        pay(&url, &clerk.path, "500").ok();
    }
    // 1,950.00 paid today: 50.01 more is over the day's cap (held), 50.00 is not.
    let second = held(&url, &clerk.path, "50.01");
    pay(&url, &clerk.path, "50").ok();
    // An owner key has no cap.
    pay(&url, &alice.path, "700").ok();
    assert_eq!(balance(&url, &alice.path, "alice-bakery"), -270_000);
    // The two pending payments reserve 650.01 of alice's 5,000.00 of credit.
    let pending = cercle(&url, Some(&alice.path), &["--json", "pending", "list", "alice-bakery"]).ok().json();
    assert_eq!(pending["reserved_minor"], 65_001, "{pending}");
    let ids: Vec<String> =
        pending["pending"].as_array().unwrap().iter().map(|p| p["pending_id"].to_string()).collect();
    assert_eq!(ids, [first.clone(), second.clone()]);
    // The accounts overview shows the reservation too.
    let overview = cercle(&url, Some(&admin), &["--json", "admin", "accounts"]).ok().json();
    let row =
        overview["accounts"].as_array().unwrap().iter().find(|a| a["handle"] == "alice-bakery").cloned();
    assert_eq!(row.map(|a| a["reserved_minor"].clone()), Some(serde_json::json!(65_001)), "{overview}");
    let out = pay(&url, &alice.path, "2300").failed();
    assert_mentions(&out, "CREDIT_LIMIT_EXCEEDED, code 50");
    // The payer does not approve its own payment; an owner does.
    let out = cercle(&url, Some(&clerk.path), &["pending", "approve", "alice-bakery", &first]).failed();
    assert_mentions(&out, "KEY_ROLE_NOT_ALLOWED, code 90");
    cercle(&url, Some(&alice.path), &["pending", "approve", "alice-bakery", &first]).ok();
    // Approved once: approving it again is refused as the ledger refuses a decline of it.
    let again = cercle(&url, Some(&alice.path), &["pending", "approve", "alice-bakery", &first]).failed();
    assert_eq!(again.code, 3, "a rejection: {}", again.stderr);
    assert_mentions(&again, "PENDING_UNKNOWN, code 95");
    assert_mentions(
        &again,
        &format!("has no pending payment {first} waiting: it was never made, or it was approved"),
    );
    let decline = ["pending", "decline", "alice-bakery", &second, "--reason", "not ordered"];
    cercle(&url, Some(&alice.path), &decline).ok();
    assert_eq!(balance(&url, &alice.path, "alice-bakery"), -330_000);
    let out = cercle(&url, Some(&alice.path), &decline).failed();
    assert_mentions(&out, "PENDING_UNKNOWN, code 95");
    // A pending payment keeps the account from closing.
    let third = held(&url, &clerk.path, "1");
    let out = cercle(&url, Some(&admin), &["admin", "close", "alice-bakery", "--reason", "leaves"]).failed();
    assert_mentions(&out, "PENDING_PAYMENTS_OPEN, code 97");

    // A viewer reads and signs nothing.
    let books = keygen(tmp.path(), "alice-books");
    let add = ["key", "add", "alice-bakery", "--pubkey", &books.pubkey, "--role", "viewer"];
    cercle(&url, Some(&alice.path), &add).ok();
    assert_eq!(balance(&url, &books.path, "alice-bakery"), -330_000);
    let out = pay(&url, &books.path, "1").failed();
    assert_mentions(&out, "KEY_ROLE_NOT_ALLOWED, code 90");
    assert_mentions(
        &out,
        "the signing key is a viewer key of account 'alice-bakery': it cannot pay; its owner and payer keys sign that",
    );
    // Nor does a payer change the keys.
    let out = cercle(&url, Some(&clerk.path), &["key", "remove", "alice-bakery", "--pubkey", &books.pubkey])
        .failed();
    assert_mentions(&out, "KEY_ROLE_NOT_ALLOWED, code 90");

    // An invoicer issues and cancels; only an owner accepts an invoice.
    let sales = keygen(tmp.path(), "bob-sales");
    cercle(
        &url,
        Some(&bob.path),
        &["key", "add", "bob-mill", "--pubkey", &sales.pubkey, "--role", "invoicer"],
    )
    .ok();
    let issue = [
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
    ];
    let issued = cercle(&url, Some(&sales.path), &issue).ok().json();
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
    let out = cercle(&url, Some(&alice.path), &add).failed();
    assert_mentions(&out, "KEY_ALREADY_ON_ACCOUNT, code 93");
    let shared = ["key", "add", "alice-bakery", "--pubkey", &bob.pubkey, "--role", "viewer"];
    let out = cercle(&url, Some(&alice.path), &shared).failed();
    assert_mentions(&out, "KEY_ALREADY_REGISTERED, code 36");
    let remove = ["key", "remove", "alice-bakery", "--pubkey", &books.pubkey];
    cercle(&url, Some(&alice.path), &remove).ok();
    let out = cercle(&url, Some(&alice.path), &remove).failed();
    assert_mentions(&out, "KEY_NOT_ON_ACCOUNT, code 94");
    cercle(&url, Some(&books.path), &["balance", "alice-bakery"]).failed();

    // Caps, usage and pending payments survive a restart: the day's cap is still spent.
    node.stop();
    let node = Node::start(&data);
    let url = node.url();
    let fourth = held(&url, &clerk.path, "1");
    let pending = cercle(&url, Some(&alice.path), &["--json", "pending", "list", "alice-bakery"]).ok().json();
    let ids: Vec<String> =
        pending["pending"].as_array().unwrap().iter().map(|p| p["pending_id"].to_string()).collect();
    assert_eq!(ids, [third.clone(), fourth.clone()], "{pending}");
    for id in [&third, &fourth] {
        cercle(&url, Some(&alice.path), &["pending", "decline", "alice-bakery", id]).ok();
    }
    let history = cercle(&url, Some(&alice.path), &["--json", "history", "alice-bakery"]).ok().json();
    let kinds: Vec<&str> =
        history["entries"].as_array().expect("entries").iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in ["add_key", "remove_key", "transfer_held", "approve_pending", "decline_pending"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let verdict = cercle(&url, Some(&admin), &["--json", "audit", "verify"]).ok().json();
    assert_eq!(verdict["ok"], true, "{verdict}");
}
