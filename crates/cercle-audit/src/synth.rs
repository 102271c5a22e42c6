//! Synthetic signed logs, for tests and benchmarks: a genesis with known keys, a few dozen
//! firms, and a deterministic mix of transfers and administrative operations, each one
//! executed by the core's own `Ledger`, as the node's writer does.

use cercle_core::checkpoint::TreeHead;
use cercle_core::merkle::{self, Frontier};
use cercle_core::sign::Keypair;
use cercle_core::{
    AccountId, Entry, Envelope, Genesis, Ledger, LedgerId, OpKind, Operation, OperationId, RegisterAccount,
    SetLimits, Transfer,
};

use crate::SignedTreeHead;

/// The node's time for the first entry: 2026-11-22T10:00:00Z.
pub const START_MS: u64 = 1_795_341_600_000;
/// The time between two entries.
const STEP_MS: u64 = 250;
/// Most firms a synthetic log registers.
pub const FIRMS_MAX: usize = 40;
const CREDIT_LIMIT_MINOR: i64 = 1_000_000;

/// A log and everything that made it.
pub struct SynthLog {
    pub genesis: Genesis,
    pub admin: Keypair,
    pub node: Keypair,
    /// The firms, each with the one key that signs for it.
    pub firms: Vec<(AccountId, Keypair)>,
    pub entries: Vec<Entry>,
    /// The node's signed tree head over all the entries.
    pub tree_head: SignedTreeHead,
    /// The ledger after the last entry.
    pub ledger: Ledger,
}

impl SynthLog {
    /// The log in the jsonl export format.
    pub fn jsonl(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = crate::jsonl::Writer::new(&mut out, &self.genesis).unwrap_or_else(|_| unreachable!());
        for entry in &self.entries {
            // Writing to a Vec cannot fail.
            let _ = w.write_entry(entry);
        }
        let _ = w.write_tree_head(&self.tree_head);
        out
    }

    /// The node's signed tree head over the first `size` entries.
    pub fn tree_head_at(&self, size: usize) -> SignedTreeHead {
        sign_log(&self.genesis, &self.node, &self.entries[..size.min(self.entries.len())])
    }
}

/// The tree head over `entries` (a whole log), signed with `node` at the last entry's time.
pub fn sign_log(genesis: &Genesis, node: &Keypair, entries: &[Entry]) -> SignedTreeHead {
    let mut frontier = Frontier::new();
    for entry in entries {
        let _ = frontier.push(merkle::leaf_hash(&entry.encode()));
    }
    let last_ms = entries.last().map_or(START_MS, |e| e.timestamp_ms);
    sign_tree_head(genesis, node, frontier.size(), frontier.root(), last_ms)
}

/// Signs `op` for the ledger of `genesis`.
pub fn envelope(genesis: &Genesis, key: &Keypair, op: &Operation) -> Envelope {
    let body = cercle_core::body::encode(op);
    let signature = key.sign_op(&genesis.ledger_id, &body);
    Envelope::single(body, key.public_key(), signature)
}

/// The tree head `(size, root)` at `timestamp_ms`, signed with `node`.
pub fn sign_tree_head(
    genesis: &Genesis,
    node: &Keypair,
    tree_size: u64,
    root_hash: merkle::Hash,
    timestamp_ms: u64,
) -> SignedTreeHead {
    let head = TreeHead { ledger_id: genesis.ledger_id, tree_size, root_hash, timestamp_ms };
    SignedTreeHead { signature: head.sign(node), head }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn seed(&mut self) -> [u8; 32] {
        let mut seed = [0u8; 32];
        for chunk in seed.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_be_bytes());
        }
        seed
    }
}

