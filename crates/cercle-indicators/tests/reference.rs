//! Every indicator against a naive reference written here, independently of the crate's
//! one-pass computation: generated ledgers (firms with profiles, payments, limit changes,
//! freezes, profile changes, invoices and clearing runs), executed by the core's `Ledger`;
//! the reference reads the ledger's own state after each entry and recomputes each
//! measure from its definition (INDICATORS.md), by brute force: balances day by day,
//! payments held for approval (by a payer key above its cap) reserving headroom until
//! approved, declined or expired,
//! strongly connected components by transitive closure, Gini by all pairs.
//!
//! Also: `--public` keeps the two rules of statistical confidentiality on the same ledgers.

use std::collections::{BTreeMap, BTreeSet};

use cercle_core::clearing::propose;
use cercle_core::invoice::InvoiceState;
use cercle_core::sign::Keypair;
use cercle_core::time::DAY_MS;
use cercle_core::{
    AccountId, AccountStatus, AddKey, Entry, Envelope, Executed, Genesis, InvoiceId, InvoiceParties,
    IssueInvoice, KeyRole, Ledger, LedgerId, OpKind, Operation, OperationId, Profile, ProfileChange,
    RegisterAccount, RejectCode, RunClearing, SetLimits, SetProfile, State, Transfer,
};
use cercle_indicators::{Cell, Granularity, GroupBy, Measure, Measures, Query, Ratio, Report, compute};
use proptest::prelude::*;

/// 2026-01-01.
const START_DAY: u32 = 20_454;
const COMMUNES: [Option<&str>; 4] = [Some("34145"), Some("34154"), Some("2A004"), None];
const TERRITORIES: [Option<&str>; 3] = [Some("Pays de Lunel"), Some("Pays ajaccien"), None];
const SECTORS: [Option<&str>; 5] = [Some("10.71"), Some("47"), Some("C"), Some("62.01"), None];
const LIMITS: [i64; 4] = [0, 500, 2_000, 10_000];

#[derive(Debug, Clone)]
enum Step {
    Pay {
        payer: usize,
        payee: usize,
        amount: i64,
    },
    Limit {
        firm: usize,
        limit: usize,
    },
    Freeze {
        firm: usize,
    },
    Unfreeze {
        firm: usize,
    },
    Move {
        firm: usize,
        commune: usize,
    },
    Invoice {
        payee: usize,
        payer: usize,
        amount: i64,
        accept: bool,
    },
    Clear {
        with_credit: bool,
    },
    /// A payment by the firm's payer key: above its cap, held for the owner's approval.
    Hold {
        payer: usize,
        payee: usize,
        amount: i64,
    },
    /// The owner approves or declines one of the firm's held payments, if it has one.
    Settle {
        firm: usize,
        nth: usize,
        approve: bool,
    },
}

/// What each firm's payer key may pay without approval.
const PAYER_CAP_MINOR: i64 = 1_000;

fn step(firms: usize) -> impl Strategy<Value = Step> {
    let f = 0..firms;
    prop_oneof![
        8 => (f.clone(), f.clone(), 1i64..3_000).prop_map(|(payer, payee, amount)| Step::Pay { payer, payee, amount }),
        1 => (f.clone(), 0..LIMITS.len()).prop_map(|(firm, limit)| Step::Limit { firm, limit }),
        1 => f.clone().prop_map(|firm| Step::Freeze { firm }),
        1 => f.clone().prop_map(|firm| Step::Unfreeze { firm }),
        1 => (f.clone(), 0..COMMUNES.len()).prop_map(|(firm, commune)| Step::Move { firm, commune }),
        3 => (f.clone(), f.clone(), 1i64..2_000, any::<bool>())
            .prop_map(|(payee, payer, amount, accept)| Step::Invoice { payee, payer, amount, accept }),
        1 => any::<bool>().prop_map(|with_credit| Step::Clear { with_credit }),
        3 => (f.clone(), f.clone(), 1i64..3_000).prop_map(|(payer, payee, amount)| Step::Hold { payer, payee, amount }),
        2 => (f, 0usize..4, any::<bool>()).prop_map(|(firm, nth, approve)| Step::Settle { firm, nth, approve }),
    ]
}

