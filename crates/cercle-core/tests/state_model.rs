//! A model test of the state machine itself (`State::apply`), with no ledger, signatures,
//! storage or node around it, so that it runs thousands of cases a second. Beside it, the
//! node-level model test (`crates/cercle-server/tests/model.rs`) drives the real node.
//!
//! Each case is a generated sequence of operations, valid and invalid, signed by the right
//! key, another firm's or an administrator's, with amounts that land exactly on a payer's
//! credit limit or a payee's maximum balance, or one minor unit past it, role changes (a firm's
//! key may become an administrator, the first administrator may be removed), closures,
//! registrations and rotations onto a key another account holds (with and without
//! `allow_shared_key`), quorum changes and acts cosigned by other keys (administrators or
//! not, enough of them or too few for a sensitive act), write-offs at closure to a reserve
//! account, and restarts (the state rebuilt from its records, as the store's
//! checkpoint does, and every accepted operation replayed from the genesis, as a node
//! without a checkpoint and an auditor do: both give the same digest). The model below writes
//! the rules again, independently, with the rejection numbers spelled out. After every step:
//! the outcome (accepted, or the rejection's number) is the model's; accounts and invoices
//! are the model's; balances sum to zero; a rejected operation changed nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use cercle_core::sign::Keypair;
use cercle_core::{
    Account, AccountId, ClearingInput, Context, Genesis, Invoice, InvoiceId, InvoiceParties, InvoiceState,
    IssueInvoice, LedgerId, OpKind, Operation, OperationId, PublicKey, RegisterAccount, Role, Roles,
    SetLimits, SetQuorum, SetRole, State, Transfer,
};
use proptest::prelude::*;

/// Rejection numbers, as documented (never renumbered).
const NOT_ADMINISTRATOR: u16 = 10;
const NOT_ACCOUNT_KEY: u16 = 11;
const LAST_ADMINISTRATOR: u16 = 12;
const ROLE_ALREADY_HELD: u16 = 13;
const ROLE_NOT_HELD: u16 = 14;
const QUORUM_NOT_MET: u16 = 15;
const QUORUM_INVALID: u16 = 16;
const MALFORMED: u16 = 1;
const EXPIRED: u16 = 3;
const UNKNOWN_ACCOUNT: u16 = 20;
const ACCOUNT_EXISTS: u16 = 21;
const ACCOUNT_FROZEN: u16 = 22;
const ALREADY_FROZEN: u16 = 23;
const NOT_FROZEN: u16 = 24;
const UNKNOWN_INVOICE: u16 = 25;
const INVOICE_EXISTS: u16 = 26;
const INVOICE_STATE_CONFLICT: u16 = 27;
const INVOICE_PARTIES_MISMATCH: u16 = 28;
const ACCOUNT_CLOSED: u16 = 29;
const INVALID_LIMIT: u16 = 32;
const NOTHING_TO_CHANGE: u16 = 33;
const INVALID_INVOICE: u16 = 34;
const KEY_ALREADY_REGISTERED: u16 = 36;
const INVALID_AMOUNT: u16 = 40;
const SELF_TRANSFER: u16 = 41;
const INVOICE_OVERPAID: u16 = 43;
const CREDIT_LIMIT_EXCEEDED: u16 = 50;
const MAX_BALANCE_EXCEEDED: u16 = 51;
const ACCOUNT_NOT_SETTLED: u16 = 70;
const WRITE_OFF_INVALID: u16 = 71;
/// Most signatures on one operation (`OPERATION_SIGNATURES_MAX`), so the largest quorum.
const QUORUM_MAX: u8 = 8;

/// The largest amount, limit and maximum balance (`AMOUNT_MAX_MINOR`), written out.
const AMOUNT_MAX_MINOR: i64 = 10_000_000_000_000;

const NAMES: [&str; 4] = ["aaa", "bbb", "ccc", "ddd"];
/// Key 0 is the first administrator's; keys 1 to 4 are firms' (and may be given a role).
const KEYS: usize = 5;
const INVOICES: usize = 4;
const NOW_MS: u64 = 1_000_000;

fn keys() -> &'static [PublicKey] {
    static KEYS_: OnceLock<Vec<PublicKey>> = OnceLock::new();
    KEYS_.get_or_init(|| (0..KEYS).map(|i| Keypair::from_seed(&[i as u8 + 1; 32]).public_key()).collect())
}

fn genesis() -> Genesis {
    Genesis {
        ledger_id: LedgerId([7; 16]),
        currency: "CHW".into(),
        exponent: 2,
        admin_keys: vec![keys()[0]],
        auditor_keys: vec![],
        node_key: keys()[0],
        quorum: 1,
        day_offset_minutes: 0,
    }
}

fn name(i: usize) -> AccountId {
    AccountId::parse(NAMES[i]).unwrap()
}

/// An amount of a transfer: fixed, or placed against the payer's credit limit or the
/// payee's maximum balance (`delta` 0 lands exactly on it, 1 is one minor unit past it).
#[derive(Debug, Clone, Copy)]
enum Amount {
    Fixed(i64),
    Headroom(i64),
    ToMaximum(i64),
}

#[derive(Debug, Clone)]
enum Step {
    Register {
        account: usize,
        key: usize,
        limit: i64,
        max: Option<i64>,
        allow_shared_key: bool,
        signer: usize,
    },
    SetLimits {
        account: usize,
        limit: Option<i64>,
        max: Option<Option<i64>>,
        signer: usize,
    },
    Freeze {
        account: usize,
        signer: usize,
    },
    Unfreeze {
        account: usize,
        signer: usize,
    },
    RotateKeys {
        account: usize,
        key: usize,
        allow_shared_key: bool,
        signer: usize,
    },
    SetRole {
        admin: bool,
        key: usize,
        present: bool,
        signer: usize,
    },
    Close {
        account: usize,
        /// The reserve account that takes the firm's debt.
        write_off: Option<usize>,
        signer: usize,
    },
    SetQuorum {
        quorum: u8,
        limit_above: Option<i64>,
        signer: usize,
    },
    Transfer {
        payer: usize,
        payee: usize,
        amount: Amount,
        invoice: Option<usize>,
        signer: usize,
    },
    Issue {
        invoice: usize,
        payee: usize,
        payer: usize,
        amount: i64,
        signer: usize,
    },
    Accept {
        invoice: usize,
        swap: bool,
        signer: usize,
    },
    /// The state rebuilt from its accounts' and invoices' records.
    Restart,
}

