//! The hledger export: a plain-text accounting journal that `hledger -f FILE balance`
//! reads, showing every account's balance as the ledger has it, and a total of zero.
//!
//! - A preamble names the ledger, and a `commodity` directive (`commodity 1,000.00 CHW`)
//!   fixes the currency's decimals, so amounts parse exactly.
//! - Each registration declares the account (`account alice-bakery  ; Alice's Bakery`),
//!   so `hledger --strict` accepts the journal too.
//! - Each transfer is a transaction dated by the node's clock (UTC), with the sequence as
//!   its code, "payer to payee | memo" as its description, and two postings. Each posting
//!   carries a balance assertion (`= -125.50 CHW`) with the balance the ledger recorded
//!   after the entry, so hledger checks the ledger's arithmetic independently.
//! - Administrative operations (registrations, limits, freezes, key rotations) and invoice
//!   operations move no money: they are comment lines with their time, sequence, account
//!   and reason. A clearing run's set-off moves no money either; its payments through
//!   mutual credit (if any) are one transaction with a posting per firm, which sums to zero.
//! - A periodic charge (membership fees and demurrage) is one transaction: a posting per
//!   firm charged and one for the association's account, each with the balance its
//!   section records after the charge as assertion; it sums to zero. A firm not charged
//!   (its limit) moves nothing and is a comment line.
//! - Memos are firms' text: control characters become spaces and `;` (hledger's comment
//!   mark) becomes `,`, so a memo cannot add postings, directives or tags.
//! - An export of a period (`--from`) starts with the balances the earlier entries left, as
//!   one "opening balances" transaction (with assertions, summing to zero), preceded by the
//!   declarations of the accounts registered before it.

use std::collections::BTreeMap;
use std::io::Write;

use cercle_core::clearing::FirmPart;

use cercle_core::{AccountId, Entry, Genesis, OpKind, Operation, format_minor};

use crate::describe::one_line;
use crate::{LogWriter, SignedTreeHead, rfc3339, utc_date};

/// Writes the journal.
pub struct Writer<W: Write> {
    out: W,
    genesis: Genesis,
    commodity: String,
    /// What the entries before the exported period left, until it is written.
    before: Option<Before>,
}

/// The entries before an exported period, summed up: the accounts they registered and the
/// balances they left.
#[derive(Default)]
struct Before {
    /// `account NAME  ; display name` lines, in registration order.
    declarations: Vec<String>,
    balances: BTreeMap<AccountId, i64>,
    /// The first and last skipped entries, and the last one's time.
    first: u64,
    last: u64,
    last_ms: u64,
}

impl<W: Write> Writer<W> {
    /// Writes the preamble and the commodity directive.
    pub fn new(mut out: W, genesis: &Genesis) -> std::io::Result<Self> {
        let commodity = commodity_symbol(&genesis.currency);
        writeln!(
            out,
            "; Cercle ledger {}: currency {}, {} decimals; genesis hash {}",
            genesis.ledger_id,
            genesis.currency,
            genesis.exponent,
            hex::encode(genesis.hash())
        )?;
        writeln!(
            out,
            "; Written by `cercle audit export --format hledger`: one transaction per transfer, with the"
        )?;
        writeln!(
            out,
            "; balances the ledger recorded as assertions; administrative operations as comments."
        )?;
        writeln!(out)?;
        writeln!(out, "commodity {} {commodity}", commodity_sample(genesis.exponent))?;
        writeln!(out)?;
        Ok(Writer { out, genesis: genesis.clone(), commodity, before: None })
    }

    /// Writes what the skipped entries left: the account declarations, and one transaction
    /// that opens every nonzero balance, dated at the last skipped entry.
    fn opening(&mut self) -> std::io::Result<()> {
        let Some(before) = self.before.take() else { return Ok(()) };
        writeln!(
            self.out,
            "; entries {} to {} are before the exported period: the accounts they registered and the balances they left",
            before.first, before.last
        )?;
        for line in &before.declarations {
            writeln!(self.out, "{line}")?;
        }
        let open: Vec<(&AccountId, i64)> =
            before.balances.iter().filter(|(_, b)| **b != 0).map(|(a, b)| (a, *b)).collect();
        if !open.is_empty() {
            writeln!(
                self.out,
                "{} * ({}) opening balances | as left by entry {}",
                utc_date(before.last_ms),
                before.last,
                before.last
            )?;
            for (account, balance) in open {
                let amount = self.amount(balance);
                writeln!(self.out, "    {:<32}  {:>20} = {amount}", account.as_str(), amount)?;
            }
        }
        writeln!(self.out)
    }

    fn amount(&self, minor: i64) -> String {
        format!("{} {}", hledger_number(minor, self.genesis.exponent), self.commodity)
    }
}

