//! `cercle history`: an account's entries, oldest first, as seen from that account.
//!
//! `--limit N` shows the latest N entries (of the period, with `--from`/`--to`): the wallet
//! asks the node for the account's history newest first, skips what is after the period,
//! and stops at N entries or at the first entry before the period.
//!
//! The wallet does not take the node's word for the entries it shows: each one must hash
//! to the hash the node sent, carry a valid signature for this ledger, and concern the
//! account.

use std::cmp::Ordering;
use std::collections::VecDeque;

use anyhow::{anyhow, bail};
use cercle_core::{AccountId, EntryView, Genesis, OpKind, Operation, format_minor, verify_envelope};
use cercle_limits::{HISTORY_ENTRIES_MAX, PAGE_SIZE_MAX};
use cercle_proto as pb;
use serde_json::json;

use crate::client::Node;
use crate::output::{self, Period, money, one_line, rfc3339};
use crate::signed::parse_account;
use crate::{Global, keys};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The account to show (yours, or any if your key is an administrator's or auditor's)
    #[arg(value_name = "ACCOUNT", value_parser = parse_account)]
    account: AccountId,
    /// Show only the latest N entries (at most 100000), still oldest first
    #[arg(
        long,
        value_name = "N",
        default_value_t = HISTORY_ENTRIES_MAX,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(HISTORY_ENTRIES_MAX))
    )]
    limit: u32,
    /// Only entries from this day on, YYYY-MM-DD (UTC)
    #[arg(long, value_name = "DATE", value_parser = output::parse_date)]
    from: Option<u32>,
    /// Only entries up to this day, included, YYYY-MM-DD (UTC)
    #[arg(long, value_name = "DATE", value_parser = output::parse_date)]
    to: Option<u32>,
}

/// Which way an entry goes, from the account's side: a payment or an invoice goes *to*
/// the counterparty when the account pays or issues it, and comes *from* it otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    To,
    From,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::To => "to",
            Direction::From => "from",
        }
    }
}

/// One entry from the account's side.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    sequence: u64,
    timestamp_ms: u64,
    kind: &'static str,
    /// The other account of a transfer or an invoice, and which way it goes.
    counterparty: Option<(Direction, String)>,
    /// Negative when the account paid, positive when it received: transfers, and a clearing
    /// run's payment through mutual credit.
    amount_minor: Option<i64>,
    balance_after_minor: Option<i64>,
    /// A transfer's memo.
    memo: Option<String>,
    /// Why an administrative act, an invoice's rejection or cancellation, or a clearing run
    /// was made.
    reason: Option<String>,
    /// The invoice the entry is about or pays.
    invoice_id: Option<String>,
    /// The invoice a payment settles (the invoice's id when paid with `invoice pay`, the
    /// free reference of `pay --invoice`), or an issued invoice's own reference.
    invoice_ref: Option<String>,
    /// A clearing run's part for the account: its invoices the run cleared.
    cleared: Vec<cercle_core::clearing::ClearedInvoice>,
    /// A limit rule's part for the account: its sales, old and new limit.
    limit: Option<cercle_core::FirmLimit>,
    /// A periodic charge's part for the account, in minor units (JSON `charge`).
    charge: Option<serde_json::Value>,
    /// The transfer levy this account paid on a payment it made or received: what its
    /// balance moved beyond the payment's amount (see [`settle`]).
    levy_minor: Option<i64>,
    entry_hash: [u8; 32],
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

