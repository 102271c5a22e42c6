//! `cercle admin rotate-keys`: replace the keys of an account, e.g. after a key is lost
//! (signed by an administrator) or as routine hygiene (signed by the account itself).

use cercle_core::{AccountId, OpKind, PublicKey};

use crate::client::Node;
use crate::signed::{self, SignArgs, parse_account, parse_public_key};
use crate::{Global, keys};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The account whose keys are replaced
    #[arg(value_name = "ACCOUNT", value_parser = parse_account)]
    account: AccountId,
    /// A public key (64 hex digits) of the new set; repeat for several
    #[arg(long = "pubkey", value_name = "HEX", required = true, value_parser = parse_public_key)]
    pubkeys: Vec<PublicKey>,
    /// Accept a key that is already on another open account (it will sign for both)
    #[arg(long)]
    allow_shared_key: bool,
    #[command(flatten)]
    sign: SignArgs,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    let kind = OpKind::RotateKeys {
        account: args.account,
        keys: args.pubkeys,
        allow_shared_key: args.allow_shared_key,
    };
    signed::sign_and_submit(global, &args.sign, &key, &mut node, kind).await
}
