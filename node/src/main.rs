//! `cercle-node`: initialise a data directory and run the ledger's gRPC node; check its
//! configuration (`config`), back it up and restore it (`backup`), probe a running node's
//! health (`probe`), print shell completions.
//!
//! With no arguments it runs on `./cercle-data`, initialising it on first start.
//!
//! What it prints on stdout is for people and scripts alike (`cercle-node init | head -1`),
//! so a closed stdout is never fatal: once a write fails, the rest goes to stderr. The
//! notice of a created administrator key goes to stderr in any case.

mod backup;
mod config;
mod probe;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use cercle_core::PublicKey;
use cercle_server::{DataDir, InitOptions, Web, init_data_dir};
use clap::{CommandFactory, Parser, Subcommand};
use config::{Config, LogFormat, ProcessEnv, RunFlags};

/// What `--version` prints after the name: the version and the wire protocol's package.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (proto package cercle.v1)");

#[derive(Parser)]
#[command(name = "cercle-node", version = VERSION, about = "Run a Cercle mutual-credit ledger node")]
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
    /// Serve the ledger in a data directory over gRPC, until SIGTERM or SIGINT
    ///
    /// Every setting may also come from the environment (CERCLE_<KEY>) or a TOML file
    /// (--config); a flag wins over the environment, which wins over the file.
    Run {
        #[command(flatten)]
        flags: RunFlags,
    },
    /// Check a configuration and print the settings in effect, with where each came from
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Write a backup of a ledger (safe while its node runs), as of its last signed tree head
    Backup {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The backup file to create (never overwritten)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Rebuild a data directory from a backup or an auditor's jsonl export, checked first
    Restore {
        /// The backup, or a `cercle audit export --format jsonl` file
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// A new or empty directory to restore into
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The key file of the node key in force at the backup's tree head (node.key from the
        /// original data directory, or after a rotation the file under node-keys/)
        #[arg(long, value_name = "FILE")]
        node_key: PathBuf,
    },
    /// Ask a running node whether it serves (gRPC health checking); exit 0 when it does
    Probe(probe::ProbeArgs),
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Make the node's next signing key, for a rotation (cercle admin node-key rotate)
    #[command(subcommand)]
    Key(KeyCommand),
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

#[derive(Subcommand)]
enum KeyCommand {
    /// Make a new node key under DIR/node-keys/ and print its public key
    ///
    /// The node loads it by itself (a running node reads the directory again when a
    /// rotation names a key it does not hold yet). The administrators then sign
    /// `cercle admin node-key rotate --pubkey KEY`; heads containing that entry are signed
    /// with the new key. Keep the file with node.key, apart from backups.
    New {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration of `run`; exit non-zero on any error
    Check {
        #[command(flatten)]
        flags: RunFlags,
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
    /// How many administrators sign a sensitive act (role and quorum changes, large credit
    /// limits, key replacements, write-offs, clearing with credit): 1 to the number of
    /// administrators
    #[arg(long, value_name = "M", default_value_t = 1)]
    quorum: u8,
    /// The ledger's day, as a fixed offset from UTC (e.g. +01:00, -05:30): when a payer
    /// key's daily cap starts again. Fixed for good, with no daylight saving time
    #[arg(long = "day-offset", value_name = "±HH:MM", default_value = "+00:00", allow_hyphen_values = true, value_parser = cercle_core::genesis::parse_day_offset)]
    day_offset_minutes: i16,
}

fn parse_key(text: &str) -> Result<PublicKey, String> {
    let key = PublicKey::from_hex(text)?;
    cercle_core::sign::check_public_key(&key).map_err(|e| format!("{text}: {e}"))?;
    Ok(key)
}

/// Writes lines to stdout, and to stderr once stdout is closed (a reader that stopped, as
/// `head` does): the node never panics on a broken pipe, and no line is lost.
#[derive(Default)]
pub struct Printer {
    stdout_closed: bool,
}

impl Printer {
    pub fn line(&mut self, text: &str) {
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
            quorum: genesis.quorum,
            day_offset_minutes: genesis.day_offset_minutes,
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
        // Auditors (and more administrators) are added by a signed operation once the node
        // runs; the command, ready to fill in.
        let _ = writeln!(
            std::io::stderr(),
            "to add an auditor: cercle --key {} admin role add --role auditor --pubkey HEX --reason TEXT",
            path.display()
        );
    }
    out.line(&format!("initialised ledger {} in {}", g.ledger_id, dir.root.display()));
    out.line(&format!("currency {} with {} decimals", g.currency, g.exponent));
    if g.quorum > 1 {
        out.line(&format!(
            "quorum: {} of {} administrators sign every sensitive act",
            g.quorum,
            g.admin_keys.len()
        ));
    }
    if g.day_offset_minutes != 0 {
        out.line(&format!(
            "the ledger's day starts at midnight UTC{} (a fixed offset, no daylight saving time)",
            cercle_core::genesis::format_day_offset(g.day_offset_minutes)
        ));
    }
    out.line(&format!("node key {} (publish it: statements and tree heads are signed with it)", g.node_key));
    Ok(())
}

/// Watches SIGTERM and SIGINT from now on (so that one that comes while the ledger is being
/// opened is not lost), and returns a future that completes at the first, saying which.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        let wait = |watch: std::io::Result<tokio::signal::unix::Signal>, name: &'static str| async move {
            match watch {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, signal = name, "cannot watch the signal");
                    std::future::pending::<()>().await;
                }
            }
            name
        };
        let name = tokio::select! {
            name = wait(terminate, "SIGTERM") => name,
            name = wait(interrupt, "SIGINT") => name,
        };
        tracing::info!(signal = name, "shutting down");
    }
}

