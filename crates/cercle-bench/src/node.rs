//! The node under test: the real `cercle-node` release binary, run as a child process
//! through its CLI only (`init`, `run`), so the bench does not depend on its internals.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::load;

/// How long the node may take to print its address.
const LISTEN_DEADLINE: Duration = Duration::from_secs(60);
/// How long the node may take to answer after a restart (it replays its log first).
const READY_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// How long a clean stop may take before the node is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(5 * 60);

/// The workspace root, where `cargo build -p cercle-node` runs.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Finds the node's release binary, building it first when the bench runs under cargo
/// (`cargo run` sets `CARGO`), so the node measured is the node in the work tree.
pub fn binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        anyhow::ensure!(path.is_file(), "--node-bin {}: no such file", path.display());
        return Ok(path.to_path_buf());
    }
    let mut build_failed = false;
    if let Ok(cargo) = std::env::var("CARGO") {
        eprintln!("building cercle-node (release) with {cargo} ...");
        let status = std::process::Command::new(&cargo)
            .args(["build", "--release", "-p", "cercle-node"])
            .current_dir(workspace_root())
            .status()
            .with_context(|| format!("cannot run {cargo}"))?;
        build_failed = !status.success();
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        candidates.push(dir.join("cercle-node"));
    }
    if let Ok(target) = std::env::var("CARGO_TARGET_DIR") {
        candidates.push(Path::new(&target).join("release/cercle-node"));
    }
    candidates.push(workspace_root().join("target/release/cercle-node"));
    let Some(found) = candidates.into_iter().find(|p| p.is_file()) else {
        bail!(
            "cercle-node not found; build it with `cargo build --release -p cercle-node` or pass --node-bin"
        );
    };
    if build_failed {
        eprintln!(
            "warning: building cercle-node failed; measuring the binary already at {}",
            found.display()
        );
    }
    Ok(found)
}

/// `cercle-node init` into `data_dir` with `admin_pubkey_hex` as the administrator.
pub fn init(bin: &Path, data_dir: &Path, admin_pubkey_hex: &str) -> anyhow::Result<()> {
    let out = std::process::Command::new(bin)
        .args(["init", "--data-dir"])
        .arg(data_dir)
        .args(["--admin-pubkey", admin_pubkey_hex])
        .output()
        .context("cannot run cercle-node init")?;
    anyhow::ensure!(
        out.status.success(),
        "cercle-node init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A running node.
pub struct Node {
    child: Child,
    pub pid: u32,
    pub addr: String,
    /// From spawning the process to its `listening on` line.
    pub time_to_listen: Duration,
    spawned: Instant,
}

impl Node {
    /// Starts `cercle-node run` on a free loopback port, its log (stderr) appended to
    /// `log`, and waits for its `listening on ADDR` line.
    pub async fn start(bin: &Path, data_dir: &Path, log: &Path) -> anyhow::Result<Node> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let spawned = Instant::now();
        let mut child = Command::new(bin)
            .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .context("cannot start cercle-node")?;
        let pid = child.id().context("the node exited at once")?;
        let stdout = child.stdout.take().context("no stdout from the node")?;
        let mut lines = BufReader::new(stdout).lines();
        let found = tokio::time::timeout(LISTEN_DEADLINE, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    return Ok::<_, std::io::Error>(Some(addr.trim().to_string()));
                }
            }
            Ok(None)
        })
        .await;
        let time_to_listen = spawned.elapsed();
        let addr = match found {
            Ok(Ok(Some(addr))) => addr,
            _ => {
                let _ = child.kill().await;
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(20).collect();
                bail!(
                    "the node did not print `listening on` within {LISTEN_DEADLINE:?}; its log ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        };
        // Keep reading stdout so the node never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Node { child, pid, addr, time_to_listen, spawned })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until the node answers `GetLedgerInfo` (after replaying its log), and returns
    /// the time since it was spawned and its log size.
    pub async fn wait_ready(&mut self) -> anyhow::Result<(Duration, u64)> {
        let deadline = self.spawned + READY_DEADLINE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("the node exited ({status}) before answering");
            }
            let attempt = async {
                let mut client = load::connect(&self.url()).await?;
                load::log_size(&mut client).await
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, attempt).await {
                Ok(Ok(size)) => return Ok((self.spawned.elapsed(), size)),
                Ok(Err(_)) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(5)).await,
                _ => bail!("the node did not answer within {READY_DEADLINE:?}"),
            }
        }
    }

    /// Peak resident memory (`VmHWM`), in bytes.
    pub fn peak_memory_bytes(&self) -> anyhow::Result<u64> {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .with_context(|| format!("no VmHWM in {path}"))?;
        Ok(kib * 1024)
    }

    /// Stops the node with SIGINT (a clean shutdown) and returns how long it took to exit.
    pub async fn stop(mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let sent = std::process::Command::new("kill")
            .args(["-INT", &self.pid.to_string()])
            .status()
            .context("cannot run kill")?;
        anyhow::ensure!(sent.success(), "kill -INT {} failed", self.pid);
        match tokio::time::timeout(STOP_DEADLINE, self.child.wait()).await {
            Ok(Ok(status)) => {
                anyhow::ensure!(status.success(), "the node exited with {status} on SIGINT");
                Ok(started.elapsed())
            }
            _ => {
                let _ = self.child.kill().await;
                bail!("the node did not stop within {STOP_DEADLINE:?} of SIGINT; killed it")
            }
        }
    }
}

/// Sizes of everything under `dir`: (apparent bytes, allocated bytes as `du` counts them).
pub fn dir_size(dir: &Path) -> anyhow::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut apparent = 0;
    let mut allocated = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                apparent += meta.len();
                allocated += meta.blocks() * 512;
            }
        }
    }
    Ok((apparent, allocated))
}

/// Where the bytes of `dir` are: allocated bytes per path two levels deep (a file, or a
/// directory with everything under it), largest first.
pub fn largest_parts(dir: &Path) -> anyhow::Result<Vec<(String, u64)>> {
    use std::os::unix::fs::MetadataExt;
    let mut parts: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
                continue;
            }
            let path = entry.path();
            let relative = path.strip_prefix(dir).unwrap_or(&path);
            let key: PathBuf = relative.components().take(2).collect();
            let mut key = key.to_string_lossy().into_owned();
            if relative.components().count() > 2 {
                key.push_str("/...");
            }
            *parts.entry(key).or_default() += meta.blocks() * 512;
        }
    }
    let mut parts: Vec<(String, u64)> = parts.into_iter().collect();
    parts.sort_by_key(|b| std::cmp::Reverse(b.1));
    Ok(parts)
}
