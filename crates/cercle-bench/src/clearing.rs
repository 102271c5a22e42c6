//! (f) Clearing on the node: what a clearing run costs on the real release node at the
//! scale of an association.
//!
//! On the node the earlier phases left behind (its firms, their balances and its history),
//! it issues and accepts an invoice network over the registered firms with `SubmitBatch`,
//! every envelope signed before the clock starts; restarts the node, so that the runs'
//! share of the next restart can be told apart; times `PlanClearing` (set-off, then with
//! credit); submits `RunClearing` (set-off, then with credit) while transfers keep arriving,
//! and reads each clearing entry back; restarts the node again (the replay checks every
//! clearing record's certificate again); replays the log in the bench with the core's
//! `Replayer`, as the node's start does, to time each clearing entry's checks alone; and
//! replays the whole log as an auditor does (`cercle_audit::verify`).
//!
//! The network comes from `cercle_clearing::generate` (scale-free, value-chain tiers,
//! log-normal amounts), the same generator the solver's own benchmark uses.
//!
//! The writer runs the solver inline, so a run holds up every write behind it. To see
//! that stall, transfers arrive at a fixed rate whatever the node does (open loop), and
//! each one's latency counts from when it was due. They go from the market hall (which has
//! no invoices) to firms without a maximum balance: a run with credit moves the firms'
//! balances up to their limits, so transfers between the firms of the network could be
//! refused because of the workload, not the node.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use cercle_audit::{SignedTreeHead, SourceError};
use cercle_core::sign::{Keypair, read_auth_message};
use cercle_core::{
    Entry, Genesis, InvoiceId, InvoiceParties, IssueInvoice, LedgerId, OpKind, Operation, OperationId,
    Replayer, RunClearing,
};
use cercle_limits::INVOICE_AMOUNT_MAX_MINOR;
use cercle_proto as pb;
use hdrhistogram::Histogram;
use pb::ledger_client::LedgerClient;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

use crate::cpu::{self, PhaseCpu};
use crate::load::{self, PhaseResult};
use crate::node::Node;
use crate::plan::{
    Accounts, MINOR_PER_UNIT, OpIds, Signed, TransferSpec, VALIDITY_MS, handle, now_ms, par_map,
};

/// Shares of an invoice payable in the ledger's currency, in percent, drawn uniformly: most
/// invoices wholly, some partly (the rest is paid in national currency, outside the ledger).
const LOCAL_SHARE_PERCENTS: [u8; 4] = [100, 100, 50, 30];
/// Invoices fall due within this many days of today.
const DUE_DAYS_MAX: u32 = 90;
/// Transfers per second that keep arriving during a run, over all clients.
pub const LOAD_PER_SEC: u32 = 200;
/// Connections those transfers come on.
pub const LOAD_CLIENTS: usize = 4;
/// How long the transfers run before the run is submitted, and after its receipt.
const LOAD_BEFORE: Duration = Duration::from_secs(1);
const LOAD_AFTER: Duration = Duration::from_millis(500);
/// Transfers signed for one run: enough for two minutes at `LOAD_PER_SEC`.
const LOAD_POOL_SECS: u32 = 120;
/// Transfers during a run, in CHW.
const LOAD_AMOUNT_UNITS: (i64, i64) = (1, 50);
/// How long a run may take, retries included, before the bench gives up on it.
const RUN_DEADLINE: Duration = Duration::from_secs(10 * 60);
/// Wait before sending a run again after the node did not decide it (a timeout).
const RUN_RETRY_AFTER: Duration = Duration::from_millis(100);
/// Bytes before an entry in `entries.log`: its length and CRC (see `cercle_store::log`).
const LOG_RECORD_HEADER_BYTES: usize = cercle_limits::RECORD_HEADER_BYTES;
/// Entries buffered between the node's stream and a replay in the bench.
const STREAM_BUFFER_ENTRIES: usize = 16 * 1024;
/// The name of the node's writer thread.
const WRITER_THREAD: &str = "cercle-writer";

/// Everything the scenario needs from the rest of the bench.
pub struct Setup<'a> {
    pub bin: &'a Path,
    pub data_dir: &'a Path,
    pub log: &'a Path,
    pub accounts: &'a Accounts,
    pub admin: &'a Keypair,
    pub genesis: &'a Genesis,
    pub invoices: usize,
    pub seed: u64,
    pub batch: usize,
    pub batch_clients: usize,
}

