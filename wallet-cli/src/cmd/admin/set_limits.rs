//! `cercle admin set-limits`: change an account's credit limit or maximum balance, with
//! a reason that stays in the ledger. A limit set here is the account's own, and overrides
//! its group's; `group` instead of an amount drops the account's own limit, so that it
//! follows its group's again.

use cercle_core::{AccountId, OpKind, SetLimits};

use crate::amounts::LimitsChange;
use crate::client::Node;
use crate::signed::{self, SignArgs, parse_account};
use crate::{Global, keys};

/// The value that makes a limit follow the account's group.
const GROUP: &str = "group";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The account whose limits change
    #[arg(value_name = "ACCOUNT", value_parser = parse_account)]
    account: AccountId,
    /// The new credit limit in major units, or `group` to follow the account's group
    #[arg(long, value_name = "AMOUNT|group", allow_hyphen_values = true)]
    credit_limit: Option<String>,
    /// The new maximum balance in major units, `none` to remove it, or `group` to follow the group
    #[arg(long, value_name = "AMOUNT|none|group", allow_hyphen_values = true)]
    max_balance: Option<String>,
    /// Why the limits change (kept in the ledger)
    #[arg(long, value_name = "TEXT")]
    reason: String,
    #[command(flatten)]
    sign: SignArgs,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    if args.credit_limit.is_none() && args.max_balance.is_none() {
        // The same refusal as the amounts', before any key or group is looked at.
        LimitsChange::precheck(None, None)?;
    }
    let is_group = |v: &Option<String>| v.as_deref().is_some_and(|v| v.trim() == GROUP);
    let (credit_group, max_group) = (is_group(&args.credit_limit), is_group(&args.max_balance));
    if credit_group || max_group {
        // Following the group is its own operation; an amount for the other limit would be
        // a second one.
        let other_amount =
            (!credit_group && args.credit_limit.is_some()) || (!max_group && args.max_balance.is_some());
        if other_amount {
            crate::usage_bail!("give `group` for both limits, or set the other one in a second set-limits");
        }
        let mut node = Node::connect(&global.node).await?;
        let kind = OpKind::FollowGroupLimits {
            account: args.account,
            credit: credit_group,
            max: max_group,
            reason: args.reason,
        };
        return signed::sign_and_submit(global, &args.sign, &key, &mut node, kind).await;
    }
    let change = LimitsChange::precheck(args.credit_limit.as_deref(), args.max_balance.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    let (credit_limit_minor, max_balance_minor) = change.parse(node.genesis.exponent)?;
    let kind = OpKind::SetLimits(SetLimits {
        account: args.account,
        credit_limit_minor,
        max_balance_minor,
        reason: args.reason,
    });
    signed::sign_and_submit(global, &args.sign, &key, &mut node, kind).await
}
