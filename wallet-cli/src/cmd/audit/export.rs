//! `cercle audit export`: the node's log, up to its current signed tree head, to a file:
//! `jsonl` (complete, for `cercle audit verify --log`), `csv` (spreadsheets) or `hledger`
//! (an accounting journal). Needs an auditor's or administrator's key: the node streams
//! the whole log to them only.
//!
//! The export checks what it writes hangs together (each entry hashes to its hash,
//! chains to the one before, and the whole matches the node's signed tree head), so a
//! broken stream never yields a plausible file; signatures and balances are for
//! `cercle audit verify`. The file is written to a new temporary file beside FILE and
//! moved into place only when complete (see `files`: a link is never written through).

use std::cmp::Ordering;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use cercle_audit::{Format, LogWriter, SignedTreeHead};
use cercle_core::merkle::Frontier;
use cercle_core::sign::Keypair;
use cercle_core::{Entry, Genesis};
use serde_json::json;

use crate::client::Node;
use crate::client::status_error;
use crate::cmd::verifiable::{ProgressLine, thousands};
use crate::output::{self, Period, rfc3339};
use crate::{Global, files, keys};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    /// The complete log (genesis, entries, signed tree head), for `cercle audit verify --log`
    Jsonl,
    /// One row per entry, for spreadsheets
    Csv,
    /// A journal for hledger: one transaction per transfer
    Hledger,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Jsonl => Format::Jsonl,
            FormatArg::Csv => Format::Csv,
            FormatArg::Hledger => Format::Hledger,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write the export to this file
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Write the export in this format
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: FormatArg,
    /// Replace FILE if it exists
    #[arg(long)]
    force: bool,
    /// Only entries from this day on, YYYY-MM-DD (UTC; csv and hledger: a jsonl export is the whole log)
    #[arg(long, value_name = "DATE", value_parser = output::parse_date)]
    from: Option<u32>,
    /// Only entries up to this day, included, YYYY-MM-DD (UTC; csv and hledger)
    #[arg(long, value_name = "DATE", value_parser = output::parse_date)]
    to: Option<u32>,
}

/// What to do when `--out` exists.
const OUT_EXISTS: &str = "choose another --out path, or pass --force to replace it";

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let period = Period::new(args.from, args.to)?;
    let format = Format::from(args.format);
    if period.is_bounded() && format == Format::Jsonl {
        crate::usage_bail!(
            "a jsonl export is the whole log, for `cercle audit verify --log`: --from and --to apply to csv and hledger"
        );
    }
    let key = keys::load(global.key.as_deref())?;
    files::check_target(&args.out, args.force, OUT_EXISTS)?;
    let mut node = Node::connect(&global.node).await?;
    let genesis = node.genesis.clone();
    let tree_head = node.tree_head().await?;
    // Signed by the key in force for its size, by the node key history the node states.
    tree_head
        .verify_with(&genesis, &node.node_keys)
        .map_err(|e| anyhow!("the node's tree head does not check out: {e}"))?;
    // Dropped on an error, the temporary file is removed.
    let mut file = files::NewFile::create(&args.out, args.force, OUT_EXISTS)?;
    let mut out = BufWriter::new(file.file());
    let written = write_export(&mut node, &key, &genesis, &tree_head, format, period, &mut out).await?;
    out.flush().with_context(|| format!("cannot write {}", args.out.display()))?;
    drop(out);
    file.commit()?;
    let head = &tree_head.head;
    if global.json {
        return output::emit_ok(json!({
            "out": args.out.display().to_string(),
            "format": format.name(),
            "entry_count": written,
            "period": period.json(),
            "tree_size": head.tree_size,
            "root_hash": hex::encode(head.root_hash),
            "tree_head_timestamp": rfc3339(head.timestamp_ms),
            "genesis_hash": hex::encode(genesis.hash()),
        }));
    }
    let of_period = match (period.from, period.to) {
        (None, None) => String::new(),
        (from, to) => format!(
            ", from {} to {}",
            from.map_or("the start".into(), output::date),
            to.map_or("the end".into(), output::date)
        ),
    };
    output::emit(&format!(
        "exported {} entries ({}{of_period}) to {}: the log up to the node's tree head signed at {}, Merkle root {}",
        thousands(written),
        format.name(),
        args.out.display(),
        rfc3339(head.timestamp_ms),
        hex::encode(head.root_hash)
    ))
}

/// Streams the log up to `tree_head`, checks it hangs together, and writes the entries of
/// `period` (every entry is checked, the period's are written); returns how many it wrote.
#[allow(clippy::too_many_arguments)]
async fn write_export(
    node: &mut Node,
    key: &Keypair,
    genesis: &Genesis,
    tree_head: &SignedTreeHead,
    format: Format,
    period: Period,
    out: &mut impl Write,
) -> anyhow::Result<u64> {
    let mut written = 0u64;
    let tree_size = tree_head.head.tree_size;
    let io = |e: std::io::Error| anyhow!("cannot write the export: {e}");
    let mut writer: Box<dyn LogWriter + '_> = cercle_audit::writer(format, out, genesis).map_err(io)?;
    let mut stream = node.stream_entries(key, 1).await?;
    let mut frontier = Frontier::new();
    let mut previous = genesis.hash();
    let mut progress = ProgressLine::new();
    for expected in 1..=tree_size {
        let entry = stream.message().await.map_err(|s| status_error(node.url(), &s))?.ok_or_else(|| {
            anyhow!(
                "the node's stream ended after {} entries, but its tree head commits to {tree_size}",
                expected - 1
            )
        })?;
        let sequence = entry.sequence;
        let invalid = |detail: String| anyhow!("the node sent an invalid entry {sequence}: {detail}");
        let entry = Entry::try_from(entry).map_err(|r| invalid(r.message("", 0)))?;
        if sequence != expected {
            bail!("the node sent entry {sequence} where entry {expected} belongs");
        }
        if entry.prev_hash != previous {
            bail!("entry {sequence} does not chain to the entry before it");
        }
        let op = cercle_core::body::decode(&entry.envelope.body).map_err(|e| invalid(e.to_string()))?;
        match period.place(entry.timestamp_ms) {
            Ordering::Less => writer.skip(&entry, &op).map_err(io)?,
            Ordering::Equal => {
                writer.entry(&entry, &op).map_err(io)?;
                written += 1;
            }
            Ordering::Greater => {}
        }
        previous = entry.hash();
        frontier.push(previous).map_err(|e| anyhow!("{e}"))?;
        if expected % 1024 == 0 {
            progress.show("exporting", expected, tree_size);
        }
    }
    progress.clear();
    if frontier.root() != tree_head.head.root_hash {
        bail!(
            "the entries the node sent do not match its signed tree head (root {}, expected {})",
            hex::encode(frontier.root()),
            hex::encode(tree_head.head.root_hash)
        );
    }
    writer.finish(tree_head).map_err(io)?;
    Ok(written)
}