/// What (f) measured.
pub struct ClearingReport {
    /// The ledger's currency and its decimals, to print amounts.
    pub currency: String,
    pub exponent: u8,
    pub network: NetworkShape,
    /// `IssueInvoice` and `AcceptInvoice` sent with `SubmitBatch`.
    pub issue: PhaseResult,
    pub accept: PhaseResult,
    pub restart_before: Restarted,
    pub plans: Vec<Plan>,
    pub runs: Vec<Run>,
    /// The node's peak resident memory during the plans and runs (it restarted before).
    pub peak_memory_bytes: u64,
    pub restart_after: Restarted,
    /// The log replayed in the bench as the node replays it on start.
    pub replay: Result<Replayed, String>,
    pub audit: Result<Audited, String>,
}

/// The invoice network as generated.
pub struct NetworkShape {
    pub invoices: usize,
    /// Firms with at least one invoice, and firms registered.
    pub firms: usize,
    pub firms_registered: usize,
    /// Sum of the invoices' parts payable in the ledger's currency.
    pub local_minor: i128,
    pub largest_minor: i64,
}

pub struct Restarted {
    pub entries: u64,
    pub stop: Duration,
    pub listening: Duration,
    pub answering: Duration,
    /// The new node's CPU time until it answered, and what other processes used meanwhile
    /// (the machine's busy time less the node's and the bench's), in cores.
    pub node_cpu: Option<Duration>,
    pub rest_cores: Option<f64>,
    /// The node's start-up line (what it found, and its own `elapsed_ms`).
    pub node_said: Option<String>,
}

pub struct Plan {
    pub with_credit: bool,
    pub wall: Duration,
    /// The summary and its size on the wire, or why there is none.
    pub outcome: Result<(pb::ClearingSummary, usize), String>,
}

pub struct Run {
    pub with_credit: bool,
    /// From sending `RunClearing` to its receipt, retries included.
    pub latency: Duration,
    pub outcome: Result<RunDone, String>,
    /// Answers that did not decide the run (a timeout), before the receipt.
    pub undecided: u64,
    pub first_undecided: Option<String>,
    /// What the node used from sending the run to its receipt.
    pub cpu: RunCpu,
    pub load: Load,
}

/// The node's resources while a run was in flight (the few transfers that arrived
/// meanwhile included): whether the stall is the solver's CPU or the storage.
pub struct RunCpu {
    pub wall: Duration,
    pub node: Option<Duration>,
    /// The writer thread, which solves, checks and persists the run.
    pub writer: Option<Duration>,
    pub written_bytes: Option<u64>,
}

impl RunCpu {
    fn from(c: &PhaseCpu) -> RunCpu {
        let usage = c.server.as_ref().map(|(_, u)| u);
        RunCpu {
            wall: c.wall,
            node: usage.map(|u| u.total),
            writer: usage.and_then(|u| u.by_name.iter().find(|(n, _)| n == WRITER_THREAD).map(|(_, t)| *t)),
            written_bytes: usage.and_then(|u| u.written_bytes),
        }
    }
}

pub struct RunDone {
    pub sequence: u64,
    /// The `SubmitResponse` on the wire.
    pub receipt_bytes: usize,
    /// The receipt of a retry: the node sends no summary then.
    pub duplicate: bool,
    pub summary: Option<pb::ClearingSummary>,
    pub entry: Result<EntryRead, String>,
}

/// A clearing entry as read back from the node.
pub struct EntryRead {
    /// `Entry::encode` plus the record header: what the run added to `entries.log`.
    pub log_record_bytes: usize,
    /// The `ClearingRecord` alone.
    pub record_bytes: usize,
    /// The `GetInclusionProof` response that carried it, and how long it took.
    pub response_bytes: usize,
    pub read_wall: Duration,
    pub invoices: usize,
    pub firms: usize,
    pub firms_changed: usize,
    pub setoff_minor: i128,
    pub credit_minor: i128,
}

