//! `cercle invoice accept|reject|cancel|exclude|include`: the operations that change an
//! invoice without moving money. One file for all five: they differ only in the operation
//! they sign and in the reason they carry.

use cercle_core::{InvoiceId, OpKind};

use super::{parse_invoice_id, parties};
use crate::client::Node;
use crate::signed::{self, SignArgs};
use crate::{Global, keys};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The invoice id (32 hex digits)
    #[arg(value_name = "INVOICE", value_parser = parse_invoice_id)]
    invoice: InvoiceId,
    #[command(flatten)]
    sign: SignArgs,
}

#[derive(Debug, clap::Args)]
pub struct ReasonArgs {
    /// The invoice id (32 hex digits)
    #[arg(value_name = "INVOICE", value_parser = parse_invoice_id)]
    invoice: InvoiceId,
    /// Why (kept in the ledger)
    #[arg(long, value_name = "TEXT")]
    reason: String,
    #[command(flatten)]
    sign: SignArgs,
}

#[derive(Debug, clap::Args)]
pub struct OptionalReasonArgs {
    /// The invoice id (32 hex digits)
    #[arg(value_name = "INVOICE", value_parser = parse_invoice_id)]
    invoice: InvoiceId,
    /// Why (kept in the ledger)
    #[arg(long, value_name = "TEXT", default_value = "", hide_default_value = true)]
    reason: String,
    #[command(flatten)]
    sign: SignArgs,
}

pub async fn accept(global: &Global, args: Args) -> anyhow::Result<()> {
    submit(global, &args.invoice, &args.sign, OpKind::AcceptInvoice).await
}

pub async fn reject(global: &Global, args: ReasonArgs) -> anyhow::Result<()> {
    let reason = args.reason;
    submit(global, &args.invoice, &args.sign, |invoice| OpKind::RejectInvoice { invoice, reason }).await
}

pub async fn cancel(global: &Global, args: OptionalReasonArgs) -> anyhow::Result<()> {
    let reason = args.reason;
    submit(global, &args.invoice, &args.sign, |invoice| OpKind::CancelInvoice { invoice, reason }).await
}

pub async fn set_clearing(global: &Global, args: Args, excluded: bool) -> anyhow::Result<()> {
    submit(global, &args.invoice, &args.sign, |invoice| OpKind::SetInvoiceClearing { invoice, excluded })
        .await
}

async fn submit(
    global: &Global,
    id: &InvoiceId,
    sign: &SignArgs,
    kind: impl FnOnce(cercle_core::InvoiceParties) -> OpKind,
) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    let (parties, _) = parties(&mut node, &key, id).await?;
    signed::sign_and_submit(global, sign, &key, &mut node, kind(parties)).await
}
