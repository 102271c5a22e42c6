//! `cercle invoice issue`: a new invoice, signed by the payee.

use anyhow::Context;
use cercle_core::{AccountId, InvoiceId, IssueInvoice, OpKind};
use rand::RngCore;
use serde_json::json;

use crate::amounts::{self, Sign};
use crate::client::Node;
use crate::signed::{self, SignArgs, parse_account};
use crate::{Global, keys, output};

const DAY_MS: u64 = 86_400_000;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The payee issuing the invoice (the key must be one of its keys)
    #[arg(long, value_name = "PAYEE", value_parser = parse_account)]
    from: AccountId,
    /// The payer the invoice is addressed to
    #[arg(long, value_name = "PAYER", value_parser = parse_account)]
    to: AccountId,
    /// The whole invoice in major units, e.g. 1250.00
    #[arg(value_name = "AMOUNT", allow_hyphen_values = true)]
    amount: String,
    /// Due date, YYYY-MM-DD (UTC); today or later, unless --allow-past-due
    #[arg(long, value_name = "DATE", value_parser = crate::output::parse_date)]
    due: Option<u32>,
    /// Accept a due date in the past (e.g. to record an invoice issued earlier)
    #[arg(long, requires = "due")]
    allow_past_due: bool,
    /// The firm's own reference, e.g. its invoice number
    #[arg(long, value_name = "TEXT", default_value = "", hide_default_value = true)]
    reference: String,
    /// The share payable in the ledger's currency, in percent; the rest is paid in national currency
    #[arg(long, value_name = "PERCENT", default_value_t = 100, value_parser = clap::value_parser!(u8).range(1..=100))]
    local_share: u8,
    /// Leave the invoice out of clearing runs
    #[arg(long)]
    exclude_from_clearing: bool,
    #[command(flatten)]
    sign: SignArgs,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    if args.from == args.to {
        crate::usage_bail!("a firm cannot invoice itself ('{}' is both --from and --to)", args.to);
    }
    amounts::precheck(&args.amount, "amount", Sign::Positive)?;
    if let Some(due) = args.due {
        // A due date already past is almost always a typo (2025 for 2026).
        let today = crate::client::now_ms()? / DAY_MS;
        if u64::from(due) < today && !args.allow_past_due {
            crate::usage_bail!(
                "the due date {} is in the past (today is {} UTC); pass --allow-past-due if that is meant",
                output::date(due),
                output::date(u32::try_from(today).unwrap_or(u32::MAX))
            );
        }
    }
    let mut node = Node::connect(&global.node).await?;
    let amount_minor = amounts::parse(&args.amount, "amount", Sign::Positive, node.genesis.exponent)?;
    let mut id = [0u8; 16];
    rand::rngs::OsRng.try_fill_bytes(&mut id).context("cannot read the operating system's random source")?;
    let invoice = InvoiceId(id);
    let kind = OpKind::IssueInvoice(IssueInvoice {
        invoice,
        payee: args.from,
        payer: args.to,
        amount_minor,
        local_share_percent: args.local_share,
        due_day: args.due,
        reference: args.reference,
        excluded_from_clearing: args.exclude_from_clearing,
    });
    let submitted = signed::sign_and_submit_quietly(global, &args.sign, &key, &mut node, kind).await?;
    // A retry with --op-id submits the invoice signed the first time, with its id.
    let invoice = match &submitted.op.kind {
        OpKind::IssueInvoice(issued) => issued.invoice,
        _ => invoice,
    };
    let Some(receipt) = submitted.receipt else {
        return Ok(());
    };
    if global.json {
        let mut value = output::receipt_json(&receipt);
        value["invoice_id"] = json!(invoice.to_string());
        output::emit_ok(value)
    } else {
        // The id alone on stdout, so `ID=$(cercle invoice issue …)` captures it; what the node
        // said goes to stderr, where a terminal still shows it.
        eprintln!("invoice issued; {}", output::receipt_line(&node.genesis, &receipt));
        output::emit(&invoice.to_string())
    }
}
