//! `cercle balance`: an account's balance, limits and status, read with the caller's key.

use cercle_core::AccountId;
use cercle_proto as pb;
use serde_json::json;

use crate::client::Node;
use crate::output::{self, money, one_line};
use crate::signed::parse_account;
use crate::{Global, keys};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The account to show (yours, or any if your key is an administrator's or auditor's)
    #[arg(value_name = "ACCOUNT", value_parser = parse_account)]
    account: AccountId,
}

fn status_name(status: i32) -> String {
    match pb::AccountStatus::try_from(status) {
        Ok(pb::AccountStatus::Active) => "active".into(),
        Ok(pb::AccountStatus::Frozen) => "frozen".into(),
        Ok(pb::AccountStatus::Closed) => "closed".into(),
        _ => format!("unknown ({status})"),
    }
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    let account = node.account(&key, &args.account).await?;
    let genesis = &node.genesis;
    let status = status_name(account.status);
    if global.json {
        let public_keys: Vec<String> = account.public_keys.iter().map(hex::encode).collect();
        return output::emit_ok(json!({
            "account": account.account,
            "display_name": account.display_name,
            "balance_minor": account.balance_minor,
            "credit_limit_minor": account.credit_limit_minor,
            "floor_minor": account.credit_limit_minor.saturating_neg(),
            "max_balance_minor": account.max_balance_minor,
            "group": (!account.group.is_empty()).then_some(&account.group),
            "credit_limit_source": output::limit_source(&account.credit_limit_source),
            "max_balance_source": output::limit_source(&account.max_balance_source),
            "status": status,
            "currency": genesis.currency,
            "exponent": genesis.exponent,
            "public_keys": public_keys,
            "registered_at_sequence": account.registered_at_sequence,
            "last_sequence": account.last_sequence,
            "sector": account.sector,
            "commune": account.commune,
            "postcode": account.postcode,
            "territory": account.territory,
            "size_class": account.size_class,
            "negative_since": account.negative_since_ms.map(output::rfc3339),
            "reserved_minor": account.reserved_minor,
            "pending_payments": account.pending.len(),
            "last_activity": account.last_activity_ms.map(output::rfc3339),
        }));
    }
    // A member says where each limit comes from: its group's default, or its own.
    let from = |source: &str| {
        if account.group.is_empty() {
            String::new()
        } else {
            match output::limit_source(source).strip_prefix("group:") {
                Some(group) => format!(" (group {})", one_line(group)),
                None => " (own limit)".to_string(),
            }
        }
    };
    let max_balance = account.max_balance_minor.map_or_else(|| "none".to_string(), |m| money(genesis, m));
    let credit_limit = output::credit_limit(account.credit_limit_minor, |m| money(genesis, m));
    let mut rows = vec![
        ("account", format!("{} ({})", one_line(&account.account), one_line(&account.display_name))),
        ("balance", money(genesis, account.balance_minor)),
        ("credit limit", credit_limit + &from(&account.credit_limit_source)),
        ("max balance", max_balance + &from(&account.max_balance_source)),
        ("status", status),
    ];
    if !account.group.is_empty() {
        rows.push(("group", one_line(&account.group)));
    }
    let profile = [
        ("sector", &account.sector),
        ("commune", &account.commune),
        ("postcode", &account.postcode),
        ("territory", &account.territory),
        ("size class", &account.size_class),
    ];
    rows.extend(profile.into_iter().filter_map(|(label, v)| Some((label, one_line(v.as_deref()?)))));
    if account.reserved_minor != 0 {
        rows.push((
            "reserved",
            format!(
                "{} by {} pending payment(s) (`cercle pending list`)",
                money(genesis, account.reserved_minor),
                account.pending.len()
            ),
        ));
    }
    if let Some(since) = account.negative_since_ms {
        rows.push(("negative since", output::rfc3339(since)));
    }
    let text: Vec<String> = rows.iter().map(|(label, value)| format!("{label:<12} {value}")).collect();
    output::emit(&text.join("\n"))
}
