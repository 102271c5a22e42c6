//! A model test of the roles of a firm's keys (`AddKey`, `RemoveKey`, `KeyRole`) at the
//! `State` level: generated sequences of key additions and removals (by owners, by other
//! roles, by another firm's key, by the administrator; valid and invalid caps; shared keys
//! with and without the flag; the last owner; the bound on keys), payments signed by every
//! role with amounts at the exact edges of a payer's cap per transfer, of what is left of
//! its day's cap and of the credit limit (and one minor unit past each), invoices issued
//! and accepted by each role, time moving across ledger days in a genesis offset from UTC,
//! pending payments (a payer's transfer above a cap: it reserves the payer's headroom in
//! every later check of its credit limit; approved, declined, or expired after
//! `PENDING_VALIDITY_MS`, by any signer, at the edges of the payee's maximum),
//! and restarts (the state rebuilt from its records, and every accepted operation replayed
//! from the genesis: the same digest). The model writes the rules again, independently,
//! with the rejection numbers spelled out. After every step: the outcome is the model's;
//! every key's role and every payer's usage of its day are the model's; balances sum to
//! zero and stay within the limits; no payer has paid more than its cap on any day; a
//! rejected operation changed nothing.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use cercle_core::sign::Keypair;
use cercle_core::{
    Account, AccountId, AddKey, ClearingInput, Context, Genesis, Invoice, InvoiceId, InvoiceParties,
    IssueInvoice, KeyRole, LedgerId, OpKind, Operation, OperationId, PublicKey, RegisterAccount, Roles,
    State, Transfer,
};
use proptest::prelude::*;

/// Rejection numbers, as documented (never renumbered).
const NOT_ACCOUNT_KEY: u16 = 11;
const UNKNOWN_INVOICE: u16 = 25;
const INVOICE_EXISTS: u16 = 26;
const INVOICE_STATE_CONFLICT: u16 = 27;
const INVALID_KEYS: u16 = 31;
const INVALID_LIMIT: u16 = 32;
const KEY_ALREADY_REGISTERED: u16 = 36;
const INVALID_AMOUNT: u16 = 40;
const CREDIT_LIMIT_EXCEEDED: u16 = 50;
const MAX_BALANCE_EXCEEDED: u16 = 51;
const KEY_ROLE_NOT_ALLOWED: u16 = 90;
const LAST_OWNER_KEY: u16 = 92;
const KEY_ALREADY_ON_ACCOUNT: u16 = 93;
const KEY_NOT_ON_ACCOUNT: u16 = 94;
const PENDING_UNKNOWN: u16 = 95;
const PENDING_EXPIRED: u16 = 96;
const TOO_MANY_PENDING: u16 = 98;

/// `PENDING_PER_ACCOUNT_MAX` and `PENDING_VALIDITY_MS`, written out.
const PENDING_PER_ACCOUNT_MAX: usize = 16;
const PENDING_VALIDITY_MS: u64 = 7 * 24 * 3_600_000;

/// `KEYS_PER_ACCOUNT_MAX`, written out.
const KEYS_PER_ACCOUNT_MAX: usize = 8;
const NAMES: [&str; 2] = ["aaa", "bbb"];
/// Key 0 is the administrator's; key 1 owns `aaa`, key 2 owns `bbb`; keys 3 to 11 are
/// employees' (and may be put on either account).
const KEYS: usize = 12;
const INVOICES: u8 = 3;
const CREDIT_LIMIT: i64 = 1_000;
/// `bbb` may hold at most this much.
const BBB_MAX: i64 = 1_500;
/// 2026-11-30T20:00:00Z.
const START_MS: u64 = 1_796_068_800_000;
const DAY_MS: i64 = 86_400_000;

fn keys() -> &'static [PublicKey] {
    static KEYS_: OnceLock<Vec<PublicKey>> = OnceLock::new();
    KEYS_.get_or_init(|| (0..KEYS).map(|i| Keypair::from_seed(&[i as u8 + 1; 32]).public_key()).collect())
}

