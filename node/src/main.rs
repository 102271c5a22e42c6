//! `cercle-node`: initialise a data directory and run the ledger's gRPC node.
//!
//! With no arguments it runs on `./cercle-data`, initialising it on first start.
//!
//! What it prints on stdout is for people and scripts alike (`cercle-node init | head -1`),
//! so a closed stdout is never fatal: once a write fails, the rest goes to stderr. The
//! notice of a created administrator key goes to stderr in any case.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use cercle_core::PublicKey;
use cercle_server::{DataDir, InitOptions, ServerLimits, Web, init_data_dir};
use clap::{Parser, Subcommand};

const DEFAULT_DATA_DIR: &str = "cercle-data";
const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

#[derive(Parser)]
#[command(name = "cercle-node", version, about = "Run a Cercle mutual-credit ledger node")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Serve only the API, not the browser app
    #[arg(long, global = true)]
    no_web: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new ledger in a data directory
    Init {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        #[command(flatten)]
        genesis: GenesisArgs,
    },
    /// Serve the ledger in a data directory over gRPC
    Run {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Address to listen on (port 0 picks a free port)
        #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Close a connection that sends nothing for this long, in milliseconds
        #[arg(long, value_name = "MS", default_value_t = cercle_limits::CONNECTION_IDLE_TIMEOUT.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..))]
        idle_timeout_ms: u64,
    },
    /// Rebuild the state (balances, indexes) from the log
    Rebuild {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Keep only the good part of a corrupt log, when no backup can restore it
    Recover {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Accept that every entry from the first damaged one on is lost for good
        #[arg(long)]
        accept_loss: bool,
    },
}

#[derive(clap::Args)]
struct GenesisArgs {
    /// Currency code, 3 to 12 characters A-Z and 0-9
    #[arg(long, value_name = "CODE", default_value = "CHW")]
    currency: String,
    /// Digits after the decimal point
    #[arg(long, value_name = "N", default_value_t = 2)]
    exponent: u8,
    /// An administrator's public key in hex (repeatable); without one, a key is created in DIR/admin.key
    #[arg(long = "admin-pubkey", value_name = "HEX", value_parser = parse_key)]
    admin_keys: Vec<PublicKey>,
    /// An auditor's public key in hex (repeatable)
    #[arg(long = "auditor-pubkey", value_name = "HEX", value_parser = parse_key)]
    auditor_keys: Vec<PublicKey>,
}

fn parse_key(text: &str) -> Result<PublicKey, String> {
    let key = PublicKey::from_hex(text)?;
    cercle_core::sign::check_public_key(&key).map_err(|e| format!("{text}: {e}"))?;
    Ok(key)
}

/// Writes lines to stdout, and to stderr once stdout is closed (a reader that stopped, as
/// `head` does): the node never panics on a broken pipe, and no line is lost.
#[derive(Default)]
struct Printer {
    stdout_closed: bool,
}

impl Printer {
    fn line(&mut self, text: &str) {
        if !self.stdout_closed {
            let mut stdout = std::io::stdout().lock();
            if writeln!(stdout, "{text}").and_then(|()| stdout.flush()).is_ok() {
                return;
            }
            self.stdout_closed = true;
        }
        // Nothing is left to tell if stderr is closed too.
        let _ = writeln!(std::io::stderr(), "{text}");
    }
}

fn init(dir: &DataDir, genesis: GenesisArgs, out: &mut Printer) -> Result<()> {
    let report = init_data_dir(
        dir,
        InitOptions {
            currency: genesis.currency,
            exponent: genesis.exponent,
            admin_keys: genesis.admin_keys,
            auditor_keys: genesis.auditor_keys,
        },
    )
    .with_context(|| format!("cannot initialise {}", dir.root.display()))?;
    let g = &report.genesis;
    if let Some(path) = &report.created_admin_key {
        // On stderr, which a pipe on stdout does not swallow.
        let _ = writeln!(
            std::io::stderr(),
            "created an administrator key in {} (public key {}); keep it safe, it governs the ledger",
            path.display(),
            g.admin_keys.first().map(ToString::to_string).unwrap_or_default()
        );
    }
    out.line(&format!("initialised ledger {} in {}", g.ledger_id, dir.root.display()));
    out.line(&format!("currency {} with {} decimals", g.currency, g.exponent));
    out.line(&format!("node key {} (publish it: statements and tree heads are signed with it)", g.node_key));
    Ok(())
}

async fn run(
    dir: &DataDir,
    listen: SocketAddr,
    limits: ServerLimits,
    web: Web,
    out: &mut Printer,
) -> Result<()> {
    anyhow::ensure!(
        dir.is_initialised(),
        "{} holds no ledger; create one with `cercle-node init --data-dir {}`",
        dir.root.display(),
        dir.root.display()
    );
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    };
    // Printed once the ledger is open and checked: the line means "ready".
    let ready = |addr: std::net::SocketAddr| out.line(&format!("listening on {addr}"));
    cercle_server::serve(dir, listener, &limits, web, ready, shutdown).await?;
    Ok(())
}

