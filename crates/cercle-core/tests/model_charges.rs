//! A model test of the periodic charges (`ChargeFees`) in the state machine: generated
//! sequences of registrations (with or without a size class), a member group and
//! assignments to it, fee schedules (membership by size class and by group, demurrage),
//! freezes, closures, transfers, months passing, charges of past, current and future
//! periods (by an administrator or not), and restarts (the state rebuilt from its records,
//! as the store's checkpoint holds them, and replayed from the genesis: both give the
//! same digest).
//!
//! The model writes the rules again: which firms pay (not closed, not the association's
//! account, frozen ones included), what each owes (its group's fee, else its size class's;
//! demurrage half up on the part above the threshold, on the balance before the charge),
//! all or nothing within the binding credit limit (the group's for a member) and the fee
//! account's maximum, in handle order; each period once and in order; the rejection
//! numbers. After every step: the outcome and the charge record are the model's; the
//! balances are the model's and sum to zero; every balance that went down is within its
//! binding limit; a rejected operation changed nothing.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use cercle_core::charges::{LastCharge, Period};
use cercle_core::groups::GroupName;
use cercle_core::sign::Keypair;
use cercle_core::{
    Account, AccountId, ClearingInput, Context, FeeSchedule, Genesis, Groups, LedgerId, LevyOn, OpKind,
    Operation, OperationId, Profile, PublicKey, RegisterAccount, SetFees, State, Transfer,
};
use proptest::prelude::*;

const NOT_ADMINISTRATOR: u16 = 10;
const UNKNOWN_ACCOUNT: u16 = 20;
const ACCOUNT_EXISTS: u16 = 21;
const ACCOUNT_FROZEN: u16 = 22;
const ALREADY_FROZEN: u16 = 23;
const NOT_FROZEN: u16 = 24;
const ACCOUNT_CLOSED: u16 = 29;
const NOTHING_TO_CHANGE: u16 = 33;
const SELF_TRANSFER: u16 = 41;
const CREDIT_LIMIT_EXCEEDED: u16 = 50;
const MAX_BALANCE_EXCEEDED: u16 = 51;
const ACCOUNT_NOT_SETTLED: u16 = 70;
const UNKNOWN_GROUP: u16 = 80;
const GROUP_EXISTS: u16 = 81;
const FEES_INVALID: u16 = 100;
const PERIOD_ALREADY_CHARGED: u16 = 101;
const PERIOD_NOT_BEGUN: u16 = 102;
const NO_FEE_SCHEDULE: u16 = 103;
const NOTHING_TO_CHARGE: u16 = 104;

/// 2026-01-10T00:00:00Z; each `NextMonth` adds 31 days.
const START_MS: u64 = 1_768_003_200_000;
const MONTH_MS: u64 = 31 * 86_400_000;
/// In handle order, so that the model's index order is the ledger's.
const NAMES: [&str; 4] = ["assoc", "firm-a", "firm-b", "firm-c"];
const CLASSES: [&str; 2] = ["1-9", "10-49"];
const GROUP: &str = "coops";
const GROUP_LIMIT: i64 = 2_500;
/// Key 0 is the administrator's; key `i + 1` is account `i`'s.
const KEYS: usize = NAMES.len() + 1;

fn keys() -> &'static [PublicKey] {
    static KEYS_CELL: OnceLock<Vec<PublicKey>> = OnceLock::new();
    KEYS_CELL.get_or_init(|| (0..KEYS).map(|i| Keypair::from_seed(&[i as u8 + 1; 32]).public_key()).collect())
}

fn genesis() -> Genesis {
    Genesis {
        ledger_id: LedgerId([8; 16]),
        currency: "CHW".into(),
        exponent: 2,
        admin_keys: vec![keys()[0]],
        auditor_keys: vec![],
        node_key: keys()[0],
        quorum: 1,
        // One hour east of UTC: the ledger's month is not UTC's at its edges.
        day_offset_minutes: 60,
    }
}

