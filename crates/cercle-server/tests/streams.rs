//! `StreamEntries` streams that nobody reads: bounded per key and in all, ended after the
//! send timeout, and never in the way of other calls. The node is served in-process over
//! loopback, with small bounds; the streams' client advertises a small HTTP/2 window, so
//! the node soon has entries it cannot send.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cercle_core::sign::{Keypair, read_auth_message};
use cercle_core::{AccountId, Genesis, OpKind, Operation, OperationId, RegisterAccount};
use cercle_proto as pb;
use cercle_server::{DataDir, InitOptions, ServerLimits, init_data_dir, now_ms};
use common::{keypair, sign_op};
use pb::ledger_client::LedgerClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

/// Entries in the log: many more than the windows and buffers between the node's store
/// and a client that does not read can hold.
const ENTRIES: u64 = 2_000;
/// The bounds the node is started with.
const PER_KEY_MAX: usize = 2;
const TOTAL_MAX: usize = 3;
const SEND_TIMEOUT: Duration = Duration::from_millis(500);
/// How long anything awaited here may take.
const DEADLINE: Duration = Duration::from_secs(60);
/// The window the streams' client advertises: 64 KiB, HTTP/2's initial window.
const SMALL_WINDOW_BYTES: u32 = 65_535;

fn register(n: u64) -> Operation {
    let mut id = [0u8; 16];
    id[8..].copy_from_slice(&n.to_be_bytes());
    Operation {
        id: OperationId(id),
        valid_until_ms: now_ms() + 3_600_000,
        kind: OpKind::RegisterAccount(RegisterAccount {
            account: AccountId::parse(&format!("firm-{n:05}")).unwrap(),
            display_name: format!("Firm {n}"),
            keys: vec![keypair(9).public_key()],
            credit_limit_minor: 0,
            max_balance_minor: None,
            profile: Default::default(),
            allow_shared_key: true,
        }),
    }
}

/// A read request of `method`, signed by `key`.
fn signed<T: prost::Message>(g: &Genesis, key: &Keypair, method: &str, message: T) -> Request<T> {
    let ts = now_ms();
    let signature = key.sign(&read_auth_message(&g.ledger_id, method, ts, &message.encode_to_vec()));
    let mut request = Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert("x-cercle-pubkey", key.public_key().to_hex().parse().unwrap());
    metadata.insert("x-cercle-timestamp", ts.to_string().parse().unwrap());
    metadata.insert("x-cercle-signature", hex::encode(signature).parse().unwrap());
    request
}

async fn open_stream(
    client: &mut LedgerClient<Channel>,
    g: &Genesis,
    key: &Keypair,
) -> Result<tonic::Streaming<pb::Entry>, tonic::Status> {
    let request = signed(g, key, "StreamEntries", pb::StreamEntriesRequest { from_sequence: 1 });
    client.stream_entries(request).await.map(tonic::Response::into_inner)
}

#[track_caller]
fn assert_refused(outcome: Result<tonic::Streaming<pb::Entry>, tonic::Status>, needle: &str) {
    let Err(status) = outcome else { panic!("the stream must be refused") };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains(needle), "{:?} lacks {needle:?}", status.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_streams_are_bounded_and_ended_and_other_calls_still_answer() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path().join("data"));
    let (admin, auditor) = (keypair(1), keypair(2));
    let options = InitOptions {
        currency: "CHW".into(),
        exponent: 2,
        admin_keys: vec![admin.public_key()],
        auditor_keys: vec![auditor.public_key()],
        quorum: 1,
        day_offset_minutes: 0,
    };
    let g = init_data_dir(&data, options).unwrap().genesis;
    let limits = ServerLimits {
        streams_per_key_max: PER_KEY_MAX,
        streams_max: TOTAL_MAX,
        stream_send_timeout: SEND_TIMEOUT,
        ..ServerLimits::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (ready_tx, ready) = tokio::sync::oneshot::channel::<SocketAddr>();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        cercle_server::serve(
            &data,
            listener,
            &limits,
            cercle_server::Web::Off,
            |addr| {
                let _ = ready_tx.send(addr);
            },
            shutdown,
        )
        .await
    });
    let addr = tokio::time::timeout(DEADLINE, ready).await.unwrap().unwrap();
    let url = format!("http://{addr}");
    let mut calls = LedgerClient::connect(url.clone()).await.unwrap();
    for first in (1..=ENTRIES).step_by(1_000) {
        let envelopes = (first..first + 1_000).map(|n| sign_op(&g.ledger_id, &admin, &register(n))).collect();
        let results = calls.submit_batch(pb::SubmitBatchRequest { envelopes }).await.unwrap().into_inner();
        assert!(
            results.results.iter().all(|r| matches!(r.outcome, Some(pb::submit_result::Outcome::Receipt(_))))
        );
    }

    // The streams' client: one connection with a small window, read by nobody.
    let channel = Endpoint::from_shared(url.clone())
        .unwrap()
        .initial_connection_window_size(SMALL_WINDOW_BYTES)
        .initial_stream_window_size(SMALL_WINDOW_BYTES)
        .connect()
        .await
        .unwrap();
    let mut streams = LedgerClient::new(channel);
    let mut unread = Vec::new();
    for _ in 0..PER_KEY_MAX {
        unread.push(open_stream(&mut streams, &g, &admin).await.unwrap());
    }
    assert_refused(open_stream(&mut streams, &g, &admin).await, "the most one key may have");
    unread.push(open_stream(&mut streams, &g, &auditor).await.unwrap());
    assert_refused(open_stream(&mut streams, &g, &auditor).await, "the most it serves at once");

    // Meanwhile, other calls answer.
    let envelopes = vec![sign_op(&g.ledger_id, &admin, &register(ENTRIES + 1))];
    let results = calls.submit_batch(pb::SubmitBatchRequest { envelopes }).await.unwrap().into_inner();
    assert!(matches!(results.results[0].outcome, Some(pb::submit_result::Outcome::Receipt(_))));
    let page = pb::ListEntriesRequest {
        account: "firm-00001".into(),
        after_sequence: 0,
        page_size: 10,
        ..Default::default()
    };
    let listed = calls.list_entries(signed(&g, &admin, "ListEntries", page)).await.unwrap();
    assert_eq!(listed.into_inner().entries.len(), 1);

    // Once the send timeout has passed, the unread streams have ended and given their
    // places back: the key may open a stream again.
    let deadline = Instant::now() + DEADLINE;
    let reopened = loop {
        match open_stream(&mut streams, &g, &admin).await {
            Ok(stream) => break stream,
            Err(status) if status.code() == Code::ResourceExhausted && Instant::now() < deadline => {
                tokio::time::sleep(SEND_TIMEOUT / 10).await;
            }
            Err(status) => panic!("the unread streams kept their places: {status:?}"),
        }
    };
    drop(reopened);
    // An ended stream says so: what it delivers ends with DEADLINE_EXCEEDED, not with an
    // OK that would pass a part of the log for all of it. (The other streams are cancelled
    // first: unread, they would take the connection's window as soon as it opens.)
    let mut first = unread.remove(0);
    drop(unread);
    let mut received = 0u64;
    let end = tokio::time::timeout(DEADLINE, async {
        loop {
            match first.message().await {
                Ok(Some(_)) => received += 1,
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    })
    .await
    .unwrap();
    let status = end.expect("an ended stream must not finish with OK");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(received < ENTRIES, "all {received} entries arrived: the stream never waited");

    drop((first, streams, calls));
    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, server).await.unwrap().unwrap().unwrap();
}
