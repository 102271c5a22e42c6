//! Harness for the end-to-end tests: starts the real `cercle-node` binary on a free
//! loopback port, runs the real `cercle` binary against it, and talks raw gRPC to it.
//!
//! The binaries are found next to the test executable (`target/<profile>/`); the harness
//! runs `cargo build` for them once per test process, so they are never stale.

pub mod load;
pub mod pki;
pub mod startup;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use cercle_core::sign::{Keypair, decode_key_file};
use cercle_core::{Genesis, Operation};
use cercle_proto as pb;

/// How long a node may take to start listening before a test gives up.
pub const START_DEADLINE: Duration = Duration::from_secs(60);

/// The directory holding the workspace's binaries for this test's profile.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent().and_then(Path::parent).expect("target dir").to_path_buf()
}

/// The path of a workspace binary. The first call in a test process runs `cargo build`
/// for both binaries (a no-op when they are up to date), so a test never runs a stale
/// binary, even under `cargo test -p cercle-e2e`.
pub fn binary(name: &str) -> PathBuf {
    static BUILD: std::sync::Once = std::sync::Once::new();
    let dir = bin_dir();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "cercle-node", "-p", "cercle-wallet"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.current_dir(env!("CARGO_MANIFEST_DIR")).status().expect("run cargo build");
        assert!(status.success(), "cargo build of the binaries failed");
    });
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing; run `cargo test --workspace`", path.display());
    path
}

/// A running `cercle-node`.
pub struct Node {
    child: Option<Child>,
    pub addr: String,
    pub data_dir: PathBuf,
    /// Where the node serves `/metrics`, when it was started with `--metrics-listen`.
    pub metrics_url: Option<String>,
    /// Whether it serves TLS (started with `--tls-cert`): its URL is then `https://`.
    pub tls: bool,
}

impl Node {
    /// Initialises `data_dir` (with the given extra `init` arguments) and starts the node.
    pub fn init_and_start(data_dir: &Path, init_args: &[&str]) -> Node {
        let out = Command::new(binary("cercle-node"))
            .args(["init", "--data-dir"])
            .arg(data_dir)
            .args(init_args)
            .output()
            .expect("run cercle-node init");
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        Node::start(data_dir)
    }

    /// Starts the node on an existing data directory, on a free loopback port, and waits
    /// (polling, with a deadline) until it prints the address it listens on.
    pub fn start(data_dir: &Path) -> Node {
        Node::start_with_log(data_dir, &data_dir.join("node.log"))
    }

    /// Starts the node with its log (stderr) appended to `log_path`, as JSON lines
    /// (`startup::startups` reads them).
    pub fn start_with_log(data_dir: &Path, log_path: &Path) -> Node {
        Node::start_configured(data_dir, log_path, &[], None)
    }

    /// Starts the node with extra `run` arguments, its log appended to `log_path`, and, when
    /// `open_files_max` is given, at most that many open files (soft and hard
    /// `RLIMIT_NOFILE`, set in the child before it runs the node).
    pub fn start_configured(
        data_dir: &Path,
        log_path: &Path,
        run_args: &[&str],
        open_files_max: Option<u64>,
    ) -> Node {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(log_path).expect("open node log");
        let mut command = Command::new(binary("cercle-node"));
        command
            .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(run_args)
            .env("RUST_LOG", "info")
            .env("CERCLE_LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if let Some(limit) = open_files_max {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec the closure only makes the setrlimit system
            // call, which is async-signal-safe, and allocates nothing.
            unsafe {
                command.pre_exec(move || {
                    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, limit, limit)
                        .map_err(std::io::Error::from)
                });
            }
        }
        let mut child = command.spawn().expect("spawn cercle-node");
        let stdout = child.stdout.take().expect("node stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + START_DEADLINE;
        let mut metrics_url = None;
        let addr = loop {
            let line = rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
            match line {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("metrics at ") {
                        metrics_url = Some(url.to_string());
                    } else if let Some(addr) = line.strip_prefix("listening on ") {
                        break addr.to_string();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(log_path).unwrap_or_default();
                    panic!("the node did not start listening in time; its log:\n{log}");
                }
            }
        };
        let tls = run_args.contains(&"--tls-cert");
        Node { child: Some(child), addr, data_dir: data_dir.to_path_buf(), metrics_url, tls }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The process id, to send it signals.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM and waits up to `deadline` for the node to exit; returns its exit
    /// status, or `None` if it was still running at the deadline (it is then killed).
    pub fn terminate(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let until = std::time::Instant::now() + deadline;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if std::time::Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
    }

    /// Stops the node with SIGINT (a clean shutdown) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }

    /// Stops the node with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGKILL and returns the dying process without waiting for it: its exit may
    /// wait on something the test still holds (a filesystem holding its syncs back).
    pub fn kill_without_waiting(&mut self) -> Option<Child> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        Some(child)
    }

