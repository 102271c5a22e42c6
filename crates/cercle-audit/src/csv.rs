//! The CSV export: one row per entry, for spreadsheets.
//!
//! RFC 4180: a header row, then one row per entry in log order, CRLF line ends, fields
//! quoted (with doubled quotes) when they hold a comma, a quote, a line break or
//! leading or trailing spaces. A clearing run's entry row is followed by rows of its own,
//! with the entry's sequence, time and hash, so that each firm can reconcile the run:
//!
//! - `clearing_firm`, one per firm the run changed: `account` and, in `amount`, the change of
//!   its balance (the payment through mutual credit, negative when the firm paid; 0 when the
//!   run only cleared its invoices). These amounts sum to zero, and are the postings of the
//!   hledger export.
//! - `clearing_invoice`, one per invoice the run reduced: `invoice_id`, in `amount` all that
//!   was cleared of it, split into `setoff` and `credit`. The invoice's firms are on its
//!   `issue_invoice` row (`payee`, `payer`), found by its id.
//!
//! The columns:
//!
//! | column         | content                                                              |
//! |----------------|----------------------------------------------------------------------|
//! | `sequence`     | the entry's sequence number, from 1                                  |
//! | `timestamp`    | the node's time, RFC 3339 UTC to the second                          |
//! | `timestamp_ms` | the same, in milliseconds since the Unix epoch                        |
//! | `kind`         | `transfer`, `register_account`, `set_limits`, `freeze_account`, ...   |
//! |                | and `clearing_firm`, `clearing_invoice` after a clearing run          |
//! | `account`      | the account an administrative operation or key rotation is about, or |
//! |                | the firm of a `clearing_firm` row                                     |
//! | `payer`        | a transfer's or an invoice's payer                                    |
//! | `payee`        | a transfer's or an invoice's payee                                    |
//! | `amount`       | a transfer's amount in major units, `.` as decimal mark, no grouping; |
//! |                | a firm's balance change or an invoice's cleared amount in a run       |
//! | `currency`     | the currency code                                                     |
//! | `memo`         | a transfer's memo, or an administrative operation's reason           |
//! | `invoice_ref`  | a transfer's invoice reference                                        |
//! | `details`      | what an administrative operation set (limits, name, key count)        |
//! | `signer`       | the signer's public key, hex                                         |
//! | `operation_id` | the client-chosen operation id, hex                                  |
//! | `entry_hash`   | SHA-256 of the canonical entry, hex                                  |
//! | `invoice_id`   | the invoice an operation is about, a payment pays or a run reduced   |
//! | `setoff`       | what a run cancelled of an invoice by set-off, in major units        |
//! | `credit`       | what a run settled of an invoice through mutual credit               |
//! | `levy`         | a levied transfer's levy (or a held payment's, at its approval), all |
//! |                | that went to the fee account under the schedule then in force; what  |
//! |                | the payer and the payee each paid of it is in `details`               |
//! | `fee_account`  | the account the levy went to                                          |
//!
//! Memos and the like are written by firms. A text field that a spreadsheet would take
//! for a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) is
//! written with a leading `'`, which spreadsheets show as text.

use std::io::Write;

use cercle_core::{AccountId, Entry, FeeSchedule, Genesis, OpKind, Operation, format_minor};

use crate::describe::describe_entry;
use crate::{LogWriter, SignedTreeHead, rfc3339};

/// The header row. Columns are only ever added at the end, so that a spreadsheet that
/// reads them by position keeps working.
pub const COLUMNS: [&str; 20] = [
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
    "invoice_id",
    "setoff",
    "credit",
    "levy",
    "fee_account",
];

/// Writes the CSV export.
pub struct Writer<W: Write> {
    out: W,
    genesis: Genesis,
    /// The fee schedule in force after the entries so far (written or skipped): what a
    /// levied payment's levy is worked out from, as the ledger worked it out.
    fees: Option<FeeSchedule>,
}

