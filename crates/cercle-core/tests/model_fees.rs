//! A model test of the association's fees in the state machine (`State::apply`): generated
//! sequences of fee schedules (valid, out of bounds, on an unknown or frozen account, by a
//! firm's key, the same schedule twice), registrations, freezes and transfers whose amounts
//! land exactly on the payer's credit limit or the payee's maximum with the levy counted,
//! or one minor unit past it, and restarts (the state rebuilt from its records, as the
//! store's checkpoint holds them, and replayed from the genesis: both give the same
//! digest). The model writes the levy's rule again (half up on the minor unit; split: the
//! odd unit on the payer; none to or from the association's account) and the rejection
//! numbers. After every step: the outcome is the model's; the balances are the model's and
//! sum to zero; every balance a payment moved is within its limits; a rejected operation
//! changed nothing.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use cercle_core::sign::Keypair;
use cercle_core::{
    Account, AccountId, ClearingInput, Context, FeeSchedule, Genesis, LedgerId, LevyOn, OpKind, Operation,
    OperationId, PublicKey, RegisterAccount, SetFees, State, Transfer,
};
use proptest::prelude::*;

const NOT_ADMINISTRATOR: u16 = 10;
const NOT_ACCOUNT_KEY: u16 = 11;
const UNKNOWN_ACCOUNT: u16 = 20;
const ACCOUNT_EXISTS: u16 = 21;
const ACCOUNT_FROZEN: u16 = 22;
const ALREADY_FROZEN: u16 = 23;
const NOT_FROZEN: u16 = 24;
const NOTHING_TO_CHANGE: u16 = 33;
const SELF_TRANSFER: u16 = 41;
const CREDIT_LIMIT_EXCEEDED: u16 = 50;
const MAX_BALANCE_EXCEEDED: u16 = 51;
const FEES_INVALID: u16 = 100;

const NOW_MS: u64 = 1_000_000;
/// Account 0 is the association's (it may also be made a fee account's or not, freely).
const NAMES: [&str; 4] = ["assoc", "firm-a", "firm-b", "firm-c"];
/// Key 0 is the administrator's; key `i + 1` is account `i`'s.
const KEYS: usize = NAMES.len() + 1;

fn keys() -> &'static [PublicKey] {
    static KEYS_CELL: OnceLock<Vec<PublicKey>> = OnceLock::new();
    KEYS_CELL.get_or_init(|| (0..KEYS).map(|i| Keypair::from_seed(&[i as u8 + 1; 32]).public_key()).collect())
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

#[derive(Debug, Clone, Copy)]
enum Amount {
    Fixed(i64),
    /// Exactly what takes the payer to its credit limit with its share of the levy, plus
    /// this many minor units.
    PayerEdge(i64),
    /// Exactly what takes the payee to its maximum with its share of the levy taken off,
    /// plus this many.
    PayeeEdge(i64),
}

#[derive(Debug, Clone)]
enum Step {
    Register { account: usize, limit: i64, max: Option<i64> },
    SetFees { account: usize, bp: u16, on: LevyOn, signer: usize },
    Freeze { account: usize, frozen: bool },
    Transfer { payer: usize, payee: usize, amount: Amount, signer: usize },
    Restart,
}

fn levy_on() -> impl Strategy<Value = LevyOn> {
    prop_oneof![Just(LevyOn::Payer), Just(LevyOn::Payee), Just(LevyOn::Split)]
}

fn step() -> impl Strategy<Value = Step> {
    let account = 0..NAMES.len();
    let bp = prop_oneof![
        Just(0u16),
        Just(1),
        Just(33),
        Just(50),
        Just(100),
        Just(999),
        Just(1_000),
        Just(1_001),
        Just(u16::MAX)
    ];
    let amount = prop_oneof![
        3 => (1i64..5_000).prop_map(Amount::Fixed),
        2 => (-1i64..=1).prop_map(Amount::PayerEdge),
        2 => (-1i64..=1).prop_map(Amount::PayeeEdge),
    ];
    let signer = prop_oneof![4 => Just(usize::MAX), 1 => 0..KEYS];
    prop_oneof![
        3 => (account.clone(), prop_oneof![Just(0i64), Just(1_000), Just(10_000)], prop::option::of(prop_oneof![Just(0i64), Just(2_000), Just(50_000)]))
            .prop_map(|(account, limit, max)| Step::Register { account, limit, max }),
        2 => (account.clone(), bp, levy_on(), prop_oneof![5 => Just(0usize), 1 => 1..KEYS])
            .prop_map(|(account, bp, on, signer)| Step::SetFees { account, bp, on, signer }),
        1 => (account.clone(), any::<bool>()).prop_map(|(account, frozen)| Step::Freeze { account, frozen }),
        8 => (account.clone(), account, amount, signer)
            .prop_map(|(payer, payee, amount, signer)| Step::Transfer { payer, payee, amount, signer }),
        1 => Just(Step::Restart),
    ]
}