#[derive(Debug, Clone)]
struct Plan {
    /// Per firm: commune, territory, sector, limit (indexes into the constants).
    firms: Vec<(usize, usize, usize, usize)>,
    /// Each step with the days since the previous one.
    steps: Vec<(u32, Step)>,
    /// The query: days from the start, length in days, granularity, grouping.
    from: u32,
    length: u32,
    by: Granularity,
    group_by: Option<GroupBy>,
}

fn plan() -> impl Strategy<Value = Plan> {
    (3usize..9)
        .prop_flat_map(|n| {
            (
                prop::collection::vec(
                    (0..COMMUNES.len(), 0..TERRITORIES.len(), 0..SECTORS.len(), 0..LIMITS.len()),
                    n,
                ),
                prop::collection::vec((0u32..6, step(n)), 0..120),
                0u32..60,
                0u32..300,
                prop::sample::select(vec![Granularity::Month, Granularity::Quarter, Granularity::All]),
                prop::sample::select(vec![
                    None,
                    Some(GroupBy::Commune),
                    Some(GroupBy::Sector),
                    Some(GroupBy::Territory),
                ]),
            )
        })
        .prop_map(|(firms, steps, from, length, by, group_by)| Plan {
            firms,
            steps,
            from,
            length,
            by,
            group_by,
        })
}

/// The ledger the plan makes, entry by entry, with the state after each entry.
struct Built {
    genesis: Genesis,
    entries: Vec<Entry>,
    /// The state after each entry (`states[i]` after `entries[i]`).
    states: Vec<State>,
    /// Per clearing entry: (sequence, each invoice's payer and what the run cleared of it).
    clearings: BTreeMap<u64, Vec<(AccountId, i64)>>,
}

fn handle(i: usize) -> AccountId {
    AccountId::parse(&format!("firm-{i}")).unwrap()
}

