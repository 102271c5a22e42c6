//! Running the node for real (#13): its configuration (`config check`, the precedence of
//! flag, environment and file, bad files), `--version` and completions, the Prometheus
//! endpoint (exact counts after known operations, checked by the real `promtool`), and TLS
//! between the wallet and the node (a CA made here; a wrong CA, an expired certificate,
//! TLS on one side only, each a one-line error).

use std::path::{Path, PathBuf};
use std::process::Command;

use cercle_core::sign::Keypair;
use cercle_core::{OpKind, Operation, OperationId, Transfer};
use cercle_e2e::load::{CREDIT_LIMIT_MINOR, account, register_accounts};
use cercle_e2e::pki::Pki;
use cercle_e2e::{CliOutput, Node, binary, cercle, envelope, genesis, http_get, now_ms, read_key};
use cercle_proto as pb;

fn node_cmd(args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    let mut cmd = Command::new(binary("cercle-node"));
    cmd.args(args);
    for var in
        ["CERCLE_CONFIG", "CERCLE_LISTEN", "CERCLE_DATA_DIR", "CERCLE_LOG_FORMAT", "CERCLE_METRICS_LISTEN"]
    {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run cercle-node");
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn sample_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/cercle-node.toml")
}

/// The line `config check` prints for `key`.
fn setting<'a>(out: &'a CliOutput, key: &str) -> &'a str {
    out.stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .unwrap_or_else(|| panic!("no line for {key}:\n{}", out.stdout))
}

#[test]
fn version_and_completions() {
    for bin in ["cercle-node", "cercle"] {
        let out = Command::new(binary(bin)).arg("--version").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success());
        assert!(text.contains(env!("CARGO_PKG_VERSION")) && text.contains("cercle.v1"), "{bin}: {text}");
        for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef"), ("fish", "complete -c")] {
            let out = Command::new(binary(bin)).args(["completions", shell]).output().unwrap();
            let script = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{bin} completions {shell}");
            assert!(script.contains(marker) && script.contains(bin), "{bin} completions {shell}:\n{script}");
        }
    }
}

#[test]
fn config_check_names_each_source_and_refuses_bad_files() {
    let sample = sample_config();
    let sample = sample.to_str().unwrap();
    let out = node_cmd(&["config", "check", "--config", sample], &[]).ok();
    assert!(
        setting(&out, "listen").contains("\"0.0.0.0:50051\"") && setting(&out, "listen").contains("# file")
    );
    assert!(setting(&out, "tls_cert").contains("# default"), "{}", out.stdout);
    // The environment wins over the file, a flag over both; CERCLE_CONFIG names the file.
    let out =
        node_cmd(&["config", "check"], &[("CERCLE_CONFIG", sample), ("CERCLE_LISTEN", "127.0.0.1:7000")])
            .ok();
    assert!(setting(&out, "listen").contains("# environment CERCLE_LISTEN"), "{}", out.stdout);
    assert!(setting(&out, "data_dir").contains("# file"), "{}", out.stdout);
    let out = node_cmd(
        &["config", "check", "--config", sample, "--listen", "127.0.0.1:7001"],
        &[("CERCLE_LISTEN", "127.0.0.1:7000")],
    )
    .ok();
    assert!(
        setting(&out, "listen").contains("127.0.0.1:7001")
            && setting(&out, "listen").contains("# flag --listen")
    );

    let tmp = tempfile::tempdir().unwrap();
    let bad = |name: &str, text: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let cases = [
        (
            bad("unknown.toml", "listen = \"127.0.0.1:1\"\nlisten_addr = \"x\"\n"),
            "unknown field `listen_addr`",
        ),
        (bad("address.toml", "metrics_listen = \"localhost:9464\"\n"), "key `metrics_listen`"),
        (
            bad("cert.toml", "tls_cert = \"/nonexistent/cert.pem\"\ntls_key = \"/nonexistent/key.pem\"\n"),
            "/nonexistent/cert.pem",
        ),
    ];
    for (path, needle) in cases {
        let out = node_cmd(&["config", "check", "--config", path.to_str().unwrap()], &[]).failed();
        assert!(out.stderr.contains(needle), "{}: {}", path.display(), out.stderr);
        assert!(out.stderr.contains(path.to_str().unwrap()) || needle.starts_with('/'), "{}", out.stderr);
        assert_eq!(out.stderr.trim_end().lines().count(), 1, "one line: {}", out.stderr);
        // `run` refuses the same file before it touches anything.
        let data = tmp.path().join("data");
        let out =
            node_cmd(&["run", "--config", path.to_str().unwrap(), "--data-dir", data.to_str().unwrap()], &[])
                .failed();
        assert!(out.stderr.contains(needle), "run: {}", out.stderr);
        assert!(!data.exists());
    }
    let out = node_cmd(&["config", "check", "--config", "/nonexistent/cercle.toml"], &[]).failed();
    assert!(out.stderr.contains("cannot read the configuration /nonexistent/cercle.toml"), "{}", out.stderr);
}

