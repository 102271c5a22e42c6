//! `cercle clearing`: optimal multilateral set-off of an invoice network read from a file.

use crate::Global;

#[derive(Debug, clap::Subcommand)]
pub enum Command {}

pub fn run(_global: &Global, command: Command) -> anyhow::Result<()> {
    match command {}
}
