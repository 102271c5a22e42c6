//! `--op-id` makes a command retryable: the wallet keeps the envelope it signed, and the
//! same command run again with the same id resubmits it, so the node answers with the
//! original receipt. Another operation under that id is refused before anything is sent.

use std::path::Path;

use cercle_e2e::{CliOutput, Node, cercle, cercle_with_state};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_same_command_with_the_same_op_id_is_a_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut node = Node::init_and_start(&data, &[]);
    let url = node.url();
    let admin = data.join("admin.key");
    let admin = Some(admin.as_path());
    let keygen = |name: &str| {
        let file = tmp.path().join(format!("{name}.key"));
        let out = cercle(&url, None, &["keygen", "--out", path(&file)]).ok();
        (file, out.stdout.split_whitespace().last().unwrap().to_string())
    };
    let (alice, alice_pub) = keygen("alice");
    let (_, bob_pub) = keygen("bob");
    cercle(&url, admin, &["admin", "register", "alice", "--pubkey", &alice_pub, "--credit-limit", "100"])
        .ok();
    cercle(&url, admin, &["admin", "register", "bobby", "--pubkey", &bob_pub]).ok();
    let state = tmp.path().join("state");
    let run = |url: &str, args: &[&str]| -> CliOutput { cercle_with_state(url, Some(&alice), &state, args) };
    let balance = |url: &str| -> i64 {
        run(url, &["--json", "balance", "alice"]).ok().json()["balance_minor"].as_i64().unwrap()
    };

    // The first run pays; the same command again is answered with the original receipt.
    let op_id = "00112233445566778899aabbccddeeff";
    let pay = ["--json", "pay", "--from", "alice", "bobby", "10", "--memo", "flour", "--op-id", op_id];
    let first = run(&url, &pay).ok().json();
    assert_eq!(first["duplicate"], false);
    let again = run(&url, &pay).ok();
    assert!(again.stderr.contains("retrying operation"), "{}", again.stderr);
    let again = again.json();
    assert_eq!(again["duplicate"], true);
    assert_eq!(
        (again["sequence"].clone(), again["entry_hash"].clone()),
        (first["sequence"].clone(), first["entry_hash"].clone())
    );
    assert_eq!(balance(&url), -1_000, "paid once");

    // The journal: one private file per operation, under the state directory.
    let ledger = run(&url, &["--json", "info"]).ok().json()["ledger_id"].as_str().unwrap().to_string();
    let kept = state.join("cercle").join(&ledger).join("ops").join(format!("{op_id}.json"));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&kept).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // Another operation under the same id: refused here (exit 2), not by the node (3).
    let other = ["pay", "--from", "alice", "bobby", "20", "--memo", "flour", "--op-id", op_id];
    let out = run(&url, &other).failed();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("already used by this wallet for another operation"), "{}", out.stderr);
    assert_eq!(balance(&url), -1_000);

    // An invoice retried keeps the id drawn the first time.
    let issue = ["invoice", "issue", "--from", "alice", "--to", "bobby", "50", "--op-id", &"ab".repeat(16)];
    let first = run(&url, &issue).ok().stdout;
    let again = run(&url, &issue).ok().stdout;
    assert_eq!(first, again);

    // Signed and kept, but never sent (as when the first run was cut short): the retry
    // sends the envelope signed the first time, byte for byte, and pays once.
    let (first_file, retry_file) = (tmp.path().join("first.jsonl"), tmp.path().join("retry.jsonl"));
    let pay = |save: &Path, extra: &[&str]| {
        let args = [
            "--json",
            "pay",
            "--from",
            "alice",
            "bobby",
            "5",
            "--op-id",
            &"cd".repeat(16),
            "--save",
            path(save),
        ];
        run(&url, &[&args[..], extra].concat())
    };
    pay(&first_file, &["--no-submit", "--valid-for", "600"]).ok();
    let sent = pay(&retry_file, &[]).ok().json();
    assert_eq!(sent["duplicate"], false, "the node never had it: accepted now");
    assert_eq!(std::fs::read(&first_file).unwrap(), std::fs::read(&retry_file).unwrap(), "the same envelope");
    assert_eq!(pay(&retry_file, &[]).ok().json()["duplicate"], true);
    assert_eq!(balance(&url), -1_500);
    node.stop();
}
