//! Start-up: the ledger brought back from the store, by driving the core over the log.
//!
//! The store reads and checks every record (checksums, the hash chain, the witnesses) and
//! indexes the log; it decides nothing. Here, the state's last checkpoint is loaded (every
//! record checked), the operation ids still within their validity window are remembered
//! from the log, and the entries past the checkpoint are replayed with the core, each
//! checked against its recorded outcome. When there is no checkpoint, or it is damaged,
//! or the log does not replay from it, the state is rebuilt from genesis; a log that does
//! not replay from genesis either is refused, naming the entry.

use std::path::Path;
use std::time::Instant;

use cercle_core::{AccountId, Entry, Genesis, IdRecord, Ledger, OperationId, OperationIds, Replayer, State};
use cercle_store::{CheckpointHead, OpenReport, RecordInfo, Store, StoreError};

use crate::NodeError;
use crate::view::Applied;

/// What start-up did to the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateOutcome {
    /// Loaded from the checkpoint at `checkpoint` entries, then `replayed` entries of the
    /// log on top of it.
    Resumed { checkpoint: u64, replayed: u64 },
    /// Rebuilt from genesis, and why.
    Rebuilt { reason: String },
}

/// What start-up found and did, for the start-up log line.
#[derive(Debug, Clone)]
pub struct RecoveryReport {
    pub open: OpenReport,
    pub outcome: StateOutcome,
    pub elapsed_ms: u64,
    pub phases: Phases,
}

/// Where start-up's time went, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Phases {
    /// Opening the store: every record of the log read and checked, the operation ids
    /// of the idempotency window rebuilt.
    pub open_ms: u64,
    /// Loading the state's checkpoint (or, after a rebuild, nothing).
    pub snapshot_ms: u64,
    /// Replaying the log past the checkpoint (or all of it, for a rebuild).
    pub replay_ms: u64,
}

/// A ledger brought back, with what its state database still lacks.
pub struct Recovered {
    pub store: Store,
    pub ledger: Ledger,
    /// What the log holds past the state's checkpoint (all of it after a rebuild): the
    /// first checkpoint to write.
    pub pending: Applied,
    pub report: RecoveryReport,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RecoverOptions {
    /// Check every entry's signature again (`cercle-node rebuild`).
    pub verify_signatures: bool,
    /// Ignore the checkpoint and rebuild the state from genesis.
    pub rebuild: bool,
}

/// Opens the ledger in `dir` and brings its state up to the end of the log.
pub fn recover(dir: &Path, options: RecoverOptions) -> Result<Recovered, NodeError> {
    let started = Instant::now();
    let mut remembered: Vec<(OperationId, IdRecord)> = Vec::new();
    let mut checkpoint: Option<CheckpointHead> = None;
    let (store, open) = Store::open(dir, |head| {
        checkpoint = head;
        let upto = head.map_or(0, |h| h.head.size);
        // The ids the ledger remembered at the checkpoint: every operation up to it whose
        // window had not passed by then, built in one go once the scan is done.
        let remembered = &mut remembered;
        move |record: RecordInfo<'_>| {
            if record.sequence <= upto {
                let identity = Entry::identity(record.payload).map_err(|e| StoreError::Corrupt {
                    key: format!("entry {}", record.sequence),
                    reason: e.to_string(),
                })?;
                let id = IdRecord {
                    fingerprint: identity.fingerprint,
                    valid_until_ms: identity.valid_until_ms,
                    sequence: record.sequence,
                };
                remembered.push((identity.operation_id, id));
            }
            Ok(())
        }
    })?;
    let ids = OperationIds::from_log(remembered, checkpoint.map_or(0, |h| h.head.timestamp_ms));
    let genesis = store.genesis().clone();
    let mut phases = Phases { open_ms: started.elapsed().as_millis() as u64, ..Phases::default() };
    let resumed = if options.rebuild {
        Err("asked to rebuild".to_string())
    } else if let Some(why) = &open.state_set_aside {
        Err(format!("the state database was set aside: {why}"))
    } else {
        resume(&store, &genesis, ids, options, &mut phases)
    };
    let (ledger, pending, outcome) = match resumed {
        Ok((ledger, pending, outcome)) => (ledger, pending, outcome),
        Err(reason) => {
            if !options.rebuild {
                tracing::warn!(%reason, "rebuilding the state from the log");
            }
            store.clear_derived()?;
            let replaying = Instant::now();
            let (ledger, pending) = rebuild(&store, &genesis, options)?;
            phases.replay_ms = replaying.elapsed().as_millis() as u64;
            (ledger, pending, StateOutcome::Rebuilt { reason })
        }
    };
    let report = RecoveryReport { open, outcome, elapsed_ms: started.elapsed().as_millis() as u64, phases };
    Ok(Recovered { store, ledger, pending, report })
}

