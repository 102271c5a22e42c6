//! Admission: room in the writer's queue is reserved before any signature is checked, and
//! the checking itself is bounded, so an overloaded node refuses work for the price of
//! decoding it and spends its CPU on work it will finish.
//!
//! `QueueRoom` counts the free places of the writer's queue (`WRITE_QUEUE_MAX` in all). A
//! request takes a `Reservation` of as many places as it has envelopes, or fewer when
//! fewer are free; an envelope without a place is answered BUSY unverified. Each envelope
//! that passes its checks travels to the writer with one place (`Slot`), and the place
//! is free again when the writer drops the request, after answering it; the places of
//! envelopes that fail their checks are freed at once. Because every queued request holds
//! a place, the queue itself can never be full when a request with a place arrives.
//!
//! Before all that, `RefuseWritesWhenFull` answers a `Submit` or `SubmitBatch` that arrives
//! when not one place is free RESOURCE_EXHAUSTED without reading its body: a refusal then
//! costs the node no decoding either, and the CPU goes to the work it has taken on.
//!
//! `Verifiers` bounds how many batch-verification tasks run on the blocking pool at once
//! (one per core): more would only share the same cores among more batches, each of which
//! would then take longer. `Submit` verifies its one envelope on its request task, bounded
//! by the runtime's worker threads. Measured with the benchmark's (a), 64 clients, the node
//! spends the same CPU per transfer either way (170-206 µs inline, 199-209 µs through
//! `Verifiers`, 4 runs each on 2 shared cores); through `Verifiers` it also accepted more
//! per second there, but only as its extra threads won it more of a machine that other
//! processes were using. Inline, the first poll of a `Submit` reaches the writer's queue,
//! which the model tests rely on to have many operations queued before awaiting any, so
//! that the writer groups them.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;

use crate::writer;

/// The gRPC paths of the calls that write: those refused unread when the queue is full.
pub const WRITE_PATHS: [&str; 2] = ["/cercle.v1.Ledger/Submit", "/cercle.v1.Ledger/SubmitBatch"];

/// The free places of the writer's queue.
#[derive(Clone)]
pub struct QueueRoom {
    places: Arc<Semaphore>,
}

impl QueueRoom {
    pub fn new(places: usize) -> QueueRoom {
        QueueRoom { places: Arc::new(Semaphore::new(places)) }
    }

    /// Reserves up to `wanted` places, as many as are free; `None` when none is (or
    /// `wanted` is 0). Never waits.
    pub fn reserve(&self, wanted: usize) -> Option<Reservation> {
        loop {
            let free = self.places.available_permits().min(wanted);
            if free == 0 {
                return None;
            }
            // Another request may take places between the count and the reservation:
            // then count again.
            if let Ok(permit) = self.places.clone().try_acquire_many_owned(free as u32) {
                return Some(Reservation { permit });
            }
        }
    }

    /// Places free now (for logs and tests).
    pub fn free(&self) -> usize {
        self.places.available_permits()
    }
}

/// Places reserved in the writer's queue; those not handed out are freed on drop.
pub struct Reservation {
    permit: OwnedSemaphorePermit,
}

impl Reservation {
    /// How many places are still held.
    pub fn len(&self) -> usize {
        self.permit.num_permits()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One place, for one envelope, or `None` when none is left.
    pub fn take_one(&mut self) -> Option<Slot> {
        self.permit.split(1).map(|permit| Slot { _permit: permit })
    }
}

/// One place in the writer's queue, held by a request until the writer drops it.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// Bounds the verification tasks of batches running on the blocking pool.
#[derive(Clone)]
pub struct Verifiers {
    tasks: Arc<Semaphore>,
    tasks_max: usize,
}

impl Verifiers {
    /// One task per core.
    pub fn per_core() -> Verifiers {
        Verifiers::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    pub fn new(tasks: usize) -> Verifiers {
        let tasks_max = tasks.max(1);
        Verifiers { tasks: Arc::new(Semaphore::new(tasks_max)), tasks_max }
    }

    /// How many tasks may run at once.
    pub fn tasks_max(&self) -> usize {
        self.tasks_max
    }

    /// Waits for a free task (in the order asked: the semaphore is fair), then starts
    /// `work` on the blocking pool; the task is free again when `work` returns.
    pub async fn spawn<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        let task = self.tasks.clone().acquire_owned().await;
        tokio::task::spawn_blocking(move || {
            let _task = task;
            work()
        })
    }
}

/// A gRPC service (the ledger's) behind a check that answers the calls of `WRITE_PATHS`
/// RESOURCE_EXHAUSTED, before their bodies are read, while the writer's queue has no free
/// place. With a place free, a call goes through and reserves what it can.
#[derive(Clone)]
pub struct RefuseWritesWhenFull<S> {
    inner: S,
    room: QueueRoom,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl<S> RefuseWritesWhenFull<S> {
    pub fn new(inner: S, room: QueueRoom) -> Self {
        RefuseWritesWhenFull { inner, room, metrics: None }
    }

    /// Counts the requests refused unread in `metrics`.
    pub fn with_metrics(self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        RefuseWritesWhenFull { metrics: Some(metrics), ..self }
    }
}

impl<S: NamedService> NamedService for RefuseWritesWhenFull<S> {
    const NAME: &'static str = S::NAME;
}

type HttpResponse = http::Response<tonic::body::Body>;

impl<S, B> Service<http::Request<B>> for RefuseWritesWhenFull<S>
where
    S: Service<
            http::Request<B>,
            Response = HttpResponse,
            Error = Infallible,
            Future = BoxFuture<HttpResponse, Infallible>,
        >,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = BoxFuture<HttpResponse, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if self.room.free() == 0 && WRITE_PATHS.contains(&request.uri().path()) {
            if let Some(metrics) = &self.metrics {
                metrics.count_request_refused();
            }
            let refusal = tonic::Status::from(writer::queue_full()).into_http();
            return Box::pin(std::future::ready(Ok(refusal)));
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_takes_what_is_free_and_gives_back_what_it_does_not_use() {
        let room = QueueRoom::new(5);
        let mut first = room.reserve(3).unwrap();
        assert_eq!((first.len(), room.free()), (3, 2));
        let second = room.reserve(10).unwrap();
        assert_eq!((second.len(), room.free()), (2, 0));
        assert!(room.reserve(1).is_none());
        assert!(room.reserve(0).is_none());
        let slots: Vec<Slot> = (0..3).map(|_| first.take_one().unwrap()).collect();
        assert!(first.take_one().is_none());
        assert!(first.is_empty());
        drop(second);
        assert_eq!(room.free(), 2);
        drop(slots);
        assert_eq!(room.free(), 5);
    }
}
