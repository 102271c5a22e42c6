//! `cercle invoice pay`: a transfer from the payer to the payee that names the invoice.

use cercle_core::{InvoiceId, OpKind, Transfer};

use super::{parse_invoice_id, parties};
use crate::amounts::{self, Sign};
use crate::client::Node;
use crate::signed::{self, SignArgs};
use crate::{Global, keys};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The invoice id (32 hex digits)
    #[arg(value_name = "INVOICE", value_parser = parse_invoice_id)]
    invoice: InvoiceId,
    /// The amount in major units; by default, everything that remains open
    #[arg(value_name = "AMOUNT", allow_hyphen_values = true)]
    amount: Option<String>,
    /// A note for both sides
    #[arg(long, value_name = "TEXT")]
    memo: Option<String>,
    #[command(flatten)]
    sign: SignArgs,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    if let Some(amount) = &args.amount {
        amounts::precheck(amount, "amount", Sign::Positive)?;
    }
    let mut node = Node::connect(&global.node).await?;
    let (parties, invoice) = parties(&mut node, &key, &args.invoice).await?;
    let amount_minor = match &args.amount {
        Some(text) => amounts::parse(text, "amount", Sign::Positive, node.genesis.exponent)?,
        None if invoice.open_minor > 0 => invoice.open_minor,
        None => crate::usage_bail!("invoice {} has nothing open to pay", args.invoice),
    };
    let memo = args.memo.unwrap_or_else(|| match invoice.reference.as_str() {
        "" => format!("invoice {}", args.invoice),
        reference => format!("invoice {reference}"),
    });
    let kind = OpKind::Transfer(Transfer {
        payer: parties.payer,
        payee: parties.payee,
        amount_minor,
        memo: memo.chars().take(cercle_limits::MEMO_CHARS_MAX).collect(),
        invoice_ref: None,
        invoice: Some(args.invoice),
    });
    signed::sign_and_submit(global, &args.sign, &key, &mut node, kind).await
}
