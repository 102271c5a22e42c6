//! `cercle audit verify --log` and `cercle proof check`, run without a node: verdicts,
//! exit codes and the errors a user sees.

use std::path::Path;
use std::process::Command;

use cercle_audit::synth::synth_log;

/// A node URL where nothing listens: connecting is refused at once.
const NOWHERE: &str = "http://127.0.0.1:1";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn cercle(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_cercle"))
        .args(args)
        .env_remove("CERCLE_KEY")
        .env_remove("CERCLE_NODE")
        .output()
        .expect("run cercle");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!run.stderr.contains("panicked"), "cercle panicked: {}", run.stderr);
    run
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Checks a run's exit code and that stderr holds every needle.
#[track_caller]
fn check(run: &Run, code: i32, needles: &[&str]) {
    assert_eq!(run.code, code, "stdout: {}\nstderr: {}", run.stdout, run.stderr);
    for needle in needles {
        assert!(run.stderr.contains(needle), "stderr lacks {needle:?}: {}", run.stderr);
    }
}

#[test]
fn verify_gives_a_verdict_on_a_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = synth_log(500, 11);
    let file = dir.path().join("log.jsonl");
    std::fs::write(&file, log.jsonl()).unwrap();

    let run = cercle(&["--json", "audit", "verify", "--log", path(&file)]);
    check(&run, 0, &[]);
    let verdict: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(verdict["verdict"], "ok");
    assert_eq!(verdict["entries_checked"], 500);
    assert_eq!(verdict["state_digest"], hex::encode(log.ledger.state().digest()));
    assert_eq!(verdict["merkle_root"], hex::encode(log.tree_head.head.root_hash));
    assert_eq!(verdict["genesis_hash"], hex::encode(log.genesis.hash()));

    // People get a table, and the speed against this machine's ceiling on request.
    let run = cercle(&["audit", "verify", "--log", path(&file), "--bench", "--threads", "1"]);
    check(&run, 0, &[]);
    for needle in ["verdict         OK", "entries checked 500", "ceiling", "% of the ceiling"] {
        assert!(run.stdout.contains(needle), "{needle:?} not in {}", run.stdout);
    }
    // With --json, the measurement is part of the one object printed.
    let run = cercle(&["--json", "audit", "verify", "--log", path(&file), "--bench", "--threads", "1"]);
    check(&run, 0, &[]);
    let verdict: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!((verdict["ok"].as_bool(), verdict["verdict"].as_str()), (Some(true), Some("ok")));
    assert!(verdict["bench"]["ceiling_per_sec"].as_u64().is_some(), "{verdict}");

    // A tampered log: exit 5 (audit failed), the first bad line named, and the error object
    // on stdout names the line too.
    let mut lines: Vec<String> = std::fs::read_to_string(&file).unwrap().lines().map(String::from).collect();
    lines.swap(100, 101);
    let swapped = dir.path().join("swapped.jsonl");
    std::fs::write(&swapped, lines.join("\n") + "\n").unwrap();
    let run = cercle(&["--json", "audit", "verify", "--log", path(&swapped)]);
    check(
        &run,
        5,
        &["error: AUDIT FAILED: entry #100 of the log (line 101): entry 101: expected sequence 100"],
    );
    let verdict: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(verdict["ok"], false);
    assert_eq!(verdict["error"]["kind"], "audit_failed");
    assert_eq!(verdict["error"]["line"], 101);
    assert!(verdict["error"]["message"].as_str().unwrap().contains("expected sequence 100"), "{verdict}");
}

#[test]
fn unreadable_logs_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.jsonl");
    // A wrong path is bad input (2); a file that is not a log fails the audit (5).
    check(&cercle(&["audit", "verify", "--log", path(&missing)]), 2, &["cannot open", "missing.jsonl"]);
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    check(&cercle(&["audit", "verify", "--log", path(&empty)]), 5, &["does not end with a complete line"]);
    let junk = dir.path().join("junk.jsonl");
    std::fs::write(&junk, "hello\nworld\n").unwrap();
    check(
        &cercle(&["audit", "verify", "--log", path(&junk)]),
        5,
        &["junk.jsonl line 1", "not a genesis line"],
    );
    let log = synth_log(3, 1);
    let genesis_only = dir.path().join("genesis.jsonl");
    let text = String::from_utf8(log.jsonl()).unwrap();
    std::fs::write(&genesis_only, format!("{}\n", text.lines().next().unwrap())).unwrap();
    check(&cercle(&["audit", "verify", "--log", path(&genesis_only)]), 5, &["no tree-head line"]);
    // --bench measures against a file only.
    check(&cercle(&["audit", "verify", "--bench"]), 2, &["--log"]);
}

#[test]
fn commands_that_read_the_node_need_a_key_and_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    for args in [
        vec!["audit", "verify"],
        vec!["audit", "export", "--out", path(&out), "--format", "jsonl"],
        vec!["proof", "check", "alice"],
    ] {
        check(&cercle(&args), 2, &["needs your key"]);
    }
    let key = dir.path().join("k.key");
    check(&cercle(&["keygen", "--out", path(&key)]), 0, &[]);
    check(
        &cercle(&["--node", NOWHERE, "--key", path(&key), "proof", "check", "alice"]),
        4,
        &["cannot reach the node"],
    );
    check(
        &cercle(&["--key", path(&key), "audit", "export", "--out", path(&out), "--format", "pdf"]),
        2,
        &["invalid value 'pdf'"],
    );
    check(&cercle(&["--key", path(&key), "proof", "check", "Not A Handle"]), 2, &["invalid account handle"]);
    check(&cercle(&["--key", path(&key), "proof", "check", "alice", "--limit", "0"]), 2, &["--limit"]);
}
