//! `cercle pending list|approve|decline`: the payments a firm's payer keys made above their
//! caps, held for an owner's approval. Approving and declining are signed by an owner key.

use anyhow::anyhow;
use cercle_core::{AccountId, OpKind};
use serde_json::json;

use crate::client::{Node, now_ms};
use crate::output::{self, money, one_line};
use crate::signed::{self, SignArgs, parse_account};
use crate::{Global, keys};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List an account's pending payments (any key of the account may read them)
    List(ListArgs),
    /// Approve a pending payment: the money moves (signed by an owner key)
    Approve(ApproveArgs),
    /// Decline a pending payment: its reservation is released (signed by an owner key)
    Decline(DeclineArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The paying account
    #[arg(value_name = "ACCOUNT", value_parser = parse_account)]
    account: AccountId,
}

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// The paying account
    #[arg(value_name = "ACCOUNT", value_parser = parse_account)]
    account: AccountId,
    /// The pending payment's id (the receipt's `pending_id`)
    #[arg(value_name = "ID")]
    id: u64,
    #[command(flatten)]
    sign: SignArgs,
}

#[derive(Debug, clap::Args)]
pub struct DeclineArgs {
    /// The paying account
    #[arg(value_name = "ACCOUNT", value_parser = parse_account)]
    account: AccountId,
    /// The pending payment's id (the receipt's `pending_id`)
    #[arg(value_name = "ID")]
    id: u64,
    /// Why it is declined
    #[arg(long, value_name = "TEXT", default_value = "", hide_default_value = true)]
    reason: String,
    #[command(flatten)]
    sign: SignArgs,
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<()> {
    match command {
        Command::List(args) => list(global, args).await,
        Command::Approve(args) => approve(global, args).await,
        Command::Decline(args) => decline(global, args).await,
    }
}

async fn list(global: &Global, args: ListArgs) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    let a = node.account(&key, &args.account).await?;
    let now = now_ms()?;
    let genesis = &node.genesis;
    if global.json {
        let pending: Vec<serde_json::Value> = a
            .pending
            .iter()
            .map(|p| {
                json!({
                    "pending_id": p.pending_id,
                    "payee": p.payee,
                    "amount_minor": p.amount_minor,
                    "public_key": hex::encode(&p.public_key),
                    "memo": p.memo,
                    "expires": output::rfc3339(p.expires_ms),
                    "expired": now > p.expires_ms,
                })
            })
            .collect();
        return output::emit_ok(json!({
            "account": a.account,
            "reserved_minor": a.reserved_minor,
            "pending": pending,
        }));
    }
    if a.pending.is_empty() {
        return output::emit(&format!("no pending payment of '{}'", one_line(&a.account)));
    }
    let mut lines = vec![format!("reserved {}", money(genesis, a.reserved_minor))];
    for p in &a.pending {
        lines.push(format!(
            "{:>8}  {} to {}  by key {}…  {} {}{}",
            p.pending_id,
            money(genesis, p.amount_minor),
            one_line(&p.payee),
            &hex::encode(&p.public_key)[..8],
            if now > p.expires_ms { "expired" } else { "expires" },
            output::rfc3339(p.expires_ms),
            if p.memo.is_empty() { String::new() } else { format!("  \"{}\"", one_line(&p.memo)) },
        ));
    }
    output::emit(&lines.join("\n"))
}

async fn approve(global: &Global, args: ApproveArgs) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    // The owner signs what it approves: the payee and amount the ledger recorded.
    let a = node.account(&key, &args.account).await?;
    // None waiting with this id: the very refusal the ledger gives a decline of it (the
    // approval cannot even be signed: it names the payee and amount the ledger recorded).
    let p = a.pending.iter().find(|p| p.pending_id == args.id).ok_or_else(|| {
        let rejection =
            cercle_core::Rejection::PendingUnknown { account: args.account.clone(), pending: args.id };
        let code = rejection.code();
        crate::client::Rejected {
            reason: code.name().to_string(),
            code: Some(code as u16),
            message: rejection.message(&node.genesis.currency, node.genesis.exponent),
        }
    })?;
    let payee = parse_account(&p.payee).map_err(|e| anyhow!("the node names a bad payee: {e}"))?;
    let kind = OpKind::ApprovePending {
        account: args.account,
        pending: args.id,
        payee,
        amount_minor: p.amount_minor,
    };
    signed::sign_and_submit(global, &args.sign, &key, &mut node, kind).await
}

async fn decline(global: &Global, args: DeclineArgs) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    let kind = OpKind::DeclinePending { account: args.account, pending: args.id, reason: args.reason };
    signed::sign_and_submit(global, &args.sign, &key, &mut node, kind).await
}
