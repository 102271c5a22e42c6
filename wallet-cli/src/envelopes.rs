//! Envelope files: signed operations saved as JSON lines, to be submitted (again) later.
//!
//! One envelope per line: `{"body":"hex","signer":"hex","signature":"hex"}`, and
//! `"cosignatures":[{"signer":"hex","signature":"hex"}]` when other keys signed it too
//! (acts that need a quorum). Saving
//! appends and syncs before the envelope is sent, so an operation whose fate is unknown
//! (a timeout, a crash) can always be retried with the very same bytes; the node answers
//! a retry with the original receipt.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use anyhow::Context;
use cercle_limits::{BODY_BYTES_MAX, ENVELOPE_LINE_BYTES_MAX, ENVELOPES_PER_FILE_MAX, SIGNATURES_MAX};
use cercle_proto as pb;
use serde::{Deserialize, Serialize};

use crate::failure::usage;
use crate::usage_bail;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    body: String,
    signer: String,
    signature: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    cosignatures: Vec<Cosignature>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cosignature {
    signer: String,
    signature: String,
}

/// The JSON line of an envelope, without the newline.
pub fn to_line(envelope: &pb::Envelope) -> String {
    let line = Line {
        body: hex::encode(&envelope.body),
        signer: hex::encode(&envelope.signer),
        signature: hex::encode(&envelope.signature),
        cosignatures: envelope
            .cosignatures
            .iter()
            .map(|c| Cosignature { signer: hex::encode(&c.signer), signature: hex::encode(&c.signature) })
            .collect(),
    };
    // Serialising strings cannot fail; fall back to nothing rather than panic.
    serde_json::to_string(&line).unwrap_or_default()
}

/// Parses one line into an envelope, checking the field sizes.
pub fn parse_line(text: &str) -> Result<pb::Envelope, String> {
    let line: Line = serde_json::from_str(text).map_err(|e| format!("not an envelope in JSON: {e}"))?;
    let field =
        |name: &str, hex_text: &str| hex::decode(hex_text).map_err(|e| format!("\"{name}\" is not hex: {e}"));
    let body = field("body", &line.body)?;
    let (signer, signature) = signature_fields(&line.signer, &line.signature)?;
    if line.cosignatures.len() >= SIGNATURES_MAX {
        return Err(format!("an envelope carries at most {SIGNATURES_MAX} signatures"));
    }
    let mut cosignatures = Vec::with_capacity(line.cosignatures.len());
    for c in &line.cosignatures {
        let (signer, signature) = signature_fields(&c.signer, &c.signature)?;
        cosignatures.push(pb::Cosignature { signer, signature });
    }
    if body.is_empty() || body.len() > BODY_BYTES_MAX {
        return Err(format!(
            "\"body\" is {} bytes; an operation body is 1 to {BODY_BYTES_MAX} bytes",
            body.len()
        ));
    }
    Ok(pb::Envelope { body, signer, signature, cosignatures })
}

/// A signer and its signature, in hex, checked for their sizes.
fn signature_fields(signer: &str, signature: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    let field =
        |name: &str, hex_text: &str| hex::decode(hex_text).map_err(|e| format!("\"{name}\" is not hex: {e}"));
    let signer = field("signer", signer)?;
    let signature = field("signature", signature)?;
    if signer.len() != 32 {
        return Err(format!(
            "\"signer\" is {} bytes; a public key is 32 bytes (64 hex digits)",
            signer.len()
        ));
    }
    if signature.len() != 64 {
        return Err(format!(
            "\"signature\" is {} bytes; a signature is 64 bytes (128 hex digits)",
            signature.len()
        ));
    }
    Ok((signer, signature))
}

/// Appends an envelope to `path` (created if missing, never through a symbolic link) and
/// syncs it to disk.
pub fn append(path: &Path, envelope: &pb::Envelope) -> anyhow::Result<()> {
    let mut file = crate::files::open_append(path)?;
    let mut line = to_line(envelope);
    line.push('\n');
    // One write of the whole line: O_APPEND keeps concurrent savers from interleaving.
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_data())
        .with_context(|| format!("cannot save the envelope to {}", path.display()))
}

/// Reads every envelope of a file, with its line number. Blank lines are skipped; any
/// other line that is not an envelope is an error naming it, and nothing is returned.
pub fn read_file(path: &Path) -> anyhow::Result<Vec<(usize, pb::Envelope)>> {
    let file = std::fs::File::open(path)
        .map_err(|e| usage(format!("cannot open envelope file {}: {e}", path.display())))?;
    read(BufReader::new(file), &path.display().to_string())
}

