//! `cercle statement`: a signed statement of an account over a period, for a bank or the
//! tax office, and its offline verification.
//!
//! The file is JSON: the node's signed statement (balances, turnover, limits at a tree
//! head), the signed tree head, and every entry of the period with its inclusion proof.
//! `cercle statement verify FILE` checks all of it against the node's public key, with no
//! node: the signatures, each entry's own signature and Merkle inclusion, and that the
//! entries give the turnover and closing balance the statement claims.
//!
//! The statement and its tree head are signed by the node key in force for the tree head's
//! size: the genesis's, or after a rotation (`cercle admin node-key rotate`) the rotated
//! one. The file names that key and, for information, the node key history the node
//! stated; `verify` trusts only the key it is given, which must be the one in force for the
//! statement's tree size (`cercle info` lists each key and the first size it signs).
//!
//! A statement is cut at the node's time (its tree head's). If the period ends after that,
//! it is *provisional*: its closing balance is the balance so far. The flag and the cut
//! time are part of what the node signs, and `verify` prints the one or the other:
//! `VALID (provisional: ...)` or `VALID (final)`.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, ensure};
use cercle_core::checkpoint::{Statement, TreeHead};
use cercle_core::{AccountId, EntryView, LedgerId, PublicKey, format_with_currency, merkle, sign};
use cercle_limits::{NODE_KEY_FILE_BYTES_MAX, STATEMENT_FILE_BYTES_MAX};
use serde_json::{Value, json};

use crate::client::Node;
use crate::failure::{Kind, fail, usage};
use crate::output;
use crate::signed::parse_account;
use crate::{Global, keys};

/// Format tag of the statement file.
const FORMAT: &str = "cercle-statement-v2";

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    verify: Option<Verify>,
    /// The account (yours, or any if your key is an administrator's or auditor's)
    #[arg(value_name = "ACCOUNT", value_parser = parse_account, required = true)]
    account: Option<AccountId>,
    /// First day of the period, YYYY-MM-DD (UTC); default: the beginning
    #[arg(long, value_name = "DATE", value_parser = parse_day)]
    from: Option<u64>,
    /// Last day of the period, YYYY-MM-DD (UTC), included; default: now
    #[arg(long, value_name = "DATE", value_parser = parse_day)]
    to: Option<u64>,
    /// Write the statement to FILE (refuses to overwrite it without --force)
    #[arg(long, value_name = "FILE", required = true)]
    out: Option<PathBuf>,
    /// Replace FILE if it exists
    #[arg(long)]
    force: bool,
}

/// What to do when `--out` exists.
const OUT_EXISTS: &str = "choose another --out path, or pass --force to replace it";

#[derive(Debug, clap::Subcommand)]
enum Verify {
    /// Check a statement file offline against the node key the association publishes
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// The statement file
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The node's public key as the association publishes it, in hex (or set CERCLE_NODE_KEY)
    #[arg(long, value_name = "HEX", value_parser = crate::signed::parse_public_key)]
    node_key: Option<PublicKey>,
    /// Read the node's public key from FILE, as the association publishes it: the hex key,
    /// with optional `#` comment lines
    #[arg(long, value_name = "FILE", conflicts_with = "node_key")]
    node_key_file: Option<PathBuf>,
}

/// The environment variable that pins the node key when no option does.
const NODE_KEY_ENV: &str = "CERCLE_NODE_KEY";

/// The node key to check a statement against: `--node-key`, else `--node-key-file`, else
/// `CERCLE_NODE_KEY`. The key written in the statement itself proves nothing: whoever
/// forged the statement would have written their own.
fn pinned_node_key(args: &VerifyArgs) -> anyhow::Result<PublicKey> {
    if let Some(key) = args.node_key {
        return Ok(key);
    }
    if let Some(path) = &args.node_key_file {
        let cannot_read =
            |e: std::io::Error| usage(format!("cannot read the node key file {}: {e}", path.display()));
        let file = std::fs::File::open(path).map_err(cannot_read)?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(file, NODE_KEY_FILE_BYTES_MAX + 1), &mut text)
            .map_err(cannot_read)?;
        if text.len() as u64 > NODE_KEY_FILE_BYTES_MAX {
            crate::usage_bail!(
                "{} is larger than {NODE_KEY_FILE_BYTES_MAX} bytes: not a node key file",
                path.display()
            );
        }
        return parse_node_key_file(&text).map_err(|e| usage(format!("{}: {e}", path.display())));
    }
    if let Some(text) = std::env::var_os(NODE_KEY_ENV) {
        let text = text.to_str().ok_or_else(|| usage(format!("{NODE_KEY_ENV} is not text")))?;
        return PublicKey::from_hex(text.trim()).map_err(|e| usage(format!("{NODE_KEY_ENV}: {e}")));
    }
    Err(usage(
        "the node key was not given, so the statement cannot be verified: pass the key the association publishes with --node-key HEX or --node-key-file FILE, or set CERCLE_NODE_KEY (`cercle info` shows a node's key)",
    ))
}