fn row(account: &AccountId, view: &EntryView, op: &Operation) -> Row {
    let entry = &view.entry;
    let mut row = Row {
        sequence: entry.sequence,
        timestamp_ms: entry.timestamp_ms,
        kind: op.kind.name(),
        counterparty: None,
        amount_minor: None,
        balance_after_minor: view.balance_of(account),
        memo: None,
        reason: None,
        invoice_id: None,
        invoice_ref: None,
        cleared: Vec::new(),
        limit: None,
        charge: None,
        levy_minor: None,
        entry_hash: view.hash(),
    };
    // Money and invoices both go from the payee's side to the payer's or back: the payer
    // pays *to* the payee, the payee issues *to* the payer.
    let side = |payer: &AccountId, payee: &AccountId, outgoing_for_payer: bool| {
        if payer == account {
            let direction = if outgoing_for_payer { Direction::To } else { Direction::From };
            Some((direction, payee.to_string()))
        } else if payee == account {
            let direction = if outgoing_for_payer { Direction::From } else { Direction::To };
            Some((direction, payer.to_string()))
        } else {
            None
        }
    };
    match &op.kind {
        // Held for an owner's approval: nothing moved yet; the row says so.
        OpKind::Transfer(t) if op.kind.is_held(&entry.balances_after) => {
            row.kind = "transfer_held";
            row.counterparty = side(&t.payer, &t.payee, true);
            row.memo = non_empty(&t.memo);
            row.reason = Some(format!("pending payment {}, waiting for an owner's approval", entry.sequence));
        }
        OpKind::ApprovePending { account: payer, payee, amount_minor, pending } => {
            row.counterparty = side(payer, payee, true);
            if payer == account {
                row.amount_minor = Some(amount_minor.saturating_neg());
            } else if payee == account {
                row.amount_minor = Some(*amount_minor);
            }
            row.reason = Some(format!("pending payment {pending} approved"));
        }
        OpKind::DeclinePending { reason, .. } => row.reason = non_empty(reason),
        OpKind::Transfer(t) => {
            row.counterparty = side(&t.payer, &t.payee, true);
            // An accepted amount is positive, so its negation cannot overflow.
            if &t.payer == account {
                row.amount_minor = Some(t.amount_minor.saturating_neg());
            } else if &t.payee == account {
                row.amount_minor = Some(t.amount_minor);
            } else {
                // Neither side: the association's account, paid the transfer's levy (its
                // balance after says how much).
                row.reason = Some(format!("levy on a transfer from {} to {}", t.payer, t.payee));
            }
            row.memo = non_empty(&t.memo);
            row.invoice_id = t.invoice.map(|i| i.to_string());
            row.invoice_ref = row.invoice_id.clone().or_else(|| t.invoice_ref.clone());
        }
        OpKind::SetLimits(s) => row.reason = non_empty(&s.reason),
        OpKind::SetProfile(p) => row.reason = non_empty(&p.reason),
        OpKind::FreezeAccount { reason, .. }
        | OpKind::UnfreezeAccount { reason, .. }
        | OpKind::CloseAccount { reason, .. } => {
            row.reason = non_empty(reason);
            // A write-off: the reserve takes the leaving firm's debt, as if it paid it.
            if let OpKind::CloseAccount { account: leaving, write_off_to: Some(reserve), .. } = &op.kind {
                row.counterparty = side(reserve, leaving, true);
            }
        }
        OpKind::SetRole(r) => row.reason = non_empty(&r.reason),
        OpKind::CreateGroup(g) => row.reason = non_empty(&g.reason),
        OpKind::SetGroupLimits(g) => row.reason = non_empty(&g.reason),
        OpKind::AssignGroup { reason, .. } | OpKind::FollowGroupLimits { reason, .. } => {
            row.reason = non_empty(reason);
        }
        OpKind::SetQuorum(q) => row.reason = non_empty(&q.reason),
        OpKind::RotateNodeKey { reason, .. } => row.reason = non_empty(reason),
        OpKind::SetFees(f) => row.reason = non_empty(&f.reason),
        OpKind::ApplyLimitRule(a) => {
            row.reason = non_empty(&a.reason);
            row.limit = view.limit_part(account);
        }
        OpKind::RegisterAccount(_)
        | OpKind::RotateKeys { .. }
        | OpKind::AddKey(_)
        | OpKind::RemoveKey { .. } => {}
        OpKind::IssueInvoice(i) => {
            row.counterparty = side(&i.payer, &i.payee, false);
            row.invoice_id = Some(i.invoice.to_string());
            row.invoice_ref = non_empty(&i.reference);
        }
        OpKind::AcceptInvoice(p)
        | OpKind::RejectInvoice { invoice: p, .. }
        | OpKind::CancelInvoice { invoice: p, .. }
        | OpKind::SetInvoiceClearing { invoice: p, .. } => {
            row.counterparty = side(&p.payer, &p.payee, false);
            row.invoice_id = Some(p.invoice.to_string());
            if let OpKind::RejectInvoice { reason, .. } | OpKind::CancelInvoice { reason, .. } = &op.kind {
                row.reason = non_empty(reason);
            }
        }
        OpKind::ChargeFees { period } => {
            // The account's own part: what it was charged, or why not; for the association's
            // account, what it received.
            if let Some(f) = cercle_core::charges::firm_charge(view, account) {
                let charged = f.charged_minor();
                row.amount_minor = (charged != 0).then(|| charged.saturating_neg());
                row.reason = Some(match &f.not_charged {
                    None => format!("periodic fees of {period}: membership and demurrage"),
                    Some(why) => format!("periodic fees of {period}: NOT charged ({})", why.name()),
                });
                row.charge = Some(json!({
                    "period": period.to_string(),
                    "membership_minor": f.membership_minor,
                    "demurrage_minor": f.demurrage_minor,
                    "charged_minor": charged,
                    "not_charged": f.not_charged.map(|n| n.name()),
                }));
            } else if let Some(h) = cercle_core::charges::header(view).filter(|h| &h.fee_account == account) {
                row.amount_minor = (h.charged_minor != 0).then_some(h.charged_minor);
                row.reason = Some(format!("periodic fees of {period} from the members"));
                row.charge = Some(json!({
                    "period": period.to_string(),
                    "received_minor": h.charged_minor,
                    "not_charged_minor": h.not_charged_minor,
                }));
            }
        }
        OpKind::RunClearing(r) => {
            // The account's own part of the run: its payment through the circuit and the
            // invoices of its that were cleared, which it can reconcile one by one.
            if let Some(part) = cercle_core::clearing::firm_part(view, account) {
                let payment = part.firm.payment_minor;
                row.amount_minor = (payment != 0).then(|| payment.saturating_neg());
                row.cleared = part.invoices;
            }
            row.reason = non_empty(&r.reason);
        }
    }
    row
}

