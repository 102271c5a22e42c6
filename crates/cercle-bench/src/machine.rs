//! What machine the numbers come from: cores, CPU model, memory, kernel, and the file
//! system the data directories live on (fsync costs differ widely between them).

use std::path::Path;
use std::time::{Duration, Instant};

pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub memory_bytes: u64,
    pub kernel: String,
}

impl Machine {
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|rest| rest.split_once(':')))
            .map_or_else(|| "unknown".into(), |(_, model)| model.trim().to_string());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_bytes = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024);
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_bytes,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".into(), |s| s.trim().to_string()),
        }
    }
}

/// The file system holding `path`: "ext4 on /dev/vda (mounted at /)".
pub fn file_system(path: &Path) -> String {
    let Ok(path) = path.canonicalize() else { return "unknown".into() };
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let (device, mount_point, fs_type) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(mount_point).then_some((mount_point.len(), device, mount_point, fs_type))
        })
        .max_by_key(|(len, ..)| *len)
        .map_or_else(
            || "unknown".into(),
            |(_, device, mount_point, fs_type)| format!("{fs_type} on {device} (mounted at {mount_point})"),
        )
}

/// How long a small durable append takes on a file system.
pub struct SyncLatency {
    pub tries: usize,
    pub p50: Duration,
    pub p99: Duration,
}

/// Appends 4 KiB and calls `fdatasync`, `SYNC_TRIES` times, in a temporary file under
/// `dir`: the cost every durable group of the node (and every PostgreSQL commit) pays.
pub fn sync_latency(dir: &Path) -> anyhow::Result<SyncLatency> {
    use std::io::Write;
    const SYNC_TRIES: usize = 200;
    let mut file = tempfile::tempfile_in(dir)?;
    let block = [0x5au8; 4096];
    let mut times = Vec::with_capacity(SYNC_TRIES);
    for _ in 0..SYNC_TRIES {
        let started = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(SyncLatency { tries: SYNC_TRIES, p50: times[SYNC_TRIES / 2], p99: times[SYNC_TRIES * 99 / 100] })
}

/// The 1, 5 and 15 minute load averages, as the kernel prints them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
