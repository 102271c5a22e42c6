//! `cercle admin close`: close an account for good, at a zero balance with no open
//! invoice either way. Its history stays in the ledger, readable by administrators and
//! auditors; the handle can never be registered again.

use cercle_core::{AccountId, OpKind};

use crate::client::Node;
use crate::signed::{self, SignArgs, parse_account};
use crate::{Global, keys};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The account to close
    #[arg(value_name = "ACCOUNT", value_parser = parse_account)]
    account: AccountId,
    /// Why the account is closed (kept in the ledger)
    #[arg(long, value_name = "TEXT")]
    reason: String,
    #[command(flatten)]
    sign: SignArgs,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    let kind = OpKind::CloseAccount { account: args.account, reason: args.reason };
    signed::sign_and_submit(global, &args.sign, &key, &mut node, kind).await
}
