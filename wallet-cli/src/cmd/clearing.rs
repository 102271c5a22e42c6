//! `cercle clearing`: optimal multilateral set-off of an invoice network read from a file.
//!
//! `cercle clearing solve --input FILE.csv` reads obligations (`debtor,creditor,amount`, the
//! amount an integer in minor units; see `cercle_clearing::csv`), clears as much debt as possible
//! without changing any firm's net position (the exact optimum, its certificate checked), and
//! prints the totals. No node is involved.
//!
//! With `--json` it prints one JSON object. Totals are exact (`i128` inside): each amount is a
//! JSON number when it fits in an `i64`, and a string of digits otherwise, so no script ever
//! sees a rounded amount. `--out FILE` writes every obligation, in input order, with the amount
//! cleared on it: a pair's cleared amount goes to its obligations first come, first served.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use cercle_clearing::csv::{self, CsvError, Invoices};
use cercle_clearing::{Clearing, Report};
use serde_json::{Value, json};

use crate::Global;
use crate::failure::usage;
use crate::files;
use crate::output::{self, amount_json};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Compute the optimal set-off of the obligations in a CSV file
    Solve(SolveArgs),
}

#[derive(Debug, clap::Args)]
pub struct SolveArgs {
    /// The obligations: CSV with the columns debtor,creditor,amount (integer minor units)
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Write each obligation with the amount cleared on it to FILE (CSV; refuses to overwrite)
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn run(global: &Global, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Solve(args) => solve(global, &args),
    }
}

fn solve(global: &Global, args: &SolveArgs) -> anyhow::Result<()> {
    // Refused before the work, not after it.
    if let Some(out) = &args.out {
        files::check_target(out, false, OUT_EXISTS)?;
    }
    // Every problem with the input file is bad input.
    let invoices = csv::read(&args.input).map_err(|e| match e {
        CsvError::Line { .. } => usage(format!("{}: {e}", args.input.display())),
        CsvError::Io { ref source, .. } => usage(format!("{e}: {source}")),
        e => usage(e),
    })?;
    let firm_count = u32::try_from(invoices.firms.len()).context("too many firms")?;
    let start = Instant::now();
    let clearing = cercle_clearing::clear(firm_count, &invoices.obligations)
        .with_context(|| format!("cannot clear the obligations of {}", args.input.display()))?;
    let report = Report { seconds: start.elapsed().as_secs_f64(), ..clearing.report.clone() };
    if let Some(out) = &args.out {
        write_out(out, &invoices, &clearing)?;
    }
    if global.json {
        output::emit_ok(report_json(&report, clearing.pairs.len(), args.out.as_deref()))
    } else {
        output::emit(&report_text(&report, args.out.as_deref()))
    }
}

/// What to do when `--out` exists.
const OUT_EXISTS: &str = "choose another --out path (the file is never overwritten)";

fn write_out(path: &Path, invoices: &Invoices, clearing: &Clearing) -> anyhow::Result<()> {
    let mut file = files::NewFile::create(path, false, OUT_EXISTS)?;
    let mut out = std::io::BufWriter::new(file.file());
    csv::write_cleared(&mut out, invoices, &clearing.cleared)
        .and_then(|()| out.flush())
        .with_context(|| format!("cannot write {}", path.display()))?;
    drop(out);
    file.commit()
}

fn report_json(report: &Report, pairs: usize, out: Option<&Path>) -> Value {
    json!({
        "obligations": report.obligations,
        "firms": report.firms,
        "pairs": pairs,
        "total_debt_minor": amount_json(report.total_debt_minor),
        "net_internal_debt_minor": amount_json(report.net_internal_debt_minor),
        "cleared_minor": amount_json(report.cleared_minor),
        "remaining_debt_minor": amount_json(report.remaining_debt_minor),
        "cleared_basis_points": output::basis_points(report.cleared_minor, report.total_debt_minor),
        "seconds": report.seconds,
        "out": out.map(|p| p.display().to_string()),
    })
}

fn report_text(report: &Report, out: Option<&Path>) -> String {
    let mut text = format!(
        "{} obligations between {} firms (amounts in minor units)\n\
         total debt:        {:>24}\n\
         net internal debt: {:>24}\n\
         cleared:           {:>24}  ({} of the total debt)\n\
         remaining debt:    {:>24}\n\
         solved in {:.3} s",
        report.obligations,
        report.firms,
        thousands(report.total_debt_minor),
        thousands(report.net_internal_debt_minor),
        thousands(report.cleared_minor),
        output::percent(report.cleared_minor, report.total_debt_minor),
        thousands(report.remaining_debt_minor),
        report.seconds,
    );
    if let Some(out) = out {
        text.push_str(&format!("\ncleared amounts per obligation written to {}", out.display()));
    }
    text
}

/// `1234567` as `1,234,567`.
fn thousands(n: i128) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_amounts() {
        let check = |n: i128, expected: &str| assert_eq!(thousands(n), expected);
        check(0, "0");
        check(999, "999");
        check(1_000, "1,000");
        check(-1_234_567, "-1,234,567");
        check(i128::from(i64::MAX) * 3, "27,670,116,110,564,327,421");
        assert_eq!(amount_json(5), json!(5));
        assert_eq!(amount_json(i128::from(i64::MAX)), json!(i64::MAX));
        assert_eq!(amount_json(i128::from(i64::MAX) + 1), json!("9223372036854775808"));
    }
}
