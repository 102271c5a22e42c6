//! A model test of rule-based credit limits through the ledger (`Ledger::execute`, the
//! node's and the replay's path): generated sequences of registrations, group assignments,
//! own limits, freezes, transfers (some by the association's fee account, whose payments are
//! no sales), time moving on by days and months, limit rules (valid, out of bounds, on an
//! unknown group, with an empty scope, signed by a firm, bound to the digest of a preview
//! made just before or to another one), and restarts: the state rebuilt from its records (as
//! the store's checkpoint holds them) and replayed from the log by the `Replayer` give the
//! same digest. The model keeps every firm's sales by calendar month (computed here from the
//! days since 1970, independently of the core's calendar), its own limit, whether it follows
//! its group, and writes the rule's arithmetic again. After every step: the outcome (or the
//! rejection number) is the model's; balances are the model's and sum to zero; every firm's
//! binding limit is the model's; an accepted rule's entry records exactly the model's lines;
//! a refused operation changed nothing; an accepted one undone gives the state back.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use cercle_core::sign::Keypair;
use cercle_core::{
    Account, AccountId, ApplyLimitRule, Entry, Envelope, Executed, FeeSchedule, Genesis, GroupLimits,
    GroupName, Groups, Ledger, LedgerId, LevyOn, LimitRule, LimitRuleOutcome, OpKind, Operation, OperationId,
    PublicKey, RegisterAccount, Replayer, SectionTag, SetFees, SetLimits, State, Transfer,
};
use proptest::prelude::*;

const NOT_ADMINISTRATOR: u16 = 10;
const UNKNOWN_ACCOUNT: u16 = 20;
const ACCOUNT_EXISTS: u16 = 21;
const ACCOUNT_FROZEN: u16 = 22;
const ALREADY_FROZEN: u16 = 23;
const NOT_FROZEN: u16 = 24;
const NOTHING_TO_CHANGE: u16 = 33;
const SELF_TRANSFER: u16 = 41;
const CREDIT_LIMIT_EXCEEDED: u16 = 50;
const UNKNOWN_GROUP: u16 = 80;
const LIMIT_RULE_INVALID: u16 = 84;
const LIMIT_RULE_CHANGED: u16 = 85;
const LIMIT_RULE_NO_FIRMS: u16 = 87;

const DAY_MS: u64 = 86_400_000;
/// 2026-01-10T12:00:00Z.
const START_MS: u64 = 1_768_046_400_000;
const GROUP_DEFAULT: i64 = 2_000;
/// Account 0 is the association's fee account, registered at the start; 1..=4 are firms.
const NAMES: [&str; 5] = ["assoc", "firm-a", "firm-b", "firm-c", "firm-d"];
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
        day_offset_minutes: 0,
    }
}

fn name(i: usize) -> AccountId {
    AccountId::parse(NAMES[i]).unwrap()
}

fn group() -> GroupName {
    GroupName::parse("grp").unwrap()
}

