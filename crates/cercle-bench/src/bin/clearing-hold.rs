//! What a clearing run costs the node's writer, measured in the core without the network:
//! the ledger is filled in memory with the benchmark's invoice network (10,000 firms,
//! 300,000 accepted invoices by default), then, for a run of each kind, it times what the
//! executor does (taking the snapshot; confirming and applying the planned run; encoding and
//! hashing its entry) apart from what the planner does on its own thread (solving and
//! checking on the snapshot), and, for comparison, the full check a replay runs.
//!
//! Times are the thread's CPU time and the wall time, so a busy machine shows in the wall
//! column and not in the CPU one. The target: no transfer waits more than 100 ms behind a
//! run, so the executor's part must stay well under that.

use std::time::{Duration, Instant};

use anyhow::Context;
use cercle_core::clearing::{self, ChangesSince, ClearingSnapshot};
use cercle_core::sign::Keypair;
use cercle_core::{
    AccountId, ClearingInput, Envelope, Executed, Genesis, InvoiceId, InvoiceParties, IssueInvoice, Ledger,
    LedgerId, OpKind, Operation, OperationId, RegisterAccount, RunClearing, Transfer,
};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Measure what a clearing run costs the node's writer, in the core, without the network")]
struct Args {
    /// Firms.
    #[arg(long, default_value_t = 10_000)]
    firms: u32,
    /// Accepted invoices among them.
    #[arg(long, default_value_t = 300_000)]
    invoices: u32,
    /// Transfers executed while the planner solves (between the snapshot and the apply).
    #[arg(long, default_value_t = 600)]
    transfers_meanwhile: u32,
    /// Seed of the invoice network.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `f`, returning its value, its CPU time and its wall time.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let (cpu, wall) = (thread_cpu(), Instant::now());
    let value = f();
    (value, thread_cpu() - cpu, wall.elapsed())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

struct World {
    genesis: Genesis,
    ledger: Ledger,
    keys: Vec<Keypair>,
    admin: Keypair,
    next_id: u64,
    clock_ms: u64,
}

fn firm(n: usize) -> AccountId {
    AccountId::parse(&format!("firm-{n:05}")).expect("a valid handle")
}

impl World {
    /// Executes `kind` as `signer` (the signature is not checked by `execute`, as on the
    /// node, where it was checked before), adding what it changed to `changes`.
    fn run(
        &mut self,
        signer: usize,
        kind: OpKind,
        input: ClearingInput<'_>,
        changes: Option<&mut ChangesSince>,
    ) -> anyhow::Result<Option<cercle_core::Entry>> {
        self.next_id += 1;
        self.clock_ms += 1;
        let key = if signer == usize::MAX { &self.admin } else { &self.keys[signer] };
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next_id.to_be_bytes());
        let op = Operation { id: OperationId(id), valid_until_ms: self.clock_ms + 86_400_000, kind };
        let body = cercle_core::body::encode(&op);
        let envelope = Envelope::single(body, key.public_key(), [0; 64]);
        match self.ledger.execute_with(self.clock_ms, envelope, &op, input) {
            Ok(Executed::Accepted { entry, effects }) => {
                if let Some(c) = changes {
                    c.add(&effects);
                }
                Ok(Some(entry))
            }
            Ok(Executed::Duplicate { .. }) => anyhow::bail!("a duplicate"),
            Err(r) => anyhow::bail!("refused: {}", r.message(&self.genesis.currency, self.genesis.exponent)),
        }
    }
}

