//! `cercle key add|remove|list`: a firm's keys and their roles (owner, payer with its
//! caps, invoicer, viewer). Changes are signed by an owner key of the account, or by an
//! administrator (a sensitive act, which needs the quorum).

use anyhow::anyhow;
use cercle_core::{AccountId, AddKey, KeyRole, OpKind, PublicKey};
use serde_json::json;

use crate::amounts::{self, Sign};
use crate::client::{Node, now_ms};
use crate::output::{self, money, one_line};
use crate::signed::{self, SignArgs, parse_account, parse_public_key};
use crate::{Global, keys};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add a key to an account with a role (signed by an owner key of the account)
    Add(AddArgs),
    /// Take a key off an account (never its last owner key)
    Remove(RemoveArgs),
    /// List an account's keys with their roles, caps and what each payer paid today
    List(ListArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RoleArg {
    /// Everything the account does
    Owner,
    /// Payments within --per-transfer-cap and --daily-cap
    Payer,
    /// Issuing and cancelling invoices
    Invoicer,
    /// Reads only
    Viewer,
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The account the key will sign for
    #[arg(value_name = "ACCOUNT", value_parser = parse_account)]
    account: AccountId,
    /// The key's public key (64 hex digits)
    #[arg(long, value_name = "HEX", value_parser = parse_public_key)]
    pubkey: PublicKey,
    /// What the key may sign
    #[arg(long, value_enum)]
    role: RoleArg,
    /// A payer's largest payment, in major units (e.g. 500); above it, a payment waits for
    /// an owner's approval
    #[arg(long, value_name = "AMOUNT")]
    per_transfer_cap: Option<String>,
    /// What a payer may pay in all over one ledger day, in major units (e.g. 2000); above
    /// it, a payment waits for an owner's approval
    #[arg(long, value_name = "AMOUNT")]
    daily_cap: Option<String>,
    /// A payer every payment of which waits for an owner's approval (caps of zero)
    #[arg(long, conflicts_with_all = ["per_transfer_cap", "daily_cap"])]
    require_approval: bool,
    /// Accept a key that is already on another open account (it will sign for both)
    #[arg(long)]
    allow_shared_key: bool,
    #[command(flatten)]
    sign: SignArgs,
}

#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// The account to take the key off
    #[arg(value_name = "ACCOUNT", value_parser = parse_account)]
    account: AccountId,
    /// The key's public key (64 hex digits)
    #[arg(long, value_name = "HEX", value_parser = parse_public_key)]
    pubkey: PublicKey,
    #[command(flatten)]
    sign: SignArgs,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The account whose keys to list (any key of it may read them)
    #[arg(value_name = "ACCOUNT", value_parser = parse_account)]
    account: AccountId,
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Add(args) => add(global, args).await,
        Command::Remove(args) => remove(global, args).await,
        Command::List(args) => list(global, args).await,
    }
}

async fn add(global: &Global, args: AddArgs) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    let payer = args.role == RoleArg::Payer;
    if !payer && (args.per_transfer_cap.is_some() || args.daily_cap.is_some()) {
        crate::usage_bail!(
            "--per-transfer-cap and --daily-cap are a payer's caps: give them with --role payer only"
        );
    }
    for cap in [&args.per_transfer_cap, &args.daily_cap].into_iter().flatten() {
        amounts::precheck(cap, "cap", Sign::Positive)?;
    }
    let mut node = Node::connect(&global.node).await?;
    let exponent = node.genesis.exponent;
    let cap = |text: &Option<String>| -> anyhow::Result<i64> {
        let text =
            text.as_deref().ok_or_else(|| anyhow!("a payer needs --per-transfer-cap and --daily-cap"))?;
        amounts::parse(text, "cap", Sign::Positive, exponent)
    };
    let role = match args.role {
        RoleArg::Owner => KeyRole::Owner,
        RoleArg::Payer if args.require_approval => {
            KeyRole::Payer { per_transfer_cap_minor: 0, daily_cap_minor: 0 }
        }
        RoleArg::Payer => KeyRole::Payer {
            per_transfer_cap_minor: cap(&args.per_transfer_cap)?,
            daily_cap_minor: cap(&args.daily_cap)?,
        },
        RoleArg::Invoicer => KeyRole::Invoicer,
        RoleArg::Viewer => KeyRole::Viewer,
    };
    let kind = OpKind::AddKey(AddKey {
        account: args.account,
        key: args.pubkey,
        role,
        allow_shared_key: args.allow_shared_key,
    });
    signed::sign_and_submit(global, &args.sign, &key, &mut node, kind).await
}

async fn remove(global: &Global, args: RemoveArgs) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    let kind = OpKind::RemoveKey { account: args.account, key: args.pubkey };
    signed::sign_and_submit(global, &args.sign, &key, &mut node, kind).await
}

async fn list(global: &Global, args: ListArgs) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    let account = node.account(&key, &args.account).await?;
    let genesis = &node.genesis;
    // What a payer paid counts on the ledger day it was paid only: today's, by this
    // machine's clock in the ledger's fixed offset.
    let today = genesis.day(now_ms()?);
    let rows: Vec<serde_json::Value> = account
        .keys
        .iter()
        .map(|k| {
            let mut value = json!({"public_key": hex::encode(&k.public_key), "role": k.role});
            if let (Some(per), Some(daily)) = (k.per_transfer_cap_minor, k.daily_cap_minor) {
                let spent = if k.day == today { k.spent_minor } else { 0 };
                value["per_transfer_cap_minor"] = json!(per);
                value["daily_cap_minor"] = json!(daily);
                value["spent_today_minor"] = json!(spent);
            }
            value
        })
        .collect();
    if global.json {
        return output::emit_ok(json!({
            "account": account.account,
            "day_offset": cercle_core::genesis::format_day_offset(genesis.day_offset_minutes),
            "keys": rows,
        }));
    }
    let mut lines = vec![format!("{:<64}  {:<8}  caps", "public key", "role")];
    for k in &account.keys {
        let caps = match (k.per_transfer_cap_minor, k.daily_cap_minor) {
            (Some(per), Some(daily)) => {
                let spent = if k.day == today { k.spent_minor } else { 0 };
                format!(
                    "{} a transfer, {} a day ({} paid today)",
                    money(genesis, per),
                    money(genesis, daily),
                    money(genesis, spent)
                )
            }
            _ => "-".to_string(),
        };
        lines.push(format!("{:<64}  {:<8}  {caps}", hex::encode(&k.public_key), one_line(&k.role)));
    }
    output::emit(&lines.join("\n"))
}
