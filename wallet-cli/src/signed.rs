//! Signed operations: the options every signing command shares, and the one path from an
//! operation to a receipt (build, sign, save, submit, print).

use std::path::PathBuf;

use anyhow::Context;
use cercle_core::sign::Keypair;
use cercle_core::{AccountId, OpKind, Operation, OperationId, PublicKey};
use cercle_limits::{BODY_BYTES_MAX, VALIDITY_MS_MAX};
use cercle_proto as pb;
use rand::RngCore;
use serde_json::json;

use crate::Global;
use crate::client::{Node, Rejected, now_ms, status_error};
use crate::failure::{Failure, classify, usage};
use crate::journal::{self, Journal};
use crate::{envelopes, output};

/// Longest validity a signer may ask for, in seconds: the ledger's own bound.
const VALID_FOR_SECONDS_MAX: u64 = VALIDITY_MS_MAX / 1000;

#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// Use this operation id (32 hex digits) instead of a random one: the same command
    /// run again with the same id retries the operation signed the first time
    #[arg(long, value_name = "HEX", value_parser = parse_operation_id)]
    pub op_id: Option<OperationId>,
    /// Keep the operation valid for this many seconds (at most 31 days)
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 3600,
        value_parser = clap::value_parser!(u64).range(1..=VALID_FOR_SECONDS_MAX)
    )]
    pub valid_for: u64,
    /// Append the signed envelope to FILE (JSON lines) before submitting it
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Only sign and save the envelope (needs --save); submit nothing
    #[arg(long, requires = "save")]
    pub no_submit: bool,
}

fn parse_operation_id(text: &str) -> Result<OperationId, String> {
    let bytes = hex::decode(text).map_err(|e| format!("not hex: {e}"))?;
    let id: [u8; 16] = bytes.try_into().map_err(|b: Vec<u8>| {
        format!("an operation id is 16 bytes (32 hex digits), got {} bytes", b.len())
    })?;
    Ok(OperationId(id))
}

/// Clap parser for an account handle argument.
pub fn parse_account(text: &str) -> Result<AccountId, String> {
    AccountId::parse(text).map_err(|e| e.to_string())
}

/// Clap parser for a public key argument.
pub fn parse_public_key(text: &str) -> Result<PublicKey, String> {
    PublicKey::from_hex(text)
}

fn random_operation_id() -> anyhow::Result<OperationId> {
    let mut id = [0u8; 16];
    rand::rngs::OsRng.try_fill_bytes(&mut id).context("cannot read the operating system's random source")?;
    Ok(OperationId(id))
}

/// Signs `kind` with `key` for the node's ledger, saves the envelope if asked, submits it
/// unless asked not to, and prints the receipt. A rejection is an error naming the reason.
pub async fn sign_and_submit(
    global: &Global,
    args: &SignArgs,
    key: &Keypair,
    node: &mut Node,
    kind: OpKind,
) -> anyhow::Result<()> {
    match sign_and_submit_quietly(global, args, key, node, kind).await?.receipt {
        Some(receipt) => output::receipt(global.json, &node.genesis, &receipt),
        None => Ok(()),
    }
}

/// What `sign_and_submit_quietly` did.
pub struct Submitted {
    /// The node's receipt; `None` when the operation was only saved (reported already).
    pub receipt: Option<pb::Receipt>,
    /// The operation as signed: on a retry with `--op-id`, the one signed the first time.
    pub op: Operation,
}

