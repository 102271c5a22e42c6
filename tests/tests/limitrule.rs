//! The README's walkthrough of rule-based credit limits, end to end with the real binaries.
//!
//! A rule counts the sales of the 12 ledger months *before* the month in progress, and the
//! node's clock is the real one: so the year of trading the walkthrough starts from is
//! written beforehand, with the real core, as entries dated about four months ago, signed
//! by the ledger's own administrator and the firms' keys, and restored into a new data
//! directory with `cercle-node restore` (which checks every signature and replays every
//! entry). From there, the walkthrough's commands: a preview (text and JSON), a payment in
//! the month in progress that changes nothing, an apply bound to the preview's digest, the
//! new limits with their source, refusals with their numbers, a restart and a rebuild from
//! the log, and the auditor's replay.

use std::path::{Path, PathBuf};

use cercle_core::sign::Keypair;
use cercle_core::{
    AccountId, GroupLimits, GroupName, Ledger, OpKind, Operation, OperationId, RegisterAccount, Transfer,
};
use cercle_e2e::{Node, assert_mentions, cercle, read_key};

const DAY_MS: u64 = 86_400_000;

fn keygen(url: &str, dir: &Path, name: &str) -> (PathBuf, Keypair) {
    let path = dir.join(format!("{name}.key"));
    cercle(url, None, &["keygen", "--out", path.to_str().unwrap()]).ok();
    let key = read_key(&path);
    (path, key)
}

fn id(name: &str) -> AccountId {
    AccountId::parse(name).unwrap()
}

fn register(name: &str, key: &Keypair, credit_limit_minor: i64) -> OpKind {
    OpKind::RegisterAccount(RegisterAccount {
        account: id(name),
        display_name: name.into(),
        keys: vec![key.public_key()],
        credit_limit_minor,
        max_balance_minor: None,
        profile: Default::default(),
        allow_shared_key: false,
    })
}

fn pay(payer: &str, payee: &str, amount_minor: i64) -> OpKind {
    OpKind::Transfer(Transfer {
        payer: id(payer),
        payee: id(payee),
        amount_minor,
        memo: "goods".into(),
        invoice_ref: None,
        invoice: None,
    })
}

/// Writes a ledger of `genesis` with a season of trading about four months ago into
/// `backup` (the auditor's jsonl format), its tree head signed with `node_key`.
fn write_history(
    genesis: &cercle_core::Genesis,
    node_key: &Keypair,
    admin: &Keypair,
    firms: &[(&str, &Keypair)],
    backup: &Path,
) {
    let (ann, bob, eve) = (firms[0].1, firms[1].1, firms[2].1);
    let start_ms = cercle_e2e::now_ms() - 120 * DAY_MS;
    let steps: Vec<(&Keypair, OpKind)> = vec![
        (admin, register("ann-bakery", ann, 0)),
        (admin, register("bob-mill", bob, 50_000)),
        (
            admin,
            OpKind::CreateGroup(GroupLimits {
                group: GroupName::parse("small-firms").unwrap(),
                credit_limit_minor: 50_000,
                max_balance_minor: None,
                reason: "statutes art. 7".into(),
            }),
        ),
        (admin, register("eve-press", eve, 0)),
        (
            admin,
            OpKind::AssignGroup {
                account: id("eve-press"),
                group: GroupName::parse("small-firms").unwrap(),
                reason: "8 employees".into(),
            },
        ),
        (
            admin,
            OpKind::SetLimits(cercle_core::SetLimits {
                account: id("eve-press"),
                credit_limit_minor: Some(10_000_000),
                max_balance_minor: None,
                reason: "large order".into(),
            }),
        ),
        (eve, pay("eve-press", "bob-mill", 4_000_000)),
        (bob, pay("bob-mill", "ann-bakery", 3_000_000)),
    ];
    let mut ledger = Ledger::new(genesis.clone());
    let mut out = cercle_audit::jsonl::Writer::new(std::fs::File::create(backup).unwrap(), genesis).unwrap();
    let mut hashes = Vec::new();
    for (i, (key, kind)) in steps.into_iter().enumerate() {
        let now = start_ms + i as u64 * 60_000;
        let op = Operation { id: OperationId([i as u8 + 1; 16]), valid_until_ms: now + 3_600_000, kind };
        let body = cercle_core::body::encode(&op);
        let signature = key.sign_op(&genesis.ledger_id, &body);
        let envelope = cercle_core::Envelope::single(body, key.public_key(), signature);
        let entry = match ledger.execute(now, envelope, &op) {
            Ok(cercle_core::Executed::Accepted { entry, .. }) => entry,
            other => panic!("step {i} of the history: {other:?}"),
        };
        hashes.push(entry.hash());
        out.write_entry(&entry).unwrap();
    }
    let head = cercle_core::checkpoint::TreeHead {
        ledger_id: genesis.ledger_id,
        tree_size: hashes.len() as u64,
        root_hash: cercle_core::merkle::root(&hashes),
        timestamp_ms: ledger.head().timestamp_ms,
    };
    let signed = cercle_core::checkpoint::SignedTreeHead { head, signature: head.sign(node_key) };
    out.write_tree_head(&signed).unwrap();
}

