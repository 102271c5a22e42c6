//! `cercle-node backup` and `restore`: thin over `cercle_server::backup`, which says what a
//! backup holds and what a restore checks.

use std::path::Path;

use anyhow::{Context, Result};
use cercle_server::DataDir;

use crate::Printer;

pub fn backup(dir: &DataDir, file: &Path, out: &mut Printer) -> Result<()> {
    let report = cercle_server::backup::backup(dir, file)
        .with_context(|| format!("cannot back up {}", dir.root.display()))?;
    let head = &report.tree_head.head;
    out.line(&format!(
        "backed up {} entries to {} ({} bytes, {:.1} s)",
        head.tree_size,
        report.path.display(),
        report.bytes,
        report.elapsed_ms as f64 / 1000.0
    ));
    out.line(&format!(
        "as of the node's signed tree head: size {} root {} signed at {}",
        head.tree_size,
        hex::encode(head.root_hash),
        cercle_audit::rfc3339(head.timestamp_ms)
    ));
    out.line("the backup holds no secret: keep the node key (node.key) apart, it is needed to restore");
    Ok(())
}

pub fn restore(from: &Path, dir: &DataDir, node_key: &Path, out: &mut Printer) -> Result<()> {
    let report = cercle_server::backup::restore(from, dir, node_key)
        .with_context(|| format!("cannot restore {} into {}", from.display(), dir.root.display()))?;
    let head = &report.tree_head.head;
    out.line(&format!(
        "restored {} entries ({} accounts) into {}: every signature, the hash chain and the tree head checked ({:.1} s), written ({:.1} s)",
        head.tree_size,
        report.accounts,
        dir.root.display(),
        report.verify_ms as f64 / 1000.0,
        report.write_ms as f64 / 1000.0
    ));
    out.line(&format!("tree head: size {} root {}", head.tree_size, hex::encode(head.root_hash)));
    out.line(&format!("state digest {}", hex::encode(report.state_digest)));
    Ok(())
}