#[derive(Debug, Clone)]
struct ModelAccount {
    balance: i64,
    limit: i64,
    max: Option<i64>,
    frozen: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct ModelFees {
    account: usize,
    bp: i64,
    on: LevyOn,
}

#[derive(Debug, Default)]
struct Model {
    accounts: BTreeMap<usize, ModelAccount>,
    fees: Option<ModelFees>,
}

impl Model {
    /// The levy's shares (payer's, payee's), written again from the rule.
    fn levy(&self, payer: usize, payee: usize, amount: i64) -> (i64, i64) {
        let Some(f) = self.fees else { return (0, 0) };
        if payer == f.account || payee == f.account {
            return (0, 0);
        }
        // Half up: the remainder of amount*bp over 10000 at least half of it rounds up.
        let product = i128::from(amount) * i128::from(f.bp);
        let mut total = (product / 10_000) as i64;
        if product % 10_000 >= 5_000 {
            total += 1;
        }
        match f.on {
            LevyOn::Payer => (total, 0),
            LevyOn::Payee => (0, total),
            LevyOn::Split => ((total + 1) / 2, total / 2),
        }
    }

    /// The amount an edge case means, found by search over the model's levy (not by the
    /// code's formula), or 1 when there is nothing to find.
    fn amount(&self, payer: usize, payee: usize, amount: Amount) -> i64 {
        let fits = |a: i64| -> bool {
            let (p, q) = self.levy(payer, payee, a);
            match amount {
                Amount::PayerEdge(_) => {
                    let Some(acc) = self.accounts.get(&payer) else { return true };
                    acc.balance - a - p >= -acc.limit
                }
                Amount::PayeeEdge(_) => {
                    let Some(acc) = self.accounts.get(&payee) else { return true };
                    acc.max.is_none_or(|m| acc.balance + a - q <= m)
                }
                Amount::Fixed(_) => true,
            }
        };
        let delta = match amount {
            Amount::Fixed(a) => return a,
            Amount::PayerEdge(d) | Amount::PayeeEdge(d) => d,
        };
        if !fits(1) {
            return 1;
        }
        // The largest amount that fits, within 1_000_000 minor units (a levy only grows
        // with the amount, so what fits is a prefix).
        let (mut lo, mut hi) = (1i64, 1_000_000i64);
        if fits(hi) {
            return 1;
        }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if fits(mid) { lo = mid } else { hi = mid }
        }
        (lo + delta).max(1)
    }

