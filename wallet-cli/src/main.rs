//! `cercle`, the wallet CLI: keys, signed operations, balances and histories.
//!
//! A thin binary over `cercle-core` and `cercle-proto`: it parses arguments, validates
//! them before anything is signed or sent, talks to one node over gRPC and prints the
//! outcome. Every subcommand lives in its own file under `cmd/`; the shared pieces are
//! the node connection and read authentication (`client`), key files (`keys`), envelope
//! files (`envelopes`), amount validation (`amounts`), signing (`signed`) and printing
//! (`output`).

mod amounts;
mod client;
mod cmd;
mod envelopes;
mod keys;
mod output;
mod signed;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser};

/// The node a fresh install talks to.
const DEFAULT_NODE: &str = "http://127.0.0.1:50051";

/// Sign payments and administrative operations, and read balances and histories, on a Cercle ledger
#[derive(Debug, Parser)]
#[command(name = "cercle", version)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: cmd::Command,
}

/// Options every subcommand understands.
#[derive(Debug, Args)]
pub struct Global {
    /// Talk to the node at this URL
    #[arg(long, global = true, env = "CERCLE_NODE", default_value = DEFAULT_NODE, value_name = "URL")]
    pub node: String,
    /// Sign with the key in this file (made by `cercle keygen`)
    #[arg(long, global = true, env = "CERCLE_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Print machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::run(&cli.global, cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed stdout (`cercle history ... | head`) is the reader's choice, not a failure.
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", output::one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}