/// The value of the sample `name` (with its labels, as written) in a scrape.
fn sample(scrape: &str, name: &str) -> Option<f64> {
    scrape.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn transfer(id: u8, payer: usize, payee: usize, amount_minor: i64) -> Operation {
    Operation {
        id: OperationId([id; 16]),
        valid_until_ms: now_ms() + 3_600_000,
        kind: OpKind::Transfer(Transfer {
            payer: account(payer),
            payee: account(payee),
            amount_minor,
            memo: String::new(),
            invoice_ref: None,
            invoice: None,
        }),
    }
}

/// Starts a node with metrics, sends it known operations, and scrapes it: 24
/// registrations, one transfer, the same transfer again (a duplicate), one transfer past
/// the payer's limit.
async fn scrape_after_known_operations(tmp: &Path) -> (Node, String, String) {
    let data = tmp.join("data");
    node_cmd(&["init", "--data-dir", data.to_str().unwrap()], &[]).ok();
    let node =
        Node::start_configured(&data, &data.join("node.log"), &["--metrics-listen", "127.0.0.1:0"], None);
    let metrics_url = node.metrics_url.clone().expect("the node prints where its metrics are");
    let g = genesis(&node).await;
    let admin = read_key(&data.join("admin.key"));
    let firm = Keypair::from_seed(&[7; 32]);
    register_accounts(&node, &g, &admin, &firm).await;
    let mut client = node.client().await;
    let paid = envelope(&g, &firm, &transfer(1, 0, 1, 500));
    for _ in 0..2 {
        let sent = client.submit(pb::SubmitRequest { envelope: Some(paid.clone()) }).await;
        sent.expect("the transfer and its duplicate are answered with a receipt");
    }
    let too_much = envelope(&g, &firm, &transfer(2, 2, 3, CREDIT_LIMIT_MINOR + 1));
    let refused = client.submit(pb::SubmitRequest { envelope: Some(too_much) }).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    let (status, scrape) = http_get(&metrics_url);
    assert_eq!(status, 200, "{scrape}");
    (node, metrics_url, scrape)
}

#[tokio::test]
async fn metrics_count_known_operations() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut node, metrics_url, scrape) = scrape_after_known_operations(tmp.path()).await;
    let expect = [
        ("cercle_operations_accepted_total", 25.0),
        ("cercle_operations_duplicate_total", 1.0),
        ("cercle_operations_rejected_total{reason=\"CREDIT_LIMIT_EXCEEDED\"}", 1.0),
        ("cercle_accounts", 24.0),
        ("cercle_open_invoices", 0.0),
        ("cercle_log_entries", 25.0),
        ("cercle_writer_group_entries_sum", 25.0),
        ("cercle_writer_queue_depth", 0.0),
    ];
    for (name, value) in expect {
        assert_eq!(sample(&scrape, name), Some(value), "{name} in the scrape:\n{scrape}");
    }
    assert!(!scrape.contains("cercle_busy_answers_total{"), "no BUSY answer was given:\n{scrape}");
    let log_bytes = std::fs::metadata(node.data_dir.join("ledger/entries.log")).unwrap().len() as f64;
    assert_eq!(sample(&scrape, "cercle_log_bytes"), Some(log_bytes), "{scrape}");
    let groups = sample(&scrape, "cercle_writer_group_entries_count").expect("group count");
    assert_eq!(sample(&scrape, "cercle_log_sync_seconds_count"), Some(groups), "one sync per group");
    assert!(sample(&scrape, "cercle_startup_verification_seconds").is_some(), "{scrape}");
    assert!(scrape.contains("cercle_build_info{proto_package=\"cercle.v1\""), "{scrape}");
    assert_eq!(http_get(&metrics_url.replace("/metrics", "/other")).0, 404);
    node.stop();
}

