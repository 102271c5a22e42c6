//! The README's governance walkthroughs, end to end with the real binaries: roles added and
//! removed after init (the last administrator kept), reads authorised by the roles as they
//! stand, across a restart; an account closed at zero and refused everything after; a key
//! already on another account refused without `--allow-shared-key`. Each ends with the
//! auditor's replay.

use std::path::Path;

use cercle_e2e::{CliOutput, Key, Node, assert_mentions, cercle, keygen};

fn register(url: &str, admin: &Path, account: &str, key: &Key, extra: &[&str]) -> CliOutput {
    let mut args = vec!["admin", "register", account, "--pubkey", &key.pubkey, "--credit-limit", "100"];
    args.extend_from_slice(extra);
    cercle(url, Some(admin), &args)
}

fn role(url: &str, signer: &Path, action: &str, role: &str, key: &Key, reason: &str) -> CliOutput {
    cercle(
        url,
        Some(signer),
        &["admin", "role", action, "--role", role, "--pubkey", &key.pubkey, "--reason", reason],
    )
}

/// The auditor's replay of the whole log, streamed from the node, signed with `reader`.
fn audit(url: &str, reader: &Path) {
    let verdict = cercle(url, Some(reader), &["--json", "audit", "verify"]).ok().json();
    assert_eq!(verdict["ok"], true, "{verdict}");
}

