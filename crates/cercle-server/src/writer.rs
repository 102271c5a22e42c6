//! The single writer: executes operations in order, hands each group to the syncer, and
//! never waits on the disk or on the clearing solver.
//!
//! Two threads. The **executor** takes every request waiting (up to `WRITE_BATCH_MAX`),
//! executes them one after the other on the in-memory ledger, encodes the accepted
//! entries, and hands the group to the **syncer**, then goes on with the next group: the
//! `fdatasync` of group N overlaps the execution of group N+1. The syncer appends each
//! group with one write and one `fdatasync`, publishes its changes to the view, replies to
//! its submitters, and passes the changes to the checkpointer. A reply — receipt or
//! rejection — goes out only after its group, and every group before it, is durable.
//!
//! When a group cannot be made durable (the disk is full, or an I/O error), the syncer
//! cuts the log back, answers the group's submitters (and those of any later group, which
//! was executed on top of it), and tells the executor, which undoes those groups in memory
//! (`Ledger::undo_to`, no replay) and goes on. A full disk is usually seen before anything
//! is written: the executor reserves each group's bytes in the log file first, and refuses
//! the group (`disk full: N bytes free at PATH`) when it cannot. Writes resume by
//! themselves once there is room.
//!
//! Handlers reserve a place in the queue (`WriterHandle::reserve`, see `admission`) before
//! they verify anything; each request carries its place (`Slot`) inside its `Reply`, so the
//! place is free again only once the request is answered, whatever path it took.
//!
//! A clearing run is solved away from the executor: the executor takes a snapshot of what
//! the run reads (`ClearingSnapshot`: a pointer per open invoice, a copy of the accounts)
//! and notes what every entry changes from then on (`ChangesSince`); a planner thread
//! solves the run on the snapshot and checks it there; the executor confirms the plan
//! against the changes (`PlannedRun::still_holds`, in time proportional to them) and
//! applies it in a group of its own. If the plan no longer holds, the run is planned again
//! (`CLEARING_PLANS_MAX` times, then solved on the executor).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};

use cercle_core::clearing::{ChangesSince, ClearingSnapshot, PlannedRun};
use cercle_core::merkle::Hash;
use cercle_core::{
    AccountId, BalanceAfter, ClearingInput, ClearingSummary, Entry, Envelope, Executed, Genesis, InvoiceId,
    Ledger, Mark, OpKind, Operation, OperationId, PublicKey, Rejection,
};
use cercle_limits::{CLEARING_PLANS_MAX, CONTROL_MESSAGES_MAX, WRITE_BATCH_MAX, WRITE_QUEUE_MAX};
use cercle_store::Store;
use tokio::sync::{mpsc, oneshot};

use crate::admission::{QueueRoom, Reservation, Slot};
use crate::error::ServiceError;
use crate::metrics::Metrics;
use crate::view::{Applied, View};

/// What the submitter learns about an accepted operation.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub entry: Entry,
    pub operation_id: OperationId,
    /// The operation had been accepted before; this is its original entry.
    pub duplicate: bool,
    /// What a clearing run did (not on a duplicate's receipt).
    pub clearing: Option<ClearingSummary>,
    /// The entry's balances that the submitting key may read: all a receipt shows of
    /// balances (a clearing run's are in its record's parts).
    pub balances_shown: Vec<BalanceAfter>,
    /// A transfer held for approval: its pending payment's id.
    pub pending: Option<u64>,
}

/// Where an operation's answer goes, and the place in the queue it holds until then.
struct Reply {
    tx: oneshot::Sender<Result<Receipt, ServiceError>>,
    _slot: Slot,
}

impl Reply {
    /// Answers; the place is freed with the reply. A submitter that went away is not an error.
    fn send(self, answer: Result<Receipt, ServiceError>) {
        let _ = self.tx.send(answer);
    }
}

/// A request to the writer.
enum Request {
    Op {
        envelope: Envelope,
        op: Operation,
        reply: Reply,
    },
    /// A copy of what a clearing run would read now (`PlanClearing`).
    Snapshot(oneshot::Sender<ClearingSnapshot>),
    /// A clearing run solved by a planner, back for the writer to check and apply.
    Planned {
        parked: Parked,
        result: Result<Box<PlannedRun>, Rejection>,
    },
    /// The node is stopping: take nothing more, finish what is queued.
    Stop,
}

