//! Graceful shutdown (#13): SIGTERM under load. The node stops accepting, answers every
//! request it took (a receipt, or UNAVAILABLE), syncs, and exits 0 within its grace; no
//! client waits forever, and after a restart every acknowledged operation is in the log at
//! the sequence its receipt named.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cercle_core::sign::Keypair;
use cercle_e2e::load::{Acknowledged, CLIENTS, check, client_loop, register_accounts};
use cercle_e2e::startup::errors;
use cercle_e2e::{Node, genesis, read_key};

/// The shutdown grace the node is given here.
const GRACE_MS: u64 = 2_000;
/// How long the node may take to exit after SIGTERM: the grace, then the writer's queue
/// (at most a few groups of a few milliseconds each) and the last checkpoint.
const EXIT_DEADLINE: Duration = Duration::from_millis(GRACE_MS + 8_000);
/// How long a client may wait for its last answer after SIGTERM.
const CLIENT_DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_syncs_and_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = data.join("node.log");
    let init = std::process::Command::new(cercle_e2e::binary("cercle-node"))
        .args(["init", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(init.status.success());
    let grace = GRACE_MS.to_string();
    let mut node = Node::start_configured(&data, &log, &["--shutdown-grace-ms", &grace], None);
    let g = genesis(&node).await;
    let admin = read_key(&data.join("admin.key"));
    let firm = Keypair::from_seed(&[7; 32]);
    register_accounts(&node, &g, &admin, &firm).await;

    let acked: Acknowledged = Arc::new(Mutex::new(HashMap::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            tokio::spawn(client_loop(node.url(), g.clone(), firm.clone(), c, 0, c as u64 + 1, acked.clone()))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 200 {
        assert!(Instant::now() < deadline, "no load acknowledged within a minute");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = node.terminate(EXIT_DEADLINE);
        (node, status)
    });
    let (node, status) = status.await.unwrap();
    let status =
        status.unwrap_or_else(|| panic!("the node did not exit within {EXIT_DEADLINE:?} of SIGTERM"));
    assert_eq!(status.code(), Some(0), "a clean stop exits 0: {status:?}");
    drop(node);
    // Every client got its last answer (a receipt, or an error that made it stop).
    for c in clients {
        tokio::time::timeout(CLIENT_DEADLINE, c)
            .await
            .expect("a client still waits after the node exited")
            .unwrap();
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("SIGTERM") && text.contains("\"stopped\""),
        "the node says why and that it stopped:\n{text}"
    );
    assert!(errors(&log).is_empty(), "no error logged: {:?}", errors(&log));

    let acked = acked.lock().unwrap().clone();
    let node = Node::start(&data);
    let entries = check(&node, &g, &admin, &acked).await;
    assert!(entries >= acked.len() + 24, "{entries} entries for {} acknowledged", acked.len());
}

/// Invoices issued and accepted in a ring among the load's accounts (each owes the next),
/// so that a clearing run has much to set off.
const RING_INVOICES: usize = 1_200;

fn invoice_id(n: usize) -> cercle_core::InvoiceId {
    let mut id = [0x1c; 16];
    id[8..].copy_from_slice(&(n as u64).to_be_bytes());
    cercle_core::InvoiceId(id)
}

fn op(id_tag: u8, n: usize, kind: cercle_core::OpKind) -> cercle_core::Operation {
    let mut id = [id_tag; 16];
    id[8..].copy_from_slice(&(n as u64).to_be_bytes());
    cercle_core::Operation {
        id: cercle_core::OperationId(id),
        valid_until_ms: cercle_e2e::now_ms() + 3_600_000,
        kind,
    }
}

/// SIGTERM while a clearing run is being planned or applied: it is applied whole (its
/// receipt was sent and its entry is in the log) or not at all (UNAVAILABLE, no entry), the
/// node exits 0, and the restarted node's state is what an independent replay of its log
/// gives: every balance, and the open invoices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_clearing_run_applies_it_whole_or_not_at_all() {
    use cercle_core::{InvoiceParties, IssueInvoice, OpKind, RunClearing};
    use cercle_e2e::load::{ACCOUNTS, account, signed, stream_all};
    use cercle_e2e::{envelope, http_get};
    use cercle_proto as pb;

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = data.join("node.log");
    let mut node = Node::init_and_start(&data, &[]);
    node.stop();
    let grace = GRACE_MS.to_string();
    let metrics = ["--shutdown-grace-ms", &grace, "--metrics-listen", "127.0.0.1:0"];
    let mut node = Node::start_configured(&data, &log, &metrics, None);
    let g = genesis(&node).await;
    let admin = read_key(&data.join("admin.key"));
    let firm = Keypair::from_seed(&[7; 32]);
    register_accounts(&node, &g, &admin, &firm).await;
    let mut client = node.client().await;
    let issue: Vec<_> = (0..RING_INVOICES)
        .map(|n| {
            let (payee, payer) = (account(n % ACCOUNTS), account((n + 1) % ACCOUNTS));
            let kind = OpKind::IssueInvoice(IssueInvoice {
                invoice: invoice_id(n),
                payee,
                payer,
                amount_minor: 100 + n as i64,
                local_share_percent: 100,
                due_day: None,
                reference: format!("ring {n}"),
                excluded_from_clearing: false,
            });
            envelope(&g, &firm, &op(0x11, n, kind))
        })
        .collect();
    let accept: Vec<_> = (0..RING_INVOICES)
        .map(|n| {
            let (payee, payer) = (account(n % ACCOUNTS), account((n + 1) % ACCOUNTS));
            let kind = OpKind::AcceptInvoice(InvoiceParties { invoice: invoice_id(n), payee, payer });
            envelope(&g, &firm, &op(0x12, n, kind))
        })
        .collect();
    for chunk in issue.chunks(1000).chain(accept.chunks(1000)) {
        let results =
            client.submit_batch(pb::SubmitBatchRequest { envelopes: chunk.to_vec() }).await.unwrap();
        for r in results.into_inner().results {
            assert!(matches!(r.outcome, Some(pb::submit_result::Outcome::Receipt(_))), "{r:?}");
        }
    }
    let before = ACCOUNTS + 2 * RING_INVOICES;

    // The run, and SIGTERM as soon as it is sent.
    let run = envelope(
        &g,
        &admin,
        &op(0x13, 0, OpKind::RunClearing(RunClearing { with_credit: false, reason: "ring".into() })),
    );
    let answer = tokio::spawn(async move { client.submit(pb::SubmitRequest { envelope: Some(run) }).await });
    tokio::task::yield_now().await;
    let (node, status) = tokio::task::spawn_blocking(move || {
        let status = node.terminate(EXIT_DEADLINE);
        (node, status)
    })
    .await
    .unwrap();
    drop(node);
    let status =
        status.unwrap_or_else(|| panic!("the node did not exit within {EXIT_DEADLINE:?} of SIGTERM"));
    assert_eq!(status.code(), Some(0), "{status:?}");
    let answer = tokio::time::timeout(CLIENT_DEADLINE, answer).await.expect("the run is answered").unwrap();
    let applied = match &answer {
        Ok(receipt) => {
            assert_eq!(receipt.get_ref().receipt.as_ref().unwrap().sequence, before as u64 + 1);
            true
        }
        // Refused as the node stopped, or never reached it: not applied.
        Err(s) => {
            assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
            false
        }
    };

    let node = Node::start_configured(&data, &log, &metrics[2..], None);
    let entries: Vec<cercle_core::Entry> = stream_all(&node, &g, &admin)
        .await
        .into_iter()
        .map(|e| cercle_core::Entry::try_from(e).expect("entry"))
        .collect();
    assert_eq!(
        entries.len(),
        before + usize::from(applied),
        "the run's entry is there iff it was acknowledged"
    );
    let verdict = cercle_audit::verify(
        &g,
        entries.into_iter().map(Ok),
        None,
        &cercle_audit::Options::default(),
        |_| {},
    )
    .expect("the log replays");
    let state = verdict.ledger.state();
    let mut client = node.client().await;
    for i in 0..ACCOUNTS {
        let req = signed(&g, &admin, "GetAccount", pb::GetAccountRequest { account: account(i).to_string() });
        let served = client.get_account(req).await.unwrap().into_inner().account.unwrap();
        assert_eq!(Some(served.balance_minor), state.account(&account(i)).map(|a| a.balance_minor));
    }
    let (_, scrape) = http_get(node.metrics_url.as_ref().unwrap());
    let open = format!("cercle_open_invoices {}\n", state.open_invoice_count());
    assert!(scrape.contains(&open), "expected {open:?} in:\n{scrape}");
    if applied {
        assert!(state.open_invoice_count() < RING_INVOICES, "the run set invoices off");
    }
}
