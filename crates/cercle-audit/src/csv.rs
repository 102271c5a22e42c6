//! The CSV export: one row per entry, for spreadsheets.
//!
//! RFC 4180: a header row, then one row per entry in log order, CRLF line ends, fields
//! quoted (with doubled quotes) when they hold a comma, a quote, a line break or
//! leading or trailing spaces. The columns:
//!
//! | column         | content                                                              |
//! |----------------|----------------------------------------------------------------------|
//! | `sequence`     | the entry's sequence number, from 1                                  |
//! | `timestamp`    | the node's time, RFC 3339 UTC to the second                          |
//! | `timestamp_ms` | the same, in milliseconds since the Unix epoch                        |
//! | `kind`         | `transfer`, `register_account`, `set_limits`, `freeze_account`, ...   |
//! | `account`      | the account an administrative operation or key rotation is about      |
//! | `payer`        | a transfer's payer                                                    |
//! | `payee`        | a transfer's payee                                                    |
//! | `amount`       | a transfer's amount in major units, `.` as decimal mark, no grouping |
//! | `currency`     | the currency code                                                     |
//! | `memo`         | a transfer's memo, or an administrative operation's reason           |
//! | `invoice_ref`  | a transfer's invoice reference                                        |
//! | `details`      | what an administrative operation set (limits, name, key count)        |
//! | `signer`       | the signer's public key, hex                                         |
//! | `operation_id` | the client-chosen operation id, hex                                  |
//! | `entry_hash`   | SHA-256 of the canonical entry, hex                                  |
//!
//! Memos and the like are written by firms. A text field that a spreadsheet would take
//! for a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) is
//! written with a leading `'`, which spreadsheets show as text.

use std::io::Write;

use cercle_core::{Entry, Genesis, Operation, format_minor};

use crate::describe::describe;
use crate::{LogWriter, SignedTreeHead, rfc3339};

/// The header row.
pub const COLUMNS: [&str; 15] = [
    "sequence",
    "timestamp",
    "timestamp_ms",
    "kind",
    "account",
    "payer",
    "payee",
    "amount",
    "currency",
    "memo",
    "invoice_ref",
    "details",
    "signer",
    "operation_id",
    "entry_hash",
];

/// Writes the CSV export.
pub struct Writer<W: Write> {
    out: W,
    genesis: Genesis,
}

impl<W: Write> Writer<W> {
    /// Writes the header row.
    pub fn new(mut out: W, genesis: &Genesis) -> std::io::Result<Self> {
        write_row(&mut out, COLUMNS.iter().map(|c| c.to_string()))?;
        Ok(Writer { out, genesis: genesis.clone() })
    }
}

impl<W: Write> LogWriter for Writer<W> {
    fn entry(&mut self, entry: &Entry, op: &Operation) -> std::io::Result<()> {
        let g = &self.genesis;
        let d = describe(g, op);
        let (payer, payee, amount) = match d.transfer {
            Some((payer, payee, amount)) => {
                (payer.to_string(), payee.to_string(), plain_major(amount, g.exponent))
            }
            None => Default::default(),
        };
        let row = [
            entry.sequence.to_string(),
            rfc3339(entry.timestamp_ms),
            entry.timestamp_ms.to_string(),
            d.kind.to_string(),
            d.account.map(ToString::to_string).unwrap_or_default(),
            payer,
            payee,
            amount,
            g.currency.clone(),
            text(d.memo),
            text(d.invoice_ref.unwrap_or_default()),
            text(&d.details),
            entry.envelope.signer.to_hex(),
            op.id.to_string(),
            hex::encode(entry.hash()),
        ];
        write_row(&mut self.out, row.into_iter())
    }

    fn finish(&mut self, _tree_head: &SignedTreeHead) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// An amount in major units as spreadsheets parse it: `-1250.00`.
fn plain_major(minor: i64, exponent: u8) -> String {
    format_minor(minor, exponent).replace(',', "")
}

/// A text field that no spreadsheet will evaluate as a formula.
fn text(value: &str) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{value}") } else { value.to_string() }
}

/// One field, quoted when it must be.
fn field(value: &str) -> String {
    let must_quote = value.contains([',', '"', '\r', '\n'])
        || value.starts_with(char::is_whitespace)
        || value.ends_with(char::is_whitespace);
    if must_quote { format!("\"{}\"", value.replace('"', "\"\"")) } else { value.to_string() }
}

fn write_row(out: &mut impl Write, fields: impl Iterator<Item = String>) -> std::io::Result<()> {
    let line: Vec<String> = fields.map(|f| field(&f)).collect();
    out.write_all(line.join(",").as_bytes())?;
    out.write_all(b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_when_they_must_be() {
        let check = |value: &str, expected: &str| assert_eq!(field(&text(value)), expected, "{value:?}");
        check("flour, week 47", "\"flour, week 47\"");
        check("say \"hi\"", "\"say \"\"hi\"\"\"");
        check("two\nlines", "\"two\nlines\"");
        check(" padded", "\" padded\"");
        check("plain", "plain");
        check("", "");
        check("=HYPERLINK(\"x\")", "\"'=HYPERLINK(\"\"x\"\")\"");
        check("-1+1", "'-1+1");
        check("@SUM(A1)", "'@SUM(A1)");
        check("café", "café");
    }

    #[test]
    fn amounts_are_plain_decimals() {
        let check =
            |minor: i64, exponent: u8, expected: &str| assert_eq!(plain_major(minor, exponent), expected);
        check(12_550, 2, "125.50");
        check(125_000_000, 2, "1250000.00");
        check(-1, 2, "-0.01");
        check(1234, 0, "1234");
    }
}
