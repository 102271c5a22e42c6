//! The checkpointer: writes what durable groups changed to the store's state database, in
//! one sled batch every `CHECKPOINT_INTERVAL` (or sooner when much has changed), on its
//! own thread, never in the way of the log.
//!
//! It receives each durable group's changes (`Applied`) after the view has them; it keeps
//! the latest version of every record, and each account's new entries, until it writes
//! them. After a write the view forgets what the checkpoint now holds. A failed write
//! (a full disk) is retried at the next interval with everything still pending; while
//! too much is pending, or the state database could not be opened at all (a start on a
//! full disk), the writer refuses new operations (`stuck`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Instant;

use cercle_core::{Account, AccountId, FeeSchedule, Groups, Invoice, InvoiceId, Roles};
use cercle_limits::{CHECKPOINT_ENTRIES_MAX, CHECKPOINT_INTERVAL, CHECKPOINT_QUEUE_MAX, PENDING_ENTRIES_MAX};
use cercle_store::{Checkpoint, CheckpointHead, Store};

use crate::view::{Applied, View};

/// What has changed since the last checkpoint.
#[derive(Default)]
struct Pending {
    head: Option<CheckpointHead>,
    accounts: HashMap<AccountId, Account>,
    invoices: HashMap<InvoiceId, Invoice>,
    history: BTreeMap<AccountId, Vec<u64>>,
    /// The roles, when a group changed them.
    roles: Option<Roles>,
    /// The member groups, when a group changed them.
    groups: Option<Groups>,
    /// The fee schedule, when a group set one.
    fees: Option<FeeSchedule>,
    /// The last period charged, when a group charged one.
    last_charge: Option<cercle_core::charges::LastCharge>,
    entries: u64,
    since: Option<Instant>,
}

impl Pending {
    fn take(&mut self, applied: Applied) {
        if let Some(head) = applied.head {
            let from = self.head.map_or(0, |h| h.head.size);
            self.entries += head.size.saturating_sub(from);
            self.head = Some(CheckpointHead {
                head,
                accounts: applied.account_count,
                invoices: applied.invoice_count,
            });
        }
        for a in applied.accounts {
            self.accounts.insert(a.id.clone(), a);
        }
        if let Some(roles) = applied.roles {
            self.roles = Some(roles);
        }
        if let Some(groups) = applied.groups {
            self.groups = Some(groups);
        }
        if let Some(fees) = applied.fees {
            self.fees = Some(fees);
        }
        if let Some(last) = applied.last_charge {
            self.last_charge = Some(last);
        }
        for i in applied.invoices {
            self.invoices.insert(i.id, i);
        }
        for (account, sequence) in applied.history {
            let list = self.history.entry(account).or_default();
            if list.last().is_none_or(|&last| last < sequence) {
                list.push(sequence);
            }
        }
        self.since.get_or_insert_with(Instant::now);
    }

    fn due(&self) -> bool {
        self.entries >= CHECKPOINT_ENTRIES_MAX
            || self.since.is_some_and(|t| t.elapsed() >= CHECKPOINT_INTERVAL)
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            head: self.head,
            accounts: self.accounts.values().cloned().collect(),
            invoices: self.invoices.values().cloned().collect(),
            history: self.history.iter().map(|(a, s)| (a.clone(), s.clone())).collect(),
            roles: self.roles.clone(),
            groups: self.groups.clone(),
            fees: self.fees.clone(),
            last_charge: self.last_charge,
        }
    }
}

/// Writes `applied` as a checkpoint now, on this thread (`cercle-node rebuild`, with no node
/// running), and flushes the state database.
pub fn write_now(store: &Store, applied: Applied) -> Result<(), cercle_store::StoreError> {
    let mut pending = Pending::default();
    pending.take(applied);
    store.write_checkpoint(&pending.checkpoint())?;
    store.close()
}

/// Starts the checkpointer. `first` is what is pending already (the log replayed past the
/// last checkpoint at start-up), written at once. The thread ends, after a last checkpoint, when every
/// sender is dropped.
pub fn spawn(
    store: Arc<Store>,
    view: Arc<View>,
    first: Applied,
    stuck: Arc<AtomicBool>,
) -> std::io::Result<(SyncSender<Applied>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(CHECKPOINT_QUEUE_MAX);
    let thread = std::thread::Builder::new().name("cercle-checkpoint".into()).spawn(move || {
        let mut pending = Pending::default();
        pending.take(first);
        // What start-up rolled forward (the whole log, after a rebuild) is checkpointed at
        // once, so the next start does not have to do it again.
        write(&store, &view, &mut pending, &stuck);
        run(&store, &view, &rx, &mut pending, &stuck);
    })?;
    Ok((tx, thread))
}

fn run(store: &Store, view: &View, rx: &Receiver<Applied>, pending: &mut Pending, stuck: &AtomicBool) {
    loop {
        match rx.recv_timeout(CHECKPOINT_INTERVAL / 4) {
            Ok(applied) => pending.take(applied),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                write(store, view, pending, stuck);
                return;
            }
        }
        if pending.due() {
            write(store, view, pending, stuck);
        }
    }
}

fn write(store: &Store, view: &View, pending: &mut Pending, stuck: &AtomicBool) {
    if pending.since.is_none() {
        return;
    }
    match store.write_checkpoint(&pending.checkpoint()) {
        Ok(()) => {
            if let Some(h) = pending.head {
                view.checkpointed(h.head.size);
            }
            *pending = Pending { head: pending.head, ..Pending::default() };
            stuck.store(false, Ordering::Release);
        }
        Err(e) => {
            tracing::warn!(error = %e, pending_entries = pending.entries, "could not write a checkpoint; it will be retried");
            // Retry at the next interval, not at once.
            pending.since = Some(Instant::now());
            // A state database not open (the node started on a full disk) holds nothing:
            // operations wait until it is, rather than pile up in memory.
            if pending.entries > PENDING_ENTRIES_MAX || !store.derived_is_open() {
                stuck.store(true, Ordering::Release);
            }
        }
    }
}
