//! `cercle admin clearing`: run the optimal set-off of all eligible obligations, or show
//! with `--dry-run` what it would clear, per firm and in total.

use anyhow::anyhow;
use cercle_core::{OpKind, RunClearing};
use cercle_proto as pb;
use serde_json::json;

use crate::client::Node;
use crate::output::{self, money, one_line};
use crate::signed::{self, SignArgs};
use crate::{Global, keys};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only show what a run would clear now; sign and change nothing
    #[arg(long)]
    dry_run: bool,
    /// Also settle what set-off leaves through the firms' unused credit (payments within every limit)
    #[arg(long)]
    with_credit: bool,
    /// Why the run is made, e.g. "monthly clearing, November" (kept in the ledger)
    #[arg(long, value_name = "TEXT", default_value = "", hide_default_value = true)]
    reason: String,
    #[command(flatten)]
    sign: SignArgs,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    if args.dry_run {
        let summary = node.plan_clearing(&key, args.with_credit).await?;
        return print(global, &node, &summary, None);
    }
    let kind = OpKind::RunClearing(RunClearing { with_credit: args.with_credit, reason: args.reason });
    let Some(receipt) =
        signed::sign_and_submit_quietly(global, &args.sign, &key, &mut node, kind).await?.receipt
    else {
        return Ok(());
    };
    let summary = receipt.clearing.clone().ok_or_else(|| {
        anyhow!(
            "entry {} was accepted earlier (a duplicate): see it with `cercle audit export`",
            receipt.sequence
        )
    })?;
    print(global, &node, &summary, Some(&receipt))
}

fn print(
    global: &Global,
    node: &Node,
    s: &pb::ClearingSummary,
    receipt: Option<&pb::Receipt>,
) -> anyhow::Result<()> {
    let cleared = s.setoff_minor.saturating_add(s.credit_minor);
    let remaining = s.total_debt_minor.saturating_sub(cleared);
    if global.json {
        let firms: Vec<_> = s
            .firms_changed
            .iter()
            .map(|f| {
                json!({
                    "account": f.account,
                    "owes_minor": f.owes_minor,
                    "owes_cleared_minor": f.owes_cleared_minor,
                    "owed_minor": f.owed_minor,
                    "owed_cleared_minor": f.owed_cleared_minor,
                    "payment_minor": f.payment_minor,
                })
            })
            .collect();
        return output::emit_ok(json!({
            "dry_run": receipt.is_none(),
            "with_credit": s.with_credit,
            "obligations": s.obligations,
            "firms": s.firms,
            "total_debt_minor": s.total_debt_minor,
            "net_internal_debt_minor": s.net_internal_debt_minor,
            "setoff_minor": s.setoff_minor,
            "credit_minor": s.credit_minor,
            "cleared_minor": cleared,
            "setoff_basis_points": output::basis_points(s.setoff_minor.into(), s.total_debt_minor.into()),
            "credit_basis_points": output::basis_points(s.credit_minor.into(), s.total_debt_minor.into()),
            "cleared_basis_points": output::basis_points(cleared.into(), s.total_debt_minor.into()),
            "remaining_debt_minor": remaining,
            "payments_minor": s.payments_minor,
            "net_internal_debt_after_minor": s.net_internal_debt_after_minor,
            "firms_changed": firms,
            "receipt": receipt.map(output::receipt_json),
        }));
    }
    let g = &node.genesis;
    let percent = |part: i64| output::percent(part.into(), s.total_debt_minor.into());
    let mut text = format!(
        "{}, {}, over {} obligations among {} firms\n  total debt:               {}\n  net internal debt:        {}\n  cleared by set-off:       {} ({} of the debt)",
        if receipt.is_some() { "clearing run" } else { "clearing plan (dry run: nothing changed)" },
        if s.with_credit { "set-off, then mutual credit" } else { "set-off only" },
        s.obligations,
        s.firms,
        money(g, s.total_debt_minor),
        money(g, s.net_internal_debt_minor),
        money(g, s.setoff_minor),
        percent(s.setoff_minor),
    );
    if s.with_credit {
        text.push_str(&format!(
            "\n  settled through credit:   {} ({}), with payments of {}",
            money(g, s.credit_minor),
            percent(s.credit_minor),
            money(g, s.payments_minor)
        ));
    }
    text.push_str(&format!(
        "\n  remaining debt:           {}\n  net internal debt after:  {}",
        money(g, remaining),
        money(g, s.net_internal_debt_after_minor)
    ));
    if !s.firms_changed.is_empty() {
        text.push_str("\n  per firm: owes (cleared) / is owed (cleared) / payment");
        for f in &s.firms_changed {
            text.push_str(&format!(
                "\n    {}: {} ({}) / {} ({}) / {}",
                one_line(&f.account),
                money(g, f.owes_minor),
                money(g, f.owes_cleared_minor),
                money(g, f.owed_minor),
                money(g, f.owed_cleared_minor),
                money(g, f.payment_minor)
            ));
        }
    }
    if let Some(receipt) = receipt {
        text.push('\n');
        text.push_str(&output::receipt_line(g, receipt));
    }
    output::emit(&text)
}
