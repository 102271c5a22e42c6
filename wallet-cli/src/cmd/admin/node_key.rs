//! `cercle admin node-key`: rotate the node's signing key. The node makes the new key
//! (`cercle-node key new`, which prints its public key) and keeps its secret; the
//! administrators sign the rotation to that public key. A sensitive act: under a quorum of
//! two, sign with `--save FILE --no-submit`, have another administrator `cercle cosign
//! --file FILE`, then `cercle submit --file FILE`. The node refuses a rotation to a key it
//! does not hold, so it can always sign the next tree head.

use cercle_core::{OpKind, PublicKey};

use crate::client::Node;
use crate::signed::{self, SignArgs, parse_public_key};
use crate::{Global, keys};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Rotate the node's signing key to a key the node made (cercle-node key new)
    Rotate(Args),
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The new node key (64 hex digits), as `cercle-node key new` printed it
    #[arg(long, value_name = "HEX", value_parser = parse_public_key)]
    pubkey: PublicKey,
    /// Why the key changes (kept in the ledger)
    #[arg(long, value_name = "TEXT")]
    reason: String,
    #[command(flatten)]
    sign: SignArgs,
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<()> {
    let Command::Rotate(args) = command;
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    let kind = OpKind::RotateNodeKey { new_pubkey: args.pubkey, reason: args.reason };
    signed::sign_and_submit(global, &args.sign, &key, &mut node, kind).await
}
