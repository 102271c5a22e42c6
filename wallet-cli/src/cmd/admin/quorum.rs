//! `cercle admin quorum`: how many administrators sign a sensitive act (role and quorum
//! changes, credit limits above a threshold, an administrator replacing a firm's keys, a
//! write-off at closure, a clearing run with credit), and the credit limit above which
//! setting a limit is one. Changing it is itself a sensitive act: under a quorum of two,
//! sign with `--save FILE --no-submit`, have another administrator `cercle cosign --file
//! FILE`, then `cercle submit --file FILE`.

use cercle_core::{OpKind, SetQuorum};

use crate::amounts::{self, Sign};
use crate::client::Node;
use crate::signed::{self, SignArgs};
use crate::{Global, keys};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Set the quorum and the credit limit above which a limit needs it
    Set(Args),
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Administrators who sign a sensitive act: 1 to the number of administrators (at most 8)
    #[arg(long, value_name = "M")]
    quorum: u8,
    /// Setting a credit limit above this amount needs the quorum too (in the currency, e.g.
    /// 50000 or 50000.00); `none`: no credit limit does
    #[arg(long, value_name = "AMOUNT|none")]
    limit_above: Option<String>,
    /// Why (kept in the ledger)
    #[arg(long, value_name = "TEXT")]
    reason: String,
    #[command(flatten)]
    sign: SignArgs,
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<()> {
    let Command::Set(args) = command;
    let key = keys::load(global.key.as_deref())?;
    let limit_above = args.limit_above.as_deref().map(str::trim).filter(|l| *l != "none");
    if let Some(limit) = limit_above {
        amounts::precheck(limit, "quorum limit", Sign::NonNegative)?;
    }
    let mut node = Node::connect(&global.node).await?;
    let limit_above_minor = limit_above
        .map(|limit| amounts::parse(limit, "quorum limit", Sign::NonNegative, node.genesis.exponent))
        .transpose()?;
    let kind = OpKind::SetQuorum(SetQuorum { quorum: args.quorum, limit_above_minor, reason: args.reason });
    signed::sign_and_submit(global, &args.sign, &key, &mut node, kind).await
}