fn build(plan: &Plan) -> Built {
    let admin = Keypair::from_seed(&[1; 32]);
    let firm_key = Keypair::from_seed(&[2; 32]);
    let payer_key = Keypair::from_seed(&[4; 32]);
    let genesis = Genesis {
        ledger_id: LedgerId([7; 16]),
        currency: "CHW".into(),
        exponent: 2,
        admin_keys: vec![admin.public_key()],
        auditor_keys: vec![],
        node_key: Keypair::from_seed(&[3; 32]).public_key(),
        quorum: 1,
        day_offset_minutes: 0,
    };
    let mut ledger = Ledger::new(genesis.clone());
    let mut built = Built {
        genesis: genesis.clone(),
        entries: Vec::new(),
        states: Vec::new(),
        clearings: BTreeMap::new(),
    };
    let mut n = 0u64;
    let mut time_ms = u64::from(START_DAY) * DAY_MS + 8 * 3_600_000;
    let mut invoices: Vec<InvoiceParties> = Vec::new();
    let mut run = |built: &mut Built, ledger: &mut Ledger, time_ms: u64, key: &Keypair, kind: OpKind| {
        n += 1;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&n.to_be_bytes());
        let op = Operation { id: OperationId(id), valid_until_ms: time_ms + DAY_MS, kind };
        let body = cercle_core::body::encode(&op);
        let envelope =
            Envelope::single(body.clone(), key.public_key(), key.sign_op(&genesis.ledger_id, &body));
        match ledger.execute(time_ms, envelope, &op) {
            Ok(Executed::Accepted { entry, effects }) => {
                if let Some((record, _)) = &effects.clearing {
                    let cleared = record
                        .invoices
                        .iter()
                        .map(|c| {
                            let payer = ledger.state().invoice(&c.invoice).unwrap().payer.clone();
                            (payer, c.setoff_minor + c.credit_minor)
                        })
                        .collect();
                    built.clearings.insert(entry.sequence, cleared);
                }
                built.entries.push(entry);
                built.states.push(ledger.state().clone());
                true
            }
            Ok(Executed::Duplicate { .. }) => unreachable!("ids are unique"),
            Err(r) => {
                // Refusals are part of the game (a limit, a frozen firm); nothing is logged.
                assert!(r.code() != RejectCode::Malformed, "{r:?}");
                false
            }
        }
    };
    for (i, &(commune, territory, sector, limit)) in plan.firms.iter().enumerate() {
        let profile = Profile {
            commune: COMMUNES[commune].map(String::from),
            territory: TERRITORIES[territory].map(String::from),
            sector: SECTORS[sector].map(String::from),
            ..Profile::default()
        };
        let kind = OpKind::RegisterAccount(RegisterAccount {
            account: handle(i),
            display_name: format!("Firm {i}"),
            keys: vec![firm_key.public_key()],
            credit_limit_minor: LIMITS[limit],
            max_balance_minor: None,
            profile,
            // Every firm signs with the same key here: only the figures matter.
            allow_shared_key: true,
        });
        assert!(run(&mut built, &mut ledger, time_ms, &admin, kind));
        time_ms += 1_000;
        let payer = OpKind::AddKey(AddKey {
            account: handle(i),
            key: payer_key.public_key(),
            role: KeyRole::Payer {
                per_transfer_cap_minor: PAYER_CAP_MINOR,
                daily_cap_minor: 4 * PAYER_CAP_MINOR,
            },
            allow_shared_key: true,
        });
        assert!(run(&mut built, &mut ledger, time_ms, &firm_key, payer));
        time_ms += 1_000;
    }
    for (days, step) in &plan.steps {
        time_ms += u64::from(*days) * DAY_MS + 60_000;
        let kind = match step {
            Step::Pay { payer, payee, amount } => OpKind::Transfer(Transfer {
                payer: handle(*payer),
                payee: handle(*payee),
                amount_minor: *amount,
                memo: String::new(),
                invoice_ref: None,
                invoice: None,
            }),
            Step::Limit { firm, limit } => OpKind::SetLimits(SetLimits {
                account: handle(*firm),
                credit_limit_minor: Some(LIMITS[*limit]),
                max_balance_minor: None,
                reason: "review".into(),
            }),
            Step::Freeze { firm } => {
                OpKind::FreezeAccount { account: handle(*firm), reason: "dispute".into() }
            }
            Step::Unfreeze { firm } => {
                OpKind::UnfreezeAccount { account: handle(*firm), reason: String::new() }
            }
            Step::Move { firm, commune } => OpKind::SetProfile(SetProfile {
                account: handle(*firm),
                display_name: None,
                profile: ProfileChange {
                    commune: Some(COMMUNES[*commune].map(String::from)),
                    ..ProfileChange::default()
                },
                reason: "moved".into(),
            }),
            Step::Invoice { payee, payer, amount, accept } => {
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&(invoices.len() as u64 + 1).to_be_bytes());
                let parties =
                    InvoiceParties { invoice: InvoiceId(id), payee: handle(*payee), payer: handle(*payer) };
                let issue = OpKind::IssueInvoice(IssueInvoice {
                    invoice: parties.invoice,
                    payee: parties.payee.clone(),
                    payer: parties.payer.clone(),
                    amount_minor: *amount,
                    local_share_percent: 100,
                    due_day: None,
                    reference: String::new(),
                    excluded_from_clearing: false,
                });
                if run(&mut built, &mut ledger, time_ms, &firm_key, issue) {
                    invoices.push(parties.clone());
                    if !accept {
                        continue;
                    }
                    time_ms += 1_000;
                    OpKind::AcceptInvoice(parties)
                } else {
                    continue;
                }
            }
            Step::Clear { with_credit } => {
                OpKind::RunClearing(RunClearing { with_credit: *with_credit, reason: String::new() })
            }
            Step::Hold { payer, payee, amount } => {
                let kind = OpKind::Transfer(Transfer {
                    payer: handle(*payer),
                    payee: handle(*payee),
                    amount_minor: *amount,
                    memo: String::new(),
                    invoice_ref: None,
                    invoice: None,
                });
                run(&mut built, &mut ledger, time_ms, &payer_key, kind);
                continue;
            }
            Step::Settle { firm, nth, approve } => {
                let account = ledger.state().account(&handle(*firm)).unwrap();
                if account.pending.is_empty() {
                    continue;
                }
                let p = &account.pending[nth % account.pending.len()];
                if *approve {
                    OpKind::ApprovePending {
                        account: handle(*firm),
                        pending: p.id,
                        payee: p.payee.clone(),
                        amount_minor: p.amount_minor,
                    }
                } else {
                    OpKind::DeclinePending { account: handle(*firm), pending: p.id, reason: "no".into() }
                }
            }
        };
        let key = match &kind {
            OpKind::Transfer(_)
            | OpKind::AcceptInvoice(_)
            | OpKind::ApprovePending { .. }
            | OpKind::DeclinePending { .. } => &firm_key,
            _ => &admin,
        };
        run(&mut built, &mut ledger, time_ms, key, kind);
    }
    built
}

