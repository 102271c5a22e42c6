//! The real `cercle` binary, run without a node: key files, argument validation and the
//! errors a user sees. End-to-end runs against a node live in the workspace's `tests/`.

use std::path::Path;
use std::process::Command;

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

impl Run {
    #[track_caller]
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "expected success\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }

    /// Asserts a failure with exit code `code` whose stderr is one `error: ...` line
    /// (unless it is clap's usage message) containing every needle.
    #[track_caller]
    fn fails(self, code: i32, needles: &[&str]) -> Run {
        assert_eq!(self.code, code, "expected exit {code}\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        let clap = self.stderr.contains("Usage:") || self.stderr.contains("For more information, try");
        if !clap {
            assert!(self.stderr.starts_with("error: "), "stderr: {}", self.stderr);
            assert_eq!(self.stderr.trim_end().lines().count(), 1, "one line: {}", self.stderr);
        }
        for needle in needles {
            assert!(self.stderr.contains(needle), "stderr lacks {needle:?}: {}", self.stderr);
        }
        self
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn keygen(dir: &Path, name: &str) -> (String, String) {
    let key = dir.join(name);
    let out = cercle(&["keygen", "--out", path(&key)]).ok();
    let public_key = out.stdout.split_whitespace().last().expect("public key").to_string();
    (path(&key).to_string(), public_key)
}

#[test]
fn keygen_writes_a_private_file_and_never_overwrites_it() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public_key) = keygen(dir.path(), "alice.key");
    assert_eq!(public_key.len(), 64);
    assert!(public_key.bytes().all(|b| b.is_ascii_hexdigit()), "{public_key}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }
    let before = std::fs::read_to_string(&key).unwrap();
    cercle(&["keygen", "--out", &key]).fails(2, &["already exists", "refusing to overwrite"]);
    assert_eq!(std::fs::read_to_string(&key).unwrap(), before, "the key is untouched");

    // Two keys are different keys.
    let (_, other) = keygen(dir.path(), "bob.key");
    assert_ne!(other, public_key);
}

#[test]
fn pubkey_prints_the_key_again() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public_key) = keygen(dir.path(), "alice.key");
    let out = cercle(&["--key", &key, "pubkey"]).ok();
    assert_eq!(out.stdout.trim(), public_key);
    let out = cercle(&["pubkey", "--key", &key, "--json"]).ok();
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["public_key"], public_key.as_str());

    let out =
        Command::new(env!("CARGO_BIN_EXE_cercle")).arg("pubkey").env("CERCLE_KEY", &key).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), public_key, "CERCLE_KEY works");

    let json_keygen = cercle(&["--json", "keygen", "--out", path(&dir.path().join("c.key"))]).ok();
    let json: serde_json::Value = serde_json::from_str(&json_keygen.stdout).unwrap();
    assert_eq!(json["public_key"].as_str().map(str::len), Some(64));
}

#[test]
fn a_missing_or_broken_key_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--node", NOWHERE, "pay", "--from", "alice", "bob", "10"][..],
        &["--node", NOWHERE, "balance", "alice"],
        &["--node", NOWHERE, "admin", "freeze", "bob", "--reason", "dispute"],
        &["pubkey"],
    ] {
        cercle(args).fails(2, &["needs your key", "--key", "CERCLE_KEY", "cercle keygen"]);
    }
    let missing = dir.path().join("nope.key");
    cercle(&["--key", path(&missing), "pubkey"]).fails(2, &["does not exist", "cercle keygen --out"]);
    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "hello\n").unwrap();
    cercle(&["--key", path(&garbage), "pubkey"]).fails(2, &["not a Cercle key file"]);
}

