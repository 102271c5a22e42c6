//! `cercle proof ...`: a firm's own check that the node keeps one history for everyone.

mod check;

use clap::Subcommand;

use crate::Global;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check that your entries are in the node's signed log, and that the log was never rewritten
    Check(check::Args),
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Check(args) => check::run(global, args).await,
    }
}
