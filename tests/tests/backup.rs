//! Online backup and restore (#13). A backup taken while clients pay holds the ledger as of
//! a signed tree head; restored into a new directory, it gives the state digest an
//! independent replay of the node's own first entries gives, and the restored node serves
//! those entries. A damaged backup (one byte changed, or cut short) is refused, naming the
//! first bad entry, and nothing is written; a backup never overwrites a file, and a restore
//! never writes into a directory that holds something. An auditor's jsonl export restores
//! too.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cercle_core::sign::Keypair;
use cercle_e2e::load::{Acknowledged, CLIENTS, client_loop, register_accounts, stream_all};
use cercle_e2e::{CliOutput, Node, binary, cercle, genesis, read_key};

fn node_cmd(args: &[&str]) -> CliOutput {
    let out = Command::new(binary("cercle-node")).args(args).output().expect("run cercle-node");
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn backup(data: &Path, out: &Path) -> CliOutput {
    node_cmd(&["backup", "--data-dir", data.to_str().unwrap(), "--out", out.to_str().unwrap()])
}

fn restore(from: &Path, data: &Path, node_key: &Path) -> CliOutput {
    node_cmd(&[
        "restore",
        "--from",
        from.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--node-key",
        node_key.to_str().unwrap(),
    ])
}

/// The number after `prefix` in `text`.
fn number_after(text: &str, prefix: &str) -> u64 {
    let rest = &text[text.find(prefix).unwrap_or_else(|| panic!("no {prefix:?} in {text}")) + prefix.len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

fn word_after<'a>(text: &'a str, prefix: &str) -> &'a str {
    let rest = &text[text.find(prefix).unwrap_or_else(|| panic!("no {prefix:?} in {text}")) + prefix.len()..];
    rest.split_whitespace().next().unwrap()
}

#[track_caller]
fn refused(out: CliOutput, target: &Path, needle: &str) {
    let out = out.failed();
    assert!(out.stderr.contains(needle), "expected {needle:?} in: {}", out.stderr);
    assert!(!target.exists() || std::fs::read_dir(target).unwrap().next().is_none(), "something was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_to_the_same_state() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut node = Node::init_and_start(&data, &[]);
    let g = genesis(&node).await;
    let admin = read_key(&data.join("admin.key"));
    let firm = Keypair::from_seed(&[7; 32]);
    register_accounts(&node, &g, &admin, &firm).await;
    let acked: Acknowledged = Arc::new(Mutex::new(HashMap::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            tokio::spawn(client_loop(node.url(), g.clone(), firm.clone(), c, 0, c as u64 + 1, acked.clone()))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 500 {
        assert!(Instant::now() < deadline, "no load acknowledged within a minute");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The backup, while the clients go on paying.
    let file = tmp.path().join("ledger.backup");
    let out = backup(&data, &file).ok();
    let size = number_after(&out.stdout, "backed up ");
    assert!(size > 24, "the backup holds the load: {}", out.stdout);
    assert_eq!(number_after(&out.stdout, "signed tree head: size "), size);
    let root = word_after(&out.stdout, " root ").to_string();
    assert!(acked.lock().unwrap().len() < 100_000);
    // A second backup to the same path is refused, and the first is left as it was.
    let before = std::fs::read(&file).unwrap();
    let again = backup(&data, &file).failed();
    assert!(again.stderr.contains("exists"), "{}", again.stderr);
    assert_eq!(std::fs::read(&file).unwrap(), before);

    node.stop();
    for c in clients {
        tokio::time::timeout(Duration::from_secs(30), c).await.expect("a client still waits").unwrap();
    }
    // What the ledger was at the backup's tree head, replayed independently from the
    // entries the original node serves.
    let node = Node::start(&data);
    let entries: Vec<cercle_core::Entry> = stream_all(&node, &g, &admin)
        .await
        .into_iter()
        .take(size as usize)
        .map(|e| cercle_core::Entry::try_from(e).expect("entry"))
        .collect();
    assert_eq!(entries.len() as u64, size);
    let verdict = cercle_audit::verify(
        &g,
        entries.iter().cloned().map(Ok),
        None,
        &cercle_audit::Options::default(),
        |_| {},
    )
    .expect("the node's own entries verify");
    assert_eq!(hex(&verdict.merkle_root), root, "the backup's tree head is the node's log at that size");

    // Restore into a new directory: the digest is the replay's.
    let restored = tmp.path().join("restored");
    let node_key = data.join("node.key");
    let out = restore(&file, &restored, &node_key).ok();
    assert_eq!(word_after(&out.stdout, "state digest "), hex(&verdict.state_digest), "{}", out.stdout);
    // The restored node serves the same entries, and takes new operations after them.
    let restored_node = Node::start(&restored);
    let served: Vec<cercle_core::Entry> = stream_all(&restored_node, &g, &admin)
        .await
        .into_iter()
        .map(|e| cercle_core::Entry::try_from(e).expect("entry"))
        .collect();
    assert_eq!(served, entries);
    drop(restored_node);

    // A restore into a directory that holds something is refused.
    refused(restore(&file, &data, &node_key), tmp.path().join("nowhere").as_path(), "is not empty");
    // A wrong node key is refused.
    let wrong_key = tmp.path().join("wrong.key");
    cercle(&node.url(), None, &["keygen", "--out", wrong_key.to_str().unwrap()]).ok();
    let target = tmp.path().join("wrong-key");
    refused(restore(&file, &target, &wrong_key), &target, "node key");

    // One byte changed in the entry in the middle: refused, naming it.
    let text = String::from_utf8(before.clone()).unwrap();
    let bad_sequence = size / 2;
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let line = &mut lines[bad_sequence as usize]; // entry n is on line n + 1 (0-based: n)
    assert!(line.contains(&format!("\"sequence\":{bad_sequence},")), "{line}");
    let at = line.find("\"signature\":\"").unwrap() + "\"signature\":\"".len();
    let flipped = if &line[at..=at] == "0" { "1" } else { "0" };
    line.replace_range(at..=at, flipped);
    let tampered = tmp.path().join("tampered.backup");
    std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();
    let target = tmp.path().join("from-tampered");
    refused(restore(&tampered, &target, &node_key), &target, &format!("entry #{bad_sequence} of the log"));

    // Cut short in the middle of an entry: refused.
    let truncated = tmp.path().join("truncated.backup");
    std::fs::write(&truncated, &before[..before.len() / 2]).unwrap();
    let target = tmp.path().join("from-truncated");
    refused(restore(&truncated, &target, &node_key), &target, "refused");

    // An auditor's export is a backup too.
    let export = tmp.path().join("export.jsonl");
    let admin_key = data.join("admin.key");
    cercle(
        &node.url(),
        Some(&admin_key),
        &["audit", "export", "--format", "jsonl", "--out", export.to_str().unwrap()],
    )
    .ok();
    let from_export = tmp.path().join("from-export");
    let out = restore(&export, &from_export, &node_key).ok();
    assert!(out.stdout.contains("restored"), "{}", out.stdout);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
