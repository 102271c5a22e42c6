//! Key files: creating a new one safely and loading the one given with `--key`.
//!
//! The format is `cercle_core::sign`'s; this module only adds the file handling: a new
//! key is written with mode 0600 and never over an existing file, and a missing key is
//! explained with the way to get one.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use cercle_core::sign::{Keypair, decode_key_file, encode_key_file};
use rand::RngCore;

use crate::failure::usage;

/// A key file is three short lines; anything bigger is not one.
const KEY_FILE_BYTES_MAX: u64 = 4096;

/// Generates a key from the operating system's random source.
pub fn generate() -> anyhow::Result<Keypair> {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut seed)
        .context("cannot read the operating system's random source")?;
    Ok(Keypair::from_seed(&seed))
}

/// Writes `keypair` to a new file at `path`, readable by its owner only. Refuses to
/// replace an existing file (or link): overwriting a key can lose an account.
pub fn write_new(path: &Path, keypair: &Keypair) -> anyhow::Result<()> {
    crate::files::write(
        path,
        encode_key_file(keypair).as_bytes(),
        false,
        "refusing to overwrite a key (choose another --out path, or move the old file away yourself)",
    )
}

/// Loads the signing key named by `--key` / `CERCLE_KEY`.
pub fn load(path: Option<&Path>) -> anyhow::Result<Keypair> {
    let Some(path) = path else {
        return Err(usage(
            "this command needs your key: pass --key FILE or set CERCLE_KEY (create a key with `cercle keygen --out FILE`)",
        ));
    };
    let file = std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            usage(format!(
                "key file {} does not exist (create one with `cercle keygen --out {}`)",
                path.display(),
                path.display()
            ))
        } else {
            usage(format!("cannot read key file {}: {e}", path.display()))
        }
    })?;
    let mut text = String::new();
    file.take(KEY_FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| usage(format!("cannot read key file {}: {e}", path.display())))?;
    if text.len() as u64 > KEY_FILE_BYTES_MAX {
        crate::usage_bail!(
            "{} is larger than {KEY_FILE_BYTES_MAX} bytes: not a Cercle key file",
            path.display()
        );
    }
    decode_key_file(&text).map_err(|e| usage(format!("cannot use key file {}: {e}", path.display())))
}
