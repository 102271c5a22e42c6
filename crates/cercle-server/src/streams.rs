//! `StreamEntries` within bounds: how many streams a key and the node may have open, how
//! long a client may leave one unread, and no thread held while a client is slow.
//!
//! Entries are read in chunks (at most `STREAM_CHUNK_ENTRIES` entries and
//! `STREAM_CHUNK_BYTES_MAX` bytes) by a task on the blocking pool, which returns at once;
//! an async task then sends them into a channel of `STREAM_BUFFER_ENTRIES`, waiting for the
//! client to read. A send that waits longer than the stream's send timeout ends the
//! stream with DEADLINE_EXCEEDED, ahead of whatever was still buffered, so a client that
//! stops reading can never mistake what it received for the whole log. Each open stream
//! holds a `StreamTicket` of its key, given back when its task ends (finished, failed,
//! timed out, or the client went away).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use cercle_core::PublicKey;
use cercle_limits::{STREAM_BUFFER_ENTRIES, STREAM_CHUNK_BYTES_MAX, STREAM_CHUNK_ENTRIES};
use cercle_proto as pb;
use cercle_store::Store;
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::error::ServiceError;

/// How many `StreamEntries` streams may be open, per key and in all.
pub struct StreamGate {
    open: Arc<Mutex<OpenStreams>>,
    per_key_max: usize,
    total_max: usize,
}

#[derive(Default)]
struct OpenStreams {
    total: usize,
    per_key: BTreeMap<PublicKey, usize>,
}

fn lock(open: &Mutex<OpenStreams>) -> MutexGuard<'_, OpenStreams> {
    // The counts are updated in single statements that cannot panic half-way.
    open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl StreamGate {
    pub fn new(per_key_max: usize, total_max: usize) -> StreamGate {
        StreamGate { open: Arc::default(), per_key_max, total_max }
    }

    /// Lets `key` open one more stream, or says which bound it would pass.
    pub fn admit(&self, key: PublicKey) -> Result<StreamTicket, ServiceError> {
        let mut open = lock(&self.open);
        let of_key = open.per_key.get(&key).copied().unwrap_or(0);
        if of_key >= self.per_key_max {
            return Err(ServiceError::Busy(format!(
                "key {key} already has {of_key} StreamEntries streams open, the most one key may have \
                 ({}); finish or cancel one, then retry",
                self.per_key_max
            )));
        }
        if open.total >= self.total_max {
            return Err(ServiceError::Busy(format!(
                "the node already serves {} StreamEntries streams, the most it serves at once; retry later",
                open.total
            )));
        }
        open.total += 1;
        *open.per_key.entry(key).or_insert(0) += 1;
        Ok(StreamTicket { open: self.open.clone(), key })
    }

    /// Streams open now, in all.
    pub fn open(&self) -> usize {
        lock(&self.open).total
    }
}

/// One open stream of a key; dropping it closes the stream's place.
pub struct StreamTicket {
    open: Arc<Mutex<OpenStreams>>,
    key: PublicKey,
}

impl Drop for StreamTicket {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_key.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_key.remove(&self.key);
            }
        }
    }
}

/// The entries of a stream as its client receives them.
pub struct EntryStream {
    rx: mpsc::Receiver<Result<pb::Entry, Status>>,
    /// Fires with the status that ends the stream early when the client stopped reading.
    abort: Option<oneshot::Receiver<Status>>,
    ended: bool,
}

impl tokio_stream::Stream for EntryStream {
    type Item = Result<pb::Entry, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Some(abort) = self.abort.as_mut() {
            match Pin::new(abort).poll(cx) {
                Poll::Ready(Ok(status)) => {
                    self.ended = true;
                    self.rx.close();
                    return Poll::Ready(Some(Err(status)));
                }
                // The task ended without aborting: what it sent is all there is.
                Poll::Ready(Err(_)) => self.abort = None,
                Poll::Pending => {}
            }
        }
        self.rx.poll_recv(cx)
    }
}

/// Streams the entries `from..=end` of `store`, holding `ticket` until the stream's task
/// ends. A send that waits longer than `send_timeout` for the client to read ends it.
pub fn entries(
    store: Arc<Store>,
    from: u64,
    end: u64,
    ticket: StreamTicket,
    send_timeout: Duration,
) -> EntryStream {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER_ENTRIES);
    let (abort_tx, abort) = oneshot::channel();
    tokio::spawn(async move {
        let _ticket = ticket;
        let mut next = from;
        while next <= end {
            let last = end.min(next.saturating_add(STREAM_CHUNK_ENTRIES - 1));
            let reader = store.clone();
            let (chunk, failure) = tokio::task::spawn_blocking(move || read_chunk(&reader, next, last))
                .await
                .unwrap_or_else(|e| {
                    (Vec::new(), Some(ServiceError::Internal(format!("a stream's read task failed: {e}"))))
                });
            let (read, failed) = (chunk.len() as u64, failure.is_some());
            for item in chunk.into_iter().map(Ok).chain(failure.map(|e| Err(Status::from(e)))) {
                match tokio::time::timeout(send_timeout, tx.send(item)).await {
                    Ok(Ok(())) => {}
                    // The client went away.
                    Ok(Err(_)) => return,
                    Err(_) => {
                        tracing::info!(
                            at_entry = next,
                            timeout_ms = send_timeout.as_millis() as u64,
                            "a StreamEntries client stopped reading; ending its stream"
                        );
                        let _ = abort_tx.send(Status::deadline_exceeded(format!(
                            "the stream was not read for {} ms; it ended at entry {next} of {end}: \
                             resume with from_sequence",
                            send_timeout.as_millis()
                        )));
                        return;
                    }
                }
            }
            if failed || read == 0 {
                return;
            }
            next += read;
        }
    });
    EntryStream { rx, abort: Some(abort), ended: false }
}

/// Reads entries `from..=last`, stopping early after `STREAM_CHUNK_BYTES_MAX` bytes; a
/// failure ends the chunk, and is returned after the entries read before it.
fn read_chunk(store: &Store, from: u64, last: u64) -> (Vec<pb::Entry>, Option<ServiceError>) {
    let mut chunk = Vec::new();
    let mut bytes = 0;
    for sequence in from..=last {
        match store.entry(sequence) {
            Ok(Some(entry)) => {
                let entry = pb::Entry::from(&cercle_core::EntryView::whole(&entry));
                bytes += entry.encoded_len();
                chunk.push(entry);
                if bytes >= STREAM_CHUNK_BYTES_MAX {
                    break;
                }
            }
            Ok(None) => return (chunk, Some(ServiceError::Internal(format!("entry {sequence} is missing")))),
            Err(e) => return (chunk, Some(e.into())),
        }
    }
    (chunk, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_and_the_node_have_their_bounds_and_closing_frees_a_place() {
        let gate = StreamGate::new(2, 3);
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        let a1 = gate.admit(a).unwrap();
        let _a2 = gate.admit(a).unwrap();
        let refused = gate.admit(a).err().unwrap().to_string();
        assert!(refused.contains("already has 2 StreamEntries streams open"), "{refused}");
        let _b1 = gate.admit(b).unwrap();
        let refused = gate.admit(b).err().unwrap().to_string();
        assert!(refused.contains("already serves 3 StreamEntries streams"), "{refused}");
        drop(a1);
        assert_eq!(gate.open(), 2);
        let _b2 = gate.admit(b).unwrap();
    }
}
