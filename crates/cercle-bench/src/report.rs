//! The printed result: one table of throughput and latency, the ceiling and the ratios,
//! the clearing scenario's measurements, the node's memory, disk and restart figures, and
//! the targets marked met or missed.

use std::time::Duration;

use cercle_core::format_minor;

use crate::ceiling::Ceiling;
use crate::clearing::{ClearingReport, LOAD_CLIENTS, LOAD_PER_SEC, Restarted, Run, stage};
use crate::cpu::PhaseCpu;
use crate::load::{PhaseResult, Timed};
use crate::postgres::Settings;

pub struct PostgresReport {
    pub settings: Settings,
    /// (e1): the transfers of (a), one transaction each.
    pub uniform: PhaseResult,
    /// (e2): the transfers of (c), one transaction each.
    pub hot: PhaseResult,
    /// (e3): the transfers of (b), in transactions of the batch size.
    pub batched: PhaseResult,
}

/// Bytes the node's data directory takes for a log of `entries`.
pub struct Disk {
    pub entries: u64,
    pub apparent_bytes: u64,
    pub allocated_bytes: u64,
}

impl Disk {
    pub fn per_entry(&self) -> f64 {
        self.allocated_bytes as f64 / self.entries.max(1) as f64
    }
}

pub struct Restart {
    pub entries: u64,
    pub stop: Duration,
    pub listening: Duration,
    pub answering: Duration,
    pub peak_memory_bytes: u64,
}

/// The overload phase (g): the same requests from a few clients, then from many.
pub struct OverloadReport {
    pub batch: usize,
    pub secs: u64,
    pub reference_clients: usize,
    pub clients: usize,
    /// (g1): what the node accepts when not overloaded.
    pub reference: Timed,
    /// (g2): what it accepts when offered far more.
    pub overloaded: Timed,
}

pub struct Report {
    pub clients: usize,
    pub batch: usize,
    pub batch_clients: usize,
    pub hot_percent: u32,
    pub unary: PhaseResult,
    pub batched: PhaseResult,
    pub hot: PhaseResult,
    /// The overload phase (g), unless skipped.
    pub overload: Option<OverloadReport>,
    pub ceiling: Ceiling,
    pub postgres: Option<PostgresReport>,
    /// The clearing scenario (f), unless skipped.
    pub clearing: Option<ClearingReport>,
    pub peak_memory_phases_bytes: u64,
    pub peak_memory_fill_bytes: u64,
    pub disk_phases: Disk,
    pub disk_restart: Disk,
    /// The transfers added to reach the restart size, if any were needed.
    pub fill: Option<PhaseResult>,
    pub restart: Restart,
    pub cores: usize,
    /// CPU use during each phase.
    pub cpu: Vec<PhaseCpu>,
    /// Where the node's bytes are at restart, largest first.
    pub disk_components: Vec<(String, u64)>,
}

/// Column width of the phase names.
const NAME_WIDTH: usize = 54;
/// Parts of the data directory to name.
const DISK_PARTS_SHOWN: usize = 6;
/// Node threads to name per phase.
const THREADS_SHOWN: usize = 4;
/// Cores used by other processes during a phase above which the report warns.
const REST_CORES_WARN: f64 = 0.25;

/// Target: the node's batch throughput as a share of the verification ceiling.
const TARGET_CEILING_SHARE: f64 = 0.5;
/// Target: unary throughput and its p99.
const TARGET_UNARY_PER_SEC: f64 = 10_000.0;
const TARGET_UNARY_P99_US: u64 = 25_000;
/// Target: how many times PostgreSQL's throughput.
const TARGET_POSTGRES_FACTOR: f64 = 5.0;
/// Target: bytes on disk per transfer.
const TARGET_BYTES_PER_TRANSFER: f64 = 512.0;
/// Target: what the node accepts when overloaded, as a share of what it accepts when not.
const TARGET_OVERLOAD_SHARE: f64 = 0.8;
/// Target: a restart on 1,000,000 entries, until the node answers.
const TARGET_RESTART: Duration = Duration::from_secs(2);
/// The log size the restart target is set for.
const TARGET_RESTART_ENTRIES: u64 = 1_000_000;
/// Target: the longest a transfer waits behind a clearing run (300,000 invoices among
/// 10,000 firms), in microseconds.
const TARGET_CLEARING_WAIT_US: u64 = 100_000;

