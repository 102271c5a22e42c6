//! `cercle admin limits preview|apply`: a rule-based credit limit, "limit = min(cap, k ×
//! the firm's sales over the last 12 months), never below the floor or the group default".
//! `preview` asks the node what the rule gives every firm now (administrators and
//! auditors); `apply` signs the rule, bound to the digest of what it previewed, so the
//! ledger refuses it if anything changed in between (`LIMIT_RULE_CHANGED`).

use cercle_core::{ApplyLimitRule, GroupName, LimitRule, OpKind};
use cercle_proto as pb;
use serde_json::json;

use crate::amounts::{self, Sign};
use crate::client::Node;
use crate::output::{self, money, one_line};
use crate::signed::{self, SignArgs};
use crate::{Global, keys};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show every firm's current and new credit limit under a rule, without applying it
    Preview(RuleArgs),
    /// Apply a rule: every firm in scope gets its new limit, all in one ledger entry
    Apply(ApplyArgs),
}

#[derive(Debug, clap::Args)]
pub struct RuleArgs {
    /// No firm gets more from its sales than this, in major units
    #[arg(long, value_name = "AMOUNT")]
    cap: String,
    /// The factor k applied to a firm's sales: 0.25 gives a quarter of them (4 decimals at most)
    #[arg(long, value_name = "K")]
    factor: String,
    /// No firm gets less than this, in major units (a member of a group: nor less than its
    /// group's default)
    #[arg(long, value_name = "AMOUNT", default_value = "0")]
    floor: String,
    /// Only this group's members (default: every active firm but the association's fee account)
    #[arg(long, value_name = "NAME", value_parser = parse_group)]
    group: Option<GroupName>,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    rule: RuleArgs,
    /// Why the rule is applied (kept in the ledger)
    #[arg(long, value_name = "TEXT")]
    reason: String,
    /// The preview's digest to hold the application to (default: the digest of a preview
    /// made just before signing)
    #[arg(long, value_name = "HEX", value_parser = parse_digest)]
    expect: Option<[u8; 32]>,
    #[command(flatten)]
    sign: SignArgs,
}

fn parse_group(text: &str) -> Result<GroupName, String> {
    GroupName::parse(text).map_err(|e| e.to_string())
}

fn parse_digest(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    let whole = "the digest is the 64 hex digits the preview printed after `digest`, in full";
    if text.len() != 64 {
        return Err(format!("'{text}' is {} characters long: {whole}", text.chars().count()));
    }
    let bytes = hex::decode(text).map_err(|e| format!("'{text}' is not hex ({e}): {whole}"))?;
    Ok(bytes.try_into().expect("64 hex digits are 32 bytes"))
}

/// Basis points in a factor: at most 4 decimals, so `0.25` is 2,500.
const FACTOR_DECIMALS: u8 = 4;

fn rule(args: &RuleArgs, genesis: &cercle_core::Genesis) -> anyhow::Result<LimitRule> {
    let exponent = genesis.exponent;
    amounts::precheck(&args.cap, "cap", Sign::NonNegative)?;
    amounts::precheck(&args.floor, "floor", Sign::NonNegative)?;
    let factor = amounts::parse(&args.factor, "factor", Sign::NonNegative, FACTOR_DECIMALS)?;
    let Ok(factor_bp) = u32::try_from(factor) else {
        crate::usage_bail!("invalid factor: '{}' is out of range", args.factor.trim());
    };
    let rule = LimitRule {
        cap_minor: amounts::parse(&args.cap, "cap", Sign::NonNegative, exponent)?,
        factor_bp,
        floor_minor: amounts::parse(&args.floor, "floor", Sign::NonNegative, exponent)?,
        group: args.group.clone(),
    };
    if let Err(detail) = rule.check() {
        crate::usage_bail!("invalid limit rule: {}", detail.message(|minor| money(genesis, minor)));
    }
    Ok(rule)
}

