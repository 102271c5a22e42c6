//! A load of concurrent clients and the check that follows a crash, shared by the crash
//! test and the power-loss test.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use cercle_core::sign::Keypair;
use cercle_core::{AccountId, Genesis, OpKind, Operation, OperationId, RegisterAccount, Transfer};
use cercle_proto as pb;

use crate::{Node, envelope, now_ms};

pub const ACCOUNTS: usize = 24;
pub const CLIENTS: usize = 8;
pub const CREDIT_LIMIT_MINOR: i64 = 1_000_000;

/// A small deterministic generator (xorshift64*), so a failing run can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

pub fn account(i: usize) -> AccountId {
    AccountId::parse(&format!("firm-{i:03}")).unwrap()
}

fn op_id(client: usize, n: u64, round: u64) -> OperationId {
    let mut id = [0u8; 16];
    id[0] = client as u8;
    id[1..8].copy_from_slice(&round.to_be_bytes()[1..]);
    id[8..].copy_from_slice(&n.to_be_bytes());
    OperationId(id)
}

/// What the clients were told: operation id -> sequence in its receipt.
pub type Acknowledged = Arc<Mutex<HashMap<OperationId, u64>>>;

pub async fn register_accounts(node: &Node, g: &Genesis, admin: &Keypair, firm: &Keypair) {
    let envelopes = (0..ACCOUNTS)
        .map(|i| {
            let op = Operation {
                id: OperationId([0xAA; 16]).with_suffix(i as u64),
                valid_until_ms: now_ms() + 3_600_000,
                kind: OpKind::RegisterAccount(RegisterAccount {
                    account: account(i),
                    display_name: format!("Firm {i}"),
                    keys: vec![firm.public_key()],
                    credit_limit_minor: CREDIT_LIMIT_MINOR,
                    max_balance_minor: None,
                }),
            };
            envelope(g, admin, &op)
        })
        .collect();
    let results = node.client().await.submit_batch(pb::SubmitBatchRequest { envelopes }).await.unwrap();
    for r in results.into_inner().results {
        assert!(matches!(r.outcome, Some(pb::submit_result::Outcome::Receipt(_))), "{r:?}");
    }
}

trait WithSuffix {
    fn with_suffix(self, n: u64) -> Self;
}

impl WithSuffix for OperationId {
    fn with_suffix(mut self, n: u64) -> Self {
        self.0[8..].copy_from_slice(&n.to_be_bytes());
        self
    }
}

/// One client: submits transfers (single and in small batches) until the node goes away.
pub async fn client_loop(
    url: String,
    g: Genesis,
    firm: Keypair,
    client: usize,
    round: u64,
    seed: u64,
    acked: Acknowledged,
) {
    let mut rng = Rng(seed | 1);
    let Ok(mut ledger) = pb::ledger_client::LedgerClient::connect(url).await else { return };
    let mut n = 0u64;
    loop {
        let batch = if rng.below(4) == 0 { 1 + rng.below(20) as usize } else { 1 };
        let mut ops = Vec::with_capacity(batch);
        for _ in 0..batch {
            n += 1;
            let payer = rng.below(ACCOUNTS as u64) as usize;
            let payee = (payer + 1 + rng.below(ACCOUNTS as u64 - 1) as usize) % ACCOUNTS;
            ops.push(Operation {
                id: op_id(client, n, round),
                valid_until_ms: now_ms() + 3_600_000,
                kind: OpKind::Transfer(Transfer {
                    payer: account(payer),
                    payee: account(payee),
                    amount_minor: 1 + rng.below(10_000) as i64,
                    memo: format!("round {round}"),
                    invoice_ref: None,
                    invoice: None,
                }),
            });
        }
        if batch == 1 {
            let op = &ops[0];
            let env = envelope(&g, &firm, op);
            match ledger.submit(pb::SubmitRequest { envelope: Some(env) }).await {
                Ok(r) => {
                    let seq = r.into_inner().receipt.expect("receipt").sequence;
                    acked.lock().unwrap().insert(op.id, seq);
                }
                Err(s) if s.code() == tonic::Code::FailedPrecondition => {} // a limit: fine
                Err(_) => return,                                           // the node is gone
            }
        } else {
            let envelopes = ops.iter().map(|op| envelope(&g, &firm, op)).collect();
            match ledger.submit_batch(pb::SubmitBatchRequest { envelopes }).await {
                Ok(r) => {
                    let mut acked = acked.lock().unwrap();
                    for (op, result) in ops.iter().zip(r.into_inner().results) {
                        if let Some(pb::submit_result::Outcome::Receipt(receipt)) = result.outcome {
                            acked.insert(op.id, receipt.sequence);
                        }
                    }
                }
                Err(_) => return,
            }
        }
    }
}

