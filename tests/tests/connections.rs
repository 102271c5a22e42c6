//! Connections that send nothing cannot keep a paying client out: the node, allowed few
//! open files, runs out of them (EMFILE) under 2,000 idle connections, backs off instead of
//! spinning, closes the idle ones after its idle timeout, and serves the client.

use std::time::{Duration, Instant};

use cercle_core::sign::Keypair;
use cercle_core::{AccountId, OpKind, Operation, OperationId, RegisterAccount, Transfer};
use cercle_e2e::{Node, binary, envelope, genesis, now_ms, read_key};
use cercle_proto as pb;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Connections opened that never send a byte.
const IDLE_CONNECTIONS: usize = 2_000;
/// Files the node may open: far fewer than the idle connections.
const NODE_OPEN_FILES_MAX: u64 = 256;
/// The node's idle timeout in this test.
const IDLE_TIMEOUT_MS: u64 = 1_000;
/// Payments the client makes while the idle connections are held.
const PAYMENTS: u64 = 20;
/// Connection resets the paying client may meet (and retry) in all.
const RESETS_MAX: u32 = 3;
/// How long anything awaited here may take.
const DEADLINE: Duration = Duration::from_secs(120);

fn op_id(n: u64) -> OperationId {
    let mut id = [0u8; 16];
    id[8..].copy_from_slice(&n.to_be_bytes());
    OperationId(id)
}

fn register(n: u64, name: &str, key: &Keypair) -> Operation {
    Operation {
        id: op_id(n),
        valid_until_ms: now_ms() + 3_600_000,
        kind: OpKind::RegisterAccount(RegisterAccount {
            account: AccountId::parse(name).unwrap(),
            display_name: name.into(),
            keys: vec![key.public_key()],
            credit_limit_minor: 1_000_000,
            max_balance_minor: None,
            profile: Default::default(),
            allow_shared_key: true,
        }),
    }
}

fn pay(n: u64) -> Operation {
    Operation {
        id: op_id(n),
        valid_until_ms: now_ms() + 3_600_000,
        kind: OpKind::Transfer(Transfer {
            payer: AccountId::parse("payer").unwrap(),
            payee: AccountId::parse("payee").unwrap(),
            amount_minor: 100,
            memo: String::new(),
            invoice_ref: None,
            invoice: None,
        }),
    }
}

/// Lets this test process hold the idle connections' sockets.
fn allow_open_files(wanted: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < wanted {
        setrlimit(Resource::RLIMIT_NOFILE, wanted.min(hard), hard).expect("setrlimit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_keep_a_paying_client_out() {
    allow_open_files(IDLE_CONNECTIONS as u64 + 1_024);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = std::process::Command::new(binary("cercle-node"))
        .args(["init", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
    let log = tmp.path().join("node.log");
    let idle_timeout = IDLE_TIMEOUT_MS.to_string();
    let node =
        Node::start_configured(&data, &log, &["--idle-timeout-ms", &idle_timeout], Some(NODE_OPEN_FILES_MAX));
    let g = genesis(&node).await;
    let admin = read_key(&data.join("admin.key"));
    let firm = Keypair::from_seed(&[7; 32]);
    let mut client = node.client().await;
    for (n, name) in [(1, "payer"), (2, "payee")] {
        let request = pb::SubmitRequest { envelope: Some(envelope(&g, &admin, &register(n, name, &firm))) };
        client.submit(request).await.unwrap();
    }
    drop(client);

    // 2,000 connections that send nothing, opened all at once: past the node's open files
    // they wait in its listen backlog, or for the kernel to retry their SYN.
    let addr: std::net::SocketAddr = node.addr.parse().unwrap();
    let connecting: Vec<_> = (0..IDLE_CONNECTIONS)
        .map(|_| tokio::spawn(async move { tokio::time::timeout(DEADLINE, TcpStream::connect(addr)).await }))
        .collect();

    // Meanwhile a client connects and pays, again and again. A connection made while the
    // node's listen queue overflows may be reset by the kernel: the client then does what
    // the README tells every client to do, reconnect and send the very same envelope (the
    // node answers a retry with the original receipt), at most `RESETS_MAX` times in all;
    // the balances checked below prove that nothing was paid twice.
    let started = Instant::now();
    let paying = tokio::spawn({
        let url = node.url();
        let g = g.clone();
        async move {
            let connect = || async {
                tokio::time::timeout(DEADLINE, pb::ledger_client::LedgerClient::connect(url.clone()))
                    .await
                    .expect("the client connects in time")
                    .expect("the client connects")
            };
            let mut client = connect().await;
            let mut resets = 0;
            for n in 0..PAYMENTS {
                let sent = envelope(&g, &firm, &pay(100 + n));
                loop {
                    let request = pb::SubmitRequest { envelope: Some(sent.clone()) };
                    let answer = tokio::time::timeout(DEADLINE, client.submit(request))
                        .await
                        .expect("the payment is answered in time");
                    match answer {
                        Ok(receipt) => {
                            assert!(receipt.into_inner().receipt.is_some());
                            break;
                        }
                        Err(status) if status.code() == tonic::Code::Unknown && resets < RESETS_MAX => {
                            eprintln!("payment {n}: the connection was reset ({status}); reconnecting");
                            resets += 1;
                            client = connect().await;
                        }
                        Err(status) => panic!("the payment is accepted: {status:?}"),
                    }
                }
            }
            resets
        }
    });
    let mut idle = Vec::new();
    for connection in connecting {
        if let Ok(Ok(stream)) = connection.await.unwrap() {
            idle.push(stream);
        }
    }
    let resets = paying.await.unwrap();
    eprintln!("{PAYMENTS} payments made, {resets} connection reset(s) on the way");
    assert!(started.elapsed() < DEADLINE);
    // Each payment made exactly one entry, whatever was retried: the two registrations and
    // one entry per payment.
    let mut client = node.client().await;
    let info = client.get_ledger_info(pb::GetLedgerInfoRequest {}).await.expect("ledger info").into_inner();
    assert_eq!(info.log_size, 2 + PAYMENTS, "a retried payment made a second entry");
    assert!(idle.len() > NODE_OPEN_FILES_MAX as usize, "only {} idle connections were opened", idle.len());

    // The node ran out of open files, said so, and kept serving.
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("cannot accept connections"), "the node never ran out of files:\n{said}");
    // It closes a connection that sent nothing: reading it ends (after the node's
    // HTTP/2 settings) instead of waiting for ever.
    let mut silent = idle.swap_remove(0);
    let mut received = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, silent.read_to_end(&mut received)).await;
    assert!(closed.is_ok(), "the node kept an idle connection open");
    drop(idle);
}
