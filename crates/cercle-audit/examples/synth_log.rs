//! Writes a synthetic signed log in the jsonl export format, for benchmarking
//! `cercle audit verify --log FILE --bench` on a log of any size:
//!
//! ```sh
//! cargo run --release -p cercle-audit --example synth_log -- 200000 /tmp/log.jsonl
//! ```

use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: synth_log ENTRIES PATH [SEED]";
    let entries: usize = args.next().ok_or(usage)?.parse()?;
    let path = args.next().ok_or(usage)?;
    let seed: u64 = args.next().map_or(Ok(1), |s| s.parse())?;
    let started = std::time::Instant::now();
    let log = cercle_audit::synth::synth_log(entries, seed);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let mut writer = cercle_audit::jsonl::Writer::new(&mut out, &log.genesis)?;
    for entry in &log.entries {
        writer.write_entry(entry)?;
    }
    writer.write_tree_head(&log.tree_head)?;
    out.flush()?;
    println!(
        "wrote {entries} entries to {path} in {:.1} s; state digest {}",
        started.elapsed().as_secs_f64(),
        hex::encode(log.ledger.state().digest())
    );
    Ok(())
}
