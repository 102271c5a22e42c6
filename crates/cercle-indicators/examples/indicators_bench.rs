//! The indicators' benchmark: a year of a circuit of 10,000 firms (with profiles), about a
//! million entries (transfers, invoices accepted, a clearing run at each month's end),
//! executed by the core's `Ledger` and signed; then the monthly indicators of the year,
//! computed from the entries in memory, timed. The log is written as a jsonl export
//! (`--out FILE.jsonl`) so that `cercle indicators --log FILE.jsonl` can be timed too, with
//! its memory, as the issue asks (one core, at most 3 s and 512 MiB).
//!
//! cargo run --release -p cercle-indicators --example indicators_bench -- [--entries N] [--firms N] [--out FILE]

use std::io::Write;
use std::time::Instant;

use cercle_core::sign::Keypair;
use cercle_core::time::DAY_MS;
use cercle_core::{
    AccountId, Envelope, Executed, Genesis, InvoiceId, InvoiceParties, IssueInvoice, Ledger, LedgerId,
    OpKind, Operation, OperationId, Profile, RegisterAccount, RunClearing, Transfer,
};
use cercle_indicators::{Granularity, GroupBy, Query, compute};

/// 2026-01-01.
const START_DAY: u32 = 20_454;
const COMMUNES: [&str; 8] = ["34145", "34154", "34172", "34022", "30189", "30007", "2A004", "75056"];
const SECTORS: [&str; 10] =
    ["10.71", "10.61", "47.11", "47", "C", "43.21", "62.01", "56.10", "01.13", "49.41"];