/// The state at the end of `day`: after every entry of that day or before.
fn state_at_end<'a>(b: &'a Built, day: u32, empty: &'a State) -> &'a State {
    let end_ms = (u64::from(day) + 1) * DAY_MS;
    let count = b.entries.partition_point(|e| e.timestamp_ms < end_ms);
    if count == 0 { empty } else { &b.states[count - 1] }
}

/// The payment an entry made, if it made one: a transfer that moved money (one held for
/// approval moved none), or the approval of a held one, as of its approval.
fn payment(e: &Entry) -> Option<Transfer> {
    match cercle_core::body::decode(&e.envelope.body).unwrap().kind {
        OpKind::Transfer(t) if !e.balances_after.is_empty() => Some(t),
        OpKind::ApprovePending { account, payee, amount_minor, .. } => Some(Transfer {
            payer: account,
            payee,
            amount_minor,
            memo: String::new(),
            invoice_ref: None,
            invoice: None,
        }),
        _ => None,
    }
}

fn day_of(e: &Entry) -> u32 {
    (e.timestamp_ms / DAY_MS) as u32
}

fn ratio(num: i128, den: i128) -> Cell {
    if den == 0 { Cell::NoData } else { Cell::Ratio(Ratio { num, den }) }
}

/// Every measure of the firms `members` over `[from, to]`, from the definitions.
fn reference(b: &Built, from: u32, to: u32, members: &BTreeSet<AccountId>) -> Measures {
    let empty = State::new(&b.genesis);
    let end = state_at_end(b, to, &empty);
    let end_ms = (u64::from(to) + 1) * DAY_MS;
    let in_period = |e: &&Entry| (from..=to).contains(&day_of(e));
    let transfers: Vec<(u64, Transfer)> =
        b.entries.iter().filter(in_period).filter_map(|e| payment(e).map(|t| (e.timestamp_ms, t))).collect();
    let all: Vec<AccountId> = end.accounts().map(|a| a.id.clone()).collect();
    let of = |id: &AccountId| members.contains(id);
    let mut m = Measures::default();
    let mine: Vec<&(u64, Transfer)> = transfers.iter().filter(|(_, t)| of(&t.payer)).collect();
    let turnover: i128 = mine.iter().map(|(_, t)| i128::from(t.amount_minor)).sum();
    let firms = members.len() as i128;
    m.set(Measure::Transfers, Cell::Int(mine.len() as i128));
    m.set(Measure::TurnoverMinor, Cell::Int(turnover));
    let cleared: i128 = b
        .clearings
        .iter()
        .filter(|(seq, _)| in_period(&&b.entries[**seq as usize - 1]))
        .flat_map(|(_, list)| list)
        .filter(|(payer, _)| of(payer))
        .map(|(_, amount)| i128::from(*amount))
        .sum();
    m.set(Measure::ClearedMinor, Cell::Int(cleared));
    m.set(Measure::Firms, Cell::Int(firms));
    let volume = |id: &AccountId| -> i128 {
        transfers
            .iter()
            .filter(|(_, t)| &t.payer == id || &t.payee == id)
            .map(|(_, t)| i128::from(t.amount_minor))
            .sum()
    };
    let active =
        members.iter().filter(|id| transfers.iter().any(|(_, t)| &t.payer == *id || &t.payee == *id)).count();
    m.set(Measure::ActiveFirms, Cell::Int(active as i128));
    m.set(Measure::ActiveShare, ratio(active as i128, firms));
    // Velocity: turnover over the mean, over the period's days, of the positive balances at
    // the end of each day.
    let days = i128::from(to - from + 1);
    let mut positive_sum = 0i128;
    for day in from..=to {
        let s = state_at_end(b, day, &empty);
        positive_sum +=
            s.accounts().filter(|a| of(&a.id)).map(|a| i128::from(a.balance_minor.max(0))).sum::<i128>();
    }
    m.set(Measure::Velocity, ratio(turnover * days, positive_sum));
    // Gini over all pairs: sum |xi - xj| / (2 n^2 mean) = sum |xi - xj| / (2 n total).
    let volumes: Vec<i128> = members.iter().map(volume).collect();
    let total: i128 = volumes.iter().sum();
    let pairs: i128 = volumes.iter().flat_map(|x| volumes.iter().map(move |y| (x - y).abs())).sum();
    m.set(Measure::GiniTurnover, ratio(pairs, 2 * firms * total));
    let mut sorted = volumes.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let k = (members.len().div_ceil(10)).max(1);
    m.set(Measure::TopDecileShare, ratio(sorted.iter().take(k).sum(), total));
    let at_end: Vec<_> = end.accounts().filter(|a| of(&a.id)).collect();
    // Used credit: the debt plus what live pending payments reserve, on the last millisecond.
    let used = |a: &cercle_core::Account, now_ms: u64| {
        (i128::from(a.reserved_minor(now_ms)) - i128::from(a.balance_minor)).max(0)
    };
    let used_sum: i128 = at_end.iter().map(|a| used(a, end_ms - 1)).sum();
    let limits: i128 = at_end.iter().map(|a| i128::from(a.credit_limit_minor)).sum();
    m.set(Measure::CreditUse, ratio(used_sum, limits));
    // Stuck debtors: using 80% of the limit or more, judged after each entry at its time,
    // continuously for 90 days at the end.
    let (mut debtors, mut debtors_minor, mut creditors, mut creditors_minor) = (0, 0, 0, 0);
    for a in &at_end {
        let mut since: Option<u64> = None;
        for (e, s) in b.entries.iter().zip(&b.states).filter(|(e, _)| e.timestamp_ms < end_ms) {
            let Some(x) = s.account(&a.id) else { continue };
            let d = used(x, e.timestamp_ms);
            let stuck = d > 0 && d * 100 >= 80 * i128::from(x.credit_limit_minor);
            since = match (stuck, since) {
                (true, None) => Some(e.timestamp_ms),
                (true, s) => s,
                (false, _) => None,
            };
        }
        if since.is_some_and(|t| end_ms - t >= 90 * DAY_MS) {
            debtors += 1;
            debtors_minor += -i128::from(a.balance_minor.min(0));
        }
        let registered = b.entries[a.registered_at_sequence as usize - 1].timestamp_ms;
        let last_paid = b
            .entries
            .iter()
            .filter(|e| e.timestamp_ms < end_ms)
            .filter(|e| payment(e).is_some_and(|t| t.payer == a.id))
            .map(|e| e.timestamp_ms)
            .max()
            .unwrap_or(registered);
        if a.balance_minor > 0 && end_ms - last_paid >= 90 * DAY_MS {
            creditors += 1;
            creditors_minor += i128::from(a.balance_minor);
        }
    }
    m.set(Measure::StuckDebtors, Cell::Int(debtors));
    m.set(Measure::StuckDebtorsMinor, Cell::Int(debtors_minor));
    m.set(Measure::StuckCreditors, Cell::Int(creditors));
    m.set(Measure::StuckCreditorsMinor, Cell::Int(creditors_minor));
    // The circular core: reachability by transitive closure over every firm; the largest
    // component by firms, then by the payments inside it, then by its smallest handle.
    let n = all.len();
    let index = |id: &AccountId| all.iter().position(|x| x == id).unwrap();
    let mut reach = vec![vec![false; n]; n];
    for (i, row) in reach.iter_mut().enumerate() {
        row[i] = true;
    }
    for (_, t) in &transfers {
        reach[index(&t.payer)][index(&t.payee)] = true;
    }
    for k in 0..n {
        for i in 0..n {
            for j in 0..n {
                if reach[i][k] && reach[k][j] {
                    reach[i][j] = true;
                }
            }
        }
    }
    let component = |i: usize| -> Vec<usize> { (0..n).filter(|&j| reach[i][j] && reach[j][i]).collect() };
    let inside = |c: &[usize]| -> i128 {
        transfers
            .iter()
            .filter(|(_, t)| c.contains(&index(&t.payer)) && c.contains(&index(&t.payee)))
            .map(|(_, t)| i128::from(t.amount_minor))
            .sum()
    };
    let core = (0..n).map(component).max_by(|a, b| {
        (a.len(), inside(a)).cmp(&(b.len(), inside(b))).then_with(|| all[b[0]].cmp(&all[a[0]]))
    });
    let paid_where = |pred: &dyn Fn(&Transfer) -> bool| -> i128 {
        mine.iter().filter(|(_, t)| pred(t)).map(|(_, t)| i128::from(t.amount_minor)).sum()
    };
    let core = core.unwrap_or_default();
    m.set(
        Measure::SccShare,
        ratio(paid_where(&|t| core.contains(&index(&t.payer)) && core.contains(&index(&t.payee))), turnover),
    );
    m.set(
        Measure::Reciprocity,
        ratio(
            paid_where(&|t| transfers.iter().any(|(_, u)| u.payer == t.payee && u.payee == t.payer)),
            turnover,
        ),
    );
    let profile = |id: &AccountId| end.account(id).unwrap().profile.clone();
    m.set(
        Measure::LocalShare,
        ratio(
            paid_where(&|t| {
                let (a, b) = (profile(&t.payer), profile(&t.payee));
                a.commune.is_some() && a.commune == b.commune
            }),
            turnover,
        ),
    );
    m.set(
        Measure::TerritoryShare,
        ratio(
            paid_where(&|t| {
                let (a, b) = (profile(&t.payer), profile(&t.payee));
                a.territory.is_some() && a.territory == b.territory
            }),
            turnover,
        ),
    );
    // Open obligations at the end: accepted, something open, not excluded, both firms
    // active. Net internal debt: the members' positive net positions over all of them.
    let active_firm = |id: &AccountId| end.account(id).is_some_and(|a| a.status == AccountStatus::Active);
    let obligations: Vec<_> = end
        .invoices()
        .filter(|i| matches!(i.state, InvoiceState::Accepted | InvoiceState::PartlySettled))
        .filter(|i| {
            i.open_minor() > 0 && !i.excluded_from_clearing && active_firm(&i.payer) && active_firm(&i.payee)
        })
        .collect();
    let net = |id: &AccountId| -> i128 {
        obligations
            .iter()
            .map(|i| {
                let open = i128::from(i.open_minor());
                if &i.payee == id {
                    open
                } else if &i.payer == id {
                    -open
                } else {
                    0
                }
            })
            .sum()
    };
    m.set(Measure::NidMinor, Cell::Int(members.iter().map(|id| net(id).max(0)).sum()));
    // What set-off would clear among the members: the ledger's own proposal on a state of
    // the members and the invoices between them.
    let accounts: Vec<_> = end.accounts().filter(|a| of(&a.id)).cloned().collect();
    let invoices: Vec<_> = end.invoices().filter(|i| of(&i.payer) && of(&i.payee)).cloned().collect();
    let scoped = State::from_parts(&b.genesis, accounts, invoices);
    let clearable = match propose(&scoped, false) {
        Ok((_, summary)) => summary.setoff_minor,
        Err(r) if r.code() == RejectCode::NothingToClear => 0,
        Err(r) => panic!("{r:?}"),
    };
    m.set(Measure::ClearableMinor, Cell::Int(clearable));
    m
}