fn read(mut reader: impl BufRead, name: &str) -> anyhow::Result<Vec<(usize, pb::Envelope)>> {
    let mut envelopes = Vec::new();
    let mut buf = Vec::new();
    for line_number in 1.. {
        buf.clear();
        let read = reader
            .by_ref()
            .take(ENVELOPE_LINE_BYTES_MAX as u64 + 2)
            .read_until(b'\n', &mut buf)
            .map_err(|e| usage(format!("cannot read {name} at line {line_number}: {e}")))?;
        if read == 0 {
            break;
        }
        let content = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.len() > ENVELOPE_LINE_BYTES_MAX {
            usage_bail!(
                "{name} line {line_number}: longer than {ENVELOPE_LINE_BYTES_MAX} bytes, not an envelope"
            );
        }
        let text = std::str::from_utf8(content)
            .map_err(|_| usage(format!("{name} line {line_number}: not UTF-8 text")))?;
        if text.trim().is_empty() {
            continue;
        }
        if envelopes.len() == ENVELOPES_PER_FILE_MAX {
            usage_bail!(
                "{name} has more than {ENVELOPES_PER_FILE_MAX} envelopes (line {line_number}); split it into several files"
            );
        }
        let envelope = parse_line(text).map_err(|e| usage(format!("{name} line {line_number}: {e}")))?;
        envelopes.push((line_number, envelope));
    }
    if envelopes.is_empty() {
        usage_bail!("{name} holds no envelopes");
    }
    Ok(envelopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(n: u8) -> pb::Envelope {
        pb::Envelope { body: vec![n; 10], signer: vec![n; 32], signature: vec![n; 64], cosignatures: vec![] }
    }

    /// Reads `text` as a file and returns the line numbers read, or the error.
    fn check(text: &str, expected: Result<Vec<usize>, &str>) {
        let got = read(text.as_bytes(), "f.jsonl")
            .map(|list| list.into_iter().map(|(n, _)| n).collect::<Vec<_>>())
            .map_err(|e| e.to_string());
        match (got, expected) {
            (Ok(got), Ok(expected)) => assert_eq!(got, expected, "{text:?}"),
            (Err(got), Err(needle)) => assert!(got.contains(needle), "{got:?} lacks {needle:?}"),
            (got, expected) => panic!("{text:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn reads_envelope_files() {
        let a = to_line(&envelope(1));
        let b = to_line(&envelope(2));
        check(&format!("{a}\n{b}\n"), Ok(vec![1, 2]));
        check(&format!("{a}\r\n\n  \n{b}"), Ok(vec![1, 4]));
        check("", Err("holds no envelopes"));
        check(&format!("{a}\nnot json\n"), Err("f.jsonl line 2: not an envelope in JSON"));
        let bad_hex = a.replacen("\"body\":\"", "\"body\":\"zz", 1);
        check(&format!("{a}\n{a}\n{bad_hex}\n"), Err("line 3: \"body\" is not hex"));
        let short_signer = to_line(&pb::Envelope { signer: vec![1; 31], ..envelope(1) });
        check(&short_signer, Err("line 1: \"signer\" is 31 bytes"));
        let long_line = format!("{}\n", "x".repeat(ENVELOPE_LINE_BYTES_MAX + 1));
        check(&long_line, Err("line 1: longer than 65536 bytes"));
        let huge_body = to_line(&pb::Envelope { body: vec![0; BODY_BYTES_MAX + 1], ..envelope(1) });
        check(&huge_body, Err("\"body\" is 4097 bytes"));
    }

    #[test]
    fn envelopes_round_trip_through_lines() {
        let e = envelope(7);
        assert_eq!(parse_line(&to_line(&e)), Ok(e));
    }

    #[test]
    fn a_file_holds_at_most_the_bound() {
        let line = to_line(&envelope(1));
        let full = format!("{line}\n").repeat(ENVELOPES_PER_FILE_MAX);
        assert_eq!(read(full.as_bytes(), "f").map(|l| l.len()).ok(), Some(ENVELOPES_PER_FILE_MAX));
        let over = format!("{full}{line}\n");
        check(&over, Err("more than 100000 envelopes (line 100001)"));
    }
}
