//! `cercle indicators`: indicators of local exchange (INDICATORS.md), computed by
//! `cercle-indicators` from the log: the node's (streamed to administrators and auditors,
//! up to its signed tree head) or an exported one (`--log FILE.jsonl`), offline. Either
//! way the entries are checked to chain and to match the signed tree head before the report
//! is printed, so the numbers are those of the log the node committed to; the node's
//! `GetIndicators` runs the same computation and gives the same numbers.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use cercle_core::checkpoint::SignedTreeHead;
use cercle_core::merkle::MemoryTree;
use cercle_core::{Entry, Genesis};
use cercle_indicators::compare::{self, Comparison};
use cercle_indicators::{Computer, Query, Report, render};
use serde_json::{Value, json};

use crate::client::{Node, status_error};
use crate::cmd::verifiable::ProgressLine;
use crate::failure::usage;
use crate::{Global, files, keys, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The first day, YYYY-MM-DD (UTC)
    #[arg(long, value_name = "DATE")]
    from: String,
    /// The last day, included, YYYY-MM-DD (UTC)
    #[arg(long, value_name = "DATE")]
    to: String,
    /// Cut the range into calendar periods: month, quarter, year, or all (one period)
    #[arg(long, value_name = "PERIOD", default_value = "month")]
    by: String,
    /// Give the measures per group of firms too, and the flows between groups: sector, division, commune or territory
    #[arg(long, value_name = "GROUPING")]
    group_by: Option<String>,
    /// Publish under statistical confidentiality: suppress cells of fewer than 3 firms or dominated by one
    #[arg(long)]
    public: bool,
    /// Print CSV (one row per period, group and flow) instead of text
    #[arg(long)]
    csv: bool,
    /// Compute from this exported log (`cercle audit export --format jsonl`), without a node
    #[arg(long, value_name = "FILE.jsonl")]
    log: Option<PathBuf>,
    /// Draw turnover, active share, velocity and credit use per period to this SVG file
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
    /// Draw the flows between groups as a heat map to this SVG file (needs --group-by)
    #[arg(long, value_name = "FILE.svg")]
    chart_flows: Option<PathBuf>,
    /// Correlate an external monthly series (CSV lines `YYYY-MM,value`) with turnover and velocity
    #[arg(long, value_name = "FILE.csv")]
    compare: Option<PathBuf>,
    /// Replace chart files that exist
    #[arg(long)]
    force: bool,
}

/// What to do when a chart file exists.
const CHART_EXISTS: &str = "choose another path, or pass --force to replace it";

/// Checks the entries as they come: in sequence, each chained to the one before, and all
/// of them hashing to the signed tree head's root.
struct Chain {
    previous: [u8; 32],
    next: u64,
    tree: MemoryTree,
}

impl Chain {
    fn new(genesis: &Genesis) -> Chain {
        Chain { previous: genesis.hash(), next: 1, tree: MemoryTree::new() }
    }

    fn take(&mut self, entry: &Entry) -> anyhow::Result<()> {
        if entry.sequence != self.next {
            bail!("entry {} comes where entry {} belongs", entry.sequence, self.next);
        }
        if entry.prev_hash != self.previous {
            bail!("entry {} does not chain to the entry before it", entry.sequence);
        }
        self.previous = entry.hash();
        self.tree.push(self.previous);
        self.next += 1;
        Ok(())
    }

    fn finish(&self, tree_head: &SignedTreeHead) -> anyhow::Result<()> {
        let size = self.next - 1;
        if size != tree_head.head.tree_size {
            bail!(
                "the log holds {size} entries, its signed tree head commits to {}",
                tree_head.head.tree_size
            );
        }
        if self.tree.root() != tree_head.head.root_hash {
            bail!("the entries do not match the signed tree head's Merkle root");
        }
        Ok(())
    }
}

/// Feeds one entry to the chain check and, while it wants more, to the computation.
fn feed(chain: &mut Chain, computer: &mut Computer, entry: &Entry) -> anyhow::Result<()> {
    chain.take(entry)?;
    if computer.wants_more() {
        computer.push(entry)?;
    }
    Ok(())
}