fn fill(args: &Args) -> anyhow::Result<World> {
    let admin = Keypair::from_seed(&[1; 32]);
    let genesis = Genesis {
        ledger_id: LedgerId([7; 16]),
        currency: "CHW".into(),
        exponent: 2,
        admin_keys: vec![admin.public_key()],
        auditor_keys: vec![],
        node_key: Keypair::from_seed(&[2; 32]).public_key(),
        quorum: 1,
        day_offset_minutes: 0,
    };
    let keys: Vec<Keypair> = (0..args.firms)
        .map(|n| {
            let mut seed = [3u8; 32];
            seed[..4].copy_from_slice(&n.to_be_bytes());
            Keypair::from_seed(&seed)
        })
        .collect();
    let mut w =
        World { ledger: Ledger::new(genesis.clone()), genesis, keys, admin, next_id: 0, clock_ms: 1_000 };
    for n in 0..args.firms as usize {
        let kind = OpKind::RegisterAccount(RegisterAccount {
            account: firm(n),
            display_name: format!("Firm {n}"),
            keys: vec![w.keys[n].public_key()],
            // 5,000 to 50,000 CHW, as in the benchmark.
            credit_limit_minor: 500_000 + (n as i64 * 7_919 % 4_500_001),
            max_balance_minor: None,
            profile: Default::default(),
            allow_shared_key: false,
        });
        w.run(usize::MAX, kind, ClearingInput::Propose, None)?;
    }
    let spec =
        cercle_clearing::generate::Spec { firms: args.firms, obligations: args.invoices, seed: args.seed };
    for (k, (debtor, creditor, amount)) in cercle_clearing::generate::invoices(&spec).into_iter().enumerate()
    {
        let (payer, payee) = (debtor as usize, creditor as usize);
        let mut invoice = [0u8; 16];
        invoice[..8].copy_from_slice(&(k as u64 + 1).to_be_bytes());
        let invoice = InvoiceId(invoice);
        let issue = OpKind::IssueInvoice(IssueInvoice {
            invoice,
            payee: firm(payee),
            payer: firm(payer),
            amount_minor: amount.clamp(1, cercle_limits::INVOICE_AMOUNT_MAX_MINOR),
            local_share_percent: 100,
            due_day: Some(20_000 + (k as u32 % 90)),
            reference: format!("INV-{:07}", k + 1),
            excluded_from_clearing: false,
        });
        w.run(payee, issue, ClearingInput::Propose, None)?;
        let parties = InvoiceParties { invoice, payee: firm(payee), payer: firm(payer) };
        w.run(payer, OpKind::AcceptInvoice(parties), ClearingInput::Propose, None)?;
    }
    Ok(w)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "clearing-hold: the writer's part of a clearing run, in the core ({} firms, {} accepted invoices, \
         {} transfers while the planner solves)",
        args.firms, args.invoices, args.transfers_meanwhile
    );
    let (world, _, wall) = timed(|| fill(&args));
    let world = world.context("filling the ledger")?;
    println!("filled in {} ({} entries)", ms(wall), world.ledger.head().size);
    println!();
    println!("{:<44} {:>12} {:>12}", "", "thread CPU", "wall");
    let mut worst = Duration::ZERO;
    for with_credit in [false, true] {
        let mut w = clone_world(&world);
        // As on the node: changes are journalled until their group is durable.
        w.ledger.start_journal();
        let kind = if with_credit { "with credit" } else { "set-off" };
        println!("run {kind}:");
        let (snapshot, cpu, wall) = timed(|| ClearingSnapshot::take(w.ledger.state()));
        let mut writer = cpu;
        println!("{:<44} {:>12} {:>12}", "  writer: take the snapshot", ms(cpu), ms(wall));
        let (planned, cpu, wall) = timed(|| clearing::plan(snapshot, with_credit));
        let planned = planned.map_err(|r| anyhow::anyhow!("planning: {}", r.message("CHW", 2)))?;
        println!("{:<44} {:>12} {:>12}", "  planner: solve and check on the snapshot", ms(cpu), ms(wall));
        // Transfers the writer executes meanwhile, between firms of the run.
        let mut changes = ChangesSince::default();
        for t in 0..args.transfers_meanwhile as usize {
            let (payer, payee) = (t % args.firms as usize, (t * 7 + 1) % args.firms as usize);
            if payer == payee {
                continue;
            }
            let pay = OpKind::Transfer(Transfer {
                payer: firm(payer),
                payee: firm(payee),
                amount_minor: 1,
                memo: String::new(),
                invoice_ref: None,
                invoice: None,
            });
            w.run(payer, pay, ClearingInput::Propose, Some(&mut changes))?;
        }
        let before = w.ledger.state().clone();
        let run = OpKind::RunClearing(RunClearing { with_credit, reason: "monthly".into() });
        let (applied, cpu, wall) =
            timed(|| w.run(usize::MAX, run.clone(), ClearingInput::Planned(&planned, &changes), None));
        let entry = match applied {
            Ok(entry) => entry.context("an entry")?,
            Err(e) => {
                println!("  the plan did not hold after the transfers ({e}); the node would plan again");
                continue;
            }
        };
        writer += cpu;
        println!("{:<44} {:>12} {:>12}", "  writer: confirm and apply", ms(cpu), ms(wall));
        let ((bytes, _hash), cpu, wall) = timed(|| (entry.encode(), entry.hash()));
        writer += cpu;
        println!(
            "{:<44} {:>12} {:>12}",
            format!("  writer: encode ({:.1} MiB) and hash the entry", bytes.len() as f64 / 1048576.0),
            ms(cpu),
            ms(wall)
        );
        println!("{:<44} {:>12}", "  writer in all", ms(writer));
        worst = worst.max(writer);
        // What the writer did before: the full check (what a replay runs), then apply.
        let (check, cpu, wall) = timed(|| clearing::check(&before, with_credit, &planned.record));
        check.map_err(|r| anyhow::anyhow!("the full check refused the run: {}", r.message("CHW", 2)))?;
        println!("{:<44} {:>12} {:>12}", "  for comparison: the full check (replay)", ms(cpu), ms(wall));
        println!(
            "  cleared: {} invoices, {} firms changed",
            planned.record.invoices.len(),
            planned.record.firms.iter().filter(|f| f.changed).count()
        );
    }
    println!();
    let met = worst <= Duration::from_millis(100);
    println!(
        "target: the writer holds transfers <= 100 ms per run: [{}] worst {} of writer CPU",
        if met { "met" } else { "missed" },
        ms(worst)
    );
    Ok(())
}

fn clone_world(w: &World) -> World {
    World {
        genesis: w.genesis.clone(),
        ledger: w.ledger.clone(),
        keys: w.keys.iter().map(|k| Keypair::from_seed(&k.seed())).collect(),
        admin: Keypair::from_seed(&w.admin.seed()),
        next_id: w.next_id,
        clock_ms: w.clock_ms,
    }
}