fn name(i: usize) -> AccountId {
    AccountId::parse(NAMES[i]).unwrap()
}

fn group() -> GroupName {
    GroupName::parse(GROUP).unwrap()
}

#[derive(Debug, Clone)]
struct FeesStep {
    account: usize,
    /// Fee of each size class (0: none).
    class_fees: [i64; 2],
    group_fee: Option<i64>,
    demurrage_bp: u16,
    above: i64,
}

#[derive(Debug, Clone, Copy)]
enum Amount {
    Fixed(i64),
    /// The amount after which the payer's charge, at the schedule in force, lands exactly on
    /// its binding credit limit, plus this many minor units (found by search over the
    /// model's own rules).
    ChargeEdge(i64),
}

#[derive(Debug, Clone)]
enum Step {
    Register {
        account: usize,
        limit: i64,
        max: Option<i64>,
        class: Option<usize>,
    },
    CreateGroup,
    Assign {
        account: usize,
    },
    SetFees(FeesStep),
    Freeze {
        account: usize,
        frozen: bool,
    },
    Close {
        account: usize,
    },
    Transfer {
        payer: usize,
        payee: usize,
        amount: Amount,
    },
    NextMonth,
    /// Charge the period `offset` months from the ledger's current one.
    Charge {
        offset: i64,
        admin: bool,
    },
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    let account = 0..NAMES.len();
    let fees = (
        account.clone(),
        (prop_oneof![Just(0i64), Just(300), Just(1_200)], prop_oneof![Just(0i64), Just(700)]),
        prop::option::of(prop_oneof![Just(100i64), Just(2_000)]),
        prop_oneof![Just(0u16), Just(1), Just(50), Just(500), Just(501)],
        prop_oneof![Just(0i64), Just(1_000)],
    )
        .prop_map(|(account, (a, b), group_fee, demurrage_bp, above)| {
            Step::SetFees(FeesStep { account, class_fees: [a, b], group_fee, demurrage_bp, above })
        });
    prop_oneof![
        4 => (
            account.clone(),
            prop_oneof![Just(0i64), Just(1_000), Just(5_000)],
            prop::option::of(prop_oneof![Just(0i64), Just(3_000), Just(100_000)]),
            prop::option::of(0..CLASSES.len()),
        )
            .prop_map(|(account, limit, max, class)| Step::Register { account, limit, max, class }),
        1 => Just(Step::CreateGroup),
        1 => account.clone().prop_map(|account| Step::Assign { account }),
        2 => fees,
        1 => (account.clone(), any::<bool>()).prop_map(|(account, frozen)| Step::Freeze { account, frozen }),
        1 => account.clone().prop_map(|account| Step::Close { account }),
        6 => (
            account.clone(),
            account,
            prop_oneof![3 => (1i64..4_000).prop_map(Amount::Fixed), 2 => (-1i64..=1).prop_map(Amount::ChargeEdge)],
        )
            .prop_map(|(payer, payee, amount)| Step::Transfer { payer, payee, amount }),
        2 => Just(Step::NextMonth),
        4 => (-2i64..=1, prop_oneof![6 => Just(true), 1 => Just(false)])
            .prop_map(|(offset, admin)| Step::Charge { offset, admin }),
        1 => Just(Step::Restart),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum Status {
    Active,
    Frozen,
    Closed,
}

#[derive(Debug, Clone)]
struct ModelAccount {
    balance: i64,
    limit: i64,
    max: Option<i64>,
    class: Option<usize>,
    in_group: bool,
    status: Status,
}

/// A charge as the model expects it: (account, membership, demurrage, charged).
type Expected = Vec<(usize, i64, i64, bool)>;

#[derive(Debug, Default)]
struct Model {
    accounts: BTreeMap<usize, ModelAccount>,
    group: bool,
    fees: Option<FeesStep>,
    /// The last period charged, as a month index (year * 12 + month - 1).
    last: Option<i64>,
    now_ms: u64,
}

fn month_index(period: Period) -> i64 {
    i64::from(period.year) * 12 + i64::from(period.month) - 1
}

fn period_of(index: i64) -> Period {
    Period { year: (index / 12) as u16, month: (index % 12 + 1) as u8 }
}

impl Model {
    /// The ledger's month now, written again: one hour east of UTC, days from the epoch.
    fn current(&self) -> i64 {
        let local_days = (self.now_ms / 1000 + 3_600) / 86_400;
        let (mut year, mut days) = (1970i64, local_days as i64);
        loop {
            let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
            let length = if leap { 366 } else { 365 };
            if days < length {
                let lengths = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
                let mut month = 0;
                while days >= lengths[month] {
                    days -= lengths[month];
                    month += 1;
                }
                return year * 12 + month as i64;
            }
            days -= length;
            year += 1;
        }
    }

    /// The binding credit limit and maximum of an account.
    fn limits(&self, a: &ModelAccount) -> (i64, Option<i64>) {
        if a.in_group { (GROUP_LIMIT, None) } else { (a.limit, a.max) }
    }

    /// What `a` owes at `balance` under `fees`: (membership, demurrage).
    fn due(fees: &FeesStep, a: &ModelAccount, balance: i64) -> (i64, i64) {
        let membership = match (a.in_group, fees.group_fee) {
            (true, Some(g)) => g,
            _ => a.class.map_or(0, |c| fees.class_fees[c]),
        };
        let demurrage = if fees.demurrage_bp > 0 && balance > fees.above {
            let product = i128::from(balance - fees.above) * i128::from(fees.demurrage_bp);
            (product / 10_000 + i128::from(product % 10_000 >= 5_000)) as i64
        } else {
            0
        };
        (membership, demurrage)
    }

    /// The amount a transfer step means.
    fn amount(&self, payer: usize, amount: Amount) -> i64 {
        let delta = match amount {
            Amount::Fixed(a) => return a,
            Amount::ChargeEdge(d) => d,
        };
        let (Some(fees), Some(a)) = (&self.fees, self.accounts.get(&payer)) else { return 1 };
        let (limit, _) = self.limits(a);
        let pays = |x: i64| {
            let after = a.balance - x;
            let (m, d) = Model::due(fees, a, after);
            after - m - d >= -limit
        };
        if !pays(1) {
            return 1;
        }
        // The largest amount after which the charge is still paid (what is left after the
        // charge only grows with the balance, so what pays is a prefix).
        let (mut lo, mut hi) = (1i64, 1_000_000i64);
        if pays(hi) {
            return 1;
        }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if pays(mid) { lo = mid } else { hi = mid }
        }
        (lo + delta).max(1)
    }

    fn open(&self, account: usize) -> Result<&ModelAccount, u16> {
        let a = self.accounts.get(&account).ok_or(UNKNOWN_ACCOUNT)?;
        if a.status == Status::Closed {
            return Err(ACCOUNT_CLOSED);
        }
        Ok(a)
    }

    fn apply(&mut self, step: &Step) -> Result<Option<Expected>, u16> {
        match step {
            Step::Restart => Ok(None),
            Step::NextMonth => {
                self.now_ms += MONTH_MS;
                Ok(None)
            }
            Step::Register { account, limit, max, class } => {
                match self.accounts.get(account) {
                    Some(a) if a.status == Status::Closed => return Err(ACCOUNT_CLOSED),
                    Some(_) => return Err(ACCOUNT_EXISTS),
                    None => {}
                }
                let a = ModelAccount {
                    balance: 0,
                    limit: *limit,
                    max: *max,
                    class: *class,
                    in_group: false,
                    status: Status::Active,
                };
                self.accounts.insert(*account, a);
                Ok(None)
            }
            Step::CreateGroup => {
                if self.group {
                    return Err(GROUP_EXISTS);
                }
                self.group = true;
                Ok(None)
            }
            Step::Assign { account } => {
                self.open(*account)?;
                if !self.group {
                    return Err(UNKNOWN_GROUP);
                }
                let a = self.accounts.get_mut(account).unwrap();
                if a.in_group {
                    return Err(NOTHING_TO_CHANGE);
                }
                a.in_group = true;
                Ok(None)
            }
            Step::SetFees(f) => {
                if f.demurrage_bp > 500 {
                    return Err(FEES_INVALID);
                }
                self.open(f.account)?;
                if f.group_fee.is_some() && !self.group {
                    return Err(UNKNOWN_GROUP);
                }
                if self.fees.as_ref().is_some_and(|g| same_fees(g, f)) {
                    return Err(NOTHING_TO_CHANGE);
                }
                self.fees = Some(f.clone());
                Ok(None)
            }
            Step::Freeze { account, frozen } => {
                let a = self.open(*account)?;
                match (&a.status, *frozen) {
                    (Status::Frozen, true) => return Err(ALREADY_FROZEN),
                    (Status::Active, false) => return Err(NOT_FROZEN),
                    _ => {}
                }
                self.accounts.get_mut(account).unwrap().status =
                    if *frozen { Status::Frozen } else { Status::Active };
                Ok(None)
            }
            Step::Close { account } => {
                let a = self.open(*account)?;
                if a.balance != 0 {
                    return Err(ACCOUNT_NOT_SETTLED);
                }
                self.accounts.get_mut(account).unwrap().status = Status::Closed;
                Ok(None)
            }
            Step::Transfer { payer, payee, amount } => {
                let amount = &self.amount(*payer, *amount);
                if payer == payee {
                    return Err(SELF_TRANSFER);
                }
                let p = self.accounts.get(payer).ok_or(UNKNOWN_ACCOUNT)?;
                let q = self.accounts.get(payee).ok_or(UNKNOWN_ACCOUNT)?;
                for a in [p, q] {
                    match a.status {
                        Status::Closed => return Err(ACCOUNT_CLOSED),
                        Status::Frozen => return Err(ACCOUNT_FROZEN),
                        Status::Active => {}
                    }
                }
                let (p_limit, _) = self.limits(p);
                let (_, q_max) = self.limits(q);
                if p.balance - amount < -p_limit {
                    return Err(CREDIT_LIMIT_EXCEEDED);
                }
                if q_max.is_some_and(|m| q.balance + amount > m) {
                    return Err(MAX_BALANCE_EXCEEDED);
                }
                self.accounts.get_mut(payer).unwrap().balance -= amount;
                self.accounts.get_mut(payee).unwrap().balance += amount;
                Ok(None)
            }
            Step::Charge { offset, admin } => {
                if !admin {
                    return Err(NOT_ADMINISTRATOR);
                }
                let Some(fees) = self.fees.clone() else { return Err(NO_FEE_SCHEDULE) };
                let period = self.current() + offset;
                if period > self.current() {
                    return Err(PERIOD_NOT_BEGUN);
                }
                if self.last.is_some_and(|last| period <= last) {
                    return Err(PERIOD_ALREADY_CHARGED);
                }
                let periodic = fees.class_fees.iter().any(|f| *f > 0)
                    || fees.group_fee.is_some()
                    || fees.demurrage_bp > 0;
                if !periodic {
                    return Err(NOTHING_TO_CHARGE);
                }
                let fee = self.open(fees.account)?;
                if fee.status == Status::Frozen {
                    return Err(ACCOUNT_FROZEN);
                }
                let (_, fee_max) = self.limits(fee);
                let mut fee_balance = fee.balance;
                let mut expected = Vec::new();
                for (i, a) in &self.accounts {
                    if *i == fees.account || a.status == Status::Closed {
                        continue;
                    }
                    let (membership, demurrage) = Model::due(&fees, a, a.balance);
                    if membership + demurrage == 0 {
                        continue;
                    }
                    let (limit, _) = self.limits(a);
                    let due = membership + demurrage;
                    let charged =
                        a.balance - due >= -limit && fee_max.is_none_or(|max| fee_balance + due <= max);
                    if charged {
                        fee_balance += due;
                    }
                    expected.push((*i, membership, demurrage, charged));
                }
                if expected.is_empty() {
                    return Err(NOTHING_TO_CHARGE);
                }
                for (i, m, d, charged) in &expected {
                    if *charged {
                        self.accounts.get_mut(i).unwrap().balance -= m + d;
                    }
                }
                self.accounts.get_mut(&fees.account).unwrap().balance = fee_balance;
                self.last = Some(period);
                Ok(Some(expected))
            }
        }
    }

    fn schedule(f: &FeesStep) -> FeeSchedule {
        FeeSchedule {
            account: name(f.account),
            transfer_levy_bp: 0,
            levy_on: LevyOn::Payer,
            membership_minor: CLASSES
                .iter()
                .zip(f.class_fees)
                .filter(|(_, fee)| *fee > 0)
                .map(|(c, fee)| (c.to_string(), fee))
                .collect(),
            demurrage_bp: f.demurrage_bp,
            demurrage_above_minor: f.above,
            group_membership_minor: f.group_fee.map(|g| (group(), g)).into_iter().collect(),
        }
    }

    fn operation(&self, step: &Step, n: u64) -> Option<(PublicKey, Operation)> {
        let kind = match step {
            Step::Restart | Step::NextMonth => return None,
            Step::Register { account, limit, max, class } => OpKind::RegisterAccount(RegisterAccount {
                account: name(*account),
                display_name: NAMES[*account].into(),
                keys: vec![keys()[account + 1]],
                credit_limit_minor: *limit,
                max_balance_minor: *max,
                profile: Profile { size_class: class.map(|c| CLASSES[c].to_string()), ..Profile::default() },
                allow_shared_key: false,
            }),
            Step::CreateGroup => OpKind::CreateGroup(cercle_core::op::GroupLimits {
                group: group(),
                credit_limit_minor: GROUP_LIMIT,
                max_balance_minor: None,
                reason: "cooperatives".into(),
            }),
            Step::Assign { account } => OpKind::AssignGroup {
                account: name(*account),
                group: group(),
                reason: "a cooperative".into(),
            },
            Step::SetFees(f) => {
                OpKind::SetFees(SetFees { schedule: Model::schedule(f), reason: "general assembly".into() })
            }
            Step::Freeze { account, frozen: true } => {
                OpKind::FreezeAccount { account: name(*account), reason: "dispute".into() }
            }
            Step::Freeze { account, frozen: false } => {
                OpKind::UnfreezeAccount { account: name(*account), reason: "settled".into() }
            }
            Step::Close { account } => {
                OpKind::CloseAccount { account: name(*account), reason: "leaves".into(), write_off_to: None }
            }
            Step::Transfer { payer, payee, amount } => {
                let t = Transfer {
                    payer: name(*payer),
                    payee: name(*payee),
                    amount_minor: self.amount(*payer, *amount),
                    memo: String::new(),
                    invoice_ref: None,
                    invoice: None,
                };
                return Some((keys()[payer + 1], op(OpKind::Transfer(t), n, self.now_ms)));
            }
            Step::Charge { offset, admin } => {
                let kind = OpKind::ChargeFees { period: period_of(self.current() + offset) };
                let signer = if *admin { keys()[0] } else { keys()[2] };
                return Some((signer, op(kind, n, self.now_ms)));
            }
        };
        Some((keys()[0], op(kind, n, self.now_ms)))
    }

    fn check(&self, state: &State) {
        let mut sum = 0i64;
        for (i, n) in NAMES.iter().enumerate() {
            let real = state.account(&AccountId::parse(n).unwrap());
            match (self.accounts.get(&i), real) {
                (None, None) => {}
                (Some(m), Some(a)) => {
                    assert_eq!(a.balance_minor, m.balance, "balance of {n}");
                    let status = match a.status {
                        cercle_core::AccountStatus::Active => Status::Active,
                        cercle_core::AccountStatus::Frozen => Status::Frozen,
                        cercle_core::AccountStatus::Closed => Status::Closed,
                    };
                    assert_eq!(status, m.status, "status of {n}");
                    sum += a.balance_minor;
                }
                (m, a) => panic!("account {n}: model {m:?}, state {a:?}"),
            }
        }
        assert_eq!(sum, 0, "the balances sum to zero");
        assert_eq!(state.last_charge().map(|l| month_index(l.period)), self.last, "the last period charged");
        state.check_invariants().unwrap();
    }
}

fn same_fees(a: &FeesStep, b: &FeesStep) -> bool {
    Model::schedule(a) == Model::schedule(b)
}

fn op(kind: OpKind, n: u64, now_ms: u64) -> Operation {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.to_be_bytes());
    Operation { id: OperationId(id), valid_until_ms: now_ms + 1, kind }
}

