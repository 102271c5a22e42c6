//! `cercle audit verify`: the auditor's replay of a whole log, from a jsonl export
//! (`--log FILE`, offline) or streamed from the node (an auditor's or administrator's key).
//!
//! Every signature is checked, every hash link, every operation re-applied from genesis
//! by the ledger's own core, and the Merkle root compared with the node's signed tree
//! head. The verdict names the first bad entry, and the command then exits non-zero.

use std::path::{Path, PathBuf};

use anyhow::Context;
use cercle_audit::{
    AuditFailure, Ceiling, Options, SignedTreeHead, SourceError, Verdict, jsonl, signature_ceiling,
};
use cercle_core::{Entry, Genesis};
use cercle_limits::{AUDIT_BENCH_ENTRIES_MAX, AUDIT_STREAM_BUFFER_ENTRIES};
use serde_json::json;

use crate::client::Node;
use crate::cmd::verifiable::{ProgressLine, thousands};
use crate::failure::{Failure, Kind, classify, fail, usage};
use crate::output::{self, rfc3339};
use crate::{Global, keys};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Check this jsonl export instead of the log of the node given with --node
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Fail unless the ledger's genesis hash is HEX (as the association published it)
    #[arg(long, value_name = "HEX", value_parser = parse_hash)]
    genesis_hash: Option<[u8; 32]>,
    /// Verify signatures on N threads (default: one per core)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    /// Also measure this machine's signature-verification ceiling, for comparison
    #[arg(long, requires = "log")]
    bench: bool,
}