/// The scrape passes the real `promtool check metrics` (names, types, help, histograms).
#[tokio::test]
#[cfg_attr(not(promtool_tests), ignore = "needs promtool: apt-get install prometheus")]
async fn the_scrape_passes_promtool() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut node, _, scrape) = scrape_after_known_operations(tmp.path()).await;
    node.stop();
    let path = tmp.path().join("scrape.txt");
    std::fs::write(&path, &scrape).unwrap();
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .expect("run promtool (apt-get install prometheus)");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_taken_metrics_port_is_a_clear_error_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    node_cmd(&["init", "--data-dir", data.to_str().unwrap()], &[]).ok();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = node_cmd(
        &["run", "--data-dir", data.to_str().unwrap(), "--listen", "127.0.0.1:0", "--metrics-listen", &addr],
        &[],
    )
    .failed();
    assert!(out.stderr.contains(&format!("cannot serve metrics on {addr}")), "{}", out.stderr);
    assert!(out.stderr.contains("in use"), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

/// Starts a TLS node on `data` with `cert` and `key`.
fn tls_node(data: &Path, cert: &Path, key: &Path) -> Node {
    let args = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
    Node::start_configured(data, &data.join("node.log"), &args, None)
}

fn cercle_ca(url: &str, ca: Option<&Path>, args: &[&str]) -> CliOutput {
    let mut all = Vec::new();
    if let Some(ca) = ca {
        all.extend(["--ca-cert", ca.to_str().unwrap()]);
    }
    all.extend(args);
    cercle(url, None, &all)
}

#[track_caller]
fn one_line_error(out: CliOutput, needle: &str) {
    let out = out.failed();
    assert_eq!(out.code, 4, "unreachable: {}", out.stderr);
    assert!(out.stderr.contains(needle), "expected {needle:?} in: {}", out.stderr);
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "one line: {}", out.stderr);
}

#[test]
fn tls_between_the_wallet_and_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::create(&tmp.path().join("pki"));
    let data = tmp.path().join("data");
    node_cmd(&["init", "--data-dir", data.to_str().unwrap()], &[]).ok();
    let mut node = tls_node(&data, &pki.node_cert, &pki.node_key);
    let url = node.url();
    assert!(url.starts_with("https://"));

    // Trusting the CA, the wallet reads and writes over TLS.
    let info = cercle_ca(&url, Some(&pki.ca_cert), &["--json", "info"]).ok().json();
    assert_eq!(info["log_size"], 0);
    let admin = data.join("admin.key");
    let alice_key = tmp.path().join("alice.key");
    let pubkey = cercle(&url, None, &["keygen", "--out", alice_key.to_str().unwrap()]).ok();
    let pubkey = pubkey.stdout.split_whitespace().last().unwrap().to_string();
    let mut register = vec!["--ca-cert", pki.ca_cert.to_str().unwrap(), "--key", admin.to_str().unwrap()];
    register.extend(["admin", "register", "alice", "--pubkey", &pubkey, "--credit-limit", "10"]);
    cercle(&url, None, &register).ok();
    // The environment variable works as the flag does.
    let out = Command::new(binary("cercle"))
        .args(["--node", &url, "--json", "info"])
        .env("CERCLE_CA_CERT", &pki.ca_cert)
        .env("XDG_STATE_HOME", tmp.path().join("state"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["log_size"], 1, "the registration went through over TLS");

    // The health probe over TLS.
    let probe = node_cmd(&["probe", "--node", &url, "--ca-cert", pki.ca_cert.to_str().unwrap()], &[]).ok();
    assert!(probe.stdout.contains("serves cercle.v1.Ledger"), "{}", probe.stdout);

    // Each failure is one line that says what to do.
    one_line_error(
        cercle_ca(&url, Some(&pki.other_ca_cert), &["info"]),
        "not signed by a CA this wallet trusts",
    );
    one_line_error(cercle_ca(&url, None, &["info"]), "not signed by a CA this wallet trusts");
    let plain = url.replace("https://", "http://");
    one_line_error(cercle_ca(&plain, None, &["info"]), "it serves TLS on this port (use an https:// URL)");
    node.stop();

    let mut expired = tls_node(&data, &pki.expired_cert, &pki.expired_key);
    one_line_error(
        cercle_ca(&expired.url(), Some(&pki.ca_cert), &["info"]),
        "its TLS certificate has expired",
    );
    expired.stop();

    let mut plain_node = Node::start(&data);
    let https = plain_node.url().replace("http://", "https://");
    one_line_error(cercle_ca(&https, Some(&pki.ca_cert), &["info"]), "does not speak TLS on this port");
    plain_node.stop();

    // A key that is not the certificate's is refused at start, naming both files.
    let out = node_cmd(
        &[
            "config",
            "check",
            "--data-dir",
            data.to_str().unwrap(),
            "--tls-cert",
            pki.node_cert.to_str().unwrap(),
            "--tls-key",
            pki.expired_key.to_str().unwrap(),
        ],
        &[],
    )
    .failed();
    assert!(out.stderr.contains("node.pem") && out.stderr.contains("expired-key.pem"), "{}", out.stderr);
}
