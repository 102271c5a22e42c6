//! `cercle submit`: send the envelopes of a file written with `--save`, in order.
//!
//! The whole file is read and checked before the first envelope is sent, so a malformed
//! line stops everything with its line number. Resubmitting an accepted envelope is
//! safe: the node answers with the original receipt, marked as a duplicate.

use std::path::PathBuf;

use anyhow::bail;
use serde_json::json;

use crate::client::{Node, Rejected, is_unreachable, status_error};
use crate::{Global, envelopes, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The envelope file (JSON lines, as written by --save)
    #[arg(long, value_name = "FILE")]
    file: PathBuf,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let list = envelopes::read_file(&args.file)?;
    let total = list.len();
    let mut node = Node::connect(&global.node).await?;
    let mut failed = 0usize;
    for (index, (line, envelope)) in list.into_iter().enumerate() {
        let status = match node.submit(envelope).await {
            Ok(receipt) => {
                if global.json {
                    let mut value = output::receipt_json(&receipt);
                    value["line"] = json!(line);
                    output::emit_json(&value)?;
                } else {
                    let text = output::receipt_line(&node.genesis, &receipt);
                    output::emit(&format!("line {line}: {text}"))?;
                }
                continue;
            }
            Err(status) => status,
        };
        if is_unreachable(&status) {
            bail!(
                "line {line}: {:#}; {} envelope(s) from line {line} on were not submitted",
                status_error(node.url(), &status),
                total - index
            );
        }
        failed += 1;
        let error = status_error(node.url(), &status);
        if global.json {
            let value = match Rejected::from_status(&status) {
                Some(r) => json!({
                    "line": line,
                    "rejected": true,
                    "reason": r.reason,
                    "code": r.code,
                    "message": r.message,
                }),
                None => json!({"line": line, "rejected": false, "error": format!("{error:#}")}),
            };
            output::emit_json(&value)?;
        } else {
            output::emit(&format!("line {line}: {error:#}"))?;
        }
    }
    if failed > 0 {
        bail!("{failed} of {total} envelope(s) failed");
    }
    Ok(())
}
