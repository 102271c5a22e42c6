//! `cercle submit`: send the envelopes of a file written with `--save`, in order, up to
//! 1,000 per `SubmitBatch` request (a payment run exported from accounting, say).
//!
//! The whole file is read and checked before the first envelope is sent, so a malformed
//! line stops everything with its line number. Resubmitting an accepted envelope is
//! safe: the node answers with the original receipt, marked as a duplicate.

use std::path::PathBuf;

use cercle_limits::{BUSY_BACKOFF_FIRST, BUSY_RETRIES_MAX, SUBMIT_BATCH_MAX};
use cercle_proto as pb;
use serde_json::json;

use crate::client::{Node, Rejected, status_error};
use crate::failure::{self, Failure, Kind, classify};
use crate::output::one_line;
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
    // The kind of the first failure decides the exit code.
    let mut first_failure: Option<Kind> = None;
    let mut failed = 0usize;
    let mut sent = 0usize;
    for chunk in list.chunks(SUBMIT_BATCH_MAX) {
        let results = submit_chunk(&mut node, chunk).await.map_err(|status| {
            let first = chunk.first().map_or(0, |(line, _)| *line);
            let error = status_error(node.url(), &status);
            let kind = classify(&error).kind;
            Failure::new(
                kind,
                format!(
                    "line {first}: {error:#}; {} envelope(s) from line {first} on were not confirmed (resubmitting the file is safe)",
                    total - sent
                ),
            )
            .with("line", first)
        })?;
        sent += chunk.len();
        for ((line, _), result) in chunk.iter().zip(results) {
            match result {
                Ok(receipt) => {
                    if global.json {
                        let mut value = output::receipt_json(&receipt);
                        value["line"] = json!(line);
                        output::emit_ok(value)?;
                    } else {
                        let text = output::receipt_line(&node.genesis, &receipt);
                        output::emit(&format!("line {line}: {text}"))?;
                    }
                }
                Err(r) => {
                    failed += 1;
                    let kind = rejection_kind(&r);
                    first_failure.get_or_insert(kind);
                    if global.json {
                        let ledger = (kind == Kind::Rejected).then_some(&r);
                        let error = failure::error_json(kind, ledger, &r.message, &Default::default());
                        output::emit(&json!({"ok": false, "line": line, "error": error}).to_string())?;
                    } else {
                        output::emit(&format!("line {line}: {r}"))?;
                    }
                }
            }
        }
    }
    if let Some(kind) = first_failure {
        let mut failure = Failure::new(kind, format!("{failed} of {total} envelope(s) failed"));
        // Each envelope's outcome is already on stdout, one JSON object per line.
        failure.reported = global.json;
        return Err(failure.into());
    }
    Ok(())
}

/// A ledger rejection has a reason number; `BUSY` is the node's load, not the ledger's verdict.
fn rejection_kind(r: &Rejected) -> Kind {
    match (r.code, r.reason.as_str()) {
        (Some(_), _) => Kind::Rejected,
        (None, "BUSY") => Kind::Busy,
        (None, _) => Kind::Other,
    }
}

/// Submits one chunk with `SubmitBatch`, sending again (after a pause that doubles) the
/// envelopes the node was too busy to take, a bounded number of times.
async fn submit_chunk(
    node: &mut Node,
    chunk: &[(usize, pb::Envelope)],
) -> Result<Vec<Result<pb::Receipt, Rejected>>, tonic::Status> {
    let mut results: Vec<Option<Result<pb::Receipt, Rejected>>> = vec![None; chunk.len()];
    let mut pending: Vec<usize> = (0..chunk.len()).collect();
    let mut pause = BUSY_BACKOFF_FIRST;
    for attempt in 0..=BUSY_RETRIES_MAX {
        let envelopes = pending.iter().map(|&i| chunk[i].1.clone()).collect();
        let answers = match node.submit_batch(envelopes).await {
            Ok(answers) => answers,
            Err(status) if status.code() == tonic::Code::ResourceExhausted && attempt < BUSY_RETRIES_MAX => {
                tokio::time::sleep(pause).await;
                pause *= 2;
                continue;
            }
            Err(status) => return Err(status),
        };
        let mut busy = Vec::new();
        for (&i, answer) in pending.iter().zip(answers) {
            match answer.outcome {
                Some(pb::submit_result::Outcome::Receipt(receipt)) => results[i] = Some(Ok(receipt)),
                Some(pb::submit_result::Outcome::Rejection(r)) if r.code == 0 && r.reason == "BUSY" => {
                    busy.push(i)
                }
                Some(pb::submit_result::Outcome::Rejection(r)) => {
                    let code = u16::try_from(r.code).ok().filter(|c| *c != 0);
                    let (reason, message) = (one_line(&r.reason), one_line(&r.message));
                    results[i] = Some(Err(Rejected { reason, code, message }));
                }
                None => {
                    results[i] = Some(Err(Rejected {
                        reason: "INTERNAL".into(),
                        code: None,
                        message: "the node sent an empty result".into(),
                    }))
                }
            }
        }
        if busy.is_empty() {
            break;
        }
        pending = busy;
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
    Ok(results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(Rejected {
                    reason: "BUSY".into(),
                    code: None,
                    message: "the node stayed too busy to take this envelope; submit the file again".into(),
                })
            })
        })
        .collect())
}
