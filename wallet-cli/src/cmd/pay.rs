//! `cercle pay`: a transfer from one account (signed with its key) to another.

use cercle_core::{AccountId, FeeSchedule, Genesis, Levy, LevyOn, OpKind, Transfer};
use serde_json::json;

use crate::amounts::{self, Sign};
use crate::client::Node;
use crate::signed::{self, SignArgs, parse_account};
use crate::{Global, keys, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pay from this account (the key must be one of its keys)
    #[arg(long, value_name = "ACCOUNT", value_parser = parse_account)]
    from: AccountId,
    /// The account to pay
    #[arg(value_name = "TO", value_parser = parse_account)]
    to: AccountId,
    /// The amount in major units, e.g. 125.50
    #[arg(value_name = "AMOUNT", allow_hyphen_values = true)]
    amount: String,
    /// A note for both sides, e.g. what is paid for
    #[arg(long, value_name = "TEXT", default_value = "", hide_default_value = true)]
    memo: String,
    /// The reference of the invoice this payment settles
    #[arg(long, value_name = "REF")]
    invoice: Option<String>,
    #[command(flatten)]
    sign: SignArgs,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    if args.from == args.to {
        crate::usage_bail!("an account cannot pay itself ('{}' is both --from and TO)", args.to);
    }
    amounts::precheck(&args.amount, "amount", Sign::Positive)?;
    let mut node = Node::connect(&global.node).await?;
    let amount_minor = amounts::parse(&args.amount, "amount", Sign::Positive, node.genesis.exponent)?;
    // The levy under the schedule the node announced, shown before signing (on stderr,
    // so `--json` output stays one object). The node charges the schedule in force when it
    // applies the transfer; the entry's balances are the record.
    let levy = node.fees.as_ref().map(|f| (f, f.levy(&args.from, &args.to, amount_minor)));
    let levy = levy.filter(|(_, l)| l.total_minor() > 0);
    if let Some((fees, l)) = levy {
        eprintln!("{}", levy_line(&node.genesis, fees, l, amount_minor));
    }
    let kind = OpKind::Transfer(Transfer {
        payer: args.from,
        payee: args.to,
        amount_minor,
        memo: args.memo,
        invoice_ref: args.invoice,
        invoice: None,
    });
    let Some((fees, l)) = levy else {
        return signed::sign_and_submit(global, &args.sign, &key, &mut node, kind).await;
    };
    let fees = fees.clone();
    let Some(receipt) =
        signed::sign_and_submit_quietly(global, &args.sign, &key, &mut node, kind).await?.receipt
    else {
        return Ok(());
    };
    if global.json {
        let mut value = output::receipt_json(&receipt);
        value["levy"] = json!({
            "account": fees.account.to_string(),
            "total_minor": l.total_minor(),
            "payer_minor": l.payer_minor,
            "payee_minor": l.payee_minor,
            "transfer_levy_bp": fees.transfer_levy_bp,
            "levy_on": fees.levy_on.name(),
        });
        return output::emit_ok(value);
    }
    output::emit(&format!(
        "{}; {}",
        output::receipt_line(&node.genesis, &receipt),
        levy_line(&node.genesis, &fees, l, amount_minor)
    ))
}

/// `levy 1.25 CHW to association (25 bp of 500.00 CHW, paid by the payer)`.
fn levy_line(genesis: &Genesis, fees: &FeeSchedule, l: Levy, amount_minor: i64) -> String {
    let money = |minor: i64| output::money(genesis, minor);
    let who = match fees.levy_on {
        LevyOn::Payer => "paid by the payer".to_string(),
        LevyOn::Payee => "paid by the payee".to_string(),
        LevyOn::Split => {
            format!("split: the payer pays {}, the payee {}", money(l.payer_minor), money(l.payee_minor))
        }
    };
    format!(
        "levy {} to {} ({} bp of {}, {who})",
        money(l.total_minor()),
        fees.account,
        fees.transfer_levy_bp,
        money(amount_minor)
    )
}