impl Report {
    fn restart_target(&self) {
        let r = &self.restart;
        let text = format!(
            "restart on {} entries until the node answers <= 2 s: {} on {} entries",
            group(TARGET_RESTART_ENTRIES),
            secs(r.answering),
            group(r.entries)
        );
        if r.entries >= TARGET_RESTART_ENTRIES {
            target(r.answering <= TARGET_RESTART, &text);
        } else {
            println!("  [not measured] {text} (fewer entries than the target's)");
        }
    }

    fn clearing_target(&self) {
        let Some(c) = &self.clearing else {
            println!("  [not measured] a transfer waits <= 100 ms behind a clearing run");
            return;
        };
        let waits: Vec<String> = c
            .runs
            .iter()
            .map(|r| {
                let kind = if r.with_credit { "with credit" } else { "set-off" };
                format!("{kind} {} ms", ms(r.load.during_us.max()))
            })
            .collect();
        let worst = c.runs.iter().map(|r| r.load.during_us.max()).max().unwrap_or(0);
        let text = format!(
            "a transfer waits <= 100 ms behind a clearing run of 300,000 invoices: at {} invoices among {} firms, worst {}",
            group(c.network.invoices as u64),
            group(c.network.firms as u64),
            waits.join(", ")
        );
        if c.network.invoices >= 300_000 && !c.runs.is_empty() {
            target(worst <= TARGET_CLEARING_WAIT_US, &text);
        } else {
            println!("  [not measured] {text} (fewer invoices than the target's)");
        }
    }