/// The report from an exported log, and its genesis.
fn from_file(path: &Path, query: &Query) -> anyhow::Result<(Report, Genesis)> {
    let log = cercle_audit::jsonl::read(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    // A head the genesis's key signed is checked now; otherwise the node key was rotated,
    // and the head is checked at the end with the history the file's rotation entries give
    // (their validity is `cercle audit verify`'s to check: this reads the figures).
    let unrotated = log.tree_head.verify(&log.genesis);
    let mut eras = vec![cercle_core::NodeKeyEra { from_size: 0, key: log.genesis.node_key }];
    let mut chain = Chain::new(&log.genesis);
    let mut computer = Computer::new(query);
    let mut progress = ProgressLine::new();
    let size = log.tree_head.head.tree_size;
    for entry in log.entries {
        let entry = entry.map_err(|e| anyhow!("{}: {e}", path.display()))?;
        feed(&mut chain, &mut computer, &entry).with_context(|| path.display().to_string())?;
        if unrotated.is_err()
            && let Ok(op) = cercle_core::body::decode(&entry.envelope.body)
            && let cercle_core::OpKind::RotateNodeKey { new_pubkey, .. } = op.kind
        {
            eras.push(cercle_core::NodeKeyEra { from_size: entry.sequence, key: new_pubkey });
        }
        if entry.sequence.is_multiple_of(65_536) {
            progress.show("reading", entry.sequence, size);
        }
    }
    progress.clear();
    chain.finish(&log.tree_head).with_context(|| path.display().to_string())?;
    if unrotated.is_err() {
        let history =
            cercle_core::NodeKeys::from_eras(&eras).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        log.tree_head.verify_with(&log.genesis, &history).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    }
    Ok((computer.finish()?, log.genesis))
}

/// The report from the node's log, streamed up to its signed tree head.
async fn from_node(global: &Global, query: &Query) -> anyhow::Result<(Report, Genesis)> {
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    let genesis = node.genesis.clone();
    let tree_head = node.tree_head().await?;
    // Signed by the key in force for its size, by the node key history the node states.
    tree_head
        .verify_with(&genesis, &node.node_keys)
        .map_err(|e| anyhow!("the node's tree head does not check out: {e}"))?;
    let size = tree_head.head.tree_size;
    let mut chain = Chain::new(&genesis);
    let mut computer = Computer::new(query);
    let mut progress = ProgressLine::new();
    if size > 0 {
        let mut stream = node.stream_entries(&key, 1).await?;
        for expected in 1..=size {
            let entry =
                stream.message().await.map_err(|s| status_error(node.url(), &s))?.ok_or_else(|| {
                    anyhow!(
                        "the node's stream ended after {} entries, but its tree head commits to {size}",
                        expected - 1
                    )
                })?;
            let sequence = entry.sequence;
            let entry = Entry::try_from(entry)
                .map_err(|r| anyhow!("the node sent an invalid entry {sequence}: {}", r.message("", 0)))?;
            feed(&mut chain, &mut computer, &entry).context("the node's log")?;
            if expected.is_multiple_of(65_536) {
                progress.show("streaming", expected, size);
            }
        }
    }
    progress.clear();
    chain.finish(&tree_head).context("the node's log")?;
    Ok((computer.finish()?, genesis))
}

fn comparison_json(c: &Comparison) -> Value {
    json!({
        "series": c.series,
        "turnover_months": c.turnover_months,
        "turnover_correlation": c.turnover.map(render::rounded),
        "velocity_months": c.velocity_months,
        "velocity_correlation": c.velocity.map(render::rounded),
    })
}

fn comparison_text(c: &Comparison) -> String {
    let r = |v: Option<f64>, months: usize| match v {
        Some(v) => format!("{v:+.2} over {months} months"),
        None => format!("no correlation: {months} months in common, or no variation"),
    };
    format!(
        "correlation of {} with turnover: {}\ncorrelation of {} with velocity: {}\n(WIR's counter-cyclical signal is a positive correlation with unemployment.)",
        output::one_line(&c.series),
        r(c.turnover, c.turnover_months),
        output::one_line(&c.series),
        r(c.velocity, c.velocity_months)
    )
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    if global.json && args.csv {
        crate::usage_bail!("give --json or --csv, not both");
    }
    let query =
        Query::parse(&args.from, &args.to, &args.by, args.group_by.as_deref().unwrap_or(""), args.public)
            .map_err(usage)?;
    if args.chart_flows.is_some() && query.group_by.is_none() {
        crate::usage_bail!("--chart-flows draws the flows between groups: give --group-by too");
    }
    let series = match &args.compare {
        None => None,
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            Some(compare::read(&text).map_err(|e| usage(format!("{}: {e}", path.display())))?)
        }
    };
    if series.is_some() && query.by != cercle_indicators::Granularity::Month {
        crate::usage_bail!("--compare works month by month: give --by month");
    }
    for path in [&args.chart, &args.chart_flows].into_iter().flatten() {
        files::check_target(path, args.force, CHART_EXISTS)?;
    }
    let (report, genesis) = match &args.log {
        Some(path) => from_file(path, &query)?,
        None => from_node(global, &query).await?,
    };
    let (currency, exponent) = (genesis.currency.as_str(), genesis.exponent);
    let comparison = series.as_ref().map(|s| compare::compare(&report, s)).transpose()?;
    if let Some(path) = &args.chart {
        let svg = cercle_indicators::chart::series_svg(&report, currency, exponent)?;
        files::write(path, svg.as_bytes(), args.force, CHART_EXISTS)?;
    }
    if let Some(path) = &args.chart_flows {
        let svg = cercle_indicators::chart::flows_svg(&report, currency, exponent)?;
        files::write(path, svg.as_bytes(), args.force, CHART_EXISTS)?;
    }
    if global.json {
        let mut object = render::json(&report, currency, exponent);
        if let Some(c) = &comparison {
            object.insert("compare".into(), comparison_json(c));
        }
        return output::emit_ok(Value::Object(object));
    }
    if args.csv {
        return output::emit(render::csv(&report).trim_end());
    }
    let mut text = render::text(&report, currency, exponent);
    if let Some(c) = &comparison {
        text.push('\n');
        text.push_str(&comparison_text(c));
    }
    output::emit(text.trim_end())
}