fn parse_hash(text: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(text.trim()).map_err(|e| format!("not hex: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("a hash is 32 bytes (64 hex digits), got {} bytes", b.len()))
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let mut options = Options::default();
    if let Some(threads) = args.threads {
        options.threads = usize::from(threads);
    }
    let (genesis, source, result) = match &args.log {
        Some(path) => verify_file(path, &args, options)?,
        None => verify_node(global, &args, options).await?,
    };
    let verdict = match result {
        Ok(verdict) => verdict,
        Err(failure) => {
            let at = failure.position();
            return Err(Failure::new(
                Kind::AuditFailed,
                format!("AUDIT FAILED: {}", output::one_line(&failure.to_string())),
            )
            .with("source", source)
            .with("position", at.map(|p| p.index))
            .with("line", at.and_then(|p| p.line))
            .into());
        }
    };
    let bench = match (&args.bench, &args.log) {
        (true, Some(path)) => Some(bench(path, &verdict)?),
        _ => None,
    };
    print_verdict(global.json, &genesis, &source, &verdict, bench.as_ref())
}

type Outcome = (Genesis, String, Result<Verdict, AuditFailure>);

fn check_genesis(genesis: &Genesis, expected: Option<[u8; 32]>) -> anyhow::Result<()> {
    if let Some(expected) = expected
        && genesis.hash() != expected
    {
        return Err(fail(
            Kind::AuditFailed,
            format!(
                "AUDIT FAILED: the genesis hashes to {}, not to the expected {}: this is another ledger, or its genesis was changed",
                hex::encode(genesis.hash()),
                hex::encode(expected)
            ),
        ));
    }
    Ok(())
}

/// A log file that is not a well-formed log: the audit fails on it.
fn source_error(path: &Path, e: SourceError) -> anyhow::Error {
    let message = match e.line {
        Some(line) => {
            format!("AUDIT FAILED: {} line {line}: {}", path.display(), output::one_line(&e.message))
        }
        None => format!("AUDIT FAILED: {}: {}", path.display(), output::one_line(&e.message)),
    };
    Failure::new(Kind::AuditFailed, message).with("line", e.line).into()
}

fn verify_file(path: &Path, args: &Args, mut options: Options) -> anyhow::Result<Outcome> {
    // A file that cannot be opened is a wrong path, not a failed audit.
    std::fs::File::open(path).map_err(|e| usage(format!("cannot open {}: {e}", path.display())))?;
    let log = jsonl::read(path).map_err(|e| source_error(path, e))?;
    check_genesis(&log.genesis, args.genesis_hash)?;
    options.line_offset = Some(jsonl::LINE_OFFSET);
    let total = log.tree_head.head.tree_size;
    let mut progress = ProgressLine::new();
    let result = cercle_audit::verify(&log.genesis, log.entries, Some(&log.tree_head), &options, |n| {
        progress.show("verifying", n, total)
    });
    progress.clear();
    Ok((log.genesis, path.display().to_string(), result))
}

async fn verify_node(global: &Global, args: &Args, options: Options) -> anyhow::Result<Outcome> {
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    let genesis = node.genesis.clone();
    check_genesis(&genesis, args.genesis_hash)?;
    // The tree head first: the entries streamed after it include every entry it commits to.
    let tree_head = node.tree_head().await?;
    let tree_size = tree_head.head.tree_size;
    let mut stream = node.stream_entries(&key, 1).await?;
    let url = node.url().to_string();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Entry, SourceError>>(AUDIT_STREAM_BUFFER_ENTRIES);
    // Only the entries the tree head commits to: later ones are checked next time.
    let pump = async move {
        let mut received = 0u64;
        while received < tree_size {
            let item = match stream.message().await {
                Ok(Some(entry)) => {
                    received += 1;
                    let sequence = entry.sequence;
                    Entry::try_from(entry).map_err(|r| {
                        SourceError::new(
                            None,
                            format!("the node sent an invalid entry {sequence}: {}", r.message("", 0)),
                        )
                    })
                }
                Ok(None) => break,
                Err(status) => {
                    // The network failed, not the audit: that is reported instead of a
                    // verdict on a log cut short.
                    let error = crate::client::status_error(&url, &status);
                    let kind = classify(&error).kind;
                    let _ = tx.send(Err(SourceError::new(None, "the entry stream broke"))).await;
                    return Some(Failure::new(kind, format!("the entry stream broke: {error:#}")));
                }
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
        None
    };
    let checker = {
        let genesis = genesis.clone();
        tokio::task::spawn_blocking(move || {
            let mut progress = ProgressLine::new();
            let entries = std::iter::from_fn(move || rx.blocking_recv());
            let result = cercle_audit::verify(&genesis, entries, Some(&tree_head), &options, |n| {
                progress.show("verifying", n, tree_size)
            });
            progress.clear();
            result
        })
    };
    let (broken, result) = tokio::join!(pump, checker);
    if let Some(broken) = broken {
        return Err(broken.into());
    }
    let result = result.context("the verifying task failed")?;
    Ok((genesis, global.node.clone(), result))
}

fn tree_head_json(signed: &SignedTreeHead) -> serde_json::Value {
    json!({
        "tree_size": signed.head.tree_size,
        "root_hash": hex::encode(signed.head.root_hash),
        "timestamp_ms": signed.head.timestamp_ms,
        "timestamp": rfc3339(signed.head.timestamp_ms),
        "signature": hex::encode(signed.signature),
    })
}

fn print_verdict(
    json: bool,
    genesis: &Genesis,
    source: &str,
    v: &Verdict,
    bench: Option<&Bench>,
) -> anyhow::Result<()> {
    let head = v.ledger.head();
    // The node key history as the log itself records it (the genesis's key, then each
    // rotation entry's): what the tree head was checked with.
    let node_keys = v.ledger.state().node_keys();
    if json {
        return output::emit_ok(json!({
            "verdict": "ok",
            "source": source,
            "ledger_id": genesis.ledger_id.to_string(),
            "genesis_hash": hex::encode(genesis.hash()),
            "node_key": genesis.node_key.to_hex(),
            "node_key_in_force": node_keys.current().to_hex(),
            "node_keys": crate::cmd::info::node_keys_json(node_keys),
            "entries_checked": v.entries_checked,
            "accounts": v.ledger.state().account_count(),
            "state_digest": hex::encode(v.state_digest),
            "merkle_root": hex::encode(v.merkle_root),
            "last_entry_hash": hex::encode(head.hash),
            "tree_head": v.tree_head.as_ref().map(tree_head_json),
            "threads": v.threads,
            "elapsed_ms": v.elapsed.as_millis() as u64,
            "entries_per_sec": v.entries_per_sec().round() as u64,
            "bench": bench.map(Bench::json),
        }));
    }
    let tree_head = match &v.tree_head {
        Some(t) => format!(
            "{} entries, root matches, signed by the node key {} at {}",
            thousands(t.head.tree_size),
            node_keys.key_for_size(t.head.tree_size),
            rfc3339(t.head.timestamp_ms)
        ),
        None => "none: the root was not checked against a signature".to_string(),
    };
    let rows = [
        ("verdict", "OK: every signature, hash link, operation and balance checks out".to_string()),
        ("source", output::one_line(source)),
        ("entries checked", thousands(v.entries_checked)),
        ("accounts", thousands(v.ledger.state().account_count() as u64)),
        ("state digest", hex::encode(v.state_digest)),
        ("Merkle root", hex::encode(v.merkle_root)),
        ("tree head", tree_head),
        ("node keys", crate::cmd::info::describe_node_keys(node_keys)),
        ("last entry", hex::encode(head.hash)),
        ("ledger", format!("{} (genesis hash {})", genesis.ledger_id, hex::encode(genesis.hash()))),
        (
            "time taken",
            format!(
                "{:.2} s ({} entries/s, {} threads)",
                v.elapsed.as_secs_f64(),
                thousands(v.entries_per_sec().round() as u64),
                v.threads
            ),
        ),
    ];
    let mut text: Vec<String> = rows.iter().map(|(label, value)| format!("{label:<16}{value}")).collect();
    if let Some(b) = bench {
        text.push(b.text());
    }
    output::emit(&text.join("\n"))
}

/// This machine's signature-verification ceiling, next to the speed of the verification.
struct Bench {
    ceiling: Ceiling,
    verify_per_sec: f64,
}

impl Bench {
    fn ratio(&self) -> f64 {
        self.verify_per_sec / self.ceiling.per_sec().max(1e-9)
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "ceiling_verifications": self.ceiling.verifications,
            "ceiling_failures": self.ceiling.failures,
            "ceiling_per_sec": self.ceiling.per_sec().round() as u64,
            "verify_entries_per_sec": self.verify_per_sec.round() as u64,
            "ratio": (self.ratio() * 1000.0).round() / 1000.0,
            "threads": self.ceiling.threads,
        })
    }

    fn text(&self) -> String {
        format!(
            "{:<16}{} signatures/s ({} strict verifications on {} threads, in memory, nothing else)\n{:<16}{} entries/s = {:.0}% of the ceiling",
            "ceiling",
            thousands(self.ceiling.per_sec().round() as u64),
            thousands(self.ceiling.verifications),
            self.ceiling.threads,
            "verify",
            thousands(self.verify_per_sec.round() as u64),
            self.ratio() * 100.0
        )
    }
}

/// Measures the signature ceiling on the log's first entries.
fn bench(path: &Path, verdict: &Verdict) -> anyhow::Result<Bench> {
    let log = jsonl::read(path).map_err(|e| source_error(path, e))?;
    let sample: Vec<Entry> = log
        .entries
        .take(AUDIT_BENCH_ENTRIES_MAX)
        .collect::<Result<_, _>>()
        .map_err(|e| source_error(path, e))?;
    let ceiling = signature_ceiling(&log.genesis, &sample, verdict.threads);
    Ok(Bench { ceiling, verify_per_sec: verdict.entries_per_sec() })
}
