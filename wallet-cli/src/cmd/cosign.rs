//! `cercle cosign --file FILE`: add this key's signature to every envelope of a file
//! written with `--save --no-submit`, for acts that need a quorum of administrators.
//!
//! One administrator signs an act without submitting it; the file goes to the others, who
//! each run `cercle --key THEIR.key cosign --file FILE`; the last one (or anyone) sends it
//! with `cercle submit --file FILE`. Before signing, each operation is described on stderr
//! (what it does, who signed it already, until when it is valid), and the signatures
//! already on it are checked for this ledger: a cosigner never signs what they have not
//! been shown, nor an envelope someone tampered with. The file is rewritten in one step
//! (a new file renamed into place), so a crash leaves the old one or the new one whole.
//! Cosigning an envelope this key already signed changes nothing.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use cercle_core::{Envelope, PublicKey};
use cercle_limits::OPERATION_SIGNATURES_MAX;
use cercle_proto as pb;
use serde_json::json;

use crate::client::{Node, now_ms};
use crate::failure::usage;
use crate::output::one_line;
use crate::{Global, envelopes, files, keys, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The envelope file (JSON lines, as written by --save --no-submit); rewritten in place
    #[arg(long, value_name = "FILE")]
    file: PathBuf,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    let me = key.public_key();
    let list = envelopes::read_file(&args.file)?;
    if list.is_empty() {
        crate::usage_bail!("{} holds no envelope to cosign", args.file.display());
    }
    let node = Node::connect(&global.node).await?;
    let genesis = &node.genesis;
    if !node.governance.admin_keys.contains(&me) {
        // Signed anyway (the file is the signer's to send), but said: the submit would be
        // refused for the quorum, naming this key as not an administrator.
        let _ = writeln!(
            std::io::stderr(),
            "warning: key {me} is not an administrator of this ledger (as the node says now): its signature does not count towards a quorum"
        );
    }
    let now = now_ms()?;
    let mut signed = Vec::with_capacity(list.len());
    let mut added = 0usize;
    for (line, wire) in list {
        let envelope = Envelope::try_from(wire.clone())
            .map_err(|e| usage(format!("line {line}: not an envelope: {e:?}")))?;
        cercle_core::verify_envelope(genesis, &envelope).map_err(|r| {
            usage(format!(
                "line {line}: its signatures do not verify for this ledger ({}): it was not signed for this ledger, or it was changed since",
                r.message(&genesis.currency, genesis.exponent)
            ))
        })?;
        let op = cercle_core::body::decode(&envelope.body)
            .map_err(|e| usage(format!("line {line}: the operation does not decode: {e}")))?;
        let signers: Vec<PublicKey> = envelope.signers();
        let d = cercle_audit::describe::describe(genesis, &op);
        let mut what = op.kind.name().replace('_', " ");
        if let Some(account) = d.account {
            what.push_str(&format!(" {account}"));
        }
        for part in [d.details.as_str(), d.memo] {
            if !part.is_empty() {
                what.push_str(&format!(": {}", one_line(part)));
            }
        }
        let _ = writeln!(
            std::io::stderr(),
            "line {line}: {what}; operation {}, valid until {}, signed by {}",
            op.id,
            cercle_core::time::rfc3339_ms(op.valid_until_ms),
            signers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        );
        if op.valid_until_ms < now {
            crate::usage_bail!(
                "line {line}: operation {} expired at {}: the node would refuse it; have it signed again",
                op.id,
                cercle_core::time::rfc3339_ms(op.valid_until_ms)
            );
        }
        if signers.contains(&me) {
            let _ = writeln!(std::io::stderr(), "line {line}: already signed by {me}: left as it is");
            signed.push(wire);
            continue;
        }
        if signers.len() >= OPERATION_SIGNATURES_MAX {
            crate::usage_bail!(
                "line {line}: already {} signatures, the most an operation carries",
                signers.len()
            );
        }
        let signature = key.sign_op(&genesis.ledger_id, &envelope.body);
        let mut wire = wire;
        wire.cosignatures.push(pb::Cosignature { signer: me.0.to_vec(), signature: signature.to_vec() });
        signed.push(wire);
        added += 1;
    }
    let mut text = String::new();
    for envelope in &signed {
        text.push_str(&envelopes::to_line(envelope));
        text.push('\n');
    }
    files::write(&args.file, text.as_bytes(), true, "")
        .with_context(|| format!("cannot rewrite {}", args.file.display()))?;
    let total = signed.len();
    if global.json {
        return output::emit_ok(json!({
            "file": args.file.display().to_string(),
            "envelopes": total,
            "cosigned": added,
            "signer": me.to_hex(),
        }));
    }
    output::emit(&format!(
        "cosigned {added} of {total} envelope(s) in {} with key {me}; send them with `cercle submit --file {}`",
        args.file.display(),
        args.file.display()
    ))
}
