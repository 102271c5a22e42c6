//! `cercle admin accounts`: the accounts overview for administrators and auditors
//! (`ListAccounts`), filtered and sorted by the node, one page at a time.

use anyhow::anyhow;
use cercle_core::Genesis;
use cercle_core::profile::Field;
use cercle_proto as pb;
use serde_json::{Value, json};

use crate::client::Node;
use crate::failure::usage;
use crate::output::{self, money, one_line, rfc3339};
use crate::{Global, keys};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StatusArg {
    Active,
    Frozen,
    Closed,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SortArg {
    /// By handle
    Handle,
    /// Lowest balance first
    Balance,
    /// Highest use of the credit line first
    CreditUse,
    /// Negative for longest first
    NegativeSince,
    /// Longest without a payment first
    LastActivity,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only accounts of this status
    #[arg(long, value_enum)]
    status: Option<StatusArg>,
    /// Only accounts with a negative balance
    #[arg(long, conflicts_with = "positive")]
    negative: bool,
    /// Only accounts with a positive balance
    #[arg(long)]
    positive: bool,
    /// Only accounts negative for at least this many days
    #[arg(long, value_name = "DAYS")]
    negative_days: Option<u32>,
    /// Only accounts using at least this percentage of their credit line (debt and pending payments' reservations)
    #[arg(long, value_name = "PERCENT")]
    credit_use: Option<u32>,
    /// Only firms of this NACE section, division or class (C, 10, 10.71)
    #[arg(long, value_name = "CODE")]
    sector: Option<String>,
    /// Only firms of this commune (INSEE code)
    #[arg(long, value_name = "CODE")]
    commune: Option<String>,
    /// Sort the accounts this way
    #[arg(long, value_enum, default_value = "handle")]
    sort: SortArg,
    /// Reverse the order
    #[arg(long)]
    desc: bool,
    /// Skip this many accounts (the `next_offset` of the page before)
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Show at most this many accounts (at most 1000)
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: u32,
}

fn status_name(status: i32) -> &'static str {
    match pb::AccountStatus::try_from(status) {
        Ok(pb::AccountStatus::Active) => "active",
        Ok(pb::AccountStatus::Frozen) => "frozen",
        Ok(pb::AccountStatus::Closed) => "closed",
        _ => "unknown",
    }
}

/// One account as `--json` shows it (the same fields as `cercle balance --json` adds).
pub fn account_json(a: &pb::Account) -> Value {
    json!({
        "handle": a.account,
        "name": a.display_name,
        "balance_minor": a.balance_minor,
        "credit_limit_minor": a.credit_limit_minor,
        "max_balance_minor": a.max_balance_minor,
        "group": (!a.group.is_empty()).then_some(&a.group),
        "credit_limit_source": crate::output::limit_source(&a.credit_limit_source),
        "max_balance_source": crate::output::limit_source(&a.max_balance_source),
        "status": status_name(a.status),
        "sector": a.sector,
        "commune": a.commune,
        "postcode": a.postcode,
        "territory": a.territory,
        "size_class": a.size_class,
        "negative_since": a.negative_since_ms.map(rfc3339),
        "last_activity": a.last_activity_ms.map(rfc3339),
        "reserved_minor": a.reserved_minor,
    })
}

fn row(genesis: &Genesis, a: &pb::Account) -> Vec<String> {
    let day = |ms: Option<u64>| ms.map_or("-".to_string(), |ms| rfc3339(ms)[..10].to_string());
    vec![
        one_line(&a.account),
        one_line(&a.display_name),
        money(genesis, a.balance_minor),
        money(genesis, a.credit_limit_minor),
        one_line(crate::output::limit_source(&a.credit_limit_source)),
        status_name(a.status).to_string(),
        a.sector.as_deref().map_or("-".into(), one_line),
        a.commune.as_deref().map_or("-".into(), one_line),
        day(a.negative_since_ms),
        day(a.last_activity_ms),
    ]
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    for (field, value, flag) in
        [(Field::Sector, &args.sector, "--sector"), (Field::Commune, &args.commune, "--commune")]
    {
        if let Some(v) = value {
            field.check(v).map_err(|e| usage(format!("{flag}: {e}")))?;
        }
    }
    let request = pb::ListAccountsRequest {
        order: match args.sort {
            SortArg::Handle => pb::AccountOrder::Handle,
            SortArg::Balance => pb::AccountOrder::Balance,
            SortArg::CreditUse => pb::AccountOrder::CreditUse,
            SortArg::NegativeSince => pb::AccountOrder::NegativeSince,
            SortArg::LastActivity => pb::AccountOrder::LastActivity,
        } as i32,
        descending: args.desc,
        status: match args.status {
            None => pb::AccountStatus::Unspecified,
            Some(StatusArg::Active) => pb::AccountStatus::Active,
            Some(StatusArg::Frozen) => pb::AccountStatus::Frozen,
            Some(StatusArg::Closed) => pb::AccountStatus::Closed,
        } as i32,
        sign: match (args.negative, args.positive) {
            (true, _) => pb::BalanceSign::Negative,
            (_, true) => pb::BalanceSign::Positive,
            _ => pb::BalanceSign::Any,
        } as i32,
        negative_days_min: args.negative_days.unwrap_or(0),
        credit_use_percent_min: args.credit_use.unwrap_or(0),
        sector: args.sector.unwrap_or_default(),
        commune: args.commune.unwrap_or_default(),
        offset: args.offset,
        page_size: args.limit,
    };
    let mut node = Node::connect(&global.node).await?;
    let page = node.list_accounts(&key, request).await?;
    if page.accounts.len() > args.limit as usize {
        return Err(anyhow!("asked for {} accounts, the node sent {}", args.limit, page.accounts.len()));
    }
    if global.json {
        let accounts: Vec<Value> = page.accounts.iter().map(account_json).collect();
        return output::emit_ok(json!({
            "accounts": accounts,
            "matching": page.matching,
            "next_offset": page.next_offset,
            "as_of": rfc3339(page.as_of_ms),
            "currency": node.genesis.currency,
            "exponent": node.genesis.exponent,
        }));
    }
    let genesis = &node.genesis;
    let mut rows = vec![
        [
            "account",
            "name",
            "balance",
            "credit limit",
            "limit from",
            "status",
            "sector",
            "commune",
            "negative since",
            "last activity",
        ]
        .map(String::from)
        .to_vec(),
    ];
    rows.extend(page.accounts.iter().map(|a| row(genesis, a)));
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut text: Vec<String> = rows
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
    let shown = page.accounts.len() as u64;
    text.push(match page.next_offset {
        Some(next) => {
            format!("{shown} of {} matching accounts; the next page: --offset {next}", page.matching)
        }
        None => format!("{shown} shown, {} matching accounts", page.matching),
    });
    output::emit(&text.join("\n"))
}
