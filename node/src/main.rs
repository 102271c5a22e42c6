//! `cercle-node`: initialise a data directory and run the ledger's gRPC node.
//!
//! With no arguments it runs on `./cercle-data`, initialising it on first start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use cercle_core::PublicKey;
use cercle_server::{DataDir, InitOptions, ServerLimits, init_data_dir};
use clap::{Parser, Subcommand};

const DEFAULT_DATA_DIR: &str = "cercle-data";
const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

#[derive(Parser)]
#[command(name = "cercle-node", version, about = "Run a Cercle mutual-credit ledger node")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
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
        #[arg(long, value_name = "MS", default_value_t = cercle_server::limits::CONNECTION_IDLE_TIMEOUT.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..))]
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

fn init(dir: &DataDir, genesis: GenesisArgs) -> Result<()> {
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
    println!("initialised ledger {} in {}", g.ledger_id, dir.root.display());
    println!("currency {} with {} decimals", g.currency, g.exponent);
    println!("node key {} (publish it: statements and tree heads are signed with it)", g.node_key);
    if let Some(path) = report.created_admin_key {
        println!(
            "created an administrator key in {} (public key {}); keep it safe, it governs the ledger",
            path.display(),
            g.admin_keys[0]
        );
    }
    Ok(())
}

async fn run(dir: &DataDir, listen: SocketAddr, limits: ServerLimits) -> Result<()> {
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
    let ready = |addr: std::net::SocketAddr| println!("listening on {addr}");
    cercle_server::serve(dir, listener, &limits, ready, shutdown).await?;
    Ok(())
}

fn rebuild(dir: &DataDir) -> Result<()> {
    let started = std::time::Instant::now();
    let (_, ledger, report) = cercle_store::Store::rebuild(&dir.ledger())
        .with_context(|| format!("cannot rebuild the state in {}", dir.root.display()))?;
    if report.recovery.cut_bytes > 0 {
        println!(
            "cut a torn tail of {} bytes off the log ({})",
            report.recovery.cut_bytes,
            report.recovery.cut_reason.unwrap_or_default()
        );
    }
    println!(
        "rebuilt the state from {} log entries ({} accounts, every signature checked) in {:.1} s",
        ledger.head().size,
        ledger.state().account_count(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn recover(dir: &DataDir, accept_loss: bool) -> Result<()> {
    anyhow::ensure!(
        accept_loss,
        "recovering a corrupt log loses every entry from the damage on: restore the data directory from a backup if you can; otherwise run again with --accept-loss"
    );
    let report = cercle_store::Store::accept_loss(&dir.ledger(), cercle_server::now_ms())
        .with_context(|| format!("cannot recover the log in {}", dir.root.display()))?;
    let lost = report.claimed_entries - report.kept_entries;
    println!(
        "kept the first {} entries; {} committed entries are lost (from entry {} on); the damaged log is kept in {}",
        report.kept_entries,
        lost,
        report.kept_entries + 1,
        report.damaged_file
    );
    println!(
        "the loss is recorded in {}; the next start rebuilds the state. Firms' `cercle proof check` will report the rewritten history: tell them.",
        dir.ledger().join("LOSSES.jsonl").display()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Init { data_dir, genesis }) => init(&DataDir::new(data_dir), genesis),
        Some(Command::Run { data_dir, listen, idle_timeout_ms }) => {
            let limits = ServerLimits {
                idle_timeout: Duration::from_millis(idle_timeout_ms),
                ..ServerLimits::default()
            };
            run(&DataDir::new(data_dir), listen, limits).await
        }
        Some(Command::Rebuild { data_dir }) => {
            let dir = DataDir::new(data_dir);
            tokio::task::spawn_blocking(move || rebuild(&dir)).await?
        }
        Some(Command::Recover { data_dir, accept_loss }) => {
            let dir = DataDir::new(data_dir);
            tokio::task::spawn_blocking(move || recover(&dir, accept_loss)).await?
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
                )?;
            }
            let listen = DEFAULT_LISTEN.parse()?;
            run(&dir, listen, ServerLimits::default()).await
        }
    }
}