/// Completes `row` with what its entry moved the account's balance by (`movement`: its
/// balance after, less its balance after the entry before). A transfer's or an approval's
/// entry may also pay the transfer levy: the payer's balance moves by the amount and its
/// share, the payee's by the amount less its share, so the levy is the difference. The fee
/// account, neither side of the payment, received the levy: that is its amount. Any other
/// entry that moved the balance without an amount of its own (a write-off) shows the
/// movement.
fn settle(row: &mut Row, op: &Operation, movement: i64) {
    match (&op.kind, row.amount_minor) {
        (OpKind::Transfer(_) | OpKind::ApprovePending { .. }, Some(amount)) => {
            row.levy_minor = amount.checked_sub(movement).filter(|levy| *levy > 0);
        }
        (_, None) if movement != 0 => row.amount_minor = Some(movement),
        _ => {}
    }
}

/// A row as JSON: the fields every entry has, and what the operation set (the limits of a
/// registration or a limit change, the keys of a rotation, the invoice's terms, how a
/// clearing run cleared), in minor units.
fn row_json(row: &Row, op: &Operation) -> serde_json::Value {
    let mut value = json!({
        "sequence": row.sequence,
        "timestamp": rfc3339(row.timestamp_ms),
        "timestamp_ms": row.timestamp_ms,
        "kind": row.kind,
        "counterparty": row.counterparty.as_ref().map(|(_, other)| other),
        "direction": row.counterparty.as_ref().map(|(direction, _)| direction.name()),
        "amount_minor": row.amount_minor,
        "levy_minor": row.levy_minor,
        "balance_after_minor": row.balance_after_minor,
        "memo": row.memo,
        "reason": row.reason,
        "invoice_id": row.invoice_id,
        "invoice_ref": row.invoice_ref,
        "entry_hash": hex::encode(row.entry_hash),
    });
    let keys = |keys: &[cercle_core::PublicKey]| keys.iter().map(|k| k.to_hex()).collect::<Vec<_>>();
    if let Some(charge) = &row.charge {
        value["charge"] = charge.clone();
    }
    match &op.kind {
        OpKind::RegisterAccount(r) => {
            value["display_name"] = json!(r.display_name);
            value["limits"] =
                json!({"credit_limit_minor": r.credit_limit_minor, "max_balance_minor": r.max_balance_minor});
            value["public_keys"] = json!(keys(&r.keys));
        }
        OpKind::SetLimits(s) => {
            // Only what changed: an absent field kept its value; a null maximum was removed.
            let mut limits = serde_json::Map::new();
            if let Some(limit) = s.credit_limit_minor {
                limits.insert("credit_limit_minor".into(), json!(limit));
            }
            if let Some(max) = s.max_balance_minor {
                limits.insert("max_balance_minor".into(), json!(max));
            }
            value["limits"] = serde_json::Value::Object(limits);
        }
        OpKind::RotateKeys { keys: new, .. } => value["public_keys"] = json!(keys(new)),
        OpKind::AddKey(k) => value["key"] = key_json(&k.key, k.role),
        OpKind::ApprovePending { pending, .. } | OpKind::DeclinePending { pending, .. } => {
            value["pending_id"] = json!(pending)
        }
        OpKind::RemoveKey { key, .. } => value["key"] = json!({"public_key": key.to_hex(), "removed": true}),
        OpKind::SetProfile(p) => {
            // Only what changed: an absent field kept its value; a null one was removed.
            let mut profile = serde_json::Map::new();
            if let Some(name) = &p.display_name {
                profile.insert("display_name".into(), json!(name));
            }
            for field in cercle_core::profile::Field::ALL {
                if let Some(value) = p.profile.get(field) {
                    profile.insert(field.name().replace(' ', "_"), json!(value));
                }
            }
            value["profile"] = serde_json::Value::Object(profile);
        }
        OpKind::IssueInvoice(i) => {
            value["invoice"] = json!({
                "invoice_id": i.invoice.to_string(),
                "payee": i.payee.as_str(),
                "payer": i.payer.as_str(),
                "amount_minor": i.amount_minor,
                "local_share_percent": i.local_share_percent,
                "due_date": i.due_day.map(output::date),
                "reference": i.reference,
                "excluded_from_clearing": i.excluded_from_clearing,
            });
        }
        OpKind::AcceptInvoice(p)
        | OpKind::RejectInvoice { invoice: p, .. }
        | OpKind::CancelInvoice { invoice: p, .. }
        | OpKind::SetInvoiceClearing { invoice: p, .. } => {
            value["invoice"] = json!({"invoice_id": p.invoice.to_string(), "payee": p.payee.as_str(), "payer": p.payer.as_str()});
            if let OpKind::SetInvoiceClearing { excluded, .. } = &op.kind {
                value["invoice"]["excluded_from_clearing"] = json!(excluded);
            }
        }
        OpKind::RunClearing(r) => {
            value["with_credit"] = json!(r.with_credit);
            value["cleared_invoices"] = json!(
                row.cleared
                    .iter()
                    .map(|c| json!({
                        "invoice_id": c.invoice.to_string(),
                        "setoff_minor": c.setoff_minor,
                        "credit_minor": c.credit_minor,
                    }))
                    .collect::<Vec<_>>()
            );
        }
        OpKind::SetRole(r) => {
            value["role"] =
                json!({"role": r.role.name(), "public_key": r.key.to_hex(), "present": r.present});
        }
        OpKind::CreateGroup(g) => {
            value["group"] = json!({
                "group": g.group.as_str(),
                "credit_limit_minor": g.credit_limit_minor,
                "max_balance_minor": g.max_balance_minor,
            });
        }
        OpKind::SetGroupLimits(g) => {
            // Only what changed, as for a limit change.
            let mut group = serde_json::Map::new();
            group.insert("group".into(), json!(g.group.as_str()));
            if let Some(limit) = g.credit_limit_minor {
                group.insert("credit_limit_minor".into(), json!(limit));
            }
            if let Some(max) = g.max_balance_minor {
                group.insert("max_balance_minor".into(), json!(max));
            }
            value["group"] = serde_json::Value::Object(group);
        }
        OpKind::AssignGroup { group, .. } => value["group"] = json!({"group": group.as_str()}),
        OpKind::FollowGroupLimits { credit, max, .. } => {
            value["follows_group"] = json!({"credit_limit": credit, "max_balance": max});
        }
        OpKind::FreezeAccount { .. }
        | OpKind::UnfreezeAccount { .. }
        | OpKind::CloseAccount { .. }
        | OpKind::SetQuorum(_)
        | OpKind::SetFees(_)
        | OpKind::ChargeFees { .. }
        | OpKind::Transfer(_) => {}
        OpKind::RotateNodeKey { new_pubkey, .. } => value["node_key"] = json!(new_pubkey.to_hex()),
        OpKind::ApplyLimitRule(_) => {
            if let Some(l) = &row.limit {
                value["limits"] = json!({"credit_limit_minor": l.new_limit_minor});
                value["limit_rule"] = json!({
                    "sales_minor": l.sales_minor,
                    "old_credit_limit_minor": l.old_limit_minor,
                    "old_from_group": l.old_from_group,
                    "new_credit_limit_minor": l.new_limit_minor,
                });
            }
        }
    }
    value
}