fn balance(url: &str, key: &Path, account: &str) -> serde_json::Value {
    cercle(url, Some(key), &["--json", "balance", account]).ok().json()
}

#[test]
fn a_limit_rule_is_previewed_then_applied_as_the_readme_says() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let mut node = Node::init_and_start(&first, &[]);
    let url = node.url();
    let genesis = tokio::runtime::Runtime::new().unwrap().block_on(cercle_e2e::genesis(&node));
    let (_ann_path, ann) = keygen(&url, tmp.path(), "ann");
    let (bob_path, bob) = keygen(&url, tmp.path(), "bob");
    let (eve_path, eve) = keygen(&url, tmp.path(), "eve");
    node.stop();
    let admin_path = first.join("admin.key");
    let admin = read_key(&admin_path);
    let node_key = read_key(&first.join("node.key"));
    let backup = tmp.path().join("history.jsonl");
    write_history(
        &genesis,
        &node_key,
        &admin,
        &[("ann-bakery", &ann), ("bob-mill", &bob), ("eve-press", &eve)],
        &backup,
    );
    let data = tmp.path().join("data");
    let restore = std::process::Command::new(cercle_e2e::binary("cercle-node"))
        .args(["restore", "--from"])
        .arg(&backup)
        .arg("--data-dir")
        .arg(&data)
        .arg("--node-key")
        .arg(first.join("node.key"))
        .output()
        .unwrap();
    assert!(restore.status.success(), "{}", String::from_utf8_lossy(&restore.stderr));
    let mut node = Node::start(&data);
    let url = node.url();
    let admin = admin_path.as_path();

    // The walkthrough, command by command.
    let preview =
        cercle(&url, Some(admin), &["admin", "limits", "preview", "--cap", "9000", "--factor", "0.25"]).ok();
    let text = preview.stdout.clone();
    assert!(text.contains("rule: limit = min(9,000.00 CHW, 25.00% of the sales"), "{text}");
    assert!(text.contains("a preview and an apply in the same month see the same sales"), "{text}");
    let row = |text: &str, firm: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(firm))
            .unwrap_or_else(|| panic!("no row {firm}:\n{text}"))
            .to_string()
    };
    let words = |line: String| line.split_whitespace().map(String::from).collect::<Vec<_>>();
    assert_eq!(
        words(row(&text, "ann-bakery")),
        ["ann-bakery", "30,000.00", "CHW", "0.00", "CHW", "own", "7,500.00", "CHW", "+7,500.00", "CHW"]
    );
    assert_eq!(
        words(row(&text, "bob-mill")),
        ["bob-mill", "40,000.00", "CHW", "500.00", "CHW", "own", "9,000.00", "CHW", "+8,500.00", "CHW"]
    );
    // eve-press sold nothing: its group's default is its floor, below what it owes.
    assert_eq!(
        words(row(&text, "eve-press")),
        [
            "eve-press",
            "0.00",
            "CHW",
            "100,000.00",
            "CHW",
            "own",
            "500.00",
            "CHW",
            "-99,500.00",
            "CHW",
            "owes",
            "40,000.00",
            "CHW:",
            "above",
            "its",
            "new",
            "limit"
        ]
    );
    assert!(text.contains("3 firms, 3 limits change; digest "), "{text}");
    let json = cercle(
        &url,
        Some(admin),
        &["--json", "admin", "limits", "preview", "--cap", "9000", "--factor", "0.25"],
    )
    .ok()
    .json();
    let digest = json["digest"].as_str().unwrap().to_string();
    assert_eq!(json["firms"][1]["new_credit_limit_minor"], 900_000, "{json}");
    assert_eq!(json["firms"][2]["over_new_limit"], true, "{json}");

    // A payment in the month in progress counts from next month on: the preview is the same.
    cercle(&url, Some(&bob_path), &["pay", "--from", "bob-mill", "ann-bakery", "100"]).ok();
    let again = cercle(
        &url,
        Some(admin),
        &["--json", "admin", "limits", "preview", "--cap", "9000", "--factor", "0.25"],
    )
    .ok()
    .json();
    assert_eq!(again["digest"], json["digest"], "a payment this month does not move the preview");

    // An apply bound to another outcome is refused; then the walkthrough's apply.
    let other = "00".repeat(32);
    let out = cercle(
        &url,
        Some(admin),
        &[
            "admin", "limits", "apply", "--cap", "9000", "--factor", "0.25", "--reason", "x", "--expect",
            &other,
        ],
    )
    .failed();
    assert_mentions(&out, "LIMIT_RULE_CHANGED, code 85");
    let out = cercle(
        &url,
        Some(admin),
        &[
            "admin",
            "limits",
            "apply",
            "--cap",
            "9000",
            "--factor",
            "0.25",
            "--expect",
            &digest,
            "--reason",
            "general assembly 2026: limits follow sales",
        ],
    )
    .ok();
    assert_mentions(&out, "accepted");
    let b = balance(&url, &bob_path, "bob-mill");
    assert_eq!(
        (b["credit_limit_minor"].as_i64(), b["credit_limit_source"].as_str()),
        (Some(900_000), Some("own"))
    );
    let e = balance(&url, &eve_path, "eve-press");
    assert_eq!(
        (e["credit_limit_minor"].as_i64(), e["balance_minor"].as_i64()),
        (Some(50_000), Some(-4_000_000))
    );
    let text = cercle(&url, Some(&bob_path), &["balance", "bob-mill"]).ok().stdout;
    assert!(text.contains("credit limit 9,000.00 CHW (floor -9,000.00 CHW)"), "{text}");
    // eve-press owes more than its new limit: it can only move back towards it.
    let out = cercle(&url, Some(&eve_path), &["pay", "--from", "eve-press", "bob-mill", "1"]).failed();
    assert_mentions(&out, "CREDIT_LIMIT_EXCEEDED, code 50");
    // The firm's history shows its own line of the rule.
    let history = cercle(&url, Some(&bob_path), &["--json", "history", "bob-mill"]).ok().json();
    let last = history["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "apply_limit_rule", "{history}");
    assert_eq!(last["limit_rule"]["sales_minor"], 4_000_000, "{last}");
    assert_eq!(last["limit_rule"]["old_credit_limit_minor"], 50_000, "{last}");

    // Refusals, each with its number.
    let out = cercle(
        &url,
        Some(admin),
        &["admin", "limits", "preview", "--cap", "9000", "--factor", "0.25", "--group", "large-firms"],
    )
    .failed();
    assert_mentions(&out, "UNKNOWN_GROUP, code 80");
    let out =
        cercle(&url, Some(admin), &["admin", "limits", "preview", "--cap", "100", "--factor", "11"]).failed();
    assert_mentions(&out, "invalid limit rule: the factor 11 is above 10 (at most 10 times the sales)");
    let floor = ["admin", "limits", "preview", "--cap", "100", "--factor", "1", "--floor", "200.50"];
    let out = cercle(&url, Some(admin), &floor).failed();
    assert_mentions(&out, "invalid limit rule: the floor 200.50 CHW is above the cap 100.00 CHW");
    let out = cercle(&url, Some(&bob_path), &["admin", "limits", "preview", "--cap", "100", "--factor", "1"])
        .failed();
    assert_mentions(&out, "administrators and auditors only");
    let out = cercle(
        &url,
        Some(&bob_path),
        &["admin", "limits", "apply", "--cap", "100", "--factor", "1", "--expect", &other, "--reason", "me"],
    )
    .failed();
    assert_mentions(&out, "NOT_ADMINISTRATOR, code 10");

    // A rule whose cap is above the quorum's threshold needs the quorum: one administrator
    // signs without sending, the other cosigns, anyone submits.
    let (second_path, second) = keygen(&url, tmp.path(), "second");
    let second_hex = second.public_key().to_hex();
    cercle(
        &url,
        Some(admin),
        &["admin", "role", "add", "--role", "admin", "--pubkey", &second_hex, "--reason", "board"],
    )
    .ok();
    cercle(
        &url,
        Some(admin),
        &["admin", "quorum", "set", "--quorum", "2", "--limit-above", "5000", "--reason", "statutes art. 12"],
    )
    .ok();
    let out = cercle(
        &url,
        Some(admin),
        &["admin", "limits", "apply", "--cap", "9000", "--factor", "0.25", "--reason", "again"],
    )
    .failed();
    assert_mentions(&out, "QUORUM_NOT_MET, code 15");
    assert_mentions(&out, "a credit limit of 9,000.00 CHW");
    let envelopes = tmp.path().join("rule.jsonl");
    let file = envelopes.to_str().unwrap();
    cercle(
        &url,
        Some(admin),
        &[
            "admin",
            "limits",
            "apply",
            "--cap",
            "9000",
            "--factor",
            "0.25",
            "--reason",
            "annual review",
            "--save",
            file,
            "--no-submit",
        ],
    )
    .ok();
    cercle(&url, Some(&second_path), &["cosign", "--file", file]).ok();
    cercle(&url, None, &["submit", "--file", file]).ok();

    // The new limits are the state's: they hold across a restart, and a rebuild from the log.
    let before = (
        balance(&url, admin, "bob-mill"),
        balance(&url, admin, "eve-press"),
        balance(&url, admin, "ann-bakery"),
    );
    node.stop();
    let mut node = Node::start(&data);
    let url = node.url();
    assert_eq!(
        (
            balance(&url, admin, "bob-mill"),
            balance(&url, admin, "eve-press"),
            balance(&url, admin, "ann-bakery")
        ),
        before
    );
    node.stop();
    let rebuild = std::process::Command::new(cercle_e2e::binary("cercle-node"))
        .args(["rebuild", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(rebuild.status.success(), "{}", String::from_utf8_lossy(&rebuild.stderr));
    let node = Node::start(&data);
    let url = node.url();
    assert_eq!(
        (
            balance(&url, admin, "bob-mill"),
            balance(&url, admin, "eve-press"),
            balance(&url, admin, "ann-bakery")
        ),
        before
    );
    let same = cercle(
        &url,
        Some(admin),
        &["--json", "admin", "limits", "preview", "--cap", "9000", "--factor", "0.25"],
    )
    .ok()
    .json();
    assert_eq!(same["changed"], 0, "after the apply, the same rule changes nothing: {same}");
    let verdict = cercle(&url, Some(admin), &["--json", "audit", "verify"]).ok().json();
    assert_eq!(verdict["ok"], true, "{verdict}");
}