    pub fn print(&self) {
        let rows_title = format!(
            "{:<NAME_WIDTH$} {:>11} {:>8} {:>8} {:>9} {:>7} {:>10} {:>8} {:>7}",
            "", "transfers/s", "p50 ms", "p99 ms", "p99.9 ms", "wall s", "accepted", "rejected", "busy"
        );
        println!();
        println!("{rows_title}");
        println!("{}", "-".repeat(rows_title.len()));
        let c = self.clients;
        row(&format!("(a)  Submit, {c} clients"), &self.unary);
        row(
            &format!(
                "(b)  SubmitBatch of {}, {} clients (latency per batch)",
                self.batch, self.batch_clients
            ),
            &self.batched,
        );
        row(&format!("(c)  Submit, {c} clients, {}% touch one hot account", self.hot_percent), &self.hot);
        if let Some(g) = &self.overload {
            let what = format!("SubmitBatch of {}, {} s", g.batch, g.secs);
            row(
                &format!("(g1) {what}, {} clients (latency per request)", g.reference_clients),
                &g.reference.result,
            );
            row(&format!("(g2) {what}, {} clients, no pause", g.clients), &g.overloaded.result);
        }
        if let Some(pg) = &self.postgres {
            row(&format!("(e1) PostgreSQL, {c} connections, as (a)"), &pg.uniform);
            row(&format!("(e2) PostgreSQL, {c} connections, as (c)"), &pg.hot);
            row(
                &format!(
                    "(e3) PostgreSQL, {} per transaction, {} conns, as (b)",
                    self.batch, self.batch_clients
                ),
                &pg.batched,
            );
        } else {
            println!("(e)  PostgreSQL: skipped (--skip-postgres)");
        }
        if let Some(fill) = &self.fill {
            row(&format!("     fill to {} entries (signing included)", group(self.restart.entries)), fill);
        }
        if let Some(f) = &self.clearing {
            let b = format!("SubmitBatch of {}, {} clients", self.batch, self.batch_clients);
            row(&format!("(f1) IssueInvoice, {b}"), &f.issue);
            row(&format!("(f2) AcceptInvoice, {b}"), &f.accept);
        }
        println!();
        let d = &self.ceiling;
        println!(
            "(d)  ceiling: strict ed25519 verification (verify_strict), {} threads, no I/O: {} verifications/s",
            d.threads,
            group_f(d.per_sec())
        );
        let ceiling_cpu = self.cpu.iter().find(|c| c.phase == "(d)").and_then(|c| c.bench.as_ref());
        if let Some(usage) = ceiling_cpu.filter(|u| !u.total.is_zero()) {
            let per_core = d.verifications as f64 / usage.total.as_secs_f64();
            println!(
                "     from its CPU time: {} verifications/s per core, so {} verifications/s on {} idle cores \
                 (what (d) would be if nothing else ran)",
                group_f(per_core),
                group_f(per_core * self.cores as f64),
                self.cores
            );
        }
        if d.failures > 0 {
            println!("     WARNING: {} signatures did not verify", group(d.failures));
        }
        println!(
            "     (b) is {:.1}% of (d); (a) is {:.1}% of (d)",
            100.0 * self.batched.per_sec() / d.per_sec(),
            100.0 * self.unary.per_sec() / d.per_sec()
        );
        if let Some(pg) = &self.postgres {
            let (e1, e2, e3) = (pg.uniform.per_sec(), pg.hot.per_sec(), pg.batched.per_sec());
            println!(
                "     vs PostgreSQL, like for like: (a)/(e1) = {:.2}x (one transfer per request or transaction), \
                 (b)/(e3) = {:.2}x ({} transfers per request or transaction), (c)/(e2) = {:.2}x",
                self.unary.per_sec() / e1,
                self.batched.per_sec() / e3,
                self.batch,
                self.hot.per_sec() / e2
            );
            println!(
                "     (b)/(e1) = {:.2}x compares batches with single transactions: not like for like",
                self.batched.per_sec() / e1
            );
            let s = &pg.settings;
            println!(
                "     PostgreSQL {}: fsync = {}, synchronous_commit = {}, wal_sync_method = {}, \
                 shared_buffers = {}; (e1) and (e2) one transaction per transfer, (e3) one per {} \
                 (the batch's accounts locked first, in id order)",
                s.version, s.fsync, s.synchronous_commit, s.wal_sync_method, s.shared_buffers, self.batch
            );
            println!("     note: the PostgreSQL path verifies no signatures, which favours PostgreSQL");
        }
        match &self.overload {
            Some(g) => print_overload(g),
            None => println!("(g)  overload: skipped (--skip-overload)"),
        }
        println!();
        match &self.clearing {
            Some(f) => print_clearing(f),
            None => {
                println!();
                println!("(f)  clearing: skipped (--skip-clearing)");
            }
        }
        println!();
        println!(
            "node peak memory (VmHWM): {} after (a)-(c), {} after the fill, {} after restarting",
            bytes(self.peak_memory_phases_bytes),
            bytes(self.peak_memory_fill_bytes),
            bytes(self.restart.peak_memory_bytes)
        );
        for (when, disk) in [("after (a)-(c)", &self.disk_phases), ("at restart", &self.disk_restart)] {
            println!(
                "node data on disk {when}: {} allocated ({} apparent) for {} entries = {:.0} bytes/entry",
                bytes(disk.allocated_bytes),
                bytes(disk.apparent_bytes),
                group(disk.entries),
                disk.per_entry()
            );
        }
        let total: u64 = self.disk_components.iter().map(|(_, b)| b).sum();
        let parts: Vec<String> = self
            .disk_components
            .iter()
            .take(DISK_PARTS_SHOWN)
            .map(|(name, b)| {
                format!("{name} {} ({:.0}%)", bytes(*b), 100.0 * *b as f64 / total.max(1) as f64)
            })
            .collect();
        println!("     where it is: {}", parts.join(", "));
        let r = &self.restart;
        println!(
            "restart on a log of {} entries: stopped (SIGINT) in {}; printed `listening on` after {}, \
             answered GetLedgerInfo after {}",
            group(r.entries),
            secs(r.stop),
            secs(r.listening),
            secs(r.answering)
        );
        self.print_cpu();
        println!();
        println!("targets:");
        let ceiling_share = self.batched.per_sec() / d.per_sec();
        target(
            ceiling_share >= TARGET_CEILING_SHARE,
            &format!("(b) >= 50% of (d): {:.1}%", 100.0 * ceiling_share),
        );
        let p99 = self.unary.latency_us.value_at_quantile(0.99);
        target(
            self.unary.per_sec() >= TARGET_UNARY_PER_SEC && p99 <= TARGET_UNARY_P99_US,
            &format!(
                "(a) >= 10,000 transfers/s with p99 <= 25 ms: {} transfers/s, p99 {} ms",
                group_f(self.unary.per_sec()),
                ms(p99)
            ),
        );
        match &self.postgres {
            Some(pg) => {
                let fa = self.unary.per_sec() / pg.uniform.per_sec();
                let fb = self.batched.per_sec() / pg.batched.per_sec();
                target(
                    fa >= TARGET_POSTGRES_FACTOR && fb >= TARGET_POSTGRES_FACTOR,
                    &format!(
                        "(a) >= 5x (e1) and (b) >= 5x (e3), PostgreSQL like for like: {fa:.2}x and {fb:.2}x"
                    ),
                );
            }
            None => println!("  [not measured] (a) and (b) >= 5x PostgreSQL"),
        }
        let per_entry = self.disk_restart.per_entry();
        target(
            per_entry <= TARGET_BYTES_PER_TRANSFER,
            &format!(
                "<= 512 bytes on disk per transfer: {per_entry:.0} bytes/entry at {} entries",
                group(self.disk_restart.entries)
            ),
        );
        self.restart_target();
        self.clearing_target();
        match &self.overload {
            Some(g) => {
                let (reference, overloaded) = (&g.reference.result, &g.overloaded.result);
                let share = overloaded.per_sec() / reference.per_sec().max(1e-9);
                target(
                    share >= TARGET_OVERLOAD_SHARE,
                    &format!(
                        "(g2) overloaded >= 80% of (g1) unloaded: {} vs {} transfers/s ({:.1}%), p99 of accepted requests {} ms",
                        group_f(overloaded.per_sec()),
                        group_f(reference.per_sec()),
                        100.0 * share,
                        ms(overloaded.latency_us.value_at_quantile(0.99))
                    ),
                );
            }
            None => println!("  [not measured] (g2) overloaded >= 80% of (g1) unloaded"),
        }
        let rejected: u64 = self.node_phases().iter().map(|(_, p)| p.rejected).sum();
        if rejected > 0 {
            println!();
            println!("WARNING: the node refused {rejected} operations; every operation should be accepted.");
        }
        for (name, p) in self.node_phases() {
            if let Some(why) = &p.first_rejection {
                println!("  {name}: first refusal: {why}");
            }
            if p.duplicates > 0 || p.internal_retries > 0 {
                println!(
                    "  {name}: {} duplicate receipts, {} retries after INTERNAL",
                    p.duplicates, p.internal_retries
                );
            }
        }
        if let Some(pg) = &self.postgres {
            for (name, p) in [("(e1)", &pg.uniform), ("(e2)", &pg.hot), ("(e3)", &pg.batched)] {
                if let Some(why) = &p.first_rejection {
                    println!("  {name}: {} refused; first: {why}", group(p.rejected));
                }
                if p.internal_retries > 0 {
                    println!(
                        "  {name}: {} retries after deadlock or serialization failure",
                        p.internal_retries
                    );
                }
            }
        }
    }
}

