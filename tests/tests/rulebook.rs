//! One ledger holding every kind of operation, the whole rulebook among them, made with the
//! real CLI against the real node: a genesis with two administrators, a quorum of two and an
//! auditor; roles changed and a threshold set under the quorum; firms registered, profiled,
//! grouped, their limits overridden and given back to the group, a rule-based limit applied;
//! fees set, a levied payment; an employee's key, a payment held, approved, another declined,
//! the key removed; invoices issued, accepted, rejected, cancelled, excluded and included, paid
//! in part, then cleared with credit; a freeze and an unfreeze; a firm's own key rotation; a
//! month charged; the node's key rotated; an account closed at zero and another closed with
//! its debt written off.
//!
//! Then the auditor's replay verifies that log, streamed from the node and exported to a file
//! (the same verdict), after a restart; the file holds every operation kind of the protocol
//! (read from the compiled descriptor, so a new kind fails this test until it is exercised
//! here); the balances replayed net to zero and are the node's; and a node restored from the
//! export shows the same accounts and keeps serving.

use std::collections::BTreeSet;
use std::path::Path;

use cercle_e2e::{CliOutput, Key, Node, assert_mentions, cercle, keygen};
use prost::Message;

fn node_cmd(args: &[&str]) -> std::process::Output {
    std::process::Command::new(cercle_e2e::binary("cercle-node")).args(args).output().unwrap()
}

/// The board: two administrators who both sign every sensitive act.
struct Board<'a> {
    url: String,
    dir: &'a Path,
    a: Key,
    b: Key,
    files: std::cell::Cell<u32>,
}

impl Board<'_> {
    /// `args` signed by one administrator alone: refused for the quorum. Then signed and saved
    /// by the first, cosigned by the second, submitted.
    #[track_caller]
    fn sensitive(&self, args: &[&str]) -> CliOutput {
        let alone = cercle(&self.url, Some(&self.a.path), args).failed();
        assert_mentions(&alone, "QUORUM_NOT_MET, code 15");
        let n = self.files.get() + 1;
        self.files.set(n);
        let file = self.dir.join(format!("act-{n}.jsonl"));
        let file = file.to_str().unwrap();
        let mut signed = args.to_vec();
        signed.extend(["--save", file, "--no-submit"]);
        cercle(&self.url, Some(&self.a.path), &signed).ok();
        cercle(&self.url, Some(&self.b.path), &["cosign", "--file", file]).ok();
        cercle(&self.url, None, &["--json", "submit", "--file", file]).ok()
    }

    /// An ordinary administrative act: one administrator signs it.
    #[track_caller]
    fn act(&self, args: &[&str]) -> CliOutput {
        cercle(&self.url, Some(&self.a.path), args).ok()
    }
}

fn balance(url: &str, key: &Path, account: &str) -> serde_json::Value {
    cercle(url, Some(key), &["--json", "balance", account]).ok().json()
}

/// The accounts overview, as the auditor reads it, without the time it was read at (`as_of`):
/// what two nodes, or one node before and after a restart, must show alike.
fn accounts(url: &str, auditor: &Key) -> serde_json::Value {
    let mut overview = cercle(url, Some(&auditor.path), &["--json", "admin", "accounts"]).ok().json();
    let as_of = overview.as_object_mut().and_then(|o| o.remove("as_of"));
    assert!(as_of.is_some(), "the overview says when it was read: {overview}");
    overview
}

/// Every operation kind the protocol defines: the fields of `OperationBody`'s `kind` oneof.
fn protocol_kinds() -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(cercle_proto::FILE_DESCRIPTOR_SET).unwrap();
    let body = set
        .file
        .iter()
        .flat_map(|f| f.message_type.iter())
        .find(|m| m.name() == "OperationBody")
        .expect("OperationBody in the descriptor set");
    let kind = body.oneof_decl.iter().position(|o| o.name() == "kind").expect("its `kind` oneof") as i32;
    let kinds: BTreeSet<String> =
        body.field.iter().filter(|f| f.oneof_index == Some(kind)).map(|f| f.name().to_string()).collect();
    assert!(kinds.len() >= 28, "{kinds:?}");
    kinds
}