/// The transfers that kept arriving during a run.
pub struct Load {
    /// Every transfer, latency counted from when it was due.
    pub all: PhaseResult,
    /// Latencies of those due while the run was in flight (queued behind it), and before.
    pub during_us: Histogram<u64>,
    pub before_us: Histogram<u64>,
    /// The pool of signed transfers ran out before the run ended.
    pub ran_out: bool,
}

pub struct Replayed {
    pub entries: u64,
    pub wall: Duration,
    /// Each clearing entry's sequence and how long its replay took (the certificate check).
    pub clearing: Vec<(u64, Duration)>,
}

pub struct Audited {
    pub entries: u64,
    pub wall: Duration,
    pub threads: usize,
}

/// Runs (f) on `node` and returns the node, restarted twice, with what it measured.
pub async fn measure(
    node: Node,
    setup: &Setup<'_>,
    cpu_rows: &mut Vec<PhaseCpu>,
) -> anyhow::Result<(Node, ClearingReport)> {
    let ledger_id = setup.genesis.ledger_id;
    let invoices = generate(setup.accounts, setup.invoices, setup.seed)?;
    let network = shape(&invoices, setup.accounts);
    eprintln!(
        "(f) signing {} IssueInvoice and as many AcceptInvoice between {} firms ...",
        crate::report::group(network.invoices as u64),
        crate::report::group(network.firms as u64)
    );
    let mut ids = OpIds::new();
    let valid_until_ms = now_ms() + VALIDITY_MS;
    let with_ids: Vec<(&Invoice, OperationId, OperationId)> =
        invoices.iter().map(|i| (i, ids.next_id(), ids.next_id())).collect();
    let issues = par_map(&with_ids, |(i, id, _)| i.issue(setup.accounts, &ledger_id, *id, valid_until_ms));
    let accepts = par_map(&with_ids, |(i, _, id)| i.accept(setup.accounts, &ledger_id, *id, valid_until_ms));
    drop(with_ids);

    let url = node.url();
    let (batch, clients) = (setup.batch, setup.batch_clients);
    eprintln!("(f1) IssueInvoice, SubmitBatch of {batch} from {clients} clients ...");
    let meter = cpu::Meter::start(Some(cpu::Server::Node(node.pid)));
    let issue = load::batched(&url, Arc::new(issues), batch, clients).await?;
    cpu_rows.push(meter.stop("(f1)", issue.accepted));
    progress(&issue);
    eprintln!("(f2) AcceptInvoice, SubmitBatch of {batch} from {clients} clients ...");
    let meter = cpu::Meter::start(Some(cpu::Server::Node(node.pid)));
    let accept = load::batched(&url, Arc::new(accepts), batch, clients).await?;
    cpu_rows.push(meter.stop("(f2)", accept.accepted));
    progress(&accept);

    eprintln!("(f) restarting the node before the runs ...");
    let (node, restart_before) = restart(node, setup).await?;
    let url = node.url();
    let mut client = load::connect(&url).await?;
    let mut plans = Vec::new();
    for with_credit in [false, true] {
        eprintln!("(f) PlanClearing, {} ...", stage(with_credit));
        plans.push(plan(&mut client, setup.admin, &ledger_id, with_credit).await?);
    }
    let mut runs = Vec::new();
    for with_credit in [false, true] {
        eprintln!(
            "(f) RunClearing, {}, while {LOAD_PER_SEC} transfers/s arrive from {LOAD_CLIENTS} clients ...",
            stage(with_credit)
        );
        let pool =
            Arc::new(load_pool(setup.accounts, &ledger_id, &mut ids, setup.seed ^ u64::from(with_credit)));
        let op = Operation {
            id: ids.next_id(),
            valid_until_ms: now_ms() + VALIDITY_MS,
            kind: OpKind::RunClearing(RunClearing {
                with_credit,
                reason: format!("cercle-bench: clearing, {}", stage(with_credit)),
            }),
        };
        let run = Signed::new(setup.admin, &ledger_id, &op);
        let (submitted, cpu, load) = run_under_load(&url, node.pid, &run, pool).await?;
        let outcome = match submitted.outcome {
            Ok((receipt, receipt_bytes)) => Ok(RunDone {
                sequence: receipt.sequence,
                receipt_bytes,
                duplicate: receipt.duplicate,
                summary: receipt.clearing,
                entry: read_entry(&mut client, setup.admin, &ledger_id, receipt.sequence)
                    .await
                    .map_err(|e| format!("{e:#}")),
            }),
            Err(why) => Err(why),
        };
        runs.push(Run {
            with_credit,
            latency: submitted.latency,
            outcome,
            undecided: submitted.undecided,
            first_undecided: submitted.first_undecided,
            cpu,
            load,
        });
    }
    let peak_memory_bytes = node.peak_memory_bytes()?;
    drop(client);

    eprintln!("(f) restarting the node after the runs ...");
    let (node, restart_after) = restart(node, setup).await?;
    eprintln!(
        "(f) replaying the whole log in the bench as the node does on start (StreamEntries, Replayer) ..."
    );
    let replay = replay(&node.url(), setup.admin, setup.genesis).await.map_err(|e| format!("{e:#}"));
    eprintln!("(f) replaying the whole log as an auditor (StreamEntries, cercle_audit::verify) ...");
    let audit = audit(&node.url(), setup.admin, setup.genesis).await.map_err(|e| format!("{e:#}"));
    let report = ClearingReport {
        currency: setup.genesis.currency.clone(),
        exponent: setup.genesis.exponent,
        network,
        issue,
        accept,
        restart_before,
        plans,
        runs,
        peak_memory_bytes,
        restart_after,
        replay,
        audit,
    };
    Ok((node, report))
}