impl Report {
    /// Every phase that sent operations to the node, by name.
    fn node_phases(&self) -> Vec<(&'static str, &PhaseResult)> {
        let mut phases = vec![("(a)", &self.unary), ("(b)", &self.batched), ("(c)", &self.hot)];
        phases.extend(self.fill.iter().map(|f| ("fill", f)));
        if let Some(g) = &self.overload {
            phases.extend([("(g1)", &g.reference.result), ("(g2)", &g.overloaded.result)]);
        }
        if let Some(f) = &self.clearing {
            phases.extend([("(f1)", &f.issue), ("(f2)", &f.accept)]);
            phases.extend(f.runs.iter().map(|r| ("(f) transfers during a run", &r.load.all)));
        }
        phases
    }

    /// What makes this run's numbers untrustworthy: every planned operation must be
    /// accepted (the workload is built so that none can be refused), every signature must
    /// verify, every clearing step must succeed. A missed target is not a fault.
    pub fn faults(&self) -> Vec<String> {
        let mut faults = Vec::new();
        for (name, p) in self.node_phases() {
            if p.rejected > 0 {
                let why = p.first_rejection.as_deref().unwrap_or("no reason given");
                faults.push(format!(
                    "{name}: the node refused {} operations (first: {why})",
                    group(p.rejected)
                ));
            }
        }
        if self.ceiling.failures > 0 {
            faults.push(format!("(d): {} signatures did not verify", group(self.ceiling.failures)));
        }
        if let Some(pg) = &self.postgres {
            for (name, p) in [("(e1)", &pg.uniform), ("(e2)", &pg.hot), ("(e3)", &pg.batched)] {
                if p.rejected > 0 {
                    let why = p.first_rejection.as_deref().unwrap_or("no reason given");
                    faults.push(format!(
                        "{name}: PostgreSQL refused {} transfers (first: {why})",
                        group(p.rejected)
                    ));
                }
            }
        }
        if let Some(f) = &self.clearing {
            for plan in &f.plans {
                if let Err(why) = &plan.outcome {
                    faults.push(format!("(f) PlanClearing, {}: {why}", stage(plan.with_credit)));
                }
            }
            for run in &f.runs {
                match &run.outcome {
                    Err(why) => {
                        faults.push(format!("(f) RunClearing, {}: refused: {why}", stage(run.with_credit)))
                    }
                    Ok(done) => {
                        if let Err(why) = &done.entry {
                            faults.push(format!(
                                "(f) RunClearing, {}: entry not read back: {why}",
                                stage(run.with_credit)
                            ));
                        }
                    }
                }
            }
            if let Err(why) = &f.replay {
                faults.push(format!("(f) replay: {why}"));
            }
            if let Err(why) = &f.audit {
                faults.push(format!("(f) audit: {why}"));
            }
        }
        faults
    }