fn same(a: Cell, b: Cell) -> bool {
    match (a, b) {
        (Cell::Ratio(x), Cell::Ratio(y)) => x.same_as(y),
        (x, y) => x == y,
    }
}

fn check_measures(what: &str, got: &Measures, expected: &Measures) -> Result<(), TestCaseError> {
    for m in Measure::ALL {
        prop_assert!(
            same(got.get(m), expected.get(m)),
            "{what}: {}: got {:?}, expected {:?}",
            m.name(),
            got.get(m),
            expected.get(m)
        );
    }
    Ok(())
}

fn query(plan: &Plan, public: bool) -> Query {
    let from = START_DAY + plan.from;
    Query::new(from, from + plan.length, plan.by, plan.group_by, public).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn every_indicator_matches_its_definition(plan in plan()) {
        let b = build(&plan);
        let q = query(&plan, false);
        let report = compute(&q, &b.entries).unwrap();
        let empty = State::new(&b.genesis);
        for period in &report.periods {
            let end = state_at_end(&b, period.to_day, &empty);
            let everyone: BTreeSet<AccountId> = end.accounts().map(|a| a.id.clone()).collect();
            let what = format!("{} to {}", period.from_day, period.to_day);
            check_measures(&what, &period.totals, &reference(&b, period.from_day, period.to_day, &everyone))?;
            let Some(by) = q.group_by else {
                prop_assert!(period.groups.is_empty() && period.flows.is_empty());
                continue;
            };
            let mut groups: BTreeMap<Option<String>, BTreeSet<AccountId>> = BTreeMap::new();
            for a in end.accounts() {
                groups.entry(by.key(&a.profile)).or_default().insert(a.id.clone());
            }
            let keys: Vec<Option<String>> = period.groups.iter().map(|g| g.group.clone()).collect();
            let mut expected_keys: Vec<Option<String>> = groups.keys().cloned().collect();
            expected_keys.sort_by(cercle_indicators::group_order);
            prop_assert_eq!(keys, expected_keys);
            for g in &period.groups {
                let members = &groups[&g.group];
                check_measures(&format!("{what}, group {:?}", g.group), &g.measures, &reference(&b, period.from_day, period.to_day, members))?;
            }
            // The flows: what the firms of one group paid those of another.
            let mut flows: BTreeMap<(Option<String>, Option<String>), i128> = BTreeMap::new();
            for e in b.entries.iter().filter(|e| (period.from_day..=period.to_day).contains(&day_of(e))) {
                if let Some(t) = payment(e) {
                    let key = |id: &AccountId| by.key(&end.account(id).unwrap().profile);
                    *flows.entry((key(&t.payer), key(&t.payee))).or_insert(0) += i128::from(t.amount_minor);
                }
            }
            let got: BTreeMap<(Option<String>, Option<String>), i128> = period
                .flows
                .iter()
                .map(|f| ((f.from_group.clone(), f.to_group.clone()), f.turnover_minor.int().unwrap()))
                .collect();
            prop_assert_eq!(got, flows);
        }
        // Entries fed one at a time give the same report as the whole log at once.
        let mut c = cercle_indicators::Computer::new(&q);
        for e in &b.entries {
            c.push(e).unwrap();
        }
        prop_assert_eq!(c.finish().unwrap(), report);
    }

    #[test]
    fn public_reports_keep_statistical_confidentiality(plan in plan()) {
        let b = build(&plan);
        let open = compute(&query(&plan, false), &b.entries).unwrap();
        let public = compute(&query(&plan, true), &b.entries).unwrap();
        check_public(&b, &open, &public)?;
    }
}