impl<W: Write> Writer<W> {
    /// Writes the header row.
    pub fn new(mut out: W, genesis: &Genesis) -> std::io::Result<Self> {
        write_row(&mut out, COLUMNS.iter().map(|c| c.to_string()))?;
        Ok(Writer { out, genesis: genesis.clone(), fees: None })
    }

    /// Follows the fee schedule.
    fn note_fees(&mut self, op: &Operation) {
        if let OpKind::SetFees(f) = &op.kind {
            self.fees = Some(f.schedule.clone());
        }
    }
}

/// A levied payment's levy: a transfer (or the approval of a held one) whose entry records
/// a third balance, the fee account's, under `fees`, the schedule in force. Returns the fee
/// account, the levy and its payer's and payee's shares.
fn levy_of(
    entry: &Entry,
    fees: Option<&FeeSchedule>,
    transfer: Option<(&AccountId, &AccountId, i64)>,
) -> Option<(AccountId, i64, i64, i64)> {
    let (payer, payee, amount) = transfer?;
    let fees = fees?;
    entry.balances_after.iter().find(|b| b.account == fees.account)?;
    let levy = fees.levy(payer, payee, amount);
    (levy.total_minor() > 0)
        .then(|| (fees.account.clone(), levy.total_minor(), levy.payer_minor, levy.payee_minor))
}

impl<W: Write> LogWriter for Writer<W> {
    fn skip(&mut self, _entry: &Entry, op: &Operation) -> std::io::Result<()> {
        self.note_fees(op);
        Ok(())
    }

    fn entry(&mut self, entry: &Entry, op: &Operation) -> std::io::Result<()> {
        self.note_fees(op);
        let g = &self.genesis;
        let d = describe_entry(g, entry, op);
        let levy = levy_of(entry, self.fees.as_ref(), d.transfer);
        let money = |minor: i64| plain_major(minor, g.exponent);
        let mut details = d.details.clone();
        let (levy_column, fee_account) = match &levy {
            Some((account, total, payer_share, payee_share)) => {
                let shares = format!(
                    "levy {} paid by the payer and {} by the payee",
                    money(*payer_share),
                    money(*payee_share)
                );
                details = if details.is_empty() { shares } else { format!("{details}; {shares}") };
                (money(*total), account.to_string())
            }
            None => Default::default(),
        };
        let (payer, payee, amount) = match (d.transfer, d.invoice) {
            (Some((payer, payee, amount)), _) => {
                (payer.to_string(), payee.to_string(), plain_major(amount, g.exponent))
            }
            (None, Some((payee, payer))) => (payer.to_string(), payee.to_string(), String::new()),
            (None, None) => Default::default(),
        };
        let invoice_id = match &op.kind {
            OpKind::Transfer(t) => t.invoice.map(|i| i.to_string()),
            OpKind::IssueInvoice(i) => Some(i.invoice.to_string()),
            OpKind::AcceptInvoice(p)
            | OpKind::RejectInvoice { invoice: p, .. }
            | OpKind::CancelInvoice { invoice: p, .. }
            | OpKind::SetInvoiceClearing { invoice: p, .. } => Some(p.invoice.to_string()),
            _ => None,
        };
        let row = Row {
            kind: d.kind,
            account: d.account.map(ToString::to_string).unwrap_or_default(),
            payer,
            payee,
            amount,
            memo: text(d.memo),
            invoice_ref: text(d.invoice_ref.unwrap_or_default()),
            details: text(&details),
            invoice_id: invoice_id.unwrap_or_default(),
            levy: levy_column,
            fee_account,
            ..Row::default()
        };
        self.row(entry, op, row)?;
        if let Some(record) = entry
            .section(cercle_core::SectionTag::Charges)
            .and_then(|s| cercle_core::charges::ChargeRecord::from_section(s).ok())
        {
            let exponent = self.genesis.exponent;
            let money = |minor: i64| plain_major(minor, exponent);
            // A row per firm listed (its balance change, or why none), then the association's.
            let mut rows = Vec::with_capacity(record.firms.len() + 1);
            for f in &record.firms {
                rows.push(Row {
                    kind: "charge_firm",
                    account: f.account.to_string(),
                    amount: money(f.charged_minor().saturating_neg()),
                    details: match &f.not_charged {
                        None => format!(
                            "membership {}, demurrage {}",
                            money(f.membership_minor),
                            money(f.demurrage_minor)
                        ),
                        Some(why) => {
                            format!("not charged {}: {}", money(f.due_minor()), why.describe(&money))
                        }
                    },
                    ..Row::default()
                });
            }
            rows.push(Row {
                kind: "charge_fee_account",
                account: record.fee_account.to_string(),
                amount: money(record.charged_minor()),
                details: format!("periodic fees of {}", record.period),
                ..Row::default()
            });
            for row in rows {
                self.row(entry, op, row)?;
            }
            return Ok(());
        }
        let Some(section) = entry.section(cercle_core::SectionTag::Clearing) else { return Ok(()) };
        // The replay refuses a record that does not decode; an export writes what it can.
        let Ok(record) = cercle_core::ClearingRecord::from_section(section) else { return Ok(()) };
        let exponent = self.genesis.exponent;
        let money = |minor: i64| plain_major(minor, exponent);
        let mut rows = Vec::with_capacity(record.firms.len() + record.invoices.len());
        for firm in record.firms.iter().filter(|f| f.changed || f.payment_minor != 0) {
            // The payment is what the firm paid in: its balance went down by it.
            let change = firm.payment_minor.saturating_neg();
            rows.push(Row {
                kind: "clearing_firm",
                account: firm.account.to_string(),
                amount: money(change),
                details: "balance change by the clearing run".into(),
                ..Row::default()
            });
        }
        for cleared in &record.invoices {
            let total = cleared.setoff_minor.saturating_add(cleared.credit_minor);
            rows.push(Row {
                kind: "clearing_invoice",
                amount: money(total),
                details: "cleared of the invoice by the clearing run".into(),
                invoice_id: cleared.invoice.to_string(),
                setoff: money(cleared.setoff_minor),
                credit: money(cleared.credit_minor),
                ..Row::default()
            });
        }
        for row in rows {
            self.row(entry, op, row)?;
        }
        Ok(())
    }

