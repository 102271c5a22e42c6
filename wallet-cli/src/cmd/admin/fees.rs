//! `cercle admin fees set|show`: the association's fee schedule. Every fee is paid to the
//! association's own account. `set` replaces the whole schedule (what it does not give is
//! off: no levy, no membership fee, no demurrage), as an administrator's signed operation
//! with a reason; `show` prints the schedule in force (`cercle info` shows it too).
//!
//! The transfer levy is charged on every transfer between two accounts other than the
//! association's, in the transfer's own entry: `bp` basis points of the amount, rounded
//! half up to the minor unit; `split` charges the payee half rounded down and the payer
//! the rest.

use std::collections::BTreeMap;

use cercle_core::{AccountId, FeeSchedule, Genesis, LevyOn, OpKind, SetFees};
use serde_json::json;

use crate::amounts::{self, Sign};
use crate::client::Node;
use crate::output;
use crate::signed::{self, SignArgs, parse_account};
use crate::{Global, keys};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Set the fee schedule (it replaces the one in force)
    Set(Args),
    /// Show the fee schedule in force
    Show,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The association's own account, which every fee is paid to (a registered account)
    #[arg(long, value_name = "HANDLE", value_parser = parse_account)]
    account: AccountId,
    /// The levy on each transfer, in basis points (1 bp = 0.01%; at most 1000)
    #[arg(long, value_name = "N", default_value_t = 0)]
    transfer_levy_bp: u16,
    /// Who pays the levy: payer, payee, or split (the payee half rounded down, the payer the rest)
    #[arg(long, value_name = "WHO", default_value = "payer", value_parser = parse_levy_on)]
    levy_on: LevyOn,
    /// A periodic membership fee for a size class, e.g. 1-9=50.00 (repeat for each class)
    #[arg(long, value_name = "CLASS=AMOUNT")]
    membership: Vec<String>,
    /// Demurrage on positive balances above the threshold, in basis points a month (at most 500)
    #[arg(long, value_name = "N", default_value_t = 0)]
    demurrage_bp: u16,
    /// The balance above which demurrage is charged (in the currency, e.g. 10000.00)
    #[arg(long, value_name = "AMOUNT", default_value = "0")]
    demurrage_above: String,
    /// Why (kept in the ledger)
    #[arg(long, value_name = "TEXT")]
    reason: String,
    #[command(flatten)]
    sign: SignArgs,
}

fn parse_levy_on(text: &str) -> Result<LevyOn, String> {
    LevyOn::from_name(text).ok_or_else(|| format!("'{text}' is not payer, payee or split"))
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<()> {
    let args = match command {
        Command::Show => {
            let node = Node::connect(&global.node).await?;
            return show(global, &node.genesis, node.fees.as_ref());
        }
        Command::Set(args) => args,
    };
    let key = keys::load(global.key.as_deref())?;
    let mut membership = Vec::with_capacity(args.membership.len());
    for m in &args.membership {
        let Some((class, amount)) = m.split_once('=') else {
            crate::usage_bail!("invalid --membership '{m}': give CLASS=AMOUNT, e.g. 1-9=50.00");
        };
        amounts::precheck(amount, "membership fee", Sign::Positive)?;
        membership.push((class.trim().to_string(), amount.to_string()));
    }
    amounts::precheck(&args.demurrage_above, "demurrage threshold", Sign::NonNegative)?;
    let mut node = Node::connect(&global.node).await?;
    let exponent = node.genesis.exponent;
    let mut membership_minor = BTreeMap::new();
    for (class, amount) in membership {
        let minor = amounts::parse(&amount, "membership fee", Sign::Positive, exponent)?;
        if membership_minor.insert(class.clone(), minor).is_some() {
            crate::usage_bail!("size class '{class}' is given two membership fees");
        }
    }
    let schedule = FeeSchedule {
        account: args.account,
        transfer_levy_bp: args.transfer_levy_bp,
        levy_on: args.levy_on,
        membership_minor,
        demurrage_bp: args.demurrage_bp,
        demurrage_above_minor: amounts::parse(
            &args.demurrage_above,
            "demurrage threshold",
            Sign::NonNegative,
            exponent,
        )?,
    };
    let kind = OpKind::SetFees(SetFees { schedule, reason: args.reason });
    signed::sign_and_submit(global, &args.sign, &key, &mut node, kind).await
}

fn show(global: &Global, genesis: &Genesis, fees: Option<&FeeSchedule>) -> anyhow::Result<()> {
    if global.json {
        return output::emit_ok(json!({ "fees": fees.map(schedule_json) }));
    }
    let money = |minor: i64| output::money(genesis, minor);
    output::emit(
        &fees
            .map_or_else(|| "no fee schedule: the ledger charges no fee".to_string(), |f| f.describe(&money)),
    )
}

/// The schedule as `--json` prints it.
pub fn schedule_json(f: &FeeSchedule) -> serde_json::Value {
    json!({
        "account": f.account.to_string(),
        "transfer_levy_bp": f.transfer_levy_bp,
        "levy_on": f.levy_on.name(),
        "membership_minor": f.membership_minor,
        "demurrage_bp": f.demurrage_bp,
        "demurrage_above_minor": f.demurrage_above_minor,
    })
}
