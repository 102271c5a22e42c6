//! `cercle proof check ACCOUNT`: a firm checks, without trusting the node, that
//!
//! 1. the node's current tree head is signed by the node key in force for its size: the
//!    genesis's, or after a rotation the key of the last rotation the tree contains, from
//!    the node key history the node states (`cercle info`; trusting it is trusting the
//!    node's word on its rotations, which `cercle audit verify` checks against the log);
//! 2. the log it commits to extends the one the node signed when this firm last checked
//!    (a consistency proof from the tree head kept in a small state file), so no entry
//!    was ever changed, removed or reordered: otherwise, HISTORY REWRITTEN;
//! 3. each of the account's entries, as the node lists them, is in that log (an
//!    inclusion proof each, up to `--limit`).
//!
//! Only when everything checks out is the new tree head written to the state file. On a
//! failure the file keeps the old one: it holds the node's own signature on it, which
//! is the evidence that the node later presented another history.
//!
//! The state file is the tree-head line of the jsonl export format (see
//! `cercle_audit::jsonl`), one per ledger: by default
//! `$XDG_STATE_HOME/cercle/<ledger-id>.json`, or `~/.local/state/cercle/<ledger-id>.json`.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use cercle_audit::{SignedTreeHead, jsonl};
use cercle_core::checkpoint::TreeHeadError;
use cercle_core::merkle::{verify_consistency, verify_inclusion};
use cercle_core::{AccountId, EntryView, LedgerId, verify_envelope};
use cercle_limits::{PAGE_SIZE_MAX, PROOF_ENTRIES_DEFAULT, PROOF_ENTRIES_MAX, PROOF_STATE_BYTES_MAX};
use cercle_proto as pb;
use serde_json::json;

use crate::client::Node;
use crate::cmd::verifiable::{ProgressLine, entries};
use crate::failure::{Kind, fail, usage};
use crate::output::{self, rfc3339};
use crate::signed::parse_account;
use crate::{Global, keys};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The account whose entries to check (yours, or any with an administrator's or auditor's key)
    #[arg(value_name = "ACCOUNT", value_parser = parse_account)]
    account: AccountId,
    /// Keep the last tree head seen in FILE (default: under $XDG_STATE_HOME or ~/.local/state/cercle)
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Check at most the first N entries of the account (at most 1000000)
    #[arg(
        long,
        value_name = "N",
        default_value_t = PROOF_ENTRIES_DEFAULT,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(PROOF_ENTRIES_MAX))
    )]
    limit: u32,
}

/// The default state file of a ledger: `$XDG_STATE_HOME/cercle/<ledger-id>.json` when
/// that is an absolute path (as the XDG spec asks), else under `$HOME/.local/state`.
fn default_state_path(
    xdg_state_home: Option<OsString>,
    home: Option<OsString>,
    ledger: &LedgerId,
) -> Option<PathBuf> {
    crate::journal::state_dir(xdg_state_home, home).map(|dir| dir.join(format!("{ledger}.json")))
}

/// The tree head kept in `path`, if there is one.
fn load_state(path: &Path) -> anyhow::Result<Option<SignedTreeHead>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => crate::usage_bail!("cannot read the state file {}: {e}", path.display()),
    };
    let mut text = Vec::new();
    file.take(PROOF_STATE_BYTES_MAX + 1)
        .read_to_end(&mut text)
        .map_err(|e| usage(format!("cannot read the state file {}: {e}", path.display())))?;
    if text.len() as u64 > PROOF_STATE_BYTES_MAX {
        crate::usage_bail!(
            "the state file {} is larger than {PROOF_STATE_BYTES_MAX} bytes: not a saved tree head",
            path.display()
        );
    }
    let line = text.strip_suffix(b"\n").unwrap_or(&text);
    let saved = jsonl::parse_tree_head(line).map_err(|e| {
        usage(format!(
            "the state file {} does not hold a saved tree head: {e} (move it away to start afresh)",
            path.display()
        ))
    })?;
    Ok(Some(saved))
}

/// Replaces the state file with `tree_head`, atomically, through a new file (a link at
/// `path` is replaced, never followed).
fn save_state(path: &Path, tree_head: &SignedTreeHead) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let line = format!("{}\n", jsonl::tree_head_line(tree_head));
    crate::files::write(path, line.as_bytes(), true, "")
        .with_context(|| format!("cannot save the tree head to {}", path.display()))
}