    fn print_cpu(&self) {
        println!();
        println!(
            "resources during each phase: CPU in cores busy (CPU time / wall time; the machine has {}), \
             'rest' is every other process; bytes the server sent to storage per transfer:",
            self.cores
        );
        let mut busy_rest = Vec::new();
        for c in &self.cpu {
            let wall = c.wall.as_secs_f64().max(1e-9);
            let cores = |d: Duration| d.as_secs_f64() / wall;
            let per_transfer = |x: f64| x / c.transfers.max(1) as f64;
            let mut line = format!("  {:<5}", c.phase);
            let server_total = c.server.as_ref().map_or(Duration::ZERO, |(_, u)| u.total);
            let bench_total = c.bench.as_ref().map_or(Duration::ZERO, |b| b.total);
            if let Some(busy) = c.machine_busy {
                let rest = busy.saturating_sub(server_total + bench_total);
                line += &format!(" machine {:.2} = bench {:.2}", cores(busy), cores(bench_total));
                if let Some((name, _)) = &c.server {
                    line += &format!(" + {name} {:.2}", cores(server_total));
                }
                line += &format!(" + rest {:.2}", cores(rest));
                if cores(rest) > REST_CORES_WARN {
                    busy_rest.push(c.phase.as_str());
                }
            }
            if let Some((name, usage)) = &c.server {
                line += &format!(
                    " | {name} CPU {:.0} us/transfer",
                    per_transfer(usage.total.as_secs_f64() * 1e6)
                );
                if let Some(written) = usage.written_bytes {
                    line += &format!(", wrote {:.0} bytes/transfer", per_transfer(written as f64));
                }
                if *name == "node" {
                    let threads: Vec<String> = usage
                        .by_name
                        .iter()
                        .take(THREADS_SHOWN)
                        .map(|(thread, t)| format!("{thread} {:.2}", cores(*t)))
                        .collect();
                    line += &format!(" | node threads: {}", threads.join(", "));
                }
            }
            println!("{line}");
        }
        if !busy_rest.is_empty() {
            println!(
                "  WARNING: other processes kept the CPU busy during {}: those numbers are pessimistic",
                busy_rest.join(", ")
            );
        }
    }
}

