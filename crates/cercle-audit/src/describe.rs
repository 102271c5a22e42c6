//! What an entry did, in the words the CSV and journal exports share.

use std::fmt::Write as _;

use cercle_core::{AccountId, Genesis, OpKind, Operation, format_with_currency};

/// One entry, described. Texts come from the signers: callers make them safe for their
/// format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described<'a> {
    pub kind: &'static str,
    /// The account an administrative operation or a key rotation is about.
    pub account: Option<&'a AccountId>,
    /// A transfer's payer, payee and amount.
    pub transfer: Option<(&'a AccountId, &'a AccountId, i64)>,
    /// An invoice operation's payee and payer.
    pub invoice: Option<(&'a AccountId, &'a AccountId)>,
    /// A transfer's memo, or an administrative operation's reason.
    pub memo: &'a str,
    pub invoice_ref: Option<&'a str>,
    /// What an administrative operation set, e.g. `credit limit 1,000.00 CHW`.
    pub details: String,
}

/// `describe`, for an entry: a transfer held for approval moved nothing (`transfer_held`).
pub fn describe_entry<'a>(genesis: &Genesis, entry: &cercle_core::Entry, op: &'a Operation) -> Described<'a> {
    let mut d = describe(genesis, op);
    if op.kind.is_held(&entry.balances_after) {
        d.kind = "transfer_held";
        d.details = format!("held for approval as pending payment {}", entry.sequence);
        if let Some((payer, payee, _)) = d.transfer.take() {
            d.account = Some(payer);
            d.invoice = None;
            let _ = payee;
        }
    }
    if let Some(record) = entry
        .section(cercle_core::SectionTag::Charges)
        .and_then(|s| cercle_core::charges::ChargeRecord::from_section(s).ok())
    {
        let money = |minor: i64| format_with_currency(minor, genesis.exponent, &genesis.currency);
        let unpaid = record.firms.iter().filter(|f| f.not_charged.is_some()).count();
        d.account = None;
        d.details = format!(
            "periodic fees of {} to {}: {} charged to {} firm(s), {} not charged to {unpaid} firm(s)",
            record.period,
            record.fee_account,
            money(record.charged_minor()),
            record.firms.len() - unpaid,
            money(record.not_charged_minor()),
        );
    }
    d
}

