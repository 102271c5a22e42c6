//! `cercle admin ...`: administrative operations, signed with an administrator's key
//! (`rotate-keys` may also be signed by the account itself).

mod accounts;
mod clearing;
mod close;
pub mod fees;
mod freeze;
mod group;
mod limits;
mod node_key;
mod profile;
mod quorum;
mod register;
mod role;
mod rotate_keys;
mod set_limits;

use clap::Subcommand;

use crate::Global;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register a new account with its keys, limits and profile
    Register(register::Args),
    /// Change a firm's display name or profile (sector, commune, postcode, territory, size)
    Profile(profile::Args),
    /// List the accounts, filtered and sorted (administrators and auditors)
    Accounts(accounts::Args),
    /// Change an account's credit limit or maximum balance, or make it follow its group's
    SetLimits(set_limits::Args),
    /// Freeze an account: it can neither pay nor be paid
    Freeze(freeze::FreezeArgs),
    /// Unfreeze a frozen account
    Unfreeze(freeze::UnfreezeArgs),
    /// Replace the keys allowed to sign for an account
    RotateKeys(rotate_keys::Args),
    /// Close an account for good (zero balance, no open invoice; or a debt written off)
    Close(close::Args),
    /// Add or remove an administrator or auditor key
    #[command(subcommand)]
    Role(role::Command),
    /// Create member groups, change their default limits, assign accounts to them
    #[command(subcommand)]
    Group(group::Command),
    /// Set how many administrators sign a sensitive act (the quorum)
    #[command(subcommand)]
    Quorum(quorum::Command),
    /// Rotate the node's signing key (to a key the node made with cercle-node key new)
    #[command(subcommand)]
    NodeKey(node_key::Command),
    /// Set or show the association's fees (transfer levy, membership, demurrage)
    #[command(subcommand)]
    Fees(fees::Command),
    /// Clear all eligible obligations optimally (set-off, optionally with credit), or --dry-run
    Clearing(clearing::Args),
    /// Preview or apply a rule-based credit limit: min(cap, k x sales of the last 12 months)
    #[command(subcommand)]
    Limits(limits::Command),
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Register(args) => register::run(global, args).await,
        Command::Profile(args) => profile::run(global, args).await,
        Command::Accounts(args) => accounts::run(global, args).await,
        Command::SetLimits(args) => set_limits::run(global, args).await,
        Command::Freeze(args) => freeze::run_freeze(global, args).await,
        Command::Unfreeze(args) => freeze::run_unfreeze(global, args).await,
        Command::RotateKeys(args) => rotate_keys::run(global, args).await,
        Command::Close(args) => close::run(global, args).await,
        Command::Role(command) => role::run(global, command).await,
        Command::Group(command) => group::run(global, command).await,
        Command::Quorum(command) => quorum::run(global, command).await,
        Command::NodeKey(command) => node_key::run(global, command).await,
        Command::Fees(command) => fees::run(global, command).await,
        Command::Clearing(args) => clearing::run(global, args).await,
        Command::Limits(command) => limits::run(global, command).await,
    }
}
