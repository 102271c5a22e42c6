//! `cercle admin set-limits`: change an account's credit limit or maximum balance, with
//! a reason that stays in the ledger.

use cercle_core::{AccountId, OpKind, SetLimits};

use crate::amounts::{self, Sign};
use crate::client::Node;
use crate::signed::{self, SignArgs, parse_account};
use crate::{Global, keys};

/// The `--max-balance` value that removes the maximum.
const NO_MAXIMUM: &str = "none";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The account whose limits change
    #[arg(value_name = "ACCOUNT", value_parser = parse_account)]
    account: AccountId,
    /// The new credit limit, in major units
    #[arg(long, value_name = "AMOUNT", allow_hyphen_values = true)]
    credit_limit: Option<String>,
    /// The new maximum balance in major units, or `none` to remove it
    #[arg(long, value_name = "AMOUNT|none", allow_hyphen_values = true)]
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
        crate::usage_bail!(
            "nothing to change: give --credit-limit AMOUNT, --max-balance AMOUNT, or --max-balance none"
        );
    }
    if let Some(limit) = &args.credit_limit {
        amounts::precheck(limit, "credit limit", Sign::NonNegative)?;
    }
    let max_balance = args.max_balance.as_deref().filter(|m| m.trim() != NO_MAXIMUM);
    if let Some(max) = max_balance {
        amounts::precheck(max, "maximum balance", Sign::NonNegative)?;
    }
    let mut node = Node::connect(&global.node).await?;
    let exponent = node.genesis.exponent;
    let credit_limit_minor = args
        .credit_limit
        .as_deref()
        .map(|limit| amounts::parse(limit, "credit limit", Sign::NonNegative, exponent))
        .transpose()?;
    // Absent: keep the maximum. `none`: remove it. An amount: replace it.
    let max_balance_minor = match (&args.max_balance, max_balance) {
        (None, _) => None,
        (Some(_), None) => Some(None),
        (Some(_), Some(max)) => {
            Some(Some(amounts::parse(max, "maximum balance", Sign::NonNegative, exponent)?))
        }
    };
    let kind = OpKind::SetLimits(SetLimits {
        account: args.account,
        credit_limit_minor,
        max_balance_minor,
        reason: args.reason,
    });
    signed::sign_and_submit(global, &args.sign, &key, &mut node, kind).await
}