    fn finish(&mut self, _tree_head: &SignedTreeHead) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// The columns that differ from row to row; the entry's own columns are filled in by
/// `Writer::row`.
#[derive(Default)]
struct Row {
    kind: &'static str,
    account: String,
    payer: String,
    payee: String,
    amount: String,
    memo: String,
    invoice_ref: String,
    details: String,
    invoice_id: String,
    setoff: String,
    credit: String,
    levy: String,
    fee_account: String,
}

impl<W: Write> Writer<W> {
    fn row(&mut self, entry: &Entry, op: &Operation, row: Row) -> std::io::Result<()> {
        let fields = [
            entry.sequence.to_string(),
            rfc3339(entry.timestamp_ms),
            entry.timestamp_ms.to_string(),
            row.kind.to_string(),
            row.account,
            row.payer,
            row.payee,
            row.amount,
            self.genesis.currency.clone(),
            row.memo,
            row.invoice_ref,
            row.details,
            entry.envelope.signer().to_hex(),
            op.id.to_string(),
            hex::encode(entry.hash()),
            row.invoice_id,
            row.setoff,
            row.credit,
            row.levy,
            row.fee_account,
        ];
        write_row(&mut self.out, fields.into_iter())
    }
}

/// An amount in major units as spreadsheets parse it: `-1250.00`.
fn plain_major(minor: i64, exponent: u8) -> String {
    format_minor(minor, exponent).replace([',', '\''], "")
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
    fn a_clearing_run_has_a_row_per_firm_and_per_invoice() {
        use cercle_core::clearing::{ClearedInvoice, ClearingFirm, ClearingRecord};
        use cercle_core::{AccountId, Envelope, InvoiceId, LedgerId, OperationId, PublicKey, RunClearing};
        let id = |h: &str| AccountId::parse(h).unwrap();
        let genesis = Genesis {
            ledger_id: LedgerId([1; 16]),
            currency: "CHW".into(),
            exponent: 2,
            admin_keys: vec![],
            auditor_keys: vec![],
            node_key: PublicKey([2; 32]),
            quorum: 1,
            day_offset_minutes: 0,
        };
        let firm = |account: &str, payment_minor: i64, changed: bool| ClearingFirm {
            account: id(account),
            setoff_potential: 0,
            credit_potential: 0,
            payment_minor,
            changed,
        };
        let record = ClearingRecord {
            with_credit: true,
            // alpha paid 1,000.00 through its credit, beta passed it on, gamma received it.
            firms: vec![
                firm("alpha", 100_000, true),
                firm("beta", 0, true),
                firm("gamma", -100_000, true),
                firm("idle", 0, false),
            ],
            circuit_potential: 0,
            invoices: vec![
                ClearedInvoice { invoice: InvoiceId([3; 16]), setoff_minor: 5_000, credit_minor: 100_000 },
                ClearedInvoice { invoice: InvoiceId([4; 16]), setoff_minor: 0, credit_minor: 100_000 },
            ],
        };
        let (alpha, beta, gamma) = (id("alpha"), id("beta"), id("gamma"));
        let entry = Entry {
            sequence: 9,
            timestamp_ms: 1_795_341_600_000,
            prev_hash: [0; 32],
            envelope: Envelope::single(vec![1], PublicKey([5; 32]), [6; 64]),
            balances_after: vec![],
            // The node writes the record as a section: invoice 3 is owed by alpha to beta,
            // invoice 4 by beta to gamma; alpha and gamma's balances moved.
            sections: vec![record.to_section(
                |i| match i.0[0] {
                    3 => Some((&alpha, &beta)),
                    _ => Some((&beta, &gamma)),
                },
                |a| match a.as_str() {
                    "alpha" => Some(-100_000),
                    "gamma" => Some(100_000),
                    _ => None,
                },
            )],
        };
        let op = Operation {
            id: OperationId([7; 16]),
            valid_until_ms: 0,
            kind: OpKind::RunClearing(RunClearing { with_credit: true, reason: "December".into() }),
        };
        let mut out = Vec::new();
        let mut writer = Writer::new(&mut out, &genesis).unwrap();
        writer.entry(&entry, &op).unwrap();
        let text = String::from_utf8(out).unwrap();
        // Fields of a line; a quoted field may hold commas.
        let split = |line: &str| {
            let (mut fields, mut field, mut quoted) = (Vec::new(), String::new(), false);
            for c in line.chars() {
                match c {
                    '"' => quoted = !quoted,
                    ',' if !quoted => fields.push(std::mem::take(&mut field)),
                    c => field.push(c),
                }
            }
            fields.push(field);
            fields
        };
        let rows: Vec<Vec<String>> = text.lines().map(split).collect();
        let column = |name: &str| COLUMNS.iter().position(|c| *c == name).unwrap();
        let cells = |row: &Vec<String>, names: &[&str]| {
            names.iter().map(|n| row[column(n)].to_string()).collect::<Vec<_>>()
        };
        assert!(rows.iter().all(|r| r.len() == COLUMNS.len()), "{text}");
        let got: Vec<Vec<String>> = rows[1..]
            .iter()
            .map(|r| cells(r, &["sequence", "kind", "account", "amount", "invoice_id", "setoff", "credit"]))
            .collect();
        let i3 = InvoiceId([3; 16]).to_string();
        let i4 = InvoiceId([4; 16]).to_string();
        let expected: Vec<Vec<String>> = [
            ["9", "run_clearing", "", "", "", "", ""],
            ["9", "clearing_firm", "alpha", "-1000.00", "", "", ""],
            ["9", "clearing_firm", "beta", "0.00", "", "", ""],
            ["9", "clearing_firm", "gamma", "1000.00", "", "", ""],
            ["9", "clearing_invoice", "", "1050.00", &i3, "50.00", "1000.00"],
            ["9", "clearing_invoice", "", "1000.00", &i4, "0.00", "1000.00"],
        ]
        .iter()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect();
        assert_eq!(got, expected, "{text}");
    }

    /// A levied transfer's row says what the levy was, to which account, and who paid what
    /// of it, under the schedule set before, in an entry skipped or not.
    #[test]
    fn a_levied_transfer_shows_its_levy() {
        use cercle_core::{AccountId, BalanceAfter, Envelope, LedgerId, OperationId, PublicKey, Transfer};
        let id = |h: &str| AccountId::parse(h).unwrap();
        let genesis = Genesis {
            ledger_id: LedgerId([1; 16]),
            currency: "CHW".into(),
            exponent: 2,
            admin_keys: vec![],
            auditor_keys: vec![],
            node_key: PublicKey([2; 32]),
            quorum: 1,
            day_offset_minutes: 0,
        };
        let transfer = |sequence: u64, payer: &str, payee: &str, amount_minor: i64, after: &[(&str, i64)]| {
            let entry = Entry {
                sequence,
                timestamp_ms: 1_795_341_600_000 + sequence,
                prev_hash: [0; 32],
                envelope: Envelope::single(vec![1], PublicKey([5; 32]), [6; 64]),
                balances_after: after
                    .iter()
                    .map(|(a, balance_minor)| BalanceAfter { account: id(a), balance_minor: *balance_minor })
                    .collect(),
                sections: vec![],
            };
            let op = Operation {
                id: OperationId([sequence as u8; 16]),
                valid_until_ms: 0,
                kind: OpKind::Transfer(Transfer {
                    payer: id(payer),
                    payee: id(payee),
                    amount_minor,
                    memo: String::new(),
                    invoice_ref: None,
                    invoice: None,
                }),
            };
            (entry, op)
        };
        let mut out = Vec::new();
        let mut writer = Writer::new(&mut out, &genesis).unwrap();
        // Before the exported period: alpha paid beta 10.00, then the association set a
        // levy of 1%, split.
        let (e, op) = transfer(1, "alpha", "beta", 1_000, &[("alpha", -1_000), ("beta", 1_000)]);
        writer.skip(&e, &op).unwrap();
        let schedule = cercle_core::FeeSchedule {
            account: id("assoc"),
            transfer_levy_bp: 100,
            levy_on: cercle_core::LevyOn::Split,
            membership_minor: Default::default(),
            demurrage_bp: 0,
            demurrage_above_minor: 0,
            group_membership_minor: Default::default(),
        };
        let (mut e, mut op) = transfer(2, "alpha", "beta", 1, &[]);
        e.sequence = 2;
        op.kind = OpKind::SetFees(cercle_core::SetFees { schedule, reason: "statutes".into() });
        writer.skip(&e, &op).unwrap();
        // 1% of 3.50 split: 0.04, 0.02 each.
        let (e, op) = transfer(3, "beta", "alpha", 350, &[("beta", 648), ("alpha", -652), ("assoc", 4)]);
        writer.entry(&e, &op).unwrap();
        // To the association: no levy, and no third balance.
        let (e, op) = transfer(4, "alpha", "assoc", 100, &[("alpha", -752), ("assoc", 104)]);
        writer.entry(&e, &op).unwrap();
        let text = String::from_utf8(out).unwrap();
        let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
        let column = |name: &str| COLUMNS.iter().position(|c| *c == name).unwrap();
        let cells = |row: &Vec<&str>| {
            ["sequence", "amount", "levy", "fee_account", "details"].map(|n| row[column(n)].to_string())
        };
        assert_eq!(
            cells(&rows[1]),
            ["3", "3.50", "0.04", "assoc", "levy 0.02 paid by the payer and 0.02 by the payee"]
                .map(String::from),
            "{text}"
        );
        assert_eq!(cells(&rows[2]), ["4", "1.00", "", "", ""].map(String::from), "{text}");
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