/// A step, whether its operation has expired (the first check of all), and the keys that
/// cosign it (distinct, none the signer).
#[derive(Debug, Clone)]
struct Case {
    step: Step,
    expired: bool,
    cosigners: Vec<usize>,
}

fn limit() -> impl Strategy<Value = i64> {
    prop_oneof![4 => 0..5_000i64, 1 => Just(-1i64), 1 => Just(AMOUNT_MAX_MINOR), 1 => Just(AMOUNT_MAX_MINOR + 1)]
}

/// The signer of an administrative act: the first administrator one time in three (more
/// often than any other key, so that accounts get registered even as firms' keys come and
/// go as administrators), any key otherwise.
fn admin_mostly() -> impl Strategy<Value = usize> {
    prop_oneof![1 => Just(0usize), 2 => 0..KEYS]
}

fn step() -> impl Strategy<Value = Step> {
    let a = 0..NAMES.len();
    let k = 0..KEYS;
    let amount = prop_oneof![
        3 => (-1..3_000i64).prop_map(Amount::Fixed),
        2 => (-1..=1i64).prop_map(Amount::Headroom),
        2 => (-1..=1i64).prop_map(Amount::ToMaximum),
    ];
    prop_oneof![
        3 => (a.clone(), 1..KEYS, limit(), prop::option::of(0..8_000i64), prop::bool::weighted(0.3), admin_mostly())
            .prop_map(|(account, key, limit, max, allow_shared_key, signer)| {
                Step::Register { account, key, limit, max, allow_shared_key, signer }
            }),
        2 => (a.clone(), prop::option::of(limit()), prop::option::of(prop::option::of(limit())), admin_mostly())
            .prop_map(|(account, limit, max, signer)| Step::SetLimits { account, limit, max, signer }),
        1 => (a.clone(), admin_mostly()).prop_map(|(account, signer)| Step::Freeze { account, signer }),
        1 => (a.clone(), admin_mostly()).prop_map(|(account, signer)| Step::Unfreeze { account, signer }),
        1 => (a.clone(), 1..KEYS, any::<bool>(), k.clone()).prop_map(|(account, key, allow_shared_key, signer)| {
            Step::RotateKeys { account, key, allow_shared_key, signer }
        }),
        1 => (any::<bool>(), k.clone(), prop::bool::weighted(0.6), admin_mostly())
            .prop_map(|(admin, key, present, signer)| Step::SetRole { admin, key, present, signer }),
        1 => (a.clone(), prop::option::weighted(0.5, a.clone()), admin_mostly())
            .prop_map(|(account, write_off, signer)| Step::Close { account, write_off, signer }),
        1 => (0..=QUORUM_MAX + 1, prop::option::weighted(0.5, prop_oneof![0..3_000i64, Just(-1i64)]), admin_mostly())
            .prop_map(|(quorum, limit_above, signer)| Step::SetQuorum { quorum, limit_above, signer }),
        8 => (a.clone(), a.clone(), amount, prop::option::weighted(0.3, 0..INVOICES), k.clone())
            .prop_map(|(payer, payee, amount, invoice, signer)| Step::Transfer { payer, payee, amount, invoice, signer }),
        3 => (0..INVOICES, a.clone(), a.clone(), -1..4_000i64, k.clone())
            .prop_map(|(invoice, payee, payer, amount, signer)| Step::Issue { invoice, payee, payer, amount, signer }),
        2 => (0..INVOICES, prop::bool::weighted(0.1), k)
            .prop_map(|(invoice, swap, signer)| Step::Accept { invoice, swap, signer }),
        1 => Just(Step::Restart),
    ]
}

/// Mostly no cosigner; else one or two other keys (which the case drops if it is the
/// signer, and keeps once each).
fn case() -> impl Strategy<Value = Case> {
    let cosigners = prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec(0..KEYS, 1..3)];
    (step(), prop::bool::weighted(0.05), cosigners).prop_map(|(step, expired, cosigners)| {
        let signer = step.signer();
        let mut distinct = Vec::new();
        for k in cosigners {
            if Some(k) != signer && !distinct.contains(&k) {
                distinct.push(k);
            }
        }
        Case { step, expired, cosigners: distinct }
    })
}

impl Step {
    fn signer(&self) -> Option<usize> {
        match *self {
            Step::Register { signer, .. }
            | Step::SetLimits { signer, .. }
            | Step::Freeze { signer, .. }
            | Step::Unfreeze { signer, .. }
            | Step::RotateKeys { signer, .. }
            | Step::SetRole { signer, .. }
            | Step::Close { signer, .. }
            | Step::SetQuorum { signer, .. }
            | Step::Transfer { signer, .. }
            | Step::Issue { signer, .. }
            | Step::Accept { signer, .. } => Some(signer),
            Step::Restart => None,
        }
    }

