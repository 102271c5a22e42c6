//! The README's walkthrough, end to end, with the real binaries: init and run the node,
//! register three firms, pay, exceed a limit, freeze, retry an operation, read another
//! firm's data, restart the node.

use std::path::{Path, PathBuf};

use cercle_e2e::{CliOutput, Node, cercle};

struct Firm {
    name: &'static str,
    key: PathBuf,
    pubkey: String,
}

fn keygen(url: &str, dir: &Path, name: &'static str) -> Firm {
    let key = dir.join(format!("{name}.key"));
    let out = cercle(url, None, &["keygen", "--out", key.to_str().unwrap()]).ok();
    let pubkey = out.stdout.split_whitespace().last().expect("public key").to_string();
    assert_eq!(pubkey.len(), 64, "keygen prints the public key in hex: {}", out.stdout);
    Firm { name, key, pubkey }
}

fn balance(url: &str, firm: &Firm) -> serde_json::Value {
    cercle(url, Some(&firm.key), &["--json", "balance", firm.name]).ok().json()
}

fn balance_minor(url: &str, firm: &Firm) -> i64 {
    balance(url, firm)["balance_minor"].as_i64().expect("balance_minor")
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

#[test]
fn walkthrough() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut node = Node::init_and_start(&data, &["--currency", "CHW"]);
    let url = node.url();
    let admin = data.join("admin.key");
    assert!(admin.exists(), "init creates an administrator key");
    let admin = Some(admin.as_path());

    let alice = keygen(&url, tmp.path(), "alice-bakery");
    let bob = keygen(&url, tmp.path(), "bob-mill");
    let carol = keygen(&url, tmp.path(), "carol-market");

    // Register three firms with their limits.
    cercle(
        &url,
        admin,
        &[
            "admin",
            "register",
            alice.name,
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
        admin,
        &["admin", "register", bob.name, "--pubkey", &bob.pubkey, "--credit-limit", "500.00"],
    )
    .ok();
    cercle(
        &url,
        admin,
        &[
            "admin",
            "register",
            carol.name,
            "--pubkey",
            &carol.pubkey,
            "--credit-limit",
            "0",
            "--max-balance",
            "2000",
        ],
    )
    .ok();
    let b = balance(&url, &alice);
    assert_eq!(b["account"], "alice-bakery");
    assert_eq!(b["balance_minor"], 0);
    assert_eq!(b["credit_limit_minor"], 100_000);
    assert_eq!(b["max_balance_minor"], serde_json::Value::Null);
    assert_eq!(b["status"], "active");
    assert_eq!(balance(&url, &carol)["max_balance_minor"], 200_000);
    assert_eq!(b["floor_minor"], -100_000);
    let text = cercle(&url, Some(&alice.key), &["balance", alice.name]).ok().stdout;
    assert!(text.contains("credit limit 1,000.00 CHW (floor -1,000.00 CHW)"), "{text}");

    // Alice pays Bob: her balance goes below zero, his goes up by the same amount.
    cercle(
        &url,
        Some(&alice.key),
        &["pay", "--from", alice.name, bob.name, "125.50", "--memo", "flour, week 47"],
    )
    .ok();
    assert_eq!(balance_minor(&url, &alice), -12_550);
    assert_eq!(balance_minor(&url, &bob), 12_550);

    // Exceeding the credit limit is refused with the numbers, and changes nothing.
    let out = cercle(&url, Some(&alice.key), &["pay", "--from", alice.name, bob.name, "900"]).failed();
    assert_mentions(
        &out,
        "credit limit exceeded: balance would be -1,025.50 CHW; a credit limit of 1,000.00 CHW allows down to -1,000.00 CHW",
    );
    assert_eq!(balance_minor(&url, &alice), -12_550);
    assert_eq!(balance_minor(&url, &bob), 12_550);

    // Bad amounts never leave the CLI.
    for bad in ["1.234", "-5", "0", "99999999999999999999"] {
        cercle(&url, Some(&alice.key), &["pay", "--from", alice.name, bob.name, bad]).failed();
    }
    assert_eq!(balance_minor(&url, &alice), -12_550);

    // A frozen account can neither pay nor be paid.
    cercle(&url, admin, &["admin", "freeze", bob.name, "--reason", "dispute over invoice 17"]).ok();
    let out = cercle(&url, Some(&alice.key), &["pay", "--from", alice.name, bob.name, "10"]).failed();
    assert_mentions(&out, "account 'bob-mill' is frozen");
    let out = cercle(&url, Some(&bob.key), &["pay", "--from", bob.name, carol.name, "10"]).failed();
    assert_mentions(&out, "frozen");
    assert_eq!(balance(&url, &bob)["status"], "frozen");
    cercle(&url, admin, &["admin", "unfreeze", bob.name]).ok();
    assert_eq!(balance(&url, &bob)["status"], "active");

    // The same operation submitted twice pays once.
    let saved = tmp.path().join("payment.jsonl");
    let saved = saved.to_str().unwrap();
    cercle(&url, Some(&bob.key), &["pay", "--from", bob.name, carol.name, "20", "--save", saved]).ok();
    assert_eq!(balance_minor(&url, &carol), 2_000);
    let retry = cercle(&url, None, &["--json", "submit", "--file", saved]).ok();
    assert!(retry.stdout.contains("\"duplicate\":true"), "retry is a duplicate: {}", retry.stdout);
    assert_eq!(balance_minor(&url, &carol), 2_000);
    assert_eq!(balance_minor(&url, &bob), 10_550);

    // The same operation id with another body is refused.
    let op_id = "0123456789abcdef0123456789abcdef";
    cercle(&url, Some(&bob.key), &["pay", "--from", bob.name, carol.name, "1", "--op-id", op_id]).ok();
    let out = cercle(&url, Some(&bob.key), &["pay", "--from", bob.name, carol.name, "2", "--op-id", op_id])
        .failed();
    assert_mentions(&out, "already used");
    assert_eq!(balance_minor(&url, &carol), 2_100);

    // A firm cannot act as an administrator, nor read another firm's data.
    let out = cercle(&url, Some(&alice.key), &["admin", "freeze", bob.name, "--reason", "no"]).failed();
    assert_mentions(&out, "not an administrator");
    let out = cercle(&url, Some(&alice.key), &["history", bob.name]).failed();
    assert_mentions(&out, "may not read account 'bob-mill'");
    let out = cercle(&url, Some(&alice.key), &["balance", bob.name]).failed();
    assert_mentions(&out, "may not read");
    // Without a key there is nothing to read.
    cercle(&url, None, &["balance", alice.name]).failed();

    // Limits change with a reason, and are part of the history.
    cercle(
        &url,
        admin,
        &["admin", "set-limits", alice.name, "--credit-limit", "3000", "--reason", "annual review"],
    )
    .ok();
    assert_eq!(balance(&url, &alice)["credit_limit_minor"], 300_000);

    // The maximum balance holds: Carol (21.00) may not go above 2,000.00.
    let out = cercle(&url, Some(&alice.key), &["pay", "--from", alice.name, carol.name, "1999"]).failed();
    assert_mentions(
        &out,
        "maximum balance exceeded: the payment would take 'carol-market' above its maximum balance",
    );
    // Carol's balance and maximum are hers: the payer learns neither (issue #10).
    assert!(!out.stderr.contains("2,0") && !out.stdout.contains("2,0"), "{}", out.stderr);
    cercle(&url, Some(&alice.key), &["pay", "--from", alice.name, bob.name, "900"]).ok();
    assert_eq!(balance_minor(&url, &alice), -102_550);

    // History, from the firm's side.
    let history = cercle(&url, Some(&alice.key), &["--json", "history", alice.name]).ok().json();
    assert_eq!(history["ok"], true);
    let rows = history["entries"].as_array().expect("history has an entries list");
    let kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["register_account", "transfer", "set_limits", "transfer"]);
    assert_eq!(rows[1]["amount_minor"], -12_550);
    assert_eq!(rows[1]["counterparty"], "bob-mill");
    assert_eq!(rows[1]["balance_after_minor"], -12_550);
    assert_eq!(rows[1]["memo"], "flour, week 47");
    assert_eq!(rows[3]["balance_after_minor"], -102_550);
    assert_eq!(rows[2]["reason"], "annual review");
    assert_eq!(rows[2]["limits"], serde_json::json!({"credit_limit_minor": 300_000}));
    let bob_history = cercle(&url, Some(&bob.key), &["--json", "history", bob.name]).ok().json();
    let first_payment = &bob_history["entries"][1];
    assert_eq!(first_payment["amount_minor"], 12_550);
    assert_eq!(first_payment["counterparty"], "alice-bakery");
    // The administrator reads everything.
    cercle(&url, admin, &["--json", "history", bob.name]).ok();

    // --limit N is the latest N entries, still oldest first.
    let latest =
        cercle(&url, Some(&alice.key), &["--json", "history", alice.name, "--limit", "2"]).ok().json();
    let kinds: Vec<&str> =
        latest["entries"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["set_limits", "transfer"]);
    assert_eq!(latest["earlier_entries_omitted"], true);
    assert_eq!(latest["entries"][1]["balance_after_minor"], -102_550);
    // --from and --to pick whole days (UTC).
    let day = |offset_days: i64| {
        cercle_audit::utc_date(cercle_e2e::now_ms().saturating_add_signed(offset_days * 86_400_000))
    };
    let (yesterday, tomorrow, later) = (day(-1), day(1), day(2));
    let history = |from: &str, to: &str| {
        cercle(&url, Some(&alice.key), &["--json", "history", alice.name, "--from", from, "--to", to])
    };
    assert_eq!(history(&yesterday, &tomorrow).ok().json()["entries"].as_array().unwrap().len(), 4);
    assert_eq!(history(&later, &later).ok().json()["entries"], serde_json::json!([]));
    let out = history("2026-12-01", "2026-11-01").failed();
    assert_eq!(out.code, 2);
    assert_mentions(&out, "--from 2026-12-01 is after --to 2026-11-01");
    // The same for exports; a journal of a period opens with the balances before it.
    let export = |format: &str, name: &str, from: &str| {
        let file = tmp.path().join(name);
        let args = ["audit", "export", "--format", format, "--out", file.to_str().unwrap(), "--from", from];
        (cercle(&url, admin, &args), file)
    };
    let (out, csv) = export("csv", "later.csv", &later);
    out.ok();
    assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 1, "only the header");
    let (out, journal) = export("hledger", "later.journal", &later);
    out.ok();
    let journal = std::fs::read_to_string(&journal).unwrap();
    assert!(journal.contains("opening balances"), "{journal}");
    assert!(journal.contains("alice-bakery") && journal.contains("-1,025.50 CHW"), "{journal}");
    let (out, _) = export("jsonl", "later.jsonl", &later);
    assert_mentions(&out.failed(), "--from and --to apply to csv and hledger");

    // Key rotation by the firm itself: the old key stops working.
    let alice2 = keygen(&url, tmp.path(), "alice-bakery-2");
    cercle(&url, Some(&alice.key), &["admin", "rotate-keys", alice.name, "--pubkey", &alice2.pubkey]).ok();
    let out = cercle(&url, Some(&alice.key), &["pay", "--from", alice.name, bob.name, "1"]).failed();
    assert_mentions(&out, "not allowed to sign for account 'alice-bakery'");
    // Its holder is told the key was rotated out, not that it never belonged (#10 item 14),
    // when paying and when reading.
    assert_mentions(&out, "was rotated out of account 'alice-bakery' (rotate-keys)");
    let out = cercle(&url, Some(&alice.key), &["balance", alice.name]).failed();
    assert_mentions(&out, "may not read account 'alice-bakery' any more");
    assert_mentions(&out, "was rotated out of account 'alice-bakery' (rotate-keys)");
    // A key that never belonged is not told anything of the kind.
    let out = cercle(&url, Some(&bob.key), &["balance", alice.name]).failed();
    assert!(!out.stderr.contains("rotated out") && !out.stdout.contains("rotated out"), "{}", out.stderr);
    cercle(&url, Some(&alice2.key), &["pay", "--from", alice.name, bob.name, "1"]).ok();

    // A restart restores exactly the same state.
    let before: Vec<serde_json::Value> = [&alice, &bob, &carol]
        .iter()
        .map(|f| cercle(&url, admin, &["--json", "balance", f.name]).ok().json())
        .collect();
    let sum: i64 = before.iter().map(|b| b["balance_minor"].as_i64().unwrap()).sum();
    assert_eq!(sum, 0, "balances sum to zero");
    node.stop();
    let node = Node::start(&data);
    let url = node.url();
    let after: Vec<serde_json::Value> = [&alice, &bob, &carol]
        .iter()
        .map(|f| cercle(&url, admin, &["--json", "balance", f.name]).ok().json())
        .collect();
    assert_eq!(before, after);
    let log = std::fs::read_to_string(data.join("node.log")).unwrap();
    assert!(log.contains("state verified against the log"), "start-up check ran:\n{log}");
    // The log is a file, not a terminal: no colour escape codes in it.
    assert!(!log.contains('\u{1b}'), "escape codes in the node's log:\n{log}");
}
