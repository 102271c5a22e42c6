//! `cercle admin fees set|show|charge`: the association's fee schedule. Every fee is paid
//! to the association's own account. `set` replaces the whole schedule (what it does not
//! give is off: no levy, no membership fee, no demurrage), as an administrator's signed
//! operation with a reason; `show` prints the schedule in force (`cercle info` shows it
//! too); `charge --period YYYY-MM` charges a ledger month's membership fees and demurrage,
//! once per period, and prints every charge and every firm not charged with the reason.
//!
//! The transfer levy is charged on every transfer between two accounts other than the
//! association's, in the transfer's own entry: `bp` basis points of the amount, rounded
//! half up to the minor unit; `split` charges the payee half rounded down and the payer
//! the rest.

use std::collections::BTreeMap;

use cercle_core::charges::{ChargeRecord, Period};
use cercle_core::{AccountId, FeeSchedule, Genesis, GroupName, LevyOn, OpKind, SectionTag, SetFees};
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
    /// Charge a month's membership fees and demurrage (each month once, in order)
    Charge(ChargeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ChargeArgs {
    /// The ledger month to charge, e.g. 2026-11 (the current month or an earlier one)
    #[arg(long, value_name = "YYYY-MM", value_parser = Period::parse)]
    period: Period,
    #[command(flatten)]
    sign: SignArgs,
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
    /// A periodic membership fee for a member group, which its members pay instead of their
    /// size class's, e.g. coops=20.00 (repeat for each group)
    #[arg(long, value_name = "GROUP=AMOUNT")]
    group_membership: Vec<String>,
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
        Command::Charge(args) => return charge(global, args).await,
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
    let mut groups = Vec::with_capacity(args.group_membership.len());
    for m in &args.group_membership {
        let Some((group, amount)) = m.split_once('=') else {
            crate::usage_bail!("invalid --group-membership '{m}': give GROUP=AMOUNT, e.g. coops=20.00");
        };
        let group = GroupName::parse(group.trim()).map_err(|e| crate::failure::usage(e.to_string()))?;
        amounts::precheck(amount, "group membership fee", Sign::Positive)?;
        groups.push((group, amount.to_string()));
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
    let mut group_membership_minor = BTreeMap::new();
    for (group, amount) in groups {
        let minor = amounts::parse(&amount, "group membership fee", Sign::Positive, exponent)?;
        if group_membership_minor.insert(group.clone(), minor).is_some() {
            crate::usage_bail!("group '{group}' is given two membership fees");
        }
    }
    let schedule = FeeSchedule {
        group_membership_minor,
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
        "group_membership_minor": f
            .group_membership_minor
            .iter()
            .map(|(g, a)| (g.to_string(), *a))
            .collect::<BTreeMap<String, i64>>(),
    })
}

/// Charges a period, then reads its entry back to print every firm's charge (the receipt
/// carries balances, not the record).
async fn charge(global: &Global, args: ChargeArgs) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    let kind = OpKind::ChargeFees { period: args.period };
    let Some(receipt) =
        signed::sign_and_submit_quietly(global, &args.sign, &key, &mut node, kind).await?.receipt
    else {
        return Ok(());
    };
    let mut stream = node.stream_entries(&key, receipt.sequence).await?;
    let entry = stream
        .message()
        .await
        .map_err(|s| crate::client::status_error(&global.node, &s))?
        .ok_or_else(|| anyhow::anyhow!("the node did not send entry {}", receipt.sequence))?;
    let entry = cercle_core::Entry::try_from(entry)
        .map_err(|r| anyhow::anyhow!("entry {}: {}", receipt.sequence, r.message("", 0)))?;
    let record = entry
        .section(SectionTag::Charges)
        .ok_or_else(|| anyhow::anyhow!("entry {} records no charges", entry.sequence))
        .and_then(|s| {
            ChargeRecord::from_section(s)
                .map_err(|e| anyhow::anyhow!("entry {}: its charges: {e}", entry.sequence))
        })?;
    report(global, &node.genesis, &entry, &record, receipt.duplicate)
}

fn report(
    global: &Global,
    genesis: &Genesis,
    entry: &cercle_core::Entry,
    record: &ChargeRecord,
    duplicate: bool,
) -> anyhow::Result<()> {
    let money = |minor: i64| output::money(genesis, minor);
    if global.json {
        let firms: Vec<serde_json::Value> = record
            .firms
            .iter()
            .map(|f| {
                json!({
                    "account": f.account.to_string(),
                    "membership_minor": f.membership_minor,
                    "demurrage_minor": f.demurrage_minor,
                    "charged_minor": f.charged_minor(),
                    "not_charged": f.not_charged.map(|n| json!({
                        "reason": n.name(),
                        "amount_minor": f.due_minor(),
                        "detail": n.describe(&money),
                    })),
                    "balance_after_minor": f.balance_after_minor,
                })
            })
            .collect();
        return output::emit_ok(json!({
            "sequence": entry.sequence,
            "timestamp_ms": entry.timestamp_ms,
            "duplicate": duplicate,
            "period": record.period.to_string(),
            "fee_account": record.fee_account.to_string(),
            "fee_balance_after_minor": record.fee_balance_after_minor,
            "charged_minor": record.charged_minor(),
            "not_charged_minor": record.not_charged_minor(),
            "firms": firms,
        }));
    }
    let mut lines = vec![format!(
        "charged period {}: entry {} at {}; {} to {} (its balance {})",
        record.period,
        entry.sequence,
        cercle_core::time::rfc3339_ms(entry.timestamp_ms),
        money(record.charged_minor()),
        record.fee_account,
        money(record.fee_balance_after_minor)
    )];
    for f in &record.firms {
        let what =
            format!("membership {}, demurrage {}", money(f.membership_minor), money(f.demurrage_minor));
        lines.push(match &f.not_charged {
            None => format!(
                "  {}: charged {} ({what}); balance {}",
                f.account,
                money(f.due_minor()),
                money(f.balance_after_minor)
            ),
            Some(why) => format!(
                "  {}: NOT charged {} ({what}): {}",
                f.account,
                money(f.due_minor()),
                why.describe(&money)
            ),
        });
    }
    let unpaid = record.firms.iter().filter(|f| f.not_charged.is_some()).count();
    if unpaid > 0 {
        lines.push(format!(
            "{unpaid} firm(s) not charged, {} in all: collect it otherwise (an invoice, say); the period counts as charged",
            money(record.not_charged_minor())
        ));
    }
    output::emit(&lines.join("\n"))
}