    fn apply(&mut self, step: &Step, amount_minor: i64) -> Result<(), u16> {
        match step {
            Step::Restart => Ok(()),
            Step::Register { account, limit, max } => {
                if self.accounts.contains_key(account) {
                    return Err(ACCOUNT_EXISTS);
                }
                self.accounts
                    .insert(*account, ModelAccount { balance: 0, limit: *limit, max: *max, frozen: false });
                Ok(())
            }
            Step::Freeze { account, frozen } => {
                let a = self.accounts.get_mut(account).ok_or(UNKNOWN_ACCOUNT)?;
                match (a.frozen, *frozen) {
                    (true, true) => Err(ALREADY_FROZEN),
                    (false, false) => Err(NOT_FROZEN),
                    _ => {
                        a.frozen = *frozen;
                        Ok(())
                    }
                }
            }
            Step::SetFees { account, bp, on, signer } => {
                if *signer != 0 {
                    return Err(NOT_ADMINISTRATOR);
                }
                if *bp > 1_000 {
                    return Err(FEES_INVALID);
                }
                if !self.accounts.contains_key(account) {
                    return Err(UNKNOWN_ACCOUNT);
                }
                let fees = ModelFees { account: *account, bp: i64::from(*bp), on: *on };
                if self.fees == Some(fees) {
                    return Err(NOTHING_TO_CHANGE);
                }
                self.fees = Some(fees);
                Ok(())
            }
            Step::Transfer { payer, payee, signer, .. } => {
                if payer == payee {
                    return Err(SELF_TRANSFER);
                }
                let p = self.accounts.get(payer).ok_or(UNKNOWN_ACCOUNT)?;
                if *signer != payer + 1 {
                    return Err(NOT_ACCOUNT_KEY);
                }
                let q = self.accounts.get(payee).ok_or(UNKNOWN_ACCOUNT)?;
                if p.frozen || q.frozen {
                    return Err(ACCOUNT_FROZEN);
                }
                let (lp, lq) = self.levy(*payer, *payee, amount_minor);
                let payer_after = p.balance - amount_minor - lp;
                let payee_after = q.balance + amount_minor - lq;
                if payer_after < -p.limit {
                    return Err(CREDIT_LIMIT_EXCEEDED);
                }
                if q.max.is_some_and(|m| payee_after > m) {
                    return Err(MAX_BALANCE_EXCEEDED);
                }
                let total = lp + lq;
                if total > 0 {
                    let fee_account = self.fees.unwrap().account;
                    let f = &self.accounts[&fee_account];
                    if f.frozen {
                        return Err(ACCOUNT_FROZEN);
                    }
                    if f.max.is_some_and(|m| f.balance + total > m) {
                        return Err(MAX_BALANCE_EXCEEDED);
                    }
                    self.accounts.get_mut(&fee_account).unwrap().balance += total;
                }
                self.accounts.get_mut(payer).unwrap().balance = payer_after;
                self.accounts.get_mut(payee).unwrap().balance = payee_after;
                Ok(())
            }
        }
    }

    fn operation(&self, step: &Step, amount_minor: i64, n: u64) -> Option<(PublicKey, Operation)> {
        let (signer, kind) = match step {
            Step::Restart => return None,
            Step::Register { account, limit, max } => (
                0,
                OpKind::RegisterAccount(RegisterAccount {
                    account: name(*account),
                    display_name: NAMES[*account].into(),
                    keys: vec![keys()[account + 1]],
                    credit_limit_minor: *limit,
                    max_balance_minor: *max,
                    profile: Default::default(),
                    allow_shared_key: false,
                }),
            ),
            Step::Freeze { account, frozen: true } => {
                (0, OpKind::FreezeAccount { account: name(*account), reason: "dispute".into() })
            }
            Step::Freeze { account, frozen: false } => {
                (0, OpKind::UnfreezeAccount { account: name(*account), reason: "settled".into() })
            }
            Step::SetFees { account, bp, on, signer } => (
                *signer,
                OpKind::SetFees(SetFees {
                    schedule: FeeSchedule {
                        account: name(*account),
                        transfer_levy_bp: *bp,
                        levy_on: *on,
                        membership_minor: BTreeMap::new(),
                        demurrage_bp: 0,
                        demurrage_above_minor: 0,
                        group_membership_minor: BTreeMap::new(),
                    },
                    reason: "general assembly".into(),
                }),
            ),
            Step::Transfer { payer, payee, signer, .. } => (
                *signer,
                OpKind::Transfer(Transfer {
                    payer: name(*payer),
                    payee: name(*payee),
                    amount_minor,
                    memo: String::new(),
                    invoice_ref: None,
                    invoice: None,
                }),
            ),
        };
        let op = Operation { id: OperationId([(n % 251) as u8; 16]), valid_until_ms: NOW_MS + 1, kind };
        Some((keys()[signer], op))
    }

