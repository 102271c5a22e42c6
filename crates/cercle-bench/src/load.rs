//! Load drivers: concurrent gRPC clients sending pre-signed envelopes to the node with
//! `Submit` or `SubmitBatch`, retrying what the node could not take (BUSY) after a short
//! backoff, checking every receipt, and timing each request.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use cercle_proto as pb;
use hdrhistogram::Histogram;
use pb::ledger_client::LedgerClient;
use tonic::transport::Channel;

use cercle_core::LedgerId;

use crate::plan::{Accounts, Generator, Signed, VALIDITY_MS, now_ms};

/// First wait after the node answered BUSY; it doubles up to `BACKOFF_MAX`.
const BACKOFF_START: Duration = Duration::from_millis(1);
const BACKOFF_MAX: Duration = Duration::from_millis(50);
/// Retries of one request that the node did not decide (INTERNAL) before counting it lost.
const INTERNAL_RETRIES_MAX: u32 = 5;
/// Longest latency the histograms hold, in microseconds (ten minutes).
const LATENCY_US_MAX: u64 = 600_000_000;
/// How often the fill reports its progress.
const FILL_PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// What a phase did and how long it took.
pub struct PhaseResult {
    /// Transfers (or other operations) accepted, including those answered as duplicates.
    pub accepted: u64,
    /// Operations refused for good, or lost to errors: always a bench or node bug here.
    pub rejected: u64,
    /// Operations sent again because the node was busy.
    pub busy_retries: u64,
    /// Operations sent again because the node answered INTERNAL (did not decide).
    pub internal_retries: u64,
    /// Receipts marked `duplicate` (a retry that found its original).
    pub duplicates: u64,
    /// The first refusal, to print.
    pub first_rejection: Option<String>,
    pub wall: Duration,
    /// Latency of each request (one transfer, or one whole batch), in microseconds.
    pub latency_us: Histogram<u64>,
}

impl PhaseResult {
    pub fn new() -> PhaseResult {
        PhaseResult {
            accepted: 0,
            rejected: 0,
            busy_retries: 0,
            internal_retries: 0,
            duplicates: 0,
            first_rejection: None,
            wall: Duration::ZERO,
            latency_us: latency_histogram(),
        }
    }

