//! Bad input over real gRPC: each gets a clear error, changes nothing, and the node keeps
//! serving. Operations are built and signed here and sent with a real gRPC client.

use cercle_core::sign::Keypair;
use cercle_core::{AccountId, Genesis, OpKind, Operation, OperationId, RegisterAccount, Transfer};
use cercle_e2e::{Node, envelope, genesis, now_ms, raw_call, read_key, reject_code};
use cercle_proto as pb;
use prost::Message;
use tonic::Code;

const HOUR_MS: u64 = 3_600_000;

fn id(n: u64) -> OperationId {
    let mut b = [0u8; 16];
    b[8..].copy_from_slice(&n.to_be_bytes());
    OperationId(b)
}

fn handle(s: &str) -> AccountId {
    AccountId::parse(s).unwrap()
}

fn register(n: u64, name: &str, key: &Keypair, credit_limit_minor: i64) -> Operation {
    Operation {
        id: id(n),
        valid_until_ms: now_ms() + HOUR_MS,
        kind: OpKind::RegisterAccount(RegisterAccount {
            account: handle(name),
            display_name: name.into(),
            keys: vec![key.public_key()],
            credit_limit_minor,
            max_balance_minor: None,
            profile: Default::default(),
            allow_shared_key: true,
        }),
    }
}

fn transfer(n: u64, payer: &str, payee: &str, amount_minor: i64) -> Operation {
    Operation {
        id: id(n),
        valid_until_ms: now_ms() + HOUR_MS,
        kind: OpKind::Transfer(Transfer {
            payer: handle(payer),
            payee: handle(payee),
            amount_minor,
            memo: String::new(),
            invoice_ref: None,
            invoice: None,
        }),
    }
}

struct Fixture {
    node: Node,
    genesis: Genesis,
    admin: Keypair,
    firm: Keypair,
    _tmp: tempfile::TempDir,
}

impl Fixture {
    async fn submit(&self, env: pb::Envelope) -> Result<pb::Receipt, tonic::Status> {
        let resp = self.node.client().await.submit(pb::SubmitRequest { envelope: Some(env) }).await?;
        Ok(resp.into_inner().receipt.expect("receipt"))
    }

    async fn submit_op(&self, key: &Keypair, op: &Operation) -> Result<pb::Receipt, tonic::Status> {
        self.submit(envelope(&self.genesis, key, op)).await
    }

    async fn log_size(&self) -> u64 {
        self.node
            .client()
            .await
            .get_ledger_info(pb::GetLedgerInfoRequest {})
            .await
            .unwrap()
            .into_inner()
            .log_size
    }

    /// Submits `env`, expects the gRPC `code`, a message containing `needle`, the stable
    /// reason `reason` (when given), and no change to the log.
    async fn expect_refused(&self, env: pb::Envelope, code: Code, reason: Option<u16>, needle: &str) {
        let before = self.log_size().await;
        let status = self.submit(env).await.expect_err("must be refused");
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(needle), "message {:?} lacks {needle:?}", status.message());
        assert_eq!(reject_code(&status), reason, "{status:?}");
        assert_eq!(self.log_size().await, before, "a refused operation changed the log");
    }
}

async fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = Node::init_and_start(&data, &[]);
    let genesis = genesis(&node).await;
    let admin = read_key(&data.join("admin.key"));
    let firm = Keypair::from_seed(&[42; 32]);
    let fx = Fixture { node, genesis, admin, firm, _tmp: tmp };
    let big = Keypair::from_seed(&[43; 32]);
    fx.submit_op(&fx.admin, &register(1, "firm-a", &fx.firm, 100_000)).await.unwrap();
    fx.submit_op(&fx.admin, &register(2, "firm-b", &fx.firm, 0)).await.unwrap();
    fx.submit_op(&fx.admin, &register(3, "whale", &big, AMOUNT_MAX)).await.unwrap();
    fx
}

