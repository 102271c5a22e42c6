//! The workload: the accounts with their keys and limits, the transfers between them, and
//! the signing of both into wire envelopes.
//!
//! Every transfer the bench sends must be accepted, whatever order the node applies them
//! in. `Generator` guarantees it by construction: it keeps, per account, what is left of
//! its credit limit to spend (the sum of every debit planned so far may not exceed the
//! limit) and of its maximum balance to receive (likewise for credits). Balances start at
//! zero, so no interleaving of the planned transfers can take an account past a limit.

use cercle_core::sign::Keypair;
use cercle_core::{AccountId, LedgerId, OpKind, Operation, OperationId, RegisterAccount, Transfer};
use cercle_proto as pb;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Minor units per CHW (the node's default currency has two decimals).
pub const MINOR_PER_UNIT: i64 = 100;
/// Credit limits of the ordinary accounts, in CHW.
pub const CREDIT_LIMIT_UNITS: (i64, i64) = (5_000, 50_000);
/// One ordinary account in this many has a maximum balance.
pub const MAX_BALANCE_ONE_IN: u32 = 5;
/// Maximum balances, where there is one, in CHW.
pub const MAX_BALANCE_UNITS: (i64, i64) = (20_000, 200_000);
/// The hot account: the market hall, which trades with everyone.
pub const HOT_HANDLE: &str = "market-hall";
/// Its credit limit, in CHW: large enough to carry every transfer it pays.
pub const HOT_CREDIT_LIMIT_UNITS: i64 = 100_000_000;
/// How long a signed operation stays valid.
pub const VALIDITY_MS: u64 = 60 * 60 * 1000;
/// Smallest transfer, in minor units (1 CHW).
const AMOUNT_MIN_MINOR: i64 = MINOR_PER_UNIT;
/// Tries to find a pair of accounts with budget left before giving up.
const PICK_TRIES_MAX: usize = 10_000;

/// One account of the workload.
pub struct AccountSpec {
    pub handle: String,
    pub display_name: String,
    pub key: Keypair,
    pub credit_limit_minor: i64,
    pub max_balance_minor: Option<i64>,
}

/// The accounts: ordinary firms first, the hot account last.
pub struct Accounts {
    pub list: Vec<AccountSpec>,
}

impl Accounts {
    /// `ordinary` firms with limits drawn from `seed`, and the hot account.
    pub fn new(ordinary: usize, seed: u64) -> Accounts {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut list = Vec::with_capacity(ordinary + 1);
        for i in 0..ordinary {
            let credit_limit_minor =
                rng.gen_range(CREDIT_LIMIT_UNITS.0..=CREDIT_LIMIT_UNITS.1) * MINOR_PER_UNIT;
            let max_balance_minor = (rng.gen_range(0..MAX_BALANCE_ONE_IN) == 0)
                .then(|| rng.gen_range(MAX_BALANCE_UNITS.0..=MAX_BALANCE_UNITS.1) * MINOR_PER_UNIT);
            list.push(AccountSpec {
                handle: format!("firm-{i:06}"),
                display_name: format!("Firm {i:06}"),
                key: Keypair::from_seed(&rng.r#gen()),
                credit_limit_minor,
                max_balance_minor,
            });
        }
        list.push(AccountSpec {
            handle: HOT_HANDLE.into(),
            display_name: "Market hall".into(),
            key: Keypair::from_seed(&rng.r#gen()),
            credit_limit_minor: HOT_CREDIT_LIMIT_UNITS * MINOR_PER_UNIT,
            max_balance_minor: None,
        });
        Accounts { list }
    }

    pub fn ordinary(&self) -> usize {
        self.list.len() - 1
    }

    pub fn hot(&self) -> usize {
        self.list.len() - 1
    }

    /// One `RegisterAccount` per account, signed by `admin`, with ids from `ids`.
    pub fn registrations(&self, admin: &Keypair, ledger_id: &LedgerId, ids: &mut OpIds) -> Vec<Signed> {
        let valid_until_ms = now_ms() + VALIDITY_MS;
        self.list
            .iter()
            .map(|a| {
                let op = Operation {
                    id: ids.next_id(),
                    valid_until_ms,
                    kind: OpKind::RegisterAccount(RegisterAccount {
                        account: handle(&a.handle),
                        display_name: a.display_name.clone(),
                        keys: vec![a.key.public_key()],
                        credit_limit_minor: a.credit_limit_minor,
                        max_balance_minor: a.max_balance_minor,
                        profile: Default::default(),
                        allow_shared_key: false,
                    }),
                };
                Signed::new(admin, ledger_id, &op)
            })
            .collect()
    }

    /// Signs `specs`, each by its payer, on every core.
    pub fn sign(&self, specs: &[TransferSpec], ledger_id: &LedgerId) -> Vec<Signed> {
        let valid_until_ms = now_ms() + VALIDITY_MS;
        par_map(specs, |t| self.sign_one(t, ledger_id, valid_until_ms))
    }

    /// Signs one transfer by its payer.
    pub fn sign_one(&self, t: &TransferSpec, ledger_id: &LedgerId, valid_until_ms: u64) -> Signed {
        let payer = &self.list[t.payer];
        let op = Operation {
            id: OperationId(t.operation_id),
            valid_until_ms,
            kind: OpKind::Transfer(Transfer {
                payer: handle(&payer.handle),
                payee: handle(&self.list[t.payee].handle),
                amount_minor: t.amount_minor,
                memo: t.memo.clone(),
                invoice_ref: None,
                invoice: None,
            }),
        };
        Signed::new(&payer.key, ledger_id, &op)
    }
}

/// `f` applied to every item, in order, on every core: how the bench signs before a phase.
pub fn par_map<T: Sync, U: Send>(items: &[T], f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk_len = items.len().div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|s| {
        let workers: Vec<_> = items
            .chunks(chunk_len)
            .map(|chunk| s.spawn(move || chunk.iter().map(f).collect::<Vec<_>>()))
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("a worker thread panicked")).collect()
    })
}

/// Handles are generated here and always valid.
pub fn handle(text: &str) -> AccountId {
    AccountId::parse(text).expect("the bench generates valid handles")
}

/// The bench's clock, for `valid_until_ms`.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Unique operation ids: a random prefix for the run, then a counter.
pub struct OpIds {
    prefix: [u8; 8],
    next: u64,
}

impl OpIds {
    pub fn new() -> OpIds {
        OpIds { prefix: rand::random(), next: 0 }
    }

    pub fn next_id(&mut self) -> OperationId {
        self.next += 1;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.prefix);
        id[8..].copy_from_slice(&self.next.to_be_bytes());
        OperationId(id)
    }
}