impl<W: Write> LogWriter for Writer<W> {
    fn skip(&mut self, entry: &Entry, op: &Operation) -> std::io::Result<()> {
        let before = self.before.get_or_insert_with(|| Before { first: entry.sequence, ..Before::default() });
        before.last = entry.sequence;
        before.last_ms = entry.timestamp_ms;
        for b in &entry.balances_after {
            before.balances.insert(b.account.clone(), b.balance_minor);
        }
        if let Some(record) = charge_record(entry) {
            for f in record.firms.iter().filter(|f| f.not_charged.is_none()) {
                before.balances.insert(f.account.clone(), f.balance_after_minor);
            }
            before.balances.insert(record.fee_account.clone(), record.fee_balance_after_minor);
        }
        if let OpKind::RegisterAccount(r) = &op.kind {
            before.declarations.push(format!("account {}  ; {}", r.account, one_line(&r.display_name)));
        }
        Ok(())
    }

    fn entry(&mut self, entry: &Entry, op: &Operation) -> std::io::Result<()> {
        self.opening()?;
        let d = crate::describe::describe_entry(&self.genesis, entry, op);
        let parts = cercle_core::clearing::firm_parts(entry);
        if parts.iter().any(|p| p.firm.payment_minor != 0) {
            return self.clearing_payments(entry, &parts, &d.details);
        }
        if let Some(record) = charge_record(entry) {
            return self.charges(entry, &record);
        }
        if let OpKind::CloseAccount { account, write_off_to: Some(reserve), reason } = &op.kind {
            return self.write_off(entry, account, reserve, reason);
        }
        let Some((payer, payee, amount_minor)) = d.transfer else {
            let mut line = format!("; {} entry {} {}", rfc3339(entry.timestamp_ms), entry.sequence, d.kind);
            if let Some(account) = d.account {
                line.push_str(&format!(" {account}"));
            }
            for part in [d.details.as_str(), d.memo] {
                if !part.is_empty() {
                    line.push_str(&format!(": {}", one_line(part)));
                }
            }
            writeln!(self.out, "{line}")?;
            if let OpKind::RegisterAccount(r) = &op.kind {
                writeln!(self.out, "account {}  ; {}", r.account, one_line(&r.display_name))?;
            }
            return Ok(());
        };
        let mut description = format!("{payer} to {payee}");
        if !d.memo.is_empty() {
            description.push_str(&format!(" | {}", safe(d.memo)));
        }
        writeln!(self.out, "{} * ({}) {description}", utc_date(entry.timestamp_ms), entry.sequence)?;
        let mut comment =
            format!("    ; time: {}, entry: {}", rfc3339(entry.timestamp_ms), hex::encode(entry.hash()));
        if let Some(invoice) = d.invoice_ref {
            comment.push_str(&format!(", invoice: {}", safe(invoice)));
        }
        writeln!(self.out, "{comment}")?;
        // A levied transfer: the entry records three balances after, and the shares of the
        // levy are the schedule's, not the body's, so every posting is a balance assignment
        // (as for a write-off): hledger works out the amounts, which must sum to zero.
        if entry.balances_after.len() > 2 {
            for b in &entry.balances_after {
                writeln!(self.out, "    {:<32}  = {}", b.account.as_str(), self.amount(b.balance_minor))?;
            }
            return writeln!(self.out);
        }
        // An accepted amount is positive, so its negation cannot overflow.
        for (account, minor) in [(payee, amount_minor), (payer, amount_minor.saturating_neg())] {
            let mut posting = format!("    {:<32}  {:>20}", account.as_str(), self.amount(minor));
            if let Some(after) = balance_after(entry, account) {
                posting.push_str(&format!(" = {}", self.amount(after)));
            }
            writeln!(self.out, "{posting}")?;
        }
        writeln!(self.out)
    }

    fn finish(&mut self, tree_head: &SignedTreeHead) -> std::io::Result<()> {
        self.opening()?;
        let head = &tree_head.head;
        writeln!(
            self.out,
            "; end of the log: {} entries, Merkle root {}, signed by the node at {}",
            head.tree_size,
            hex::encode(head.root_hash),
            rfc3339(head.timestamp_ms)
        )?;
        self.out.flush()
    }
}

