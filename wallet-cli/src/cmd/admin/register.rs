//! `cercle admin register`: admit a firm with its keys, limits and profile.

use cercle_core::{AccountId, OpKind, PublicKey, RegisterAccount};

use super::profile::ProfileArgs;
use crate::amounts::{self, Sign};
use crate::client::Node;
use crate::signed::{self, SignArgs, parse_account, parse_public_key};
use crate::{Global, keys};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The new account's handle, e.g. boulangerie-martin
    #[arg(value_name = "ACCOUNT", value_parser = parse_account)]
    account: AccountId,
    /// A public key (64 hex digits) allowed to sign for the account; repeat for several
    #[arg(long = "pubkey", value_name = "HEX", required = true, value_parser = parse_public_key)]
    pubkeys: Vec<PublicKey>,
    /// The firm's name as people read it (default: the handle)
    #[arg(long, value_name = "TEXT")]
    name: Option<String>,
    /// How far below zero the balance may go through payments, in major units
    #[arg(long, value_name = "AMOUNT", default_value = "0", allow_hyphen_values = true)]
    credit_limit: String,
    /// The highest balance payments received may bring the account to (default: none)
    #[arg(long, value_name = "AMOUNT", allow_hyphen_values = true)]
    max_balance: Option<String>,
    /// Register even if a key is already on another open account (it will sign for both)
    #[arg(long)]
    allow_shared_key: bool,
    #[command(flatten)]
    profile: ProfileArgs,
    #[command(flatten)]
    sign: SignArgs,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    let profile = args.profile.profile()?;
    amounts::precheck(&args.credit_limit, "credit limit", Sign::NonNegative)?;
    if let Some(max) = &args.max_balance {
        amounts::precheck(max, "maximum balance", Sign::NonNegative)?;
    }
    let mut node = Node::connect(&global.node).await?;
    let exponent = node.genesis.exponent;
    let credit_limit_minor = amounts::parse(&args.credit_limit, "credit limit", Sign::NonNegative, exponent)?;
    let max_balance_minor = args
        .max_balance
        .as_deref()
        .map(|max| amounts::parse(max, "maximum balance", Sign::NonNegative, exponent))
        .transpose()?;
    let kind = OpKind::RegisterAccount(RegisterAccount {
        display_name: args.name.unwrap_or_else(|| args.account.to_string()),
        account: args.account,
        keys: args.pubkeys,
        credit_limit_minor,
        max_balance_minor,
        profile,
        allow_shared_key: args.allow_shared_key,
    });
    signed::sign_and_submit(global, &args.sign, &key, &mut node, kind).await
}
