//! `cercle keygen`: a new signing key in a new file.

use std::path::PathBuf;

use serde_json::json;

use crate::{Global, keys, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write the key to this new file (never overwritten)
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let keypair = keys::generate()?;
    keys::write_new(&args.out, &keypair)?;
    let public_key = keypair.public_key().to_hex();
    if global.json {
        output::emit_ok(json!({ "public_key": public_key, "out": args.out.display().to_string() }))
    } else {
        // The public key comes last, alone, so scripts can take the last word.
        output::emit(&format!(
            "wrote a new key to {} (keep it secret)\npublic key: {public_key}",
            args.out.display()
        ))
    }
}