impl<W: Write> Writer<W> {
    /// A clearing run's payments through mutual credit: one posting per firm, the change of
    /// its balance, with the balance recorded after the run as assertion.
    fn clearing_payments(&mut self, entry: &Entry, parts: &[FirmPart], details: &str) -> std::io::Result<()> {
        writeln!(
            self.out,
            "{} * ({}) clearing run | {}",
            utc_date(entry.timestamp_ms),
            entry.sequence,
            details
        )?;
        writeln!(
            self.out,
            "    ; time: {}, entry: {}",
            rfc3339(entry.timestamp_ms),
            hex::encode(entry.hash())
        )?;
        for part in parts.iter().filter(|p| p.firm.payment_minor != 0) {
            let firm = &part.firm;
            let mut posting = format!(
                "    {:<32}  {:>20}",
                firm.account.as_str(),
                self.amount(firm.payment_minor.saturating_neg())
            );
            if let Some(after) = part.balance_after {
                posting.push_str(&format!(" = {}", self.amount(after)));
            }
            writeln!(self.out, "{posting}")?;
        }
        writeln!(self.out)
    }
}

/// The periodic charge an entry records, if it is one (and its section decodes: a replay
/// refuses one that does not).
fn charge_record(entry: &Entry) -> Option<cercle_core::charges::ChargeRecord> {
    let section = entry.section(cercle_core::SectionTag::Charges)?;
    cercle_core::charges::ChargeRecord::from_section(section).ok()
}

impl<W: Write> Writer<W> {
    /// A periodic charge: a posting per firm charged, and the association's account
    /// receiving the total, each asserting the balance the section records after it.
    fn charges(&mut self, entry: &Entry, record: &cercle_core::charges::ChargeRecord) -> std::io::Result<()> {
        writeln!(
            self.out,
            "{} * ({}) periodic fees of {} | membership and demurrage",
            utc_date(entry.timestamp_ms),
            entry.sequence,
            record.period
        )?;
        writeln!(
            self.out,
            "    ; time: {}, entry: {}",
            rfc3339(entry.timestamp_ms),
            hex::encode(entry.hash())
        )?;
        let money = |minor: i64| format_minor(minor, self.genesis.exponent);
        for f in &record.firms {
            if let Some(why) = &f.not_charged {
                writeln!(
                    self.out,
                    "    ; {} not charged {}: {}",
                    f.account,
                    money(f.due_minor()),
                    why.describe(&money)
                )?;
            }
        }
        for f in record.firms.iter().filter(|f| f.not_charged.is_none()) {
            writeln!(
                self.out,
                "    {:<32}  {:>20} = {}",
                f.account.as_str(),
                self.amount(f.charged_minor().saturating_neg()),
                self.amount(f.balance_after_minor)
            )?;
        }
        writeln!(
            self.out,
            "    {:<32}  {:>20} = {}",
            record.fee_account.as_str(),
            self.amount(record.charged_minor()),
            self.amount(record.fee_balance_after_minor)
        )?;
        writeln!(self.out)
    }

    /// A write-off at closure: the leaving firm's debt moves to the reserve. The entry
    /// records the balances after, not the amount, so both postings are balance assignments
    /// (`= AMOUNT` alone): hledger works out the amounts, which must sum to zero.
    fn write_off(
        &mut self,
        entry: &Entry,
        account: &AccountId,
        reserve: &AccountId,
        reason: &str,
    ) -> std::io::Result<()> {
        writeln!(
            self.out,
            "{} * ({}) write-off at closure of {account} | {}",
            utc_date(entry.timestamp_ms),
            entry.sequence,
            safe(reason)
        )?;
        writeln!(
            self.out,
            "    ; time: {}, entry: {}",
            rfc3339(entry.timestamp_ms),
            hex::encode(entry.hash())
        )?;
        for firm in [account, reserve] {
            if let Some(after) = balance_after(entry, firm) {
                writeln!(self.out, "    {:<32}  = {}", firm.as_str(), self.amount(after))?;
            }
        }
        writeln!(self.out)
    }
}

fn balance_after(entry: &Entry, account: &AccountId) -> Option<i64> {
    entry.balances_after.iter().find(|b| &b.account == account).map(|b| b.balance_minor)
}

/// An amount as the journal writes it: digits grouped by a comma, as the `commodity`
/// directive declares (the ledger's own display groups a currency without decimals with an
/// apostrophe, which hledger would not read as a digit group mark).
fn hledger_number(minor: i64, exponent: u8) -> String {
    format_minor(minor, exponent).replace('\'', ",")
}

/// A firm's text made safe for a transaction's first line or a comment.
fn safe(text: &str) -> String {
    one_line(text).replace(';', ",")
}

/// The currency as an hledger commodity symbol: quoted when it holds digits.
fn commodity_symbol(currency: &str) -> String {
    if currency.bytes().all(|b| b.is_ascii_alphabetic()) {
        currency.to_string()
    } else {
        format!("\"{currency}\"")
    }
}