/// The amounts that the primary rule protects, with the measure that carries each.
const AMOUNTS: [Measure; 6] = [
    Measure::TurnoverMinor,
    Measure::ClearedMinor,
    Measure::StuckDebtorsMinor,
    Measure::StuckCreditorsMinor,
    Measure::NidMinor,
    Measure::Transfers,
];

/// Each firm's measures alone, from the definitions: its contributions to a scope's amounts.
fn singles(b: &Built, from: u32, to: u32, members: &BTreeSet<AccountId>) -> Vec<Measures> {
    members.iter().map(|id| reference(b, from, to, &[id.clone()].into())).collect()
}

fn check_public(b: &Built, open: &Report, public: &Report) -> Result<(), TestCaseError> {
    prop_assert_eq!(open.periods.len(), public.periods.len());
    let empty = State::new(&b.genesis);
    for (o, p) in open.periods.iter().zip(&public.periods) {
        let end = state_at_end(b, p.to_day, &empty);
        let mut scopes: Vec<(BTreeSet<AccountId>, &Measures, &Measures)> =
            vec![(end.accounts().map(|a| a.id.clone()).collect(), &o.totals, &p.totals)];
        if let Some(by) = public.query.group_by {
            for (go, gp) in o.groups.iter().zip(&p.groups) {
                let members =
                    end.accounts().filter(|a| by.key(&a.profile) == gp.group).map(|a| a.id.clone()).collect();
                scopes.push((members, &go.measures, &gp.measures));
            }
        }
        for (members, o_m, p_m) in &scopes {
            for m in Measure::ALL {
                let cell = p_m.get(m);
                // Never a zero in place of a suppressed value: a cell is the open value or suppressed.
                prop_assert!(
                    cell.is_suppressed() || same(cell, o_m.get(m)),
                    "{}: {:?} vs {:?}",
                    m.name(),
                    cell,
                    o_m.get(m)
                );
            }
            // Primary rule: a published amount has 3 firms or more and no firm with 85% or more.
            if members.len() < 3 {
                for m in AMOUNTS {
                    prop_assert!(
                        p_m.get(m).is_suppressed(),
                        "{} of a scope of {} firms is published",
                        m.name(),
                        members.len()
                    );
                }
                continue;
            }
            let alone = singles(b, p.from_day, p.to_day, members);
            for m in AMOUNTS.into_iter().filter(|m| *m != Measure::Transfers) {
                let Some(value) = p_m.get(m).int() else { continue };
                if value == 0 {
                    continue;
                }
                let parts: Vec<i128> =
                    alone.iter().filter_map(|x| x.get(m).int()).filter(|&x| x != 0).collect();
                let largest = parts.iter().copied().max().unwrap_or(0);
                prop_assert!(
                    parts.len() >= 3,
                    "{} = {} is published with {} firms",
                    m.name(),
                    value,
                    parts.len()
                );
                prop_assert!(
                    largest * 100 < 85 * value,
                    "{} = {} is published with one firm at {}",
                    m.name(),
                    value,
                    largest
                );
            }
        }
        // Secondary rule: where the groups add up to the circuit, a suppressed group's amount
        // cannot be the published total less the other, published, groups.
        if public.query.group_by.is_some() && !p.totals.get(Measure::TurnoverMinor).is_suppressed() {
            for m in AMOUNTS {
                let suppressed = p.groups.iter().filter(|g| g.measures.get(m).is_suppressed()).count();
                prop_assert!(
                    suppressed != 1 || p.totals.get(m).is_suppressed(),
                    "{}: one suppressed group and a published total",
                    m.name()
                );
            }
            for g in &p.groups {
                if g.measures.get(Measure::TurnoverMinor).is_suppressed() {
                    continue;
                }
                let out: Vec<_> = p.flows.iter().filter(|f| f.from_group == g.group).collect();
                let hidden = out.iter().filter(|f| f.turnover_minor.is_suppressed()).count();
                prop_assert!(
                    hidden != 1,
                    "group {:?}: a single suppressed flow under a published turnover",
                    g.group
                );
            }
        }
    }
    Ok(())
}