#[test]
fn roles_change_after_init_and_reads_follow_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let init = std::process::Command::new(cercle_e2e::binary("cercle-node"))
        .args(["init", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(init.status.success());
    let said = String::from_utf8_lossy(&init.stderr);
    let hint = format!(
        "to add an auditor: cercle --key {} admin role add --role auditor --pubkey HEX --reason TEXT",
        data.join("admin.key").display()
    );
    assert!(said.contains(&hint), "init says how to add an auditor: {said}");
    let mut node = Node::start(&data);
    let url = node.url();
    let admin = data.join("admin.key");
    let auditor = keygen(tmp.path(), "auditor");
    let second = keygen(tmp.path(), "second-admin");
    let firm = keygen(tmp.path(), "firm");
    register(&url, &admin, "alice-bakery", &firm, &[]).ok();

    // Before it is an auditor, the key reads nothing but its own.
    let out = cercle(&url, Some(&auditor.path), &["balance", "alice-bakery"]).failed();
    assert_mentions(&out, "permission denied");
    role(&url, &admin, "add", "auditor", &auditor, "statutory auditor 2026").ok();
    let b = cercle(&url, Some(&auditor.path), &["--json", "balance", "alice-bakery"]).ok().json();
    assert_eq!(b["balance_minor"], 0);
    // An auditor reads, but does not administer.
    let out =
        cercle(&url, Some(&auditor.path), &["admin", "freeze", "alice-bakery", "--reason", "x"]).failed();
    assert_mentions(&out, "NOT_ADMINISTRATOR, code 10");

    // Refusals, each with its number.
    let out = role(&url, &admin, "add", "auditor", &auditor, "again");
    assert_mentions(&out.failed(), "ROLE_ALREADY_HELD, code 13");
    let out = role(&url, &admin, "remove", "admin", &second, "not one");
    assert_mentions(&out.failed(), "ROLE_NOT_HELD, code 14");
    let first = Key {
        path: admin.clone(),
        pubkey: cercle(&url, None, &["pubkey", "--key", admin.to_str().unwrap()])
            .ok()
            .stdout
            .trim()
            .to_string(),
    };
    let out = role(&url, &admin, "remove", "admin", &first, "leaving").failed();
    assert_mentions(&out, "LAST_ADMINISTRATOR, code 12");
    assert_mentions(&out, "is the last administrator");
    let out = role(&url, &firm.path, "add", "admin", &firm, "me").failed();
    assert_mentions(&out, "NOT_ADMINISTRATOR, code 10");
    let out = cercle(
        &url,
        Some(&admin),
        &["admin", "role", "add", "--role", "auditor", "--pubkey", &second.pubkey, "--reason", " "],
    )
    .failed();
    assert_mentions(&out, "a reason is required");

    // A second administrator, who then removes the first: the first signs nothing more.
    role(&url, &admin, "add", "admin", &second, "board election").ok();
    role(&url, &second.path, "remove", "admin", &first, "stepped down").ok();
    let out = cercle(&url, Some(&admin), &["admin", "freeze", "alice-bakery", "--reason", "x"]).failed();
    assert_mentions(&out, "NOT_ADMINISTRATOR, code 10");
    let out = cercle(&url, Some(&admin), &["admin", "accounts"]).failed();
    assert_mentions(&out, "permission denied");
    cercle(&url, Some(&second.path), &["admin", "freeze", "alice-bakery", "--reason", "dispute"]).ok();

    // The roles are the state's: they hold across a restart (checkpoint and roll-forward).
    node.stop();
    let mut node = Node::start(&data);
    let url = node.url();
    cercle(&url, Some(&auditor.path), &["balance", "alice-bakery"]).ok();
    let out = cercle(&url, Some(&admin), &["admin", "unfreeze", "alice-bakery"]).failed();
    assert_mentions(&out, "NOT_ADMINISTRATOR, code 10");
    cercle(&url, Some(&second.path), &["admin", "unfreeze", "alice-bakery"]).ok();
    let history = cercle(&url, Some(&auditor.path), &["--json", "history", "alice-bakery"]).ok().json();
    assert_eq!(history["entries"].as_array().map(Vec::len), Some(3), "{history}");
    audit(&url, &auditor.path);

    // Removed, the auditor reads nothing any more.
    role(&url, &second.path, "remove", "auditor", &auditor, "term ended").ok();
    let out = cercle(&url, Some(&auditor.path), &["balance", "alice-bakery"]).failed();
    assert_mentions(&out, "permission denied");
    audit(&url, &second.path);
    node.stop();
}

#[test]
fn a_closed_account_is_closed_for_good() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut node = Node::init_and_start(&data, &[]);
    let url = node.url();
    let admin = data.join("admin.key");
    let alice = keygen(tmp.path(), "alice");
    let bob = keygen(tmp.path(), "bob");
    register(&url, &admin, "alice-bakery", &alice, &[]).ok();
    register(&url, &admin, "bob-mill", &bob, &[]).ok();
    cercle(&url, Some(&alice.path), &["pay", "--from", "alice-bakery", "bob-mill", "12.50"]).ok();

    // Not at a non-zero balance, nor with an open invoice: refused with the numbers.
    let out = cercle(&url, Some(&admin), &["admin", "close", "alice-bakery", "--reason", "ceased trading"])
        .failed();
    assert_mentions(&out, "ACCOUNT_NOT_SETTLED, code 70");
    assert_mentions(
        &out,
        "its balance is -12.50 CHW (it must be zero) and 0 invoices to or from it are open",
    );
    cercle(&url, Some(&bob.path), &["pay", "--from", "bob-mill", "alice-bakery", "12.50"]).ok();
    let issued = cercle(
        &url,
        Some(&bob.path),
        &["--json", "invoice", "issue", "--from", "bob-mill", "--to", "alice-bakery", "40"],
    )
    .ok()
    .json();
    let invoice = issued["invoice_id"].as_str().expect("invoice id").to_string();
    let out = cercle(&url, Some(&admin), &["admin", "close", "alice-bakery", "--reason", "ceased trading"])
        .failed();
    assert_mentions(&out, "its balance is 0.00 CHW (it must be zero) and 1 invoice to or from it is open");
    cercle(&url, Some(&bob.path), &["invoice", "cancel", &invoice, "--reason", "withdrawn"]).ok();
    let out = cercle(&url, Some(&alice.path), &["admin", "close", "alice-bakery", "--reason", "me"]).failed();
    assert_mentions(&out, "NOT_ADMINISTRATOR, code 10");
    cercle(&url, Some(&admin), &["admin", "close", "alice-bakery", "--reason", "ceased trading"]).ok();

    // Closed: every operation naming it is refused, with its number.
    let refusals: [(&Path, Vec<&str>, &str); 8] = [
        (&alice.path, vec!["pay", "--from", "alice-bakery", "bob-mill", "1"], "it cannot pay"),
        (&bob.path, vec!["pay", "--from", "bob-mill", "alice-bakery", "1"], "it cannot be paid"),
        (
            &bob.path,
            vec!["invoice", "issue", "--from", "bob-mill", "--to", "alice-bakery", "5"],
            "it cannot be invoiced",
        ),
        (
            &admin,
            vec!["admin", "set-limits", "alice-bakery", "--credit-limit", "5", "--reason", "r"],
            "it cannot have its limits changed",
        ),
        (&admin, vec!["admin", "unfreeze", "alice-bakery"], "it cannot be unfrozen"),
        (
            &admin,
            vec!["admin", "rotate-keys", "alice-bakery", "--pubkey", &bob.pubkey],
            "it cannot have its keys replaced",
        ),
        (&admin, vec!["admin", "close", "alice-bakery", "--reason", "again"], "it cannot be closed again"),
        (
            &admin,
            vec!["admin", "register", "alice-bakery", "--pubkey", &alice.pubkey],
            "it cannot be reopened",
        ),
    ];
    for (key, args, why) in refusals {
        let out = cercle(&url, Some(key), &args).failed();
        assert_mentions(&out, "ACCOUNT_CLOSED, code 29");
        assert_mentions(&out, &format!("account 'alice-bakery' is closed: {why}"));
    }

    // Its history stays readable; the overview shows it closed, and filters on it.
    let history = cercle(&url, Some(&admin), &["--json", "history", "alice-bakery"]).ok().json();
    let kinds: Vec<&str> =
        history["entries"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.last(), Some(&"close_account"), "{history}");
    assert_eq!(history["entries"].as_array().unwrap().last().unwrap()["reason"], "ceased trading");
    let accounts =
        cercle(&url, Some(&admin), &["--json", "admin", "accounts", "--status", "closed"]).ok().json();
    let list = accounts["accounts"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{accounts}");
    assert_eq!(list[0]["handle"], "alice-bakery");
    assert_eq!(list[0]["status"], "closed");
    let text = cercle(&url, Some(&admin), &["balance", "alice-bakery"]).ok().stdout;
    assert!(text.contains("closed"), "{text}");

    // A clearing run skips it (it has no open invoice) and the replay agrees.
    node.stop();
    let node = Node::start(&data);
    let url = node.url();
    let b = cercle(&url, Some(&admin), &["--json", "balance", "alice-bakery"]).ok().json();
    assert_eq!(b["status"], "closed");
    audit(&url, &admin);
}

#[test]
fn a_shared_key_needs_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = Node::init_and_start(&data, &[]);
    let url = node.url();
    let admin = data.join("admin.key");
    let accountant = keygen(tmp.path(), "accountant");
    let own = keygen(tmp.path(), "own");
    register(&url, &admin, "alice-bakery", &accountant, &[]).ok();

    // The same key on a second account: refused, naming the account to the administrator.
    let out = register(&url, &admin, "bob-mill", &accountant, &[]).failed();
    assert_mentions(&out, "KEY_ALREADY_REGISTERED, code 36");
    assert_mentions(
        &out,
        &format!("key {} is already registered on account 'alice-bakery'", accountant.pubkey),
    );
    assert_mentions(&out, "--allow-shared-key");
    register(&url, &admin, "bob-mill", &accountant, &["--allow-shared-key"]).ok();
    let listed = cercle(&url, Some(&accountant.path), &["--json", "balance", "bob-mill"]).ok().json();
    assert_eq!(listed["account"], "bob-mill");

    // Rotating onto a key another account holds: the same rule. A firm signing for itself
    // is not told which account holds the key.
    register(&url, &admin, "carol-market", &own, &[]).ok();
    let out = cercle(
        &url,
        Some(&own.path),
        &["admin", "rotate-keys", "carol-market", "--pubkey", &accountant.pubkey],
    )
    .failed();
    assert_mentions(&out, "KEY_ALREADY_REGISTERED, code 36");
    assert_mentions(&out, "is already registered on another account");
    assert!(!out.stderr.contains("alice-bakery") && !out.stderr.contains("bob-mill"), "{}", out.stderr);
    cercle(
        &url,
        Some(&own.path),
        &[
            "admin",
            "rotate-keys",
            "carol-market",
            "--pubkey",
            &accountant.pubkey,
            "--pubkey",
            &own.pubkey,
            "--allow-shared-key",
        ],
    )
    .ok();
    // Its own keys are never "shared" with itself.
    cercle(&url, Some(&own.path), &["admin", "rotate-keys", "carol-market", "--pubkey", &own.pubkey]).ok();
    audit(&url, &admin);
}

