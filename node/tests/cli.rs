//! The `cercle-node` binary's command line: help, and clear errors for bad set-ups.

use std::process::Command;

fn node(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cercle-node")).args(args).output().expect("run cercle-node")
}

#[test]
fn help_lists_the_commands() {
    let out = node(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["init", "run", "rebuild"] {
        assert!(text.contains(command), "help lacks {command}: {text}");
    }
}

#[test]
fn run_on_an_empty_directory_says_to_init() {
    let tmp = tempfile::tempdir().unwrap();
    let out = node(&["run", "--data-dir", tmp.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds no ledger") && err.contains("cercle-node init"), "{err}");
}

#[test]
fn init_twice_is_refused_and_keeps_the_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let dir = dir.to_str().unwrap();
    let out = node(&["init", "--data-dir", dir, "--currency", "SRD"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let first_key = std::fs::read(tmp.path().join("d/admin.key")).unwrap();
    let out = node(&["init", "--data-dir", dir]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a ledger"));
    assert_eq!(std::fs::read(tmp.path().join("d/admin.key")).unwrap(), first_key);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tmp.path().join("d/admin.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn init_refuses_bad_genesis_values() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let dir = dir.to_str().unwrap();
    let out = node(&["init", "--data-dir", dir, "--currency", "chw"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid currency code 'chw'"));
    let out = node(&["init", "--data-dir", dir, "--admin-pubkey", "abcd"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("32 bytes"));
}

#[test]
fn init_into_a_closed_pipe_does_not_panic_and_keeps_every_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    // A pipe whose reader is gone, as after `cercle-node init ... | head -1` has read its line.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_cercle-node"))
        .args(["init", "--data-dir", dir.to_str().unwrap()])
        .stdout(writer)
        .output()
        .expect("run cercle-node");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // The administrator key's notice and what stdout could not take are on stderr.
    assert!(err.contains("created an administrator key in"), "{err}");
    assert!(err.contains("initialised ledger") && err.contains("node key"), "{err}");
    assert!(dir.join("ledger").exists() && dir.join("admin.key").exists());
}
