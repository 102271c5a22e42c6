//! Admission before verification: an envelope that finds no place in the writer's queue is
//! answered BUSY without its signature being checked, so an overloaded node spends no CPU
//! on work it refuses. Envelopes with bad signatures show it: without a place they come
//! back BUSY, with one, BAD_SIGNATURE. In front of the handlers, a write that arrives when
//! not one place is free is refused before its body is even read.

mod common;

use std::time::{Duration, Instant};

use cercle_core::{AccountId, OpKind, Operation, OperationId, RegisterAccount, RejectCode};
use cercle_limits::WRITE_QUEUE_MAX;
use cercle_proto as pb;
use cercle_proto::ledger_server::Ledger as _;
use cercle_server::admission::{RefuseWritesWhenFull, WRITE_PATHS};
use cercle_server::service::LedgerService;
use cercle_server::{DataDir, InitOptions, init_data_dir, now_ms, open_node};
use common::{keypair, sign_op};
use tonic::codegen::{Service, http};
use tonic::{Code, Request};

/// How long the writer may take to give back the places of answered operations.
const PLACES_BACK_DEADLINE: Duration = Duration::from_secs(10);

fn register(n: u64) -> Operation {
    let mut id = [0u8; 16];
    id[8..].copy_from_slice(&n.to_be_bytes());
    Operation {
        id: OperationId(id),
        valid_until_ms: now_ms() + 3_600_000,
        kind: OpKind::RegisterAccount(RegisterAccount {
            account: AccountId::parse(&format!("firm-{n}")).unwrap(),
            display_name: format!("Firm {n}"),
            keys: vec![keypair(9).public_key()],
            credit_limit_minor: 0,
            max_balance_minor: None,
            profile: Default::default(),
            allow_shared_key: true,
        }),
    }
}

/// Each envelope's outcome: `Ok(())` for a receipt, else the rejection's reason name.
async fn batch(service: &LedgerService, envelopes: Vec<pb::Envelope>) -> Vec<Result<(), String>> {
    let response = service.submit_batch(Request::new(pb::SubmitBatchRequest { envelopes })).await.unwrap();
    response
        .into_inner()
        .results
        .into_iter()
        .map(|r| match r.outcome.expect("an outcome") {
            pb::submit_result::Outcome::Receipt(_) => Ok(()),
            pb::submit_result::Outcome::Rejection(r) => Err(r.reason),
        })
        .collect()
}

/// Waits until every place of the writer's queue is free again, and returns them held.
async fn every_place(service: &LedgerService) -> cercle_server::admission::Reservation {
    let deadline = Instant::now() + PLACES_BACK_DEADLINE;
    loop {
        let held = service.writer().reserve(WRITE_QUEUE_MAX).expect("some room");
        if held.len() == WRITE_QUEUE_MAX {
            return held;
        }
        drop(held);
        assert!(Instant::now() < deadline, "the writer kept places after answering");
        tokio::task::yield_now().await;
    }
}

/// A node on `dir`, governed by `admin`.
async fn start(
    dir: &tempfile::TempDir,
    admin: &cercle_core::sign::Keypair,
) -> (cercle_core::Genesis, cercle_server::OpenNode) {
    let data = DataDir::new(dir.path().join("data"));
    let options = InitOptions {
        currency: "CHW".into(),
        exponent: 2,
        admin_keys: vec![admin.public_key()],
        auditor_keys: vec![],
        quorum: 1,
        day_offset_minutes: 0,
    };
    let genesis = init_data_dir(&data, options).unwrap().genesis;
    (genesis, open_node(&data).await.unwrap())
}