/// The README's quorum walkthrough: a ledger started with two administrators and a quorum
/// of two; a sensitive act signed by one alone is refused with the count and the signers;
/// signed with `--save --no-submit`, cosigned by the other with `cercle cosign`, and sent
/// with `cercle submit`, it passes. A firm's key cannot make up a quorum. A threshold makes
/// large credit limits sensitive; a firm that leaves owing is closed with its debt written
/// off to the reserve. The quorum survives a restart, and the auditor's replay agrees.
#[test]
fn sensitive_acts_need_the_quorum_and_cosigning_gathers_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let board_a = keygen(tmp.path(), "board-a");
    let board_b = keygen(tmp.path(), "board-b");
    let auditor = keygen(tmp.path(), "auditor");
    let alice = keygen(tmp.path(), "alice");
    let bob = keygen(tmp.path(), "bob");
    let reserve = keygen(tmp.path(), "reserve");
    let init = std::process::Command::new(cercle_e2e::binary("cercle-node"))
        .args(["init", "--data-dir"])
        .arg(&data)
        .args(["--admin-pubkey", &board_a.pubkey, "--admin-pubkey", &board_b.pubkey, "--quorum", "2"])
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let said = String::from_utf8_lossy(&init.stdout);
    assert!(said.contains("quorum: 2 of 2 administrators sign every sensitive act"), "{said}");
    let mut node = Node::start(&data);
    let url = node.url();
    let (a, b) = (&board_a.path, &board_b.path);

    let info = cercle(&url, None, &["--json", "info"]).ok().json();
    assert_eq!(info["quorum"], 2, "{info}");
    assert_eq!(info["genesis_quorum"], 2, "{info}");
    // Ordinary administrative acts need one administrator.
    register(&url, a, "alice-bakery", &alice, &[]).ok();
    register(&url, a, "bob-mill", &bob, &[]).ok();
    register(&url, b, "association-reserve", &reserve, &[]).ok();
    let mut args = vec!["admin", "set-limits", "association-reserve", "--credit-limit", "10000"];
    args.extend(["--reason", "reserve fund"]);
    cercle(&url, Some(b), &args).ok();

    // A sensitive act signed by one administrator alone: refused, with the count and who signed.
    let out = role(&url, a, "add", "auditor", &auditor, "annual audit").failed();
    assert_mentions(&out, "QUORUM_NOT_MET, code 15");
    assert_mentions(
        &out,
        &format!(
            "a change of administrators or auditors needs the signatures of 2 administrators, it has 1: signed by {} (administrator)",
            board_a.pubkey
        ),
    );

    // Signed and saved by one, cosigned by the other, then submitted.
    let file = tmp.path().join("add-auditor.jsonl");
    let file_arg = file.to_str().unwrap();
    let sign_only = ["--save", file_arg, "--no-submit"];
    let mut args = vec!["admin", "role", "add", "--role", "auditor", "--pubkey", &auditor.pubkey];
    args.extend(["--reason", "annual audit"]);
    args.extend(sign_only);
    cercle(&url, Some(a), &args).ok();
    let out = cercle(&url, Some(b), &["cosign", "--file", file_arg]).ok();
    assert_mentions(&out, "set role: ");
    assert_mentions(&out, &format!("cosigned 1 of 1 envelope(s) in {file_arg}"));
    // Cosigning again changes nothing.
    let out = cercle(&url, Some(b), &["cosign", "--file", file_arg]).ok();
    assert_mentions(&out, "already signed by");
    cercle(&url, None, &["submit", "--file", file_arg]).ok();
    let info = cercle(&url, None, &["--json", "info"]).ok().json();
    assert_eq!(info["auditor_keys"][0], auditor.pubkey.as_str(), "{info}");

    // A firm's key cannot make up the quorum.
    let file = tmp.path().join("threshold.jsonl");
    let file_arg = file.to_str().unwrap();
    let mut args = vec!["admin", "quorum", "set", "--quorum", "2", "--limit-above", "1000"];
    args.extend(["--reason", "statutes art. 12", "--save", file_arg, "--no-submit"]);
    cercle(&url, Some(a), &args).ok();
    let out = cercle(&url, Some(&alice.path), &["cosign", "--file", file_arg]).ok();
    assert_mentions(&out, &format!("warning: key {} is not an administrator of this ledger", alice.pubkey));
    let out = cercle(&url, None, &["submit", "--file", file_arg]).failed();
    assert_mentions(&out, "QUORUM_NOT_MET, code 15");
    assert_mentions(&out, &format!("{} (not an administrator)", alice.pubkey));
    assert_mentions(&out, "only administrators count towards the quorum");
    // Saving again into the same file appends, and says so.
    let out = cercle(&url, Some(a), &args).ok();
    assert_mentions(&out, "already held 1 envelope(s): this one is appended after them");
    std::fs::remove_file(&file).unwrap();
    cercle(&url, Some(a), &args).ok();
    cercle(&url, Some(b), &["cosign", "--file", file_arg]).ok();
    cercle(&url, None, &["submit", "--file", file_arg]).ok();

    // Above the threshold a credit limit needs the quorum; at it, one administrator.
    fn limit(amount: &str) -> [&str; 7] {
        ["admin", "set-limits", "alice-bakery", "--credit-limit", amount, "--reason", "review"]
    }
    let out = cercle(&url, Some(a), &limit("1000.01")).failed();
    assert_mentions(&out, "a credit limit of 1,000.01 CHW (above the 1,000.00 CHW that needs a quorum)");
    cercle(&url, Some(a), &limit("1000")).ok();

    // A firm leaves owing: its debt is written off to the reserve, under the quorum.
    cercle(&url, Some(&alice.path), &["pay", "--from", "alice-bakery", "bob-mill", "250"]).ok();
    let file = tmp.path().join("write-off.jsonl");
    let file_arg = file.to_str().unwrap();
    let mut args = vec!["admin", "close", "alice-bakery", "--write-off-to", "association-reserve"];
    args.extend(["--reason", "bankruptcy, court ruling 2026-114", "--save", file_arg, "--no-submit"]);
    cercle(&url, Some(a), &args).ok();
    cercle(&url, Some(b), &["cosign", "--file", file_arg]).ok();
    let receipt = cercle(&url, None, &["--json", "submit", "--file", file_arg]).ok().json();
    assert_eq!(receipt["ok"], true, "{receipt}");
    let alice_now = cercle(&url, Some(a), &["--json", "balance", "alice-bakery"]).ok().json();
    assert_eq!(
        (alice_now["status"].as_str(), alice_now["balance_minor"].as_i64()),
        (Some("closed"), Some(0))
    );
    let reserve_now = cercle(&url, Some(a), &["--json", "balance", "association-reserve"]).ok().json();
    assert_eq!(reserve_now["balance_minor"], -25_000, "{reserve_now}");
    // A write-off signed by one administrator alone is refused.
    let out = cercle(
        &url,
        Some(a),
        &["admin", "close", "bob-mill", "--write-off-to", "association-reserve", "--reason", "left"],
    )
    .failed();
    assert_mentions(&out, "QUORUM_NOT_MET, code 15");

    // After a restart the quorum holds; the auditor replays everything.
    node.stop();
    let node = Node::start(&data);
    let url = node.url();
    let info = cercle(&url, None, &["--json", "info"]).ok().json();
    assert_eq!(
        (info["quorum"].as_u64(), info["quorum_limit_above_minor"].as_i64()),
        (Some(2), Some(100_000))
    );
    let out = role(&url, a, "add", "admin", &bob, "new board member").failed();
    assert_mentions(&out, "QUORUM_NOT_MET, code 15");
    audit(&url, &auditor.path);
}