/// Section (g): the offered load, and what the node kept of its throughput.
fn print_overload(g: &OverloadReport) {
    let offered = |t: &Timed| t.offered as f64 / t.result.wall.as_secs_f64().max(1e-9);
    let (reference, overloaded) = (&g.reference, &g.overloaded);
    println!(
        "(g)  overload: {} clients each keep a SubmitBatch of {} in flight with no pause, resending what was \
         answered BUSY (at once after progress, else after 1-50 ms):",
        g.clients, g.batch
    );
    println!(
        "     offered {} envelopes/s ({:.0}x what (g1) accepted), {} answered BUSY; accepted {} transfers/s = {:.1}% \
         of (g1) with {} clients; p99 of accepted requests {} ms (g1: {} ms)",
        group_f(offered(overloaded)),
        offered(overloaded) / reference.result.per_sec().max(1e-9),
        group(overloaded.result.busy_retries),
        group_f(overloaded.result.per_sec()),
        100.0 * overloaded.result.per_sec() / reference.result.per_sec().max(1e-9),
        g.reference_clients,
        ms(overloaded.result.latency_us.value_at_quantile(0.99)),
        ms(reference.result.latency_us.value_at_quantile(0.99)),
    );
    for (name, t) in [("(g1)", reference), ("(g2)", overloaded)] {
        if t.ran_out {
            println!("     WARNING: {name} ran out of signed transfers before {} s", g.secs);
        }
    }
}

/// Column width of the clearing measurements' names.
const CLEARING_NAME_WIDTH: usize = 46;

/// Section (f): one line per measurement, `name  value`.
fn print_clearing(f: &ClearingReport) {
    let line = |name: &str, value: String| println!("     {name:<CLEARING_NAME_WIDTH$} {value}");
    let n = &f.network;
    let money = |minor: i128| money(minor, f.exponent, &f.currency);
    println!();
    println!(
        "(f)  clearing on the restarted node: {} invoices between {} of the {} firms (cercle_clearing::generate: \
         scale-free, value-chain tiers),",
        group(n.invoices as u64),
        group(n.firms as u64),
        group(n.firms_registered as u64),
    );
    println!(
        "     {} payable in the ledger's currency, the largest invoice {}; issued and accepted in rows (f1) and (f2) \
         above (operations/s), then:",
        money(n.local_minor),
        money(i128::from(n.largest_minor)),
    );
    print_restart(&line, "restart before the runs", &f.restart_before, None);
    for p in &f.plans {
        let name = format!("PlanClearing, {} (dry run)", stage(p.with_credit));
        match &p.outcome {
            Ok((s, bytes)) => line(
                &name,
                format!(
                    "{}, response {} bytes: {} obligations, {} firms; would clear {} by set-off + {} through credit \
                     of {} open ({:.1}%), changing {} firms",
                    secs3(p.wall),
                    group(*bytes as u64),
                    group(s.obligations),
                    group(s.firms),
                    money(i128::from(s.setoff_minor)),
                    money(i128::from(s.credit_minor)),
                    money(i128::from(s.total_debt_minor)),
                    percent(
                        i128::from(s.setoff_minor) + i128::from(s.credit_minor),
                        i128::from(s.total_debt_minor)
                    ),
                    group(s.firms_changed.len() as u64),
                ),
            ),
            Err(why) => line(&name, format!("FAILED after {}: {why}", secs3(p.wall))),
        }
    }
    for r in &f.runs {
        print_run(&line, &money, r);
    }
    print_restart(&line, "restart after the runs", &f.restart_after, Some(&f.restart_before));
    let name = "replay in the bench, as the node's start";
    match &f.replay {
        Ok(r) => {
            let clearing: Vec<String> = r
                .clearing
                .iter()
                .map(|(sequence, took)| {
                    format!("entry {} {} ms", group(*sequence), ms(took.as_micros() as u64))
                })
                .collect();
            line(
                name,
                format!(
                    "{} entries streamed and replayed (core Replayer, signatures trusted) in {}; \
                     the clearing entries' replays (record and certificate checks): {}",
                    group(r.entries),
                    secs(r.wall),
                    clearing.join(", ")
                ),
            );
        }
        Err(why) => line(name, format!("FAILED: {why}")),
    }
    let peak = format!(
        "{} (VmHWM since the restart before the runs, its replay included)",
        bytes(f.peak_memory_bytes)
    );
    line("node peak memory during the plans and runs", peak);
    match &f.audit {
        Ok(a) => line(
            "audit: StreamEntries + cercle_audit::verify",
            format!(
                "{} entries in {} = {} entries/s on {} threads (what `cercle audit verify` does against a node)",
                group(a.entries),
                secs(a.wall),
                group_f(a.entries as f64 / a.wall.as_secs_f64().max(1e-9)),
                a.threads
            ),
        ),
        Err(why) => line("audit: StreamEntries + cercle_audit::verify", format!("FAILED: {why}")),
    }
}