fn genesis(day_offset_minutes: i16) -> Genesis {
    Genesis {
        ledger_id: LedgerId([9; 16]),
        currency: "CHW".into(),
        exponent: 2,
        admin_keys: vec![keys()[0]],
        auditor_keys: vec![],
        node_key: keys()[0],
        quorum: 1,
        day_offset_minutes,
    }
}

fn id(account: usize) -> AccountId {
    AccountId::parse(NAMES[account]).unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Owner,
    Payer { per: i64, daily: i64 },
    Invoicer,
    Viewer,
}

impl Role {
    fn core(self) -> KeyRole {
        match self {
            Role::Owner => KeyRole::Owner,
            Role::Payer { per, daily } => {
                KeyRole::Payer { per_transfer_cap_minor: per, daily_cap_minor: daily }
            }
            Role::Invoicer => KeyRole::Invoicer,
            Role::Viewer => KeyRole::Viewer,
        }
    }
}

/// How much a payment is, relative to the payer's state when it is made.
#[derive(Debug, Clone, Copy)]
enum Amount {
    Fixed(i64),
    /// The signer's cap per transfer, plus this.
    PerCap(i64),
    /// What is left of the signer's cap today, plus this.
    DayLeft(i64),
    /// The payer's credit headroom, plus this.
    Headroom(i64),
    /// What the payee may still receive, plus this.
    PayeeRoom(i64),
}

#[derive(Debug, Clone)]
enum Step {
    AddKey {
        signer: usize,
        account: usize,
        key: usize,
        role: Role,
        shared: bool,
    },
    RemoveKey {
        signer: usize,
        account: usize,
        key: usize,
    },
    Pay {
        signer: usize,
        from: usize,
        amount: Amount,
    },
    Issue {
        signer: usize,
        payee: usize,
        invoice: u8,
        amount: i64,
    },
    Accept {
        signer: usize,
        invoice: u8,
    },
    /// An owner (or another key) approves or declines the account's pending payment: the
    /// `which`-th it holds, or an id that is none.
    Settle {
        signer: usize,
        account: usize,
        which: usize,
        approve: bool,
    },
    /// Time moves on by this many hours (a payer's day may change, a pending payment expire).
    Wait {
        hours: u64,
    },
    Restart,
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        1 => Just(Role::Owner),
        4 => (1i64..=400, 0i64..=600).prop_map(|(per, more)| Role::Payer { per, daily: per + more }),
        // Invalid caps: above the day's, or negative.
        1 => (2i64..=400).prop_map(|per| Role::Payer { per, daily: per - 1 }),
        1 => Just(Role::Payer { per: -1, daily: 10 }),
        // Every payment waits for approval.
        1 => Just(Role::Payer { per: 0, daily: 0 }),
        2 => Just(Role::Invoicer),
        2 => Just(Role::Viewer),
    ]
}

