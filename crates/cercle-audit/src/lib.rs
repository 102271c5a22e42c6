//! The auditor's tools: an independent replay of a Cercle log, and the formats a log is
//! exported in.
//!
//! [`verify`] takes a genesis, the entries of a log and (optionally) the node's signed tree
//! head, and reaches a verdict without trusting the operator: every signature is checked
//! (strictly), every hash link, every operation is re-applied from genesis with the core's
//! own [`cercle_core::Replayer`] (sequence, previous hash, timestamps, outcome, operation-id
//! uniqueness, zero sum and limits after every entry, administrative acts signed by an
//! administrator), and the Merkle root of the log is compared with the one the node signed.
//! On failure it names the first bad entry and why.
//!
//! The export formats: [`jsonl`] (the complete log, which [`verify`] can check offline),
//! [`csv`] (one row per entry, for spreadsheets) and [`hledger`] (a plain-text accounting
//! journal). [`synth`] builds signed logs for tests and benchmarks.
//!
//! Architecture invariant: pure apart from reading and writing the files and writers it is
//! handed. No network, no clock other than measuring how long a verification took, no
//! async runtime. The node is never asked anything: the CLI fetches, this crate judges.
//!
//! API boundary: [`verify`], [`signature_ceiling`], [`jsonl::read`], and the writers behind
//! [`LogWriter`] ([`writer`] picks one by [`Format`]).

pub mod csv;
pub mod describe;
pub mod hledger;
pub mod jsonl;
pub mod synth;
mod time;
mod verify;

use std::io::Write;

use cercle_core::{Entry, Genesis, Operation};

pub use time::{rfc3339, utc_date};
pub use verify::{
    AuditFailure, Ceiling, Options, Position, SignedTreeHead, SourceError, TreeHeadProblem, Verdict,
    signature_ceiling, verify,
};

/// A log written out entry by entry in one of the export formats.
pub trait LogWriter {
    /// Writes one entry; `op` is its decoded operation body.
    fn entry(&mut self, entry: &Entry, op: &Operation) -> std::io::Result<()>;

    /// Takes note of an entry before the exported period, which is not written. A format
    /// whose later entries depend on earlier ones (the journal's balance assertions) sums
    /// them up before the first entry it writes; the others ignore it.
    fn skip(&mut self, _entry: &Entry, _op: &Operation) -> std::io::Result<()> {
        Ok(())
    }

    /// Writes what follows the last entry (the jsonl format's tree-head line, the
    /// journal's closing comment) and flushes. `tree_head` must commit to exactly the
    /// entries written.
    fn finish(&mut self, tree_head: &SignedTreeHead) -> std::io::Result<()>;
}

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The complete log, one JSON object a line: see [`jsonl`].
    Jsonl,
    /// One row per entry for spreadsheets: see [`csv`].
    Csv,
    /// A journal for hledger (and ledger-likes): see [`hledger`].
    Hledger,
}

impl Format {
    /// The format's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Hledger => "hledger",
        }
    }
}

/// A writer of `format` into `out`; it writes its header (genesis line, CSV header,
/// journal preamble) at once.
pub fn writer<'a, W: Write + 'a>(
    format: Format,
    out: W,
    genesis: &Genesis,
) -> std::io::Result<Box<dyn LogWriter + 'a>> {
    Ok(match format {
        Format::Jsonl => Box::new(jsonl::Writer::new(out, genesis)?),
        Format::Csv => Box::new(csv::Writer::new(out, genesis)?),
        Format::Hledger => Box::new(hledger::Writer::new(out, genesis)?),
    })
}