/// A signed operation ready to send, with the id its receipt must carry.
#[derive(Clone)]
pub struct Signed {
    pub envelope: pb::Envelope,
    pub operation_id: [u8; 16],
}

impl Signed {
    pub fn new(key: &Keypair, ledger_id: &LedgerId, op: &Operation) -> Signed {
        let body = cercle_core::body::encode(op);
        let signature = key.sign_op(ledger_id, &body);
        Signed {
            envelope: pb::Envelope {
                body,
                signer: key.public_key().0.to_vec(),
                signature: signature.to_vec(),
                cosignatures: vec![],
            },
            operation_id: op.id.0,
        }
    }
}

/// One planned transfer, before signing: what the PostgreSQL run executes too.
#[derive(Clone)]
pub struct TransferSpec {
    pub operation_id: [u8; 16],
    /// Indexes into `Accounts::list`.
    pub payer: usize,
    pub payee: usize,
    pub amount_minor: i64,
    pub memo: String,
}

/// Draws transfers that can never be rejected (see the module docs).
pub struct Generator {
    rng: StdRng,
    ids: OpIds,
    /// What each account may still pay in total, in minor units.
    debit_left_minor: Vec<i64>,
    /// What each account may still receive in total; `None`: no maximum balance.
    credit_left_minor: Vec<Option<i64>>,
    /// The largest amount an ordinary account pays or is paid in one transfer, sized so
    /// that its expected share of the planned transfers uses half its credit limit.
    amount_max_minor: Vec<i64>,
    memo_counter: u64,
}

impl Generator {
    /// A generator for about `planned_transfers` transfers between `accounts`.
    pub fn new(accounts: &Accounts, seed: u64, planned_transfers: u64) -> Generator {
        let ordinary = accounts.ordinary().max(1) as u64;
        let debits_per_account = planned_transfers.div_ceil(ordinary).max(1) as i64;
        Generator {
            rng: StdRng::seed_from_u64(seed ^ 0x5eed_7a45),
            ids: OpIds::new(),
            debit_left_minor: accounts.list.iter().map(|a| a.credit_limit_minor).collect(),
            credit_left_minor: accounts.list.iter().map(|a| a.max_balance_minor).collect(),
            amount_max_minor: accounts
                .list
                .iter()
                .map(|a| (a.credit_limit_minor / (2 * debits_per_account)).max(AMOUNT_MIN_MINOR))
                .collect(),
            memo_counter: 0,
        }
    }

    /// Ids for operations that are not transfers (registrations), from the same sequence.
    pub fn ids(&mut self) -> &mut OpIds {
        &mut self.ids
    }