/// A clearing run waiting for its plan.
struct Parked {
    envelope: Envelope,
    op: Operation,
    reply: Reply,
    plans: u32,
}

#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Request>,
    room: QueueRoom,
}

fn stopping() -> ServiceError {
    ServiceError::Unavailable("the node is stopping; the operation was not executed: retry it".into())
}

/// The answer to an operation that found no place in the writer's queue.
pub fn queue_full() -> ServiceError {
    ServiceError::Busy(format!(
        "the node is busy: {WRITE_QUEUE_MAX} operations are waiting to be written; retry shortly"
    ))
}

impl WriterHandle {
    /// Reserves up to `wanted` places in the queue (see `admission`); `None` when the queue
    /// is full. Never waits.
    pub fn reserve(&self, wanted: usize) -> Option<Reservation> {
        self.room.reserve(wanted)
    }

    /// The queue's free places, as `reserve` sees them.
    pub fn room(&self) -> QueueRoom {
        self.room.clone()
    }

    /// Queues a verified, decoded operation in the place `slot` and waits for its outcome.
    pub async fn submit(
        &self,
        slot: Slot,
        envelope: Envelope,
        op: Operation,
    ) -> Result<Receipt, ServiceError> {
        let (tx, rx) = oneshot::channel();
        self.queue(Request::Op { envelope, op, reply: Reply { tx, _slot: slot } })?;
        rx.await.map_err(|_| ServiceError::Internal("the writer dropped a request".into()))?
    }

    /// Queues many operations, each in its place, and waits for all their outcomes, in order.
    pub async fn submit_many(
        &self,
        items: Vec<(Slot, Envelope, Operation)>,
    ) -> Vec<Result<Receipt, ServiceError>> {
        let waiting: Vec<_> = items
            .into_iter()
            .map(|(slot, envelope, op)| {
                let (tx, rx) = oneshot::channel();
                self.queue(Request::Op { envelope, op, reply: Reply { tx, _slot: slot } }).map(|()| rx)
            })
            .collect();
        let mut results = Vec::with_capacity(waiting.len());
        for rx in waiting {
            results.push(match rx {
                Err(e) => Err(e),
                Ok(rx) => rx
                    .await
                    .unwrap_or_else(|_| Err(ServiceError::Internal("the writer dropped a request".into()))),
            });
        }
        results
    }

    fn queue(&self, request: Request) -> Result<(), ServiceError> {
        // Every queued operation holds a place, and the channel has room for all of them
        // and for the writer's own messages, so `Full` does not happen; it is answered as
        // a full queue all the same.
        self.tx.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => queue_full(),
            mpsc::error::TrySendError::Closed(_) => stopping(),
        })
    }

    /// Tells the writer the node is stopping: it closes its queue (a request queued after
    /// this is answered UNAVAILABLE), executes and syncs what is queued already, answers
    /// it, and stops, whoever still holds a handle. Never waits.
    pub fn stop(&self) {
        // The channel keeps room for its control messages; if it is closed, the writer
        // is stopping already.
        let _ = self.tx.try_send(Request::Stop);
    }

    /// What a clearing run would read now, copied by the writer between two groups.
    pub async fn clearing_snapshot(&self) -> Result<ClearingSnapshot, ServiceError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Request::Snapshot(reply)).await.map_err(|_| stopping())?;
        rx.await.map_err(|_| ServiceError::Internal("the writer dropped a request".into()))
    }
}

/// What the syncer tells the executor.
#[derive(Debug, Default)]
struct Feedback {
    /// The mark after the last durable group: the journal before it can be forgotten.
    durable: Option<Mark>,
    /// A group could not be made durable: undo back to this mark.
    failed: Option<Mark>,
    /// Groups of an epoch below this are failed by the syncer (executed on a failed one).
    epoch: u64,
    /// Set when the syncer cannot go on at all.
    stopped: bool,
}

/// One operation's outcome, to send once its group is durable.
enum Outcome {
    Receipt(Box<Receipt>),
    /// A retry of the entry `sequence`, durable by the time the syncer answers.
    Duplicate {
        operation_id: OperationId,
        sequence: u64,
        signer: PublicKey,
    },
    Rejected(ServiceError),
}

