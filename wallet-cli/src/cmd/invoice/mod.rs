//! `cercle invoice ...`: invoices between firms, from issue to settlement.
//!
//! The payee issues (and may cancel); the payer accepts or rejects, and pays; either may
//! leave an invoice out of clearing. Every step is a signed operation; `show` and `list`
//! read what the ledger holds.

mod issue;
mod pay;
mod respond;
mod show;

use anyhow::Context;
use cercle_core::sign::Keypair;
use cercle_core::{InvoiceId, InvoiceParties};

use crate::Global;
use crate::client::Node;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Issue an invoice to a payer (signed by the payee) and print its id
    Issue(issue::Args),
    /// Accept an invoice (signed by the payer): it becomes an obligation
    Accept(respond::Args),
    /// Reject an invoice that is only issued (signed by the payer), with a reason
    Reject(respond::ReasonArgs),
    /// Cancel an invoice nothing of which is paid or cleared (signed by the payee)
    Cancel(respond::OptionalReasonArgs),
    /// Pay an invoice in full or in part (signed by the payer)
    Pay(pay::Args),
    /// Leave an open invoice out of clearing runs (signed by either firm)
    Exclude(respond::Args),
    /// Put an excluded invoice back into clearing runs (signed by either firm)
    Include(respond::Args),
    /// List an account's invoices, oldest first
    List(show::ListArgs),
    /// Show one invoice: state, amounts, what remains open
    Show(show::ShowArgs),
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Issue(args) => issue::run(global, args).await,
        Command::Accept(args) => respond::accept(global, args).await,
        Command::Reject(args) => respond::reject(global, args).await,
        Command::Cancel(args) => respond::cancel(global, args).await,
        Command::Pay(args) => pay::run(global, args).await,
        Command::Exclude(args) => respond::set_clearing(global, args, true).await,
        Command::Include(args) => respond::set_clearing(global, args, false).await,
        Command::List(args) => show::list(global, args).await,
        Command::Show(args) => show::show(global, args).await,
    }
}

/// Clap parser for an invoice id argument.
pub fn parse_invoice_id(text: &str) -> Result<InvoiceId, String> {
    InvoiceId::parse(text)
}

/// Fetches an invoice (read with `key`) and names it with its two firms, as the
/// operations on it must.
async fn parties(
    node: &mut Node,
    key: &Keypair,
    id: &InvoiceId,
) -> anyhow::Result<(InvoiceParties, cercle_proto::Invoice)> {
    let invoice = node.get_invoice(key, id).await?;
    let parties = InvoiceParties {
        invoice: *id,
        payee: cercle_core::AccountId::parse(&invoice.payee).context("the node sent a bad payee")?,
        payer: cercle_core::AccountId::parse(&invoice.payer).context("the node sent a bad payer")?,
    };
    Ok((parties, invoice))
}