fn rebuild(dir: &DataDir, out: &mut Printer) -> Result<()> {
    let started = std::time::Instant::now();
    let options = cercle_server::recovery::RecoverOptions { verify_signatures: true, rebuild: true };
    let recovered = cercle_server::recovery::recover(&dir.ledger(), options)
        .with_context(|| format!("cannot rebuild the state in {}", dir.root.display()))?;
    let open = &recovered.report.open;
    if open.recovery.cut_bytes > 0 {
        out.line(&format!(
            "cut a torn tail of {} bytes off the log ({})",
            open.recovery.cut_bytes,
            open.recovery.cut_reason.clone().unwrap_or_default()
        ));
    }
    let (entries, accounts) = (recovered.ledger.head().size, recovered.ledger.state().account_count());
    cercle_server::checkpointer::write_now(&recovered.store, recovered.pending)
        .with_context(|| format!("cannot write the rebuilt state in {}", dir.root.display()))?;
    out.line(&format!(
        "rebuilt the state from {entries} log entries ({accounts} accounts, every signature checked) in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn recover(dir: &DataDir, accept_loss: bool, out: &mut Printer) -> Result<()> {
    anyhow::ensure!(
        accept_loss,
        "recovering a corrupt log loses every entry from the damage on: restore the data directory from a backup if you can; otherwise run again with --accept-loss"
    );
    let report = cercle_store::Store::accept_loss(&dir.ledger(), cercle_server::now_ms())
        .with_context(|| format!("cannot recover the log in {}", dir.root.display()))?;
    let lost = report.claimed_entries - report.kept_entries;
    out.line(&format!(
        "kept the first {} entries; {} committed entries are lost (from entry {} on); the damaged log is kept in {}",
        report.kept_entries,
        lost,
        report.kept_entries + 1,
        report.damaged_file
    ));
    out.line(&format!(
        "the loss is recorded in {}; the next start rebuilds the state. Firms' `cercle proof check` will report the rewritten history: tell them.",
        dir.ledger().join("LOSSES.jsonl").display()
    ));
    Ok(())
}

/// `CERCLE_LOG_FORMAT=json` writes the log as one JSON object per line, for a log collector
/// (and for the crash tests, which read what each start-up recovered).
const LOG_FORMAT_VAR: &str = "CERCLE_LOG_FORMAT";

fn init_logging() -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour escapes only for a person at a terminal, never into a log file or a pipe.
        .with_ansi(std::io::stderr().is_terminal());
    match std::env::var(LOG_FORMAT_VAR).as_deref() {
        Err(std::env::VarError::NotPresent) | Ok("" | "text") => logger.init(),
        Ok("json") => logger.json().flatten_event(true).init(),
        Ok(other) => anyhow::bail!("{LOG_FORMAT_VAR}={other:?}: the log format is `text` or `json`"),
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("{LOG_FORMAT_VAR} is not UTF-8: the log format is `text` or `json`")
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    init_logging()?;
    let cli = Cli::parse();
    let mut out = Printer::default();
    let web = if cli.no_web { Web::Off } else { Web::Served };
    match cli.command {
        Some(Command::Init { data_dir, genesis }) => init(&DataDir::new(data_dir), genesis, &mut out),
        Some(Command::Run { data_dir, listen, idle_timeout_ms }) => {
            let limits = ServerLimits {
                idle_timeout: Duration::from_millis(idle_timeout_ms),
                ..ServerLimits::default()
            };
            run(&DataDir::new(data_dir), listen, limits, web, &mut out).await
        }
        Some(Command::Rebuild { data_dir }) => {
            let dir = DataDir::new(data_dir);
            tokio::task::spawn_blocking(move || rebuild(&dir, &mut out)).await?
        }
        Some(Command::Recover { data_dir, accept_loss }) => {
            let dir = DataDir::new(data_dir);
            tokio::task::spawn_blocking(move || recover(&dir, accept_loss, &mut out)).await?
        }
        None => {
            let dir = DataDir::new(DEFAULT_DATA_DIR);
            if !dir.is_initialised() {
                init(
                    &dir,
                    GenesisArgs {
                        currency: "CHW".into(),
                        exponent: 2,
                        admin_keys: Vec::new(),
                        auditor_keys: Vec::new(),
                    },
                    &mut out,
                )?;
            }
            let listen = DEFAULT_LISTEN.parse()?;
            run(&dir, listen, ServerLimits::default(), web, &mut out).await
        }
    }
}