/// An executed group on its way to the log.
struct Group {
    epoch: u64,
    before: Mark,
    after: Mark,
    entries: Vec<Vec<u8>>,
    hashes: Vec<Hash>,
    applied: Applied,
    /// Open invoices after the group, for the metrics.
    open_invoices: u64,
    replies: Vec<(Reply, Outcome)>,
}

/// The writer's threads and what they share.
pub struct Writer {
    pub handle: WriterHandle,
    pub executor: std::thread::JoinHandle<()>,
    pub syncer: std::thread::JoinHandle<()>,
}

/// Where the writer reports what it does, beyond its answers to submitters.
pub struct WriterReports {
    /// Each durable group, for the checkpointer.
    pub checkpoints: SyncSender<Applied>,
    /// Set by the checkpointer while the state database cannot be written.
    pub derived_stuck: Arc<AtomicBool>,
    /// Fires when the writer's threads end.
    pub stopped: oneshot::Sender<()>,
    pub metrics: Arc<Metrics>,
}

/// Starts the writer over `ledger` (already recovered from `store`). `clock` gives the
/// node's time in ms since the Unix epoch. The threads end when every `WriterHandle` is
/// dropped (after the last group is durable and answered), or when the log cannot be
/// written at all; `reports.stopped` then fires, so the node can stop serving.
pub fn spawn_writer(
    store: Arc<Store>,
    view: Arc<View>,
    ledger: Ledger,
    clock: fn() -> u64,
    reports: WriterReports,
) -> std::io::Result<Writer> {
    let WriterReports { checkpoints, derived_stuck, stopped, metrics } = reports;
    // Room for every place, and for the snapshots and plans that travel the same queue.
    let (tx, rx) = mpsc::channel(WRITE_QUEUE_MAX + CONTROL_MESSAGES_MAX);
    let (to_syncer, from_executor) = std::sync::mpsc::sync_channel::<Group>(1);
    let feedback = Arc::new(Mutex::new(Feedback::default()));
    let syncer = {
        let (store, view, feedback, metrics) =
            (store.clone(), view.clone(), feedback.clone(), metrics.clone());
        std::thread::Builder::new().name("cercle-syncer".into()).spawn(move || {
            Syncer { store, view, feedback, checkpoints, metrics }.run(from_executor);
            let _ = stopped.send(());
        })?
    };
    let mut ledger = ledger;
    ledger.start_journal();
    // Planners hold only a weak handle: the queue closes when the last submitter goes.
    let executor_tx = tx.downgrade();
    let executor = std::thread::Builder::new().name("cercle-writer".into()).spawn(move || {
        let executor = Executor {
            store,
            ledger,
            clock,
            feedback,
            epoch: 0,
            to_syncer,
            derived_stuck,
            planner_tx: executor_tx,
            planning: false,
            changes: None,
            parked: std::collections::VecDeque::new(),
            metrics,
        };
        executor.run(rx);
    })?;
    Ok(Writer { handle: WriterHandle { tx, room: QueueRoom::new(WRITE_QUEUE_MAX) }, executor, syncer })
}

struct Executor {
    store: Arc<Store>,
    ledger: Ledger,
    clock: fn() -> u64,
    feedback: Arc<Mutex<Feedback>>,
    epoch: u64,
    to_syncer: SyncSender<Group>,
    derived_stuck: Arc<AtomicBool>,
    /// Where planners send their results (the writer's own queue).
    planner_tx: mpsc::WeakSender<Request>,
    /// A planner is running.
    planning: bool,
    /// What the executor changed since the running planner's snapshot: what its plan is
    /// confirmed against (`PlannedRun::still_holds`), in time proportional to the changes.
    changes: Option<ChangesSince>,
    /// Clearing runs waiting for a planner.
    parked: std::collections::VecDeque<Parked>,
    metrics: Arc<Metrics>,
}