/// A key and its role as JSON, caps in minor units (`cercle key list --json` writes the same).
pub fn key_json(key: &cercle_core::PublicKey, role: cercle_core::KeyRole) -> serde_json::Value {
    let mut value = json!({"public_key": key.to_hex(), "role": role.name()});
    if let cercle_core::KeyRole::Payer { per_transfer_cap_minor, daily_cap_minor } = role {
        value["per_transfer_cap_minor"] = json!(per_transfer_cap_minor);
        value["daily_cap_minor"] = json!(daily_cap_minor);
    }
    value
}

/// What an administrative operation did, for people (the JSON form keeps minor units).
fn describe(genesis: &Genesis, op: &Operation) -> String {
    match &op.kind {
        OpKind::RegisterAccount(r) => {
            let mut text = format!(
                "registered as \"{}\", credit limit {}",
                one_line(&r.display_name),
                money(genesis, r.credit_limit_minor)
            );
            if let Some(max) = r.max_balance_minor {
                text.push_str(&format!(", max balance {}", money(genesis, max)));
            }
            text
        }
        OpKind::SetLimits(s) => {
            let mut changes = Vec::new();
            if let Some(limit) = s.credit_limit_minor {
                changes.push(format!("credit limit {}", money(genesis, limit)));
            }
            match s.max_balance_minor {
                Some(Some(max)) => changes.push(format!("max balance {}", money(genesis, max))),
                Some(None) => changes.push("no max balance".to_string()),
                None => {}
            }
            format!("{}: {}", changes.join(", "), one_line(&s.reason))
        }
        OpKind::RotateKeys { keys, .. } => format!("{} key(s) now sign for the account", keys.len()),
        OpKind::FreezeAccount { reason, .. }
        | OpKind::UnfreezeAccount { reason, .. }
        | OpKind::CloseAccount { reason, .. } => one_line(reason),
        OpKind::Transfer(t) => {
            let mut text = one_line(&t.memo);
            let invoice = t.invoice.map(|i| i.to_string()).or_else(|| t.invoice_ref.clone());
            if let Some(invoice) = invoice {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(&format!("[invoice {}]", one_line(&invoice)));
            }
            text
        }
        OpKind::IssueInvoice(_)
        | OpKind::AcceptInvoice(_)
        | OpKind::RejectInvoice { .. }
        | OpKind::CancelInvoice { .. }
        | OpKind::SetInvoiceClearing { .. }
        | OpKind::RunClearing(_)
        | OpKind::ChargeFees { .. }
        | OpKind::SetProfile(_)
        | OpKind::SetQuorum(_)
        | OpKind::RotateNodeKey { .. }
        | OpKind::SetRole(_)
        | OpKind::SetFees(_)
        | OpKind::CreateGroup(_)
        | OpKind::SetGroupLimits(_)
        | OpKind::AssignGroup { .. }
        | OpKind::FollowGroupLimits { .. }
        | OpKind::AddKey(_)
        | OpKind::RemoveKey { .. }
        | OpKind::ApprovePending { .. }
        | OpKind::DeclinePending { .. }
        | OpKind::ApplyLimitRule(_) => {
            let d = cercle_audit::describe::describe(genesis, op);
            let mut text = one_line(&d.details);
            if !d.memo.is_empty() {
                text.push_str(&format!(": {}", one_line(d.memo)));
            }
            text
        }
    }
}