pub fn describe<'a>(genesis: &Genesis, op: &'a Operation) -> Described<'a> {
    let money = |minor: i64| format_with_currency(minor, genesis.exponent, &genesis.currency);
    let mut d = Described {
        kind: op.kind.name(),
        account: None,
        transfer: None,
        invoice: None,
        memo: "",
        invoice_ref: None,
        details: String::new(),
    };
    match &op.kind {
        OpKind::RegisterAccount(r) => {
            d.account = Some(&r.account);
            let _ = write!(
                d.details,
                "name \"{}\", credit limit {}, max balance {}, {} key(s)",
                r.display_name,
                money(r.credit_limit_minor),
                r.max_balance_minor.map_or_else(|| "none".to_string(), money),
                r.keys.len()
            );
        }
        OpKind::SetLimits(s) => {
            d.account = Some(&s.account);
            d.memo = &s.reason;
            let mut changes = Vec::new();
            if let Some(limit) = s.credit_limit_minor {
                changes.push(format!("credit limit {}", money(limit)));
            }
            match s.max_balance_minor {
                Some(Some(max)) => changes.push(format!("max balance {}", money(max))),
                Some(None) => changes.push("max balance none".to_string()),
                None => {}
            }
            d.details = changes.join(", ");
        }
        OpKind::CreateGroup(g) => {
            d.memo = &g.reason;
            d.details = format!(
                "group {}: credit limit {}, max balance {}",
                g.group,
                money(g.credit_limit_minor),
                g.max_balance_minor.map_or_else(|| "none".to_string(), money)
            );
        }
        OpKind::SetGroupLimits(g) => {
            d.memo = &g.reason;
            let mut changes = Vec::new();
            if let Some(limit) = g.credit_limit_minor {
                changes.push(format!("credit limit {}", money(limit)));
            }
            match g.max_balance_minor {
                Some(Some(max)) => changes.push(format!("max balance {}", money(max))),
                Some(None) => changes.push("max balance none".to_string()),
                None => {}
            }
            d.details = format!("group {}: {}", g.group, changes.join(", "));
        }
        OpKind::AssignGroup { account, group, reason } => {
            d.account = Some(account);
            d.memo = reason;
            d.details = format!("group {group}, following its limits");
        }
        OpKind::FollowGroupLimits { account, credit, max, reason } => {
            d.account = Some(account);
            d.memo = reason;
            let which = match (credit, max) {
                (true, true) => "credit limit and max balance",
                (true, false) => "credit limit",
                _ => "max balance",
            };
            d.details = format!("{which} from its group");
        }
        OpKind::FreezeAccount { account, reason }
        | OpKind::UnfreezeAccount { account, reason }
        | OpKind::CloseAccount { account, reason, write_off_to: None } => {
            d.account = Some(account);
            d.memo = reason;
        }
        OpKind::CloseAccount { account, reason, write_off_to: Some(reserve) } => {
            d.account = Some(account);
            d.memo = reason;
            d.details = format!("debt written off to {reserve}");
        }
        OpKind::SetQuorum(q) => {
            d.memo = &q.reason;
            d.details = match q.limit_above_minor {
                Some(above) => format!(
                    "quorum {} administrator(s), credit limits above {} need it",
                    q.quorum,
                    money(above)
                ),
                None => format!("quorum {} administrator(s), no credit limit needs it", q.quorum),
            };
        }
        OpKind::RotateNodeKey { new_pubkey, reason } => {
            d.memo = reason;
            d.details = format!("node key {new_pubkey} signs every tree head from this entry on");
        }
        OpKind::SetFees(f) => {
            d.account = Some(&f.schedule.account);
            d.memo = &f.reason;
            d.details = f.schedule.describe(&money);
        }
        OpKind::RotateKeys { account, keys, allow_shared_key } => {
            d.account = Some(account);
            d.details = format!("{} key(s)", keys.len());
            if *allow_shared_key {
                d.details.push_str(", sharing allowed");
            }
        }
        OpKind::AddKey(k) => {
            d.account = Some(&k.account);
            d.details = format!("key {} added as {}", k.key, k.role.describe(money));
            if k.allow_shared_key {
                d.details.push_str(", sharing allowed");
            }
        }
        OpKind::RemoveKey { account, key } => {
            d.account = Some(account);
            d.details = format!("key {key} removed");
        }
        OpKind::ApprovePending { account, pending, payee, amount_minor } => {
            d.transfer = Some((account, payee, *amount_minor));
            d.details = format!("pending payment {pending} approved");
        }
        OpKind::DeclinePending { account, pending, reason } => {
            d.account = Some(account);
            d.memo = reason;
            d.details = format!("pending payment {pending} declined");
        }
        OpKind::ApplyLimitRule(a) => {
            d.memo = &a.reason;
            d.details = a.rule.describe(&money);
        }
        OpKind::SetRole(r) => {
            d.memo = &r.reason;
            let change = if r.present { "added to" } else { "removed from" };
            d.details = format!("key {} {change} the {}s", r.key, r.role.name());
        }
        OpKind::Transfer(t) => {
            d.transfer = Some((&t.payer, &t.payee, t.amount_minor));
            d.memo = &t.memo;
            d.invoice_ref = t.invoice_ref.as_deref();
            if let Some(invoice) = &t.invoice {
                d.details = format!("pays invoice {invoice}");
            }
        }
        OpKind::IssueInvoice(i) => {
            d.invoice = Some((&i.payee, &i.payer));
            d.invoice_ref = Some(&i.reference);
            let _ = write!(
                d.details,
                "invoice {} from {} to {}: {}, {}% payable in {}",
                i.invoice,
                i.payee,
                i.payer,
                money(i.amount_minor),
                i.local_share_percent,
                genesis.currency
            );
            if let Some(day) = i.due_day {
                let _ = write!(d.details, ", due {}", crate::utc_date(u64::from(day) * 86_400_000));
            }
            if i.excluded_from_clearing {
                d.details.push_str(", excluded from clearing");
            }
        }
        OpKind::AcceptInvoice(p) | OpKind::SetInvoiceClearing { invoice: p, .. } => {
            d.invoice = Some((&p.payee, &p.payer));
            d.details = format!("invoice {} from {} to {}", p.invoice, p.payee, p.payer);
            if let OpKind::SetInvoiceClearing { excluded, .. } = &op.kind {
                d.details.push_str(if *excluded { ": excluded from clearing" } else { ": back in clearing" });
            }
        }
        OpKind::RejectInvoice { invoice: p, reason } | OpKind::CancelInvoice { invoice: p, reason } => {
            d.invoice = Some((&p.payee, &p.payer));
            d.memo = reason;
            d.details = format!("invoice {} from {} to {}", p.invoice, p.payee, p.payer);
        }
        OpKind::SetProfile(p) => {
            d.account = Some(&p.account);
            d.memo = &p.reason;
            let mut changes: Vec<String> =
                p.display_name.iter().map(|n| format!("name {}", one_line(n))).collect();
            for field in cercle_core::profile::Field::ALL {
                match p.profile.get(field) {
                    Some(Some(value)) => changes.push(format!("{} {}", field.name(), one_line(value))),
                    Some(None) => changes.push(format!("{} removed", field.name())),
                    None => {}
                }
            }
            d.details = changes.join(", ");
        }
        OpKind::ChargeFees { period } => {
            d.details = format!("periodic fees of {period}");
        }
        OpKind::RunClearing(r) => {
            d.memo = &r.reason;
            d.details = if r.with_credit { "set-off, then mutual credit".into() } else { "set-off".into() };
        }
    }
    d
}

/// Untrusted text on one line: control characters (line breaks included) become spaces.
pub fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}
