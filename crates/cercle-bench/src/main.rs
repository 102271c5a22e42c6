//! `cercle-bench`: measures the real `cercle-node` over gRPC on loopback and prints a table.
//!
//! It starts the release node as a child process on a fresh ledger, registers the accounts,
//! and runs, each with transfers signed before the clock starts: (a) unary `Submit` from
//! many clients, (b) `SubmitBatch`, (c) a mix where one account takes part in 10% of the
//! transfers; then (d) the machine's ceiling, strict ed25519 verification on every core;
//! then fills the log to `--restart-entries` and times a restart; (f) on the restarted
//! node, issues and accepts an invoice network, then times clearing plans and runs (while
//! transfers keep arriving), a restart and an auditor's replay (`clearing`); (e) runs
//! the same transfers on PostgreSQL, one transaction per transfer as (a) and (c) send them,
//! and in transactions of the batch size as (b) sends them; and (g), after (c), sends
//! `SubmitBatch` of 1,000 for a fixed time from a few clients, then from many with no pause,
//! to see what the node keeps of its throughput when offered far more than it can take. It
//! is a program that prints numbers; it exits non-zero when a number cannot be trusted (the
//! node refused an operation, a signature did not verify, a clearing step failed), never for
//! a missed target.

mod ceiling;
mod clearing;
mod cpu;
mod load;
mod machine;
mod node;
mod plan;
mod postgres;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, anyhow};
use cercle_core::Genesis;
use cercle_core::sign::Keypair;
use cercle_proto as pb;
use clap::Parser;

use crate::node::Node;
use crate::plan::{Accounts, Generator};
use crate::report::{Disk, OverloadReport, PostgresReport, Report, Restart, bytes, group};

/// Share of the transfers of phase (c) that touch the hot account, in percent.
const HOT_PERCENT: u32 = 10;
/// The ceiling verifies at least this many signatures, so it runs long enough to time.
const CEILING_VERIFICATIONS_MIN: usize = 40_000;
/// Clients of the unloaded reference in (g), each with one request in flight.
const OVERLOAD_REFERENCE_CLIENTS: usize = 2;
/// Transfers per second the workload's limits are planned for in (g), beyond any node's
/// throughput, so that no transfer of (g) can be refused (see `plan::Generator`).
const OVERLOAD_PLANNED_PER_SEC: u64 = 20_000;
/// Transfers signed for each part of (g): this many times what (b) accepted in as long.
const OVERLOAD_WORK_FACTOR: f64 = 2.0;

