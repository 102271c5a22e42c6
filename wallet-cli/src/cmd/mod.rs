//! The subcommands, one file each, and the dispatch from parsed arguments to them.

mod admin;
mod audit;
mod balance;
mod clearing;
mod cosign;
mod history;
mod indicators;
mod info;
mod invoice;
mod key;
mod keygen;
mod pay;
mod pending;
mod proof;
mod pubkey;
mod statement;
mod submit;
mod verifiable;

use clap::Subcommand;

use crate::Global;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a new signing key and print its public key
    Keygen(keygen::Args),
    /// Print the public key of the key given with --key
    Pubkey,
    /// Show the node's ledger: its id, currency, node key (to pin), administrators, log size
    Info,
    /// Sign administrative operations: register accounts, set limits, freeze, rotate keys
    #[command(subcommand)]
    Admin(admin::Command),
    /// Add, remove and list a firm's keys and their roles (owner, payer, invoicer, viewer)
    #[command(subcommand)]
    Key(key::Command),
    /// Pay another account
    Pay(pay::Args),
    /// List, approve or decline the payments held for an owner's approval
    #[command(subcommand)]
    Pending(pending::Command),
    /// Issue, accept, reject, cancel, pay and list invoices
    #[command(subcommand)]
    Invoice(invoice::Command),
    /// Submit the signed envelopes of a file written with --save, in order
    Submit(submit::Args),
    /// Add this key's signature to the envelopes of a file (acts that need a quorum)
    Cosign(cosign::Args),
    /// Show an account's balance, limits and status
    Balance(balance::Args),
    /// Show an account's history, oldest first
    History(history::Args),
    /// Audit the whole log: replay and verify it, or export it (auditors and administrators)
    #[command(subcommand)]
    Audit(audit::Command),
    /// Prove your entries are in the node's signed log and that history was never rewritten
    #[command(subcommand)]
    Proof(proof::Command),
    /// Get a signed statement of an account over a period, or verify one offline
    Statement(statement::Args),
    /// Compute indicators of local exchange from the node's log or an exported one
    Indicators(indicators::Args),
    /// Compute the optimal set-off of an invoice network from a file, without a node
    #[command(subcommand)]
    Clearing(clearing::Command),
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Keygen(args) => keygen::run(global, args),
        Command::Pubkey => pubkey::run(global),
        Command::Info => info::run(global).await,
        Command::Admin(command) => admin::run(global, command).await,
        Command::Key(command) => key::run(global, command).await,
        Command::Pay(args) => pay::run(global, args).await,
        Command::Pending(command) => pending::run(global, command).await,
        Command::Invoice(command) => invoice::run(global, command).await,
        Command::Submit(args) => submit::run(global, args).await,
        Command::Cosign(args) => cosign::run(global, args).await,
        Command::Balance(args) => balance::run(global, args).await,
        Command::History(args) => history::run(global, args).await,
        Command::Audit(command) => audit::run(global, command).await,
        Command::Proof(command) => proof::run(global, command).await,
        Command::Statement(args) => statement::run(global, args).await,
        Command::Indicators(args) => indicators::run(global, args).await,
        Command::Clearing(command) => clearing::run(global, command),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut crate::cli_command(), "cercle", &mut script);
            crate::output::emit(String::from_utf8_lossy(&script).trim_end())
        }
    }
}