#[test]
fn bad_amounts_fail_cleanly_and_send_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "alice.key");
    let pay =
        |amount: &str| cercle(&["--node", NOWHERE, "--key", &key, "pay", "--from", "alice", "bob", amount]);
    // Wrong whatever the currency: refused before connecting.
    pay("-5").fails(2, &["invalid amount", "has a sign"]);
    pay("0").fails(2, &["invalid amount", "'0' is zero"]);
    pay("abc").fails(2, &["invalid amount", "not a decimal amount"]);
    pay("1.0000000001").fails(2, &["more than any currency has"]);
    // Whether 1.234 has too many decimals depends on the ledger's currency, which comes
    // from the node: with no node, the error says so.
    pay("1.234").fails(4, &["cannot reach the node at http://127.0.0.1:1", "--node"]);
    let register = |limit: &str| {
        cercle(&[
            "--node",
            NOWHERE,
            "--key",
            &key,
            "admin",
            "register",
            "carol",
            "--pubkey",
            &"ab".repeat(32),
            "--credit-limit",
            limit,
        ])
    };
    register("-1").fails(2, &["invalid credit limit", "has a sign"]);
    cercle(&[
        "--node",
        NOWHERE,
        "--key",
        &key,
        "admin",
        "set-limits",
        "carol",
        "--max-balance",
        "-3",
        "--reason",
        "r",
    ])
    .fails(2, &["invalid maximum balance"]);
}

#[test]
fn arguments_are_checked_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "alice.key");
    let base = ["--node", NOWHERE, "--key", key.as_str()];
    let with = |args: &[&str]| cercle(&[&base[..], args].concat());
    with(&["pay", "--from", "alice", "alice", "10"]).fails(2, &["cannot pay itself"]);
    with(&["admin", "set-limits", "alice", "--reason", "r"]).fails(2, &["nothing to change"]);
    // Usage errors keep clap's exit code 2.
    with(&["pay", "--from", "Alice!", "bob", "10"]).fails(2, &["invalid account handle"]);
    with(&["pay", "--from", "alice", "bob", "10", "--op-id", "xyz"]).fails(2, &["--op-id"]);
    with(&["pay", "--from", "alice", "bob", "10", "--op-id", "abcd"]).fails(2, &["16 bytes"]);
    with(&["pay", "--from", "alice", "bob", "10", "--no-submit"]).fails(2, &["--save"]);
    with(&["pay", "--from", "alice", "bob", "10", "--valid-for", "0"]).fails(2, &["--valid-for"]);
    with(&["admin", "register", "carol", "--pubkey", "1234"]).fails(2, &["32 bytes"]);
    with(&["admin", "register", "carol"]).fails(2, &["--pubkey"]);
    with(&["admin", "freeze", "carol"]).fails(2, &["--reason"]);
    with(&["history", "alice", "--limit", "100001"]).fails(2, &["--limit"]);
}

#[test]
fn an_unreachable_node_is_reported_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "alice.key");
    for command in
        [&["balance", "alice"][..], &["history", "alice"], &["pay", "--from", "alice", "bob", "10"]]
    {
        cercle(&[&["--node", NOWHERE, "--key", key.as_str()][..], command].concat())
            .fails(4, &["cannot reach the node at http://127.0.0.1:1", "CERCLE_NODE"]);
    }
    cercle(&["--node", "not a url", "--key", &key, "balance", "alice"]).fails(2, &["invalid node URL"]);
}

#[test]
fn submit_names_the_malformed_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ops.jsonl");
    let good =
        format!(r#"{{"body":"0a0b","signer":"{}","signature":"{}"}}"#, "11".repeat(32), "22".repeat(64));
    let check = |text: &str, needles: &[&str]| {
        std::fs::write(&file, text).unwrap();
        // The file is checked before connecting: the node's absence is never reached.
        let out = cercle(&["--node", NOWHERE, "submit", "--file", path(&file)]).fails(2, needles);
        assert!(!out.stderr.contains("cannot reach"), "{}", out.stderr);
    };
    check(&format!("{good}\n{good}\n{{not json\n"), &["line 3", "not an envelope in JSON"]);
    check(&format!("{good}\n\n{}\n", good.replace("0a0b", "0g")), &["line 3", "\"body\" is not hex"]);
    check(&good.replace(&"22".repeat(64), "22"), &["line 1", "\"signature\" is 1 bytes"]);
    check("\n\n", &["holds no envelopes"]);
    cercle(&["submit", "--file", path(&dir.path().join("missing.jsonl"))])
        .fails(2, &["cannot open envelope file"]);

    // A well-formed file gets as far as the node.
    std::fs::write(&file, format!("{good}\n")).unwrap();
    cercle(&["--node", NOWHERE, "submit", "--file", path(&file)]).fails(4, &["cannot reach the node"]);
}

