//! `cercle admin group create|set|assign|list`: member groups, classes of members with
//! default limits. A member without its own limit follows its group's, so changing a
//! group's default binds every such member at once. Each act is signed by an administrator,
//! with a reason, and kept in the log; `list` reads them (administrators and auditors).

use cercle_core::{AccountId, GroupLimits, GroupName, OpKind, SetGroupLimits};

use serde_json::json;

use crate::amounts::{self, LimitsChange, Sign};
use crate::client::Node;
use crate::output::{self, money, one_line};
use crate::signed::{self, SignArgs, parse_account};
use crate::{Global, keys};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a group with its default credit limit and maximum balance
    Create(CreateArgs),
    /// Change a group's default limits: every member without its own follows at once
    Set(SetArgs),
    /// Put an account in a group: it then follows the group's limits
    Assign(AssignArgs),
    /// List the groups, their default limits and members (administrators and auditors)
    List,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The group's name (3 to 32 characters a-z, 0-9 and '-', like a handle)
    #[arg(value_name = "NAME", value_parser = parse_group)]
    name: GroupName,
    /// The members' default credit limit, in major units
    #[arg(long, value_name = "AMOUNT")]
    credit_limit: String,
    /// The members' default maximum balance, in major units (default: none)
    #[arg(long, value_name = "AMOUNT")]
    max_balance: Option<String>,
    /// Why the group is created (kept in the ledger)
    #[arg(long, value_name = "TEXT")]
    reason: String,
    #[command(flatten)]
    sign: SignArgs,
}

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// The group whose defaults change
    #[arg(value_name = "NAME", value_parser = parse_group)]
    name: GroupName,
    /// The new default credit limit, in major units
    #[arg(long, value_name = "AMOUNT", allow_hyphen_values = true)]
    credit_limit: Option<String>,
    /// The new default maximum balance in major units, or `none` to remove it
    #[arg(long, value_name = "AMOUNT|none", allow_hyphen_values = true)]
    max_balance: Option<String>,
    /// Why the defaults change (kept in the ledger)
    #[arg(long, value_name = "TEXT")]
    reason: String,
    #[command(flatten)]
    sign: SignArgs,
}

#[derive(Debug, clap::Args)]
pub struct AssignArgs {
    /// The account to put in the group
    #[arg(value_name = "ACCOUNT", value_parser = parse_account)]
    account: AccountId,
    /// The group
    #[arg(value_name = "NAME", value_parser = parse_group)]
    name: GroupName,
    /// Why the account joins the group (kept in the ledger)
    #[arg(long, value_name = "TEXT")]
    reason: String,
    #[command(flatten)]
    sign: SignArgs,
}

fn parse_group(text: &str) -> Result<GroupName, String> {
    GroupName::parse(text).map_err(|e| e.to_string())
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    let (sign, kind) = match command {
        Command::Create(args) => {
            amounts::precheck(&args.credit_limit, "credit limit", Sign::NonNegative)?;
            if let Some(max) = &args.max_balance {
                amounts::precheck(max, "maximum balance", Sign::NonNegative)?;
            }
            let mut node = Node::connect(&global.node).await?;
            let exponent = node.genesis.exponent;
            let credit_limit_minor =
                amounts::parse(&args.credit_limit, "credit limit", Sign::NonNegative, exponent)?;
            let max_balance_minor = args
                .max_balance
                .as_deref()
                .map(|max| amounts::parse(max, "maximum balance", Sign::NonNegative, exponent))
                .transpose()?;
            let kind = OpKind::CreateGroup(GroupLimits {
                group: args.name,
                credit_limit_minor,
                max_balance_minor,
                reason: args.reason,
            });
            return signed::sign_and_submit(global, &args.sign, &key, &mut node, kind).await;
        }
        Command::Set(args) => {
            let change = LimitsChange::precheck(args.credit_limit.as_deref(), args.max_balance.as_deref())?;
            let mut node = Node::connect(&global.node).await?;
            let (credit_limit_minor, max_balance_minor) = change.parse(node.genesis.exponent)?;
            let kind = OpKind::SetGroupLimits(SetGroupLimits {
                group: args.name,
                credit_limit_minor,
                max_balance_minor,
                reason: args.reason,
            });
            return signed::sign_and_submit(global, &args.sign, &key, &mut node, kind).await;
        }
        Command::List => return list(global, &key).await,
        Command::Assign(args) => {
            let kind = OpKind::AssignGroup { account: args.account, group: args.name, reason: args.reason };
            (args.sign, kind)
        }
    };
    let mut node = Node::connect(&global.node).await?;
    signed::sign_and_submit(global, &sign, &key, &mut node, kind).await
}

async fn list(global: &Global, key: &cercle_core::sign::Keypair) -> anyhow::Result<()> {
    let mut node = Node::connect(&global.node).await?;
    let response = node.list_groups(key).await?;
    let genesis = &node.genesis;
    if global.json {
        let groups: Vec<serde_json::Value> = response
            .groups
            .iter()
            .map(|g| {
                json!({
                    "group": g.group,
                    "credit_limit_minor": g.credit_limit_minor,
                    "max_balance_minor": g.max_balance_minor,
                    "members": g.members,
                    "following_credit_limit": g.following_credit_limit,
                    "created_at_sequence": g.created_at_sequence,
                    "last_sequence": g.last_sequence,
                })
            })
            .collect();
        return output::emit_ok(json!({
            "groups": groups,
            "currency": genesis.currency,
            "exponent": genesis.exponent,
        }));
    }
    let mut rows =
        vec![["group", "credit limit", "max balance", "members", "following"].map(String::from).to_vec()];
    rows.extend(response.groups.iter().map(|g| {
        vec![
            one_line(&g.group),
            money(genesis, g.credit_limit_minor),
            g.max_balance_minor.map_or_else(|| "none".to_string(), |m| money(genesis, m)),
            g.members.to_string(),
            g.following_credit_limit.to_string(),
        ]
    }));
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let text: Vec<String> = rows
        .iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<width$}", width = *w))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect();
    output::emit(&text.join("\n"))
}
