//! `cercle audit ...`: the auditor's commands. `verify` replays a whole log independently
//! of the node; `export` writes the log out (jsonl, csv, hledger).

mod export;
mod verify;

use clap::Subcommand;

use crate::Global;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay a whole log from genesis and check every signature, hash and balance
    Verify(verify::Args),
    /// Export the node's log to a file (needs an auditor's or administrator's key)
    Export(export::Args),
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Verify(args) => verify::run(global, args).await,
        Command::Export(args) => export::run(global, args).await,
    }
}