/// The calendar month of a timestamp, `year × 12 + month − 1`, by walking the years and
/// months from 1970 (not the core's arithmetic).
fn month_of(timestamp_ms: u64) -> u32 {
    let mut days = timestamp_ms / DAY_MS;
    let mut year = 1970u32;
    loop {
        let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
        let lengths = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        let in_year: u64 = lengths.iter().sum();
        if days >= in_year {
            days -= in_year;
            year += 1;
            continue;
        }
        for (m, len) in lengths.iter().enumerate() {
            if days < *len {
                return year * 12 + m as u32;
            }
            days -= len;
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    Nothing,
    /// The digest of a preview of the same rule made just before, on the same state.
    Preview,
    Other,
}

#[derive(Debug, Clone)]
enum Step {
    Register { account: usize, limit: i64 },
    Assign { account: usize },
    SetLimit { account: usize, limit: i64 },
    Freeze { account: usize, frozen: bool },
    Transfer { payer: usize, payee: usize, amount: i64 },
    Advance { days: u64 },
    Rule { cap: i64, factor_bp: u32, floor: i64, group: u8, expect: Expect, by_admin: bool },
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    let firm = 1..NAMES.len();
    let account = 0..NAMES.len();
    let limit = prop_oneof![Just(0i64), Just(500), Just(5_000), Just(100_000)];
    let expect =
        prop_oneof![2 => Just(Expect::Nothing), 2 => Just(Expect::Preview), 1 => Just(Expect::Other)];
    prop_oneof![
        3 => (firm.clone(), limit.clone()).prop_map(|(account, limit)| Step::Register { account, limit }),
        2 => firm.clone().prop_map(|account| Step::Assign { account }),
        2 => (firm.clone(), limit).prop_map(|(account, limit)| Step::SetLimit { account, limit }),
        1 => (firm.clone(), any::<bool>()).prop_map(|(account, frozen)| Step::Freeze { account, frozen }),
        10 => (account.clone(), account, prop_oneof![1i64..3_000, Just(10_000), Just(100_001)])
            .prop_map(|(payer, payee, amount)| Step::Transfer { payer, payee, amount }),
        3 => prop_oneof![0u64..3, Just(20), Just(31), Just(95), Just(400)].prop_map(|days| Step::Advance { days }),
        4 => (
            prop_oneof![Just(0i64), Just(1_000), Just(3_000), Just(50_000)],
            prop_oneof![Just(0u32), Just(2_500), Just(10_000), Just(100_000), Just(100_001)],
            prop_oneof![3 => Just(0i64), 1 => Just(700), 1 => Just(60_000)],
            prop_oneof![3 => Just(0u8), 2 => Just(1), 1 => Just(2)],
            expect,
            prop_oneof![5 => Just(true), 1 => Just(false)],
        )
            .prop_map(|(cap, factor_bp, floor, group, expect, by_admin)| Step::Rule {
                cap,
                factor_bp,
                floor,
                group,
                expect,
                by_admin
            }),
        1 => Just(Step::Restart),
    ]
}

#[derive(Debug, Clone)]
struct Firm {
    balance: i64,
    own_limit: i64,
    in_group: bool,
    follows_group: bool,
    frozen: bool,
    /// Every month's sales since the start, never forgotten.
    sales: BTreeMap<u32, i64>,
}

impl Firm {
    fn limit(&self) -> i64 {
        if self.in_group && self.follows_group { GROUP_DEFAULT } else { self.own_limit }
    }
}

/// The model's line of a firm under a rule: (account, sales, old limit, old from group, new).
type Line = (usize, i64, i64, bool, i64);

#[derive(Debug)]
struct Model {
    firms: BTreeMap<usize, Firm>,
    now_ms: u64,
}

impl Model {
    fn lines(&self, cap: i64, factor_bp: u32, floor: i64, in_group_only: bool) -> Vec<Line> {
        let month = month_of(self.now_ms);
        self.firms
            .iter()
            .filter(|(i, f)| **i != 0 && !f.frozen && (!in_group_only || f.in_group))
            .map(|(i, f)| {
                let sales: i64 = f.sales.range(month - 12..month).map(|(_, s)| *s).sum();
                let floor = if f.in_group { floor.max(GROUP_DEFAULT) } else { floor };
                let scaled = (i128::from(sales) * i128::from(factor_bp) / 10_000).min(i128::from(cap)) as i64;
                (*i, sales, f.limit(), f.in_group && f.follows_group, scaled.max(floor))
            })
            .collect()
    }

    /// The outcome of `step`: the lines of an accepted rule, or the rejection number.
    fn apply(&mut self, step: &Step) -> Result<Option<Vec<Line>>, u16> {
        match step {
            Step::Restart | Step::Advance { .. } => Ok(None),
            Step::Register { account, limit } => {
                if self.firms.contains_key(account) {
                    return Err(ACCOUNT_EXISTS);
                }
                let firm = Firm {
                    balance: 0,
                    own_limit: *limit,
                    in_group: false,
                    follows_group: false,
                    frozen: false,
                    sales: BTreeMap::new(),
                };
                self.firms.insert(*account, firm);
                Ok(None)
            }
            Step::Assign { account } => {
                let f = self.firms.get_mut(account).ok_or(UNKNOWN_ACCOUNT)?;
                if f.in_group && f.follows_group {
                    return Err(NOTHING_TO_CHANGE);
                }
                (f.in_group, f.follows_group) = (true, true);
                Ok(None)
            }
            Step::SetLimit { account, limit } => {
                let f = self.firms.get_mut(account).ok_or(UNKNOWN_ACCOUNT)?;
                (f.own_limit, f.follows_group) = (*limit, false);
                Ok(None)
            }
            Step::Freeze { account, frozen } => {
                let f = self.firms.get_mut(account).ok_or(UNKNOWN_ACCOUNT)?;
                match (f.frozen, *frozen) {
                    (true, true) => Err(ALREADY_FROZEN),
                    (false, false) => Err(NOT_FROZEN),
                    _ => {
                        f.frozen = *frozen;
                        Ok(None)
                    }
                }
            }
            Step::Transfer { payer, payee, amount } => {
                if payer == payee {
                    return Err(SELF_TRANSFER);
                }
                let p = self.firms.get(payer).ok_or(UNKNOWN_ACCOUNT)?;
                let q = self.firms.get(payee).ok_or(UNKNOWN_ACCOUNT)?;
                if p.frozen || q.frozen {
                    return Err(ACCOUNT_FROZEN);
                }
                if p.balance - amount < -p.limit() {
                    return Err(CREDIT_LIMIT_EXCEEDED);
                }
                self.firms.get_mut(payer).unwrap().balance -= amount;
                let q = self.firms.get_mut(payee).unwrap();
                q.balance += amount;
                // The fee account's payments are no sales.
                if *payer != 0 {
                    *q.sales.entry(month_of(self.now_ms)).or_default() += amount;
                }
                Ok(None)
            }
            Step::Rule { cap, factor_bp, floor, group, expect, by_admin } => {
                if !by_admin {
                    return Err(NOT_ADMINISTRATOR);
                }
                if *factor_bp > 100_000 || floor > cap {
                    return Err(LIMIT_RULE_INVALID);
                }
                if *group == 2 {
                    return Err(UNKNOWN_GROUP);
                }
                let lines = self.lines(*cap, *factor_bp, *floor, *group == 1);
                if lines.is_empty() {
                    return Err(LIMIT_RULE_NO_FIRMS);
                }
                if matches!(expect, Expect::Other) {
                    return Err(LIMIT_RULE_CHANGED);
                }
                for (i, _, old, _, new) in &lines {
                    if old != new {
                        let f = self.firms.get_mut(i).unwrap();
                        (f.own_limit, f.follows_group) = (*new, false);
                    }
                }
                Ok(Some(lines))
            }
        }
    }

    fn check(&self, state: &State) {
        let mut sum = 0i128;
        for (i, n) in NAMES.iter().enumerate() {
            let real = state.account(&AccountId::parse(n).unwrap());
            match (self.firms.get(&i), real) {
                (None, None) => {}
                (Some(m), Some(a)) => {
                    assert_eq!(a.balance_minor, m.balance, "balance of {n}");
                    assert_eq!(state.limits(a).credit_limit_minor, m.limit(), "binding limit of {n}");
                    assert_eq!(
                        a.membership.as_ref().is_some_and(|m| m.credit_from_group),
                        m.in_group && m.follows_group
                    );
                    assert!(a.sales.len() <= cercle_limits::SALES_MONTHS_MAX, "{n} keeps too many months");
                    sum += i128::from(a.balance_minor);
                }
                (m, a) => panic!("account {n}: model {m:?}, state {a:?}"),
            }
        }
        assert_eq!(sum, 0, "balances sum to zero");
        state.check_invariants().unwrap();
    }
}

/// The state rebuilt from its records, as the store's checkpoint holds them.
fn from_records(genesis: &Genesis, state: &State) -> State {
    let accounts = state.accounts().map(|a| Account::decode(&a.encode()).unwrap());
    let fees = state.fees().map(|f| FeeSchedule::decode(&f.encode()).unwrap());
    let groups = Groups::decode(&state.groups().encode()).unwrap();
    State::from_parts(genesis, accounts, []).with_groups(groups).with_fees(fees)
}

struct Run {
    ledger: Ledger,
    entries: Vec<Entry>,
    n: u64,
}

impl Run {
    fn execute(&mut self, now_ms: u64, signer: usize, kind: OpKind) -> Result<Entry, u16> {
        self.n += 1;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.n.to_be_bytes());
        let op = Operation { id: OperationId(id), valid_until_ms: now_ms + 1_000, kind };
        let body = cercle_core::body::encode(&op);
        // Signatures are the node's concern before the ledger: execute does not check them.
        let envelope = Envelope::single(body, keys()[signer], [0; 64]);
        match self.ledger.execute(now_ms, envelope, &op) {
            Ok(Executed::Accepted { entry, .. }) => {
                self.entries.push(entry.clone());
                Ok(entry)
            }
            Ok(Executed::Duplicate { .. }) => panic!("no operation id is used twice"),
            Err(r) => Err(r.code() as u16),
        }
    }
}

fn run(steps: &[Step]) {
    let genesis = genesis();
    let mut run = Run { ledger: Ledger::new(genesis.clone()), entries: Vec::new(), n: 0 };
    run.ledger.start_journal();
    let mut model = Model { firms: BTreeMap::new(), now_ms: START_MS };
    // The association's fee account (no levy: its payments are what matters) and the group.
    model.apply(&Step::Register { account: 0, limit: 1_000_000 }).unwrap();
    run.execute(START_MS, 0, register(0, 1_000_000)).unwrap();
    let fees = OpKind::SetFees(SetFees {
        schedule: FeeSchedule {
            account: name(0),
            transfer_levy_bp: 0,
            levy_on: LevyOn::Payer,
            membership_minor: BTreeMap::new(),
            group_membership_minor: BTreeMap::new(),
            demurrage_bp: 0,
            demurrage_above_minor: 0,
        },
        reason: "general assembly".into(),
    });
    run.execute(START_MS, 0, fees).unwrap();
    let create = OpKind::CreateGroup(GroupLimits {
        group: group(),
        credit_limit_minor: GROUP_DEFAULT,
        max_balance_minor: None,
        reason: "statutes".into(),
    });
    run.execute(START_MS, 0, create).unwrap();

    for (n, step) in steps.iter().enumerate() {
        let now = model.now_ms;
        let (signer, kind) = match step {
            Step::Restart => {
                let state = run.ledger.state();
                let rebuilt = from_records(&genesis, state);
                assert_eq!(rebuilt.digest(), state.digest(), "the checkpoint's records give another digest");
                assert!(
                    rebuilt.accounts().eq(state.accounts()),
                    "the checkpoint's records give other accounts"
                );
                let mut replayer = Replayer::new(genesis.clone(), false);
                for entry in &run.entries {
                    replayer.replay(entry).unwrap_or_else(|e| panic!("the log does not replay: {e}"));
                }
                assert_eq!(replayer.ledger().state().digest(), state.digest(), "the replay differs");
                let head = *run.ledger.head();
                run.ledger = Ledger::from_parts(genesis.clone(), rebuilt, head, run.ledger.ids().clone());
                run.ledger.start_journal();
                continue;
            }
            Step::Advance { days } => {
                model.now_ms += days * DAY_MS + 3_600_000;
                continue;
            }
            Step::Register { account, limit } => (0, register(*account, *limit)),
            Step::Assign { account } => {
                (0, OpKind::AssignGroup { account: name(*account), group: group(), reason: "size".into() })
            }
            Step::SetLimit { account, limit } => (
                0,
                OpKind::SetLimits(SetLimits {
                    account: name(*account),
                    credit_limit_minor: Some(*limit),
                    max_balance_minor: None,
                    reason: "review".into(),
                }),
            ),
            Step::Freeze { account, frozen: true } => {
                (0, OpKind::FreezeAccount { account: name(*account), reason: "dispute".into() })
            }
            Step::Freeze { account, frozen: false } => {
                (0, OpKind::UnfreezeAccount { account: name(*account), reason: "settled".into() })
            }
            Step::Transfer { payer, payee, amount } => (
                payer + 1,
                OpKind::Transfer(Transfer {
                    payer: name(*payer),
                    payee: name(*payee),
                    amount_minor: *amount,
                    memo: String::new(),
                    invoice_ref: None,
                    invoice: None,
                }),
            ),
            Step::Rule { cap, factor_bp, floor, group: g, expect, by_admin } => {
                let rule = LimitRule {
                    cap_minor: *cap,
                    factor_bp: *factor_bp,
                    floor_minor: *floor,
                    group: match g {
                        0 => None,
                        1 => Some(group()),
                        _ => Some(GroupName::parse("nope").unwrap()),
                    },
                };
                let expected_root = match expect {
                    Expect::Nothing => None,
                    // A preview at the same time: what the node's PreviewLimitRule computes.
                    Expect::Preview => {
                        run.ledger.state().limit_rule_outcome(&rule, now).ok().map(|o| o.root())
                    }
                    Expect::Other => Some([0xab; 32]),
                };
                let signer = if *by_admin { 0 } else { 2 };
                (
                    signer,
                    OpKind::ApplyLimitRule(ApplyLimitRule { rule, expected_root, reason: "assembly".into() }),
                )
            }
        };
        let expected = model.apply(step);
        let before = run.ledger.state().clone();
        let mark = run.ledger.mark();
        let mut outcome = run.execute(now, signer, kind.clone());
        // Every third accepted step is undone (as the writer undoes a group it could not
        // make durable), which must give the state back exactly, then done again.
        if let (Ok(entry), 0) = (&outcome, n % 3) {
            let entry = entry.clone();
            run.entries.pop();
            run.ledger.undo_to(mark);
            assert_eq!(
                run.ledger.state().digest(),
                before.digest(),
                "step {n}: undo did not give the state back"
            );
            assert!(
                run.ledger.state().accounts().eq(before.accounts()),
                "step {n}: undo left an account changed"
            );
            run.n -= 1;
            outcome = run.execute(now, signer, kind);
            assert_eq!(outcome.as_ref(), Ok(&entry), "step {n}: done again, another entry");
        }
        match (outcome, expected) {
            (Ok(entry), Ok(lines)) => {
                let recorded =
                    entry.section(SectionTag::LimitRule).map(|s| LimitRuleOutcome::from_section(s).unwrap());
                match (recorded, lines) {
                    (None, None) => {}
                    (Some(outcome), Some(lines)) => {
                        assert_eq!(outcome.month, month_of(now), "step {n}: the entry's month");
                        let got: Vec<Line> = outcome
                            .firms
                            .iter()
                            .map(|f| {
                                let i = NAMES.iter().position(|x| *x == f.account.as_str()).unwrap();
                                (i, f.sales_minor, f.old_limit_minor, f.old_from_group, f.new_limit_minor)
                            })
                            .collect();
                        assert_eq!(got, lines, "step {n}: {step:?}");
                        assert!(entry.balances_after.is_empty(), "a rule moves no money");
                    }
                    (recorded, lines) => panic!("step {n}: section {recorded:?}, model {lines:?}"),
                }
            }
            (Err(code), Err(expected)) => {
                assert_eq!(code, expected, "step {n}: {step:?}");
                assert_eq!(
                    run.ledger.state().digest(),
                    before.digest(),
                    "step {n} was refused but changed the state"
                );
                assert!(
                    run.ledger.state().accounts().eq(before.accounts()),
                    "step {n} was refused but changed an account"
                );
            }
            (got, expected) => panic!("step {n}: {step:?}: got {got:?}, the model says {expected:?}"),
        }
        model.check(run.ledger.state());
    }
}

fn register(account: usize, limit: i64) -> OpKind {
    OpKind::RegisterAccount(RegisterAccount {
        account: name(account),
        display_name: NAMES[account].into(),
        keys: vec![keys()[account + 1]],
        credit_limit_minor: limit,
        max_balance_minor: None,
        profile: Default::default(),
        allow_shared_key: false,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn limit_rules_follow_the_model(steps in prop::collection::vec(step(), 1..70)) {
        run(&steps);
    }
}

/// One fixed path through every rule, so that each is reached whatever the generator does:
/// sales a month apart, the month in progress not counted, a year later forgotten, the fee
/// account's payment not counted, the group default as a floor, a frozen firm left alone.
#[test]
fn limit_rules_along_a_fixed_path() {
    let rule = |cap, factor_bp, floor, group, expect| Step::Rule {
        cap,
        factor_bp,
        floor,
        group,
        expect,
        by_admin: true,
    };
    let pay = |payer, payee, amount| Step::Transfer { payer, payee, amount };
    let path = [
        rule(1_000, 10_000, 0, 0, Expect::Nothing),
        Step::Register { account: 1, limit: 100_000 },
        Step::Register { account: 2, limit: 0 },
        Step::Register { account: 3, limit: 0 },
        Step::Assign { account: 3 },
        pay(1, 2, 4_000),
        pay(0, 3, 5_000),
        rule(3_000, 2_500, 0, 0, Expect::Preview),
        Step::Advance { days: 31 },
        rule(3_000, 2_500, 0, 0, Expect::Other),
        rule(3_000, 2_500, 0, 0, Expect::Preview),
        Step::Restart,
        rule(3_000, 2_500, 700, 1, Expect::Nothing),
        Step::Freeze { account: 2, frozen: true },
        rule(500, 10_000, 0, 0, Expect::Preview),
        Step::Freeze { account: 2, frozen: false },
        rule(3_000, 100_001, 0, 0, Expect::Nothing),
        rule(3_000, 2_500, 3_001, 0, Expect::Nothing),
        rule(3_000, 2_500, 0, 2, Expect::Nothing),
        Step::Rule {
            cap: 3_000,
            factor_bp: 2_500,
            floor: 0,
            group: 0,
            expect: Expect::Nothing,
            by_admin: false,
        },
        Step::Advance { days: 400 },
        rule(3_000, 2_500, 0, 0, Expect::Preview),
        Step::Restart,
    ];
    run(&path);
}