    /// Only an administrator signs it.
    fn administrative(&self) -> bool {
        matches!(
            self,
            Step::Register { .. }
                | Step::SetLimits { .. }
                | Step::Freeze { .. }
                | Step::Unfreeze { .. }
                | Step::SetRole { .. }
                | Step::Close { .. }
                | Step::SetQuorum { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelAccount {
    balance: i64,
    limit: i64,
    max: Option<i64>,
    frozen: bool,
    closed: bool,
    key: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelInvoice {
    payee: usize,
    payer: usize,
    amount: i64,
    paid: i64,
    state: InvoiceState,
}

#[derive(Debug)]
struct Model {
    accounts: BTreeMap<usize, ModelAccount>,
    invoices: BTreeMap<usize, ModelInvoice>,
    /// The keys (by index) of each role; the genesis names key 0 the administrator.
    admins: BTreeSet<usize>,
    auditors: BTreeSet<usize>,
    /// Administrators who sign a sensitive act, and the credit limit above which a limit
    /// is one.
    quorum: u8,
    limit_above: Option<i64>,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            accounts: BTreeMap::new(),
            invoices: BTreeMap::new(),
            admins: BTreeSet::from([0]),
            auditors: BTreeSet::new(),
            quorum: 1,
            limit_above: None,
        }
    }
}

impl Model {
    fn holds(&self, signer: usize, account: usize) -> bool {
        self.accounts.get(&account).is_some_and(|a| a.key == signer)
    }

    fn existing(&self, account: usize) -> Result<&ModelAccount, u16> {
        self.accounts.get(&account).ok_or(UNKNOWN_ACCOUNT)
    }

    fn admin(&self, signer: usize) -> Result<(), u16> {
        if self.admins.contains(&signer) { Ok(()) } else { Err(NOT_ADMINISTRATOR) }
    }

    /// An existing account that is not closed.
    fn open(&self, account: usize) -> Result<&ModelAccount, u16> {
        let a = self.existing(account)?;
        if a.closed { Err(ACCOUNT_CLOSED) } else { Ok(a) }
    }

    /// A closed account, then a frozen one, is refused.
    fn status(a: &ModelAccount) -> Result<(), u16> {
        if a.closed {
            Err(ACCOUNT_CLOSED)
        } else if a.frozen {
            Err(ACCOUNT_FROZEN)
        } else {
            Ok(())
        }
    }

    /// `key` may go on `account` unless another account that is not closed holds it.
    fn unshared(&self, account: usize, key: usize, allow_shared_key: bool) -> Result<(), u16> {
        let elsewhere = self.accounts.iter().any(|(&i, a)| i != account && !a.closed && a.key == key);
        if elsewhere && !allow_shared_key { Err(KEY_ALREADY_REGISTERED) } else { Ok(()) }
    }

    fn valid_limit(limit: i64) -> Result<(), u16> {
        if (0..=AMOUNT_MAX_MINOR).contains(&limit) { Ok(()) } else { Err(INVALID_LIMIT) }
    }

    /// Whether `step` is a sensitive act, which needs the quorum: role and quorum changes,
    /// a credit limit above the threshold, an administrator replacing a firm's keys, a
    /// write-off.
    fn sensitive(&self, step: &Step) -> bool {
        let large = |limit: i64| self.limit_above.is_some_and(|above| limit > above);
        match *step {
            Step::SetRole { .. } | Step::SetQuorum { .. } => true,
            Step::Close { write_off, .. } => write_off.is_some(),
            Step::Register { limit, .. } => large(limit),
            Step::SetLimits { limit, .. } => limit.is_some_and(large),
            Step::RotateKeys { account, signer, .. } => {
                self.admins.contains(&signer) && !self.holds(signer, account)
            }
            _ => false,
        }
    }

    /// The authority of the signers, before anything else of the operation: an
    /// administrator for an administrative act; cosigners only on an administrator's act,
    /// administrators all; a sensitive act with the quorum.
    fn authority(&self, step: &Step, cosigners: &[usize]) -> Result<(), u16> {
        let Some(signer) = step.signer() else { return Ok(()) };
        if step.administrative() {
            self.admin(signer)?;
        }
        if !cosigners.is_empty() && !self.admins.contains(&signer) {
            return Err(MALFORMED);
        }
        let needed = if self.sensitive(step) { usize::from(self.quorum) } else { 1 };
        let all_admins = cosigners.iter().all(|k| self.admins.contains(k));
        if !all_admins || 1 + cosigners.len() < needed {
            return Err(QUORUM_NOT_MET);
        }
        Ok(())
    }

    /// What the state machine must do with `case`: the signers' authority, then the step.
    fn apply_case(&mut self, case: &Case) -> Result<(), u16> {
        self.authority(&case.step, &case.cosigners)?;
        self.apply(&case.step)
    }

    /// What the state machine must do with `step`, in its order of checks; the model
    /// changes only when it accepts.
    fn apply(&mut self, step: &Step) -> Result<(), u16> {
        match *step {
            Step::Register { account, key, limit, max, allow_shared_key, signer } => {
                self.admin(signer)?;
                Model::valid_limit(limit)?;
                max.map_or(Ok(()), Model::valid_limit)?;
                match self.accounts.get(&account) {
                    Some(a) if a.closed => return Err(ACCOUNT_CLOSED),
                    Some(_) => return Err(ACCOUNT_EXISTS),
                    None => {}
                }
                self.unshared(account, key, allow_shared_key)?;
                let a = ModelAccount { balance: 0, limit, max, frozen: false, closed: false, key };
                self.accounts.insert(account, a);
            }
            Step::SetLimits { account, limit, max, signer } => {
                self.admin(signer)?;
                if limit.is_none() && max.is_none() {
                    return Err(NOTHING_TO_CHANGE);
                }
                limit.map_or(Ok(()), Model::valid_limit)?;
                max.flatten().map_or(Ok(()), Model::valid_limit)?;
                self.open(account)?;
                let a = self.accounts.get_mut(&account).unwrap();
                a.limit = limit.unwrap_or(a.limit);
                a.max = max.unwrap_or(a.max);
            }
            Step::Freeze { account, signer } | Step::Unfreeze { account, signer } => {
                let freeze = matches!(step, Step::Freeze { .. });
                self.admin(signer)?;
                match (self.open(account)?.frozen, freeze) {
                    (true, true) => return Err(ALREADY_FROZEN),
                    (false, false) => return Err(NOT_FROZEN),
                    _ => self.accounts.get_mut(&account).unwrap().frozen = freeze,
                }
            }
            Step::RotateKeys { account, key, allow_shared_key, signer } => {
                let a = self.existing(account)?;
                if !self.admins.contains(&signer) && a.key != signer {
                    return Err(NOT_ACCOUNT_KEY);
                }
                self.open(account)?;
                self.unshared(account, key, allow_shared_key)?;
                self.accounts.get_mut(&account).unwrap().key = key;
            }
            Step::SetRole { admin, key, present, signer } => {
                self.admin(signer)?;
                let keys = if admin { &mut self.admins } else { &mut self.auditors };
                match (present, keys.contains(&key)) {
                    (true, true) => return Err(ROLE_ALREADY_HELD),
                    (false, false) => return Err(ROLE_NOT_HELD),
                    (false, true) if admin && keys.len() == 1 => return Err(LAST_ADMINISTRATOR),
                    (false, true) if admin && keys.len() <= usize::from(self.quorum) => {
                        return Err(QUORUM_INVALID);
                    }
                    (true, false) => keys.insert(key),
                    (false, true) => keys.remove(&key),
                };
            }
            Step::Close { account, write_off, signer } => {
                self.admin(signer)?;
                let a = self.open(account)?;
                let open = self
                    .invoices
                    .values()
                    .filter(|i| i.state.is_open() && (i.payer == account || i.payee == account))
                    .count();
                let balance = a.balance;
                match write_off {
                    None if balance != 0 || open != 0 => return Err(ACCOUNT_NOT_SETTLED),
                    None => {}
                    Some(reserve) => {
                        if reserve == account {
                            return Err(WRITE_OFF_INVALID);
                        }
                        let r = self.open(reserve)?;
                        Model::status(r)?;
                        if open != 0 {
                            return Err(ACCOUNT_NOT_SETTLED);
                        }
                        if balance >= 0 {
                            return Err(WRITE_OFF_INVALID);
                        }
                        if r.balance + balance < -r.limit {
                            return Err(CREDIT_LIMIT_EXCEEDED);
                        }
                        self.accounts.get_mut(&reserve).unwrap().balance += balance;
                    }
                }
                // One status: a frozen account that is closed is closed, no longer frozen.
                let a = self.accounts.get_mut(&account).unwrap();
                (a.closed, a.frozen, a.balance) = (true, false, 0);
            }
            Step::SetQuorum { quorum, limit_above, signer } => {
                self.admin(signer)?;
                if quorum == 0 || quorum > QUORUM_MAX {
                    return Err(QUORUM_INVALID);
                }
                if limit_above.is_some_and(|l| Model::valid_limit(l).is_err()) {
                    return Err(INVALID_LIMIT);
                }
                if usize::from(quorum) > self.admins.len() {
                    return Err(QUORUM_INVALID);
                }
                if (quorum, limit_above) == (self.quorum, self.limit_above) {
                    return Err(NOTHING_TO_CHANGE);
                }
                (self.quorum, self.limit_above) = (quorum, limit_above);
            }
            Step::Transfer { payer, payee, amount, invoice, signer } => {
                self.transfer(payer, payee, self.amount(payer, payee, amount), invoice, signer)?
            }
            Step::Issue { invoice, payee, payer, amount, signer } => {
                if amount <= 0 {
                    return Err(INVALID_AMOUNT);
                }
                if payer == payee {
                    return Err(INVALID_INVOICE);
                }
                self.existing(payee)?;
                if !self.holds(signer, payee) {
                    return Err(NOT_ACCOUNT_KEY);
                }
                self.existing(payer)?;
                Model::status(&self.accounts[&payee])?;
                Model::status(&self.accounts[&payer])?;
                if self.invoices.contains_key(&invoice) {
                    return Err(INVOICE_EXISTS);
                }
                let state = InvoiceState::Issued;
                self.invoices.insert(invoice, ModelInvoice { payee, payer, amount, paid: 0, state });
            }
            Step::Accept { invoice, swap, signer } => self.accept(invoice, swap, signer)?,
            Step::Restart => {}
        }
        Ok(())
    }

    /// The amount a transfer step names, against the model's accounts.
    fn amount(&self, payer: usize, payee: usize, amount: Amount) -> i64 {
        match amount {
            Amount::Fixed(v) => v,
            Amount::Headroom(delta) => self.accounts.get(&payer).map_or(100, |a| a.balance + a.limit) + delta,
            Amount::ToMaximum(delta) => self
                .accounts
                .get(&payee)
                .and_then(|a| Some(a.max? - a.balance))
                .map_or(100, |room| room + delta),
        }
    }

    fn transfer(
        &mut self,
        payer: usize,
        payee: usize,
        amount: i64,
        invoice: Option<usize>,
        signer: usize,
    ) -> Result<(), u16> {
        if amount <= 0 || amount > AMOUNT_MAX_MINOR {
            return Err(INVALID_AMOUNT);
        }
        if payer == payee {
            return Err(SELF_TRANSFER);
        }
        let from = self.existing(payer)?;
        if from.key != signer {
            return Err(NOT_ACCOUNT_KEY);
        }
        let to = self.existing(payee)?;
        Model::status(from)?;
        Model::status(to)?;
        if from.balance - amount < -from.limit {
            return Err(CREDIT_LIMIT_EXCEEDED);
        }
        if to.max.is_some_and(|max| to.balance + amount > max) {
            return Err(MAX_BALANCE_EXCEEDED);
        }
        if let Some(n) = invoice {
            let i = self.visible(n, signer)?;
            if i.payer != payer || i.payee != payee {
                return Err(INVOICE_PARTIES_MISMATCH);
            }
            if !i.state.is_open() {
                return Err(INVOICE_STATE_CONFLICT);
            }
            if amount > i.amount - i.paid {
                return Err(INVOICE_OVERPAID);
            }
            let i = self.invoices.get_mut(&n).unwrap();
            i.paid += amount;
            i.state = if i.paid == i.amount { InvoiceState::Settled } else { InvoiceState::PartlySettled };
        }
        self.accounts.get_mut(&payer).unwrap().balance -= amount;
        self.accounts.get_mut(&payee).unwrap().balance += amount;
        Ok(())
    }

    /// Invoice `n`, if `signer` holds a key of one of its firms: to anyone else it does not
    /// exist.
    fn visible(&self, n: usize, signer: usize) -> Result<&ModelInvoice, u16> {
        match self.invoices.get(&n) {
            Some(i) if self.holds(signer, i.payer) || self.holds(signer, i.payee) => Ok(i),
            _ => Err(UNKNOWN_INVOICE),
        }
    }

    fn accept(&mut self, n: usize, swap: bool, signer: usize) -> Result<(), u16> {
        let i = self.visible(n, signer)?;
        if swap {
            return Err(INVOICE_PARTIES_MISMATCH);
        }
        if !self.holds(signer, i.payer) {
            return Err(NOT_ACCOUNT_KEY);
        }
        if self.accounts[&i.payer].frozen || self.accounts[&i.payee].frozen {
            return Err(ACCOUNT_FROZEN);
        }
        if i.state != InvoiceState::Issued {
            return Err(INVOICE_STATE_CONFLICT);
        }
        self.invoices.get_mut(&n).unwrap().state = InvoiceState::Accepted;
        Ok(())
    }

    /// The operation a step asks for, and its signer (`None` for a restart).
    fn operation(&self, step: &Step, n: u64, expired: bool) -> Option<(PublicKey, Operation)> {
        let (signer, kind) = match *step {
            Step::Register { account, key, limit, max, allow_shared_key, signer } => (
                signer,
                OpKind::RegisterAccount(RegisterAccount {
                    account: name(account),
                    display_name: NAMES[account].into(),
                    keys: vec![keys()[key]],
                    credit_limit_minor: limit,
                    max_balance_minor: max,
                    profile: Default::default(),
                    allow_shared_key,
                }),
            ),
            Step::SetLimits { account, limit, max, signer } => (
                signer,
                OpKind::SetLimits(SetLimits {
                    account: name(account),
                    credit_limit_minor: limit,
                    max_balance_minor: max,
                    reason: "review".into(),
                }),
            ),
            Step::Freeze { account, signer } => {
                (signer, OpKind::FreezeAccount { account: name(account), reason: "dispute".into() })
            }
            Step::Unfreeze { account, signer } => {
                (signer, OpKind::UnfreezeAccount { account: name(account), reason: String::new() })
            }
            Step::RotateKeys { account, key, allow_shared_key, signer } => (
                signer,
                OpKind::RotateKeys { account: name(account), keys: vec![keys()[key]], allow_shared_key },
            ),
            Step::SetRole { admin, key, present, signer } => (
                signer,
                OpKind::SetRole(SetRole {
                    role: if admin { Role::Admin } else { Role::Auditor },
                    key: keys()[key],
                    present,
                    reason: "board decision".into(),
                }),
            ),
            Step::Close { account, write_off, signer } => (
                signer,
                OpKind::CloseAccount {
                    account: name(account),
                    reason: "ceased trading".into(),
                    write_off_to: write_off.map(name),
                },
            ),
            Step::SetQuorum { quorum, limit_above, signer } => (
                signer,
                OpKind::SetQuorum(SetQuorum {
                    quorum,
                    limit_above_minor: limit_above,
                    reason: "statutes".into(),
                }),
            ),
            Step::Transfer { payer, payee, amount, invoice, signer } => (
                signer,
                OpKind::Transfer(Transfer {
                    payer: name(payer),
                    payee: name(payee),
                    amount_minor: self.amount(payer, payee, amount),
                    memo: String::new(),
                    invoice_ref: None,
                    invoice: invoice.map(|n| InvoiceId([n as u8; 16])),
                }),
            ),
            Step::Issue { invoice, payee, payer, amount, signer } => (
                signer,
                OpKind::IssueInvoice(IssueInvoice {
                    invoice: InvoiceId([invoice as u8; 16]),
                    payee: name(payee),
                    payer: name(payer),
                    amount_minor: amount,
                    local_share_percent: 100,
                    due_day: None,
                    reference: String::new(),
                    excluded_from_clearing: false,
                }),
            ),
            Step::Accept { invoice, swap, signer } => {
                let (payee, payer) = self.invoices.get(&invoice).map_or((0, 1), |i| (i.payee, i.payer));
                let (payee, payer) = if swap { (payer, payee) } else { (payee, payer) };
                let parties = InvoiceParties {
                    invoice: InvoiceId([invoice as u8; 16]),
                    payee: name(payee),
                    payer: name(payer),
                };
                (signer, OpKind::AcceptInvoice(parties))
            }
            Step::Restart => return None,
        };
        let valid_until_ms = if expired { NOW_MS - 1 } else { NOW_MS + 60_000 };
        let mut id = [0; 16];
        id[..8].copy_from_slice(&n.to_be_bytes());
        Some((keys()[signer], Operation { id: OperationId(id), valid_until_ms, kind }))
    }

    /// The model's accounts and invoices are the state's.
    fn check(&self, state: &State) {
        assert_eq!(state.account_count(), self.accounts.len());
        for (&i, m) in &self.accounts {
            let a = state.account(&name(i)).unwrap();
            let key = keys().iter().position(|k| a.keys == [*k]).unwrap();
            let real = ModelAccount {
                balance: a.balance_minor,
                limit: a.credit_limit_minor,
                max: a.max_balance_minor,
                frozen: a.status == cercle_core::AccountStatus::Frozen,
                closed: a.status == cercle_core::AccountStatus::Closed,
                key,
            };
            assert_eq!(&real, m, "account {}", NAMES[i]);
        }
        assert_eq!(state.invoice_count(), self.invoices.len());
        for (&n, m) in &self.invoices {
            let i = state.invoice(&InvoiceId([n as u8; 16])).unwrap();
            let payee = NAMES.iter().position(|a| *a == i.payee.as_str()).unwrap();
            let payer = NAMES.iter().position(|a| *a == i.payer.as_str()).unwrap();
            let real =
                ModelInvoice { payee, payer, amount: i.amount_minor, paid: i.paid_minor, state: i.state };
            assert_eq!(&real, m, "invoice {n}");
        }
        let role = |set: &BTreeSet<usize>| set.iter().map(|&k| keys()[k]).collect::<BTreeSet<_>>();
        let admins: BTreeSet<PublicKey> = state.roles().admins().iter().copied().collect();
        let auditors: BTreeSet<PublicKey> = state.roles().auditors().iter().copied().collect();
        assert_eq!((admins, auditors), (role(&self.admins), role(&self.auditors)), "roles");
        assert_eq!(
            (state.roles().quorum(), state.roles().limit_above_minor()),
            (self.quorum, self.limit_above),
            "quorum"
        );
        for i in state.open_invoices() {
            for firm in [&i.payer, &i.payee] {
                let status = state.account(firm).map(|a| a.status);
                assert_ne!(
                    status,
                    Some(cercle_core::AccountStatus::Closed),
                    "open invoice of closed '{firm}'"
                );
            }
        }
        let open = state.open_invoices().count();
        assert_eq!(open, self.invoices.values().filter(|i| i.state.is_open()).count());
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

fn run(cases: &[Case]) {
    let genesis = genesis();
    let mut state = State::new(&genesis);
    let mut model = Model::default();
    let mut sequence = 0;
    // Every accepted operation with its context and signers: a restart also replays them
    // from the genesis, as a node without a checkpoint and an auditor do.
    let mut accepted: Vec<(Context, Vec<PublicKey>, Operation)> = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let Some((signer, op)) = model.operation(&case.step, n as u64, case.expired) else {
            let rebuilt = restart(&genesis, &state);
            assert_eq!(rebuilt.digest(), state.digest());
            assert_eq!(rebuilt, state);
            let mut replayed = State::new(&genesis);
            for (ctx, signers, op) in &accepted {
                replayed
                    .apply_signed(ctx, signers, op, ClearingInput::Propose)
                    .expect("an accepted operation replays");
            }
            assert_eq!(replayed.digest(), state.digest(), "the replay from the genesis differs");
            state = rebuilt;
            continue;
        };
        let expected = if case.expired { Err(EXPIRED) } else { model.apply_case(case) };
        let before = state.digest();
        let ctx = Context { sequence: sequence + 1, timestamp_ms: NOW_MS };
        let signers: Vec<PublicKey> =
            std::iter::once(signer).chain(case.cosigners.iter().map(|&k| keys()[k])).collect();
        let outcome = state.apply_signed(&ctx, &signers, &op, ClearingInput::Propose);
        let got = outcome.as_ref().map(|_| ()).map_err(|r| r.code() as u16);
        assert_eq!(got, expected, "step {n}: {:?} gave {outcome:?}", case.step);
        match outcome {
            Ok(effects) => {
                accepted.push((ctx, signers.clone(), op.clone()));
                sequence += 1;
                let sum: i128 = effects
                    .balance_changes
                    .iter()
                    .map(|b| i128::from(b.after_minor) - i128::from(b.before_minor))
                    .sum();
                assert_eq!(sum, 0, "step {n} created or destroyed money");
            }
            Err(_) => assert_eq!(state.digest(), before, "step {n} was rejected but changed the state"),
        }
        model.check(&state);
    }
}

/// The edges of a write-off at a quorum of one: the reserve's credit limit (refused one
/// unit past it, accepted exactly at it), a frozen reserve, a positive balance, a zero one.
#[test]
fn write_off_edges() {
    let step = |step| Case { step, expired: false, cosigners: vec![] };
    let register = |account, key, limit| {
        step(Step::Register { account, key, limit, max: None, allow_shared_key: false, signer: 0 })
    };
    let close = |account, write_off| step(Step::Close { account, write_off, signer: 0 });
    let ok = Ok::<(), u16>(());
    let path = [
        (register(0, 1, 1_000), ok),
        (register(1, 2, 99), ok),
        (register(2, 3, 0), ok),
        (register(3, 4, 0), ok),
        (
            step(Step::Transfer { payer: 0, payee: 2, amount: Amount::Fixed(100), invoice: None, signer: 1 }),
            ok,
        ),
        (close(0, Some(1)), Err(CREDIT_LIMIT_EXCEEDED)),
        (step(Step::SetLimits { account: 1, limit: Some(100), max: None, signer: 0 }), ok),
        (step(Step::Freeze { account: 1, signer: 0 }), ok),
        (close(0, Some(1)), Err(ACCOUNT_FROZEN)),
        (step(Step::Unfreeze { account: 1, signer: 0 }), ok),
        (close(0, Some(3)), Err(CREDIT_LIMIT_EXCEEDED)),
        (close(3, Some(1)), Err(WRITE_OFF_INVALID)),
        (close(2, Some(1)), Err(WRITE_OFF_INVALID)),
        (close(0, None), Err(ACCOUNT_NOT_SETTLED)),
        (close(0, Some(1)), ok),
        (close(1, Some(2)), ok),
        (close(2, Some(1)), Err(ACCOUNT_CLOSED)),
    ];
    let mut model = Model::default();
    for (n, (case, expected)) in path.iter().enumerate() {
        assert_eq!(model.apply_case(case), *expected, "step {n}: {:?}", case.step);
    }
    assert_eq!(model.accounts[&2].balance, 0, "the debt went on to the next reserve");
    run(&path.map(|(case, _)| case));
}

/// A case under a quorum of two (key 4 made an administrator, then the quorum set, see
/// `under_a_quorum`): cosigned by the two administrators most of the time, so that the
/// sensitive acts get through as often as they are refused, and closures with a write-off
/// more often.
fn quorum_case() -> impl Strategy<Value = Case> {
    let cosigners = prop_oneof![1 => Just(Vec::new()), 2 => Just(vec![0usize, 4]), 1 => prop::collection::vec(0..KEYS, 1..3)];
    let step = prop_oneof![
        4 => step(),
        1 => (0..NAMES.len(), 0..NAMES.len()).prop_map(|(account, reserve)| Step::Close {
            account,
            write_off: Some(reserve),
            signer: 0,
        }),
    ];
    (step, cosigners).prop_map(|(step, cosigners)| {
        let signer = step.signer();
        let mut distinct = Vec::new();
        for k in cosigners {
            if Some(k) != signer && !distinct.contains(&k) {
                distinct.push(k);
            }
        }
        Case { step, expired: false, cosigners: distinct }
    })
}

/// The cases after a prefix that makes key 4 an administrator and sets a quorum of two,
/// with credit limits above 2,000 minor units sensitive.
fn under_a_quorum(cases: &[Case]) -> Vec<Case> {
    let prefix = [
        Step::SetRole { admin: true, key: 4, present: true, signer: 0 },
        Step::SetQuorum { quorum: 2, limit_above: Some(2_000), signer: 0 },
    ];
    prefix
        .into_iter()
        .map(|step| Case { step, expired: false, cosigners: vec![] })
        .chain(cases.iter().cloned())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn the_state_machine_follows_the_model(cases in prop::collection::vec(case(), 1..60)) {
        run(&cases);
    }

    #[test]
    fn the_state_machine_follows_the_model_under_a_quorum(cases in prop::collection::vec(quorum_case(), 1..60)) {
        run(&under_a_quorum(&cases));
    }
}

/// Closure, roles and shared keys along one fixed path, each outcome the model's and then
/// the state's: a key refused on a second account, then allowed; a close refused at a
/// non-zero balance and with an open invoice, then accepted; the closed account refused
/// everything and its key free again; a second administrator who removes the first.
#[test]
fn closure_roles_and_shared_keys_along_a_fixed_path() {
    let step = |step| Case { step, expired: false, cosigners: vec![] };
    let register = |account, key, allow_shared_key| {
        step(Step::Register { account, key, limit: 1_000, max: None, allow_shared_key, signer: 0 })
    };
    let pay = |payer, payee, amount, signer| {
        step(Step::Transfer { payer, payee, amount: Amount::Fixed(amount), invoice: None, signer })
    };
    let rotate = |account, key, allow_shared_key, signer| {
        step(Step::RotateKeys { account, key, allow_shared_key, signer })
    };
    let close = |account, signer| step(Step::Close { account, write_off: None, signer });
    let role = |admin, key, present, signer| step(Step::SetRole { admin, key, present, signer });
    let ok = Ok::<(), u16>(());
    let path = [
        (register(0, 1, false), ok),
        (register(1, 1, false), Err(KEY_ALREADY_REGISTERED)),
        (register(1, 2, false), ok),
        (register(2, 3, false), ok),
        (pay(0, 2, 10, 1), ok),
        (close(0, 0), Err(ACCOUNT_NOT_SETTLED)),
        (pay(2, 0, 10, 3), ok),
        (step(Step::Issue { invoice: 0, payee: 2, payer: 0, amount: 5, signer: 3 }), ok),
        (close(0, 0), Err(ACCOUNT_NOT_SETTLED)),
        (close(2, 0), Err(ACCOUNT_NOT_SETTLED)),
        (close(1, 1), Err(NOT_ADMINISTRATOR)),
        (close(1, 0), ok),
        (close(1, 0), Err(ACCOUNT_CLOSED)),
        (pay(1, 2, 1, 2), Err(ACCOUNT_CLOSED)),
        (pay(2, 1, 1, 3), Err(ACCOUNT_CLOSED)),
        (step(Step::Issue { invoice: 1, payee: 2, payer: 1, amount: 5, signer: 3 }), Err(ACCOUNT_CLOSED)),
        (step(Step::Freeze { account: 1, signer: 0 }), Err(ACCOUNT_CLOSED)),
        (step(Step::SetLimits { account: 1, limit: Some(5), max: None, signer: 0 }), Err(ACCOUNT_CLOSED)),
        (register(1, 4, false), Err(ACCOUNT_CLOSED)),
        (rotate(1, 4, false, 0), Err(ACCOUNT_CLOSED)),
        (register(3, 2, false), ok),
        (role(true, 4, true, 0), ok),
        (role(true, 0, false, 4), ok),
        (role(true, 4, false, 4), Err(LAST_ADMINISTRATOR)),
        (close(3, 0), Err(NOT_ADMINISTRATOR)),
        (role(false, 2, true, 4), ok),
        (role(false, 2, true, 4), Err(ROLE_ALREADY_HELD)),
        (role(false, 1, false, 4), Err(ROLE_NOT_HELD)),
        (step(Step::Restart), ok),
        (close(3, 4), ok),
        (rotate(2, 1, false, 3), Err(KEY_ALREADY_REGISTERED)),
        (rotate(2, 1, true, 3), ok),
    ];
    let mut model = Model::default();
    for (n, (case, expected)) in path.iter().enumerate() {
        assert_eq!(model.apply_case(case), *expected, "step {n}: {:?}", case.step);
    }
    run(&path.map(|(case, _)| case));
}

/// The quorum along one fixed path: two administrators set a quorum of two; a lone
/// administrator's sensitive acts are refused, cosigned they pass; a cosigner who is not an
/// administrator does not count; a firm's own key rotation needs no quorum but an
/// administrator's replacement does; a limit above the threshold needs it, one at it does
/// not; a write-off moves a leaving firm's debt to the reserve within its limit.
#[test]
fn quorum_and_write_off_along_a_fixed_path() {
    let step = |step, cosigners: &[usize]| Case { step, expired: false, cosigners: cosigners.to_vec() };
    let register = |account, key, limit, signer, cosigners: &[usize]| {
        step(Step::Register { account, key, limit, max: None, allow_shared_key: false, signer }, cosigners)
    };
    let quorum = |quorum, limit_above, signer, cosigners: &[usize]| {
        step(Step::SetQuorum { quorum, limit_above, signer }, cosigners)
    };
    let role = |key, present, signer, cosigners: &[usize]| {
        step(Step::SetRole { admin: true, key, present, signer }, cosigners)
    };
    let pay = |payer, payee, amount, signer| {
        step(Step::Transfer { payer, payee, amount: Amount::Fixed(amount), invoice: None, signer }, &[])
    };
    let close = |account, write_off, signer, cosigners: &[usize]| {
        step(Step::Close { account, write_off, signer }, cosigners)
    };
    let limits = |account, limit, signer, cosigners: &[usize]| {
        step(Step::SetLimits { account, limit: Some(limit), max: None, signer }, cosigners)
    };
    let rotate = |account, key, signer, cosigners: &[usize]| {
        step(Step::RotateKeys { account, key, allow_shared_key: false, signer }, cosigners)
    };
    let ok = Ok::<(), u16>(());
    let path = [
        (quorum(2, None, 0, &[]), Err(QUORUM_INVALID)),
        (role(4, true, 0, &[]), ok),
        (quorum(QUORUM_MAX + 1, None, 0, &[]), Err(QUORUM_INVALID)),
        (quorum(2, Some(1_000), 0, &[]), ok),
        (quorum(2, Some(1_000), 0, &[4]), Err(NOTHING_TO_CHANGE)),
        (role(3, true, 0, &[]), Err(QUORUM_NOT_MET)),
        (role(3, true, 0, &[1]), Err(QUORUM_NOT_MET)),
        (role(4, false, 0, &[4]), Err(QUORUM_INVALID)),
        (role(3, true, 0, &[4]), ok),
        (register(0, 1, 1_000, 0, &[]), ok),
        (register(1, 2, 1_001, 0, &[]), Err(QUORUM_NOT_MET)),
        (register(1, 2, 1_001, 4, &[0]), ok),
        (register(2, 2, 10, 0, &[2]), Err(QUORUM_NOT_MET)),
        (pay(0, 1, 10, 1), ok),
        (
            step(
                Step::Transfer { payer: 0, payee: 1, amount: Amount::Fixed(1), invoice: None, signer: 1 },
                &[0],
            ),
            Err(MALFORMED),
        ),
        (limits(0, 5_000, 0, &[]), Err(QUORUM_NOT_MET)),
        (limits(0, 900, 0, &[]), ok),
        (rotate(0, 1, 1, &[]), ok),
        (rotate(0, 2, 0, &[]), Err(QUORUM_NOT_MET)),
        (close(0, Some(1), 0, &[]), Err(QUORUM_NOT_MET)),
        (close(0, Some(0), 0, &[3]), Err(WRITE_OFF_INVALID)),
        (close(1, Some(0), 0, &[3]), Err(WRITE_OFF_INVALID)),
        (close(0, Some(1), 0, &[3]), ok),
        (close(1, Some(0), 0, &[3]), Err(ACCOUNT_CLOSED)),
        (step(Step::Restart, &[]), ok),
        (quorum(1, None, 3, &[4]), ok),
        (role(0, false, 4, &[]), ok),
    ];
    let mut model = Model::default();
    for (n, (case, expected)) in path.iter().enumerate() {
        assert_eq!(model.apply_case(case), *expected, "step {n}: {:?}", case.step);
    }
    assert_eq!(model.accounts[&1].balance, 0, "the reserve took the debt back to zero");
    run(&path.map(|(case, _)| case));
}

/// The edges of a transfer, each on its own: exactly the payer's headroom, and one minor
/// unit more; exactly up to the payee's maximum balance, and one minor unit more.
#[test]
fn transfers_at_the_exact_limits() {
    let register = |account, key, limit, max| Case {
        step: Step::Register { account, key, limit, max, allow_shared_key: false, signer: 0 },
        expired: false,
        cosigners: vec![],
    };
    let pay = |amount| Case {
        step: Step::Transfer { payer: 0, payee: 1, amount, invoice: None, signer: 1 },
        expired: false,
        cosigners: vec![],
    };
    for (amount, accepted) in [(Amount::Headroom(1), false), (Amount::Headroom(0), true)] {
        run(&[register(0, 1, 1_000, None), register(1, 2, 0, None), pay(Amount::Fixed(1)), pay(amount)]);
        let mut model = Model::default();
        for c in [register(0, 1, 1_000, None), register(1, 2, 0, None), pay(Amount::Fixed(1))] {
            model.apply(&c.step).unwrap();
        }
        assert_eq!(model.apply(&pay(amount).step).is_ok(), accepted, "{amount:?}");
    }
    for (delta, accepted) in [(1, false), (0, true), (-1, true)] {
        let cases =
            [register(0, 1, 1_000, None), register(1, 2, 0, Some(500)), pay(Amount::ToMaximum(delta))];
        run(&cases);
        let mut model = Model::default();
        for c in &cases[..2] {
            model.apply(&c.step).unwrap();
        }
        assert_eq!(model.apply(&cases[2].step).is_ok(), accepted, "to the maximum {delta:+}");
    }
}