const TERRITORIES: [&str; 3] = ["Pays de Lunel", "Pays de l'Or", "Pays ajaccien"];

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let entries_wanted = arg("--entries", 1_000_000);
    let firm_count = arg("--firms", 10_000);
    let args: Vec<String> = std::env::args().collect();
    let out = args.iter().position(|a| a == "--out").and_then(|i| args.get(i + 1)).cloned();

    let admin = Keypair::from_seed(&[1; 32]);
    let node = Keypair::from_seed(&[3; 32]);
    let firm_key = Keypair::from_seed(&[2; 32]);
    let genesis = Genesis {
        ledger_id: LedgerId([5; 16]),
        currency: "CHW".into(),
        exponent: 2,
        admin_keys: vec![admin.public_key()],
        auditor_keys: vec![],
        node_key: node.public_key(),
        quorum: 1,
        day_offset_minutes: 0,
    };
    let mut ledger = Ledger::new(genesis.clone());
    let mut entries = Vec::with_capacity(entries_wanted);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut n = 0u64;
    let start_ms = u64::from(START_DAY) * DAY_MS;
    let year_ms = 365 * DAY_MS;
    let step_ms = year_ms / entries_wanted as u64;
    let generation = Instant::now();
    let mut submit =
        |ledger: &mut Ledger, entries: &mut Vec<_>, at: u64, key: &Keypair, kind: OpKind| -> bool {
            n += 1;
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&n.to_be_bytes());
            let op = Operation { id: OperationId(id), valid_until_ms: at + DAY_MS, kind };
            let body = cercle_core::body::encode(&op);
            let envelope =
                Envelope::single(body.clone(), key.public_key(), key.sign_op(&genesis.ledger_id, &body));
            match ledger.execute(at, envelope, &op) {
                Ok(Executed::Accepted { entry, .. }) => {
                    entries.push(entry);
                    true
                }
                _ => false,
            }
        };
    let handle = |i: u64| AccountId::parse(&format!("firm-{i:05}")).unwrap_or_else(|_| unreachable!());
    for i in 0..firm_count as u64 {
        let profile = Profile {
            sector: Some(SECTORS[(i % 10) as usize].into()),
            commune: Some(COMMUNES[(i * 7 % 8) as usize].into()),
            territory: Some(TERRITORIES[(i % 3) as usize].into()),
            size_class: Some("1-9".into()),
            ..Profile::default()
        };
        let kind = OpKind::RegisterAccount(RegisterAccount {
            account: handle(i),
            display_name: format!("Firm {i}"),
            keys: vec![firm_key.public_key()],
            credit_limit_minor: 1_000_000,
            max_balance_minor: None,
            profile,
            // Every firm signs with the same key here: only the figures matter.
            allow_shared_key: true,
        });
        submit(&mut ledger, &mut entries, start_ms, &admin, kind);
    }
    let mut invoice_count = 0u64;
    let mut month_cleared = 0u64;
    let mut at = start_ms;
    while entries.len() < entries_wanted {
        at += step_ms;
        let month = (at - start_ms) / (year_ms / 12);
        if month > month_cleared {
            month_cleared = month;
            let kind = OpKind::RunClearing(RunClearing { with_credit: false, reason: "monthly".into() });
            submit(&mut ledger, &mut entries, at, &admin, kind);
            continue;
        }
        // Trade mostly within a firm's neighbourhood, so that communes and sectors differ.
        let payer = rng.below(firm_count as u64);
        let reach = if rng.below(4) == 0 { firm_count as u64 - 1 } else { 50 };
        let payee = (payer + 1 + rng.below(reach)) % firm_count as u64;
        let amount = 100 + rng.below(20_000) as i64;
        let r = rng.below(100);
        if r < 2 {
            invoice_count += 1;
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&invoice_count.to_be_bytes());
            let parties =
                InvoiceParties { invoice: InvoiceId(id), payee: handle(payee), payer: handle(payer) };
            let issue = OpKind::IssueInvoice(IssueInvoice {
                invoice: parties.invoice,
                payee: parties.payee.clone(),
                payer: parties.payer.clone(),
                amount_minor: amount,
                local_share_percent: 100,
                due_day: None,
                reference: String::new(),
                excluded_from_clearing: false,
            });
            if submit(&mut ledger, &mut entries, at, &firm_key, issue) {
                submit(&mut ledger, &mut entries, at, &firm_key, OpKind::AcceptInvoice(parties));
            }
        } else {
            let kind = OpKind::Transfer(Transfer {
                payer: handle(payer),
                payee: handle(payee),
                amount_minor: amount,
                memo: String::new(),
                invoice_ref: None,
                invoice: None,
            });
            submit(&mut ledger, &mut entries, at, &firm_key, kind);
        }
    }
    println!(
        "generated {} entries among {firm_count} firms over 2026 in {:.1} s",
        entries.len(),
        generation.elapsed().as_secs_f64()
    );

    for (group_by, label) in [(None, "by month"), (Some(GroupBy::Commune), "by month, grouped by commune")] {
        let query = Query::new(START_DAY, START_DAY + 364, Granularity::Month, group_by, false)
            .unwrap_or_else(|e| panic!("{e}"));
        let t = Instant::now();
        let report = compute(&query, &entries).unwrap_or_else(|e| panic!("{e}"));
        println!(
            "indicators {label}, 12 months, from the entries in memory: {:.2} s ({} periods)",
            t.elapsed().as_secs_f64(),
            report.periods.len()
        );
    }

    if let Some(path) = out {
        // Leaves are the entries' hashes (over their commitments, which hold a clearing
        // section's root, not its parts).
        let mut tree = cercle_core::merkle::MemoryTree::new();
        for entry in &entries {
            tree.push(entry.hash());
        }
        let last_ms = entries.last().map_or(start_ms, |e| e.timestamp_ms);
        let tree_head =
            cercle_audit::synth::sign_tree_head(&genesis, &node, tree.size(), tree.root(), last_ms);
        let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut w = cercle_audit::jsonl::Writer::new(std::io::BufWriter::new(file), &genesis)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        for entry in &entries {
            w.write_entry(entry).unwrap_or_else(|e| panic!("{path}: {e}"));
        }
        w.write_tree_head(&tree_head).unwrap_or_else(|e| panic!("{path}: {e}"));
        println!(
            "wrote {path}: time `cercle indicators --log {path} --from 2026-01-01 --to 2026-12-31 --by month --json`"
        );
        let _ = std::io::stdout().flush();
    }
}
