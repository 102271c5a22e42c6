//! `cercle admin role add|remove`: change who administers or audits the ledger. Each
//! change is an operation signed by an administrator, with a reason, kept in the log; the
//! last administrator cannot be removed.

use cercle_core::{OpKind, PublicKey, Role, SetRole};

use crate::client::Node;
use crate::signed::{self, SignArgs, parse_public_key};
use crate::{Global, keys};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Give a key a role: administrator or auditor
    Add(Args),
    /// Take a role from a key (never the last administrator's)
    Remove(Args),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    Admin,
    Auditor,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The role: admin (signs administrative acts, reads everything) or auditor (reads everything)
    #[arg(long, value_name = "ROLE")]
    role: RoleArg,
    /// The key (64 hex digits), e.g. from `cercle pubkey --key FILE`
    #[arg(long, value_name = "HEX", value_parser = parse_public_key)]
    pubkey: PublicKey,
    /// Why the role changes (kept in the ledger)
    #[arg(long, value_name = "TEXT")]
    reason: String,
    #[command(flatten)]
    sign: SignArgs,
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<()> {
    let (args, present) = match command {
        Command::Add(args) => (args, true),
        Command::Remove(args) => (args, false),
    };
    let role = match args.role {
        RoleArg::Admin => Role::Admin,
        RoleArg::Auditor => Role::Auditor,
    };
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    let kind = OpKind::SetRole(SetRole { role, key: args.pubkey, present, reason: args.reason });
    signed::sign_and_submit(global, &args.sign, &key, &mut node, kind).await
}