#[derive(Parser)]
#[command(
    name = "cercle-bench",
    about = "Measure the Cercle node over loopback gRPC against its signature ceiling and PostgreSQL"
)]
struct Cli {
    /// Ordinary accounts to register [default: 10000; --quick: 1000]
    #[arg(long, value_name = "N")]
    accounts: Option<usize>,
    /// Transfers per phase [default: 100000; --quick: 5000]
    #[arg(long, value_name = "N")]
    transfers: Option<usize>,
    /// Concurrent Submit clients, and PostgreSQL connections
    #[arg(long, value_name = "N", default_value_t = 64)]
    clients: usize,
    /// Envelopes per SubmitBatch request (at most 1000)
    #[arg(long, value_name = "N", default_value_t = 500)]
    batch: usize,
    /// Concurrent SubmitBatch clients
    #[arg(long, value_name = "N", default_value_t = 4)]
    batch_clients: usize,
    /// Log size to time a restart on [default: 1000000; --quick: 50000]
    #[arg(long, value_name = "N")]
    restart_entries: Option<u64>,
    /// Skip the PostgreSQL comparison
    #[arg(long)]
    skip_postgres: bool,
    /// Invoices to issue, accept and clear in (f) [default: 100000; --quick: 5000]
    #[arg(long, value_name = "N")]
    clearing_invoices: Option<usize>,
    /// Skip the clearing scenario (f)
    #[arg(long)]
    skip_clearing: bool,
    /// Seconds each part of the overload phase (g) lasts [default: 20; --quick: 5]
    #[arg(long, value_name = "SECONDS")]
    overload_secs: Option<u64>,
    /// SubmitBatch clients that overload the node in (g), with no pause between batches
    #[arg(long, value_name = "N", default_value_t = 64)]
    overload_clients: usize,
    /// Skip the overload phase (g)
    #[arg(long)]
    skip_overload: bool,
    /// Use small numbers, for a smoke run
    #[arg(long)]
    quick: bool,
    /// The cercle-node binary to measure [default: build it with cargo, or find target/release]
    #[arg(long, value_name = "PATH")]
    node_bin: Option<PathBuf>,
    /// Where to create the temporary data directories [default: the system's temp dir]
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Seed of the workload: accounts, limits, transfers
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = tokio::select! {
        outcome = run(cli) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let accounts_count = cli.accounts.unwrap_or(if cli.quick { 1_000 } else { 10_000 });
    let transfers = cli.transfers.unwrap_or(if cli.quick { 5_000 } else { 100_000 });
    let restart_entries = cli.restart_entries.unwrap_or(if cli.quick { 50_000 } else { 1_000_000 });
    let clearing_invoices = cli.clearing_invoices.unwrap_or(if cli.quick { 5_000 } else { 100_000 });
    let overload_secs = cli.overload_secs.unwrap_or(if cli.quick { 5 } else { 20 });
    let (clients, batch, batch_clients) = (cli.clients, cli.batch, cli.batch_clients);
    anyhow::ensure!(accounts_count >= 2, "--accounts must be at least 2");
    anyhow::ensure!(transfers >= 1, "--transfers must be at least 1");
    anyhow::ensure!(clearing_invoices >= 1, "--clearing-invoices must be at least 1");
    anyhow::ensure!(clients >= 1 && batch_clients >= 1, "--clients and --batch-clients must be at least 1");
    anyhow::ensure!(cli.overload_clients >= 1, "--overload-clients must be at least 1");
    anyhow::ensure!(overload_secs >= 1, "--overload-secs must be at least 1");
    anyhow::ensure!(
        (1..=cercle_limits::SUBMIT_BATCH_MAX).contains(&batch),
        "--batch must be between 1 and {} (the node's bound)",
        cercle_limits::SUBMIT_BATCH_MAX
    );
    let work_dir = cli.work_dir.unwrap_or_else(std::env::temp_dir);

    let m = machine::Machine::detect();
    println!("Cercle benchmark");
    println!(
        "machine: {} cores, {}, {} memory, Linux {}",
        m.cores,
        m.cpu_model,
        bytes(m.memory_bytes),
        m.kernel
    );
    println!("data directories: {} ({})", work_dir.display(), machine::file_system(&work_dir));
    let sync = machine::sync_latency(&work_dir)?;
    println!(
        "disk: appending 4 KiB + fdatasync takes {:.2} ms at p50, {:.2} ms at p99 ({} tries); \
         load average {} at start",
        sync.p50.as_secs_f64() * 1e3,
        sync.p99.as_secs_f64() * 1e3,
        sync.tries,
        machine::load_average()
    );
    let bin = node::binary(cli.node_bin.as_deref())?;
    println!("node: {}", bin.display());
    println!(
        "workload: {} accounts (credit limits {}-{} CHW, 1 in {} with a maximum balance of {}-{} CHW) \
         and the hot account '{}'; {} transfers per phase, each signed before its phase starts; \
         clients run on the same machine",
        group(accounts_count as u64),
        group(plan::CREDIT_LIMIT_UNITS.0 as u64),
        group(plan::CREDIT_LIMIT_UNITS.1 as u64),
        plan::MAX_BALANCE_ONE_IN,
        group(plan::MAX_BALANCE_UNITS.0 as u64),
        group(plan::MAX_BALANCE_UNITS.1 as u64),
        plan::HOT_HANDLE,
        group(transfers as u64)
    );

    let root = tempfile::Builder::new().prefix("cercle-bench-").tempdir_in(&work_dir)?;
    let data_dir = root.path().join("node");
    let log = root.path().join("node.log");
    let admin = Keypair::from_seed(&rand::random());
    node::init(&bin, &data_dir, &admin.public_key().to_hex())?;
    let mut node = Node::start(&bin, &data_dir, &log).await?;
    node.wait_ready().await?;
    let url = node.url();
    let mut client = load::connect(&url).await?;
    let info = client.get_ledger_info(pb::GetLedgerInfoRequest {}).await?.into_inner();
    let genesis = Genesis::try_from(info).map_err(|r| anyhow!("the node's ledger info is invalid: {r:?}"))?;
    let ledger_id = genesis.ledger_id;

    eprintln!("registering {} accounts ...", group(accounts_count as u64 + 1));
    let accounts = Arc::new(Accounts::new(accounts_count, cli.seed));
    let overload_planned = if cli.skip_overload { 0 } else { 2 * overload_secs * OVERLOAD_PLANNED_PER_SEC };
    let phase_transfers = 3 * transfers as u64 + overload_planned;
    let fill_estimate = restart_entries.saturating_sub(accounts.list.len() as u64 + phase_transfers);
    let mut generator = Generator::new(&accounts, cli.seed, phase_transfers + fill_estimate);
    let mut cpu_rows = Vec::new();
    let registrations = accounts.registrations(&admin, &ledger_id, generator.ids());
    let registered = load::batched(&url, Arc::new(registrations), batch, batch_clients).await?;
    anyhow::ensure!(
        registered.rejected == 0,
        "the node refused {} registrations: {}",
        registered.rejected,
        registered.first_rejection.unwrap_or_default()
    );

    eprintln!("(a) signing {} transfers, then Submit from {clients} clients ...", group(transfers as u64));
    let specs_a = generator.transfers(&accounts, transfers, 0)?;
    let signed = Arc::new(accounts.sign(&specs_a, &ledger_id));
    let meter = cpu::Meter::start(Some(cpu::Server::Node(node.pid)));
    let unary = load::unary(&url, signed, clients).await?;
    cpu_rows.push(meter.stop("(a)", unary.accepted));
    progress(&unary);

    eprintln!(
        "(b) signing {} transfers, then SubmitBatch of {batch} from {batch_clients} clients ...",
        group(transfers as u64)
    );
    let specs_b = generator.transfers(&accounts, transfers, 0)?;
    let signed_b = Arc::new(accounts.sign(&specs_b, &ledger_id));
    let meter = cpu::Meter::start(Some(cpu::Server::Node(node.pid)));
    let batched = load::batched(&url, signed_b.clone(), batch, batch_clients).await?;
    cpu_rows.push(meter.stop("(b)", batched.accepted));
    progress(&batched);

    eprintln!(
        "(c) signing {} transfers, {HOT_PERCENT}% with the hot account, then Submit ...",
        group(transfers as u64)
    );
    let specs_c = generator.transfers(&accounts, transfers, HOT_PERCENT)?;
    let signed = Arc::new(accounts.sign(&specs_c, &ledger_id));
    let meter = cpu::Meter::start(Some(cpu::Server::Node(node.pid)));
    let hot = load::unary(&url, signed, clients).await?;
    cpu_rows.push(meter.stop("(c)", hot.accepted));
    progress(&hot);

    let overload = if cli.skip_overload {
        None
    } else {
        let batch = cercle_limits::SUBMIT_BATCH_MAX;
        let secs = overload_secs;
        let rate = batched.per_sec().max(unary.per_sec());
        let count =
            ((rate * secs as f64 * OVERLOAD_WORK_FACTOR) as usize).max(2 * batch * cli.overload_clients);
        eprintln!(
            "(g) signing 2 x {} transfers, then SubmitBatch of {batch} for {secs} s from {OVERLOAD_REFERENCE_CLIENTS} clients, then from {} ...",
            group(count as u64),
            cli.overload_clients
        );
        let specs = generator.transfers(&accounts, 2 * count, 0)?;
        let (first, second) = specs.split_at(count);
        let (work_reference, work_overload) =
            (Arc::new(accounts.sign(first, &ledger_id)), Arc::new(accounts.sign(second, &ledger_id)));
        let duration = std::time::Duration::from_secs(secs);
        let meter = cpu::Meter::start(Some(cpu::Server::Node(node.pid)));
        let reference =
            load::timed_batches(&url, work_reference, batch, OVERLOAD_REFERENCE_CLIENTS, duration).await?;
        cpu_rows.push(meter.stop("(g1)", reference.result.accepted));
        progress(&reference.result);
        let meter = cpu::Meter::start(Some(cpu::Server::Node(node.pid)));
        let overloaded =
            load::timed_batches(&url, work_overload, batch, cli.overload_clients, duration).await?;
        cpu_rows.push(meter.stop("(g2)", overloaded.result.accepted));
        progress(&overloaded.result);
        Some(OverloadReport {
            batch,
            secs,
            reference_clients: OVERLOAD_REFERENCE_CLIENTS,
            clients: cli.overload_clients,
            reference,
            overloaded,
        })
    };

    let entries = load::log_size(&mut client).await?;
    let (apparent_bytes, allocated_bytes) = node::dir_size(&data_dir)?;
    let disk_phases = Disk { entries, apparent_bytes, allocated_bytes };
    let peak_memory_phases_bytes = node.peak_memory_bytes()?;

    eprintln!("(d) verifying signatures on {} threads ...", m.cores);
    let meter = cpu::Meter::start(None);
    let ceiling = ceiling::measure(&ledger_id, &signed_b, transfers.max(CEILING_VERIFICATIONS_MIN));
    cpu_rows.push(meter.stop("(d)", ceiling.verifications));
    drop(signed_b);

    let fill_count = restart_entries.saturating_sub(entries);
    let fill = if fill_count > 0 {
        eprintln!("filling the log with {} more transfers (SubmitBatch) ...", group(fill_count));
        let generator = Arc::new(Mutex::new(generator));
        let meter = cpu::Meter::start(Some(cpu::Server::Node(node.pid)));
        let filled =
            load::fill(&url, accounts.clone(), generator, ledger_id, fill_count, batch, batch_clients)
                .await?;
        cpu_rows.push(meter.stop("fill", filled.accepted));
        progress(&filled);
        Some(filled)
    } else {
        None
    };
    let entries = load::log_size(&mut client).await?;
    let peak_memory_fill_bytes = node.peak_memory_bytes()?;
    drop(client);
    eprintln!("stopping the node (SIGINT) and restarting it on {} entries ...", group(entries));
    let stop = node.stop().await?;
    let (apparent_bytes, allocated_bytes) = node::dir_size(&data_dir)?;
    let disk_restart = Disk { entries, apparent_bytes, allocated_bytes };
    let disk_components = node::largest_parts(&data_dir)?;
    let mut node = Node::start(&bin, &data_dir, &log).await?;
    let (answering, restarted_entries) = node.wait_ready().await?;
    anyhow::ensure!(
        restarted_entries == entries,
        "the node restarted with {restarted_entries} entries, not the {entries} it had"
    );
    let restart = Restart {
        entries,
        stop,
        listening: node.time_to_listen,
        answering,
        peak_memory_bytes: node.peak_memory_bytes()?,
    };
    let clearing = if cli.skip_clearing {
        node.stop().await?;
        None
    } else {
        let setup = clearing::Setup {
            bin: &bin,
            data_dir: &data_dir,
            log: &log,
            accounts: &accounts,
            admin: &admin,
            genesis: &genesis,
            invoices: clearing_invoices,
            seed: cli.seed,
            batch,
            batch_clients,
        };
        let (node, report) = clearing::measure(node, &setup, &mut cpu_rows).await?;
        node.stop().await?;
        Some(report)
    };

    let postgres = if cli.skip_postgres {
        None
    } else {
        eprintln!("(e) starting PostgreSQL and loading {} accounts ...", group(accounts.list.len() as u64));
        let pg = postgres::Postgres::start(&work_dir, clients)?;
        let settings = pg.prepare(&accounts).await.context("cannot prepare PostgreSQL")?;
        eprintln!("(e1) the transfers of (a) on PostgreSQL, {clients} connections ...");
        pg.checkpoint().await?;
        let meter = cpu::Meter::start(Some(cpu::Server::Postgres));
        let (uniform, connections) = pg.run(Arc::new(specs_a), clients).await?;
        cpu_rows.push(meter.stop("(e1)", uniform.accepted));
        drop(connections);
        progress(&uniform);
        eprintln!("(e2) the transfers of (c) on PostgreSQL, {clients} connections ...");
        pg.checkpoint().await?;
        let meter = cpu::Meter::start(Some(cpu::Server::Postgres));
        let (hot, connections) = pg.run(Arc::new(specs_c), clients).await?;
        cpu_rows.push(meter.stop("(e2)", hot.accepted));
        drop(connections);
        progress(&hot);
        eprintln!(
            "(e3) the transfers of (b) on PostgreSQL, transactions of {batch}, {batch_clients} connections ..."
        );
        pg.checkpoint().await?;
        let meter = cpu::Meter::start(Some(cpu::Server::Postgres));
        let (batched, connections) = pg.run_batched(Arc::new(specs_b), batch, batch_clients).await?;
        cpu_rows.push(meter.stop("(e3)", batched.accepted));
        drop(connections);
        progress(&batched);
        Some(PostgresReport { settings, uniform, hot, batched })
    };

    let report = Report {
        clients,
        batch,
        batch_clients,
        hot_percent: HOT_PERCENT,
        unary,
        batched,
        hot,
        overload,
        ceiling,
        postgres,
        clearing,
        peak_memory_phases_bytes,
        peak_memory_fill_bytes,
        disk_phases,
        disk_restart,
        fill,
        restart,
        cores: m.cores,
        cpu: cpu_rows,
        disk_components,
    };
    report.print();
    let faults = report.faults();
    if !faults.is_empty() {
        println!();
        println!("FAILED: these numbers cannot be trusted:");
        for fault in &faults {
            println!("  - {fault}");
        }
        anyhow::bail!("{} fault(s) in the run, listed above", faults.len());
    }
    Ok(())
}

fn progress(p: &load::PhaseResult) {
    eprintln!(
        "    {} accepted, {} refused, {} busy retries in {:.1} s: {}/s",
        group(p.accepted),
        group(p.rejected),
        group(p.busy_retries),
        p.wall.as_secs_f64(),
        group(p.per_sec().round() as u64)
    );
}