/// Stops the node: drops the handlers, waits for the writer, closes the store.
async fn stop(node: cercle_server::OpenNode) {
    tokio::task::spawn_blocking(move || node.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_place_in_the_queue_an_envelope_is_refused_before_its_signature_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let admin = keypair(1);
    let (genesis, node) = start(&dir, &admin).await;
    let service = node.service.clone();
    let good = |n| sign_op(&genesis.ledger_id, &admin, &register(n));
    let bad = |n| {
        let mut envelope = good(n);
        envelope.signature[0] ^= 1;
        envelope
    };
    let busy = || Err("BUSY".to_string());
    let bad_signature = || Err(RejectCode::BadSignature.name().to_string());

    // Every place taken, as by a queue full of operations waiting to be written.
    let held = every_place(&service).await;
    assert_eq!(batch(&service, vec![bad(1), bad(2), good(3)]).await, vec![busy(), busy(), busy()]);
    let request = Request::new(pb::SubmitRequest { envelope: Some(bad(4)) });
    let status = service.submit(request).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // One place: the first envelope gets it and is checked, the others wait their turn.
    drop(held);
    let held = service.writer().reserve(WRITE_QUEUE_MAX - 1).unwrap();
    assert_eq!(held.len(), WRITE_QUEUE_MAX - 1);
    assert_eq!(batch(&service, vec![bad(5), good(6), bad(7)]).await, vec![bad_signature(), busy(), busy()]);
    // The refused envelope gave its place back at once.
    let one = service.writer().reserve(1).expect("the place of a refused envelope is free again");
    drop((one, held));

    // With room, every envelope is checked, and accepted or refused on its merits.
    assert_eq!(batch(&service, vec![bad(8), good(9)]).await, vec![bad_signature(), Ok(())]);
    let request = Request::new(pb::SubmitRequest { envelope: Some(bad(10)) });
    let status = service.submit(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let request = Request::new(pb::SubmitRequest { envelope: Some(good(11)) });
    service.submit(request).await.unwrap();
    // And the writer gives every place back once it has answered.
    drop(every_place(&service).await);
    drop(service);
    stop(node).await;
}

/// The gRPC status a response gives in its headers: set when it is refused before its
/// body is read (a trailers-only response); a handler's answer gives it in the trailers.
fn status_in_headers(response: &http::Response<tonic::body::Body>) -> Option<i32> {
    response.headers().get("grpc-status").map(|v| v.to_str().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_place_at_all_a_write_is_refused_before_its_body_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let (_, node) = start(&dir, &keypair(1)).await;
    let service = node.service.clone();
    let mut server = RefuseWritesWhenFull::new(
        pb::ledger_server::LedgerServer::new(service.clone()),
        service.writer().room(),
    );
    // A gRPC frame that announces 5 bytes and holds 2: any attempt to read it fails.
    let call = |path: &str| {
        http::Request::builder()
            .method("POST")
            .uri(format!("http://node{path}"))
            .header("content-type", "application/grpc")
            .body(tonic::body::Body::new(String::from("\0\0\0\0\x05\x0a\x03")))
            .unwrap()
    };
    let resource_exhausted = Some(Code::ResourceExhausted as i32);

    let held = every_place(&service).await;
    for path in WRITE_PATHS {
        let response = server.call(call(path)).await.unwrap();
        assert_eq!(status_in_headers(&response), resource_exhausted, "{path}");
    }
    // Reads go through whatever the queue holds.
    let response = server.call(call("/cercle.v1.Ledger/GetLedgerInfo")).await.unwrap();
    assert_ne!(status_in_headers(&response), resource_exhausted);
    // With one place, the writes go through to their handlers (the paths are the
    // service's), which read the bad frame.
    drop(held);
    let _held = service.writer().reserve(WRITE_QUEUE_MAX - 1).unwrap();
    for path in WRITE_PATHS {
        let response = server.call(call(path)).await.unwrap();
        assert_ne!(status_in_headers(&response), resource_exhausted, "{path}");
        assert_ne!(status_in_headers(&response), Some(Code::Unimplemented as i32), "{path}");
    }
    drop((_held, server, service));
    stop(node).await;
}
