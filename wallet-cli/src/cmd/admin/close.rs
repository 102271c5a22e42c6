//! `cercle admin close`: close an account for good, at a zero balance with no open
//! invoice either way. Its history stays in the ledger, readable by administrators and
//! auditors; the handle can never be registered again. A firm that leaves owing is closed
//! with `--write-off-to RESERVE`: the association's reserve account takes its debt, within
//! the reserve's own credit limit; a write-off needs the quorum of administrators.

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
    /// Write the firm's debt off to this account (the association's reserve)
    #[arg(long, value_name = "RESERVE", value_parser = parse_account)]
    write_off_to: Option<AccountId>,
    #[command(flatten)]
    sign: SignArgs,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    let kind =
        OpKind::CloseAccount { account: args.account, reason: args.reason, write_off_to: args.write_off_to };
    signed::sign_and_submit(global, &args.sign, &key, &mut node, kind).await
}