/// The checkpoint, then the log past it; an error says why the state must be rebuilt.
fn resume(
    store: &Store,
    genesis: &Genesis,
    ids: OperationIds,
    options: RecoverOptions,
    phases: &mut Phases,
) -> Result<(Ledger, Applied, StateOutcome), String> {
    let loading = Instant::now();
    let ledger = match store.snapshot() {
        Ok(Some(snapshot)) => {
            let mut state = State::from_parts(genesis, snapshot.accounts, snapshot.invoices);
            if let Some(roles) = snapshot.roles {
                state = state.with_roles(roles);
            }
            if let Some(groups) = snapshot.groups {
                state = state.with_groups(groups);
            }
            state = state.with_fees(snapshot.fees).with_last_charge(snapshot.last_charge);
            Ledger::from_parts(genesis.clone(), state, snapshot.head.head, ids)
        }
        // A node stopped before its first checkpoint: the log rolls forward from genesis.
        Ok(None) if store.derived_is_empty() => Ledger::new(genesis.clone()),
        Ok(None) => return Err("the state database has records but no checkpoint".into()),
        Err(e) => return Err(format!("the state database is damaged: {e}")),
    };
    let from = ledger.head().size;
    if from > store.size() {
        return Err(format!("the checkpoint is at entry {from}, beyond the log's {}", store.size()));
    }
    phases.snapshot_ms = loading.elapsed().as_millis() as u64;
    let replaying = Instant::now();
    let mut replayer = Replayer::resume(ledger, options.verify_signatures);
    let pending = replay(store, &mut replayer, from + 1)
        .map_err(|e| format!("the log does not replay from the checkpoint: {e}"))?;
    phases.replay_ms = replaying.elapsed().as_millis() as u64;
    let outcome = StateOutcome::Resumed { checkpoint: from, replayed: store.size() - from };
    Ok((replayer.into_ledger(), pending, outcome))
}

/// The ledger from genesis, every entry of `store` replayed (signatures checked again when
/// asked), without touching the state database: what an auditor's replay computes.
pub fn replay_from_genesis(store: &Store, verify_signatures: bool) -> Result<Ledger, NodeError> {
    let mut replayer = Replayer::new(store.genesis().clone(), verify_signatures);
    replay(store, &mut replayer, 1)?;
    Ok(replayer.into_ledger())
}

/// The state from genesis, every entry replayed.
fn rebuild(
    store: &Store,
    genesis: &Genesis,
    options: RecoverOptions,
) -> Result<(Ledger, Applied), NodeError> {
    let mut replayer = Replayer::new(genesis.clone(), options.verify_signatures);
    let mut pending = replay(store, &mut replayer, 1)?;
    let ledger = replayer.into_ledger();
    // Everything is pending: the first checkpoint writes the whole state.
    pending.accounts = ledger.state().accounts().cloned().collect();
    pending.invoices = ledger.state().invoices().cloned().collect();
    Ok((ledger, pending))
}

/// Replays the log from entry `from` to its end, collecting what the state database lacks.
fn replay(store: &Store, replayer: &mut Replayer, from: u64) -> Result<Applied, NodeError> {
    let mut pending = Applied::default();
    let mut accounts: std::collections::BTreeSet<AccountId> = Default::default();
    let mut invoices: std::collections::BTreeSet<cercle_core::InvoiceId> = Default::default();
    for sequence in from..=store.size() {
        let entry = store
            .entry(sequence)?
            .ok_or_else(|| NodeError::Invalid(format!("entry {sequence} is indexed but cannot be read")))?;
        let effects = replayer.replay(&entry)?;
        for account in effects.touched {
            pending.history.push((account.clone(), sequence));
            accounts.insert(account);
        }
        invoices.extend(effects.invoices);
    }
    let ledger = replayer.ledger();
    let state = ledger.state();
    pending.head = Some(*ledger.head());
    pending.accounts = accounts.iter().map(|a| crate::writer::touched_account(state, a)).collect();
    pending.invoices = invoices.iter().map(|i| crate::writer::touched_invoice(state, i)).collect();
    pending.account_count = state.account_count() as u64;
    pending.invoice_count = state.invoice_count() as u64;
    // Always: a role change replayed here may undo one the checkpoint holds.
    pending.roles = Some(state.roles().clone());
    // Always, for the same reason: a rebuilt state's groups replace the checkpoint's.
    pending.groups = Some(state.groups().clone());
    pending.fees = state.fees().cloned();
    pending.last_charge = state.last_charge().copied();
    Ok(pending)
}
