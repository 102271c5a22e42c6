//! `cercle info`: what the node says of its ledger, with no key needed: its id, currency,
//! the node key (which a firm or a bank pins to verify statements and tree heads), the
//! administrators' and auditors' keys as they stand now, the quorum of administrators a
//! sensitive act needs, and the size of the log.
//!
//! The node key printed here is the node's own word: pin it once, from a source you trust
//! (the association publishes it), and compare it with what `info` says afterwards. After a
//! rotation (`cercle admin node-key rotate`) the node key history lists each key and the
//! first tree size it signs; `cercle audit verify` finds the same history in the log.

use cercle_core::PublicKey;
use serde_json::json;

use crate::client::Node;
use crate::cmd::verifiable::entries;
use crate::{Global, output};

pub async fn run(global: &Global) -> anyhow::Result<()> {
    let node = Node::connect(&global.node).await?;
    let g = &node.genesis;
    let now = &node.governance;
    let hex = |keys: &[PublicKey]| keys.iter().map(PublicKey::to_hex).collect::<Vec<_>>();
    let money = |minor: i64| cercle_core::format_with_currency(minor, g.exponent, &g.currency);
    if global.json {
        return output::emit_ok(json!({
            "node": node.url(),
            "ledger_id": g.ledger_id.to_string(),
            "genesis_hash": hex::encode(g.hash()),
            "currency": g.currency,
            "exponent": g.exponent,
            "node_key": g.node_key.to_hex(),
            "admin_keys": hex(&now.admin_keys),
            "auditor_keys": hex(&now.auditor_keys),
            "quorum": now.quorum,
            "quorum_limit_above_minor": now.limit_above_minor,
            "genesis_admin_keys": hex(&g.admin_keys),
            "genesis_auditor_keys": hex(&g.auditor_keys),
            "genesis_quorum": g.quorum,
            "day_offset": cercle_core::genesis::format_day_offset(g.day_offset_minutes),
            "log_size": node.log_size,
            "fees": node.fees.as_ref().map(crate::cmd::admin::fees::schedule_json),
            "node_key_in_force": node.node_keys.current().to_hex(),
            "node_keys": node_keys_json(&node.node_keys),
        }));
    }
    let list = |keys: &[PublicKey]| if keys.is_empty() { "none".to_string() } else { hex(keys).join(", ") };
    let rows = [
        ("node", node.url().to_string()),
        ("ledger", g.ledger_id.to_string()),
        ("genesis hash", hex::encode(g.hash())),
        ("currency", format!("{} ({} decimals)", output::one_line(&g.currency), g.exponent)),
        ("node key", format!("{} (the genesis's; pin it: statement verify --node-key)", g.node_key)),
        ("node keys", describe_node_keys(&node.node_keys)),
        ("admin keys", list(&now.admin_keys)),
        ("auditor keys", list(&now.auditor_keys)),
        (
            "quorum",
            format!(
                "{} of {} administrators sign a sensitive act{}",
                now.quorum,
                now.admin_keys.len(),
                now.limit_above_minor
                    .map(|l| format!(", and any credit limit above {}", money(l)))
                    .unwrap_or_default()
            ),
        ),
        (
            "ledger day",
            format!(
                "from midnight UTC{} (a fixed offset: payer keys' daily caps start again then)",
                cercle_core::genesis::format_day_offset(g.day_offset_minutes)
            ),
        ),
        ("log", entries(node.log_size)),
        ("fees", node.fees.as_ref().map_or_else(|| "none".to_string(), |f| f.describe(&money))),
    ];
    let text: Vec<String> = rows.iter().map(|(label, value)| format!("{label:<14}{value}")).collect();
    output::emit(&text.join("\n"))
}

/// The node key history as JSON: each key and the first tree size it signs.
pub fn node_keys_json(keys: &cercle_core::NodeKeys) -> serde_json::Value {
    keys.eras().iter().map(|e| json!({"from_size": e.from_size, "key": e.key.to_hex()})).collect()
}

/// The node key history in one line: "never rotated", or each key from its first size.
pub fn describe_node_keys(keys: &cercle_core::NodeKeys) -> String {
    if !keys.is_rotated() {
        return "never rotated: the genesis's key signs every tree head".into();
    }
    keys.eras()
        .iter()
        .map(|e| format!("{} from tree size {}", e.key, e.from_size))
        .collect::<Vec<_>>()
        .join("; ")
}