/// `sign_and_submit` that hands the receipt back instead of printing it.
///
/// With `--op-id`, the signed envelope is kept in the operation journal before it is sent;
/// the same command run again with the same id resubmits that very envelope (a retry the
/// node answers with the original receipt), and a different operation with that id is
/// refused here, before anything is sent.
pub async fn sign_and_submit_quietly(
    global: &Global,
    args: &SignArgs,
    key: &Keypair,
    node: &mut Node,
    kind: OpKind,
) -> anyhow::Result<Submitted> {
    // Refuse early, before signing, what the ledger would refuse for the values alone.
    cercle_core::state::check_values(&kind)
        .map_err(|r| usage(r.message(&node.genesis.currency, node.genesis.exponent)))?;
    let journal = match args.op_id {
        Some(_) => {
            let journal = Journal::of_ledger(&node.genesis.ledger_id);
            if journal.is_none() {
                eprintln!(
                    "note: neither XDG_STATE_HOME nor HOME is set: this operation is not kept, and running the command again with --op-id will not be taken for a retry"
                );
            }
            journal
        }
        None => None,
    };
    let saved = match (&journal, args.op_id) {
        (Some(journal), Some(id)) => journal.load(&id)?,
        _ => None,
    };
    let (op, envelope) = match saved {
        Some(saved) => {
            if !journal::same_operation(&saved.op.kind, &kind) {
                crate::usage_bail!(
                    "operation id {} was already used by this wallet for another operation (a {} kept in {}): use another --op-id, or repeat the very same command to retry that one",
                    saved.op.id,
                    saved.op.kind.name(),
                    saved.path.display()
                );
            }
            let now = now_ms()?;
            eprintln!(
                "retrying operation {} as signed the first time (kept in {}){}",
                saved.op.id,
                saved.path.display(),
                if saved.op.valid_until_ms < now {
                    "; its validity window has closed: if it was never accepted, the node will refuse it, so use another --op-id"
                } else {
                    ""
                }
            );
            (saved.op, saved.envelope)
        }
        None => {
            let (op, envelope) = sign(args, key, node, kind)?;
            if let Some(journal) = &journal {
                journal.save(&op, &envelope)?;
            }
            (op, envelope)
        }
    };
    if let Some(path) = &args.save {
        // `--save` appends (a payment run gathers many envelopes in one file); said when
        // the file holds some already, since `cosign` and `submit` take them all.
        let held =
            std::fs::read(path).map(|bytes| bytes.iter().filter(|b| **b == b'\n').count()).unwrap_or(0);
        if held > 0 {
            eprintln!(
                "note: {} already held {held} envelope(s): this one is appended after them; `cosign` signs and `submit` sends every envelope of the file, in order (use a new file for each act to cosign)",
                path.display()
            );
        }
        envelopes::append(path, &envelope)?;
    }
    if args.no_submit {
        let path = args.save.as_deref().map(|p| p.display().to_string());
        if global.json {
            output::emit_ok(json!({
                "operation_id": op.id.to_string(),
                "valid_until_ms": op.valid_until_ms,
                "saved_to": path,
                "submitted": false,
            }))?;
        } else {
            output::emit(&format!(
                "signed operation {}, saved to {}; not submitted (send it with `cercle submit --file FILE`)",
                op.id,
                path.unwrap_or_default()
            ))?;
        }
        return Ok(Submitted { receipt: None, op });
    }
    let line = envelopes::to_line(&envelope);
    match node.submit(envelope).await {
        Ok(receipt) => Ok(Submitted { receipt: Some(receipt), op }),
        Err(status) => {
            let error = status_error(node.url(), &status);
            if Rejected::from_status(&status).is_some() || args.save.is_some() {
                return Err(error);
            }
            // The node may have accepted the operation before the failure: only the very
            // same envelope can be retried safely, so say how.
            let retry = if journal.is_some() {
                "run the same command again, with the same --op-id".to_string()
            } else {
                format!("put this line in a file and run `cercle submit --file FILE`: {line}")
            };
            let kind = classify(&error).kind;
            Err(Failure::new(
                kind,
                format!(
                    "{error:#}; the operation may or may not have been accepted: to retry it safely, {retry}"
                ),
            )
            .with("envelope", line)
            .into())
        }
    }
}

/// Builds and signs a new operation of `kind`.
fn sign(
    args: &SignArgs,
    key: &Keypair,
    node: &Node,
    kind: OpKind,
) -> anyhow::Result<(Operation, pb::Envelope)> {
    let id = match args.op_id {
        Some(id) => id,
        None => random_operation_id()?,
    };
    let valid_until_ms =
        now_ms()?.checked_add(args.valid_for.saturating_mul(1000)).context("--valid-for is out of range")?;
    let op = Operation { id, valid_until_ms, kind };
    let body = cercle_core::body::encode(&op);
    if body.len() > BODY_BYTES_MAX {
        crate::usage_bail!(
            "the operation is {} bytes once encoded, the maximum is {BODY_BYTES_MAX}: shorten the texts or give fewer keys",
            body.len()
        );
    }
    let signature = key.sign_op(&node.genesis.ledger_id, &body);
    let envelope = pb::Envelope {
        body,
        signer: key.public_key().0.to_vec(),
        signature: signature.to_vec(),
        cosignatures: vec![],
    };
    Ok((op, envelope))
}