/// Aligned lines for people: one per entry, under a header.
fn table(genesis: &Genesis, rows: &[(Row, Operation)]) -> String {
    let cleared = |row: &Row| {
        if row.cleared.is_empty() {
            return String::new();
        }
        let list: Vec<String> = row
            .cleared
            .iter()
            .map(|c| {
                format!(
                    "{} {}",
                    short_id(&c.invoice),
                    money(genesis, c.setoff_minor.saturating_add(c.credit_minor))
                )
            })
            .collect();
        format!(" [cleared: {}]", list.join(", "))
    };
    let levy =
        |row: &Row| row.levy_minor.map_or_else(String::new, |l| format!(" (levy {})", money(genesis, l)));
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|(row, op)| {
            let amount = row.amount_minor.map_or_else(String::new, |a| {
                let sign = if a > 0 { "+" } else { "" };
                format!("{sign}{} {}", format_minor(a, genesis.exponent), genesis.currency)
            });
            let counterparty = row
                .counterparty
                .as_ref()
                .map_or_else(String::new, |(direction, other)| format!("{} {other}", direction.name()));
            let balance = row.balance_after_minor.map_or_else(String::new, |b| money(genesis, b));
            [
                row.sequence.to_string(),
                rfc3339(row.timestamp_ms),
                row.kind.to_string(),
                amount,
                counterparty,
                balance,
                format!("{}{}{}", describe(genesis, op), levy(row), cleared(row)),
            ]
        })
        .collect();
    let header = ["entry", "time (UTC)", "kind", "amount", "with", "balance after", "memo"];
    let mut widths = header.map(|h| h.chars().count());
    for line in &cells {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    // Numbers align right, words left; the last column is not padded.
    let right = [true, false, false, true, false, true, false];
    let render = |cells: &[String]| {
        let mut parts = Vec::with_capacity(cells.len());
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            let part = if i + 1 == cells.len() {
                cell.clone()
            } else if right[i] {
                format!("{}{cell}", " ".repeat(pad))
            } else {
                format!("{cell}{}", " ".repeat(pad))
            };
            parts.push(part);
        }
        parts.join("  ").trim_end().to_string()
    };
    let mut lines = vec![render(&header.map(String::from))];
    lines.extend(cells.iter().map(|c| render(c)));
    lines.join("\n")
}

/// An invoice id shortened for a table: its first 8 hex digits.
fn short_id(id: &cercle_core::InvoiceId) -> String {
    id.to_string().chars().take(8).collect()
}

/// Checks one entry from the node and decodes its operation.
fn verified(
    genesis: &Genesis,
    account: &AccountId,
    entry: pb::Entry,
) -> anyhow::Result<(EntryView, Operation)> {
    let sequence = entry.sequence;
    let invalid = |detail: String| anyhow!("the node sent an invalid entry {sequence}: {detail}");
    let message = |r: cercle_core::Rejection| r.message(&genesis.currency, genesis.exponent);
    let view = EntryView::try_from(entry).map_err(|r| invalid(message(r)))?;
    verify_envelope(genesis, &view.entry.envelope).map_err(|r| invalid(message(r)))?;
    let op = cercle_core::body::decode(&view.entry.envelope.body).map_err(|e| invalid(e.to_string()))?;
    if !view.concerns(&op, account) {
        return Err(invalid(format!("it does not concern account '{account}'")));
    }
    Ok((view, op))
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let period = Period::new(args.from, args.to)?;
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    let latest = latest_entries(&mut node, &key, &args.account, period, args.limit).await?;
    let (earlier, mut before) = (latest.earlier, latest.opening_minor);
    let mut rows: Vec<(Row, Operation)> = Vec::with_capacity(latest.entries.len());
    for entry in latest.entries {
        let (entry, op) = verified(&node.genesis, &args.account, entry)?;
        let mut row = row(&args.account, &entry, &op);
        if let Some(after) = row.balance_after_minor {
            if let Some(movement) = before.and_then(|b| after.checked_sub(b)) {
                settle(&mut row, &op, movement);
            }
            before = Some(after);
        }
        rows.push((row, op));
    }
    if earlier {
        eprintln!(
            "note: showing the latest {} entries; there are earlier ones (raise --limit, at most {HISTORY_ENTRIES_MAX}, or choose a period with --from and --to)",
            rows.len()
        );
    }
    if global.json {
        let list: Vec<serde_json::Value> = rows.iter().map(|(row, op)| row_json(row, op)).collect();
        output::emit_ok(json!({
            "account": args.account.as_str(),
            "period": period.json(),
            "limit": args.limit,
            "earlier_entries_omitted": earlier,
            "entries": list,
        }))
    } else if rows.is_empty() {
        let within = if period.is_bounded() { " in that period" } else { "" };
        output::emit(&format!("no entries for account '{}'{within}", args.account))
    } else {
        output::emit(&table(&node.genesis, &rows))
    }
}