/// The state rebuilt from its records, as the store's checkpoint holds them.
fn restart(genesis: &Genesis, state: &State) -> State {
    let accounts = state.accounts().map(|a| Account::decode(&a.encode()).unwrap());
    let fees = state.fees().map(|f| FeeSchedule::decode(&f.encode()).unwrap());
    let groups = Groups::decode(&state.groups().encode()).unwrap();
    let last = state.last_charge().map(|l| LastCharge::decode(&l.encode()).unwrap());
    State::from_parts(genesis, accounts, []).with_groups(groups).with_fees(fees).with_last_charge(last)
}

fn run(steps: &[Step]) {
    let genesis = genesis();
    let mut state = State::new(&genesis);
    let mut model = Model { now_ms: START_MS, ..Model::default() };
    let mut accepted: Vec<(Context, PublicKey, Operation)> = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        let Some((signer, op)) = model.operation(step, n as u64) else {
            if let Step::NextMonth = step {
                model.apply(step).unwrap();
                continue;
            }
            let rebuilt = restart(&genesis, &state);
            assert_eq!(rebuilt.digest(), state.digest(), "the checkpoint's records give another digest");
            assert_eq!(rebuilt, state);
            let mut replayed = State::new(&genesis);
            for (ctx, signer, op) in &accepted {
                replayed
                    .apply(ctx, signer, op, ClearingInput::Propose)
                    .expect("an accepted operation replays");
            }
            assert_eq!(replayed.digest(), state.digest(), "the replay from the genesis differs");
            state = rebuilt;
            continue;
        };
        let expected = model.apply(step);
        let before = state.clone();
        let ctx = Context { sequence: accepted.len() as u64 + 1, timestamp_ms: model.now_ms };
        let outcome = state.apply(&ctx, &signer, &op, ClearingInput::Propose);
        let got = outcome.as_ref().map(|_| ()).map_err(|r| r.code() as u16);
        assert_eq!(got, expected.as_ref().map(|_| ()).map_err(|c| *c), "step {n}: {step:?} gave {outcome:?}");
        match outcome {
            Ok(effects) => {
                let net: i128 = effects
                    .balance_changes
                    .iter()
                    .map(|b| i128::from(b.after_minor) - i128::from(b.before_minor))
                    .sum();
                assert_eq!(net, 0, "an entry creates or destroys money");
                for b in &effects.balance_changes {
                    let a = state.account(&b.account).unwrap();
                    let limits = state.limits(a);
                    if b.after_minor < b.before_minor {
                        assert!(b.after_minor >= -limits.credit_limit_minor, "{} below its limit", a.id);
                    }
                    if b.after_minor > b.before_minor {
                        assert!(
                            limits.max_balance_minor.is_none_or(|m| b.after_minor <= m),
                            "{} above its max",
                            a.id
                        );
                    }
                }
                if let Ok(Some(expected)) = &expected {
                    let record = effects.charges.as_ref().expect("a charge records its charges");
                    let got: Expected = record
                        .firms
                        .iter()
                        .map(|f| {
                            let i = NAMES.iter().position(|n| *n == f.account.as_str()).unwrap();
                            (i, f.membership_minor, f.demurrage_minor, f.not_charged.is_none())
                        })
                        .collect();
                    assert_eq!(&got, expected, "step {n}: the charges");
                    // The record survives its section, as a replay and the readers decode it.
                    let section = record.to_section();
                    assert_eq!(&cercle_core::charges::ChargeRecord::from_section(&section).unwrap(), record);
                    for f in &record.firms {
                        assert_eq!(state.account(&f.account).unwrap().balance_minor, f.balance_after_minor);
                    }
                }
                accepted.push((ctx, signer, op));
            }
            Err(_) => assert_eq!(state, before, "a rejected operation changed the state"),
        }
        model.check(&state);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn charges_follow_the_model(steps in prop::collection::vec(step(), 1..70)) {
        run(&steps);
    }
}

