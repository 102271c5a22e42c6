//! The single writer: applies operations in order, persists them in groups, replies.
//!
//! Handlers reserve a place in this queue (`WriterHandle::reserve`, see `admission`), then
//! verify signatures and decode bodies before anything reaches it, so the writer does
//! only what must be serial: the duplicate check, the state machine, the storage batch.
//! It runs on its own OS thread because sled's calls block.
//!
//! Group commit: the writer takes every request waiting (up to `WRITE_BATCH_MAX`),
//! executes them one after the other, writes all accepted entries in one storage batch,
//! and only then replies. A reply is never sent for an entry that is not persisted.
//!
//! A clearing run is computed here, on the state it applies to, so writes wait while it
//! runs: the solver, the check of its certificate, and writing every changed invoice to
//! sled (the benchmark's section (f) measured 1.2 s at 100,000 invoices, 4.6 s at 300,000
//! and 9.3 s at 500,000 while the problem was built twice; 3.3 s at 300,000 since it is
//! built once). Writing the changed invoices to sled is now the largest part, then the check
//! and the solve. Its entry can be megabytes, so it is written in a group of its own.

use std::collections::HashMap;
use std::sync::Arc;

use cercle_core::{
    ClearingSummary, Entry, Envelope, Genesis, Head, Ledger, OpKind, Operation, OperationId, Rejection,
};
use cercle_store::{Accepted, CommitError, Store};
use tokio::sync::{mpsc, oneshot};

use crate::admission::{QueueRoom, Reservation, Slot};
use crate::error::ServiceError;

/// Most operations waiting for the writer, counting those of the group in hand. Past
/// this, `Submit` answers RESOURCE_EXHAUSTED and `SubmitBatch` BUSY, before verifying.
pub const WRITE_QUEUE_MAX: usize = 4096;
/// Most operations the writer applies and persists as one group.
pub const WRITE_BATCH_MAX: usize = 512;

/// What the submitter learns about an accepted operation.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub entry: Entry,
    pub operation_id: OperationId,
    /// The operation had been accepted before; this is its original entry.
    pub duplicate: bool,
    /// What a clearing run did (not on a duplicate's receipt).
    pub clearing: Option<ClearingSummary>,
    /// The entry's balances that the submitting key may read, as the ledger stood right
    /// after the entry (or now, for a duplicate): all a receipt shows of balances.
    pub balances_shown: Vec<cercle_core::BalanceAfter>,
}

struct WriteRequest {
    envelope: Envelope,
    op: Operation,
    reply: oneshot::Sender<Result<Receipt, ServiceError>>,
    /// Its place in the queue, freed when the writer drops the request, after replying.
    _slot: Slot,
}

#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<WriteRequest>,
    room: QueueRoom,
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
        let (reply, rx) = oneshot::channel();
        self.queue(WriteRequest { envelope, op, reply, _slot: slot })?;
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
                let (reply, rx) = oneshot::channel();
                self.queue(WriteRequest { envelope, op, reply, _slot: slot }).map(|()| rx)
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

    fn queue(&self, request: WriteRequest) -> Result<(), ServiceError> {
        // Every queued request holds a place, and there are as many places as the queue
        // holds, so `Full` cannot happen; it is answered as a full queue all the same.
        self.tx.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => queue_full(),
            mpsc::error::TrySendError::Closed(_) => ServiceError::Internal("the writer has stopped".into()),
        })
    }
}

/// Is `retry` the operation `original` accepted? The same body signed by the same key: an
/// operation id is global, and another key re-signing a firm's saved body is a conflict,
/// not a retry (it would otherwise get that firm's receipt).
fn same_operation(original: &Envelope, retry: &Envelope, retry_body_hash: &[u8; 32]) -> bool {
    original.signer == retry.signer && original.body_hash() == *retry_body_hash
}

/// Starts the writer thread over `ledger` (already loaded and checked from `store`).
/// `clock` gives the node's time in ms since the Unix epoch. The thread ends when every
/// `WriterHandle` is dropped, or when storage fails in a way it cannot recover from; it
/// then sends on `stopped`, so the node can stop serving.
pub fn spawn_writer(
    store: Arc<Store>,
    ledger: Ledger,
    clock: fn() -> u64,
    stopped: oneshot::Sender<()>,
) -> std::io::Result<(WriterHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(WRITE_QUEUE_MAX);
    let thread = std::thread::Builder::new().name("cercle-writer".into()).spawn(move || {
        let previous_head = *ledger.head();
        Writer { store, ledger, clock, previous_head }.run(rx);
        let _ = stopped.send(());
    })?;
    Ok((WriterHandle { tx, room: QueueRoom::new(WRITE_QUEUE_MAX) }, thread))
}

struct Writer {
    store: Arc<Store>,
    ledger: Ledger,
    clock: fn() -> u64,
    /// The head before the group in hand: where a failed group must leave the ledger.
    previous_head: Head,
}