pub fn stage(with_credit: bool) -> &'static str {
    if with_credit { "with credit" } else { "set-off" }
}

fn progress(p: &PhaseResult) {
    eprintln!(
        "    {} accepted, {} refused, {} busy retries in {:.1} s",
        crate::report::group(p.accepted),
        crate::report::group(p.rejected),
        crate::report::group(p.busy_retries),
        p.wall.as_secs_f64()
    );
}

/// One invoice of the network, before signing.
struct Invoice {
    /// Indexes into `Accounts::list`.
    payer: usize,
    payee: usize,
    id: InvoiceId,
    amount_minor: i64,
    local_share_percent: u8,
    due_day: u32,
    reference: String,
}

impl Invoice {
    fn parties(&self, accounts: &Accounts) -> (cercle_core::AccountId, cercle_core::AccountId) {
        (handle(&accounts.list[self.payee].handle), handle(&accounts.list[self.payer].handle))
    }

    /// `IssueInvoice`, signed by the payee.
    fn issue(
        &self,
        accounts: &Accounts,
        ledger_id: &LedgerId,
        id: OperationId,
        valid_until_ms: u64,
    ) -> Signed {
        let (payee, payer) = self.parties(accounts);
        let op = Operation {
            id,
            valid_until_ms,
            kind: OpKind::IssueInvoice(IssueInvoice {
                invoice: self.id,
                payee,
                payer,
                amount_minor: self.amount_minor,
                local_share_percent: self.local_share_percent,
                due_day: Some(self.due_day),
                reference: self.reference.clone(),
                excluded_from_clearing: false,
            }),
        };
        Signed::new(&accounts.list[self.payee].key, ledger_id, &op)
    }

    /// `AcceptInvoice`, signed by the payer: the invoice becomes an obligation.
    fn accept(
        &self,
        accounts: &Accounts,
        ledger_id: &LedgerId,
        id: OperationId,
        valid_until_ms: u64,
    ) -> Signed {
        let (payee, payer) = self.parties(accounts);
        let op = Operation {
            id,
            valid_until_ms,
            kind: OpKind::AcceptInvoice(InvoiceParties { invoice: self.id, payee, payer }),
        };
        Signed::new(&accounts.list[self.payer].key, ledger_id, &op)
    }
}