fn print_run(line: &impl Fn(&str, String), money: &impl Fn(i128) -> String, r: &Run) {
    let name = format!("RunClearing, {}: submit to receipt", stage(r.with_credit));
    let mut value = secs3(r.latency);
    if r.undecided > 0 {
        value += &format!(
            " ({} undecided answers before the receipt, the first: {})",
            r.undecided,
            r.first_undecided.as_deref().unwrap_or("")
        );
    }
    match &r.outcome {
        Err(why) => line(&name, format!("{value}; REFUSED: {why}")),
        Ok(done) => {
            let duplicate = if done.duplicate { ", a duplicate's receipt (no summary)" } else { "" };
            line(
                &name,
                format!(
                    "{value}, receipt {} bytes, entry {}{duplicate}",
                    group(done.receipt_bytes as u64),
                    group(done.sequence)
                ),
            );
            let c = &r.cpu;
            let cpu_secs = |d: Option<Duration>| d.map_or_else(|| "?".into(), secs3);
            line(
                "  the node meanwhile",
                format!(
                    "writer thread {} CPU, whole node {} CPU in {}; wrote {} to storage",
                    cpu_secs(c.writer),
                    cpu_secs(c.node),
                    secs3(c.wall),
                    c.written_bytes.map_or_else(|| "?".into(), bytes)
                ),
            );
            match &done.entry {
                Ok(e) => {
                    line(
                        "  its entry in entries.log",
                        format!(
                            "{} bytes ({}), of which the clearing record {} bytes; read back with GetInclusionProof \
                             in {} ({} bytes)",
                            group(e.log_record_bytes as u64),
                            bytes(e.log_record_bytes as u64),
                            group(e.record_bytes as u64),
                            secs3(e.read_wall),
                            group(e.response_bytes as u64)
                        ),
                    );
                    line(
                        "  cleared (from the entry)",
                        format!(
                            "{} invoices touched, {} of its {} firms changed; set-off {}, through credit {}",
                            group(e.invoices as u64),
                            group(e.firms_changed as u64),
                            group(e.firms as u64),
                            money(e.setoff_minor),
                            money(e.credit_minor)
                        ),
                    );
                }
                Err(why) => line("  its entry in entries.log", format!("not read back: {why}")),
            }
            if let Some(s) = &done.summary {
                line(
                    "  the receipt's summary",
                    format!(
                        "{} obligations of {} firms, {} open; set-off {}, through credit {}, paid into the circuit {}; \
                         net internal debt {} -> {}",
                        group(s.obligations),
                        group(s.firms),
                        money(i128::from(s.total_debt_minor)),
                        money(i128::from(s.setoff_minor)),
                        money(i128::from(s.credit_minor)),
                        money(i128::from(s.payments_minor)),
                        money(i128::from(s.net_internal_debt_minor)),
                        money(i128::from(s.net_internal_debt_after_minor))
                    ),
                );
            }
        }
    }
    let l = &r.load;
    let during = &l.during_us;
    let (before, all) = (&l.before_us, &l.all);
    let mut value = format!(
        "open loop, latency from when each was due: {} due while it ran: worst {} ms, p50 {} ms; worst of all {} ms; before it p50 {} ms, p99 {} ms; \
         {} accepted, {} refused, {} busy retries",
        group(during.len()),
        ms(during.max()),
        ms(during.value_at_quantile(0.5)),
        ms(all.latency_us.max()),
        ms(before.value_at_quantile(0.5)),
        ms(before.value_at_quantile(0.99)),
        group(all.accepted),
        group(all.rejected),
        group(all.busy_retries)
    );
    if l.ran_out {
        value += "; WARNING: the signed transfers ran out before the run ended";
    }
    line(&format!("  transfers meanwhile ({LOAD_PER_SEC}/s, {LOAD_CLIENTS} clients)"), value);
}