    fn check(&self, state: &State) {
        for (i, n) in NAMES.iter().enumerate() {
            let real = state.account(&AccountId::parse(n).unwrap());
            match (self.accounts.get(&i), real) {
                (None, None) => {}
                (Some(m), Some(a)) => {
                    assert_eq!(a.balance_minor, m.balance, "balance of {n}");
                    assert_eq!(a.status == cercle_core::AccountStatus::Frozen, m.frozen, "status of {n}");
                }
                (m, a) => panic!("account {n}: model {m:?}, state {a:?}"),
            }
        }
        let fees = state.fees().map(|f| ModelFees {
            account: NAMES.iter().position(|n| *n == f.account.as_str()).unwrap(),
            bp: i64::from(f.transfer_levy_bp),
            on: f.levy_on,
        });
        assert_eq!(fees, self.fees, "fee schedule");
        state.check_invariants().unwrap();
    }
}

/// The state rebuilt from its records, as the store's checkpoint holds them.
fn restart(genesis: &Genesis, state: &State) -> State {
    let accounts = state.accounts().map(|a| Account::decode(&a.encode()).unwrap());
    let fees = state.fees().map(|f| FeeSchedule::decode(&f.encode()).unwrap());
    State::from_parts(genesis, accounts, []).with_fees(fees)
}

fn run(steps: &[Step]) {
    let genesis = genesis();
    let mut state = State::new(&genesis);
    let mut model = Model::default();
    let mut accepted: Vec<(Context, PublicKey, Operation)> = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        let amount_minor = match step {
            Step::Transfer { payer, payee, amount, .. } => model.amount(*payer, *payee, *amount),
            _ => 0,
        };
        // A transfer's signer: the payer's own key unless the step names another.
        let step = match step {
            Step::Transfer { payer, payee, amount, signer: usize::MAX } => {
                Step::Transfer { payer: *payer, payee: *payee, amount: *amount, signer: payer + 1 }
            }
            other => other.clone(),
        };
        let Some((signer, op)) = model.operation(&step, amount_minor, n as u64) else {
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
        let expected = model.apply(&step, amount_minor);
        let before = state.clone();
        let ctx = Context { sequence: accepted.len() as u64 + 1, timestamp_ms: NOW_MS };
        let outcome = state.apply(&ctx, &signer, &op, ClearingInput::Propose);
        let got = outcome.as_ref().map(|_| ()).map_err(|r| r.code() as u16);
        assert_eq!(got, expected, "step {n}: {step:?} of {amount_minor} gave {outcome:?}");
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
                    if b.after_minor < b.before_minor {
                        assert!(b.after_minor >= -a.credit_limit_minor, "{} below its limit", a.id);
                    }
                    if b.after_minor > b.before_minor {
                        assert!(
                            a.max_balance_minor.is_none_or(|m| b.after_minor <= m),
                            "{} above its maximum",
                            a.id
                        );
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
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn fees_follow_the_model(steps in prop::collection::vec(step(), 1..60)) {
        run(&steps);
    }
}

/// One fixed path through every rule, so that each is reached whatever the generator does.
#[test]
fn fees_along_a_fixed_path() {
    let register = |account, limit, max| Step::Register { account, limit, max };
    let fees = |account, bp, on| Step::SetFees { account, bp, on, signer: 0 };
    let pay = |payer: usize, payee, amount| Step::Transfer { payer, payee, amount, signer: payer + 1 };
    let path = [
        register(0, 0, None),
        register(1, 1_000, None),
        register(2, 0, Some(2_000)),
        fees(0, 1_001, LevyOn::Payer),
        Step::SetFees { account: 0, bp: 100, on: LevyOn::Split, signer: 2 },
        fees(3, 100, LevyOn::Split),
        fees(0, 100, LevyOn::Split),
        fees(0, 100, LevyOn::Split),
        pay(1, 2, Amount::PayerEdge(1)),
        pay(1, 2, Amount::PayerEdge(0)),
        Step::Restart,
        fees(0, 50, LevyOn::Payee),
        pay(2, 1, Amount::Fixed(101)),
        pay(1, 2, Amount::PayeeEdge(1)),
        pay(1, 2, Amount::PayeeEdge(0)),
        pay(2, 0, Amount::Fixed(100)),
        Step::Freeze { account: 0, frozen: true },
        pay(2, 1, Amount::Fixed(1_000)),
        Step::Freeze { account: 0, frozen: false },
        Step::Restart,
        pay(2, 1, Amount::Fixed(1_000)),
    ];
    run(&path);
}