impl Executor {
    fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut ops: Vec<(Envelope, Operation, Reply)> = Vec::with_capacity(WRITE_BATCH_MAX);
        while let Some(first) = rx.blocking_recv() {
            let mut next = Some(first);
            while let Some(request) = next.take() {
                match request {
                    Request::Snapshot(reply) => {
                        let _ = reply.send(ClearingSnapshot::take(self.ledger.state()));
                    }
                    Request::Planned { parked, result } => {
                        self.flush(&mut ops);
                        self.apply_planned(parked, result);
                    }
                    Request::Op { envelope, op, reply } if matches!(op.kind, OpKind::RunClearing(_)) => {
                        self.flush(&mut ops);
                        self.clearing_arrived(envelope, op, reply);
                    }
                    // A periodic charge's entry, or a limit rule's, may be far larger than an
                    // operation's (a part per firm): like a clearing run's, it is written alone
                    // in its group, so a torn tail is still one large entry or a group of small
                    // ones.
                    Request::Op { envelope, op, reply }
                        if matches!(op.kind, OpKind::ChargeFees { .. } | OpKind::ApplyLimitRule(_)) =>
                    {
                        self.flush(&mut ops);
                        ops.push((envelope, op, reply));
                        self.flush(&mut ops);
                    }
                    Request::Op { envelope, op, reply } => ops.push((envelope, op, reply)),
                    Request::Stop => {
                        tracing::info!("the writer takes no more operations; finishing those queued");
                        rx.close();
                    }
                }
                if ops.len() < WRITE_BATCH_MAX {
                    next = rx.try_recv().ok();
                }
            }
            self.flush(&mut ops);
            if self.feedback().stopped {
                break;
            }
        }
        // Every handle is gone: the syncer finishes what it has, then stops. Clearing runs
        // still waiting for a plan are not executed.
        for parked in self.parked.drain(..) {
            parked.reply.send(Err(stopping()));
        }
        tracing::info!("writer stopped");
    }

    fn feedback(&self) -> std::sync::MutexGuard<'_, Feedback> {
        self.feedback.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes what the syncer said: forgets the journal of durable groups, undoes failed ones.
    fn take_feedback(&mut self) {
        let (durable, failed, epoch) = {
            let mut f = self.feedback();
            (f.durable.take(), f.failed.take(), f.epoch)
        };
        if let Some(mark) = failed {
            self.ledger.undo_to(mark);
            self.undone();
            self.epoch = epoch;
        } else if let Some(mark) = durable {
            self.ledger.forget_before(mark);
        }
    }

    /// Why writes are refused now, if they are.
    fn refusal(&self) -> Option<ServiceError> {
        if self.derived_stuck.load(Ordering::Acquire) {
            self.metrics.disk_full.set(1);
            return Some(ServiceError::DiskFull(format!(
                "disk full: {} bytes free at {}; the node cannot write its state database; operations resume once there is room",
                self.store.free_bytes().unwrap_or(0),
                self.store.dir().display()
            )));
        }
        None
    }

    /// Executes the operations in hand as one group and sends it to the syncer.
    fn flush(&mut self, ops: &mut Vec<(Envelope, Operation, Reply)>) {
        if ops.is_empty() {
            return;
        }
        self.take_feedback();
        if let Some(e) = self.refusal() {
            for (_, _, reply) in ops.drain(..) {
                reply.send(Err(e.clone()));
            }
            return;
        }
        let now_ms = (self.clock)();
        let mut group = self.new_group();
        for (envelope, op, reply) in ops.drain(..) {
            let outcome = self.execute(now_ms, envelope, &op, ClearingInput::Propose, &mut group);
            group.replies.push((reply, outcome));
        }
        self.send(group);
    }

    fn new_group(&self) -> Group {
        let mark = self.ledger.mark();
        Group {
            epoch: self.epoch,
            before: mark,
            after: mark,
            entries: Vec::new(),
            hashes: Vec::new(),
            applied: Applied::default(),
            open_invoices: 0,
            replies: Vec::new(),
        }
    }

    /// Executes one operation into `group`.
    fn execute(
        &mut self,
        now_ms: u64,
        envelope: Envelope,
        op: &Operation,
        clearing: ClearingInput<'_>,
        group: &mut Group,
    ) -> Outcome {
        let signer = envelope.signer();
        let g: &Genesis = self.ledger.genesis();
        let (currency, exponent) = (g.currency.clone(), g.exponent);
        match self.ledger.execute_with(now_ms, envelope, op, clearing) {
            Err(rejection) => {
                let mut error = ServiceError::rejected(rejection, &currency, exponent);
                if let ServiceError::Rejected { rejection: Rejection::NotAccountKey { account }, message } =
                    &mut error
                    && self.ledger.state().account(account).is_some_and(|a| a.retired_keys.contains(&signer))
                {
                    message.push_str(&rotated_out(&signer, account));
                }
                Outcome::Rejected(error)
            }
            Ok(Executed::Duplicate { sequence }) => {
                Outcome::Duplicate { operation_id: op.id, sequence, signer }
            }
            Ok(Executed::Accepted { entry, effects }) => {
                if let Some(changes) = self.changes.as_mut() {
                    changes.add(&effects);
                }
                let state = self.ledger.state();
                let balances_shown = if effects.clearing.is_some() || effects.charges.is_some() {
                    let all: Vec<BalanceAfter> = effects.balance_changes.iter().map(|b| b.after()).collect();
                    state.readable_balances(&signer, &all)
                } else {
                    state.readable_balances(&signer, &entry.balances_after)
                };
                for account in &effects.touched {
                    group.applied.history.push((account.clone(), entry.sequence));
                }
                collect(&mut group.applied, state, &effects.touched, &effects.invoices);
                if matches!(op.kind, cercle_core::OpKind::SetRole(_) | cercle_core::OpKind::SetQuorum(_)) {
                    group.applied.roles = Some(state.roles().clone());
                }
                if effects.groups_changed {
                    group.applied.groups = Some(state.groups().clone());
                }
                if matches!(op.kind, cercle_core::OpKind::SetFees(_)) {
                    group.applied.fees = state.fees().cloned();
                }
                if effects.charges.is_some() {
                    group.applied.last_charge = state.last_charge().copied();
                }
                if matches!(op.kind, cercle_core::OpKind::RotateNodeKey { .. }) {
                    group.applied.node_keys = Some(state.node_keys().clone());
                }
                group.entries.push(entry.encode());
                group.hashes.push(entry.hash());
                let clearing = effects.clearing.map(|(_, summary)| summary);
                Outcome::Receipt(Box::new(Receipt {
                    entry,
                    operation_id: op.id,
                    duplicate: false,
                    clearing,
                    balances_shown,
                    pending: effects.pending,
                }))
            }
        }
    }

    /// Reserves the group's bytes in the log and sends it to the syncer; a group that does
    /// not fit on the disk is undone and refused.
    fn send(&mut self, mut group: Group) {
        group.after = self.ledger.mark();
        let state = self.ledger.state();
        group.applied.head = Some(*self.ledger.head());
        group.applied.account_count = state.account_count() as u64;
        group.applied.invoice_count = state.invoice_count() as u64;
        group.open_invoices = state.open_invoice_count() as u64;
        let bytes: u64 = group.entries.iter().map(|e| e.len() as u64 + 16).sum();
        if let Err(e) = self.store.reserve(bytes) {
            self.ledger.undo_to(group.before);
            self.undone();
            let error = disk_full(&self.store, &self.metrics, &e);
            for (reply, _) in group.replies.drain(..) {
                reply.send(Err(error.clone()));
            }
            return;
        }
        if self.to_syncer.send(group).is_err() {
            tracing::error!("the syncer has stopped; the writer stops too");
            self.feedback().stopped = true;
        }
    }

    /// A clearing run arrives: what does not need the solver is decided now (a duplicate,
    /// a conflict, its time window, the authority it needs); the rest is planned away from
    /// the writer.
    fn clearing_arrived(&mut self, envelope: Envelope, op: Operation, reply: Reply) {
        let now_ms = (self.clock)();
        match self.ledger.precheck(now_ms, &envelope, &op) {
            Ok(None) => {
                self.parked.push_back(Parked { envelope, op, reply, plans: 0 });
                self.plan_next();
            }
            Ok(Some(_)) | Err(_) => {
                self.take_feedback();
                let mut group = self.new_group();
                let outcome = self.execute(now_ms, envelope, &op, ClearingInput::Propose, &mut group);
                group.replies.push((reply, outcome));
                self.send(group);
            }
        }
    }

    /// Starts a planner for the first parked clearing run, if none is running.
    fn plan_next(&mut self) {
        if self.planning {
            return;
        }
        let Some(parked) = self.parked.pop_front() else { return };
        let OpKind::RunClearing(run) = &parked.op.kind else { return };
        let with_credit = run.with_credit;
        let snapshot = ClearingSnapshot::take(self.ledger.state());
        self.changes = Some(ChangesSince::default());
        let tx = self.planner_tx.clone();
        self.planning = true;
        let metrics = self.metrics.clone();
        let spawned = std::thread::Builder::new().name("cercle-planner".into()).spawn(move || {
            let started = std::time::Instant::now();
            let result = cercle_core::clearing::plan(snapshot, with_credit).map(Box::new);
            metrics.clearing_solve_seconds.observe(started.elapsed().as_secs_f64());
            match tx.upgrade() {
                Some(tx) => {
                    if let Err(mpsc::error::SendError(Request::Planned { parked, .. })) =
                        tx.blocking_send(Request::Planned { parked, result })
                    {
                        parked.reply.send(Err(stopping()));
                    }
                }
                None => {
                    parked.reply.send(Err(stopping()));
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a clearing planner");
            self.planning = false;
            self.changes = None;
        }
    }

    /// Changes were undone: a running planner's snapshot may be ahead of the state.
    fn undone(&mut self) {
        if let Some(changes) = self.changes.as_mut() {
            changes.undone();
        }
    }

    /// Applies a planned clearing run, in a group of its own, if its record still holds on
    /// the state as it is now; plans it again if not.
    fn apply_planned(&mut self, parked: Parked, result: Result<Box<PlannedRun>, Rejection>) {
        let held_since = std::time::Instant::now();
        self.planning = false;
        self.take_feedback();
        let changes = self.changes.take().unwrap_or_default();
        let Parked { envelope, op, reply, plans } = parked;
        let record = match result {
            Ok(record) => Some(record),
            Err(rejection) => {
                let g = self.ledger.genesis();
                let error = ServiceError::rejected(rejection, &g.currency, g.exponent);
                let mut group = self.new_group();
                group.replies.push((reply, Outcome::Rejected(error)));
                self.send(group);
                self.plan_next();
                return;
            }
        };
        if let Some(e) = self.refusal() {
            reply.send(Err(e));
            self.plan_next();
            return;
        }
        let now_ms = (self.clock)();
        let mut group = self.new_group();
        let input = match (&record, plans + 1 >= CLEARING_PLANS_MAX) {
            // The last attempt is solved here, on the state itself.
            (_, true) => ClearingInput::Propose,
            // Checked on the snapshot; confirmed here against what changed since.
            (Some(planned), false) => ClearingInput::Planned(planned, &changes),
            (None, false) => ClearingInput::Propose,
        };
        let outcome = self.execute(now_ms, envelope.clone(), &op, input, &mut group);
        if let Outcome::Rejected(ServiceError::Rejected {
            rejection: Rejection::ClearingInvalid { .. }, ..
        }) = &outcome
            && plans + 1 < CLEARING_PLANS_MAX
        {
            // The state moved under the plan: plan again, on the state as it is now.
            tracing::info!(attempt = plans + 1, "the clearing plan no longer holds; planning again");
            self.parked.push_front(Parked { envelope, op, reply, plans: plans + 1 });
            self.plan_next();
            return;
        }
        group.replies.push((reply, outcome));
        self.send(group);
        self.metrics.clearing_hold_seconds.observe(held_since.elapsed().as_secs_f64());
        self.plan_next();
    }
}

/// Adds the current versions of `accounts` and `invoices` to `applied`.
fn collect(
    applied: &mut Applied,
    state: &cercle_core::State,
    accounts: &[AccountId],
    invoices: &[InvoiceId],
) {
    applied.accounts.extend(accounts.iter().map(|a| touched_account(state, a)));
    applied.invoices.extend(invoices.iter().map(|i| touched_invoice(state, i)));
}

/// An account an accepted entry touched: it is in the state, or the checkpoint would
/// silently miss it.
pub(crate) fn touched_account(state: &cercle_core::State, id: &AccountId) -> cercle_core::Account {
    match state.account(id) {
        Some(a) => a.clone(),
        None => panic!("invariant broken: an entry touched account '{id}', which is not in the state"),
    }
}

/// An invoice an accepted entry changed: it is in the state, or the checkpoint would
/// silently miss it.
pub(crate) fn touched_invoice(state: &cercle_core::State, id: &InvoiceId) -> cercle_core::Invoice {
    match state.invoice(id) {
        Some(i) => i.clone(),
        None => panic!("invariant broken: an entry changed invoice {id}, which is not in the state"),
    }
}

/// The answer to a group that could not be written for `e`; a full disk is also shown in
/// the metrics until a group goes through.
fn disk_full(store: &Store, metrics: &Metrics, e: &cercle_store::StoreError) -> ServiceError {
    if e.is_disk_full() {
        metrics.disk_full.set(1);
        let free = store.free_bytes().unwrap_or(0);
        ServiceError::DiskFull(format!(
            "disk full: {free} bytes free at {}; operations resume once there is room",
            store.dir().display()
        ))
    } else {
        ServiceError::Internal(format!("storage: {e}"))
    }
}

struct Syncer {
    store: Arc<Store>,
    view: Arc<View>,
    feedback: Arc<Mutex<Feedback>>,
    checkpoints: SyncSender<Applied>,
    metrics: Arc<Metrics>,
}

impl Syncer {
    fn run(self, groups: std::sync::mpsc::Receiver<Group>) {
        for group in groups {
            let epoch = self.feedback.lock().unwrap_or_else(std::sync::PoisonError::into_inner).epoch;
            if group.epoch < epoch {
                // Executed on top of a group that failed: never written.
                let error =
                    ServiceError::Unavailable("the node could not write an earlier group; retry".into());
                answer_all(group.replies, &error);
                continue;
            }
            if !self.write(group) {
                break;
            }
        }
        tracing::info!("syncer stopped");
    }

    /// Makes one group durable and answers it. Returns false if the syncer must stop.
    fn write(&self, group: Group) -> bool {
        let started = std::time::Instant::now();
        if !group.entries.is_empty()
            && let Err(e) = self.store.append_group(&group.entries, &group.hashes)
        {
            tracing::error!(error = %e, entries = group.entries.len(), "could not write a group to the log");
            let error = disk_full(&self.store, &self.metrics, &e);
            answer_all(group.replies, &error);
            let mut f = self.feedback.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f.failed = Some(group.before);
            f.epoch = group.epoch + 1;
            return true;
        }
        if !group.entries.is_empty() {
            let m = &self.metrics;
            m.log_sync_seconds.observe(started.elapsed().as_secs_f64());
            m.disk_full.set(0);
            m.group_entries.observe(group.entries.len() as f64);
            m.log_entries.set(self.store.size() as i64);
            m.log_bytes.set(self.store.log_bytes() as i64);
            m.accounts.set(group.applied.account_count as i64);
            m.open_invoices.set(group.open_invoices as i64);
            self.view.publish(&group.applied);
        }
        for (reply, outcome) in group.replies {
            reply.send(self.resolve(outcome));
        }
        if !group.entries.is_empty() {
            self.feedback.lock().unwrap_or_else(std::sync::PoisonError::into_inner).durable =
                Some(group.after);
            if self.checkpoints.send(group.applied).is_err() {
                tracing::error!("the checkpointer has stopped");
                return false;
            }
        }
        true
    }

    /// The answer for an outcome, once its group is durable.
    fn resolve(&self, outcome: Outcome) -> Result<Receipt, ServiceError> {
        match outcome {
            Outcome::Receipt(r) => Ok(*r),
            Outcome::Rejected(e) => Err(e),
            Outcome::Duplicate { operation_id, sequence, signer } => {
                let entry = self
                    .store
                    .entry(sequence)?
                    .ok_or_else(|| ServiceError::Internal(format!("entry {sequence} is not in the log")))?;
                let governance = self.view.roles().is_governance(&signer);
                let readable = |a: &AccountId| {
                    governance || self.view.account(a).is_some_and(|acc| acc.keys.contains(&signer))
                };
                let balances_shown = entry.balances().into_iter().filter(|b| readable(&b.account)).collect();
                let held = cercle_core::body::decode(&entry.envelope.body)
                    .is_ok_and(|op| op.kind.is_held(&entry.balances_after));
                let pending = held.then_some(entry.sequence);
                Ok(Receipt { entry, operation_id, duplicate: true, clearing: None, balances_shown, pending })
            }
        }
    }
}

fn answer_all(replies: Vec<(Reply, Outcome)>, error: &ServiceError) {
    for (reply, _) in replies {
        reply.send(Err(error.clone()));
    }
}

/// What a refusal adds for a key that `rotate-keys` took off the account: its holder
/// signed for the account once, so they may learn that it was replaced, and by what means.
pub fn rotated_out(key: &PublicKey, account: &AccountId) -> String {
    format!(
        ": key {key} was rotated out of account '{account}' (rotate-keys); sign with one of its current keys"
    )
}