#[test]
fn a_log_holding_every_rule_replays_to_the_nodes_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("cercle-data");
    let data_s = data.to_str().unwrap();
    let a = keygen(dir, "board-a");
    let b = keygen(dir, "board-b");
    let c = keygen(dir, "board-c");
    let auditor = keygen(dir, "auditor");
    let [alice, bob, carol, carol2, dan, association, reserve, clerk] =
        ["alice", "bob", "carol", "carol2", "dan", "association", "reserve", "clerk"].map(|n| keygen(dir, n));
    let mut node = Node::init_and_start(
        &data,
        &[
            "--admin-pubkey",
            &a.pubkey,
            "--admin-pubkey",
            &b.pubkey,
            "--quorum",
            "2",
            "--auditor-pubkey",
            &auditor.pubkey,
        ],
    );
    let url = node.url();
    let board = Board { url: url.clone(), dir, a, b, files: std::cell::Cell::new(0) };

    // Firms, the association's fee account and its reserve.
    for (handle, key, limit) in [
        ("alice-bakery", &alice, "1000"),
        ("bob-mill", &bob, "1000"),
        ("carol-market", &carol, "500"),
        ("dan-coop", &dan, "0"),
        ("association", &association, "0"),
        ("association-reserve", &reserve, "10000"),
    ] {
        board.act(&["admin", "register", handle, "--pubkey", &key.pubkey, "--credit-limit", limit]);
    }
    board.act(&["admin", "profile", "alice-bakery", "--size-class", "1-9", "--reason", "8 employees"]);

    // Roles under the quorum: a third administrator, added and removed; then the threshold.
    board.sensitive(&["admin", "role", "add", "--role", "admin", "--pubkey", &c.pubkey, "--reason", "board"]);
    board.sensitive(&[
        "admin", "role", "remove", "--role", "admin", "--pubkey", &c.pubkey, "--reason", "left",
    ]);
    board.sensitive(&[
        "admin",
        "quorum",
        "set",
        "--quorum",
        "2",
        "--limit-above",
        "5000",
        "--reason",
        "statutes art. 12",
    ]);

    // A group, its default changed at once for its member; an override, given back.
    board.act(&["admin", "group", "create", "coops", "--credit-limit", "200", "--reason", "cooperatives"]);
    board.act(&["admin", "group", "assign", "dan-coop", "coops", "--reason", "a cooperative"]);
    board.act(&["admin", "group", "set", "coops", "--credit-limit", "250", "--reason", "assembly"]);
    assert_eq!(balance(&url, &dan.path, "dan-coop")["credit_limit_minor"], 25_000);
    board.act(&["admin", "set-limits", "dan-coop", "--credit-limit", "50", "--reason", "dispute"]);
    assert_eq!(balance(&url, &dan.path, "dan-coop")["credit_limit_minor"], 5_000);
    board.act(&["admin", "set-limits", "dan-coop", "--credit-limit", "group", "--reason", "settled"]);
    assert_eq!(balance(&url, &dan.path, "dan-coop")["credit_limit_minor"], 25_000);

    // Fees, under the quorum; a payment pays its levy, split.
    board.sensitive(&[
        "admin",
        "fees",
        "set",
        "--account",
        "association",
        "--transfer-levy-bp",
        "100",
        "--levy-on",
        "split",
        "--membership",
        "1-9=20.00",
        "--demurrage-bp",
        "50",
        "--demurrage-above",
        "500",
        "--reason",
        "general assembly",
    ]);
    cercle(&url, Some(&alice.path), &["pay", "--from", "alice-bakery", "bob-mill", "200"]).ok();
    assert_eq!(balance(&url, &alice.path, "alice-bakery")["balance_minor"], -20_100);
    assert_eq!(balance(&url, &association.path, "association")["balance_minor"], 200);

    // An employee's key: a payment above its cap is held; one approved, one declined.
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
            "100",
            "--daily-cap",
            "500",
        ],
    )
    .ok();
    let held = |amount: &str| {
        let receipt =
            cercle(&url, Some(&clerk.path), &["--json", "pay", "--from", "alice-bakery", "bob-mill", amount])
                .ok()
                .json();
        assert_eq!(receipt["state"], "pending", "{receipt}");
        receipt["pending_id"].as_u64().expect("a pending id").to_string()
    };
    let first = held("150");
    let second = held("120");
    assert_eq!(balance(&url, &alice.path, "alice-bakery")["balance_minor"], -20_100);
    cercle(&url, Some(&alice.path), &["pending", "approve", "alice-bakery", &first]).ok();
    cercle(
        &url,
        Some(&alice.path),
        &["pending", "decline", "alice-bakery", &second, "--reason", "not ordered"],
    )
    .ok();
    cercle(&url, Some(&alice.path), &["key", "remove", "alice-bakery", "--pubkey", &clerk.pubkey]).ok();
    // Approved, it paid its levy then: 150.00 + 0.75.
    assert_eq!(balance(&url, &alice.path, "alice-bakery")["balance_minor"], -35_175);

    // Invoices: every step of their life, then a clearing run with credit, under the quorum.
    let issue = |key: &Key, payee: &str, payer: &str, amount: &str| {
        let json = cercle(
            &url,
            Some(&key.path),
            &["--json", "invoice", "issue", "--from", payee, "--to", payer, amount],
        )
        .ok()
        .json();
        json["invoice_id"].as_str().expect("an invoice id").to_string()
    };
    let owed_to_bob = issue(&bob, "bob-mill", "alice-bakery", "100");
    cercle(&url, Some(&alice.path), &["invoice", "accept", &owed_to_bob]).ok();
    let owed_to_alice = issue(&alice, "alice-bakery", "bob-mill", "40");
    cercle(&url, Some(&bob.path), &["invoice", "accept", &owed_to_alice]).ok();
    cercle(&url, Some(&bob.path), &["invoice", "exclude", &owed_to_bob]).ok();
    cercle(&url, Some(&alice.path), &["invoice", "include", &owed_to_bob]).ok();
    let rejected = issue(&carol, "carol-market", "alice-bakery", "10");
    cercle(&url, Some(&alice.path), &["invoice", "reject", &rejected, "--reason", "never delivered"]).ok();
    let cancelled = issue(&carol, "carol-market", "alice-bakery", "5");
    cercle(&url, Some(&carol.path), &["invoice", "cancel", &cancelled, "--reason", "wrong amount"]).ok();
    cercle(&url, Some(&alice.path), &["invoice", "pay", &owed_to_bob, "10"]).ok();
    board.sensitive(&["admin", "clearing", "--with-credit", "--reason", "December"]);
    for id in [&owed_to_bob, &owed_to_alice] {
        let shown = cercle(&url, Some(&alice.path), &["--json", "invoice", "show", id]).ok().json();
        assert_eq!(shown["open_minor"], 0, "cleared: {shown}");
    }

    // A dispute: frozen, unfrozen. The firm then rotates its own key.
    board.act(&["admin", "freeze", "carol-market", "--reason", "dispute"]);
    board.act(&["admin", "unfreeze", "carol-market", "--reason", "settled"]);
    cercle(&url, Some(&carol.path), &["admin", "rotate-keys", "carol-market", "--pubkey", &carol2.pubkey])
        .ok();

    // The rule-based limit, for the group, bound to its preview: a cap above the threshold.
    let rule = ["--group", "coops", "--cap", "9000", "--factor", "0.25", "--floor", "300"];
    let mut preview = vec!["--json", "admin", "limits", "preview"];
    preview.extend(rule);
    let preview = cercle(&url, Some(&board.a.path), &preview).ok().json();
    assert_eq!(preview["firms"][0]["new_credit_limit_minor"], 30_000, "{preview}");
    let digest = preview["digest"].as_str().unwrap().to_string();
    let mut apply = vec!["admin", "limits", "apply"];
    apply.extend(rule);
    apply.extend(["--expect", &digest, "--reason", "annual review"]);
    board.sensitive(&apply);
    assert_eq!(balance(&url, &dan.path, "dan-coop")["credit_limit_minor"], 30_000);
    cercle(&url, Some(&dan.path), &["pay", "--from", "dan-coop", "bob-mill", "100"]).ok();

    // A month charged; then the node's key rotated, with no restart.
    let charged = board.act(&["--json", "admin", "fees", "charge", "--period", "2026-11"]).json();
    assert!(charged.to_string().contains("alice-bakery"), "{charged}");
    let made = node_cmd(&["key", "new", "--data-dir", data_s]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let said = String::from_utf8_lossy(&made.stderr).to_string() + &String::from_utf8_lossy(&made.stdout);
    let new_key = said.split_whitespace().nth(2).expect("node key HEX made in FILE").to_string();
    board.sensitive(&["admin", "node-key", "rotate", "--pubkey", &new_key, "--reason", "yearly rotation"]);

    // Two firms leave: one at zero, one owing, its debt written off to the reserve.
    board.act(&["admin", "close", "carol-market", "--reason", "ceased trading"]);
    let owed = balance(&url, &dan.path, "dan-coop")["balance_minor"].as_i64().unwrap();
    assert!(owed < 0, "dan owes {owed}");
    board.sensitive(&[
        "admin",
        "close",
        "dan-coop",
        "--write-off-to",
        "association-reserve",
        "--reason",
        "bankruptcy, court ruling 2026-114",
    ]);
    assert_eq!(balance(&url, &reserve.path, "association-reserve")["balance_minor"], owed);

    // After a restart: the auditor's replay, from the node and from an export, agree.
    let accounts_before = accounts(&url, &auditor);
    node.stop();
    let mut node = Node::start(&data);
    let url = node.url();
    let from_node = cercle(&url, Some(&auditor.path), &["--json", "audit", "verify"]).ok().json();
    assert_eq!(from_node["ok"], true, "{from_node}");
    let export = dir.join("log.jsonl");
    let export_s = export.to_str().unwrap();
    cercle(&url, Some(&auditor.path), &["audit", "export", "--out", export_s, "--format", "jsonl"]).ok();
    let from_file = cercle(&url, None, &["--json", "audit", "verify", "--log", export_s]).ok().json();
    for field in ["entries_checked", "state_digest", "merkle_root", "last_entry_hash", "node_key_in_force"] {
        assert_eq!(from_file[field], from_node[field], "{field}");
    }
    assert_eq!(from_file["node_key_in_force"], new_key.as_str());
    let accounts_after = accounts(&url, &auditor);
    assert_eq!(accounts_after, accounts_before, "the restart changed the accounts");

    // The export holds every operation kind the protocol has.
    let log = cercle_audit::jsonl::read(&export).unwrap();
    let (genesis, tree_head) = (log.genesis.clone(), log.tree_head);
    let entries: Vec<_> = log.entries.map(Result::unwrap).collect();
    let seen: BTreeSet<String> = entries
        .iter()
        .map(|e| cercle_core::body::decode(&e.envelope.body).unwrap().kind.name().to_string())
        .collect();
    let missing: Vec<_> = protocol_kinds().difference(&seen).cloned().collect();
    assert!(missing.is_empty(), "operation kinds this ledger lacks: {missing:?}");

    // Replayed in process: the balances net to zero and are the node's.
    let verdict = cercle_audit::verify(
        &genesis,
        entries.into_iter().map(Ok),
        Some(&tree_head),
        &Default::default(),
        |_| {},
    )
    .unwrap();
    let state = verdict.ledger.state();
    assert_eq!(state.accounts().map(|a| a.balance_minor).sum::<i64>(), 0, "the balances net to zero");
    let listed = accounts_after["accounts"].as_array().unwrap();
    assert_eq!(listed.len(), state.accounts().count(), "{accounts_after}");
    for row in listed {
        let handle = row["handle"].as_str().unwrap();
        let replayed = state.accounts().find(|a| a.id.as_str() == handle).expect(handle);
        assert_eq!(row["balance_minor"], replayed.balance_minor, "{handle}");
    }

    // A node restored from the export, with the key in force, shows the same and serves.
    node.stop();
    let restored = dir.join("restored");
    let key_file = std::fs::read_dir(data.join("node-keys")).unwrap().next().unwrap().unwrap().path();
    let out = node_cmd(&[
        "restore",
        "--from",
        export_s,
        "--data-dir",
        restored.to_str().unwrap(),
        "--node-key",
        key_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let node = Node::start(&restored);
    let url = node.url();
    let restored_accounts = accounts(&url, &auditor);
    assert_eq!(restored_accounts, accounts_before, "the restored node's accounts");
    let again = cercle(&url, Some(&auditor.path), &["--json", "audit", "verify"]).ok().json();
    assert_eq!(again["state_digest"], from_node["state_digest"]);
    cercle(&url, Some(&bob.path), &["pay", "--from", "bob-mill", "alice-bakery", "1"]).ok();
    let closed =
        cercle(&url, Some(&carol2.path), &["pay", "--from", "carol-market", "bob-mill", "1"]).failed();
    assert_mentions(&closed, "ACCOUNT_CLOSED, code 29");
}