/// Largest transfer and credit limit, in minor units (`op::AMOUNT_MAX_MINOR`), written out.
const AMOUNT_MAX: i64 = 10_000_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_the_node_keeps_serving() {
    let mut fx = fixture().await;
    let g = fx.genesis.clone();
    let url = fx.node.url();

    // Malformed protobuf on the wire: the caller's error, named as such.
    let status =
        raw_call(&url, "/cercle.v1.Ledger/Submit", vec![0x0a, 0xff, 0xff, 0xff, 0x0f]).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("the request is not a valid SubmitRequest: "), "{status:?}");

    // A well-formed envelope whose signed body is not an operation.
    let body = vec![0xff; 10];
    let sig = fx.admin.sign_op(&g.ledger_id, &body);
    let env = pb::Envelope {
        body,
        signer: fx.admin.public_key().0.to_vec(),
        signature: sig.to_vec(),
        cosignatures: vec![],
    };
    fx.expect_refused(env, Code::InvalidArgument, Some(1), "not a valid OperationBody").await;

    // An oversized message is refused before it is parsed.
    let huge = pb::SubmitRequest {
        envelope: Some(pb::Envelope {
            body: vec![7; 6 * 1024 * 1024],
            signer: vec![0; 32],
            signature: vec![0; 64],
            cosignatures: vec![],
        }),
    };
    let status = raw_call(&url, "/cercle.v1.Ledger/Submit", huge.encode_to_vec()).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "oversized message: {status:?}"
    );

    // A bad signature: a flipped byte.
    let mut env = envelope(&g, &fx.firm, &transfer(10, "firm-a", "firm-b", 100));
    env.signature[5] ^= 1;
    fx.expect_refused(env, Code::Unauthenticated, Some(2), "bad signature").await;

    // A signature made for another ledger.
    let mut other = g.clone();
    other.ledger_id.0[0] ^= 1;
    let env = envelope(&other, &fx.firm, &transfer(11, "firm-a", "firm-b", 100));
    fx.expect_refused(env, Code::Unauthenticated, Some(2), "bad signature").await;

    // Unknown account.
    let env = envelope(&g, &fx.firm, &transfer(12, "firm-a", "nobody", 100));
    fx.expect_refused(env, Code::NotFound, Some(20), "unknown account 'nobody'").await;

    // Zero and negative amounts.
    let env = envelope(&g, &fx.firm, &transfer(13, "firm-a", "firm-b", 0));
    fx.expect_refused(env, Code::InvalidArgument, Some(40), "amount must be positive").await;
    let env = envelope(&g, &fx.firm, &transfer(14, "firm-a", "firm-b", -500));
    fx.expect_refused(env, Code::InvalidArgument, Some(40), "-5.00 CHW").await;

    // Amounts and limits are bounded, so no balance can overflow: an amount past the bound
    // gets the same answer whoever the payee is, existing or not (issue #10).
    let env = envelope(&g, &fx.firm, &transfer(16, "firm-a", "firm-b", i64::MAX));
    fx.expect_refused(env, Code::InvalidArgument, Some(40), "an amount must be positive").await;
    let env = envelope(&g, &fx.firm, &transfer(16, "firm-a", "nobody", i64::MAX));
    fx.expect_refused(env, Code::InvalidArgument, Some(40), "an amount must be positive").await;
    let env = envelope(&g, &fx.admin, &register(16, "giant", &fx.firm, AMOUNT_MAX + 1));
    fx.expect_refused(env, Code::InvalidArgument, Some(32), "between 0 and 10000000000000").await;
    let whale = Keypair::from_seed(&[43; 32]);
    fx.submit_op(&whale, &transfer(15, "whale", "firm-b", AMOUNT_MAX)).await.unwrap();

    // A frozen account.
    let freeze = Operation {
        id: id(17),
        valid_until_ms: now_ms() + HOUR_MS,
        kind: OpKind::FreezeAccount { account: handle("firm-a"), reason: "audit".into() },
    };
    fx.submit_op(&fx.admin, &freeze).await.unwrap();
    let env = envelope(&g, &fx.firm, &transfer(18, "firm-a", "whale", 1));
    fx.expect_refused(env, Code::FailedPrecondition, Some(22), "account 'firm-a' is frozen").await;

    // Reused operation id with another body.
    let env = envelope(&g, &fx.firm, &transfer(15, "firm-b", "whale", 1));
    fx.expect_refused(env, Code::AlreadyExists, Some(5), "already used for a different operation").await;
    // The same envelope again is the original receipt, not a second payment.
    let original = fx.submit_op(&whale, &transfer(15, "whale", "firm-b", AMOUNT_MAX)).await;
    // (valid_until differs, so this is a different body: refused as a conflict.)
    assert_eq!(reject_code(&original.unwrap_err()), Some(5));

    // Expired operation.
    let mut op = transfer(19, "firm-b", "whale", 1);
    op.valid_until_ms = now_ms() - 60_000;
    fx.expect_refused(envelope(&g, &fx.firm, &op), Code::FailedPrecondition, Some(3), "operation expired")
        .await;

    // A firm issuing an administrator operation.
    let op = Operation {
        id: id(20),
        valid_until_ms: now_ms() + HOUR_MS,
        kind: OpKind::UnfreezeAccount { account: handle("firm-a"), reason: String::new() },
    };
    fx.expect_refused(envelope(&g, &fx.firm, &op), Code::PermissionDenied, Some(10), "not an administrator")
        .await;

    // Reading another firm's data, and reading without a key.
    let mut client = fx.node.client().await;
    let status = client.get_account(pb::GetAccountRequest { account: "whale".into() }).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let ts = now_ms();
    let req = signed_read(&g, &fx.firm, "GetAccount", ts, pb::GetAccountRequest { account: "whale".into() });
    let status = client.get_account(req).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // A read signature covers the whole request: its headers, moved onto a request for
    // another account (or another page), fail.
    let (metadata, extensions, _) =
        signed_read(&g, &fx.firm, "GetAccount", ts, pb::GetAccountRequest { account: "firm-b".into() })
            .into_parts();
    let req =
        tonic::Request::from_parts(metadata, extensions, pb::GetAccountRequest { account: "firm-a".into() });
    let status = client.get_account(req).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("SHA-256 of the request"), "{status:?}");
    // A timestamp more than 60 s away from the node's clock is refused.
    let stale = signed_read(
        &g,
        &fx.firm,
        "GetAccount",
        ts - 61_000,
        pb::GetAccountRequest { account: "firm-b".into() },
    );
    let status = client.get_account(stale).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("more than 60 s"), "{status:?}");
    // The firm reads its own account.
    let req =
        signed_read(&g, &fx.firm, "GetAccount", now_ms(), pb::GetAccountRequest { account: "firm-b".into() });
    let account = client.get_account(req).await.unwrap().into_inner().account.unwrap();
    assert_eq!(account.balance_minor, AMOUNT_MAX);

    // An oversized page.
    let page = pb::ListEntriesRequest {
        account: "firm-a".into(),
        after_sequence: 0,
        page_size: 5000,
        ..Default::default()
    };
    let req = signed_read(&g, &fx.admin, "ListEntries", now_ms(), page);
    let status = client.list_entries(req).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("maximum is 1000"), "{status:?}");

    // After all that, the node still serves, and the state is what the accepted
    // operations made it.
    assert!(fx.node.is_running());
    let receipt = fx.submit_op(&fx.firm, &transfer(21, "firm-b", "whale", 1)).await;
    // firm-b has no credit and has AMOUNT_MAX: it may pay.
    let receipt = receipt.expect("the node keeps serving");
    assert_eq!(receipt.sequence, 6);
    assert_eq!(fx.log_size().await, 6);
    fx.node.stop();
}

fn signed_read<T: prost::Message>(
    g: &Genesis,
    key: &Keypair,
    method: &str,
    ts: u64,
    msg: T,
) -> tonic::Request<T> {
    let encoded = msg.encode_to_vec();
    let mut req = tonic::Request::new(msg);
    let sig = key.sign(&cercle_core::sign::read_auth_message(&g.ledger_id, method, ts, &encoded));
    req.metadata_mut().insert("x-cercle-pubkey", key.public_key().to_hex().parse().unwrap());
    req.metadata_mut().insert("x-cercle-timestamp", ts.to_string().parse().unwrap());
    req.metadata_mut().insert("x-cercle-signature", hex_encode(&sig).parse().unwrap());
    req
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