/// The key in a published node key file: one line of hex; empty lines and lines starting
/// with `#` are ignored.
fn parse_node_key_file(text: &str) -> Result<PublicKey, String> {
    let mut keys = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
    let key = keys.next().ok_or("the file holds no key (only comments or nothing)")?;
    if keys.next().is_some() {
        return Err("the file holds more than one line that is not a comment; expected one key in hex".into());
    }
    PublicKey::from_hex(key)
}

/// Milliseconds since the Unix epoch at 00:00 UTC of a `YYYY-MM-DD` day.
fn parse_day(text: &str) -> Result<u64, String> {
    crate::output::parse_date(text).map(|day| u64::from(day) * 86_400_000)
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    if let Some(Verify::Verify(args)) = args.verify {
        return verify(global, &args);
    }
    let (Some(account), Some(out)) = (args.account, args.out) else {
        crate::usage_bail!("give an ACCOUNT and --out FILE, or use `cercle statement verify FILE`");
    };
    let from_ms = args.from.unwrap_or(0);
    let to_ms = match args.to {
        Some(day) => day + 86_400_000 - 1,
        None => 0,
    };
    if to_ms != 0 && from_ms > to_ms {
        crate::usage_bail!("--from is after --to");
    }
    // Refused before asking the node, not after.
    crate::files::check_target(&out, args.force, OUT_EXISTS)?;
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    let reply = node.get_statement(&key, &account, from_ms, to_ms).await?;
    let head = reply.tree_head.ok_or_else(|| anyhow!("the node sent no tree head"))?;
    let entries: Vec<Value> = reply
        .entries
        .into_iter()
        .map(|p| {
            let view =
                EntryView::try_from(p.entry.ok_or_else(|| anyhow!("an entry of the statement is missing"))?)
                    .map_err(|r| anyhow!("the node sent a bad entry: {}", r.message("", 0)))?;
            let parts: Vec<Value> = view
                .sections
                .iter()
                .flat_map(|s| {
                    s.parts.iter().map(move |p| {
                        json!({
                            "tag": s.tag as u8,
                            "index": p.index,
                            "data": hex::encode(&p.data),
                            "path": p.path.iter().map(hex::encode).collect::<Vec<_>>(),
                        })
                    })
                })
                .collect();
            Ok(json!({
                "sequence": view.entry.sequence,
                "commitment": hex::encode(view.commitment()),
                "parts": parts,
                "proof": p.hashes.iter().map(hex::encode).collect::<Vec<_>>(),
            }))
        })
        .collect::<anyhow::Result<_>>()?;
    let g = &node.genesis;
    // The key in force for the tree head's size, by the node key history the node stated
    // when we connected; if the log grew since, asked again (a rotation may be in it).
    let history = if head.tree_size <= node.log_size {
        node.node_keys.clone()
    } else {
        Node::connect(node.url()).await?.node_keys
    };
    let signer = history.key_for_size(head.tree_size);
    let document = json!({
        "format": FORMAT,
        "ledger_id": g.ledger_id.to_string(),
        "node_key": signer.to_hex(),
        "node_keys": crate::cmd::info::node_keys_json(&history),
        "currency": g.currency,
        "exponent": g.exponent,
        "statement": hex::encode(&reply.statement),
        "signature": hex::encode(&reply.signature),
        "tree_head": {
            "tree_size": head.tree_size,
            "root_hash": hex::encode(&head.root_hash),
            "timestamp_ms": head.timestamp_ms,
            "signature": hex::encode(&head.signature),
        },
        "entries": entries,
    });
    // Check what the node sent before handing it to anyone.
    let checked = check(&document, &signer).context("the node's statement does not verify")?;
    let text = serde_json::to_string_pretty(&document)?;
    crate::files::write(&out, text.as_bytes(), args.force, OUT_EXISTS)?;
    report(global, &checked, Some(&out))
}