/// `count` invoices between the ordinary firms: who owes whom and how much from
/// `cercle_clearing::generate`; the local share, due date and reference drawn here.
fn generate(accounts: &Accounts, count: usize, seed: u64) -> anyhow::Result<Vec<Invoice>> {
    let firms = u32::try_from(accounts.ordinary()).context("too many accounts for the invoice generator")?;
    let obligations = u32::try_from(count).context("--clearing-invoices is too large")?;
    let spec = cercle_clearing::generate::Spec { firms, obligations, seed };
    let mut rng = StdRng::seed_from_u64(seed ^ 0x1a71_c0de);
    let mut invoice_ids = OpIds::new();
    let today = (now_ms() / (24 * 60 * 60 * 1000)) as u32;
    let invoices: Vec<Invoice> = cercle_clearing::generate::invoices(&spec)
        .into_iter()
        .enumerate()
        .map(|(n, (debtor, creditor, amount_minor))| Invoice {
            payer: debtor as usize,
            payee: creditor as usize,
            id: InvoiceId(invoice_ids.next_id().0),
            // The generator stays far below the bound; clamping keeps that an assumption
            // the node never sees broken.
            amount_minor: amount_minor.clamp(1, INVOICE_AMOUNT_MAX_MINOR),
            local_share_percent: LOCAL_SHARE_PERCENTS[rng.gen_range(0..LOCAL_SHARE_PERCENTS.len())],
            due_day: today + rng.gen_range(0..=DUE_DAYS_MAX),
            reference: format!("INV-{:07}", n + 1),
        })
        .collect();
    anyhow::ensure!(
        invoices.len() == count,
        "the generator made {} invoices, not {count}: it needs at least 2 firms",
        invoices.len()
    );
    // A local part of zero is refused (nothing payable in the ledger).
    anyhow::ensure!(
        invoices.iter().all(|i| local_minor(i) > 0),
        "an invoice has nothing payable in the ledger's currency"
    );
    Ok(invoices)
}

fn local_minor(i: &Invoice) -> i64 {
    cercle_core::invoice::local_part(i.amount_minor, i.local_share_percent)
}

fn shape(invoices: &[Invoice], accounts: &Accounts) -> NetworkShape {
    let mut seen = vec![false; accounts.list.len()];
    for i in invoices {
        seen[i.payer] = true;
        seen[i.payee] = true;
    }
    NetworkShape {
        invoices: invoices.len(),
        firms: seen.iter().filter(|s| **s).count(),
        firms_registered: accounts.ordinary(),
        local_minor: invoices.iter().map(|i| i128::from(local_minor(i))).sum(),
        largest_minor: invoices.iter().map(|i| i.amount_minor).max().unwrap_or(0),
    }
}

/// The transfers that arrive during one run, signed: from the market hall to firms
/// without a maximum balance (see the module docs), so none can be refused.
fn load_pool(accounts: &Accounts, ledger_id: &LedgerId, ids: &mut OpIds, seed: u64) -> Vec<Signed> {
    let payees: Vec<usize> =
        (0..accounts.ordinary()).filter(|&a| accounts.list[a].max_balance_minor.is_none()).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x10ad);
    let specs: Vec<TransferSpec> = (0..LOAD_PER_SEC * LOAD_POOL_SECS)
        .map(|n| TransferSpec {
            operation_id: ids.next_id().0,
            payer: accounts.hot(),
            payee: payees[rng.gen_range(0..payees.len())],
            amount_minor: rng.gen_range(LOAD_AMOUNT_UNITS.0..=LOAD_AMOUNT_UNITS.1) * MINOR_PER_UNIT,
            memo: format!("market {n:07}"),
        })
        .collect();
    accounts.sign(&specs, ledger_id)
}

