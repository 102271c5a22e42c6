//! A model test of member groups at the `State` level: generated sequences of group
//! creations and changes, assignments, overrides (`SetLimits`) and returns to the group
//! (`FollowGroupLimits`), registrations, closures and transfers whose amounts land exactly on
//! the payer's binding credit limit or the payee's binding maximum, or one minor unit past
//! it, signed by an administrator or by a firm, valid and refused, and restarts. The model
//! below writes the rules again, independently, with the rejection numbers spelled out: a
//! member's binding limit is its group's unless it set its own.
//!
//! After every step: the outcome (accepted, or the rejection's number) is the model's; every
//! account's balance, binding limits and their sources are the model's; balances sum to
//! zero; a balance a step moved down is within its binding credit limit and one it moved up
//! within its binding maximum; a refused step changed nothing. A restart rebuilds the state
//! from its records (as the store's checkpoint holds them) and from a replay of every
//! accepted operation from the empty state, and both have the same digest.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use cercle_core::sign::Keypair;
use cercle_core::{
    Account, AccountId, ClearingInput, Context, Genesis, GroupLimits, GroupName, Groups, LedgerId,
    LimitSource, OpKind, Operation, OperationId, PublicKey, RegisterAccount, Roles, SetGroupLimits,
    SetLimits, State, Transfer,
};
use proptest::prelude::*;

/// Rejection numbers, as documented (never renumbered).
const NOT_ADMINISTRATOR: u16 = 10;
const UNKNOWN_ACCOUNT: u16 = 20;
const ACCOUNT_EXISTS: u16 = 21;
const ACCOUNT_CLOSED: u16 = 29;
const INVALID_LIMIT: u16 = 32;
const NOTHING_TO_CHANGE: u16 = 33;
const INVALID_AMOUNT: u16 = 40;
const SELF_TRANSFER: u16 = 41;
const CREDIT_LIMIT_EXCEEDED: u16 = 50;
const MAX_BALANCE_EXCEEDED: u16 = 51;
const ACCOUNT_NOT_SETTLED: u16 = 70;
const UNKNOWN_GROUP: u16 = 80;
const GROUP_EXISTS: u16 = 81;
const NOT_IN_GROUP: u16 = 83;

/// `AMOUNT_MAX_MINOR`, written out.
const AMOUNT_MAX_MINOR: i64 = 10_000_000_000_000;

const NAMES: [&str; 3] = ["aaa", "bbb", "ccc"];
const GROUPS: [&str; 3] = ["small", "large", "never"];
/// Key 0 is the administrator's; key 1 + i is account i's.
const KEYS: usize = 4;
const NOW_MS: u64 = 1_000_000;

fn keys() -> &'static [PublicKey] {
    static KEYS_: OnceLock<Vec<PublicKey>> = OnceLock::new();
    KEYS_.get_or_init(|| (0..KEYS).map(|i| Keypair::from_seed(&[i as u8 + 40; 32]).public_key()).collect())
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
        day_offset_minutes: 0,
    }
}

fn name(i: usize) -> AccountId {
    AccountId::parse(NAMES[i]).unwrap()
}

fn group(g: usize) -> GroupName {
    GroupName::parse(GROUPS[g]).unwrap()
}

/// A transfer's amount: fixed, or placed against the payer's binding credit limit or the
/// payee's binding maximum (`delta` 0 lands exactly on it, 1 is one unit past it).
#[derive(Debug, Clone, Copy)]
enum Amount {
    Fixed(i64),
    Headroom(i64),
    ToMaximum(i64),
}

#[derive(Debug, Clone)]
enum Step {
    Register { account: usize, limit: i64, max: Option<i64> },
    CreateGroup { group: usize, limit: i64, max: Option<i64>, admin: bool },
    SetGroup { group: usize, limit: Option<i64>, max: Option<Option<i64>>, admin: bool },
    Assign { account: usize, group: usize, admin: bool },
    Follow { account: usize, credit: bool, max: bool },
    SetLimits { account: usize, limit: Option<i64>, max: Option<Option<i64>> },
    Close { account: usize },
    Transfer { payer: usize, payee: usize, amount: Amount },
    Restart,
}

fn limit() -> impl Strategy<Value = i64> {
    prop_oneof![4 => 0..5_000i64, 1 => Just(-1i64), 1 => Just(AMOUNT_MAX_MINOR), 1 => Just(AMOUNT_MAX_MINOR + 1)]
}

fn max() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![Just(None), (0..8_000i64).prop_map(Some)]
}

