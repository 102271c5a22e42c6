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
                    profile: Default::default(),
                    allow_shared_key: true,
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

/// The whole log as the node serves it to an administrator (`StreamEntries`), in order.
pub async fn stream_all(node: &Node, g: &Genesis, admin: &Keypair) -> Vec<pb::Entry> {
    let mut client = node.client().await;
    let req = signed(g, admin, "StreamEntries", pb::StreamEntriesRequest { from_sequence: 1 });
    let mut stream = client.stream_entries(req).await.expect("StreamEntries").into_inner();
    let mut entries = Vec::new();
    while let Some(entry) = stream.message().await.expect("the stream of entries") {
        entries.push(entry);
    }
    entries
}

/// One account's history as `ListEntries` pages it: the sequences, in order.
pub async fn history(node: &Node, g: &Genesis, admin: &Keypair, name: &str) -> Vec<u64> {
    let mut client = node.client().await;
    let mut sequences = Vec::new();
    let mut after = 0;
    loop {
        let page = pb::ListEntriesRequest {
            account: name.to_string(),
            after_sequence: after,
            page_size: 1000,
            ..Default::default()
        };
        let resp = client.list_entries(signed(g, admin, "ListEntries", page)).await.unwrap().into_inner();
        sequences.extend(resp.entries.iter().map(|e| e.sequence));
        match resp.next_after_sequence {
            Some(next) => after = next,
            None => return sequences,
        }
    }
}

pub fn signed<T: prost::Message>(g: &Genesis, key: &Keypair, method: &str, msg: T) -> tonic::Request<T> {
    let ts = now_ms();
    let encoded = msg.encode_to_vec();
    let mut req = tonic::Request::new(msg);
    let sig = key.sign(&cercle_core::sign::read_auth_message(&g.ledger_id, method, ts, &encoded));
    let md = req.metadata_mut();
    md.insert("x-cercle-pubkey", key.public_key().to_hex().parse().unwrap());
    md.insert("x-cercle-timestamp", ts.to_string().parse().unwrap());
    md.insert(
        "x-cercle-signature",
        sig.iter().map(|b| format!("{b:02x}")).collect::<String>().parse().unwrap(),
    );
    req
}

/// Checks the ledger as the restarted node serves it against what was acknowledged, and
/// returns the number of entries. Every entry is streamed and re-hashed; every acknowledged
/// operation is in it once, at the sequence its receipt named; every balance is computed
/// again from the entries' operations and must be what the entries recorded and what
/// `GetAccount` serves; each account's history is the entries that name it; balances sum
/// to zero and stay within their limits.
pub async fn check(node: &Node, g: &Genesis, admin: &Keypair, acked: &HashMap<OperationId, u64>) -> usize {
    let entries = stream_all(node, g, admin).await;
    let n = entries.len() as u64;
    assert_eq!(entries.iter().map(|e| e.sequence).collect::<Vec<_>>(), (1..=n).collect::<Vec<_>>());
    let info = node.client().await.get_ledger_info(pb::GetLedgerInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.log_size, n, "the stream ends at the log's size");
    let mut seen: HashMap<OperationId, u64> = HashMap::new();
    // Balances and histories computed from the operations alone.
    let mut balances: BTreeMap<String, i64> = BTreeMap::new();
    let mut histories: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in &entries {
        let entry = cercle_core::Entry::try_from(e.clone()).expect("entry hashes to its entry_hash");
        let op = cercle_core::body::decode(&entry.envelope.body).expect("body decodes");
        assert!(seen.insert(op.id, e.sequence).is_none(), "operation {} appears twice", op.id);
        let named = match &op.kind {
            OpKind::RegisterAccount(r) => {
                let name = r.account.to_string();
                assert!(balances.insert(name.clone(), 0).is_none(), "{name} registered twice");
                vec![name]
            }
            OpKind::Transfer(t) => {
                let (payer, payee) = (t.payer.to_string(), t.payee.to_string());
                let balance =
                    |name: &str| balances.get(name).copied().unwrap_or_else(|| panic!("{name} unknown"));
                let payer_after = balance(&payer).checked_sub(t.amount_minor).expect("no overflow");
                let payee_after = balance(&payee).checked_add(t.amount_minor).expect("no overflow");
                balances.insert(payer.clone(), payer_after);
                balances.insert(payee.clone(), payee_after);
                vec![payer, payee]
            }
            other => panic!("entry {}: the load sends no {other:?}", e.sequence),
        };
        let recorded: BTreeMap<&str, i64> =
            e.balances_after.iter().map(|b| (b.account.as_str(), b.balance_minor)).collect();
        let computed: BTreeMap<&str, i64> = named.iter().map(|a| (a.as_str(), balances[a])).collect();
        assert_eq!(recorded, computed, "entry {}: the balances it records", e.sequence);
        for name in named {
            histories.entry(name).or_default().push(e.sequence);
        }
    }
    for (id, seq) in acked {
        assert_eq!(seen.get(id), Some(seq), "acknowledged operation {id} lost or moved");
    }
    let mut client = node.client().await;
    let mut sum: i128 = 0;
    for i in 0..ACCOUNTS {
        let name = account(i).to_string();
        let req = signed(g, admin, "GetAccount", pb::GetAccountRequest { account: name.clone() });
        let a = client.get_account(req).await.unwrap().into_inner().account.unwrap();
        assert_eq!(Some(&a.balance_minor), balances.get(&name), "{name}: GetAccount against the entries");
        assert!(a.balance_minor >= -a.credit_limit_minor, "{name} is below its limit");
        assert_eq!(
            history(node, g, admin, &name).await,
            histories.remove(&name).unwrap_or_default(),
            "{name}: its history"
        );
        sum += i128::from(a.balance_minor);
    }
    assert_eq!(sum, 0, "balances sum to zero");
    assert!(histories.is_empty(), "entries name accounts the load does not have: {histories:?}");
    entries.len()
}
