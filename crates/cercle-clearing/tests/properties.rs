//! Property tests: the solver against an independent exact reference on small networks, the
//! invariants of both stages, and mutations of optimal solutions that the checks must reject.
//!
//! The reference is cycle cancelling: start from the zero circulation, find any negative-cost
//! cycle in the residual network by Bellman-Ford, push its bottleneck around it, repeat until
//! there is none. It shares no code with the solver and is obviously exact (a circulation with
//! no negative residual cycle is optimal), but takes time exponential in the amounts.

use cercle_clearing::circulation::{Arc, Circulation, check_circulation, min_cost_circulation};
use cercle_clearing::{
    ArcRef, CertificateError, Headroom, NodeRef, Pair, SetOff, WithCredit, aggregate, check_setoff,
    check_with_credit, clear, net_positions, solve_setoff, solve_with_credit,
};
use proptest::prelude::*;

/// The minimum cost of a circulation, by cycle cancelling.
fn reference_min_cost(node_count: usize, arcs: &[Arc]) -> i128 {
    let mut flow = vec![0i128; arcs.len()];
    loop {
        // Residual arcs: (from, to, cost, arc, forward).
        let mut residual = Vec::new();
        for (i, a) in arcs.iter().enumerate() {
            if flow[i] < a.capacity {
                residual.push((a.tail as usize, a.head as usize, i128::from(a.cost), i, true));
            }
            if flow[i] > 0 {
                residual.push((a.head as usize, a.tail as usize, -i128::from(a.cost), i, false));
            }
        }
        // Bellman-Ford from a virtual source at distance 0 to every node; a relaxation in round n
        // means a negative cycle, found by walking predecessors n times and then around.
        let mut dist = vec![0i128; node_count];
        let mut pred: Vec<Option<usize>> = vec![None; node_count];
        let mut last_relaxed = None;
        for _ in 0..node_count {
            last_relaxed = None;
            for (k, &(from, to, cost, _, _)) in residual.iter().enumerate() {
                if dist[from] + cost < dist[to] {
                    dist[to] = dist[from] + cost;
                    pred[to] = Some(k);
                    last_relaxed = Some(to);
                }
            }
        }
        let Some(mut v) = last_relaxed else {
            return arcs.iter().zip(&flow).map(|(a, f)| i128::from(a.cost) * f).sum();
        };
        for _ in 0..node_count {
            v = residual[pred[v].expect("relaxed node has a predecessor")].0;
        }
        let mut cycle = Vec::new();
        let mut u = v;
        loop {
            let k = pred[u].expect("cycle node has a predecessor");
            cycle.push(k);
            u = residual[k].0;
            if u == v {
                break;
            }
        }
        let bottleneck = cycle
            .iter()
            .map(|&k| {
                let (_, _, _, i, forward) = residual[k];
                if forward { arcs[i].capacity - flow[i] } else { flow[i] }
            })
            .min()
            .expect("a cycle has arcs");
        for &k in &cycle {
            let (_, _, _, i, forward) = residual[k];
            flow[i] += if forward { bottleneck } else { -bottleneck };
        }
    }
}

fn pair_arcs(pairs: &[Pair]) -> Vec<Arc> {
    pairs.iter().map(|p| Arc { tail: p.debtor, head: p.creditor, capacity: p.amount, cost: -1 }).collect()
}

/// The stage 2 network as the documentation describes it, built here independently.
fn credit_arcs(pairs: &[Pair], headroom: &[Headroom]) -> Vec<Arc> {
    let circuit = headroom.len() as u32;
    let mut arcs = pair_arcs(pairs);
    for (f, h) in headroom.iter().enumerate() {
        arcs.push(Arc { tail: circuit, head: f as u32, capacity: h.pay_max, cost: 0 });
        arcs.push(Arc { tail: f as u32, head: circuit, capacity: h.receive_max, cost: 0 });
    }
    arcs
}

fn network() -> impl Strategy<Value = (u32, Vec<(u32, u32, i64)>)> {
    (1u32..=8).prop_flat_map(|firms| {
        (Just(firms), prop::collection::vec((0..firms, 0..firms, 1i64..=20), 0..=15)).prop_map(
            |(firms, obligations)| (firms, obligations.into_iter().filter(|&(d, c, _)| d != c).collect()),
        )
    })
}