    /// `n` transfers, of which about `hot_percent` % have the hot account as payer or
    /// payee (half each way, so its balance stays near zero).
    pub fn transfers(
        &mut self,
        accounts: &Accounts,
        n: usize,
        hot_percent: u32,
    ) -> anyhow::Result<Vec<TransferSpec>> {
        (0..n)
            .map(|_| {
                let hot = self.rng.gen_range(0..100) < hot_percent;
                self.next(accounts, hot)
            })
            .collect()
    }

    fn next(&mut self, accounts: &Accounts, hot: bool) -> anyhow::Result<TransferSpec> {
        let ordinary = accounts.ordinary();
        anyhow::ensure!(ordinary >= 2, "the workload needs at least 2 ordinary accounts");
        for _ in 0..PICK_TRIES_MAX {
            let a = self.rng.gen_range(0..ordinary);
            let (payer, payee, firm) = if hot {
                if self.rng.gen_bool(0.5) { (accounts.hot(), a, a) } else { (a, accounts.hot(), a) }
            } else {
                let b = self.rng.gen_range(0..ordinary - 1);
                let b = if b >= a { b + 1 } else { b };
                (a, b, a)
            };
            let amount_max_minor = self.amount_max_minor[firm];
            let drawn = self.rng.gen_range((amount_max_minor / 100).max(AMOUNT_MIN_MINOR)..=amount_max_minor);
            let amount_minor = drawn
                .min(self.debit_left_minor[payer])
                .min(self.credit_left_minor[payee].unwrap_or(i64::MAX));
            if amount_minor < AMOUNT_MIN_MINOR {
                continue;
            }
            self.debit_left_minor[payer] -= amount_minor;
            if let Some(left) = &mut self.credit_left_minor[payee] {
                *left -= amount_minor;
            }
            self.memo_counter += 1;
            return Ok(TransferSpec {
                operation_id: self.ids.next_id().0,
                payer,
                payee,
                amount_minor,
                memo: format!("invoice {:07}", self.memo_counter),
            });
        }
        anyhow::bail!(
            "the accounts' limits cannot carry this many transfers without a rejection; \
             use more accounts or fewer transfers"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the guarantee itself, per account: the planned transfers take from it at most
    /// its credit limit in total, and bring it at most its maximum balance. Balances start
    /// at zero, so after any prefix of any order an account has paid at most all its debits
    /// and received at most all its credits: no order passes a limit. Returns how many
    /// budgets are used up exactly.
    fn check_budgets(accounts: &Accounts, specs: &[TransferSpec]) -> usize {
        let n = accounts.list.len();
        let (mut debits, mut credits) = (vec![0i64; n], vec![0i64; n]);
        for t in specs {
            assert_ne!(t.payer, t.payee);
            assert!(t.amount_minor >= AMOUNT_MIN_MINOR, "{}", t.amount_minor);
            debits[t.payer] += t.amount_minor;
            credits[t.payee] += t.amount_minor;
        }
        let mut used_up = 0;
        for (i, a) in accounts.list.iter().enumerate() {
            assert!(
                debits[i] <= a.credit_limit_minor,
                "{} pays {} with a limit of {}",
                a.handle,
                debits[i],
                a.credit_limit_minor
            );
            used_up += usize::from(debits[i] == a.credit_limit_minor);
            if let Some(max) = a.max_balance_minor {
                assert!(credits[i] <= max, "{} receives {} with a maximum of {max}", a.handle, credits[i]);
                used_up += usize::from(credits[i] == max);
            }
        }
        used_up
    }

    #[test]
    fn no_order_of_the_planned_transfers_passes_a_limit() {
        let accounts = Accounts::new(20, 1);
        let mut generator = Generator::new(&accounts, 1, 4_000);
        let specs = generator.transfers(&accounts, 4_000, 10).unwrap();
        check_budgets(&accounts, &specs);
        assert!(specs.iter().any(|t| t.payer == accounts.hot() || t.payee == accounts.hot()));
    }

    #[test]
    fn the_budgets_hold_where_they_bind() {
        // Planned for 1,000 transfers, drawn until the generator says the limits cannot take
        // one more: the budgets run out, and the clamping at their edge is what is checked.
        let accounts = Accounts::new(20, 2);
        let mut generator = Generator::new(&accounts, 2, 1_000);
        let mut specs = Vec::new();
        while let Ok(more) = generator.transfers(&accounts, 1, 0) {
            specs.extend(more);
            assert!(specs.len() < 1_000_000, "the generator never runs out");
        }
        assert!(specs.len() > 1_000, "{} transfers", specs.len());
        let used_up = check_budgets(&accounts, &specs);
        assert!(used_up >= 10, "only {used_up} budgets used up exactly");
    }
}
