//! `cercle pay`: a transfer from one account (signed with its key) to another.

use cercle_core::{AccountId, OpKind, Transfer};

use crate::amounts::{self, Sign};
use crate::client::Node;
use crate::signed::{self, SignArgs, parse_account};
use crate::{Global, keys};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pay from this account (the key must be one of its keys)
    #[arg(long, value_name = "ACCOUNT", value_parser = parse_account)]
    from: AccountId,
    /// The account to pay
    #[arg(value_name = "TO", value_parser = parse_account)]
    to: AccountId,
    /// The amount in major units, e.g. 125.50
    #[arg(value_name = "AMOUNT", allow_hyphen_values = true)]
    amount: String,
    /// A note for both sides, e.g. what is paid for
    #[arg(long, value_name = "TEXT", default_value = "", hide_default_value = true)]
    memo: String,
    /// The reference of the invoice this payment settles
    #[arg(long, value_name = "REF")]
    invoice: Option<String>,
    #[command(flatten)]
    sign: SignArgs,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    if args.from == args.to {
        crate::usage_bail!("an account cannot pay itself ('{}' is both --from and TO)", args.to);
    }
    amounts::precheck(&args.amount, "amount", Sign::Positive)?;
    let mut node = Node::connect(&global.node).await?;
    let amount_minor = amounts::parse(&args.amount, "amount", Sign::Positive, node.genesis.exponent)?;
    let kind = OpKind::Transfer(Transfer {
        payer: args.from,
        payee: args.to,
        amount_minor,
        memo: args.memo,
        invoice_ref: args.invoice,
        invoice: None,
    });
    signed::sign_and_submit(global, &args.sign, &key, &mut node, kind).await
}