fn network_with_headroom() -> impl Strategy<Value = (u32, Vec<(u32, u32, i64)>, Vec<Headroom>)> {
    network().prop_flat_map(|(firms, obligations)| {
        let headroom = prop::collection::vec(
            (0i128..=12, 0i128..=12).prop_map(|(pay_max, receive_max)| Headroom { pay_max, receive_max }),
            firms as usize,
        );
        (Just(firms), Just(obligations), headroom)
    })
}

/// A cycle of arcs with positive flow, as arc indices: a nonzero circulation always has one.
fn positive_cycle(node_count: usize, arcs: &[Arc], flow: &[i128]) -> Option<Vec<usize>> {
    let start = flow.iter().position(|&f| f > 0)?;
    let mut seen_at = vec![None; node_count];
    let mut path = vec![start];
    let mut v = arcs[start].head as usize;
    seen_at[arcs[start].tail as usize] = Some(0);
    loop {
        if let Some(i) = seen_at[v] {
            return Some(path[i..].to_vec());
        }
        seen_at[v] = Some(path.len());
        // Conservation: flow came into v, so some flow leaves it.
        let next = arcs.iter().zip(flow).position(|(a, &f)| a.tail as usize == v && f > 0)?;
        path.push(next);
        v = arcs[next].head as usize;
    }
}

/// The potentials do not prove the flow optimal: the error of a feasible but worse solution.
fn not_optimal(e: &CertificateError) -> bool {
    matches!(
        e,
        CertificateError::NotOptimalBelowCapacity { .. } | CertificateError::NotOptimalAboveZero { .. }
    )
}

/// The arc a not-optimal error names.
fn not_optimal_arc(e: &CertificateError) -> Option<ArcRef> {
    match *e {
        CertificateError::NotOptimalBelowCapacity { arc, .. }
        | CertificateError::NotOptimalAboveZero { arc, .. } => Some(arc),
        _ => None,
    }
}

/// What the stage-2 check must say when firm `f`'s payment alone became `payment`, `delta`
/// away from an optimal solution's: beyond its headroom, that circuit arc is over its
/// capacity (over a limit); within it, the firm's flows no longer balance.
fn payment_error(f: usize, payment: i128, delta: i128, h: &Headroom) -> CertificateError {
    let firm = f as u32;
    if payment > h.pay_max {
        CertificateError::OverCapacity { arc: ArcRef::Pay { firm }, flow: payment, capacity: h.pay_max }
    } else if -payment > h.receive_max {
        CertificateError::OverCapacity {
            arc: ArcRef::Receive { firm },
            flow: -payment,
            capacity: h.receive_max,
        }
    } else {
        CertificateError::Unbalanced { node: NodeRef::Firm(firm), excess: delta }
    }
}