fn describe(t: &SignedTreeHead) -> String {
    format!(
        "{} (root {}, signed at {})",
        entries(t.head.tree_size),
        hex::encode(t.head.root_hash),
        rfc3339(t.head.timestamp_ms)
    )
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let key = keys::load(global.key.as_deref())?;
    let mut node = Node::connect(&global.node).await?;
    let genesis = node.genesis.clone();
    let node_keys = node.node_keys.clone();
    let state_path = match &args.state {
        Some(path) => path.clone(),
        None => default_state_path(
            std::env::var_os("XDG_STATE_HOME"),
            std::env::var_os("HOME"),
            &genesis.ledger_id,
        )
        .ok_or_else(|| {
            anyhow!("neither XDG_STATE_HOME nor HOME is set: say where to keep the state with --state FILE")
        })?,
    };
    let saved = load_state(&state_path)?;

    // 1. The node's tree head, signed by the node key in force for its size.
    let current = node.tree_head().await?;
    current.verify_with(&genesis, &node_keys).map_err(|e| {
        fail(
            Kind::AuditFailed,
            format!("NODE MISBEHAVING: its tree head {} does not check out: {e}", describe(&current)),
        )
    })?;

    // 2. It extends the tree head seen last time.
    if let Some(old) = &saved {
        match old.verify_with(&genesis, &node_keys) {
            Ok(()) => {}
            Err(TreeHeadError::OtherLedger { tree_head, genesis }) => crate::usage_bail!(
                "the state file {} holds a tree head of ledger {tree_head}, not of this node's ledger {genesis} (use another --state)",
                state_path.display()
            ),
            Err(e) => {
                return Err(fail(
                    Kind::HistoryRewritten,
                    format!(
                        "HISTORY REWRITTEN, or the state file was altered: the tree head kept in {} does not verify with the node key in force for its size ({e})",
                        state_path.display()
                    ),
                ));
            }
        }
        let rewritten = |reason: String| {
            fail(
                Kind::HistoryRewritten,
                format!(
                    "HISTORY REWRITTEN: the node's tree head of {} is not an extension of the one it signed before, of {}, kept in {}: {reason}. Keep that file: it holds the node's own signature on the earlier tree head",
                    describe(&current),
                    describe(old),
                    state_path.display()
                ),
            )
        };
        let (o, n) = (&old.head, &current.head);
        if n.tree_size < o.tree_size {
            return Err(rewritten(format!("the log shrank from {} to {} entries", o.tree_size, n.tree_size)));
        }
        let proof = if o.tree_size == 0 || o.tree_size == n.tree_size {
            Vec::new()
        } else {
            node.consistency_proof(&key, o.tree_size, n.tree_size).await?
        };
        verify_consistency(o.tree_size, n.tree_size, &o.root_hash, &n.root_hash, &proof)
            .map_err(|e| rewritten(e.to_string()))?;
    }

    // 3. Each of the account's entries is in the log the tree head commits to.
    let inclusion = check_inclusion(&mut node, &key, &args, &current).await?;

    save_state(&state_path, &current)?;
    let head = &current.head;
    if global.json {
        return output::emit_ok(json!({
            "account": args.account.to_string(),
            "node_key": node_keys.key_for_size(head.tree_size).to_hex(),
            "previous_root_hash": saved.as_ref().map(|s| hex::encode(s.head.root_hash)),
            "previous_tree_head_timestamp": saved.as_ref().map(|s| rfc3339(s.head.timestamp_ms)),
            "tree_size": head.tree_size,
            "root_hash": hex::encode(head.root_hash),
            "tree_head_timestamp": rfc3339(head.timestamp_ms),
            "previous_tree_size": saved.as_ref().map(|s| s.head.tree_size),
            "entries_checked": inclusion.checked,
            "entries_newer": inclusion.newer,
            "more_than_limit": inclusion.more,
            "state_file": state_path.display().to_string(),
        }));
    }
    let consistency = match &saved {
        Some(old) => format!("extends the tree head of {} seen before", describe(old)),
        None => "first check: nothing to compare with yet".to_string(),
    };
    let mut included =
        format!("{} of {} in the log the tree head commits to", entries(inclusion.checked), args.account);
    if inclusion.newer {
        included.push_str("; newer entries will be checked next time");
    }
    if inclusion.more {
        included.push_str(&format!("; stopped at --limit {}", args.limit));
    }
    let rows = [
        (
            "tree head",
            format!(
                "{}, signed by the node key {}",
                describe(&current),
                node_keys.key_for_size(head.tree_size)
            ),
        ),
        ("consistency", consistency),
        ("inclusion", included),
        ("state", format!("{} now holds this tree head", state_path.display())),
    ];
    let text: Vec<String> = rows.iter().map(|(label, value)| format!("{label:<13}{value}")).collect();
    output::emit(&text.join("\n"))
}