/// A read request signed by `key` for `method` on `subject`, as the node authenticates reads.
fn authenticated<T: prost::Message>(
    key: &Keypair,
    ledger_id: &LedgerId,
    method: &str,
    message: T,
) -> anyhow::Result<tonic::Request<T>> {
    use pb::read_auth::{PUBKEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
    let timestamp_ms = now_ms();
    let signature = key.sign(&read_auth_message(ledger_id, method, timestamp_ms, &message.encode_to_vec()));
    let mut request = tonic::Request::new(message);
    for (name, value) in [
        (PUBKEY_HEADER, key.public_key().to_hex()),
        (TIMESTAMP_HEADER, timestamp_ms.to_string()),
        (SIGNATURE_HEADER, hex::encode(signature)),
    ] {
        request.metadata_mut().insert(name, value.parse().with_context(|| format!("bad {name}"))?);
    }
    Ok(request)
}

fn status_text(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// Stops the node (SIGINT), starts it again and waits until it answers.
async fn restart(node: Node, setup: &Setup<'_>) -> anyhow::Result<(Node, Restarted)> {
    let entries = load::log_size(&mut load::connect(&node.url()).await?).await?;
    let stop = node.stop().await?;
    let meter = cpu::Meter::start(None);
    let mut node = Node::start(setup.bin, setup.data_dir, setup.log).await?;
    let (answering, restarted_entries) = node.wait_ready().await?;
    let node_cpu = cpu::process_cpu(node.pid);
    let used = meter.stop("restart", 0);
    anyhow::ensure!(
        restarted_entries == entries,
        "the node restarted with {restarted_entries} entries, not the {entries} it had"
    );
    let rest_cores =
        used.machine_busy.zip(node_cpu).zip(used.bench.as_ref()).map(|((machine, node), bench)| {
            machine.saturating_sub(node + bench.total).as_secs_f64() / used.wall.as_secs_f64().max(1e-9)
        });
    let restarted = Restarted {
        entries,
        stop,
        listening: node.time_to_listen,
        answering,
        node_cpu,
        rest_cores,
        node_said: start_up_line(setup.log),
    };
    Ok((node, restarted))
}

/// The last start-up line in the node's log (`state verified against the log ...
/// elapsed_ms=...`), without its timestamp, level and colours.
fn start_up_line(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().rev().map(without_colours).find(|l| l.contains("elapsed_ms="))?;
    let message = line.split_once(": ").map_or(line.as_str(), |(_, m)| m);
    Some(message.trim().to_string())
}

/// `line` without its ANSI escapes (the node's log is coloured even in a file).
fn without_colours(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip to the escape's final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

async fn plan(
    client: &mut LedgerClient<Channel>,
    admin: &Keypair,
    ledger_id: &LedgerId,
    with_credit: bool,
) -> anyhow::Result<Plan> {
    let request = authenticated(admin, ledger_id, "PlanClearing", pb::PlanClearingRequest { with_credit })?;
    let started = Instant::now();
    let answer = client.plan_clearing(request).await;
    let wall = started.elapsed();
    let outcome = answer
        .map(|response| {
            let summary = response.into_inner();
            let bytes = summary.encoded_len();
            (summary, bytes)
        })
        .map_err(|status| status_text(&status));
    Ok(Plan { with_credit, wall, outcome })
}

/// A `RunClearing` as sent and answered.
struct Submitted {
    latency: Duration,
    outcome: Result<(pb::Receipt, usize), String>,
    undecided: u64,
    first_undecided: Option<String>,
}

/// Sends the run until the node decides it. An answer that decides nothing (the server's
/// request timeout, BUSY) is counted and the same envelope sent again: the node answers a
/// retry with the original receipt once the run is written.
async fn submit_run(client: &mut LedgerClient<Channel>, run: &Signed) -> Submitted {
    use tonic::Code;
    let started = Instant::now();
    let mut undecided = 0;
    let mut first_undecided = None;
    loop {
        let request = pb::SubmitRequest { envelope: Some(run.envelope.clone()) };
        let outcome = match client.submit(request).await {
            Ok(response) => {
                let response = response.into_inner();
                let bytes = response.encoded_len();
                response
                    .receipt
                    .map(|r| (r, bytes))
                    .ok_or_else(|| "a Submit response without a receipt".into())
            }
            Err(status)
                if matches!(
                    status.code(),
                    Code::Cancelled | Code::DeadlineExceeded | Code::Unavailable | Code::ResourceExhausted
                ) && started.elapsed() < RUN_DEADLINE =>
            {
                undecided += 1;
                first_undecided.get_or_insert_with(|| {
                    format!("{} after {:.2} s", status_text(&status), started.elapsed().as_secs_f64())
                });
                tokio::time::sleep(RUN_RETRY_AFTER).await;
                continue;
            }
            Err(status) => Err(status_text(&status)),
        };
        return Submitted { latency: started.elapsed(), outcome, undecided, first_undecided };
    }
}

/// Submits `run` while the transfers of `pool` arrive at `LOAD_PER_SEC` from
/// `LOAD_CLIENTS` connections, from `LOAD_BEFORE` before it until `LOAD_AFTER` after its
/// receipt; meters the node (process `node_pid`) while the run is in flight.
async fn run_under_load(
    url: &str,
    node_pid: u32,
    run: &Signed,
    pool: Arc<Vec<Signed>>,
) -> anyhow::Result<(Submitted, RunCpu, Load)> {
    let mut clients = Vec::with_capacity(LOAD_CLIENTS);
    for _ in 0..LOAD_CLIENTS {
        clients.push(load::connect(url).await?);
    }
    let mut run_client = load::connect(url).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let interval = Duration::from_secs(1) / LOAD_PER_SEC;
    let started = Instant::now();
    let sender = {
        let (stop, pool) = (stop.clone(), pool.clone());
        tokio::spawn(async move {
            let mut in_flight = tokio::task::JoinSet::new();
            let mut ran_out = true;
            for (k, due) in (0..pool.len()).zip((0u32..).map(|k| started + interval * k)) {
                if stop.load(Ordering::Relaxed) {
                    ran_out = false;
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let mut client = clients[k % clients.len()].clone();
                let pool = pool.clone();
                in_flight.spawn(async move {
                    let sent = load::send_one(&mut client, &pool[k]).await;
                    (due, due.elapsed(), sent)
                });
            }
            let mut done = Vec::with_capacity(pool.len());
            while let Some(joined) = in_flight.join_next().await {
                done.push(joined?);
            }
            Ok::<_, tokio::task::JoinError>((done, ran_out))
        })
    };
    tokio::time::sleep(LOAD_BEFORE).await;
    let meter = cpu::Meter::start(Some(cpu::Server::Node(node_pid)));
    let sent_at = Instant::now();
    let submitted = submit_run(&mut run_client, run).await;
    let answered_at = Instant::now();
    let run_cpu = RunCpu::from(&meter.stop("run", 1));
    tokio::time::sleep(LOAD_AFTER).await;
    stop.store(true, Ordering::Relaxed);
    let (done, ran_out) = sender.await??;
    let mut load = Load {
        all: PhaseResult::new(),
        during_us: load::latency_histogram(),
        before_us: load::latency_histogram(),
        ran_out,
    };
    for (due, latency, sent) in done {
        let us = latency.as_micros().max(1) as u64;
        load.all.add(sent);
        load.all.latency_us.saturating_record(us);
        if due < sent_at {
            load.before_us.saturating_record(us);
        } else if due < answered_at {
            load.during_us.saturating_record(us);
        }
    }
    load.all.wall = started.elapsed();
    Ok((submitted, run_cpu, load))
}

/// Reads clearing entry `sequence` back (`GetInclusionProof` carries the whole entry).
async fn read_entry(
    client: &mut LedgerClient<Channel>,
    admin: &Keypair,
    ledger_id: &LedgerId,
    sequence: u64,
) -> anyhow::Result<EntryRead> {
    let request = authenticated(
        admin,
        ledger_id,
        "GetInclusionProof",
        pb::GetInclusionProofRequest { sequence, tree_size: 0 },
    )?;
    let started = Instant::now();
    let proof = client.get_inclusion_proof(request).await.map_err(|s| anyhow!(status_text(&s)))?.into_inner();
    let read_wall = started.elapsed();
    let response_bytes = proof.encoded_len();
    let wire = proof.entry.context("the inclusion proof came without its entry")?;
    let record_bytes: usize = wire.sections.iter().flat_map(|s| &s.parts).map(|p| p.data.len()).sum();
    let entry = Entry::try_from(wire)
        .map_err(|r| anyhow!("the node sent an invalid entry {sequence}: {}", r.message("", 0)))?;
    let log_record_bytes = LOG_RECORD_HEADER_BYTES + entry.encode().len();
    let section = entry
        .section(cercle_core::SectionTag::Clearing)
        .with_context(|| format!("entry {sequence} holds no clearing record"))?;
    let record = cercle_core::ClearingRecord::from_section(section)
        .map_err(|e| anyhow!("entry {sequence}: its clearing record: {e}"))?;
    Ok(EntryRead {
        log_record_bytes,
        record_bytes,
        response_bytes,
        read_wall,
        invoices: record.invoices.len(),
        firms: record.firms.len(),
        firms_changed: record.firms.iter().filter(|f| f.changed).count(),
        setoff_minor: record.invoices.iter().map(|i| i128::from(i.setoff_minor)).sum(),
        credit_minor: record.invoices.iter().map(|i| i128::from(i.credit_minor)).sum(),
    })
}

/// The node's signed tree head, and a stream of the entries it commits to (from entry 1),
/// decoded into core entries: `pump` feeds `entries` and must be polled alongside.
async fn entries(
    url: &str,
    admin: &Keypair,
    ledger_id: &LedgerId,
) -> anyhow::Result<(SignedTreeHead, impl Future<Output = ()>, EntryReceiver)> {
    let mut client = load::connect(url).await?;
    let t = client.get_tree_head(pb::GetTreeHeadRequest {}).await?.into_inner();
    let tree_head =
        SignedTreeHead::try_from(&t).map_err(|r| anyhow!("the node's tree head: {}", r.message("", 0)))?;
    let request =
        authenticated(admin, ledger_id, "StreamEntries", pb::StreamEntriesRequest { from_sequence: 1 })?;
    let mut stream = client.stream_entries(request).await.map_err(|s| anyhow!(status_text(&s)))?.into_inner();
    let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER_ENTRIES);
    let tree_size = tree_head.head.tree_size;
    let pump = async move {
        for _ in 0..tree_size {
            let item = match stream.message().await {
                Ok(Some(entry)) => Entry::try_from(entry)
                    .map_err(|r| SourceError::new(None, format!("an invalid entry: {}", r.message("", 0)))),
                Ok(None) => break,
                Err(s) => Err(SourceError::new(None, format!("the stream broke: {}", status_text(&s)))),
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    };
    Ok((tree_head, pump, rx))
}

type EntryReceiver = tokio::sync::mpsc::Receiver<Result<Entry, SourceError>>;

/// Replays the whole log in the bench with the core's `Replayer`, signatures trusted, as
/// the node's start-up does, and times each clearing entry's replay: the re-check of its
/// record and certificate against the state it applied to.
async fn replay(url: &str, admin: &Keypair, genesis: &Genesis) -> anyhow::Result<Replayed> {
    let started = Instant::now();
    let (_, pump, mut rx) = entries(url, admin, &genesis.ledger_id).await?;
    let replayer = {
        let genesis = genesis.clone();
        tokio::task::spawn_blocking(move || {
            let mut replayer = Replayer::new(genesis, false);
            let mut replayed = Replayed { entries: 0, wall: Duration::ZERO, clearing: Vec::new() };
            while let Some(entry) = rx.blocking_recv() {
                let entry = entry.map_err(|e| anyhow!("{}", e.message))?;
                let one = Instant::now();
                replayer.replay(&entry).map_err(|e| anyhow!("entry {}: {e}", entry.sequence))?;
                if !entry.sections.is_empty() {
                    replayed.clearing.push((entry.sequence, one.elapsed()));
                }
                replayed.entries += 1;
            }
            Ok::<_, anyhow::Error>(replayed)
        })
    };
    let ((), replayed) = tokio::join!(pump, replayer);
    let mut replayed = replayed??;
    replayed.wall = started.elapsed();
    Ok(replayed)
}

/// What `cercle audit verify` does against a node: the signed tree head, then every entry
/// streamed and replayed by `cercle_audit::verify` (signatures on every core).
async fn audit(url: &str, admin: &Keypair, genesis: &Genesis) -> anyhow::Result<Audited> {
    let started = Instant::now();
    let (tree_head, pump, mut rx) = entries(url, admin, &genesis.ledger_id).await?;
    let checker = {
        let genesis = genesis.clone();
        tokio::task::spawn_blocking(move || {
            let entries = std::iter::from_fn(move || rx.blocking_recv());
            cercle_audit::verify(
                &genesis,
                entries,
                Some(&tree_head),
                &cercle_audit::Options::default(),
                |_| {},
            )
        })
    };
    let ((), verdict) = tokio::join!(pump, checker);
    let verdict = verdict?.map_err(|failure| anyhow!("AUDIT FAILED: {failure}"))?;
    Ok(Audited { entries: verdict.entries_checked, wall: started.elapsed(), threads: verdict.threads })
}