/// What a verified statement says, for printing.
struct Checked {
    statement: Statement,
    currency: String,
    exponent: u8,
    tree_head: TreeHead,
    node_key: PublicKey,
}

fn hex_field<const N: usize>(value: &Value, name: &str) -> anyhow::Result<[u8; N]> {
    let text = value[name].as_str().ok_or_else(|| anyhow!("'{name}' is missing"))?;
    hex::decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow!("'{name}' must be {N} bytes of hex"))
}

fn hex_bytes(value: &Value, name: &str) -> anyhow::Result<Vec<u8>> {
    let text = value[name].as_str().ok_or_else(|| anyhow!("'{name}' is missing"))?;
    hex::decode(text).map_err(|e| anyhow!("'{name}' is not hex: {e}"))
}

/// Checks a statement document against `node_key`, the node key the checker trusts.
fn check(doc: &Value, node_key: &PublicKey) -> anyhow::Result<Checked> {
    ensure!(doc["format"] == FORMAT, "not a Cercle statement (format is not {FORMAT})");
    let file_key = PublicKey(hex_field::<32>(doc, "node_key")?);
    let node_key = *node_key;
    ensure!(
        node_key == file_key,
        "the statement is signed by node key {file_key}, not the expected {node_key}{}",
        rotation_hint(doc)
    );
    let ledger_id = LedgerId(hex_field::<16>(doc, "ledger_id")?);
    let statement =
        Statement::decode(&hex_bytes(doc, "statement")?).map_err(|e| anyhow!("bad statement: {e}"))?;
    ensure!(statement.ledger_id == ledger_id, "the statement is for another ledger");
    statement
        .verify(&node_key, &hex_field::<64>(doc, "signature")?)
        .map_err(|e| anyhow!("the node's signature on the statement is invalid: {e}"))?;
    let th = &doc["tree_head"];
    let tree_head = TreeHead {
        ledger_id,
        tree_size: th["tree_size"].as_u64().ok_or_else(|| anyhow!("tree_head.tree_size is missing"))?,
        root_hash: hex_field::<32>(th, "root_hash")?,
        timestamp_ms: th["timestamp_ms"]
            .as_u64()
            .ok_or_else(|| anyhow!("tree_head.timestamp_ms is missing"))?,
    };
    tree_head
        .verify(&node_key, &hex_field::<64>(th, "signature")?)
        .map_err(|e| anyhow!("the node's signature on the tree head is invalid: {e}"))?;
    statement.check_tree_head(&tree_head).map_err(|e| anyhow!("{e}"))?;
    let list = doc["entries"].as_array().ok_or_else(|| anyhow!("'entries' is missing"))?;
    let mut entries = Vec::with_capacity(list.len());
    for item in list {
        let bytes = hex_bytes(item, "commitment")?;
        let entry = EntryView::from_commitment(&bytes, shown_parts(item)?)
            .map_err(|e| anyhow!("an entry does not decode: {e}"))?;
        let seq = entry.entry.sequence;
        let proof = item["proof"]
            .as_array()
            .ok_or_else(|| anyhow!("entry {seq}: 'proof' is missing"))?
            .iter()
            .map(|h| {
                h.as_str()
                    .and_then(|t| hex::decode(t).ok())
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| anyhow!("entry {seq}: a proof hash is not 32 bytes of hex"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        ensure!(seq >= 1, "entry sequence 0 does not exist");
        merkle::verify_inclusion(
            &merkle::leaf_hash(&bytes),
            seq - 1,
            tree_head.tree_size,
            &proof,
            &tree_head.root_hash,
        )
        .map_err(|e| anyhow!("entry {seq} is not in the log at the tree head: {e}"))?;
        let envelope = &entry.entry.envelope;
        for s in &envelope.signatures {
            sign::verify(&s.signer, &sign::op_message(&ledger_id, &envelope.body), &s.signature)
                .map_err(|e| anyhow!("entry {seq}: its signature does not verify: {e}"))?;
        }
        let op = cercle_core::body::decode(&envelope.body).map_err(|e| anyhow!("entry {seq}: {e}"))?;
        entries.push((entry, op));
    }
    statement.check_period(&entries).map_err(|e| anyhow!("the entries contradict the statement: {e}"))?;
    let currency = doc["currency"].as_str().unwrap_or("").to_string();
    let exponent = doc["exponent"].as_u64().and_then(|e| u8::try_from(e).ok()).unwrap_or(2);
    Ok(Checked { statement, currency, exponent, tree_head, node_key })
}

/// When the file lists a node key history with rotations: which key it says is in force
/// for the statement's size, so the verifier knows which published key to pin.
fn rotation_hint(doc: &Value) -> String {
    let Some(eras) = doc["node_keys"].as_array().filter(|e| e.len() > 1) else { return String::new() };
    let list: Vec<String> = eras
        .iter()
        .map(|e| {
            format!(
                "{} from tree size {}",
                e["key"].as_str().unwrap_or("?"),
                e["from_size"].as_u64().unwrap_or(0)
            )
        })
        .collect();
    format!(
        " (the node key was rotated: the node says {}; pin the key the association publishes for a tree of {} entries)",
        list.join(", "),
        doc["tree_head"]["tree_size"].as_u64().unwrap_or(0)
    )
}

/// The parts of sections a statement's entry shows (of a clearing run, the account's own).
fn shown_parts(
    item: &Value,
) -> anyhow::Result<Vec<(cercle_core::SectionTag, cercle_core::entry::ShownPart)>> {
    let Some(list) = item["parts"].as_array() else { return Ok(Vec::new()) };
    list.iter()
        .map(|p| {
            let tag = p["tag"]
                .as_u64()
                .and_then(|t| u8::try_from(t).ok())
                .ok_or_else(|| anyhow!("a part has no tag"))?;
            let tag = cercle_core::SectionTag::from_u8(tag).map_err(|e| anyhow!("a part's tag: {e}"))?;
            let index = p["index"]
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| anyhow!("a part has no index"))?;
            let data = hex_bytes(p, "data")?;
            let path = p["path"]
                .as_array()
                .ok_or_else(|| anyhow!("a part has no path"))?
                .iter()
                .map(|h| {
                    h.as_str()
                        .and_then(|t| hex::decode(t).ok())
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .ok_or_else(|| anyhow!("a part's path hash is not 32 bytes of hex"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok((tag, cercle_core::entry::ShownPart { index, data, path }))
        })
        .collect()
}

fn verify(global: &Global, args: &VerifyArgs) -> anyhow::Result<()> {
    let file = args.file.as_path();
    let node_key = pinned_node_key(args)?;
    let cannot_read = |e: std::io::Error| usage(format!("cannot read {}: {e}", file.display()));
    let size = std::fs::metadata(file).map_err(cannot_read)?.len();
    if size > STATEMENT_FILE_BYTES_MAX {
        crate::usage_bail!("{} is {size} bytes, more than a statement can be", file.display());
    }
    let text = std::fs::read_to_string(file).map_err(cannot_read)?;
    // From here on, anything wrong is wrong with the statement: it is invalid.
    let invalid = |e: anyhow::Error| fail(Kind::AuditFailed, format!("STATEMENT INVALID: {e:#}"));
    let doc: Value =
        serde_json::from_str(&text).map_err(|e| invalid(anyhow!("{} is not JSON: {e}", file.display())))?;
    let checked = check(&doc, &node_key).map_err(invalid)?;
    report(global, &checked, None)
}

/// A turnover for JSON: a number, or digits in the (theoretical) case it exceeds an i64.
fn turnover_json(minor: u128) -> Value {
    // A statement sums at most 10,000 amounts of an i64 each: far inside an i128.
    output::amount_json(i128::try_from(minor).unwrap_or(i128::MAX))
}

fn report(global: &Global, c: &Checked, written: Option<&Path>) -> anyhow::Result<()> {
    let s = &c.statement;
    let money = |minor: i64| format_with_currency(minor, c.exponent, &c.currency);
    let turnover = |minor: u128| match i64::try_from(minor) {
        Ok(m) => money(m),
        Err(_) => format!("{minor} minor units"),
    };
    let verdict = if s.provisional {
        format!("VALID (provisional: period not ended when cut at {})", output::rfc3339(s.cut_at_ms))
    } else {
        "VALID (final)".to_string()
    };
    if global.json {
        return output::emit_ok(json!({
            "valid": true,
            "provisional": s.provisional,
            "verdict": verdict,
            "cut_at_ms": s.cut_at_ms,
            "cut_at": output::rfc3339(s.cut_at_ms),
            "account": s.account.as_str(),
            "from_ms": s.from_ms,
            "to_ms": s.to_ms,
            "tree_size": s.tree_size,
            "root_hash": hex::encode(s.root_hash),
            "opening_balance_minor": s.opening_balance_minor,
            "closing_balance_minor": s.closing_balance_minor,
            "turnover_in_minor": turnover_json(s.turnover_in_minor),
            "turnover_out_minor": turnover_json(s.turnover_out_minor),
            "credit_limit_minor": s.credit_limit_minor,
            "floor_minor": s.credit_limit_minor.saturating_neg(),
            "max_balance_minor": s.max_balance_minor,
            "frozen": s.frozen,
            "closed": s.closed,
            "entry_count": s.sequences.len(),
            "tree_head_timestamp_ms": c.tree_head.timestamp_ms,
            "node_key": c.node_key.to_hex(),
            "written_to": written.map(|p| p.display().to_string()),
        }));
    }
    let to = if s.to_ms == u64::MAX { "now".to_string() } else { output::rfc3339(s.to_ms) };
    let lines = [
        format!("statement of '{}' from {} to {to}: {verdict}", s.account, output::rfc3339(s.from_ms)),
        format!("  opening balance   {}", money(s.opening_balance_minor)),
        format!("  received          {}", turnover(s.turnover_in_minor)),
        format!("  paid              {}", turnover(s.turnover_out_minor)),
        format!("  closing balance   {}", money(s.closing_balance_minor)),
        format!(
            "  credit limit      {}; maximum balance {}; {}",
            output::credit_limit(s.credit_limit_minor, money),
            s.max_balance_minor.map_or("none".into(), money),
            if s.closed {
                "closed"
            } else if s.frozen {
                "frozen"
            } else {
                "active"
            }
        ),
        format!(
            "  {} entries, each proven in the log of {} entries (root {}) signed by node key {}",
            s.sequences.len(),
            c.tree_head.tree_size,
            hex::encode(c.tree_head.root_hash),
            c.node_key
        ),
    ];
    for line in lines {
        output::emit(&line)?;
    }
    if let Some(path) = written {
        output::emit(&format!("written to {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_key_files_hold_one_key_and_comments() {
        let key = "ab".repeat(32);
        let check = |text: &str, expected: Result<&str, &str>| {
            let got = parse_node_key_file(text).map(|k| k.to_hex());
            match expected {
                Ok(hex) => assert_eq!(got.as_deref(), Ok(hex), "{text:?}"),
                Err(needle) => assert!(got.as_ref().is_err_and(|e| e.contains(needle)), "{text:?}: {got:?}"),
            }
        };
        check(&key, Ok(&key));
        check(&format!("# Cercle association, node key\n# published 2026-11-30\n\n  {key}  \n"), Ok(&key));
        check(&format!("{key}\r\n"), Ok(&key));
        check("# nothing\n", Err("holds no key"));
        check("", Err("holds no key"));
        check(&format!("{key}\n{key}\n"), Err("more than one line"));
        check("node key: abc", Err("hex"));
    }

    #[test]
    fn days() {
        let check = |text: &str, expected: Result<u64, ()>| {
            assert_eq!(parse_day(text).map_err(|_| ()), expected, "{text}");
        };
        check("1970-01-01", Ok(0));
        check("1970-01-02", Ok(86_400_000));
        check("2000-03-01", Ok(951_868_800_000));
        check("2026-11-22", Ok(1_795_305_600_000));
        check("2024-02-29", Ok(1_709_164_800_000));
        check("2023-02-29", Err(()));
        check("2026-13-01", Err(()));
        check("26-11-22x", Err(()));
        check("yesterday", Err(()));
    }
}
