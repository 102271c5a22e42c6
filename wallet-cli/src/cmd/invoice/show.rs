//! `cercle invoice show` and `cercle invoice list`: what the ledger holds of invoices.

use cercle_core::{AccountId, Genesis, InvoiceId};
use cercle_limits::INVOICE_LIST_DEFAULT;
use cercle_proto as pb;
use serde_json::json;

use super::parse_invoice_id;
use crate::client::Node;
use crate::output::{self, money, one_line};
use crate::signed::parse_account;
use crate::{Global, keys};

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The invoice id (32 hex digits)
    #[arg(value_name = "INVOICE", value_parser = parse_invoice_id)]
    invoice: InvoiceId,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The account whose invoices to list (issued and received); without it, every
    /// invoice (administrators and auditors)
    #[arg(value_name = "ACCOUNT", value_parser = parse_account)]
    account: Option<AccountId>,
    /// Only open invoices (issued, accepted, partly settled)
    #[arg(long)]
    open: bool,
    /// Print at most this many invoices
    #[arg(long, value_name = "N", default_value_t = INVOICE_LIST_DEFAULT)]
    limit: usize,
}

pub async fn show(global: &Global, args: ShowArgs) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    let invoice = node.get_invoice(&key, &args.invoice).await?;
    if global.json {
        return output::emit_ok(invoice_json(&invoice));
    }
    let g = &node.genesis;
    let state = invoice.state().core_name().replace('_', " ");
    let mut text = format!(
        "invoice {}\n  from {} (payee) to {} (payer)\n  state: {state}\n  amount: {}, {}% payable in {}: {}\n  open: {} (paid {}, cleared {})",
        hex::encode(&invoice.invoice_id),
        one_line(&invoice.payee),
        one_line(&invoice.payer),
        money(g, invoice.amount_minor),
        invoice.local_share_percent,
        g.currency,
        money(g, invoice.local_minor),
        money(g, invoice.open_minor),
        money(g, invoice.paid_minor),
        money(g, invoice.cleared_minor),
    );
    if let Some(day) = invoice.due_day {
        text.push_str(&format!("\n  due: {}", output::date(day)));
    }
    if !invoice.reference.is_empty() {
        text.push_str(&format!("\n  reference: {}", one_line(&invoice.reference)));
    }
    if invoice.excluded_from_clearing {
        text.push_str("\n  excluded from clearing");
    }
    if !invoice.reason.is_empty() {
        text.push_str(&format!("\n  reason: {}", one_line(&invoice.reason)));
    }
    text.push_str(&format!(
        "\n  issued at entry {}, last changed at entry {}",
        invoice.issued_at_sequence, invoice.last_sequence
    ));
    output::emit(&text)
}

pub async fn list(global: &Global, args: ListArgs) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    let mut request = pb::ListInvoicesRequest { open_only: args.open, page_size: 1000, ..Default::default() };
    let mut printed = 0;
    let mut all = Vec::new();
    loop {
        let page = node.list_invoices(&key, args.account.as_ref(), request.clone()).await?;
        for invoice in &page.invoices {
            if printed == args.limit {
                break;
            }
            printed += 1;
            if global.json {
                all.push(invoice_json(invoice));
            } else {
                output::emit(&invoice_line(&node.genesis, invoice))?;
            }
        }
        match page.next_after_sequence {
            _ if printed == args.limit => break,
            Some(seq) => request.after_sequence = seq,
            None => break,
        }
    }
    if global.json {
        output::emit_ok(json!({
            "account": args.account.as_ref().map(AccountId::as_str),
            "open_only": args.open,
            "invoices": all,
        }))
    } else if printed == 0 {
        output::emit("no invoices")
    } else {
        Ok(())
    }
}

fn invoice_line(g: &Genesis, i: &pb::Invoice) -> String {
    format!(
        "{}  {:<14}  {} -> {}  {}  open {}{}{}",
        hex::encode(&i.invoice_id),
        i.state().core_name(),
        one_line(&i.payee),
        one_line(&i.payer),
        money(g, i.amount_minor),
        money(g, i.open_minor),
        i.due_day.map_or(String::new(), |d| format!("  due {}", output::date(d))),
        if i.reference.is_empty() { String::new() } else { format!("  ref {}", one_line(&i.reference)) },
    )
}

pub fn invoice_json(i: &pb::Invoice) -> serde_json::Value {
    json!({
        "invoice_id": hex::encode(&i.invoice_id),
        "payee": i.payee,
        "payer": i.payer,
        "state": i.state().core_name(),
        "amount_minor": i.amount_minor,
        "local_share_percent": i.local_share_percent,
        "local_minor": i.local_minor,
        "national_minor": i.amount_minor - i.local_minor,
        "open_minor": i.open_minor,
        "paid_minor": i.paid_minor,
        "cleared_minor": i.cleared_minor,
        "due_date": i.due_day.map(output::date),
        "reference": i.reference,
        "excluded_from_clearing": i.excluded_from_clearing,
        "reason": i.reason,
        "issued_at_sequence": i.issued_at_sequence,
        "last_sequence": i.last_sequence,
    })
}
