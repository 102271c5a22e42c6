//! `cercle pubkey`: the public key of the key given with `--key`.

use serde_json::json;

use crate::{Global, keys, output};

pub fn run(global: &Global) -> anyhow::Result<()> {
    let keypair = keys::load(global.key.as_deref())?;
    let public_key = keypair.public_key().to_hex();
    if global.json { output::emit_ok(json!({ "public_key": public_key })) } else { output::emit(&public_key) }
}
