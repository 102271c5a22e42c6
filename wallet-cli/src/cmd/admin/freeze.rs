//! `cercle admin freeze` and `cercle admin unfreeze`: stop and restart an account's
//! payments, e.g. during a dispute. One file for the pair: they differ only in the
//! operation they sign and in whether the reason is required.

use cercle_core::{AccountId, OpKind};

use crate::client::Node;
use crate::signed::{self, SignArgs, parse_account};
use crate::{Global, keys};

#[derive(Debug, clap::Args)]
pub struct FreezeArgs {
    /// The account to freeze
    #[arg(value_name = "ACCOUNT", value_parser = parse_account)]
    account: AccountId,
    /// Why the account is frozen (kept in the ledger)
    #[arg(long, value_name = "TEXT")]
    reason: String,
    #[command(flatten)]
    sign: SignArgs,
}

#[derive(Debug, clap::Args)]
pub struct UnfreezeArgs {
    /// The account to unfreeze
    #[arg(value_name = "ACCOUNT", value_parser = parse_account)]
    account: AccountId,
    /// Why the account is unfrozen (kept in the ledger)
    #[arg(long, value_name = "TEXT", default_value = "", hide_default_value = true)]
    reason: String,
    #[command(flatten)]
    sign: SignArgs,
}

pub async fn run_freeze(global: &Global, args: FreezeArgs) -> anyhow::Result<()> {
    let kind = OpKind::FreezeAccount { account: args.account, reason: args.reason };
    run(global, &args.sign, kind).await
}

pub async fn run_unfreeze(global: &Global, args: UnfreezeArgs) -> anyhow::Result<()> {
    let kind = OpKind::UnfreezeAccount { account: args.account, reason: args.reason };
    run(global, &args.sign, kind).await
}

async fn run(global: &Global, sign: &SignArgs, kind: OpKind) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    signed::sign_and_submit(global, sign, &key, &mut node, kind).await
}