fn step() -> impl Strategy<Value = Step> {
    let account = 0..NAMES.len();
    let g = 0..GROUPS.len();
    let admin = prop_oneof![9 => Just(true), 1 => Just(false)];
    prop_oneof![
        2 => (account.clone(), limit(), max()).prop_map(|(account, limit, max)| Step::Register { account, limit, max }),
        2 => (0..2usize, limit(), max(), admin.clone())
            .prop_map(|(group, limit, max, admin)| Step::CreateGroup { group, limit, max, admin }),
        3 => (g.clone(), prop::option::of(limit()), prop::option::of(max()), admin.clone())
            .prop_map(|(group, limit, max, admin)| Step::SetGroup { group, limit, max, admin }),
        3 => (account.clone(), g, admin).prop_map(|(account, group, admin)| Step::Assign { account, group, admin }),
        2 => (account.clone(), any::<bool>(), any::<bool>())
            .prop_map(|(account, credit, max)| Step::Follow { account, credit, max }),
        2 => (account.clone(), prop::option::of(limit()), prop::option::of(max()))
            .prop_map(|(account, limit, max)| Step::SetLimits { account, limit, max }),
        1 => account.clone().prop_map(|account| Step::Close { account }),
        8 => (account.clone(), account, prop_oneof![
                (-1..3_000i64).prop_map(Amount::Fixed),
                (-1..=1i64).prop_map(Amount::Headroom),
                (-1..=1i64).prop_map(Amount::ToMaximum),
            ])
            .prop_map(|(payer, payee, amount)| Step::Transfer { payer, payee, amount }),
        1 => Just(Step::Restart),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelAccount {
    balance: i64,
    own_limit: i64,
    own_max: Option<i64>,
    /// The group, and whether the credit limit and the maximum follow it.
    group: Option<(usize, bool, bool)>,
    closed: bool,
}

#[derive(Debug, Default)]
struct Model {
    accounts: BTreeMap<usize, ModelAccount>,
    /// Each group's credit limit and maximum.
    groups: BTreeMap<usize, (i64, Option<i64>)>,
}

impl Model {
    /// The binding credit limit and maximum of account `i`.
    fn binding(&self, i: usize) -> (i64, Option<i64>) {
        let a = &self.accounts[&i];
        match a.group {
            Some((g, credit, max)) => {
                let (gl, gm) = self.groups[&g];
                (if credit { gl } else { a.own_limit }, if max { gm } else { a.own_max })
            }
            None => (a.own_limit, a.own_max),
        }
    }

    fn valid(limit: i64) -> Result<(), u16> {
        if (0..=AMOUNT_MAX_MINOR).contains(&limit) { Ok(()) } else { Err(INVALID_LIMIT) }
    }

    fn open(&self, i: usize) -> Result<&ModelAccount, u16> {
        match self.accounts.get(&i) {
            None => Err(UNKNOWN_ACCOUNT),
            Some(a) if a.closed => Err(ACCOUNT_CLOSED),
            Some(a) => Ok(a),
        }
    }

    fn amount(&self, payer: usize, payee: usize, amount: Amount) -> i64 {
        let headroom = |i: usize| self.accounts.get(&i).map(|a| a.balance + self.binding(i).0);
        let room = |i: usize| self.accounts.get(&i).and_then(|a| self.binding(i).1.map(|m| m - a.balance));
        match amount {
            Amount::Fixed(a) => a,
            Amount::Headroom(d) => headroom(payer).map_or(1, |h| h + d),
            Amount::ToMaximum(d) => room(payee).map_or(1, |r| r + d),
        }
    }

    fn apply(&mut self, step: &Step, amount: i64) -> Result<(), u16> {
        match *step {
            Step::Register { account, limit, max } => {
                Self::valid(limit)?;
                if let Some(m) = max {
                    Self::valid(m)?;
                }
                match self.accounts.get(&account) {
                    Some(a) if a.closed => return Err(ACCOUNT_CLOSED),
                    Some(_) => return Err(ACCOUNT_EXISTS),
                    None => {}
                }
                let a =
                    ModelAccount { balance: 0, own_limit: limit, own_max: max, group: None, closed: false };
                self.accounts.insert(account, a);
            }
            Step::CreateGroup { group, limit, max, admin } => {
                if !admin {
                    return Err(NOT_ADMINISTRATOR);
                }
                Self::valid(limit)?;
                if let Some(m) = max {
                    Self::valid(m)?;
                }
                if self.groups.contains_key(&group) {
                    return Err(GROUP_EXISTS);
                }
                self.groups.insert(group, (limit, max));
            }
            Step::SetGroup { group, limit, max, admin } => {
                if !admin {
                    return Err(NOT_ADMINISTRATOR);
                }
                if limit.is_none() && max.is_none() {
                    return Err(NOTHING_TO_CHANGE);
                }
                if let Some(l) = limit {
                    Self::valid(l)?;
                }
                if let Some(Some(m)) = max {
                    Self::valid(m)?;
                }
                let g = self.groups.get_mut(&group).ok_or(UNKNOWN_GROUP)?;
                if let Some(l) = limit {
                    g.0 = l;
                }
                if let Some(m) = max {
                    g.1 = m;
                }
            }
            Step::Assign { account, group, admin } => {
                if !admin {
                    return Err(NOT_ADMINISTRATOR);
                }
                let a = self.open(account)?;
                if !self.groups.contains_key(&group) {
                    return Err(UNKNOWN_GROUP);
                }
                if a.group == Some((group, true, true)) {
                    return Err(NOTHING_TO_CHANGE);
                }
                self.accounts.get_mut(&account).unwrap().group = Some((group, true, true));
            }
            Step::Follow { account, credit, max } => {
                if !credit && !max {
                    return Err(NOTHING_TO_CHANGE);
                }
                let a = self.open(account)?;
                let Some((g, c, m)) = a.group else { return Err(NOT_IN_GROUP) };
                if (!credit || c) && (!max || m) {
                    return Err(NOTHING_TO_CHANGE);
                }
                self.accounts.get_mut(&account).unwrap().group = Some((g, c || credit, m || max));
            }
            Step::SetLimits { account, limit, max } => {
                if limit.is_none() && max.is_none() {
                    return Err(NOTHING_TO_CHANGE);
                }
                if let Some(l) = limit {
                    Self::valid(l)?;
                }
                if let Some(Some(m)) = max {
                    Self::valid(m)?;
                }
                self.open(account)?;
                let a = self.accounts.get_mut(&account).unwrap();
                if let Some(l) = limit {
                    a.own_limit = l;
                }
                if let Some(m) = max {
                    a.own_max = m;
                }
                if let Some((_, c, m)) = &mut a.group {
                    *c &= limit.is_none();
                    *m &= max.is_none();
                }
            }
            Step::Close { account } => {
                let a = self.open(account)?;
                if a.balance != 0 {
                    return Err(ACCOUNT_NOT_SETTLED);
                }
                self.accounts.get_mut(&account).unwrap().closed = true;
            }
            Step::Transfer { payer, payee, .. } => {
                if amount <= 0 || amount > AMOUNT_MAX_MINOR {
                    return Err(INVALID_AMOUNT);
                }
                if payer == payee {
                    return Err(SELF_TRANSFER);
                }
                let p = self.accounts.get(&payer).ok_or(UNKNOWN_ACCOUNT)?;
                let q = self.accounts.get(&payee).ok_or(UNKNOWN_ACCOUNT)?;
                if p.closed || q.closed {
                    return Err(ACCOUNT_CLOSED);
                }
                let (payer_after, payee_after) = (p.balance - amount, q.balance + amount);
                if payer_after < -self.binding(payer).0 {
                    return Err(CREDIT_LIMIT_EXCEEDED);
                }
                if self.binding(payee).1.is_some_and(|m| payee_after > m) {
                    return Err(MAX_BALANCE_EXCEEDED);
                }
                self.accounts.get_mut(&payer).unwrap().balance = payer_after;
                self.accounts.get_mut(&payee).unwrap().balance = payee_after;
            }
            Step::Restart => {}
        }
        Ok(())
    }

    /// The operation of `step`, signed by the administrator or the payer (or a firm, for an
    /// administrative act marked `admin: false`).
    fn operation(step: &Step, n: u64, amount: i64) -> Option<(PublicKey, Operation)> {
        let reason = "rulebook".to_string();
        let firm = keys()[1];
        let (signer, kind) = match *step {
            Step::Register { account, limit, max } => (
                keys()[0],
                OpKind::RegisterAccount(RegisterAccount {
                    account: name(account),
                    display_name: NAMES[account].into(),
                    keys: vec![keys()[1 + account]],
                    credit_limit_minor: limit,
                    max_balance_minor: max,
                    profile: Default::default(),
                    allow_shared_key: false,
                }),
            ),
            Step::CreateGroup { group: g, limit, max, admin } => (
                if admin { keys()[0] } else { firm },
                OpKind::CreateGroup(GroupLimits {
                    group: group(g),
                    credit_limit_minor: limit,
                    max_balance_minor: max,
                    reason,
                }),
            ),
            Step::SetGroup { group: g, limit, max, admin } => (
                if admin { keys()[0] } else { firm },
                OpKind::SetGroupLimits(SetGroupLimits {
                    group: group(g),
                    credit_limit_minor: limit,
                    max_balance_minor: max,
                    reason,
                }),
            ),
            Step::Assign { account, group: g, admin } => (
                if admin { keys()[0] } else { firm },
                OpKind::AssignGroup { account: name(account), group: group(g), reason },
            ),
            Step::Follow { account, credit, max } => {
                (keys()[0], OpKind::FollowGroupLimits { account: name(account), credit, max, reason })
            }
            Step::SetLimits { account, limit, max } => (
                keys()[0],
                OpKind::SetLimits(SetLimits {
                    account: name(account),
                    credit_limit_minor: limit,
                    max_balance_minor: max,
                    reason,
                }),
            ),
            Step::Close { account } => {
                (keys()[0], OpKind::CloseAccount { account: name(account), reason, write_off_to: None })
            }
            Step::Transfer { payer, payee, .. } => (
                keys()[1 + payer],
                OpKind::Transfer(Transfer {
                    payer: name(payer),
                    payee: name(payee),
                    amount_minor: amount,
                    memo: String::new(),
                    invoice_ref: None,
                    invoice: None,
                }),
            ),
            Step::Restart => return None,
        };
        let mut id = [0; 16];
        id[..8].copy_from_slice(&n.to_be_bytes());
        Some((signer, Operation { id: OperationId(id), valid_until_ms: NOW_MS + 60_000, kind }))
    }

    /// The state's accounts, binding limits and their sources, and groups, are the model's.
    fn check(&self, state: &State) {
        assert_eq!(state.account_count(), self.accounts.len());
        for (&i, m) in &self.accounts {
            let a = state.account(&name(i)).unwrap();
            assert_eq!(a.balance_minor, m.balance, "balance of {}", NAMES[i]);
            assert_eq!(a.status == cercle_core::AccountStatus::Closed, m.closed);
            let limits = state.limits(a);
            assert_eq!(
                (limits.credit_limit_minor, limits.max_balance_minor),
                self.binding(i),
                "limits of {}",
                NAMES[i]
            );
            let source = |follows: bool| match m.group {
                Some((g, ..)) if follows => LimitSource::Group(group(g)),
                _ => LimitSource::Own,
            };
            let expected = match m.group {
                Some((_, c, x)) => (source(c), source(x)),
                None => (LimitSource::Own, LimitSource::Own),
            };
            assert_eq!(Groups::sources_of(a), expected, "limit sources of {}", NAMES[i]);
        }
        let groups: BTreeMap<usize, (i64, Option<i64>)> = state
            .groups()
            .iter()
            .map(|g| {
                let index = GROUPS.iter().position(|n| *n == g.name.as_str()).unwrap();
                (index, (g.credit_limit_minor, g.max_balance_minor))
            })
            .collect();
        assert_eq!(groups, self.groups);
        state.check_invariants().unwrap();
    }
}

/// The state rebuilt from its records, as the store's checkpoint holds them.
fn from_records(genesis: &Genesis, state: &State) -> State {
    let accounts = state.accounts().map(|a| Account::decode(&a.encode()).unwrap());
    let roles = Roles::decode(&state.roles().encode()).unwrap();
    let groups = Groups::decode(&state.groups().encode()).unwrap();
    State::from_parts(genesis, accounts, []).with_roles(roles).with_groups(groups)
}

/// The state rebuilt by applying every accepted operation again, from the empty state.
fn replayed(genesis: &Genesis, accepted: &[(Context, PublicKey, Operation)]) -> State {
    let mut state = State::new(genesis);
    for (ctx, signer, op) in accepted {
        state.apply(ctx, signer, op, ClearingInput::Recorded(None)).unwrap();
    }
    state
}

fn run(steps: &[Step]) {
    let genesis = genesis();
    let mut state = State::new(&genesis);
    let mut model = Model::default();
    let mut accepted: Vec<(Context, PublicKey, Operation)> = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        let amount = match step {
            Step::Transfer { payer, payee, amount } => model.amount(*payer, *payee, *amount),
            _ => 0,
        };
        let Some((signer, op)) = Model::operation(step, n as u64, amount) else {
            for rebuilt in [from_records(&genesis, &state), replayed(&genesis, &accepted)] {
                assert_eq!(rebuilt.digest(), state.digest());
                assert_eq!(rebuilt, state);
            }
            state = from_records(&genesis, &state);
            continue;
        };
        let expected = model.apply(step, amount);
        let before = state.clone();
        let ctx = Context { sequence: accepted.len() as u64 + 1, timestamp_ms: NOW_MS };
        let outcome = state.apply(&ctx, &signer, &op, ClearingInput::Propose);
        let got = outcome.as_ref().map(|_| ()).map_err(|r| r.code() as u16);
        assert_eq!(got, expected, "step {n}: {step:?} gave {outcome:?}");
        match outcome {
            Ok(effects) => {
                let mut sum = 0i128;
                for b in &effects.balance_changes {
                    sum += i128::from(b.after_minor) - i128::from(b.before_minor);
                    let a = state.account(&b.account).unwrap();
                    let limits = state.limits(a);
                    if b.after_minor < b.before_minor {
                        assert!(b.after_minor >= -limits.credit_limit_minor, "step {n} went below a limit");
                    }
                    if b.after_minor > b.before_minor {
                        assert!(
                            limits.max_balance_minor.is_none_or(|m| b.after_minor <= m),
                            "step {n} went above a maximum"
                        );
                    }
                }
                assert_eq!(sum, 0, "step {n} created or destroyed money");
                accepted.push((ctx, signer, op));
            }
            Err(_) => {
                assert_eq!(state.digest(), before.digest(), "step {n} was refused but changed the state");
                assert_eq!(state, before);
            }
        }
        model.check(&state);
    }
    // The last state, too, is its records' and its replay's.
    assert_eq!(from_records(&genesis, &state).digest(), state.digest());
    assert_eq!(replayed(&genesis, &accepted).digest(), state.digest());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn groups_follow_the_model(steps in prop::collection::vec(step(), 1..80)) {
        run(&steps);
    }
}

/// One path through every rule: a member bound by its group's limits at the exact edges, the
/// group lowered below its debt, an override, the group again, every refusal's number.
#[test]
fn a_fixed_path_through_every_group_rule() {
    use Step::*;
    let steps = vec![
        Register { account: 0, limit: 100, max: None },
        Register { account: 1, limit: 5_000, max: None },
        Assign { account: 0, group: 0, admin: true },
        CreateGroup { group: 0, limit: 1_000, max: Some(2_000), admin: true },
        CreateGroup { group: 0, limit: 1, max: None, admin: true },
        CreateGroup { group: 1, limit: 1, max: None, admin: false },
        Assign { account: 0, group: 0, admin: true },
        Assign { account: 0, group: 0, admin: true },
        Transfer { payer: 0, payee: 1, amount: Amount::Headroom(1) },
        Transfer { payer: 0, payee: 1, amount: Amount::Headroom(0) },
        Transfer { payer: 1, payee: 0, amount: Amount::ToMaximum(1) },
        Transfer { payer: 1, payee: 0, amount: Amount::ToMaximum(0) },
        Transfer { payer: 0, payee: 1, amount: Amount::Fixed(2_900) },
        SetGroup { group: 0, limit: Some(500), max: None, admin: true },
        Transfer { payer: 0, payee: 1, amount: Amount::Fixed(1) },
        Restart,
        SetLimits { account: 0, limit: Some(2_000), max: None },
        Transfer { payer: 0, payee: 1, amount: Amount::Headroom(0) },
        Follow { account: 0, credit: true, max: false },
        Follow { account: 1, credit: true, max: true },
        SetGroup { group: 2, limit: Some(1), max: None, admin: true },
        SetGroup { group: 0, limit: None, max: None, admin: true },
        Close { account: 0 },
        Restart,
    ];
    let expected = [
        Ok(()),
        Ok(()),
        Err(UNKNOWN_GROUP),
        Ok(()),
        Err(GROUP_EXISTS),
        Err(NOT_ADMINISTRATOR),
        Ok(()),
        Err(NOTHING_TO_CHANGE),
        Err(CREDIT_LIMIT_EXCEEDED),
        Ok(()),
        Err(MAX_BALANCE_EXCEEDED),
        Ok(()),
        Ok(()),
        Ok(()),
        Err(CREDIT_LIMIT_EXCEEDED),
        Ok(()),
        Ok(()),
        Ok(()),
        Ok(()),
        Err(NOT_IN_GROUP),
        Err(UNKNOWN_GROUP),
        Err(NOTHING_TO_CHANGE),
        Err(ACCOUNT_NOT_SETTLED),
        Ok(()),
    ];
    let mut model = Model::default();
    for (step, want) in steps.iter().zip(expected) {
        let amount = match step {
            Transfer { payer, payee, amount } => model.amount(*payer, *payee, *amount),
            _ => 0,
        };
        assert_eq!(model.apply(step, amount), want, "{step:?}");
    }
    run(&steps);
}