#[test]
fn help_lines_are_imperative_without_a_final_period() {
    let out = cercle(&["--help"]).ok();
    for command in ["keygen", "pubkey", "admin", "pay", "submit", "balance", "history"] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(command))
            .unwrap_or_else(|| panic!("no help line for {command}: {}", out.stdout));
        assert!(!line.trim_end().ends_with('.'), "{line}");
    }
}

#[test]
fn help_documents_the_exit_codes_and_the_json_envelope() {
    let out = cercle(&["--help"]).ok();
    for needle in [
        "Exit codes:",
        "2  bad usage",
        "3  rejected by the ledger",
        "4  cannot reach the node",
        "5  audit failed",
        "6  history rewritten",
        "\"ok\": false",
    ] {
        assert!(out.stdout.contains(needle), "help lacks {needle:?}: {}", out.stdout);
    }
}

#[test]
fn with_json_every_failure_is_one_error_object_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "alice.key");
    let json = |run: &Run| -> serde_json::Value {
        assert_eq!(run.stdout.lines().count(), 1, "one line: {}", run.stdout);
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
    };
    // Bad input found by the wallet.
    let run = cercle(&["--json", "--node", NOWHERE, "--key", &key, "pay", "--from", "alice", "bob", "-5"]);
    let v = json(&run.fails(2, &["has a sign"]));
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["kind"], "usage");
    assert!(v["error"]["message"].as_str().unwrap().contains("has a sign"), "{v}");
    assert!(v["error"].get("code").is_none(), "only rejections have a code: {v}");
    // Bad usage found by clap.
    let run = cercle(&["--json", "pay", "--from", "Alice!", "bob", "10"]);
    let v = json(&run.fails(2, &["invalid account handle"]));
    assert_eq!((v["ok"].as_bool(), v["error"]["kind"].as_str()), (Some(false), Some("usage")));
    // No node.
    let run = cercle(&["--json", "--node", NOWHERE, "--key", &key, "balance", "alice"]);
    let v = json(&run.fails(4, &["cannot reach the node"]));
    assert_eq!(v["error"]["kind"], "unreachable");
    // Success is an object with "ok": true.
    let v = json(&cercle(&["--json", "--key", &key, "pubkey"]).ok());
    assert_eq!(v["ok"], true);
}

#[cfg(unix)]
#[test]
fn key_files_are_checked_before_they_are_used() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (key, public_key) = keygen(dir.path(), "alice.key");
    let text = std::fs::read_to_string(&key).unwrap();

    // One changed hex digit of the secret: the public key line no longer matches.
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let digit = if lines[1].starts_with('0') { "1" } else { "0" };
    lines[1].replace_range(0..1, digit);
    let damaged = dir.path().join("damaged.key");
    std::fs::write(&damaged, lines.join("\n") + "\n").unwrap();
    std::fs::set_permissions(&damaged, std::fs::Permissions::from_mode(0o600)).unwrap();
    cercle(&["--key", path(&damaged), "pubkey"]).fails(2, &["damaged", &public_key]);

    // A key others may read works, with a warning.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = cercle(&["--key", &key, "pubkey"]).ok();
    assert_eq!(run.stdout.trim(), public_key);
    assert!(run.stderr.contains("warning") && run.stderr.contains("chmod 600"), "{}", run.stderr);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(cercle(&["--key", &key, "pubkey"]).ok().stderr, "", "no warning at 0600");

    // A directory, or a FIFO nobody writes to, is refused at once rather than read.
    cercle(&["--key", path(dir.path()), "pubkey"]).fails(2, &["not a regular file"]);
    let fifo = dir.path().join("fifo.key");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
    assert!(made.success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_cercle"))
        .args(["--key", path(&fifo), "pubkey"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Poll with a deadline: a wallet that blocks on the FIFO is killed and the test fails.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("cercle blocked reading a FIFO given as --key");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");
}