async fn run(config: &Config, web: Web, out: &mut Printer) -> Result<()> {
    // The settings' own files first: a configuration mistake is named before anything else.
    let tls = config.tls_identity()?;
    let stop = stop_signal();
    let dir = DataDir::new(&config.data_dir.value);
    anyhow::ensure!(
        dir.is_initialised(),
        "{} holds no ledger; create one with `cercle-node init --data-dir {}`",
        dir.root.display(),
        dir.root.display()
    );
    let listen = config.listen.value;
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let metrics = match config.metrics_listen.value {
        Some(addr) => {
            let listener = cercle_server::metrics::bind(addr).await?;
            let bound = listener.local_addr().with_context(|| format!("cannot serve metrics on {addr}"))?;
            out.line(&format!("metrics at http://{bound}/metrics"));
            Some(listener)
        }
        None => None,
    };
    let options = cercle_server::ServeOptions {
        tls,
        metrics,
        shutdown_grace: Duration::from_millis(config.shutdown_grace_ms.value),
        web,
    };
    // Printed once the ledger is open and checked: the line means "ready".
    let ready = |addr: std::net::SocketAddr| out.line(&format!("listening on {addr}"));
    cercle_server::serve_with(&dir, listener, &config.limits(), options, ready, stop).await?;
    Ok(())
}

fn config_check(flags: RunFlags, out: &mut Printer) -> Result<()> {
    let config = Config::resolve(flags, &ProcessEnv)?;
    match &config.file {
        Some(file) => {
            out.line(&format!("# configuration {} (flag > environment > file > default)", file.display()))
        }
        None => out.line("# no configuration file (flag > environment > default)"),
    }
    for line in config.lines() {
        out.line(&line);
    }
    if config.tls_identity()?.is_some() {
        out.line("# the TLS certificate and key load and match");
    }
    out.line("# ok");
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
/// (and for the crash tests, which read what each start-up recovered); for `run`, it is the
/// `log_format` setting, which `--log-format` and the configuration file also set.
const LOG_FORMAT_VAR: &str = "CERCLE_LOG_FORMAT";

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour escapes only for a person at a terminal, never into a log file or a pipe.
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => logger.init(),
        LogFormat::Json => logger.json().flatten_event(true).init(),
    }
}