fn amount() -> impl Strategy<Value = Amount> {
    prop_oneof![
        1 => (1i64..=300).prop_map(Amount::Fixed),
        2 => (-1i64..=1).prop_map(Amount::PerCap),
        3 => (-1i64..=1).prop_map(Amount::DayLeft),
        1 => (0i64..=1).prop_map(Amount::Headroom),
        1 => (0i64..=1).prop_map(Amount::PayeeRoom),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let key = 0..KEYS;
    let account = 0..NAMES.len();
    prop_oneof![
        5 => (prop_oneof![3 => 1usize..=2, 1 => 0..KEYS], account.clone(), key.clone(), role(), prop::bool::weighted(0.3))
            .prop_map(|(signer, account, key, role, shared)| Step::AddKey { signer, account, key, role, shared }),
        2 => (prop_oneof![3 => 1usize..=2, 1 => 0..KEYS], account.clone(), key.clone())
            .prop_map(|(signer, account, key)| Step::RemoveKey { signer, account, key }),
        8 => (key.clone(), account.clone(), amount()).prop_map(|(signer, from, amount)| Step::Pay { signer, from, amount }),
        2 => (key.clone(), account.clone(), 0..INVOICES, 1i64..=500)
            .prop_map(|(signer, payee, invoice, amount)| Step::Issue { signer, payee, invoice, amount }),
        2 => (key, 0..INVOICES).prop_map(|(signer, invoice)| Step::Accept { signer, invoice }),
        4 => (prop_oneof![3 => 1usize..=2, 1 => 0..KEYS], 0..NAMES.len(), 0usize..4, prop::bool::ANY)
            .prop_map(|(signer, account, which, approve)| Step::Settle { signer, account, which, approve }),
        2 => (1u64..=20).prop_map(|hours| Step::Wait { hours }),
        1 => (100u64..=200).prop_map(|hours| Step::Wait { hours }),
        1 => Just(Step::Restart),
    ]
}

#[derive(Debug, Clone, Default)]
struct ModelAccount {
    /// Each key with its role, in the order added (the core keeps that order too).
    keys: Vec<(usize, Role)>,
    balance: i64,
    max_balance: Option<i64>,
    /// Each payer key's last day of payment and what it paid that day.
    usage: BTreeMap<usize, (i64, i64)>,
    /// Pending payments as payer: id, amount, expiry (the payee is the other account).
    pending: Vec<(u64, i64, u64)>,
}

impl ModelAccount {
    fn role(&self, key: usize) -> Option<Role> {
        self.keys.iter().find(|(k, _)| *k == key).map(|(_, r)| *r)
    }

    fn owners(&self) -> usize {
        self.keys.iter().filter(|(_, r)| *r == Role::Owner).count()
    }

    fn reserved(&self, now_ms: u64) -> i64 {
        self.pending.iter().filter(|(_, _, expires)| now_ms <= *expires).map(|(_, a, _)| a).sum()
    }

    fn forget_expired(&mut self, now_ms: u64) {
        self.pending.retain(|(_, _, expires)| now_ms <= *expires);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InvoiceState {
    Issued,
    Accepted,
}

struct Model {
    day_offset_minutes: i16,
    now_ms: u64,
    accounts: [ModelAccount; 2],
    /// Each invoice: payee, payer, state.
    invoices: BTreeMap<u8, (usize, usize, InvoiceState)>,
    /// Entries so far: the next one's sequence is one more (a pending payment's id).
    entries: u64,
}

impl Model {
    fn new(day_offset_minutes: i16) -> Model {
        let firm = |owner, max_balance| ModelAccount {
            keys: vec![(owner, Role::Owner)],
            max_balance,
            ..ModelAccount::default()
        };
        Model {
            day_offset_minutes,
            now_ms: START_MS,
            accounts: [firm(1, None), firm(2, Some(BBB_MAX))],
            invoices: BTreeMap::new(),
            entries: 2,
        }
    }

    /// The ledger's day, computed here from the offset: midnight to midnight at UTC+offset.
    fn today(&self) -> i64 {
        (self.now_ms as i64 + i64::from(self.day_offset_minutes) * 60_000).div_euclid(DAY_MS)
    }

    fn spent_today(&self, account: usize, key: usize) -> i64 {
        match self.accounts[account].usage.get(&key) {
            Some((day, spent)) if *day == self.today() => *spent,
            _ => 0,
        }
    }

    /// The payment's amount, from the model's state before it.
    fn amount(&self, signer: usize, from: usize, amount: Amount) -> i64 {
        let payer = &self.accounts[from];
        let payee = &self.accounts[1 - from];
        match amount {
            Amount::Fixed(a) => a,
            Amount::PerCap(delta) => match payer.role(signer) {
                Some(Role::Payer { per, .. }) => per + delta,
                _ => 100 + delta,
            },
            Amount::DayLeft(delta) => match payer.role(signer) {
                Some(Role::Payer { daily, .. }) => daily - self.spent_today(from, signer) + delta,
                _ => 50 + delta,
            },
            Amount::Headroom(delta) => payer.balance + CREDIT_LIMIT + delta,
            Amount::PayeeRoom(delta) => payee.max_balance.map_or(200, |m| m - payee.balance) + delta,
        }
    }

    fn operation(&self, step: &Step) -> Option<(usize, OpKind)> {
        Some(match *step {
            Step::AddKey { signer, account, key, role, shared } => (
                signer,
                OpKind::AddKey(AddKey {
                    account: id(account),
                    key: keys()[key],
                    role: role.core(),
                    allow_shared_key: shared,
                }),
            ),
            Step::RemoveKey { signer, account, key } => {
                (signer, OpKind::RemoveKey { account: id(account), key: keys()[key] })
            }
            Step::Pay { signer, from, amount } => (
                signer,
                OpKind::Transfer(Transfer {
                    payer: id(from),
                    payee: id(1 - from),
                    amount_minor: self.amount(signer, from, amount),
                    memo: String::new(),
                    invoice_ref: None,
                    invoice: None,
                }),
            ),
            Step::Issue { signer, payee, invoice, amount } => (
                signer,
                OpKind::IssueInvoice(IssueInvoice {
                    invoice: InvoiceId([invoice; 16]),
                    payee: id(payee),
                    payer: id(1 - payee),
                    amount_minor: amount,
                    local_share_percent: 100,
                    due_day: None,
                    reference: String::new(),
                    excluded_from_clearing: false,
                }),
            ),
            Step::Accept { signer, invoice } => {
                let (payee, payer) = self.invoices.get(&invoice).map_or((0, 1), |(p, q, _)| (*p, *q));
                (
                    signer,
                    OpKind::AcceptInvoice(InvoiceParties {
                        invoice: InvoiceId([invoice; 16]),
                        payee: id(payee),
                        payer: id(payer),
                    }),
                )
            }
            Step::Settle { signer, account, which, approve } => {
                let (pending, amount_minor) = self.accounts[account]
                    .pending
                    .get(which)
                    .map_or((999, 1), |(id, amount, _)| (*id, *amount));
                let kind = if approve {
                    OpKind::ApprovePending {
                        account: id(account),
                        pending,
                        payee: id(1 - account),
                        amount_minor,
                    }
                } else {
                    OpKind::DeclinePending { account: id(account), pending, reason: String::new() }
                };
                (signer, kind)
            }
            Step::Wait { .. } | Step::Restart => return None,
        })
    }

    /// `signer`'s authority over `account`'s keys: the administrator, or an owner key.
    fn may_change_keys(&self, signer: usize, account: usize) -> Result<(), u16> {
        if signer == 0 {
            return Ok(());
        }
        match self.accounts[account].role(signer) {
            None => Err(NOT_ACCOUNT_KEY),
            Some(Role::Owner) => Ok(()),
            Some(_) => Err(KEY_ROLE_NOT_ALLOWED),
        }
    }

    /// Applies `step` (whose operation is `kind`) to the model: the rules written again.
    fn apply(&mut self, step: &Step, kind: &OpKind) -> Result<(), u16> {
        let outcome = self.apply_rules(step, kind);
        if outcome.is_ok() {
            self.entries += 1;
        }
        outcome
    }

    fn apply_rules(&mut self, step: &Step, kind: &OpKind) -> Result<(), u16> {
        let now = self.now_ms;
        match *step {
            Step::AddKey { signer, account, key, role, shared } => {
                if let Role::Payer { per, daily } = role
                    && !(per >= 0 && per <= daily)
                {
                    return Err(INVALID_LIMIT);
                }
                self.may_change_keys(signer, account)?;
                let a = &self.accounts[account];
                if a.role(key).is_some() {
                    return Err(KEY_ALREADY_ON_ACCOUNT);
                }
                if a.keys.len() >= KEYS_PER_ACCOUNT_MAX {
                    return Err(INVALID_KEYS);
                }
                if !shared && self.accounts[1 - account].role(key).is_some() {
                    return Err(KEY_ALREADY_REGISTERED);
                }
                let a = &mut self.accounts[account];
                a.keys.push((key, role));
                a.usage.remove(&key);
                Ok(())
            }
            Step::RemoveKey { signer, account, key } => {
                self.may_change_keys(signer, account)?;
                let a = &mut self.accounts[account];
                match a.role(key) {
                    None => return Err(KEY_NOT_ON_ACCOUNT),
                    Some(Role::Owner) if a.owners() == 1 => return Err(LAST_OWNER_KEY),
                    Some(_) => {}
                }
                a.keys.retain(|(k, _)| *k != key);
                a.usage.remove(&key);
                Ok(())
            }
            Step::Pay { signer, from, .. } => {
                let OpKind::Transfer(t) = kind else { unreachable!() };
                let amount = t.amount_minor;
                if amount <= 0 {
                    return Err(INVALID_AMOUNT);
                }
                let role = match self.accounts[from].role(signer) {
                    None => return Err(NOT_ACCOUNT_KEY),
                    Some(r @ (Role::Owner | Role::Payer { .. })) => r,
                    Some(_) => return Err(KEY_ROLE_NOT_ALLOWED),
                };
                let to = 1 - from;
                if self.accounts[from].balance - amount - self.accounts[from].reserved(now) < -CREDIT_LIMIT {
                    return Err(CREDIT_LIMIT_EXCEEDED);
                }
                if self.accounts[to].max_balance.is_some_and(|m| self.accounts[to].balance + amount > m) {
                    return Err(MAX_BALANCE_EXCEEDED);
                }
                if let Role::Payer { per, daily } = role {
                    let spent = self.spent_today(from, signer);
                    if amount > per || spent + amount > daily {
                        // Held for an owner's approval.
                        let a = &mut self.accounts[from];
                        let live = a.pending.iter().filter(|(_, _, e)| now <= *e).count();
                        if live >= PENDING_PER_ACCOUNT_MAX {
                            return Err(TOO_MANY_PENDING);
                        }
                        a.forget_expired(now);
                        a.pending.push((self.entries + 1, amount, now + PENDING_VALIDITY_MS));
                        return Ok(());
                    }
                    let today = self.today();
                    self.accounts[from].usage.insert(signer, (today, spent + amount));
                }
                self.accounts[from].balance -= amount;
                self.accounts[to].balance += amount;
                Ok(())
            }
            Step::Issue { signer, payee, invoice, .. } => {
                match self.accounts[payee].role(signer) {
                    None => return Err(NOT_ACCOUNT_KEY),
                    Some(Role::Owner | Role::Invoicer) => {}
                    Some(_) => return Err(KEY_ROLE_NOT_ALLOWED),
                }
                if self.invoices.contains_key(&invoice) {
                    return Err(INVOICE_EXISTS);
                }
                self.invoices.insert(invoice, (payee, 1 - payee, InvoiceState::Issued));
                Ok(())
            }
            Step::Accept { signer, invoice } => {
                let Some(&(payee, payer, state)) = self.invoices.get(&invoice) else {
                    return Err(UNKNOWN_INVOICE);
                };
                // An invoice is visible to any key of either firm, whatever its role.
                let holds = |a: usize| self.accounts[a].role(signer).is_some();
                if !holds(payee) && !holds(payer) {
                    return Err(UNKNOWN_INVOICE);
                }
                match self.accounts[payer].role(signer) {
                    None => return Err(NOT_ACCOUNT_KEY),
                    Some(Role::Owner) => {}
                    Some(_) => return Err(KEY_ROLE_NOT_ALLOWED),
                }
                if state != InvoiceState::Issued {
                    return Err(INVOICE_STATE_CONFLICT);
                }
                self.invoices.insert(invoice, (payee, payer, InvoiceState::Accepted));
                Ok(())
            }
            Step::Settle { signer, account, approve, .. } => {
                let (OpKind::ApprovePending { pending, .. } | OpKind::DeclinePending { pending, .. }) = *kind
                else {
                    unreachable!()
                };
                match self.accounts[account].role(signer) {
                    None => return Err(NOT_ACCOUNT_KEY),
                    Some(Role::Owner) => {}
                    Some(_) => return Err(KEY_ROLE_NOT_ALLOWED),
                }
                let a = &self.accounts[account];
                let Some(&(_, amount, expires)) = a.pending.iter().find(|(id, _, _)| *id == pending) else {
                    return Err(PENDING_UNKNOWN);
                };
                if approve {
                    if now > expires {
                        return Err(PENDING_EXPIRED);
                    }
                    let others = a.reserved(now) - amount;
                    if a.balance - amount - others < -CREDIT_LIMIT {
                        return Err(CREDIT_LIMIT_EXCEEDED);
                    }
                    let payee = &self.accounts[1 - account];
                    if payee.max_balance.is_some_and(|m| payee.balance + amount > m) {
                        return Err(MAX_BALANCE_EXCEEDED);
                    }
                    self.accounts[account].balance -= amount;
                    self.accounts[1 - account].balance += amount;
                }
                let a = &mut self.accounts[account];
                a.pending.retain(|(id, _, _)| *id != pending);
                a.forget_expired(now);
                Ok(())
            }
            Step::Wait { .. } | Step::Restart => unreachable!(),
        }
    }

    /// The state agrees with the model: balances, every key's role and every payer's usage;
    /// and the invariants hold.
    fn check(&self, state: &State) {
        let mut sum = 0i128;
        for (n, m) in self.accounts.iter().enumerate() {
            let a = state.account(&id(n)).expect("the account exists");
            assert_eq!(a.balance_minor, m.balance, "{}'s balance", NAMES[n]);
            assert!(a.balance_minor >= -a.credit_limit_minor, "{} below its credit limit", NAMES[n]);
            if let Some(max) = a.max_balance_minor {
                assert!(a.balance_minor <= max, "{} above its maximum", NAMES[n]);
            }
            sum += i128::from(a.balance_minor);
            let expected_keys: Vec<PublicKey> = m.keys.iter().map(|(k, _)| keys()[*k]).collect();
            assert_eq!(a.keys, expected_keys, "{}'s keys", NAMES[n]);
            assert!(a.owner_count() >= 1, "{} has no owner key", NAMES[n]);
            for (k, role) in &m.keys {
                assert_eq!(a.role_of(&keys()[*k]), Some(role.core()), "key {k} of {}", NAMES[n]);
                if let Role::Payer { daily, .. } = role {
                    let grant = a.key_grants[&keys()[*k]];
                    let (day, spent) = m.usage.get(k).copied().unwrap_or((0, 0));
                    assert_eq!(
                        (grant.day, grant.spent_minor),
                        (day, spent),
                        "payer {k}'s usage on {}",
                        NAMES[n]
                    );
                    assert!(grant.spent_minor <= *daily, "payer {k} paid more than its daily cap");
                }
            }
            assert_eq!(a.key_grants.len(), m.keys.iter().filter(|(_, r)| *r != Role::Owner).count());
            let pending: Vec<(u64, i64, u64)> =
                a.pending.iter().map(|p| (p.id, p.amount_minor, p.expires_ms)).collect();
            assert_eq!(pending, m.pending, "{}'s pending payments", NAMES[n]);
            assert!(a.pending.iter().all(|p| p.payee == id(1 - n)));
            // The reservations fit the credit: what was reserved is there to pay.
            assert!(
                a.balance_minor - a.reserved_minor(self.now_ms) >= -a.credit_limit_minor,
                "{}'s pending payments reserve more than its headroom",
                NAMES[n]
            );
        }
        assert_eq!(sum, 0, "balances sum to zero");
        state.check_invariants().unwrap();
    }
}

/// The state rebuilt from the records of its accounts and invoices, as a checkpoint holds
/// them.
fn restart(genesis: &Genesis, state: &State) -> State {
    let accounts = state.accounts().map(|a| Account::decode(&a.encode()).unwrap());
    let invoices: Vec<Invoice> = state.invoices().map(|i| Invoice::decode(&i.encode()).unwrap()).collect();
    let roles = Roles::decode(&state.roles().encode()).unwrap();
    State::from_parts(genesis, accounts, invoices).with_roles(roles)
}

fn run(day_offset_minutes: i16, steps: &[Step]) -> State {
    let genesis = genesis(day_offset_minutes);
    let mut state = State::new(&genesis);
    let mut model = Model::new(day_offset_minutes);
    let mut accepted: Vec<(Context, PublicKey, Operation)> = Vec::new();
    let mut sequence = 0u64;
    let mut apply = |state: &mut State, accepted: &mut Vec<_>, now_ms: u64, signer: usize, kind: OpKind| {
        sequence += 1;
        let op = Operation { id: OperationId([0; 16]), valid_until_ms: now_ms + 1, kind };
        let ctx = Context { sequence, timestamp_ms: now_ms };
        let outcome = state.apply(&ctx, &keys()[signer], &op, ClearingInput::Propose);
        if outcome.is_ok() {
            accepted.push((ctx, keys()[signer], op));
        } else {
            sequence -= 1;
        }
        outcome
    };
    for (n, owner) in [1, 2].into_iter().enumerate() {
        let kind = OpKind::RegisterAccount(RegisterAccount {
            account: id(n),
            display_name: NAMES[n].into(),
            keys: vec![keys()[owner]],
            credit_limit_minor: CREDIT_LIMIT,
            max_balance_minor: model.accounts[n].max_balance,
            profile: Default::default(),
            allow_shared_key: false,
        });
        apply(&mut state, &mut accepted, model.now_ms, 0, kind).expect("registration");
    }
    model.check(&state);
    for (n, step) in steps.iter().enumerate() {
        match step {
            Step::Wait { hours } => {
                model.now_ms += hours * 3_600_000;
                continue;
            }
            Step::Restart => {
                let rebuilt = restart(&genesis, &state);
                assert_eq!(rebuilt.digest(), state.digest());
                assert_eq!(rebuilt, state);
                let mut replayed = State::new(&genesis);
                for (ctx, signer, op) in &accepted {
                    replayed
                        .apply(ctx, signer, op, ClearingInput::Propose)
                        .expect("an accepted operation replays");
                }
                assert_eq!(replayed.digest(), state.digest(), "the replay from the genesis differs");
                state = rebuilt;
                model.check(&state);
                continue;
            }
            _ => {}
        }
        let (signer, kind) = model.operation(step).expect("an operation");
        let expected = model.apply(step, &kind);
        let before = state.clone();
        let outcome = apply(&mut state, &mut accepted, model.now_ms, signer, kind);
        let got = outcome.as_ref().map(|_| ()).map_err(|r| r.code() as u16);
        assert_eq!(got, expected, "step {n}: {step:?} gave {outcome:?}");
        if outcome.is_err() {
            assert_eq!(state, before, "step {n} was rejected but changed the state");
        }
        model.check(&state);
    }
    state
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn key_roles_follow_the_model(
        offset in prop_oneof![Just(0i16), Just(60), Just(-330), Just(840)],
        steps in prop::collection::vec(step(), 1..80),
    ) {
        run(offset, &steps);
    }
}

/// A payer along one fixed path, at +01:00: its caps to the unit (above them, a pending
/// payment, declined or approved by the owner only), the day's cap spent, a new ledger day
/// at midnight +01:00 (23:00 UTC), not at midnight UTC.
#[test]
fn a_payers_day_starts_at_midnight_in_the_ledgers_offset() {
    let payer = Role::Payer { per: 300, daily: 500 };
    let pay = |amount| Step::Pay { signer: 3, from: 0, amount: Amount::Fixed(amount) };
    let settle = |signer, approve| Step::Settle { signer, account: 0, which: 0, approve };
    let steps = [
        Step::AddKey { signer: 1, account: 0, key: 3, role: payer, shared: false },
        // 20:00 UTC: 301 is held, 300 (the cap per transfer) paid; then 201 (one more than
        // the day's rest) held, 200 paid, and 1 held.
        pay(301),
        settle(1, false),
        pay(300),
        pay(201),
        settle(1, false),
        pay(200),
        pay(1),
        settle(1, false),
        // 22:30 UTC is 23:30 at +01:00: still the same ledger day.
        Step::Wait { hours: 2 },
        pay(1),
        settle(3, true),
        settle(1, true),
        Step::Restart,
        // 23:30 UTC is 00:30 the next day at +01:00: the cap starts again.
        Step::Wait { hours: 1 },
        pay(300),
        Step::RemoveKey { signer: 3, account: 0, key: 3 },
        Step::RemoveKey { signer: 1, account: 0, key: 1 },
        Step::RemoveKey { signer: 1, account: 0, key: 3 },
        pay(1),
    ];
    let mut expected = vec![Ok(()); 10];
    expected.extend([Err(90), Ok(()), Ok(()), Err(90), Err(92), Ok(()), Err(11)]);
    let outcomes = |offset| {
        let mut model = Model::new(offset);
        let mut outcomes = Vec::new();
        for step in &steps {
            match step {
                Step::Wait { hours } => model.now_ms += hours * 3_600_000,
                Step::Restart => {}
                _ => {
                    let (_, kind) = model.operation(step).unwrap();
                    outcomes.push(model.apply(step, &kind));
                }
            }
        }
        outcomes
    };
    assert_eq!(outcomes(60), expected, "the model itself");
    let paris = run(60, &steps);
    // 300 + 200 paid, 1 approved, then 300 on the next day.
    let a = paris.account(&id(0)).unwrap();
    assert_eq!((a.balance_minor, a.pending.len()), (-801, 0));
    // At UTC, the same times are one day: the last 300 is over the day's cap, and held.
    let utc = run(0, &steps);
    let a = utc.account(&id(0)).unwrap();
    assert_eq!((a.balance_minor, a.pending.len()), (-501, 1));
}

/// A clearing run with credit counts a pending payment's reservation: the payer pays into
/// the circuit only what its credit leaves once the reservation is kept; declined, the
/// reservation is the payer's again.
#[test]
fn a_clearing_run_with_credit_keeps_what_pending_payments_reserve() {
    let run = |reserve: bool| {
        let genesis = genesis(0);
        let mut state = State::new(&genesis);
        let mut sequence = 0;
        let mut apply = |state: &mut State, signer: usize, kind: OpKind| {
            sequence += 1;
            let op = Operation { id: OperationId([0; 16]), valid_until_ms: START_MS + 1, kind };
            let ctx = Context { sequence, timestamp_ms: START_MS };
            state.apply(&ctx, &keys()[signer], &op, ClearingInput::Propose).expect("accepted")
        };
        let firms = ["aaa", "bbb", "ccc"];
        for (n, name) in firms.iter().enumerate() {
            let kind = OpKind::RegisterAccount(RegisterAccount {
                account: AccountId::parse(name).unwrap(),
                display_name: name.to_string(),
                keys: vec![keys()[n + 1]],
                credit_limit_minor: 3_000,
                max_balance_minor: None,
                profile: Default::default(),
                allow_shared_key: false,
            });
            apply(&mut state, 0, kind);
        }
        let account = |n: usize| AccountId::parse(firms[n]).unwrap();
        // aaa owes bbb 5,000 and bbb owes ccc 5,000: a chain, which only credit settles.
        for (n, payee, payer) in [(1u8, 1usize, 0usize), (2, 2, 1)] {
            let issue = OpKind::IssueInvoice(IssueInvoice {
                invoice: InvoiceId([n; 16]),
                payee: account(payee),
                payer: account(payer),
                amount_minor: 5_000,
                local_share_percent: 100,
                due_day: None,
                reference: String::new(),
                excluded_from_clearing: false,
            });
            apply(&mut state, payee + 1, issue);
            let parties =
                InvoiceParties { invoice: InvoiceId([n; 16]), payee: account(payee), payer: account(payer) };
            apply(&mut state, payer + 1, OpKind::AcceptInvoice(parties));
        }
        if reserve {
            // A payer key of aaa (key 4, every payment held) reserves 1,000 of its credit.
            let add = AddKey {
                account: account(0),
                key: keys()[4],
                role: KeyRole::Payer { per_transfer_cap_minor: 0, daily_cap_minor: 0 },
                allow_shared_key: false,
            };
            apply(&mut state, 1, OpKind::AddKey(add));
            let held = OpKind::Transfer(Transfer {
                payer: account(0),
                payee: account(2),
                amount_minor: 1_000,
                memo: String::new(),
                invoice_ref: None,
                invoice: None,
            });
            assert!(apply(&mut state, 4, held).pending.is_some());
        }
        let clearing =
            OpKind::RunClearing(cercle_core::RunClearing { with_credit: true, reason: String::new() });
        apply(&mut state, 0, clearing);
        let a = state.account(&account(0)).unwrap();
        assert!(a.balance_minor - a.reserved_minor(START_MS) >= -a.credit_limit_minor);
        (a.balance_minor, state.invoice(&InvoiceId([1; 16])).unwrap().open_minor())
    };
    assert_eq!(run(false), (-3_000, 2_000), "all of aaa's credit settles the chain");
    assert_eq!(run(true), (-2_000, 3_000), "1,000 of it stays reserved for the pending payment");
}