/// The amount in a `commodity` directive that fixes the format: `1,000.00`, and `1,000.`
/// without decimals (hledger needs the decimal mark to tell `,` is a digit group mark).
fn commodity_sample(exponent: u8) -> String {
    let sample =
        hledger_number(1000 * 10i64.pow(u32::from(exponent.min(cercle_limits::EXPONENT_MAX))), exponent);
    if exponent == 0 { format!("{sample}.") } else { sample }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commodities_fix_the_decimals() {
        let check = |currency: &str, exponent: u8, expected: &str| {
            assert_eq!(
                format!("commodity {} {}", commodity_sample(exponent), commodity_symbol(currency)),
                expected
            );
        };
        check("CHW", 2, "commodity 1,000.00 CHW");
        check("SRD", 0, "commodity 1,000. SRD");
        check("EUR2", 3, "commodity 1,000.000 \"EUR2\"");
        check("WIR", 9, "commodity 1,000.000000000 WIR");
    }

    #[test]
    fn a_period_opens_with_the_balances_the_earlier_entries_left() {
        use cercle_core::{
            BalanceAfter, Envelope, LedgerId, OperationId, PublicKey, RegisterAccount, Transfer,
        };
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
        let entry = |sequence: u64, balances: &[(&str, i64)]| Entry {
            sequence,
            timestamp_ms: 1_795_341_600_000 + sequence * 86_400_000,
            prev_hash: [0; 32],
            envelope: Envelope::single(vec![1], PublicKey([5; 32]), [6; 64]),
            balances_after: balances
                .iter()
                .map(|(a, b)| BalanceAfter { account: id(a), balance_minor: *b })
                .collect(),
            sections: vec![],
        };
        let op = |kind: OpKind| Operation { id: OperationId([7; 16]), valid_until_ms: 0, kind };
        let register = |name: &str| {
            op(OpKind::RegisterAccount(RegisterAccount {
                account: id(name),
                display_name: format!("{name}; inc"),
                keys: vec![],
                credit_limit_minor: 100_000,
                max_balance_minor: None,
                profile: Default::default(),
                allow_shared_key: false,
            }))
        };
        let pay = |amount_minor: i64| {
            op(OpKind::Transfer(Transfer {
                payer: id("alice"),
                payee: id("bobby"),
                amount_minor,
                memo: String::new(),
                invoice_ref: None,
                invoice: None,
            }))
        };
        let mut out = Vec::new();
        let mut writer = Writer::new(&mut out, &genesis).unwrap();
        writer.skip(&entry(1, &[("alice", 0)]), &register("alice")).unwrap();
        writer.skip(&entry(2, &[("bobby", 0)]), &register("bobby")).unwrap();
        writer.skip(&entry(3, &[("alice", -12_550), ("bobby", 12_550)]), &pay(12_550)).unwrap();
        writer.entry(&entry(4, &[("alice", -12_650), ("bobby", 12_650)]), &pay(100)).unwrap();
        let text = String::from_utf8(out).unwrap();
        let body: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("; entries")).collect();
        let expected = [
            "; entries 1 to 3 are before the exported period: the accounts they registered and the balances they left",
            "account alice  ; alice; inc",
            "account bobby  ; bobby; inc",
            "2026-11-25 * (3) opening balances | as left by entry 3",
            "    alice                                      -125.50 CHW = -125.50 CHW",
            "    bobby                                       125.50 CHW = 125.50 CHW",
            "",
            "2026-11-26 * (4) alice to bobby",
        ];
        assert_eq!(body[..expected.len()], expected, "{text}");
        // The balances asserted after the period's entries follow from the opening.
        assert!(text.contains("-1.00 CHW = -126.50 CHW"), "{text}");

        // A levied transfer: three balances after, each posting a balance assignment, so
        // hledger works out the shares (they sum to zero).
        let mut out = Vec::new();
        let mut writer = Writer::new(&mut out, &genesis).unwrap();
        writer.skip(&entry(1, &[("alice", 0)]), &register("alice")).unwrap();
        writer.skip(&entry(2, &[("bobby", 0)]), &register("bobby")).unwrap();
        writer.skip(&entry(3, &[("assoc", 0)]), &register("assoc")).unwrap();
        writer
            .entry(&entry(4, &[("alice", -10_126), ("bobby", 10_075), ("assoc", 51)]), &pay(10_100))
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        for line in [
            "    alice                             = -101.26 CHW",
            "    bobby                             = 100.75 CHW",
            "    assoc                             = 0.51 CHW",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in {text}");
        }
        assert!(!text.contains("-101.00 CHW"), "no posting of the bare amount: {text}");
    }

    #[test]
    fn memos_cannot_escape_their_line() {
        let check = |memo: &str, expected: &str| assert_eq!(safe(memo), expected, "{memo:?}");
        check("flour, week 47", "flour, week 47");
        check("x\n    bob  -5 CHW", "x     bob  -5 CHW");
        check("x ; tag:value", "x , tag:value");
    }
}