struct Inclusion {
    checked: u64,
    /// Entries were listed that are newer than the tree head.
    newer: bool,
    /// The account has more entries than `--limit`.
    more: bool,
}

async fn check_inclusion(
    node: &mut Node,
    key: &cercle_core::sign::Keypair,
    args: &Args,
    current: &SignedTreeHead,
) -> anyhow::Result<Inclusion> {
    let genesis = node.genesis.clone();
    let (tree_size, root) = (current.head.tree_size, current.head.root_hash);
    let mut result = Inclusion { checked: 0, newer: false, more: false };
    let mut after_sequence = 0u64;
    let mut seen = 0u32;
    let mut progress = ProgressLine::new();
    loop {
        if seen >= args.limit {
            result.more = true;
            break;
        }
        let page_size = PAGE_SIZE_MAX.min(args.limit - seen);
        let request = pb::ListEntriesRequest { after_sequence, page_size, ..Default::default() };
        let page = node.list_entries(key, &args.account, request).await?;
        if page.entries.len() > page_size as usize {
            bail!("the node sent {} entries for a page of {page_size}", page.entries.len());
        }
        if page.entries.is_empty() && page.next_after_sequence.is_some() {
            bail!("the node sent an empty page that is not the last one");
        }
        for listed in page.entries {
            let sequence = listed.sequence;
            if sequence <= after_sequence {
                bail!("the node listed entry {sequence} after entry {after_sequence}: a history is in order");
            }
            after_sequence = sequence;
            seen += 1;
            let invalid = |detail: String| {
                anyhow!(
                    "the node lists an invalid entry {sequence} under account '{}': {detail}",
                    args.account
                )
            };
            // The account's view of the entry: of a clearing run, its own part, proven to be
            // in the entry; the view hashes to the entry's own hash.
            let entry = EntryView::try_from(listed).map_err(|r| invalid(r.message("", 0)))?;
            verify_envelope(&genesis, &entry.entry.envelope).map_err(|r| invalid(r.message("", 0)))?;
            let op =
                cercle_core::body::decode(&entry.entry.envelope.body).map_err(|e| invalid(e.to_string()))?;
            if !entry.concerns(&op, &args.account) {
                return Err(invalid("it does not concern the account".into()));
            }
            if sequence > tree_size {
                // Accepted after the tree head was signed: the next check covers it.
                result.newer = true;
                continue;
            }
            let (proof, proved_entry) = node.inclusion_proof(key, sequence, tree_size).await?;
            let not_in_log = |reason: String| {
                fail(
                    Kind::HistoryRewritten,
                    format!(
                        "ENTRY NOT IN THE LOG: entry {sequence} of '{}' (hash {}), as the node lists it, is not in the log of {} the node signed: {reason}",
                        args.account,
                        hex::encode(entry.hash()),
                        entries(tree_size)
                    ),
                )
            };
            if let Some(proved) = proved_entry
                && proved.entry_hash != entry.hash()
            {
                return Err(not_in_log("the proof is for another entry of that number".into()));
            }
            verify_inclusion(&entry.hash(), sequence - 1, tree_size, &proof, &root)
                .map_err(|e| not_in_log(e.to_string()))?;
            result.checked += 1;
            progress.show("proving", result.checked, u64::from(args.limit).min(tree_size));
        }
        match page.next_after_sequence {
            // Every page moves forward, so the loop ends.
            Some(next) if next >= after_sequence => after_sequence = next,
            Some(_) => bail!("the node's next page starts before entry {after_sequence}"),
            None => break,
        }
    }
    progress.clear();
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_lives_under_xdg_state_home_or_home() {
        let ledger = LedgerId([0xab; 16]);
        let id = "abababababababababababababababab";
        let check = |xdg: Option<&str>, home: Option<&str>, expected: Option<String>| {
            let got = default_state_path(xdg.map(OsString::from), home.map(OsString::from), &ledger);
            assert_eq!(got, expected.map(PathBuf::from), "XDG_STATE_HOME={xdg:?} HOME={home:?}");
        };
        check(Some("/var/state"), Some("/home/a"), Some(format!("/var/state/cercle/{id}.json")));
        check(None, Some("/home/a"), Some(format!("/home/a/.local/state/cercle/{id}.json")));
        // A relative XDG_STATE_HOME is invalid and ignored, as the spec says.
        check(Some("rel/state"), Some("/home/a"), Some(format!("/home/a/.local/state/cercle/{id}.json")));
        check(None, None, None);
        check(None, Some(""), None);
    }
}