/// One fixed path through every rule, so that each is reached whatever the generator does.
#[test]
fn charges_along_a_fixed_path() {
    let register = |account, limit, max, class| Step::Register { account, limit, max, class };
    let fees = |account, class_fees, group_fee, demurrage_bp, above| {
        Step::SetFees(FeesStep { account, class_fees, group_fee, demurrage_bp, above })
    };
    let charge = |offset| Step::Charge { offset, admin: true };
    let pay = |payer, payee, amount| Step::Transfer { payer, payee, amount: Amount::Fixed(amount) };
    let edge = |payer, payee, delta| Step::Transfer { payer, payee, amount: Amount::ChargeEdge(delta) };
    let path = [
        charge(0),
        register(0, 0, Some(2_000), None),
        register(1, 1_000, None, Some(0)),
        register(2, 0, None, Some(1)),
        register(3, 5_000, None, Some(0)),
        charge(0),
        fees(0, [0, 0], None, 0, 0),
        charge(0),
        fees(0, [300, 700], Some(100), 0, 0),
        Step::CreateGroup,
        fees(0, [300, 700], Some(100), 0, 0),
        fees(0, [300, 700], None, 50, 1_000),
        Step::Charge { offset: 0, admin: false },
        charge(1),
        // firm-b (limit 0, nothing) cannot pay its 7.00; firm-a and firm-c pay 3.00.
        pay(1, 2, 600),
        charge(-1),
        charge(-1),
        charge(-2),
        charge(0),
        Step::Restart,
        charge(0),
        Step::NextMonth,
        Step::Assign { account: 3 },
        pay(3, 1, 2_400),
        Step::Freeze { account: 2, frozen: true },
        // firm-c, a group member, is bound by the group's limit: 2,400 + 100 > 2,500 is not.
        fees(0, [300, 700], Some(100), 50, 1_000),
        charge(0),
        Step::NextMonth,
        Step::Freeze { account: 0, frozen: true },
        charge(0),
        Step::Freeze { account: 0, frozen: false },
        // The association's maximum (20.00) stops the charges that would pass it.
        fees(0, [1_200, 700], Some(2_000), 500, 0),
        charge(0),
        Step::Restart,
        Step::NextMonth,
        Step::Close { account: 2 },
        charge(0),
        Step::Restart,
        // Exactly at the limit the charge is paid; one minor unit further it is not.
        fees(0, [300, 700], Some(100), 50, 1_000),
        Step::NextMonth,
        edge(1, 3, 0),
        charge(0),
        Step::NextMonth,
        edge(1, 3, 1),
        charge(0),
    ];
    run(&path);
}