    /// Accepted operations per second of wall time.
    pub fn per_sec(&self) -> f64 {
        self.accepted as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    pub fn merge(&mut self, other: PhaseResult) {
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.busy_retries += other.busy_retries;
        self.internal_retries += other.internal_retries;
        self.duplicates += other.duplicates;
        if self.first_rejection.is_none() {
            self.first_rejection = other.first_rejection;
        }
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
    }

    /// Counts one envelope's final outcome.
    pub fn count(&mut self, outcome: Result<bool, String>) {
        match outcome {
            Ok(duplicate) => {
                self.accepted += 1;
                self.duplicates += u64::from(duplicate);
            }
            Err(why) => self.reject(1, why),
        }
    }

    /// Counts one envelope sent with `Submit` (its latency is recorded apart).
    pub fn add(&mut self, sent: Sent) {
        self.busy_retries += sent.busy_retries;
        self.internal_retries += sent.internal_retries;
        self.count(sent.outcome);
    }

    pub fn reject(&mut self, count: u64, why: String) {
        self.rejected += count;
        self.first_rejection.get_or_insert(why);
    }

    pub fn record(&mut self, started: Instant) {
        self.latency_us.saturating_record(started.elapsed().as_micros().max(1) as u64);
    }
}

pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

pub async fn connect(url: &str) -> anyhow::Result<LedgerClient<Channel>> {
    Ok(LedgerClient::new(channel(url).await?).max_decoding_message_size(64 * 1024 * 1024))
}

async fn channel(url: &str) -> anyhow::Result<Channel> {
    tonic::transport::Endpoint::from_shared(url.to_string())?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot connect to the node at {url}"))
}

/// Sends every envelope of `work` with unary `Submit` from `clients` concurrent clients,
/// each on its own connection. The clock starts once every client is connected.
pub async fn unary(url: &str, work: Arc<Vec<Signed>>, clients: usize) -> anyhow::Result<PhaseResult> {
    let mut connected = Vec::with_capacity(clients);
    for _ in 0..clients {
        connected.push(connect(url).await?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = connected
        .into_iter()
        .map(|mut client| {
            let (work, next) = (work.clone(), next.clone());
            tokio::spawn(async move {
                let mut result = PhaseResult::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = work.get(i) else { break };
                    submit_one(&mut client, item, &mut result).await;
                }
                result
            })
        })
        .collect();
    let mut total = PhaseResult::new();
    for task in tasks {
        total.merge(task.await?);
    }
    total.wall = started.elapsed();
    Ok(total)
}

async fn submit_one(client: &mut LedgerClient<Channel>, item: &Signed, result: &mut PhaseResult) {
    let started = Instant::now();
    result.add(send_one(client, item).await);
    result.record(started);
}

/// What became of one envelope sent with `Submit`.
pub struct Sent {
    /// Accepted (true: answered as a duplicate), or refused for good and why.
    pub outcome: Result<bool, String>,
    pub busy_retries: u64,
    pub internal_retries: u64,
}

/// Sends one envelope with `Submit` until the node decides it, retrying after BUSY (and,
/// a few times, after INTERNAL) with a backoff.
pub async fn send_one(client: &mut LedgerClient<Channel>, item: &Signed) -> Sent {
    let mut backoff = BACKOFF_START;
    let mut sent = Sent { outcome: Ok(false), busy_retries: 0, internal_retries: 0 };
    loop {
        let request = pb::SubmitRequest { envelope: Some(item.envelope.clone()) };
        match client.submit(request).await {
            Ok(response) => {
                sent.outcome = match response.into_inner().receipt {
                    Some(receipt) => receipt_outcome(&receipt, item),
                    None => Err("a Submit response without a receipt".into()),
                };
                return sent;
            }
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                sent.busy_retries += 1;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(status)
                if status.code() == tonic::Code::Internal
                    && sent.internal_retries < u64::from(INTERNAL_RETRIES_MAX) =>
            {
                sent.internal_retries += 1;
                tokio::time::sleep(backoff).await;
            }
            Err(status) => {
                sent.outcome = Err(format!("{:?}: {}", status.code(), status.message()));
                return sent;
            }
        }
    }
}

/// Whether `receipt` is the receipt of `item`, and whether it was a duplicate.
fn receipt_outcome(receipt: &pb::Receipt, item: &Signed) -> Result<bool, String> {
    if receipt.operation_id != item.operation_id {
        return Err("a receipt for another operation id".into());
    }
    Ok(receipt.duplicate)
}

/// Sends `work` in `SubmitBatch` requests of `batch` envelopes from `clients` concurrent
/// clients. The latency recorded is per batch: from the first send until every envelope
/// of the batch is accepted (retries of BUSY envelopes included).
pub async fn batched(
    url: &str,
    work: Arc<Vec<Signed>>,
    batch: usize,
    clients: usize,
) -> anyhow::Result<PhaseResult> {
    let mut connected = Vec::with_capacity(clients);
    for _ in 0..clients {
        connected.push(connect(url).await?);
    }
    let batches = work.len().div_ceil(batch);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = connected
        .into_iter()
        .map(|mut client| {
            let (work, next) = (work.clone(), next.clone());
            tokio::spawn(async move {
                let mut result = PhaseResult::new();
                loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches {
                        break;
                    }
                    let items = &work[b * batch..((b + 1) * batch).min(work.len())];
                    submit_batch(&mut client, items, &mut result).await;
                }
                result
            })
        })
        .collect();
    let mut total = PhaseResult::new();
    for task in tasks {
        total.merge(task.await?);
    }
    total.wall = started.elapsed();
    Ok(total)
}

/// Sends one batch until every envelope in it is accepted or refused for good.
pub async fn submit_batch(client: &mut LedgerClient<Channel>, items: &[Signed], result: &mut PhaseResult) {
    let started = Instant::now();
    let mut pending: Vec<&Signed> = items.iter().collect();
    let mut backoff = BACKOFF_START;
    let mut internal = 0;
    while !pending.is_empty() {
        let request =
            pb::SubmitBatchRequest { envelopes: pending.iter().map(|s| s.envelope.clone()).collect() };
        let results = match client.submit_batch(request).await {
            Ok(response) => response.into_inner().results,
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                result.busy_retries += pending.len() as u64;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            Err(status) => {
                result.reject(pending.len() as u64, format!("{:?}: {}", status.code(), status.message()));
                break;
            }
        };
        if results.len() != pending.len() {
            result.reject(
                pending.len() as u64,
                format!("{} results for a batch of {}", results.len(), pending.len()),
            );
            break;
        }
        let mut again = Vec::new();
        let mut undecided = false;
        for (item, outcome) in pending.into_iter().zip(results) {
            use pb::submit_result::Outcome;
            match outcome.outcome {
                Some(Outcome::Receipt(receipt)) => result.count(receipt_outcome(&receipt, item)),
                Some(Outcome::Rejection(r)) if r.code == 0 && r.reason == "BUSY" => {
                    result.busy_retries += 1;
                    again.push(item);
                }
                Some(Outcome::Rejection(r))
                    if r.code == 0 && r.reason == "INTERNAL" && internal < INTERNAL_RETRIES_MAX =>
                {
                    result.internal_retries += 1;
                    undecided = true;
                    again.push(item);
                }
                Some(Outcome::Rejection(r)) => {
                    result.reject(1, format!("code {} {}: {}", r.code, r.reason, r.message))
                }
                None => result.reject(1, "a batch result with no outcome".into()),
            }
        }
        if undecided {
            internal += 1;
        }
        pending = again;
        if !pending.is_empty() {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
    result.record(started);
}

/// What a phase of fixed duration did.
pub struct Timed {
    /// Its outcomes; `latency_us` holds one value per request that had at least one
    /// envelope accepted, from sending it to its answer.
    pub result: PhaseResult,
    /// Envelopes sent, retries included.
    pub offered: u64,
    /// The pre-signed envelopes ran out before the time was up.
    pub ran_out: bool,
}

/// Sends `work` in `SubmitBatch` requests of `batch` envelopes from `clients` concurrent
/// clients for `duration`, with no pause between batches. What the node answers BUSY is
/// sent again at once when part of the request was accepted, and otherwise after a
/// backoff (1 ms, doubling up to 50 ms), as a well-behaved client does. The clock starts
/// once every client is connected; the phase ends when every client has its answer to
/// the request it had in flight at `duration`.
pub async fn timed_batches(
    url: &str,
    work: Arc<Vec<Signed>>,
    batch: usize,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Timed> {
    let mut connected = Vec::with_capacity(clients);
    for _ in 0..clients {
        connected.push(tonic::client::Grpc::new(channel(url).await?));
    }
    let batches = work.len().div_ceil(batch);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = connected
        .into_iter()
        .map(|mut client| {
            let (work, next) = (work.clone(), next.clone());
            tokio::spawn(async move {
                let mut timed = Timed { result: PhaseResult::new(), offered: 0, ran_out: false };
                let mut pending = Encoded::default();
                let mut backoff = BACKOFF_START;
                while Instant::now() < deadline {
                    if pending.indexes.is_empty() {
                        let b = next.fetch_add(1, Ordering::Relaxed);
                        if b >= batches {
                            timed.ran_out = true;
                            break;
                        }
                        pending =
                            Encoded::new(&work, (b * batch..((b + 1) * batch).min(work.len())).collect());
                    }
                    let accepted_before = timed.result.accepted;
                    let sent = Instant::now();
                    timed.offered += pending.indexes.len() as u64;
                    let busy = send_timed(&mut client, &work, &pending, &mut timed.result).await;
                    if timed.result.accepted > accepted_before {
                        timed.result.record(sent);
                        backoff = BACKOFF_START;
                    } else if !busy.is_empty() {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                    // What was refused whole is sent again as it was encoded.
                    if busy != pending.indexes {
                        pending = Encoded::new(&work, busy);
                    }
                }
                timed
            })
        })
        .collect();
    let mut total = Timed { result: PhaseResult::new(), offered: 0, ran_out: false };
    for task in tasks {
        let timed = task.await?;
        total.result.merge(timed.result);
        total.offered += timed.offered;
        total.ran_out |= timed.ran_out;
    }
    total.result.wall = started.elapsed();
    Ok(total)
}

/// A `SubmitBatchRequest` of the envelopes of the work at `indexes`, encoded once: the
/// bench runs on the node's cores, and under overload most requests are sent again
/// unchanged, so it does not clone and encode their envelopes each time.
#[derive(Default)]
struct Encoded {
    indexes: Vec<usize>,
    request: bytes::Bytes,
}

impl Encoded {
    fn new(work: &[Signed], indexes: Vec<usize>) -> Encoded {
        use prost::Message;
        let request =
            pb::SubmitBatchRequest { envelopes: indexes.iter().map(|&i| work[i].envelope.clone()).collect() };
        Encoded { indexes, request: request.encode_to_vec().into() }
    }
}

/// Sends an encoded `SubmitBatch` request, counts the outcomes of its envelopes, and
/// returns those the node answered BUSY (all of them when it refused the request).
async fn send_timed(
    client: &mut tonic::client::Grpc<Channel>,
    work: &[Signed],
    pending: &Encoded,
    result: &mut PhaseResult,
) -> Vec<usize> {
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/cercle.v1.Ledger/SubmitBatch");
    let response = match client.ready().await {
        Ok(()) => client.unary(tonic::Request::new(pending.request.clone()), path, PreEncoded).await,
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    };
    let results = match response {
        Ok(response) => response.into_inner().results,
        Err(status) if status.code() == tonic::Code::ResourceExhausted => {
            result.busy_retries += pending.indexes.len() as u64;
            return pending.indexes.clone();
        }
        Err(status) => {
            result.reject(pending.indexes.len() as u64, format!("{:?}: {}", status.code(), status.message()));
            return Vec::new();
        }
    };
    if results.len() != pending.indexes.len() {
        let why = format!("{} results for a batch of {}", results.len(), pending.indexes.len());
        result.reject(pending.indexes.len() as u64, why);
        return Vec::new();
    }
    let mut busy = Vec::new();
    for (&i, outcome) in pending.indexes.iter().zip(results) {
        use pb::submit_result::Outcome;
        match outcome.outcome {
            Some(Outcome::Receipt(receipt)) => result.count(receipt_outcome(&receipt, &work[i])),
            Some(Outcome::Rejection(r)) if r.code == 0 && r.reason == "BUSY" => {
                result.busy_retries += 1;
                busy.push(i);
            }
            Some(Outcome::Rejection(r)) => {
                result.reject(1, format!("code {} {}: {}", r.code, r.reason, r.message))
            }
            None => result.reject(1, "a batch result with no outcome".into()),
        }
    }
    busy
}

/// A gRPC codec that sends a request already encoded and decodes a `SubmitBatchResponse`.
#[derive(Clone, Copy, Default)]
struct PreEncoded;

impl tonic::codec::Codec for PreEncoded {
    type Encode = bytes::Bytes;
    type Decode = pb::SubmitBatchResponse;
    type Encoder = PreEncoded;
    type Decoder = PreEncoded;

    fn encoder(&mut self) -> PreEncoded {
        PreEncoded
    }

    fn decoder(&mut self) -> PreEncoded {
        PreEncoded
    }
}

impl tonic::codec::Encoder for PreEncoded {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: bytes::Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for PreEncoded {
    type Item = pb::SubmitBatchResponse;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<pb::SubmitBatchResponse>, tonic::Status> {
        use prost::Message;
        pb::SubmitBatchResponse::decode(src).map(Some).map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

/// The node's log size, from `GetLedgerInfo`.
pub async fn log_size(client: &mut LedgerClient<Channel>) -> anyhow::Result<u64> {
    Ok(client.get_ledger_info(pb::GetLedgerInfoRequest {}).await?.into_inner().log_size)
}

/// Adds `count` transfers to the node's log as fast as it takes them: signer threads (one
/// per core) draw and sign batches while `clients` concurrent clients send them with
/// `SubmitBatch`. Signing is part of this phase's time: it only fills the log.
pub async fn fill(
    url: &str,
    accounts: Arc<Accounts>,
    generator: Arc<Mutex<Generator>>,
    ledger_id: LedgerId,
    count: u64,
    batch: usize,
    clients: usize,
) -> anyhow::Result<PhaseResult> {
    let batches = count.div_ceil(batch as u64);
    let next_batch = Arc::new(AtomicU64::new(0));
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Signed>>(clients * 2);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let started = Instant::now();
    let signers: Vec<_> = (0..std::thread::available_parallelism().map_or(2, |n| n.get()))
        .map(|_| {
            let (accounts, generator, next_batch, tx) =
                (accounts.clone(), generator.clone(), next_batch.clone(), tx.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                loop {
                    let b = next_batch.fetch_add(1, Ordering::Relaxed);
                    if b >= batches {
                        return Ok(());
                    }
                    let n = (count - b * batch as u64).min(batch as u64) as usize;
                    let specs = {
                        let mut generator =
                            generator.lock().map_err(|_| anyhow::anyhow!("a signer panicked"))?;
                        generator.transfers(&accounts, n, 0)?
                    };
                    let valid_until_ms = now_ms() + VALIDITY_MS;
                    let signed =
                        specs.iter().map(|t| accounts.sign_one(t, &ledger_id, valid_until_ms)).collect();
                    if tx.blocking_send(signed).is_err() {
                        return Ok(());
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let accepted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut client = connect(url).await?;
        let (rx, accepted) = (rx.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            let mut result = PhaseResult::new();
            loop {
                let Some(items) = rx.lock().await.recv().await else { break };
                let before = result.accepted;
                submit_batch(&mut client, &items, &mut result).await;
                accepted.fetch_add(result.accepted - before, Ordering::Relaxed);
            }
            result
        }));
    }
    let progress = {
        let accepted = accepted.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FILL_PROGRESS_EVERY).await;
                let done = accepted.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                eprintln!("  fill: {done} / {count} transfers, {:.0} s, {:.0}/s", secs, done as f64 / secs);
            }
        })
    };
    let mut total = PhaseResult::new();
    for task in tasks {
        total.merge(task.await?);
    }
    total.wall = started.elapsed();
    progress.abort();
    for signer in signers {
        signer.join().map_err(|_| anyhow::anyhow!("a signer thread panicked"))??;
    }
    Ok(total)
}