/// Reads the whole ledger through the node as the administrator: every entry once.
pub async fn read_everything(
    node: &Node,
    g: &Genesis,
    admin: &Keypair,
) -> (BTreeMap<u64, pb::Entry>, Vec<pb::Account>) {
    let mut client = node.client().await;
    let mut entries = BTreeMap::new();
    let mut accounts = Vec::new();
    for i in 0..ACCOUNTS {
        let name = account(i).to_string();
        let req = signed(g, admin, "GetAccount", &name, pb::GetAccountRequest { account: name.clone() });
        accounts.push(client.get_account(req).await.unwrap().into_inner().account.unwrap());
        let mut after = 0;
        loop {
            let page = pb::ListEntriesRequest {
                account: name.clone(),
                after_sequence: after,
                page_size: 1000,
                ..Default::default()
            };
            let req = signed(g, admin, "ListEntries", &name, page);
            let resp = client.list_entries(req).await.unwrap().into_inner();
            for e in resp.entries {
                entries.insert(e.sequence, e);
            }
            match resp.next_after_sequence {
                Some(next) => after = next,
                None => break,
            }
        }
    }
    (entries, accounts)
}

pub fn signed<T>(g: &Genesis, key: &Keypair, method: &str, subject: &str, msg: T) -> tonic::Request<T> {
    let ts = now_ms();
    let mut req = tonic::Request::new(msg);
    let sig = key.sign(&cercle_core::sign::read_auth_message(&g.ledger_id, method, ts, subject));
    let md = req.metadata_mut();
    md.insert("x-cercle-pubkey", key.public_key().to_hex().parse().unwrap());
    md.insert("x-cercle-timestamp", ts.to_string().parse().unwrap());
    md.insert(
        "x-cercle-signature",
        sig.iter().map(|b| format!("{b:02x}")).collect::<String>().parse().unwrap(),
    );
    req
}

/// Checks the ledger as the restarted node serves it against what was acknowledged.
pub async fn check(node: &Node, g: &Genesis, admin: &Keypair, acked: &HashMap<OperationId, u64>) -> usize {
    let (entries, accounts) = read_everything(node, g, admin).await;
    // Sequences are 1..=n without gaps (registrations touch one account each, so every
    // entry appears in some history).
    let n = entries.len() as u64;
    assert_eq!(entries.keys().copied().collect::<Vec<_>>(), (1..=n).collect::<Vec<_>>());
    let mut seen: HashMap<OperationId, u64> = HashMap::new();
    for (seq, e) in &entries {
        let view = cercle_core::EntryView::try_from(e.clone()).expect("entry hashes to its entry_hash");
        let op = cercle_core::body::decode(&view.entry.envelope.body).expect("body decodes");
        assert!(seen.insert(op.id, *seq).is_none(), "operation {} appears twice", op.id);
    }
    for (id, seq) in acked {
        assert_eq!(seen.get(id), Some(seq), "acknowledged operation {id} lost or moved");
    }
    let sum: i128 = accounts.iter().map(|a| i128::from(a.balance_minor)).sum();
    assert_eq!(sum, 0, "balances sum to zero");
    for a in &accounts {
        assert!(a.balance_minor >= -a.credit_limit_minor, "{} is below its limit", a.account);
    }
    entries.len()
}
