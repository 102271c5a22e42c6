//! Key files: creating a new one safely and loading the one given with `--key`.
//!
//! The format is `cercle_core::sign`'s; this module only adds the file handling: a new
//! key is written with mode 0600 and never over an existing file; a key is read only from a
//! regular file of bounded size, with a warning when others may read it; and a missing key
//! is explained with the way to get one.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use cercle_core::sign::{Keypair, decode_key_file, encode_key_file};
use cercle_limits::KEY_FILE_BYTES_MAX;
use rand::RngCore;

use crate::failure::usage;

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
///
/// Only a regular file is read (a FIFO or a device given by mistake is refused at once
/// instead of blocking; the file is opened with `O_NONBLOCK` and checked again once open,
/// in case it was swapped), at most `KEY_FILE_BYTES_MAX` bytes of it. A key that others
/// may read gets a warning on stderr.
pub fn load(path: Option<&Path>) -> anyhow::Result<Keypair> {
    let Some(path) = path else {
        return Err(usage(
            "this command needs your key: pass --key FILE or set CERCLE_KEY (create a key with `cercle keygen --out FILE`)",
        ));
    };
    let cannot_read = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            usage(format!(
                "key file {} does not exist (create one with `cercle keygen --out {}`)",
                path.display(),
                path.display()
            ))
        } else {
            usage(format!("cannot read key file {}: {e}", path.display()))
        }
    };
    check_regular(path, &std::fs::metadata(path).map_err(cannot_read)?)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(cannot_read)?;
    let metadata = file.metadata().map_err(cannot_read)?;
    check_regular(path, &metadata)?;
    let mut text = String::new();
    file.take(KEY_FILE_BYTES_MAX + 1).read_to_string(&mut text).map_err(cannot_read)?;
    if text.len() as u64 > KEY_FILE_BYTES_MAX {
        crate::usage_bail!(
            "{} is larger than {KEY_FILE_BYTES_MAX} bytes: not a Cercle key file",
            path.display()
        );
    }
    let keypair =
        decode_key_file(&text).map_err(|e| usage(format!("cannot use key file {}: {e}", path.display())))?;
    warn_if_readable_by_others(path, &metadata);
    Ok(keypair)
}

fn check_regular(path: &Path, metadata: &std::fs::Metadata) -> anyhow::Result<()> {
    if !metadata.is_file() {
        crate::usage_bail!(
            "{} is not a regular file (a directory, a pipe or a device?): not a Cercle key file",
            path.display()
        );
    }
    Ok(())
}

/// A secret key that the group or others may read is one `chmod` away from safe: say so.
fn warn_if_readable_by_others(path: &Path, metadata: &std::fs::Metadata) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            eprintln!(
                "warning: key file {} can be read or changed by others (mode {mode:03o}); restrict it with `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
}
