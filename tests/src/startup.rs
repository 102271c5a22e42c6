//! What the node did at each start to bring its state in line with its log, read from its
//! log, which the harness has it write as JSON lines (`CERCLE_LOG_FORMAT=json`): a crash
//! test can then assert that every recovery path ran, not only that the counts add up.

use std::path::Path;

use serde_json::Value;

/// How one start brought the state (sled) in line with the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateRecovery {
    /// The state already matched the log.
    Verified,
    /// The state lagged behind the log by this many entries, which were applied again.
    RolledForward { entries: u64 },
    /// The state was built again from the whole log.
    Rebuilt,
}

/// One start of the node, as its log tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Startup {
    pub state: StateRecovery,
    /// Entries in the log once the node was ready.
    pub entries: u64,
    /// Bytes of a torn tail (an interrupted, never acknowledged write) cut off the log.
    pub torn_tail_cut_bytes: Option<u64>,
    /// The state database could not be used, and was moved aside before the rebuild.
    pub state_moved_aside: bool,
}

/// Every record of a JSON-lines log, in order. Lines that are not JSON objects (a panic
/// message, say) are left out.
pub fn records(log_path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(log_path)
        .unwrap_or_else(|e| panic!("cannot read the node's log {}: {e}", log_path.display()));
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(Value::is_object)
        .collect()
}

/// The records logged at level ERROR.
pub fn errors(log_path: &Path) -> Vec<Value> {
    records(log_path).into_iter().filter(|r| r["level"] == "ERROR").collect()
}

/// Every start the log records, in order. A start ends with the line that says how the
/// state was found (the node logs one on every start); what it recovered before that line
/// belongs to it.
pub fn startups(log_path: &Path) -> Vec<Startup> {
    let mut startups = Vec::new();
    let mut torn_tail_cut_bytes = None;
    let mut state_moved_aside = false;
    for record in records(log_path) {
        let message = record["message"].as_str().unwrap_or_default();
        let number = |field: &str| {
            record[field].as_u64().unwrap_or_else(|| panic!("no number {field} in the log record {record}"))
        };
        let state = match message {
            "state verified against the log" => StateRecovery::Verified,
            "state rolled forward from the log" => {
                StateRecovery::RolledForward { entries: number("rolled_forward") }
            }
            "state rebuilt from the log" => StateRecovery::Rebuilt,
            _ => {
                if message.starts_with("the log ends in a torn write") {
                    torn_tail_cut_bytes = Some(number("cut_bytes"));
                } else if message.starts_with("the state database cannot be used") {
                    state_moved_aside = true;
                }
                continue;
            }
        };
        startups.push(Startup {
            state,
            entries: number("entries"),
            torn_tail_cut_bytes: torn_tail_cut_bytes.take(),
            state_moved_aside: std::mem::take(&mut state_moved_aside),
        });
    }
    startups
}

/// Damages the node's state database in `state_dir` (the node is stopped): its sled
/// configuration becomes unreadable, so sled cannot open it and the node must set it aside
/// and rebuild the state from the log.
pub fn damage_state(state_dir: &Path) {
    let conf = state_dir.join("conf");
    assert!(conf.is_file(), "no sled configuration at {}", conf.display());
    let mut file = std::fs::File::create(&conf).expect("open the state's configuration");
    std::io::Write::write_all(&mut file, b"damaged by a test: this is not a sled configuration\n")
        .expect("damage the state's configuration");
    file.sync_all().expect("sync the damage");
}