/// A period with no activity: counts and amounts are zeros, ratios "no data" (`null` in
/// JSON, empty in CSV), never NaN; and a period before any firm exists likewise.
#[test]
fn a_period_without_activity_gives_zeros_and_no_data() {
    let plan = Plan {
        firms: vec![(0, 0, 0, 1), (1, 1, 1, 1), (2, 2, 2, 1)],
        steps: vec![],
        from: 0,
        length: 0,
        by: Granularity::Month,
        group_by: None,
    };
    let b = build(&plan);
    for (from, to) in [(START_DAY - 40, START_DAY - 1), (START_DAY + 100, START_DAY + 130)] {
        let q = Query::new(from, to, Granularity::All, Some(GroupBy::Commune), false).unwrap();
        let report = compute(&q, &b.entries).unwrap();
        let totals = &report.periods[0].totals;
        for m in [Measure::Transfers, Measure::TurnoverMinor, Measure::ActiveFirms, Measure::NidMinor] {
            assert_eq!(totals.get(m), Cell::Int(0), "{}", m.name());
        }
        for m in [Measure::Velocity, Measure::GiniTurnover, Measure::SccShare, Measure::LocalShare] {
            assert_eq!(totals.get(m), Cell::NoData, "{}", m.name());
        }
        let json = serde_json::Value::Object(cercle_indicators::render::json(&report, "CHW", 2)).to_string();
        assert!(!json.contains("NaN") && json.contains("\"velocity\":null"), "{json}");
        let csv = cercle_indicators::render::csv(&report);
        assert!(!csv.contains("NaN"), "{csv}");
    }
    let before = compute(
        &Query::new(START_DAY - 40, START_DAY - 1, Granularity::All, None, false).unwrap(),
        &b.entries,
    )
    .unwrap();
    assert_eq!(before.periods[0].totals.get(Measure::Firms), Cell::Int(0));
    assert_eq!(before.periods[0].totals.get(Measure::ActiveShare), Cell::NoData);
}