enum Outcome {
    Done(Box<Result<Receipt, ServiceError>>),
    /// Accepted in this group, at `index` of the group's accepted list.
    Pending {
        index: usize,
        duplicate: bool,
        /// The balances its signer may read, decided when it was executed.
        shown: Vec<cercle_core::BalanceAfter>,
    },
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<WriteRequest>) {
        let mut group = Vec::with_capacity(WRITE_BATCH_MAX);
        let mut held: Option<WriteRequest> = None;
        let is_clearing = |r: &WriteRequest| matches!(r.op.kind, OpKind::RunClearing(_));
        while let Some(first) = held.take().or_else(|| rx.blocking_recv()) {
            let alone = is_clearing(&first);
            group.push(first);
            while !alone && group.len() < WRITE_BATCH_MAX {
                match rx.try_recv() {
                    // A clearing run starts the next group.
                    Ok(next) if is_clearing(&next) => {
                        held = Some(next);
                        break;
                    }
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            if !self.write_group(&mut group) {
                tracing::error!("the writer cannot continue; stopping");
                break;
            }
        }
        tracing::info!("writer stopped");
    }

    fn rejected(&self, rejection: Rejection) -> ServiceError {
        let g: &Genesis = self.ledger.genesis();
        ServiceError::rejected(rejection, &g.currency, g.exponent)
    }

    /// Executes and persists one group. Returns false if the writer must stop.
    fn write_group(&mut self, group: &mut Vec<WriteRequest>) -> bool {
        let now_ms = (self.clock)();
        self.previous_head = *self.ledger.head();
        let mut accepted: Vec<Accepted> = Vec::new();
        let mut in_group: HashMap<OperationId, usize> = HashMap::new();
        let mut outcomes = Vec::with_capacity(group.len());
        let mut summaries: HashMap<usize, ClearingSummary> = HashMap::new();
        for req in group.iter() {
            outcomes.push(self.execute_one(now_ms, req, &mut accepted, &mut in_group, &mut summaries));
        }
        let mut keep_going = true;
        let committed =
            if accepted.is_empty() { Ok(()) } else { self.store.commit(&accepted, self.ledger.head()) };
        match &committed {
            Ok(()) => {}
            Err(CommitError::NotWritten(e)) => {
                tracing::error!(error = %e, entries = accepted.len(), "could not write a group to the log");
                // Nothing of the group is durable, but the in-memory ledger ran ahead:
                // take it back to the log's head by replaying the log.
                match self.store.replay_log() {
                    Ok(ledger) if ledger.head() == &self.previous_head => self.ledger = ledger,
                    Ok(_) | Err(_) => {
                        tracing::error!("could not take the ledger back to the log's head");
                        keep_going = false;
                    }
                }
            }
            Err(CommitError::NotIndexed(e)) => {
                // The group is durable but the state is behind: stop, and let the next
                // start roll the state forward from the log.
                tracing::error!(error = %e, "the state could not be updated after a durable write");
                keep_going = false;
            }
        }
        for (req, outcome) in group.drain(..).zip(outcomes) {
            let result = match outcome {
                Outcome::Done(r) => *r,
                Outcome::Pending { index, duplicate, shown } => match &committed {
                    Ok(()) => Ok(Receipt {
                        entry: accepted[index].entry.clone(),
                        operation_id: accepted[index].operation_id,
                        duplicate,
                        clearing: if duplicate { None } else { summaries.remove(&index) },
                        balances_shown: shown,
                    }),
                    // Durable but unconfirmed: the client retries, and the retry finds it.
                    Err(e) => Err(ServiceError::Internal(format!("storage: {e}"))),
                },
            };
            // The submitter may have gone away; its operation stands regardless.
            let _ = req.reply.send(result);
        }
        keep_going
    }

    /// The balances of `entry` that the signer of `req` may read now.
    fn shown(&self, req: &WriteRequest, entry: &Entry) -> Vec<cercle_core::BalanceAfter> {
        self.ledger.state().readable_balances(&req.envelope.signer, &entry.balances_after)
    }

    fn execute_one(
        &mut self,
        now_ms: u64,
        req: &WriteRequest,
        accepted: &mut Vec<Accepted>,
        in_group: &mut HashMap<OperationId, usize>,
        summaries: &mut HashMap<usize, ClearingSummary>,
    ) -> Outcome {
        let id = req.op.id;
        let body_hash = req.envelope.body_hash();
        // A retry must find its original, whether accepted in this group or earlier.
        if let Some(&index) = in_group.get(&id) {
            return if same_operation(&accepted[index].entry.envelope, &req.envelope, &body_hash) {
                let shown = self.shown(req, &accepted[index].entry);
                Outcome::Pending { index, duplicate: true, shown }
            } else {
                Outcome::Done(Box::new(Err(
                    self.rejected(Rejection::OperationIdConflict { operation_id: id.to_string() })
                )))
            };
        }
        match self.store.operation(&id).and_then(|seq| match seq {
            Some(seq) => self.store.entry(seq),
            None => Ok(None),
        }) {
            Err(e) => return Outcome::Done(Box::new(Err(e.into()))),
            Ok(Some(entry)) if same_operation(&entry.envelope, &req.envelope, &body_hash) => {
                let balances_shown = self.shown(req, &entry);
                return Outcome::Done(Box::new(Ok(Receipt {
                    entry,
                    operation_id: id,
                    duplicate: true,
                    clearing: None,
                    balances_shown,
                })));
            }
            Ok(Some(_)) => {
                return Outcome::Done(Box::new(Err(
                    self.rejected(Rejection::OperationIdConflict { operation_id: id.to_string() })
                )));
            }
            Ok(None) => {}
        }
        match self.ledger.execute(now_ms, req.envelope.clone(), &req.op) {
            Err(rejection) => Outcome::Done(Box::new(Err(self.rejected(rejection)))),
            Ok((entry, effects)) => {
                let state = self.ledger.state();
                let accounts = effects.touched.iter().filter_map(|a| state.account(a).cloned()).collect();
                let invoices = effects.invoices.iter().filter_map(|i| state.invoice(i).cloned()).collect();
                if let Some((_, summary)) = effects.clearing {
                    summaries.insert(accepted.len(), summary);
                }
                let shown = self.shown(req, &entry);
                accepted.push(Accepted { entry, operation_id: id, accounts, invoices });
                in_group.insert(id, accepted.len() - 1);
                Outcome::Pending { index: accepted.len() - 1, duplicate: false, shown }
            }
        }
    }
}