/// Every way of spoiling an optimal circulation that `check` must reject, each with the kind of
/// error expected.
fn assert_mutations_rejected(
    node_count: usize,
    arcs: &[Arc],
    c: &Circulation,
    check: impl Fn(&Circulation) -> Result<(), CertificateError>,
) {
    check(c).unwrap();
    // Less flow around a cycle: still a circulation, but a worse one (costs here are <= 0 and
    // the cycle's cost is negative whenever the solver used it, so no potentials can certify it).
    if let Some(cycle) = positive_cycle(node_count, arcs, &c.flow) {
        let cycle_cost: i64 = cycle.iter().map(|&i| arcs[i].cost).sum();
        if cycle_cost < 0 {
            let mut worse = c.clone();
            for &i in &cycle {
                worse.flow[i] -= 1;
            }
            let e = check(&worse).unwrap_err();
            assert!(not_optimal(&e), "{e}");
        }
    }
    for (i, a) in arcs.iter().enumerate() {
        // Beyond the capacity, and below zero.
        let mut over = c.clone();
        over.flow[i] = a.capacity + 1;
        assert!(matches!(check(&over).unwrap_err(), CertificateError::OverCapacity { .. }));
        let mut negative = c.clone();
        negative.flow[i] = -1;
        assert!(matches!(check(&negative).unwrap_err(), CertificateError::NegativeFlow { .. }));
        // One unit more or less on one arc, within bounds: conservation breaks (unless a
        // self-loop, which the networks here do not have).
        let mut unbalanced = c.clone();
        unbalanced.flow[i] += if c.flow[i] < a.capacity { 1 } else { -1 };
        if (0..=a.capacity).contains(&unbalanced.flow[i]) && a.tail != a.head {
            assert!(matches!(check(&unbalanced).unwrap_err(), CertificateError::Unbalanced { .. }));
        }
        // A potential moved so that this arc's reduced cost has the wrong sign.
        let (t, h) = (a.tail as usize, a.head as usize);
        if t != h {
            let rc = a.cost + c.potential[t] - c.potential[h];
            let mut moved = c.clone();
            if c.flow[i] > 0 {
                moved.potential[t] += 1 - rc; // rc becomes 1 > 0 with flow > 0
            } else if c.flow[i] < a.capacity {
                moved.potential[t] -= 1 + rc; // rc becomes -1 < 0 with room left
            } else {
                continue;
            }
            let e = check(&moved).unwrap_err();
            assert!(not_optimal(&e), "{e}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn stage_one_is_optimal_and_certified((firms, obligations) in network()) {
        let pairs = aggregate(obligations.iter().copied());
        let s = solve_setoff(firms, &pairs).unwrap();
        check_setoff(firms, &pairs, &s).unwrap();
        let cleared: i128 = s.cleared.iter().sum();
        prop_assert_eq!(-cleared, reference_min_cost(firms as usize, &pair_arcs(&pairs)));
        for (p, &x) in pairs.iter().zip(&s.cleared) {
            prop_assert!((0..=p.amount).contains(&x));
        }
        let left: Vec<Pair> = pairs.iter().zip(&s.cleared).map(|(p, x)| Pair { amount: p.amount - x, ..*p }).collect();
        prop_assert_eq!(net_positions(firms, &left), net_positions(firms, &pairs));
        prop_assert!(s.potential.iter().all(|&p| (0..i64::from(firms)).contains(&p)));
        prop_assert_eq!(solve_setoff(firms, &pairs).unwrap(), s);
    }

    #[test]
    fn clear_allocates_in_input_order((firms, obligations) in network()) {
        let c = clear(firms, &obligations).unwrap();
        for (k, p) in c.pairs.iter().enumerate() {
            let mut left = c.setoff.cleared[k];
            for (&(d, cr, amount), &x) in obligations.iter().zip(&c.cleared) {
                if (d, cr) == (p.debtor, p.creditor) {
                    // First obligations first: each takes all it can of what is left.
                    prop_assert_eq!(i128::from(x), left.min(i128::from(amount)));
                    left -= i128::from(x);
                }
            }
            prop_assert_eq!(left, 0);
        }
        let total: i128 = obligations.iter().map(|&(_, _, a)| i128::from(a)).sum();
        prop_assert_eq!(c.report.total_debt_minor, total);
        prop_assert_eq!(c.report.remaining_debt_minor, total - c.report.cleared_minor);
        prop_assert!(c.report.remaining_debt_minor >= c.report.net_internal_debt_minor);
    }

    #[test]
    fn stage_two_is_optimal_and_certified((firms, obligations, headroom) in network_with_headroom()) {
        let pairs = aggregate(obligations.iter().copied());
        let w = solve_with_credit(firms, &pairs, &headroom).unwrap();
        check_with_credit(firms, &pairs, &headroom, &w).unwrap();
        let cleared: i128 = w.cleared.iter().sum();
        prop_assert_eq!(-cleared, reference_min_cost(firms as usize + 1, &credit_arcs(&pairs, &headroom)));
        prop_assert_eq!(w.payment.iter().sum::<i128>(), 0);
        for (p, &x) in pairs.iter().zip(&w.cleared) {
            prop_assert!((0..=p.amount).contains(&x));
        }
        // Each firm pays what it has cleared of its debts beyond what it has cleared of its
        // claims, within its headroom; its net position plus its balance is unchanged.
        let left: Vec<Pair> = pairs.iter().zip(&w.cleared).map(|(p, x)| Pair { amount: p.amount - x, ..*p }).collect();
        let (before, after) = (net_positions(firms, &pairs), net_positions(firms, &left));
        for f in 0..firms as usize {
            let payment = w.payment[f];
            prop_assert!(payment <= headroom[f].pay_max && -payment <= headroom[f].receive_max);
            let owed_cleared: i128 = pairs.iter().zip(&w.cleared).filter(|(p, _)| p.debtor as usize == f).map(|(_, x)| x).sum();
            let claims_cleared: i128 = pairs.iter().zip(&w.cleared).filter(|(p, _)| p.creditor as usize == f).map(|(_, x)| x).sum();
            prop_assert_eq!(payment, owed_cleared - claims_cleared);
            prop_assert_eq!(after[f] - payment, before[f]);
        }
        prop_assert_eq!(w.potential.len(), firms as usize + 1);
    }

    #[test]
    fn stage_one_mutations_are_rejected((firms, obligations) in network()) {
        let pairs = aggregate(obligations.iter().copied());
        let s = solve_setoff(firms, &pairs).unwrap();
        let arcs = pair_arcs(&pairs);
        let c = Circulation { flow: s.cleared.clone(), potential: s.potential.clone() };
        assert_mutations_rejected(firms as usize, &arcs, &c, |c| {
            check_setoff(firms, &pairs, &SetOff { cleared: c.flow.clone(), potential: c.potential.clone() })
        });
        // The general check agrees on the same network.
        assert_mutations_rejected(firms as usize, &arcs, &c, |c| check_circulation(firms, &arcs, c));
    }

    #[test]
    fn stage_two_mutations_are_rejected((firms, obligations, headroom) in network_with_headroom()) {
        let pairs = aggregate(obligations.iter().copied());
        let w = solve_with_credit(firms, &pairs, &headroom).unwrap();
        let n = pairs.len();
        // Payments are the circuit arcs' flows; mutate those through the payments only.
        let check = |w: &WithCredit| check_with_credit(firms, &pairs, &headroom, w);
        check(&w).unwrap();
        for (f, h) in headroom.iter().enumerate() {
            for delta in [-1, 1] {
                let mut m = w.clone();
                m.payment[f] += delta;
                prop_assert_eq!(check(&m), Err(payment_error(f, m.payment[f], delta, h)));
            }
            let mut m = w.clone();
            m.payment[f] = h.pay_max + 1;
            let firm = f as u32;
            prop_assert_eq!(
                check(&m),
                Err(CertificateError::OverCapacity { arc: ArcRef::Pay { firm }, flow: h.pay_max + 1, capacity: h.pay_max })
            );
        }
        let mut m = w.clone();
        if let Some(p) = m.potential.last_mut() {
            *p += 1_000;
        }
        // Raising the circuit's potential far above every firm's makes paying positive-cost and
        // receiving negative-cost: wrong for any payment made, and for any receipt with room.
        let full = credit_arcs(&pairs, &headroom);
        let flows: Vec<i128> =
            w.cleared.iter().copied().chain(w.payment.iter().flat_map(|&p| [p.max(0), (-p).max(0)])).collect();
        let wrong = full[n..].iter().zip(&flows[n..]).any(|(a, &f)| {
            if a.tail == firms { f > 0 } else { f < a.capacity }
        });
        match check(&m) {
            Ok(()) => prop_assert!(!wrong),
            // Only the circuit's arcs changed cost.
            Err(e) => prop_assert!(
                wrong && matches!(not_optimal_arc(&e), Some(ArcRef::Pay { .. } | ArcRef::Receive { .. })),
                "{}", e
            ),
        }
        let c = Circulation { flow: flows, potential: w.potential.clone() };
        assert_mutations_rejected(firms as usize + 1, &full, &c, |c| check_circulation(firms + 1, &full, c));
    }

    #[test]
    fn general_circulations_match_the_reference(
        (n, arcs) in (1u32..=7).prop_flat_map(|n| (Just(n), prop::collection::vec(
            (0..n, 0..n, 0i128..=9, -3i64..=3).prop_map(|(tail, head, capacity, cost)| Arc { tail, head, capacity, cost }),
            0..=14,
        )))
    ) {
        let c = min_cost_circulation(n, &arcs).unwrap();
        check_circulation(n, &arcs, &c).unwrap();
        let cost: i128 = arcs.iter().zip(&c.flow).map(|(a, f)| i128::from(a.cost) * f).sum();
        prop_assert_eq!(cost, reference_min_cost(n as usize, &arcs));
        let bound = i64::from(n) * 3;
        prop_assert!(c.potential.iter().all(|&p| (0..bound).contains(&p)), "{:?}", c.potential);
    }
}

/// Mutations on a realistic network of ten thousand obligations.
#[test]
fn mutations_are_rejected_on_a_generated_network() {
    use cercle_clearing::generate::{Spec, invoices};
    let firms = 1_000;
    let obligations = invoices(&Spec { firms, obligations: 10_000, seed: 5 });
    let pairs = aggregate(obligations.iter().copied());
    let s = solve_setoff(firms, &pairs).unwrap();
    let arcs = pair_arcs(&pairs);
    let c = Circulation { flow: s.cleared.clone(), potential: s.potential.clone() };
    check_circulation(firms, &arcs, &c).unwrap();
    let cycle = positive_cycle(firms as usize, &arcs, &c.flow).expect("the network clears something");
    let mut worse = c.clone();
    for &i in &cycle {
        worse.flow[i] -= 1;
    }
    let e = check_circulation(firms, &arcs, &worse).unwrap_err();
    assert!(not_optimal(&e), "{e}");
    let mut over = c.clone();
    over.flow[0] = arcs[0].capacity + 1;
    let e = check_circulation(firms, &arcs, &over).unwrap_err();
    assert!(matches!(e, CertificateError::OverCapacity { arc: ArcRef::Arc { index: 0, .. }, .. }), "{e}");
    let i = c.flow.iter().position(|&f| f > 0).expect("some flow");
    let mut moved = c.clone();
    moved.potential[arcs[i].tail as usize] += 2 * i64::from(firms);
    let e = check_circulation(firms, &arcs, &moved).unwrap_err();
    assert!(not_optimal(&e), "{e}");
}

/// Medium networks of shapes the small ones cannot have: costs up to the bound, capacities up to
/// 2^100, long cycles with chords (several scaling phases, the certificate budget running out),
/// and generated invoice networks. The solver must answer on all of them with a certificate,
/// and its certificate is a proof of optimality (the check is tested against the reference
/// above), so an `Err` or a panic here is a solver bug.
mod medium {
    use cercle_clearing::circulation::{Arc, COST_ABS_MAX, check_circulation, min_cost_circulation};
    use cercle_clearing::generate::{Spec, invoices};
    use cercle_clearing::{aggregate, check_setoff, solve_setoff};
    use proptest::prelude::*;

    fn solves_certified(n: u32, arcs: &[Arc]) -> Result<(), TestCaseError> {
        let c = min_cost_circulation(n, arcs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_circulation(n, arcs, &c).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(min_cost_circulation(n, arcs).unwrap(), c, "deterministic");
        Ok(())
    }

    fn dense() -> impl Strategy<Value = (u32, Vec<Arc>)> {
        (2u32..=60).prop_flat_map(|n| {
            let arc = (
                0..n,
                0..n,
                prop_oneof![0i128..=1_000, Just(1i128 << 100), 0i128..=(1i128 << 100)],
                -COST_ABS_MAX..=COST_ABS_MAX,
            )
                .prop_map(|(tail, head, capacity, cost)| Arc { tail, head, capacity, cost });
            (Just(n), prop::collection::vec(arc, 0..=600))
        })
    }

    /// A cycle of `len` nodes with cost -1 per arc and chords of random length and cost, some
    /// going backwards: large diameter, long negative cycles.
    fn cycle_with_chords() -> impl Strategy<Value = (u32, Vec<Arc>)> {
        (3u32..=3_000, prop::collection::vec((any::<u32>(), any::<u32>(), 1i128..=1_000, -3i64..=3), 0..=200))
            .prop_map(|(len, chords)| {
                let mut arcs: Vec<Arc> = (0..len)
                    .map(|v| Arc { tail: v, head: (v + 1) % len, capacity: 1_000, cost: -1 })
                    .collect();
                arcs.extend(chords.into_iter().map(|(t, h, capacity, cost)| Arc {
                    tail: t % len,
                    head: h % len,
                    capacity,
                    cost,
                }));
                (len, arcs)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn dense_networks_with_extreme_costs_and_capacities((n, arcs) in dense()) {
            solves_certified(n, &arcs)?;
        }

        #[test]
        fn long_cycles_with_chords((n, arcs) in cycle_with_chords()) {
            solves_certified(n, &arcs)?;
        }

        #[test]
        fn generated_invoice_networks(seed in any::<u64>(), firms in 2u32..=2_000, per_firm in 1u32..=8) {
            let obligations = invoices(&Spec { firms, obligations: firms * per_firm, seed });
            let pairs = aggregate(obligations.iter().copied());
            let s = solve_setoff(firms, &pairs).map_err(|e| TestCaseError::fail(e.to_string()))?;
            check_setoff(firms, &pairs, &s).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
    }
}
