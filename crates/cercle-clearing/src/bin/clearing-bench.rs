//! `clearing-bench`: generates invoice networks of growing size, clears them (stage 1, and stage 2
//! with generated headroom), checks the certificates, and prints a table of sizes, amounts,
//! times and peak memory.
//!
//! Each size runs in a fresh process (this binary again, with `--size N --firms F`), so the peak
//! resident memory (VmHWM, which only ever grows) reported for a size is its own. Everything
//! runs on one thread. Run it with `cargo run --release -p cercle-clearing --bin clearing-bench`;
//! `--size N` runs one size, with a firm per ten obligations (CI's smoke run).

use std::process::{Command, ExitCode};
use std::time::Instant;

use cercle_clearing::generate::{Spec, headroom, invoices};
use cercle_clearing::{
    Pair, aggregate, check_setoff, check_with_credit, components, net_positions, solve_setoff,
    solve_with_credit,
};

/// The default sizes: (obligations, firms).
const SIZES: [(u32, u32); 4] = [(10_000, 1_000), (100_000, 10_000), (300_000, 40_000), (1_000_000, 100_000)];
const SEED: u64 = 2021;

const HEADER: [&str; 14] = [
    "obligations",
    "firms",
    "pairs",
    "largest SCC",
    "total debt",
    "net internal debt",
    "cleared",
    "% cleared",
    "solve s",
    "check s",
    "credit cleared",
    "credit solve s",
    "credit check s",
    "peak RSS MiB",
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [] => run_all(),
        [size_flag, size, firms_flag, firms] if size_flag == "--size" && firms_flag == "--firms" => {
            match (size.parse(), firms.parse()) {
                (Ok(size), Ok(firms)) => run_one(size, firms).map(|row| println!("{row}")),
                _ => Err(format!("bad size or firm count: {size} {firms}")),
            }
        }
        // One size with a firm for every ten obligations, as the table's sizes have, headed.
        [size_flag, size] if size_flag == "--size" => match size.parse::<u32>() {
            Ok(size) => {
                run_one(size, (size / 10).max(2)).map(|r| println!("{}\n{r}", row(&HEADER.map(String::from))))
            }
            Err(_) => Err(format!("bad size: {size}")),
        },
        _ => Err("usage: clearing-bench [--size OBLIGATIONS [--firms FIRMS]]".to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the machine and the table, one child process per row.
fn run_all() -> Result<(), String> {
    println!("machine: {}, {} cores, {} memory", cpu_model(), cores(), mem_total());
    println!("seed {SEED}; one thread; times in seconds; amounts in minor units");
    println!();
    println!("{}", row(&HEADER.map(String::from)));
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    for (size, firms) in SIZES {
        let out = Command::new(&exe)
            .args(["--size", &size.to_string(), "--firms", &firms.to_string()])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
        if !out.status.success() {
            return Err(format!("size {size} failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    Ok(())
}

/// Generates, solves and checks one size and returns its table row.
fn run_one(size: u32, firms: u32) -> Result<String, String> {
    let obligations = invoices(&Spec { firms, obligations: size, seed: SEED });

    let start = Instant::now();
    let pairs = aggregate(obligations.iter().copied());
    let setoff = solve_setoff(firms, &pairs).map_err(|e| e.to_string())?;
    let solve_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    check_setoff(firms, &pairs, &setoff).map_err(|e| e.to_string())?;
    let check_s = start.elapsed().as_secs_f64();

    let component = components(firms, &pairs).map_err(|e| e.to_string())?;
    let mut size_of = vec![0u32; firms as usize];
    for &c in &component {
        size_of[c as usize] += 1;
    }
    let largest = size_of.iter().max().copied().unwrap_or(0);
    let total: i128 = pairs.iter().map(|p| p.amount).sum();
    let net: i128 = net_positions(firms, &pairs).into_iter().filter(|&n| n > 0).sum();
    let cleared: i128 = setoff.cleared.iter().sum();

    // Stage 2 on what stage 1 left.
    let left: Vec<Pair> = pairs
        .iter()
        .zip(&setoff.cleared)
        .filter(|(p, c)| p.amount > **c)
        .map(|(p, c)| Pair { amount: p.amount - c, ..*p })
        .collect();
    let room = headroom(firms, &obligations, SEED);
    let start = Instant::now();
    let credit = solve_with_credit(firms, &left, &room).map_err(|e| e.to_string())?;
    let credit_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    check_with_credit(firms, &left, &room, &credit).map_err(|e| e.to_string())?;
    let credit_check_s = start.elapsed().as_secs_f64();
    let credit_cleared: i128 = credit.cleared.iter().sum();

    Ok(row(&[
        thousands(size.into()),
        thousands(firms.into()),
        thousands(pairs.len() as i128),
        thousands(largest.into()),
        thousands(total),
        thousands(net),
        thousands(cleared),
        format!("{:.1}", percent(cleared, total)),
        format!("{solve_s:.3}"),
        format!("{check_s:.3}"),
        thousands(credit_cleared),
        format!("{credit_s:.3}"),
        format!("{credit_check_s:.3}"),
        peak_rss_mib(),
    ]))
}

fn row(cells: &[String; 14]) -> String {
    let widths = [11, 8, 9, 11, 20, 20, 20, 9, 8, 8, 18, 14, 14, 12];
    let mut line = String::new();
    for (cell, width) in cells.iter().zip(widths) {
        line.push_str(&format!("{cell:>width$} "));
    }
    line.trim_end().to_string()
}

/// `part / whole` in percent, for display only.
fn percent(part: i128, whole: i128) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 }
}

fn thousands(n: i128) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn proc_field(file: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

fn peak_rss_mib() -> String {
    proc_field("/proc/self/status", "VmHWM")
        .and_then(|v| v.trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or_else(|| "?".to_string(), |kib| format!("{:.0}", kib as f64 / 1024.0))
}

fn cpu_model() -> String {
    proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown CPU".to_string())
}

fn cores() -> String {
    std::thread::available_parallelism().map_or_else(|_| "?".to_string(), |n| n.to_string())
}

fn mem_total() -> String {
    proc_field("/proc/meminfo", "MemTotal")
        .and_then(|v| v.trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or_else(|| "?".to_string(), |kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
}
