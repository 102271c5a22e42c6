//! Where a phase's time went, from `/proc`: the CPU time of the server (the node by
//! thread name, or every PostgreSQL process), of the bench itself and of the whole machine,
//! and the bytes the server sent to storage. Whatever the machine spent beyond the bench
//! and the server was spent by other processes, which the report shows.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The server measured during a phase.
#[derive(Clone, Copy)]
pub enum Server {
    /// The node's process, by pid.
    Node(u32),
    /// Every process named `postgres`.
    Postgres,
}

impl Server {
    pub fn name(self) -> &'static str {
        match self {
            Server::Node(_) => "node",
            Server::Postgres => "postgres",
        }
    }

    fn sample(self) -> Option<Sample> {
        match self {
            Server::Node(pid) => sample_process(&pid.to_string()),
            Server::Postgres => Some(sample_named("postgres")),
        }
    }
}

/// Resources used so far by one process or a group of processes.
struct Sample {
    /// User plus system time; for one process, its exited threads included.
    total: Duration,
    /// Bytes sent to storage (`write_bytes` of `/proc/<pid>/io`), when readable.
    written_bytes: Option<u64>,
    /// Per live thread, or per process of a group (by id): its name and CPU time.
    parts: BTreeMap<u32, (String, Duration)>,
}

/// What a process or group used between two samples.
pub struct Usage {
    pub total: Duration,
    pub written_bytes: Option<u64>,
    /// CPU time by thread name, largest first; threads that ended between the samples are
    /// counted in `total` only.
    pub by_name: Vec<(String, Duration)>,
}

fn ticks_per_sec() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

/// A `/proc/.../stat` line: the name, own user + system time, and that of the children
/// it has waited for.
fn parse_stat(stat: &str) -> Option<(String, Duration, Duration)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    // After the name: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let ticks = |i: usize| -> Option<u64> { fields.get(i)?.parse().ok() };
    let time = |t: u64| Duration::from_micros(t * 1_000_000 / ticks_per_sec());
    Some((name, time(ticks(11)? + ticks(12)?), time(ticks(13)? + ticks(14)?)))
}

fn read_stat(path: &str) -> Option<(String, Duration, Duration)> {
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

fn written_bytes(pid: &str) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines().find_map(|l| l.strip_prefix("write_bytes:")).and_then(|v| v.trim().parse().ok())
}

/// One process ("self" for the bench), thread by thread; `None` if it is gone.
fn sample_process(pid: &str) -> Option<Sample> {
    let (_, total, _) = read_stat(&format!("/proc/{pid}/stat"))?;
    let mut parts = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.filter_map(Result::ok) {
        let Ok(tid) = task.file_name().to_string_lossy().parse::<u32>() else { continue };
        if let Some((name, time, _)) = read_stat(&task.path().join("stat").to_string_lossy()) {
            parts.insert(tid, (name, time));
        }
    }
    Some(Sample { total, written_bytes: written_bytes(pid), parts })
}

/// Every process called `name`, summed, with the children they waited for (so a
/// PostgreSQL backend that ended still counts, in the postmaster's children time).
fn sample_named(name: &str) -> Sample {
    let mut parts = BTreeMap::new();
    let mut written = None;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Some((comm, time, children)) = read_stat(&format!("/proc/{pid}/stat")) else { continue };
        if comm == name {
            parts.insert(pid, (comm, time + children));
            if let Some(w) = written_bytes(&pid.to_string()) {
                *written.get_or_insert(0) += w;
            }
        }
    }
    Sample { total: parts.values().map(|(_, t)| *t).sum(), written_bytes: written, parts }
}

impl Sample {
    /// What was used from `self` to `later`. For a group, processes that started in
    /// between count in full and processes that ended are lost.
    fn until(&self, later: &Sample, group: bool) -> Usage {
        let mut by_name: BTreeMap<String, Duration> = BTreeMap::new();
        let mut parts_total = Duration::ZERO;
        for (id, (name, time)) in &later.parts {
            let before = self.parts.get(id).map_or(Duration::ZERO, |(_, t)| *t);
            let used = time.saturating_sub(before);
            parts_total += used;
            *by_name.entry(name.clone()).or_default() += used;
        }
        let mut by_name: Vec<(String, Duration)> =
            by_name.into_iter().filter(|(_, t)| !t.is_zero()).collect();
        by_name.sort_by_key(|b| std::cmp::Reverse(b.1));
        Usage {
            total: if group { parts_total } else { later.total.saturating_sub(self.total) },
            written_bytes: later.written_bytes.zip(self.written_bytes).map(|(l, e)| l.saturating_sub(e)),
            by_name,
        }
    }
}

/// CPU time process `pid` has used so far (user plus system, exited threads included).
pub fn process_cpu(pid: u32) -> Option<Duration> {
    Some(sample_process(&pid.to_string())?.total)
}

/// CPU time the whole machine spent busy (not idle, not waiting for I/O) so far.
pub fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
    let busy: u64 =
        fields.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    Some(Duration::from_micros(busy * 1_000_000 / ticks_per_sec()))
}

/// Resources used during one phase.
pub struct PhaseCpu {
    pub phase: String,
    /// From `Meter::start` to `Meter::stop`.
    pub wall: Duration,
    /// Transfers (or verifications) done in that time.
    pub transfers: u64,
    pub machine_busy: Option<Duration>,
    /// The server's name and what it used.
    pub server: Option<(&'static str, Usage)>,
    pub bench: Option<Usage>,
}

/// Samples taken when a phase starts.
pub struct Meter {
    started: Instant,
    machine: Option<Duration>,
    server: Option<(Server, Sample)>,
    bench: Option<Sample>,
}

impl Meter {
    /// Starts measuring the machine, the bench and `server` (none: the bench alone).
    pub fn start(server: Option<Server>) -> Meter {
        Meter {
            started: Instant::now(),
            machine: machine_busy(),
            server: server.and_then(|s| Some((s, s.sample()?))),
            bench: sample_process("self"),
        }
    }

    pub fn stop(self, phase: &str, transfers: u64) -> PhaseCpu {
        let server = self.server.and_then(|(server, then)| {
            let now = server.sample()?;
            Some((server.name(), then.until(&now, matches!(server, Server::Postgres))))
        });
        PhaseCpu {
            phase: phase.to_string(),
            wall: self.started.elapsed(),
            transfers,
            machine_busy: machine_busy().zip(self.machine).map(|(now, then)| now.saturating_sub(then)),
            server,
            bench: self.bench.zip(sample_process("self")).map(|(then, now)| then.until(&now, false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_spaces_and_parentheses_in_the_name() {
        let tick = Duration::from_micros(1_000_000 / ticks_per_sec());
        let line = "42 (tokio (w) 1) S 1 2 3 4 5 6 7 8 9 10 30 12 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some(("tokio (w) 1".to_string(), tick * 42, Duration::ZERO)));
        assert_eq!(parse_stat("garbage"), None);
    }
}