/// The log format of the commands other than `run`: `CERCLE_LOG_FORMAT`, or text.
fn log_format_from_env() -> Result<LogFormat> {
    match std::env::var(LOG_FORMAT_VAR).as_deref() {
        Err(std::env::VarError::NotPresent) | Ok("" | "text") => Ok(LogFormat::Text),
        Ok("json") => Ok(LogFormat::Json),
        Ok(other) => anyhow::bail!("{LOG_FORMAT_VAR}={other:?}: the log format is `text` or `json`"),
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("{LOG_FORMAT_VAR} is not UTF-8: the log format is `text` or `json`")
        }
    }
}

// How long the runtime waits, on exit, for tasks still blocked (a stream's read) before it
// leaves them: the node has already stopped and synced by then.
use cercle_limits::RUNTIME_SHUTDOWN_WAIT;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| {
            let result = runtime.block_on(dispatch(cli));
            runtime.shutdown_timeout(RUNTIME_SHUTDOWN_WAIT);
            result
        });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, the causes joined: never a backtrace for an operator's mistake.
            let _ = writeln!(std::io::stderr(), "Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<()> {
    let mut out = Printer::default();
    let web = if cli.no_web { Web::Off } else { Web::Served };
    match cli.command {
        Some(Command::Run { flags }) => {
            let config = Config::resolve(flags, &ProcessEnv)?;
            init_logging(config.log_format.value);
            run(&config, web, &mut out).await
        }
        Some(Command::Config { command: ConfigCommand::Check { flags } }) => config_check(flags, &mut out),
        Some(Command::Completions { shell }) => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "cercle-node", &mut script);
            // A closed stdout is the reader's choice (`| head`), not a failure.
            let _ = std::io::stdout().write_all(&script);
            Ok(())
        }
        Some(Command::Probe(args)) => probe::probe(args).await,
        None => {
            // Every setting may still come from the environment or CERCLE_CONFIG.
            let config = Config::resolve(RunFlags::default(), &ProcessEnv)?;
            init_logging(config.log_format.value);
            let dir = DataDir::new(&config.data_dir.value);
            if !dir.is_initialised() {
                init(
                    &dir,
                    GenesisArgs {
                        currency: "CHW".into(),
                        exponent: 2,
                        admin_keys: Vec::new(),
                        auditor_keys: Vec::new(),
                        quorum: 1,
                        day_offset_minutes: 0,
                    },
                    &mut out,
                )?;
            }
            run(&config, web, &mut out).await
        }
        Some(Command::Init { data_dir, genesis }) => {
            init_logging(log_format_from_env()?);
            init(&DataDir::new(data_dir), genesis, &mut out)
        }
        Some(Command::Key(KeyCommand::New { data_dir })) => {
            init_logging(log_format_from_env()?);
            let dir = DataDir::new(data_dir);
            if !dir.is_initialised() {
                anyhow::bail!(
                    "{} holds no ledger: a node key is made for an existing ledger",
                    dir.root.display()
                );
            }
            let (key, path) = cercle_server::node_keys::new_node_key(&dir)?;
            out.line(&format!("node key {key} made in {}", path.display()));
            out.line(&format!(
                "next: the administrators sign `cercle admin node-key rotate --pubkey {key} --reason TEXT`; tree heads containing that entry are signed with this key"
            ));
            Ok(())
        }
        Some(Command::Rebuild { data_dir }) => {
            init_logging(log_format_from_env()?);
            let dir = DataDir::new(data_dir);
            tokio::task::spawn_blocking(move || rebuild(&dir, &mut out)).await?
        }
        Some(Command::Recover { data_dir, accept_loss }) => {
            init_logging(log_format_from_env()?);
            let dir = DataDir::new(data_dir);
            tokio::task::spawn_blocking(move || recover(&dir, accept_loss, &mut out)).await?
        }
        Some(Command::Backup { data_dir, out: file }) => {
            init_logging(log_format_from_env()?);
            tokio::task::spawn_blocking(move || backup::backup(&DataDir::new(data_dir), &file, &mut out))
                .await?
        }
        Some(Command::Restore { from, data_dir, node_key }) => {
            init_logging(log_format_from_env()?);
            tokio::task::spawn_blocking(move || {
                backup::restore(&from, &DataDir::new(data_dir), &node_key, &mut out)
            })
            .await?
        }
    }
}
