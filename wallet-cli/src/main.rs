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
mod failure;
mod files;
mod journal;
mod keys;
mod output;
mod signed;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser};

/// What `--version` prints after the name: the version and the wire protocol's package.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (proto package cercle.v1)");

/// The node a fresh install talks to.
const DEFAULT_NODE: &str = "http://127.0.0.1:50051";

/// What `cercle --help` says after the options: the conventions scripts rely on.
const AFTER_HELP: &str = "\
Exit codes:
  0  ok
  1  any other failure (permission denied, not found, a file that cannot be written, ...)
  2  bad usage or input, refused before anything was sent
  3  rejected by the ledger (a numbered reason)
  4  cannot reach the node (connection refused, name resolution, timeout)
  5  audit failed (`audit verify`, `statement verify`)
  6  history rewritten (`proof check`)

With --json, every command prints exactly one JSON object on stdout (`submit`: one per
envelope, one per line): {\"ok\": true, ...} on success, and on failure
{\"ok\": false, \"error\": {\"kind\", \"message\", and \"code\" and \"reason\" for a rejection}}.";

/// Sign payments and administrative operations, and read balances and histories, on a Cercle ledger
#[derive(Debug, Parser)]
#[command(name = "cercle", version = VERSION, after_help = AFTER_HELP)]
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
    /// Trust this CA certificate (PEM) for https:// nodes, besides the system's roots
    #[arg(long, global = true, env = "CERCLE_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
}

/// The command line's definition, for completions.
pub fn cli_command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let json = cli.global.json;
    if let Some(path) = &cli.global.ca_cert {
        client::set_ca_cert(path.clone());
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return report(json, &anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(cmd::run(&cli.global, cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed stdout (`cercle history ... | head`) is the reader's choice, not a failure.
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => report(json, &e),
    }
}

/// Reports a failed command: one `error:` line on stderr, the JSON error object on stdout
/// with `--json`, and the exit code of its kind.
fn report(json: bool, error: &anyhow::Error) -> ExitCode {
    let classified = failure::classify(error);
    let message = output::one_line(&format!("{error:#}"));
    eprintln!("error: {message}");
    let reported = classified.failure.is_some_and(|f| f.reported);
    if json && !reported {
        // A rejection's message is the ledger's explanation; its name and number have fields.
        let text = classified.rejected.map_or(message.clone(), |r| r.message.clone());
        let details = classified.failure.map(|f| f.details.clone()).unwrap_or_default();
        let error = failure::error_json(classified.kind, classified.rejected, &text, &details);
        // Nothing more can be said if stdout is closed: the exit code still tells.
        let _ = output::emit(&serde_json::json!({"ok": false, "error": error}).to_string());
    }
    ExitCode::from(classified.kind.exit_code())
}

/// Clap's verdict on the arguments: help and version are printed as asked (exit 0); a
/// usage error is printed by clap on stderr (exit 2), and as a JSON error object on stdout
/// when `--json` is among the arguments.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if std::env::args_os().any(|a| a == "--json") {
        let rendered = e.render().to_string();
        let first = rendered.lines().next().unwrap_or_default();
        let message = output::one_line(first.strip_prefix("error: ").unwrap_or(first));
        let error = failure::error_json(failure::Kind::Usage, None, &message, &Default::default());
        let _ = output::emit(&serde_json::json!({"ok": false, "error": error}).to_string());
    }
    let _ = e.print();
    ExitCode::from(failure::Kind::Usage.exit_code())
}