    /// True while the node process is running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub async fn client(&self) -> pb::ledger_client::LedgerClient<tonic::transport::Channel> {
        pb::ledger_client::LedgerClient::connect(self.url()).await.expect("connect to the node")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The result of one CLI run.
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    pub fn failed(self) -> Self {
        assert_ne!(self.code, 0, "expected failure\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        assert!(!self.stderr.contains("panicked"), "the CLI panicked: {}", self.stderr);
        self
    }
}

/// Runs `cercle` against `node_url` with `key` (if any) and `args`. Its state directory
/// (the tree heads `proof check` keeps, the `--op-id` journal) is under the target
/// directory, never the user's own.
pub fn cercle(node_url: &str, key: Option<&Path>, args: &[&str]) -> CliOutput {
    cercle_with_state(node_url, key, &bin_dir().join("e2e-state"), args)
}

/// `cercle` with `XDG_STATE_HOME` set to `state`.
pub fn cercle_with_state(node_url: &str, key: Option<&Path>, state: &Path, args: &[&str]) -> CliOutput {
    let mut cmd = Command::new(binary("cercle"));
    cmd.arg("--node").arg(node_url);
    if let Some(key) = key {
        cmd.arg("--key").arg(key);
    }
    cmd.args(args)
        .env_remove("CERCLE_KEY")
        .env_remove("CERCLE_NODE")
        .env_remove("CERCLE_NODE_KEY")
        .env("XDG_STATE_HOME", state);
    let Output { status, stdout, stderr } = cmd.output().expect("run cercle");
    CliOutput {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

pub fn read_key(path: &Path) -> Keypair {
    decode_key_file(&std::fs::read_to_string(path).expect("read key file")).expect("key file")
}

/// Signs `op` with `key` for the ledger of `genesis` into a wire envelope.
pub fn envelope(genesis: &Genesis, key: &Keypair, op: &Operation) -> pb::Envelope {
    let body = cercle_core::body::encode(op);
    let signature = key.sign_op(&genesis.ledger_id, &body);
    pb::Envelope {
        body,
        signer: key.public_key().0.to_vec(),
        signature: signature.to_vec(),
        cosignatures: vec![],
    }
}

/// The node's time source, for building `valid_until_ms`.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The stable reason code in a rejection's `google.rpc.ErrorInfo`, if any.
pub fn reject_code(status: &tonic::Status) -> Option<u16> {
    use tonic_types::StatusExt;
    status.get_error_details().error_info().and_then(|i| i.metadata.get("code")).and_then(|c| c.parse().ok())
}

/// A gRPC codec that sends and receives raw bytes, to put malformed messages on the wire.
#[derive(Default, Clone)]
pub struct RawCodec;

pub struct RawEncoder;
pub struct RawDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let mut out = vec![0u8; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// Sends `bytes` as the request message of `method` (e.g. `/cercle.v1.Ledger/Submit`).
pub async fn raw_call(url: &str, method: &'static str, bytes: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(url.to_string())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
    grpc.unary(tonic::Request::new(bytes), path, RawCodec).await.map(tonic::Response::into_inner)
}

/// Reads the ledger's genesis from the node.
pub async fn genesis(node: &Node) -> Genesis {
    let info = node.client().await.get_ledger_info(pb::GetLedgerInfoRequest {}).await.expect("ledger info");
    Genesis::try_from(info.into_inner()).expect("valid genesis")
}

/// A plain HTTP/1.1 `GET` of `url` (`http://HOST:PORT/PATH`): the status code and the body.
/// Enough for `/metrics`, with no HTTP client crate.
pub fn http_get(url: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host).expect("connect for GET");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").expect("send GET");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read the answer");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    (status, body.to_string())
}

/// A key file made by `cercle keygen`, and its public key in hex.
pub struct Key {
    pub path: PathBuf,
    pub pubkey: String,
}

/// Makes `DIR/NAME.key` with the real wallet (`cercle keygen`: no node is needed).
pub fn keygen(dir: &Path, name: &str) -> Key {
    let path = dir.join(format!("{name}.key"));
    let out = cercle("http://127.0.0.1:1", None, &["keygen", "--out", path.to_str().unwrap()]).ok();
    let pubkey = out.stdout.split_whitespace().last().expect("public key").to_string();
    assert_eq!(pubkey.len(), 64, "keygen prints the public key in hex: {}", out.stdout);
    Key { path, pubkey }
}

/// Asserts that a command's stdout or stderr says `needle`, showing both otherwise.
#[track_caller]
pub fn assert_mentions(out: &CliOutput, needle: &str) {
    assert!(
        out.stderr.contains(needle) || out.stdout.contains(needle),
        "expected {needle:?}\nstdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
}