/// A log of exactly `entries` entries, the same for the same `seed`: first the firms'
/// registrations, then transfers, with now and then a limit change, a freeze (followed
/// by its unfreeze) or a key rotation.
pub fn synth_log(entries: usize, seed: u64) -> SynthLog {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let admin = Keypair::from_seed(&rng.seed());
    let node = Keypair::from_seed(&rng.seed());
    let mut ledger_id = [0u8; 16];
    ledger_id.copy_from_slice(&rng.seed()[..16]);
    let genesis = Genesis {
        ledger_id: LedgerId(ledger_id),
        currency: "CHW".into(),
        exponent: 2,
        admin_keys: vec![admin.public_key()],
        auditor_keys: vec![Keypair::from_seed(&rng.seed()).public_key()],
        node_key: node.public_key(),
        quorum: 1,
        day_offset_minutes: 0,
    };
    let firm_count = FIRMS_MAX.min(entries / 4).max(2.min(entries));
    let firms: Vec<(AccountId, Keypair)> = (0..firm_count)
        .map(|i| {
            let id = AccountId::parse(&format!("firm-{i:03}")).unwrap_or_else(|_| unreachable!());
            (id, Keypair::from_seed(&rng.seed()))
        })
        .collect();
    let mut ledger = Ledger::new(genesis.clone());
    let mut log = Vec::with_capacity(entries);
    let mut frontier = Frontier::new();
    let mut op_count = 0u64;
    let mut frozen: Option<usize> = None;
    let mut step = 0u64;
    while log.len() < entries {
        step += 1;
        op_count += 1;
        let now_ms = START_MS + step * STEP_MS;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&seed.to_be_bytes());
        id[8..].copy_from_slice(&op_count.to_be_bytes());
        let pick = |rng: &mut Rng| rng.below(firms.len() as u64) as usize;
        let (kind, key) = if log.len() < firms.len() {
            let (account, key) = &firms[log.len()];
            let register = RegisterAccount {
                account: account.clone(),
                display_name: format!("Firm {} S.A.", log.len()),
                keys: vec![key.public_key()],
                credit_limit_minor: CREDIT_LIMIT_MINOR,
                max_balance_minor: None,
                profile: Default::default(),
                allow_shared_key: false,
            };
            (OpKind::RegisterAccount(register), &admin)
        } else if let Some(i) = frozen.take() {
            (OpKind::UnfreezeAccount { account: firms[i].0.clone(), reason: String::new() }, &admin)
        } else {
            match rng.below(100) {
                0 | 1 => {
                    let limits = SetLimits {
                        account: firms[pick(&mut rng)].0.clone(),
                        credit_limit_minor: Some(CREDIT_LIMIT_MINOR + rng.below(1_000_000) as i64),
                        max_balance_minor: None,
                        reason: "annual review".into(),
                    };
                    (OpKind::SetLimits(limits), &admin)
                }
                2 => {
                    let i = pick(&mut rng);
                    frozen = Some(i);
                    (
                        OpKind::FreezeAccount {
                            account: firms[i].0.clone(),
                            reason: "dispute, invoice 17".into(),
                        },
                        &admin,
                    )
                }
                3 => {
                    let (account, key) = &firms[pick(&mut rng)];
                    (
                        OpKind::RotateKeys {
                            account: account.clone(),
                            keys: vec![key.public_key()],
                            allow_shared_key: false,
                        },
                        key,
                    )
                }
                _ => {
                    let payer = pick(&mut rng);
                    let payee = (payer + 1 + rng.below(firms.len() as u64 - 1) as usize) % firms.len();
                    let transfer = Transfer {
                        payer: firms[payer].0.clone(),
                        payee: firms[payee].0.clone(),
                        amount_minor: 1 + rng.below(10_000) as i64,
                        memo: format!("delivery {op_count}"),
                        invoice_ref: (rng.below(4) == 0).then(|| format!("INV-{op_count}")),
                        invoice: None,
                    };
                    (OpKind::Transfer(transfer), &firms[payer].1)
                }
            }
        };
        let op = Operation { id: OperationId(id), valid_until_ms: now_ms + 3_600_000, kind };
        // A rejected operation (a limit reached) leaves no entry: draw another.
        if let Ok(cercle_core::Executed::Accepted { entry, .. }) =
            ledger.execute(now_ms, envelope(&genesis, key, &op), &op)
        {
            let _ = frontier.push(merkle::leaf_hash(&entry.encode()));
            log.push(entry);
        } else if matches!(op.kind, OpKind::FreezeAccount { .. }) {
            frozen = None;
        }
    }
    let last_ms = log.last().map_or(START_MS, |e| e.timestamp_ms);
    let tree_head = sign_tree_head(&genesis, &node, frontier.size(), frontier.root(), last_ms);
    SynthLog { genesis, admin, node, firms, entries: log, tree_head, ledger }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_synthetic_log_has_every_kind_of_entry() {
        let log = synth_log(600, 7);
        assert_eq!(log.entries.len(), 600);
        assert_eq!(log.tree_head, log.tree_head_at(600));
        let mut kinds = std::collections::BTreeSet::new();
        for entry in &log.entries {
            let op = cercle_core::body::decode(&entry.envelope.body).unwrap();
            kinds.insert(op.kind.name());
        }
        let expected = [
            "freeze_account",
            "register_account",
            "rotate_keys",
            "set_limits",
            "transfer",
            "unfreeze_account",
        ];
        assert_eq!(kinds.into_iter().collect::<Vec<_>>(), expected);
        assert_eq!(log.ledger.state().check_invariants(), Ok(()));
    }
}
