//! The README's periodic charges walkthrough, end to end with the real binaries: size
//! classes and a member group, a schedule with membership fees by class and by group and a
//! demurrage, a payment, the charge of a month with every firm's charge and the firm that
//! could not pay, the second run refused naming the entry, an earlier and a future period
//! refused, each firm's history showing its own part only, the charge surviving a restart,
//! the auditor's replay recomputing it, and the hledger export read by the real hledger
//! with every balance the ledger's and a total of zero.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use cercle_e2e::{Node, assert_mentions, cercle, keygen};

fn balance_minor(url: &str, key: &Path, account: &str) -> i64 {
    let out = cercle(url, Some(key), &["--json", "balance", account]).ok().json();
    out["balance_minor"].as_i64().unwrap_or_else(|| panic!("no balance_minor: {out}"))
}

fn register(url: &str, admin: &Path, args: &[&str]) {
    let mut all = vec!["admin", "register"];
    all.extend_from_slice(args);
    cercle(url, Some(admin), &all).ok();
}

#[test]
fn a_month_is_charged_once_with_every_firm_listed_and_replayed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("cercle-data");
    let mut node = Node::init_and_start(&data, &[]);
    let url = node.url();
    let admin = data.join("admin.key");
    let alice = keygen(tmp.path(), "alice");
    let bob = keygen(tmp.path(), "bob");
    let carol = keygen(tmp.path(), "carol");
    let association = keygen(tmp.path(), "association");
    // The README's firms ("Admitting firms") and the association's account ("Fees").
    register(
        &url,
        &admin,
        &["alice-bakery", "--pubkey", &alice.pubkey, "--name", "Alice's Bakery", "--credit-limit", "1000"],
    );
    register(&url, &admin, &["bob-mill", "--pubkey", &bob.pubkey, "--credit-limit", "500.00"]);
    register(
        &url,
        &admin,
        &["carol-market", "--pubkey", &carol.pubkey, "--credit-limit", "0", "--max-balance", "2000"],
    );
    register(
        &url,
        &admin,
        &["association", "--pubkey", &association.pubkey, "--name", "The association", "--credit-limit", "0"],
    );

    // The walkthrough, command by command.
    let admin = Some(admin.as_path());
    cercle(
        &url,
        admin,
        &["admin", "profile", "alice-bakery", "--size-class", "1-9", "--reason", "8 employees"],
    )
    .ok();
    cercle(
        &url,
        admin,
        &["admin", "profile", "bob-mill", "--size-class", "10-49", "--reason", "12 employees"],
    )
    .ok();
    let dan = keygen(tmp.path(), "dan");
    cercle(
        &url,
        admin,
        &[
            "admin",
            "group",
            "create",
            "coops",
            "--credit-limit",
            "0",
            "--reason",
            "statutes art. 8: cooperatives",
        ],
    )
    .ok();
    cercle(
        &url,
        admin,
        &[
            "admin",
            "register",
            "dan-coop",
            "--pubkey",
            &dan.pubkey,
            "--credit-limit",
            "0",
            "--size-class",
            "1-9",
        ],
    )
    .ok();
    cercle(&url, admin, &["admin", "group", "assign", "dan-coop", "coops", "--reason", "a cooperative"]).ok();
    cercle(
        &url,
        admin,
        &[
            "admin",
            "fees",
            "set",
            "--account",
            "association",
            "--membership",
            "1-9=20.00",
            "--membership",
            "10-49=50.00",
            "--group-membership",
            "coops=5.00",
            "--demurrage-bp",
            "50",
            "--demurrage-above",
            "500",
            "--reason",
            "general assembly 2026",
        ],
    )
    .ok();
    cercle(&url, Some(&alice.path), &["pay", "--from", "alice-bakery", "bob-mill", "900"]).ok();
    let charged = cercle(&url, admin, &["admin", "fees", "charge", "--period", "2026-11"]).ok();
    let lines: Vec<&str> = charged.stdout.lines().collect();
    assert!(lines[0].starts_with("charged period 2026-11: entry "), "{}", charged.stdout);
    assert!(lines[0].ends_with("; 72.00 CHW to association (its balance 72.00 CHW)"), "{}", charged.stdout);
    assert_eq!(
        &lines[1..],
        [
            "  alice-bakery: charged 20.00 CHW (membership 20.00 CHW, demurrage 0.00 CHW); balance -920.00 CHW",
            "  bob-mill: charged 52.00 CHW (membership 50.00 CHW, demurrage 2.00 CHW); balance 848.00 CHW",
            "  dan-coop: NOT charged 5.00 CHW (membership 5.00 CHW, demurrage 0.00 CHW): credit limit: the balance would be -5.00 CHW, the limit is 0.00 CHW",
            "1 firm(s) not charged, 5.00 CHW in all: collect it otherwise (an invoice, say); the period counts as charged",
        ],
        "{}",
        charged.stdout
    );
    let sequence: u64 = lines[0]
        .trim_start_matches("charged period 2026-11: entry ")
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .expect("the entry's sequence");
    let again = cercle(&url, admin, &["admin", "fees", "charge", "--period", "2026-11"]).failed();
    assert_eq!(again.code, 3, "a rejection: {}", again.stderr);
    assert_mentions(&again, "PERIOD_ALREADY_CHARGED, code 101");
    assert_mentions(&again, &format!("period 2026-11 was already charged, by entry {sequence} at "));
    let bob_history = cercle(&url, Some(&bob.path), &["history", "bob-mill"]).ok();
    assert_mentions(&bob_history, "periodic fees of 2026-11");

    // The balances moved as printed; the association received the total.
    assert_eq!(balance_minor(&url, &alice.path, "alice-bakery"), -92_000);
    assert_eq!(balance_minor(&url, &bob.path, "bob-mill"), 84_800);
    assert_eq!(balance_minor(&url, &dan.path, "dan-coop"), 0);
    assert_eq!(balance_minor(&url, &association.path, "association"), 7_200);

    // In JSON, every charge in minor units, and the firm not charged with its reason.
    let earlier =
        cercle(&url, admin, &["--json", "admin", "fees", "charge", "--period", "2026-10"]).failed().json();
    assert_eq!(earlier["error"]["code"], 101, "{earlier}");
    assert!(earlier["error"]["message"].as_str().unwrap().contains("comes before 2026-11"), "{earlier}");
    let future = cercle(&url, admin, &["admin", "fees", "charge", "--period", "9999-12"]).failed();
    assert_mentions(&future, "PERIOD_NOT_BEGUN, code 102");
    let bad = cercle(&url, admin, &["admin", "fees", "charge", "--period", "2026-13"]).failed();
    assert_eq!(bad.code, 2, "refused before anything is sent: {}", bad.stderr);

    // Each firm's history shows its own part, never another firm's balance.
    let history = cercle(&url, Some(&bob.path), &["--json", "history", "bob-mill"]).ok().json();
    let entries = history["entries"].as_array().unwrap();
    let charge = entries.iter().find(|e| e["kind"] == "charge_fees").expect("the charge in bob's history");
    assert_eq!(charge["amount_minor"], -5_200, "{charge}");
    assert_eq!(charge["balance_after_minor"], 84_800, "{charge}");
    assert_eq!(charge["charge"]["membership_minor"], 5_000, "{charge}");
    assert_eq!(charge["charge"]["demurrage_minor"], 200, "{charge}");
    assert!(!charge.to_string().contains("alice-bakery"), "another firm's part shown: {charge}");
    let dan_history = cercle(&url, Some(&dan.path), &["--json", "history", "dan-coop"]).ok().json();
    let dan_charge =
        dan_history["entries"].as_array().unwrap().iter().find(|e| e["kind"] == "charge_fees").cloned();
    let dan_charge = dan_charge.expect("a firm not charged sees the entry too");
    assert_eq!(dan_charge["charge"]["not_charged"], "credit_limit", "{dan_charge}");
    assert_eq!(dan_charge["charge"]["charged_minor"], 0, "{dan_charge}");
    let assoc_history =
        cercle(&url, Some(&association.path), &["--json", "history", "association"]).ok().json();
    let received =
        assoc_history["entries"].as_array().unwrap().iter().find(|e| e["kind"] == "charge_fees").cloned();
    assert_eq!(received.expect("the association's history")["amount_minor"], 7_200);

    // After a restart (checkpoint and roll-forward), the period is still charged.
    node.stop();
    let mut node = Node::start(&data);
    let url = node.url();
    let again = cercle(&url, admin, &["admin", "fees", "charge", "--period", "2026-11"]).failed();
    assert_mentions(&again, "PERIOD_ALREADY_CHARGED, code 101");
    assert_eq!(balance_minor(&url, &association.path, "association"), 7_200);

    // The auditor's replay recomputes the charge from the state.
    let verdict = cercle(&url, admin, &["--json", "audit", "verify"]).ok().json();
    assert_eq!(verdict["ok"], true, "{verdict}");

    // The hledger export balances: every account the ledger's, a total of zero.
    let journal = tmp.path().join("ledger.journal");
    let journal_path = journal.to_str().unwrap();
    cercle(&url, admin, &["audit", "export", "--out", journal_path, "--format", "hledger"]).ok();
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(text.contains("periodic fees of 2026-11"), "{text}");
    assert!(text.contains("; dan-coop not charged 5.00"), "{text}");
    match Command::new("hledger").args(["-f", journal_path, "balance", "--strict", "-O", "csv"]).output() {
        Ok(out) => {
            let shown = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "hledger refused: {}\n{shown}",
                String::from_utf8_lossy(&out.stderr)
            );
            let mut balances = BTreeMap::new();
            for line in shown.lines().skip(1) {
                let fields: Vec<&str> = line.split(',').map(|f| f.trim_matches('"')).collect();
                let number = fields[1].trim_end_matches("CHW").trim();
                let negative = number.starts_with('-');
                let minor = cercle_core::parse_major(number.trim_start_matches('-'), 2).unwrap();
                balances.insert(fields[0].to_string(), if negative { -minor } else { minor });
            }
            assert_eq!(balances.remove("total"), Some(0), "{shown}");
            assert_eq!(balances.get("association"), Some(&7_200), "{shown}");
            assert_eq!(balances.get("bob-mill"), Some(&84_800), "{shown}");
            assert_eq!(balances.get("alice-bakery"), Some(&-92_000), "{shown}");
        }
        // Where hledger is not installed, `tests/hledger.rs` says so; the journal's
        // assertions were still written.
        Err(e) if std::env::var_os("CERCLE_REQUIRE_ALL").is_none() => {
            eprintln!("hledger not run: {e}");
        }
        Err(e) => panic!("hledger is required (CERCLE_REQUIRE_ALL): {e}"),
    }
    node.stop();
}