/// What [`latest_entries`] read.
struct Latest {
    /// The entries to show, oldest first, as the node sent them.
    entries: VecDeque<pb::Entry>,
    /// Whether earlier entries of the period were left out.
    earlier: bool,
    /// The account's balance before the first entry shown: the balance after the latest
    /// earlier entry that moved it, or zero when none did (an account opens at zero); unknown
    /// when none is found among `HISTORY_ENTRIES_MAX` earlier entries.
    opening_minor: Option<i64>,
}

/// The latest `limit` entries of `account` in `period`, and the balance before them. The
/// node is asked for the history newest first, so only what is shown, what is after the
/// period and the earlier entries back to the last one that moved the balance are read.
async fn latest_entries(
    node: &mut Node,
    key: &cercle_core::sign::Keypair,
    account: &AccountId,
    period: Period,
    limit: u32,
) -> anyhow::Result<Latest> {
    let limit = limit as usize;
    let mut latest = Latest {
        entries: VecDeque::with_capacity(limit.min(PAGE_SIZE_MAX as usize)),
        earlier: false,
        opening_minor: None,
    };
    // Once the entries to show are read, the earlier ones are read only for the opening
    // balance, and at most this many of them.
    let mut opening_budget: Option<usize> = None;
    let mut before_sequence = 0u64;
    loop {
        let request = pb::ListEntriesRequest {
            page_size: PAGE_SIZE_MAX,
            newest_first: true,
            before_sequence,
            ..Default::default()
        };
        let page = node.list_entries(key, account, request).await?;
        if page.entries.len() > PAGE_SIZE_MAX as usize {
            bail!("the node sent {} entries for a page of {PAGE_SIZE_MAX}", page.entries.len());
        }
        if page.entries.is_empty() && page.next_before_sequence.is_some() {
            bail!("the node sent an empty page that is not the last one");
        }
        for entry in page.entries {
            if before_sequence != 0 && entry.sequence >= before_sequence {
                bail!("the node sent entry {} after entry {before_sequence}, newest first", entry.sequence);
            }
            before_sequence = entry.sequence;
            if opening_budget.is_none() {
                match period.place(entry.timestamp_ms) {
                    // After the period: not shown.
                    Ordering::Greater => continue,
                    Ordering::Equal if latest.entries.len() < limit => {
                        latest.entries.push_front(entry);
                        continue;
                    }
                    Ordering::Equal => latest.earlier = true,
                    // Entries come in time order: the period has been read.
                    Ordering::Less => {}
                }
                opening_budget = Some(HISTORY_ENTRIES_MAX as usize);
            }
            // An earlier entry: the opening balance, if it moved the balance. It is checked
            // like every entry shown, since the amounts shown depend on it.
            let Some(budget) = opening_budget.as_mut().filter(|b| **b > 0) else {
                return Ok(latest);
            };
            *budget -= 1;
            if entry.balances_after.iter().any(|b| b.account == account.as_str())
                || !entry.sections.is_empty()
            {
                let genesis = node.genesis.clone();
                let (view, _) = verified(&genesis, account, entry)?;
                if let Some(balance) = view.balance_of(account) {
                    latest.opening_minor = Some(balance);
                    return Ok(latest);
                }
            }
        }
        match page.next_before_sequence {
            // Every page moves back, so the loop ends.
            Some(next) if next <= before_sequence => before_sequence = next,
            Some(_) => bail!("the node's next page starts after entry {before_sequence}"),
            None => {
                // The account's whole history was read: it opened at zero.
                latest.opening_minor = Some(0);
                return Ok(latest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cercle_core::{
        BalanceAfter, Envelope, InvoiceId, InvoiceParties, IssueInvoice, OperationId, SetLimits, Transfer,
    };

    use super::*;

    fn id(handle: &str) -> AccountId {
        AccountId::parse(handle).unwrap()
    }

    fn transfer(payer: &str, payee: &str, amount_minor: i64, memo: &str) -> OpKind {
        OpKind::Transfer(Transfer {
            payer: id(payer),
            payee: id(payee),
            amount_minor,
            memo: memo.into(),
            invoice_ref: None,
            invoice: None,
        })
    }

    fn entry(balances: &[(&str, i64)]) -> EntryView {
        EntryView::whole(&cercle_core::Entry {
            sequence: 7,
            timestamp_ms: 1_795_341_600_000,
            prev_hash: [1; 32],
            envelope: Envelope::single(vec![1, 2, 3], cercle_core::PublicKey([2; 32]), [3; 64]),
            balances_after: balances
                .iter()
                .map(|(a, b)| BalanceAfter { account: id(a), balance_minor: *b })
                .collect(),
            sections: vec![],
        })
    }

    fn operation(kind: OpKind) -> Operation {
        Operation { id: OperationId([4; 16]), valid_until_ms: 1, kind }
    }

    /// Computes the row of `kind` (with `balances` after it) for `account` and compares
    /// the fields named in `expected` with the row's JSON.
    fn check(account: &str, kind: OpKind, balances: &[(&str, i64)], expected: serde_json::Value) {
        let op = operation(kind);
        let got = row_json(&row(&id(account), &entry(balances), &op), &op);
        let expected = expected.as_object().unwrap();
        for (field, value) in expected {
            assert_eq!(&got[field], value, "{field} of {got}");
        }
    }

    /// The "with" cell of the text table for `account`.
    fn with_column(account: &str, kind: OpKind) -> String {
        let genesis = Genesis {
            ledger_id: cercle_core::LedgerId([0; 16]),
            currency: "CHW".into(),
            exponent: 2,
            admin_keys: vec![],
            auditor_keys: vec![],
            node_key: cercle_core::PublicKey([0; 32]),
            quorum: 1,
            day_offset_minutes: 0,
        };
        let op = operation(kind);
        let text = table(&genesis, &[(row(&id(account), &entry(&[]), &op), op)]);
        let header = text.lines().next().unwrap();
        let line = text.lines().nth(1).unwrap();
        let start = header.find("with").unwrap();
        let end = header.find("balance after").unwrap();
        line.chars().skip(start).take(end - start).collect::<String>().trim().to_string()
    }

    /// The row of `kind` for `account` after `balances`, settled against the account's
    /// balance before the entry.
    fn settled(account: &str, kind: OpKind, balances: &[(&str, i64)], before: i64) -> serde_json::Value {
        let op = operation(kind);
        let mut row = row(&id(account), &entry(balances), &op);
        let after = row.balance_after_minor.expect("a balance after");
        settle(&mut row, &op, after - before);
        row_json(&row, &op)
    }

    #[test]
    fn a_levy_is_what_the_balance_moved_beyond_the_amount() {
        // 200.00 paid, a 1% levy split: the payer's balance moves by 201.00, the payee's by
        // 199.00, the fee account's by 2.00.
        let paid = transfer("alice", "bob", 20_000, "");
        let balances = [("alice", -30_100), ("bob", 19_900), ("association", 1_200)];
        let alice = settled("alice", paid.clone(), &balances, -10_000);
        assert_eq!(
            (alice["amount_minor"].as_i64(), alice["levy_minor"].as_i64()),
            (Some(-20_000), Some(100))
        );
        let bob = settled("bob", paid.clone(), &balances, 0);
        assert_eq!((bob["amount_minor"].as_i64(), bob["levy_minor"].as_i64()), (Some(20_000), Some(100)));
        let fees = settled("association", paid.clone(), &balances, 1_000);
        assert_eq!((fees["amount_minor"].as_i64(), fees["levy_minor"].as_i64()), (Some(200), None));
        // No levy: none shown.
        let free = settled("alice", paid, &[("alice", -20_000), ("bob", 20_000)], 0);
        assert_eq!(free["levy_minor"], serde_json::Value::Null, "{free}");
        // A write-off moves the leaving firm's balance to zero and the reserve's down.
        let close = OpKind::CloseAccount {
            account: id("dan"),
            reason: "bankruptcy".into(),
            write_off_to: Some(id("reserve")),
        };
        let balances = [("dan", 0), ("reserve", -10_050)];
        assert_eq!(settled("dan", close.clone(), &balances, -10_050)["amount_minor"], 10_050);
        assert_eq!(settled("reserve", close, &balances, 0)["amount_minor"], -10_050);
    }

    #[test]
    fn rows_are_seen_from_the_account() {
        let paid = transfer("alice", "bob", 12_550, "flour, week 47");
        let balances = [("alice", -12_550), ("bob", 12_550)];
        check(
            "alice",
            paid.clone(),
            &balances,
            json!({
                "sequence": 7,
                "timestamp": "2026-11-22T10:00:00Z",
                "timestamp_ms": 1_795_341_600_000u64,
                "kind": "transfer",
                "counterparty": "bob",
                "direction": "to",
                "amount_minor": -12_550,
                "balance_after_minor": -12_550,
                "memo": "flour, week 47",
                "reason": null,
                "invoice_ref": null,
                "invoice_id": null,
            }),
        );
        check(
            "bob",
            paid,
            &balances,
            json!({"counterparty": "alice", "direction": "from", "amount_minor": 12_550, "balance_after_minor": 12_550}),
        );
        // No memo is null, not "".
        check(
            "bob",
            transfer("alice", "bob", 1, ""),
            &[],
            json!({"memo": null, "balance_after_minor": null}),
        );
        let with_invoice = OpKind::Transfer(Transfer {
            payer: id("alice"),
            payee: id("bob"),
            amount_minor: 5,
            memo: String::new(),
            invoice_ref: Some("INV-17".into()),
            invoice: None,
        });
        // An accepted payment records both balances after it.
        let moved = [("alice", -5), ("bob", 5)];
        check("alice", with_invoice.clone(), &moved, json!({"invoice_ref": "INV-17", "amount_minor": -5}));
        // One held for approval records none, and moved nothing.
        check(
            "alice",
            with_invoice,
            &[],
            json!({"kind": "transfer_held", "amount_minor": null, "counterparty": "bob", "reason": "pending payment 7, waiting for an owner's approval"}),
        );
        // A payment of a registered invoice names it, as the text does.
        let invoice = InvoiceId([0xab; 16]);
        let pays_invoice = OpKind::Transfer(Transfer {
            payer: id("alice"),
            payee: id("bob"),
            amount_minor: 5,
            memo: "invoice F-1".into(),
            invoice_ref: None,
            invoice: Some(invoice),
        });
        check(
            "bob",
            pays_invoice,
            &moved,
            json!({"invoice_ref": invoice.to_string(), "invoice_id": invoice.to_string(), "memo": "invoice F-1"}),
        );
    }

    #[test]
    fn an_invoice_goes_to_the_payer_and_comes_from_the_payee() {
        let issued = OpKind::IssueInvoice(IssueInvoice {
            invoice: InvoiceId([1; 16]),
            payee: id("alice"),
            payer: id("carol-market"),
            amount_minor: 40_000,
            local_share_percent: 80,
            due_day: Some(20_818),
            reference: "F-2026-117".into(),
            excluded_from_clearing: false,
        });
        assert_eq!(with_column("alice", issued.clone()), "to carol-market");
        assert_eq!(with_column("carol-market", issued.clone()), "from alice");
        check(
            "alice",
            issued,
            &[],
            json!({
                "counterparty": "carol-market",
                "direction": "to",
                "amount_minor": null,
                "invoice_id": InvoiceId([1; 16]).to_string(),
                "invoice_ref": "F-2026-117",
                "invoice": {
                    "invoice_id": InvoiceId([1; 16]).to_string(),
                    "payee": "alice",
                    "payer": "carol-market",
                    "amount_minor": 40_000,
                    "local_share_percent": 80,
                    "due_date": "2026-12-31",
                    "reference": "F-2026-117",
                    "excluded_from_clearing": false,
                },
            }),
        );
        let parties =
            InvoiceParties { invoice: InvoiceId([1; 16]), payee: id("alice"), payer: id("carol-market") };
        let accepted = OpKind::AcceptInvoice(parties.clone());
        assert_eq!(with_column("carol-market", accepted.clone()), "from alice");
        assert_eq!(with_column("alice", accepted), "to carol-market");
        let rejected = OpKind::RejectInvoice { invoice: parties, reason: "not ordered".into() };
        check("carol-market", rejected, &[], json!({"direction": "from", "reason": "not ordered"}));
        // Money goes the other way: the payer pays to the payee.
        assert_eq!(with_column("carol-market", transfer("carol-market", "alice", 5, "")), "to alice");
        assert_eq!(with_column("alice", transfer("carol-market", "alice", 5, "")), "from carol-market");
    }

    #[test]
    fn administrative_rows_carry_their_reason_and_values() {
        let limits = OpKind::SetLimits(SetLimits {
            account: id("alice"),
            credit_limit_minor: Some(300_000),
            max_balance_minor: None,
            reason: "annual review".into(),
        });
        check(
            "alice",
            limits,
            &[],
            json!({
                "kind": "set_limits",
                "counterparty": null,
                "amount_minor": null,
                "memo": null,
                "reason": "annual review",
                "limits": {"credit_limit_minor": 300_000},
            }),
        );
        let no_max = OpKind::SetLimits(SetLimits {
            account: id("alice"),
            credit_limit_minor: None,
            max_balance_minor: Some(None),
            reason: "no cap".into(),
        });
        check("alice", no_max, &[], json!({"limits": {"max_balance_minor": null}}));
        let freeze = OpKind::FreezeAccount { account: id("bob"), reason: "dispute over invoice 17".into() };
        check("bob", freeze, &[], json!({"kind": "freeze_account", "reason": "dispute over invoice 17"}));
        let unfreeze = OpKind::UnfreezeAccount { account: id("bob"), reason: String::new() };
        check("bob", unfreeze, &[], json!({"kind": "unfreeze_account", "reason": null}));
        let register = OpKind::RegisterAccount(cercle_core::RegisterAccount {
            account: id("carol"),
            display_name: "Carol".into(),
            keys: vec![],
            credit_limit_minor: 0,
            max_balance_minor: Some(200_000),
            profile: Default::default(),
            allow_shared_key: false,
        });
        check(
            "carol",
            register,
            &[("carol", 0)],
            json!({
                "kind": "register_account",
                "balance_after_minor": 0,
                "display_name": "Carol",
                "limits": {"credit_limit_minor": 0, "max_balance_minor": 200_000},
            }),
        );
        let clearing =
            OpKind::RunClearing(cercle_core::RunClearing { with_credit: true, reason: "December".into() });
        check(
            "carol",
            clearing,
            &[],
            json!({"kind": "run_clearing", "reason": "December", "with_credit": true}),
        );
    }
}
