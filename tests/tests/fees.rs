//! The README's fees walkthrough, end to end with the real binaries: the association's
//! account registered, the fee schedule set and shown, a payment that shows its levy before
//! signing and in its receipt, the balances of the three accounts after it, the payer's
//! credit limit binding the amount and the levy together, a schedule out of bounds refused,
//! the schedule surviving a restart, and the auditor's replay recomputing every levy.

use std::path::Path;

use cercle_e2e::{Node, assert_mentions, cercle, keygen};

fn balance_minor(url: &str, key: &Path, account: &str) -> i64 {
    let out = cercle(url, Some(key), &["--json", "balance", account]).ok().json();
    out["balance_minor"].as_i64().unwrap_or_else(|| panic!("no balance_minor: {out}"))
}

#[test]
fn a_levy_is_shown_charged_in_the_same_entry_and_replayed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("cercle-data");
    let mut node = Node::init_and_start(&data, &[]);
    let url = node.url();
    let admin = data.join("admin.key");
    let alice = keygen(tmp.path(), "alice");
    let bob = keygen(tmp.path(), "bob");
    // The README's firms, as "Admitting firms" registers them.
    cercle(
        &url,
        Some(&admin),
        &[
            "admin",
            "register",
            "alice-bakery",
            "--pubkey",
            &alice.pubkey,
            "--name",
            "Alice's Bakery",
            "--credit-limit",
            "1000",
        ],
    )
    .ok();
    cercle(
        &url,
        Some(&admin),
        &["admin", "register", "bob-mill", "--pubkey", &bob.pubkey, "--credit-limit", "500.00"],
    )
    .ok();

    // The walkthrough.
    let association = keygen(tmp.path(), "association");
    cercle(
        &url,
        Some(&admin),
        &[
            "admin",
            "register",
            "association",
            "--pubkey",
            &association.pubkey,
            "--name",
            "The association",
            "--credit-limit",
            "0",
        ],
    )
    .ok();
    cercle(
        &url,
        Some(&admin),
        &[
            "admin",
            "fees",
            "set",
            "--account",
            "association",
            "--transfer-levy-bp",
            "50",
            "--levy-on",
            "split",
            "--reason",
            "general assembly 2026",
        ],
    )
    .ok();
    let shown = cercle(&url, Some(&admin), &["admin", "fees", "show"]).ok();
    assert_eq!(
        shown.stdout.trim(),
        "fees to association: transfer levy 50 bp, split between payer and payee; no membership fee; no demurrage"
    );
    let paid = cercle(&url, Some(&alice.path), &["pay", "--from", "alice-bakery", "bob-mill", "101"]).ok();
    let levy = "levy 0.51 CHW to association (50 bp of 101.00 CHW, split: the payer pays 0.26 CHW, the payee 0.25 CHW)";
    assert!(paid.stderr.contains(levy), "shown before signing: {}", paid.stderr);
    assert!(paid.stdout.starts_with("accepted: entry"), "{}", paid.stdout);
    assert!(paid.stdout.contains(levy), "the receipt shows the levy: {}", paid.stdout);
    assert_eq!(balance_minor(&url, &association.path, "association"), 51);
    assert_eq!(balance_minor(&url, &alice.path, "alice-bakery"), -10_126);
    assert_eq!(balance_minor(&url, &bob.path, "bob-mill"), 10_075);

    // The association's history shows the levy's entry; no levy on a payment to it.
    let history = cercle(&url, Some(&association.path), &["--json", "history", "association"]).ok().json();
    assert!(history.to_string().contains("levy on a transfer from alice-bakery to bob-mill"), "{history}");
    // Each side's history names its share of the levy; the association's row, what it received.
    let last = |account: &str, key: &Path| {
        let h = cercle(&url, Some(key), &["--json", "history", account]).ok().json();
        h["entries"].as_array().unwrap().last().cloned().unwrap()
    };
    let row = last("association", &association.path);
    assert_eq!((row["amount_minor"].as_i64(), row["levy_minor"].as_i64()), (Some(51), None), "{row}");
    let row = last("alice-bakery", &alice.path);
    assert_eq!(
        (row["amount_minor"].as_i64(), row["levy_minor"].as_i64()),
        (Some(-10_100), Some(26)),
        "{row}"
    );
    let row = last("bob-mill", &bob.path);
    assert_eq!((row["amount_minor"].as_i64(), row["levy_minor"].as_i64()), (Some(10_100), Some(25)), "{row}");
    let text = cercle(&url, Some(&alice.path), &["history", "alice-bakery"]).ok().stdout;
    assert!(text.contains("(levy 0.26 CHW)"), "{text}");
    // With --limit 1 the balance before the row shown is read from the entries before it.
    let h =
        cercle(&url, Some(&alice.path), &["--json", "history", "alice-bakery", "--limit", "1"]).ok().json();
    assert_eq!(h["entries"][0]["levy_minor"], 26, "{h}");
    let to_association =
        cercle(&url, Some(&bob.path), &["--json", "pay", "--from", "bob-mill", "association", "1"]).ok();
    assert!(!to_association.stderr.contains("levy"), "{}", to_association.stderr);
    assert!(to_association.json().get("levy").is_none());
    assert_eq!(balance_minor(&url, &association.path, "association"), 151);

    // In JSON, the receipt carries the levy; stdout stays one object.
    let receipt =
        cercle(&url, Some(&bob.path), &["--json", "pay", "--from", "bob-mill", "alice-bakery", "10"])
            .ok()
            .json();
    assert_eq!(receipt["levy"]["total_minor"], 5, "{receipt}");
    assert_eq!(receipt["levy"]["payer_minor"], 3, "{receipt}");
    assert_eq!(receipt["levy"]["payee_minor"], 2, "{receipt}");
    assert_eq!(balance_minor(&url, &alice.path, "alice-bakery"), -10_126 + 998);

    // The payer's credit limit binds the amount and its share of the levy: alice at -91.28
    // pays 908.00 with a levy share of 2.27: -1,001.55 is below -1,000.00.
    let refused =
        cercle(&url, Some(&alice.path), &["pay", "--from", "alice-bakery", "bob-mill", "908"]).failed();
    assert_mentions(&refused, "CREDIT_LIMIT_EXCEEDED");
    assert_mentions(&refused, "-1,001.55 CHW");

    // A schedule out of bounds is refused before anything is signed.
    let bad = cercle(
        &url,
        Some(&admin),
        &[
            "admin",
            "fees",
            "set",
            "--account",
            "association",
            "--transfer-levy-bp",
            "1500",
            "--reason",
            "too much",
        ],
    )
    .failed();
    assert_mentions(
        &bad,
        "invalid fee schedule: a transfer levy of 1500 basis points is above the maximum of 1000",
    );

    // `info` shows the schedule; it survives a restart (checkpoint and roll-forward).
    let info = cercle(&url, None, &["--json", "info"]).ok().json();
    assert_eq!(info["fees"]["transfer_levy_bp"], 50, "{info}");
    node.stop();
    let mut node = Node::start(&data);
    let url = node.url();
    let shown = cercle(&url, Some(&admin), &["--json", "admin", "fees", "show"]).ok().json();
    assert_eq!(shown["fees"]["account"], "association", "{shown}");
    assert_eq!(shown["fees"]["levy_on"], "split", "{shown}");
    cercle(&url, Some(&alice.path), &["pay", "--from", "alice-bakery", "bob-mill", "101"]).ok();
    assert_eq!(balance_minor(&url, &association.path, "association"), 151 + 5 + 51);

    // The auditor's replay recomputes every levy from the schedule in the state.
    let verdict = cercle(&url, Some(&admin), &["--json", "audit", "verify"]).ok().json();
    assert_eq!(verdict["ok"], true, "{verdict}");
    node.stop();
}