fn request(rule: &LimitRule) -> pb::PreviewLimitRuleRequest {
    pb::PreviewLimitRuleRequest {
        cap_minor: rule.cap_minor,
        factor_bp: rule.factor_bp,
        floor_minor: rule.floor_minor,
        group: rule.group.as_ref().map(|g| g.to_string()),
    }
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    match command {
        Command::Preview(args) => {
            let rule = rule(&args, &node.genesis)?;
            let preview = node.preview_limit_rule(&key, request(&rule)).await?;
            if global.json {
                return output::emit_ok(preview_json(&preview));
            }
            output::emit(&preview_text(&node.genesis, &rule, &preview))
        }
        Command::Apply(args) => {
            let rule = rule(&args.rule, &node.genesis)?;
            let expected_root = match args.expect {
                Some(root) => root,
                None => {
                    let preview = node.preview_limit_rule(&key, request(&rule)).await?;
                    // What is signed is shown first (on stderr: stdout keeps the receipt).
                    if !global.json {
                        eprintln!("{}", preview_text(&node.genesis, &rule, &preview));
                    }
                    preview.root.as_slice().try_into().map_err(|_| {
                        anyhow::anyhow!("the node's preview digest is {} bytes, not 32", preview.root.len())
                    })?
                }
            };
            let kind = OpKind::ApplyLimitRule(ApplyLimitRule {
                rule,
                expected_root: Some(expected_root),
                reason: args.reason,
            });
            signed::sign_and_submit(global, &args.sign, &key, &mut node, kind).await
        }
    }
}

/// A firm owes more than its new limit: its balance is below the new floor.
fn over_new_limit(f: &pb::LimitRuleFirm) -> bool {
    f.balance_minor < f.new_credit_limit_minor.saturating_neg()
}

fn preview_json(p: &pb::PreviewLimitRuleResponse) -> serde_json::Value {
    let firms: Vec<serde_json::Value> = p
        .firms
        .iter()
        .map(|f| {
            json!({
                "account": f.account,
                "sales_minor": f.sales_minor,
                "credit_limit_minor": f.old_credit_limit_minor,
                "credit_limit_source": output::limit_source(&f.old_source),
                "new_credit_limit_minor": f.new_credit_limit_minor,
                "change_minor": i128::from(f.new_credit_limit_minor) - i128::from(f.old_credit_limit_minor),
                "balance_minor": f.balance_minor,
                "over_new_limit": over_new_limit(f),
            })
        })
        .collect();
    json!({
        "window_from": p.window_from,
        "window_to": p.window_to,
        "firms": firms,
        "changed": p.firms.iter().filter(|f| f.new_credit_limit_minor != f.old_credit_limit_minor).count(),
        "digest": hex::encode(&p.root),
        "as_of": output::rfc3339(p.as_of_ms),
        "currency": p.currency,
        "exponent": p.exponent,
    })
}

fn preview_text(
    genesis: &cercle_core::Genesis,
    rule: &LimitRule,
    p: &pb::PreviewLimitRuleResponse,
) -> String {
    let m = |minor: i64| money(genesis, minor);
    let mut lines = vec![
        format!("rule: {}", rule.describe(&m)),
        format!(
            "sales window: {} to {} (the 12 ledger months before the month in progress: a preview and an apply in the same month see the same sales)",
            p.window_from, p.window_to
        ),
        String::new(),
    ];
    let mut rows = vec![
        ["firm", "sales", "current limit", "source", "new limit", "change", ""].map(String::from).to_vec(),
    ];
    rows.extend(p.firms.iter().map(|f| {
        let change = i128::from(f.new_credit_limit_minor) - i128::from(f.old_credit_limit_minor);
        vec![
            one_line(&f.account),
            m(f.sales_minor),
            m(f.old_credit_limit_minor),
            output::limit_source(&f.old_source).to_string(),
            m(f.new_credit_limit_minor),
            match i64::try_from(change) {
                Ok(0) => "unchanged".to_string(),
                Ok(c) if c > 0 => format!("+{}", m(c)),
                Ok(c) => m(c),
                Err(_) => "?".to_string(),
            },
            if over_new_limit(f) {
                format!("owes {}: above its new limit", m(f.balance_minor.saturating_neg()))
            } else {
                String::new()
            },
        ]
    }));
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    lines.extend(rows.iter().map(|r| {
        r.iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<width$}", width = *w))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    }));
    let changed = p.firms.iter().filter(|f| f.new_credit_limit_minor != f.old_credit_limit_minor).count();
    lines.push(String::new());
    lines.push(format!(
        "{} firm{}, {changed} limit{} change; digest {}",
        p.firms.len(),
        if p.firms.len() == 1 { "" } else { "s" },
        if changed == 1 { "" } else { "s" },
        hex::encode(&p.root)
    ));
    lines.join("\n")
}