fn print_restart(line: &impl Fn(&str, String), name: &str, r: &Restarted, before: Option<&Restarted>) {
    let mut value = format!(
        "answered GetLedgerInfo after {} (`listening on` after {}; stopped in {})",
        secs(r.answering),
        secs(r.listening),
        secs(r.stop)
    );
    if let Some(b) = before {
        value += &format!(
            ", {:+.2} s for {} more entries",
            r.answering.as_secs_f64() - b.answering.as_secs_f64(),
            group(r.entries.saturating_sub(b.entries))
        );
    }
    if let Some(cpu) = r.node_cpu {
        value += &format!("; node CPU {}", secs(cpu));
    }
    if let Some(rest) = r.rest_cores {
        value += &format!(", other processes {rest:.2} cores");
    }
    if let Some(said) = &r.node_said {
        value += &format!("; the node: \"{said}\"");
    }
    line(&format!("{name}, {} entries", group(r.entries)), value);
}

/// Minor units in the ledger's currency: "1,250.00 CHW".
fn money(minor: i128, exponent: u8, currency: &str) -> String {
    match i64::try_from(minor) {
        Ok(m) => format!("{} {currency}", format_minor(m, exponent)),
        Err(_) => format!("{minor} minor units of {currency}"),
    }
}

fn percent(part: i128, whole: i128) -> f64 {
    if whole == 0 { 0.0 } else { 100.0 * part as f64 / whole as f64 }
}

fn row(name: &str, p: &PhaseResult) {
    let h = &p.latency_us;
    println!(
        "{:<NAME_WIDTH$} {:>11} {:>8} {:>8} {:>9} {:>7.1} {:>10} {:>8} {:>7}",
        name,
        group_f(p.per_sec()),
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        p.wall.as_secs_f64(),
        group(p.accepted),
        group(p.rejected),
        group(p.busy_retries)
    );
}

fn target(met: bool, text: &str) {
    println!("  [{}] {text}", if met { "met" } else { "missed" });
}

/// Microseconds as milliseconds with two decimals.
fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn secs3(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

pub fn bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n as f64 >= 1024.0 * MIB {
        format!("{:.2} GiB", n as f64 / (1024.0 * MIB))
    } else {
        format!("{:.1} MiB", n as f64 / MIB)
    }
}

/// An integer with thousands separators: 1,234,567.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn group_f(x: f64) -> String {
    group(x.round().max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        let check = |n: u64, expected: &str| assert_eq!(group(n), expected);
        check(0, "0");
        check(999, "999");
        check(1_000, "1,000");
        check(1_234_567, "1,234,567");
    }
}
