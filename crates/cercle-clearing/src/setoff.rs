//! Clearing on firms: obligations aggregated into pairs, stage 1 (pure set-off), stage 2
//! (set-off through the mutual-credit circuit), and the allocation of a pair's cleared amount back
//! to its obligations.
//!
//! Both stages are min-cost circulations with cost -1 per unit cleared. Pure set-off is preferred
//! by running stage 1 first and stage 2 only on what stage 1 left, so stage 2 needs no special
//! costs. The certificates are checked by building the same network again and checking the
//! circulation, so a solution and its check can never disagree about the network.

use crate::circulation::{self, Arc, ArcRef, CAPACITY_MAX, Circulation, NodeRef, check_length};
use crate::{CertificateError, SolveError, min_cost_circulation};

/// Most firms in one problem.
pub const FIRMS_MAX: u32 = 10_000_000;
/// Most pairs of firms in one problem.
pub const PAIRS_MAX: u32 = 10_000_000;
/// Most obligations [`clear`] takes.
pub const OBLIGATIONS_MAX: u32 = 10_000_000;
/// Largest amount of one pair, and largest headroom of one firm. Ten million obligations of
/// `i64::MAX` stay below 2^87, far inside it.
pub const AMOUNT_MAX: i128 = CAPACITY_MAX;

/// Obligations aggregated per ordered pair of firms. Firms are dense indices 0..firm_count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    pub debtor: u32,
    pub creditor: u32,
    pub amount: i128,
}

/// Aggregates (debtor, creditor, amount_minor) triples per pair, sorted by (debtor, creditor);
/// self-pairs dropped, and so are amounts <= 0, which are not obligations ([`clear`] and the
/// CSV reader reject them before they get here).
pub fn aggregate(obligations: impl IntoIterator<Item = (u32, u32, i64)>) -> Vec<Pair> {
    let mut triples: Vec<(u32, u32, i64)> =
        obligations.into_iter().filter(|&(d, c, amount)| d != c && amount > 0).collect();
    triples.sort_unstable_by_key(|&(d, c, _)| (d, c));
    let mut pairs: Vec<Pair> = Vec::new();
    for (debtor, creditor, amount) in triples {
        match pairs.last_mut() {
            // Adding i64s to an i128 cannot saturate before 2^64 of them, more than any
            // machine can hold; a saturated sum would still be rejected as above AMOUNT_MAX.
            Some(last) if (last.debtor, last.creditor) == (debtor, creditor) => {
                last.amount = last.amount.saturating_add(i128::from(amount));
            }
            _ => pairs.push(Pair { debtor, creditor, amount: i128::from(amount) }),
        }
    }
    pairs
}

/// Stage 1, pure set-off: `cleared[i]` for `pairs[i]`, a potential per firm (len firm_count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOff {
    pub cleared: Vec<i128>,
    pub potential: Vec<i64>,
}

fn validate_pairs(firm_count: u32, pairs: &[Pair]) -> Result<(), SolveError> {
    if firm_count > FIRMS_MAX {
        return Err(SolveError::TooManyFirms { count: firm_count.into() });
    }
    if pairs.len() > PAIRS_MAX as usize {
        return Err(SolveError::TooManyPairs { count: pairs.len() as u64 });
    }
    for (i, p) in pairs.iter().enumerate() {
        for firm in [p.debtor, p.creditor] {
            if firm >= firm_count {
                return Err(SolveError::FirmOutOfRange { pair: i as u64, firm, firm_count });
            }
        }
        if !(0..=AMOUNT_MAX).contains(&p.amount) {
            return Err(SolveError::AmountOutOfRange { pair: i as u64, amount: p.amount });
        }
    }
    Ok(())
}

/// The obligation arcs: one per pair, debtor -> creditor, cost -1 per unit cleared.
fn pair_arcs(pairs: &[Pair]) -> impl Iterator<Item = Arc> + '_ {
    pairs.iter().map(|p| Arc { tail: p.debtor, head: p.creditor, capacity: p.amount, cost: -1 })
}

fn pair_ref(pairs: &[Pair], i: u32) -> ArcRef {
    let p = &pairs[i as usize];
    ArcRef::Pair { index: i, debtor: p.debtor, creditor: p.creditor }
}

/// Clears as much as possible of the pairs' debt by pure set-off, leaving every firm's net
/// position unchanged.
pub fn solve_setoff(firm_count: u32, pairs: &[Pair]) -> Result<SetOff, SolveError> {
    validate_pairs(firm_count, pairs)?;
    let arcs: Vec<Arc> = pair_arcs(pairs).collect();
    let c = min_cost_circulation(firm_count, &arcs)?;
    Ok(SetOff { cleared: c.flow, potential: c.potential })
}

/// Checks that `s` is a pure set-off of `pairs` (within the amounts, net positions unchanged)
/// and that its potentials prove it clears the most possible.
pub fn check_setoff(firm_count: u32, pairs: &[Pair], s: &SetOff) -> Result<(), CertificateError> {
    validate_pairs(firm_count, pairs)?;
    let arcs: Vec<Arc> = pair_arcs(pairs).collect();
    check_length("the cleared amounts", s.cleared.len(), pairs.len())?;
    check_length("the potential", s.potential.len(), firm_count as usize)?;
    let c = Circulation { flow: s.cleared.clone(), potential: s.potential.clone() };
    circulation::check_labelled(firm_count, &arcs, &c, |i| pair_ref(pairs, i), NodeRef::Firm)
}

/// How much one firm may pay into, or receive from, the mutual-credit circuit in stage 2: what
/// its credit limit and its balance cap leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headroom {
    pub pay_max: i128,
    pub receive_max: i128,
}

/// Stage 2: what is cleared per pair, and the payment of each firm through the circuit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithCredit {
    /// Per pair.
    pub cleared: Vec<i128>,
    /// Per firm: > 0 the firm pays that much (its balance goes down), < 0 it receives; sums
    /// to zero.
    pub payment: Vec<i128>,
    /// Len firm_count + 1, the circuit last.
    pub potential: Vec<i64>,
}

/// The stage 2 network: the obligation arcs, then per firm f the arc circuit -> f (the firm
/// pays) at `pairs.len() + 2f` and f -> circuit (it receives) at `pairs.len() + 2f + 1`.
fn credit_arcs(firm_count: u32, pairs: &[Pair], headroom: &[Headroom]) -> Result<Vec<Arc>, SolveError> {
    validate_pairs(firm_count, pairs)?;
    if headroom.len() != firm_count as usize {
        return Err(SolveError::HeadroomLength { count: headroom.len() as u64, firm_count });
    }
    let circuit = firm_count;
    let mut arcs: Vec<Arc> = pair_arcs(pairs).collect();
    arcs.reserve(2 * headroom.len());
    for (f, h) in headroom.iter().enumerate() {
        let firm = f as u32;
        if !(0..=AMOUNT_MAX).contains(&h.pay_max) || !(0..=AMOUNT_MAX).contains(&h.receive_max) {
            return Err(SolveError::HeadroomOutOfRange {
                firm,
                pay_max: h.pay_max,
                receive_max: h.receive_max,
            });
        }
        arcs.push(Arc { tail: circuit, head: firm, capacity: h.pay_max, cost: 0 });
        arcs.push(Arc { tail: firm, head: circuit, capacity: h.receive_max, cost: 0 });
    }
    Ok(arcs)
}

/// Stage 2, clearing through mutual credit, run on what stage 1 left (pairs with the remaining
/// amounts): a firm whose cleared debts exceed its cleared receivables pays the difference into
/// the circuit, one whose receivables exceed its debts receives it, each within its headroom.
/// Maximises what is cleared.
pub fn solve_with_credit(
    firm_count: u32,
    pairs: &[Pair],
    headroom: &[Headroom],
) -> Result<WithCredit, SolveError> {
    let arcs = credit_arcs(firm_count, pairs, headroom)?;
    let c = min_cost_circulation(firm_count + 1, &arcs)?;
    let mut flow = c.flow;
    let payment = flow[pairs.len()..].chunks_exact(2).map(|f| f[0] - f[1]).collect();
    flow.truncate(pairs.len());
    Ok(WithCredit { cleared: flow, payment, potential: c.potential })
}

/// Checks that `w` clears within the amounts, that each firm's payment is within its headroom
/// and balances what is cleared for it, that payments sum to zero, and that the potentials prove
/// the most possible is cleared.
pub fn check_with_credit(
    firm_count: u32,
    pairs: &[Pair],
    headroom: &[Headroom],
    w: &WithCredit,
) -> Result<(), CertificateError> {
    let arcs = credit_arcs(firm_count, pairs, headroom)?;
    check_length("the cleared amounts", w.cleared.len(), pairs.len())?;
    check_length("the payments", w.payment.len(), firm_count as usize)?;
    check_length("the potential", w.potential.len(), firm_count as usize + 1)?;
    // A payment is flow on one of the firm's two circuit arcs. Flow on both at once would be a
    // zero-cost cycle, which changes neither the cost nor the payment, so none is lost here.
    let mut flow = w.cleared.clone();
    for &p in &w.payment {
        flow.push(p.max(0));
        flow.push(p.min(0).saturating_neg());
    }
    let c = Circulation { flow, potential: w.potential.clone() };
    let p = pairs.len() as u32;
    circulation::check_labelled(
        firm_count + 1,
        &arcs,
        &c,
        |i| match i.checked_sub(p) {
            None => pair_ref(pairs, i),
            Some(k) if k % 2 == 0 => ArcRef::Pay { firm: k / 2 },
            Some(k) => ArcRef::Receive { firm: k / 2 },
        },
        |node| if node < firm_count { NodeRef::Firm(node) } else { NodeRef::Circuit },
    )
}

/// Allocates each pair's cleared amount to its obligations in input order, first obligations
/// first: returns the cleared amount of each obligation. `pairs` must come from [`aggregate`]
/// over the same obligations; an obligation without a pair (a self-obligation, an amount <= 0)
/// gets 0.
pub fn allocate(obligations: &[(u32, u32, i64)], pairs: &[Pair], cleared: &[i128]) -> Vec<i64> {
    let mut left: Vec<i128> = cleared.to_vec();
    obligations
        .iter()
        .map(|&(debtor, creditor, amount)| {
            let Ok(i) = pairs.binary_search_by_key(&(debtor, creditor), |p| (p.debtor, p.creditor)) else {
                return 0;
            };
            let Some(left) = left.get_mut(i) else { return 0 };
            // Between 0 and `amount`, so it fits i64.
            let take = (*left).clamp(0, i128::from(amount.max(0)));
            *left -= take;
            take as i64
        })
        .collect()
}

/// Each firm's net position over `pairs`: what it is owed minus what it owes.
pub fn net_positions(firm_count: u32, pairs: &[Pair]) -> Vec<i128> {
    let mut net = vec![0i128; firm_count as usize];
    for p in pairs {
        // Pairs within AMOUNT_MAX, at most PAIRS_MAX of them: no overflow (callers validate).
        net[p.creditor as usize] = net[p.creditor as usize].saturating_add(p.amount);
        net[p.debtor as usize] = net[p.debtor as usize].saturating_sub(p.amount);
    }
    net
}

/// The strongly connected component of each firm in the graph of pairs with a positive amount,
/// numbered so that every pair between two components goes from the higher number to the lower.
/// Only debt inside a component can be set off; the benchmark reports their sizes.
pub fn components(firm_count: u32, pairs: &[Pair]) -> Result<Vec<u32>, SolveError> {
    validate_pairs(firm_count, pairs)?;
    let arcs = pairs.iter().filter(|p| p.amount > 0).map(|p| (p.debtor, p.creditor));
    Ok(crate::scc::components(firm_count as usize, arcs).of)
}

/// The figures of one clearing run. Amounts are minor units.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub obligations: u64,
    pub firms: u32,
    /// All debt before clearing.
    pub total_debt_minor: i128,
    /// The sum of the positive net positions: the debt no set-off can remove.
    pub net_internal_debt_minor: i128,
    pub cleared_minor: i128,
    pub remaining_debt_minor: i128,
    /// Time taken, filled in by whoever measured it (the library reads no clock).
    pub seconds: f64,
}

/// The outcome of [`clear`].
#[derive(Debug, Clone, PartialEq)]
pub struct Clearing {
    pub pairs: Vec<Pair>,
    pub setoff: SetOff,
    /// Per obligation, in input order.
    pub cleared: Vec<i64>,
    /// With `seconds` 0.
    pub report: Report,
}

/// Stage 1 on a list of obligations (debtor, creditor, amount_minor > 0) among `firm_count`
/// firms: aggregates them, solves (the solver checks its certificate), and allocates the cleared
/// amounts back to the obligations.
pub fn clear(firm_count: u32, obligations: &[(u32, u32, i64)]) -> Result<Clearing, SolveError> {
    if obligations.len() > OBLIGATIONS_MAX as usize {
        return Err(SolveError::TooManyObligations { count: obligations.len() as u64 });
    }
    for (i, &(debtor, creditor, amount)) in obligations.iter().enumerate() {
        for firm in [debtor, creditor] {
            if firm >= firm_count {
                return Err(SolveError::ObligationFirmOutOfRange { obligation: i as u64, firm, firm_count });
            }
        }
        if debtor == creditor {
            return Err(SolveError::SelfObligation { obligation: i as u64, firm: debtor });
        }
        if amount <= 0 {
            return Err(SolveError::AmountNotPositive { obligation: i as u64, amount });
        }
    }
    let pairs = aggregate(obligations.iter().copied());
    let setoff = solve_setoff(firm_count, &pairs)?;
    let cleared = allocate(obligations, &pairs, &setoff.cleared);
    // Within bounds (validated above), none of these sums can overflow i128.
    let total_debt_minor: i128 = pairs.iter().map(|p| p.amount).sum();
    let net_internal_debt_minor: i128 =
        net_positions(firm_count, &pairs).into_iter().filter(|&n| n > 0).sum();
    let cleared_minor: i128 = setoff.cleared.iter().sum();
    let report = Report {
        obligations: obligations.len() as u64,
        firms: firm_count,
        total_debt_minor,
        net_internal_debt_minor,
        cleared_minor,
        remaining_debt_minor: total_debt_minor - cleared_minor,
        seconds: 0.0,
    };
    Ok(Clearing { pairs, setoff, cleared, report })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clears the obligations, checks the certificate and the invariants, and compares the total
    /// cleared.
    fn check(firm_count: u32, obligations: &[(u32, u32, i64)], expected_cleared: i128) {
        let c = clear(firm_count, obligations).unwrap();
        check_setoff(firm_count, &c.pairs, &c.setoff).unwrap();
        assert_eq!(c.report.cleared_minor, expected_cleared, "{obligations:?}");
        let left: Vec<Pair> =
            c.pairs.iter().zip(&c.setoff.cleared).map(|(p, x)| Pair { amount: p.amount - x, ..*p }).collect();
        assert_eq!(net_positions(firm_count, &left), net_positions(firm_count, &c.pairs));
        let allocated: i128 = c.cleared.iter().map(|&x| i128::from(x)).sum();
        assert_eq!(allocated, expected_cleared);
        assert!(c.setoff.potential.iter().all(|&p| (0..firm_count.max(1) as i64).contains(&p)));
        assert_eq!(c.report.remaining_debt_minor, c.report.total_debt_minor - expected_cleared);
        assert!(c.report.remaining_debt_minor >= c.report.net_internal_debt_minor);
        assert_eq!(clear(firm_count, obligations).unwrap(), c, "deterministic");
    }

    #[test]
    fn small_networks() {
        check(0, &[], 0);
        check(3, &[], 0);
        check(2, &[(0, 1, 5)], 0);
        check(2, &[(0, 1, 5), (1, 0, 3)], 6);
        // A triangle 100/70/50 clears 50 around, and a chain hanging off it clears nothing.
        check(5, &[(0, 1, 100), (1, 2, 70), (2, 0, 50), (2, 3, 40), (3, 4, 40)], 150);
        // Two cycles sharing an arc compete for it.
        check(4, &[(0, 1, 10), (1, 2, 10), (2, 0, 6), (1, 3, 10), (3, 0, 7)], 3 * 10);
    }

    #[test]
    fn parallel_obligations_are_aggregated_and_allocated_first_come_first_served() {
        let obligations = [(0, 1, 30), (1, 0, 25), (0, 1, 20), (0, 1, 5), (2, 2, 1)];
        assert_eq!(
            aggregate(obligations),
            vec![Pair { debtor: 0, creditor: 1, amount: 55 }, Pair { debtor: 1, creditor: 0, amount: 25 }]
        );
        let c = clear(2, &obligations[..4]).unwrap();
        assert_eq!(c.cleared, vec![25, 25, 0, 0]);
        check(2, &obligations[..4], 50);
        assert_eq!(
            clear(3, &obligations).unwrap_err(),
            SolveError::SelfObligation { obligation: 4, firm: 2 }
        );
    }

    #[test]
    fn amounts_near_the_limit_do_not_overflow() {
        // A thousand obligations of i64::MAX on each side of a triangle: pair sums far above i64.
        let big = i64::MAX;
        let mut obligations = Vec::new();
        for _ in 0..1000 {
            obligations.extend([(0, 1, big), (1, 2, big), (2, 0, big - 1)]);
        }
        let side = 1000 * i128::from(big - 1);
        check(3, &obligations, 3 * side);
        let c = clear(3, &obligations).unwrap();
        assert_eq!(c.report.total_debt_minor, 3000 * i128::from(big) - 1000);
        assert_eq!(c.report.net_internal_debt_minor, 1000);
    }

    #[test]
    fn rejects_bad_input() {
        let e = |firm_count, obligations: &[(u32, u32, i64)]| clear(firm_count, obligations).unwrap_err();
        assert_eq!(e(2, &[(0, 1, 0)]), SolveError::AmountNotPositive { obligation: 0, amount: 0 });
        assert_eq!(
            e(2, &[(0, 1, 1), (0, 1, -5)]),
            SolveError::AmountNotPositive { obligation: 1, amount: -5 }
        );
        assert_eq!(
            e(2, &[(0, 2, 1)]),
            SolveError::ObligationFirmOutOfRange { obligation: 0, firm: 2, firm_count: 2 }
        );
        let pair = |debtor, creditor, amount| Pair { debtor, creditor, amount };
        assert_eq!(
            solve_setoff(2, &[pair(0, 1, AMOUNT_MAX + 1)]).unwrap_err(),
            SolveError::AmountOutOfRange { pair: 0, amount: AMOUNT_MAX + 1 }
        );
        assert_eq!(
            solve_setoff(2, &[pair(0, 3, 1)]).unwrap_err(),
            SolveError::FirmOutOfRange { pair: 0, firm: 3, firm_count: 2 }
        );
        assert_eq!(
            solve_setoff(FIRMS_MAX + 1, &[]).unwrap_err(),
            SolveError::TooManyFirms { count: u64::from(FIRMS_MAX) + 1 }
        );
        let room = [Headroom { pay_max: 1, receive_max: 1 }];
        assert_eq!(
            solve_with_credit(2, &[], &room).unwrap_err(),
            SolveError::HeadroomLength { count: 1, firm_count: 2 }
        );
        let room = [Headroom { pay_max: -1, receive_max: 1 }];
        assert_eq!(
            solve_with_credit(1, &[], &room).unwrap_err(),
            SolveError::HeadroomOutOfRange { firm: 0, pay_max: -1, receive_max: 1 }
        );
    }

    /// Stage 2 on `pairs` with `headroom`: checks the certificate and the invariants and compares
    /// what is cleared and paid.
    fn check_credit(
        pairs: &[Pair],
        headroom: &[Headroom],
        expected_cleared: &[i128],
        expected_payment: &[i128],
    ) {
        let firm_count = headroom.len() as u32;
        let w = solve_with_credit(firm_count, pairs, headroom).unwrap();
        check_with_credit(firm_count, pairs, headroom, &w).unwrap();
        assert_eq!(w.cleared, expected_cleared);
        assert_eq!(w.payment, expected_payment);
        assert_eq!(w.potential.len(), headroom.len() + 1);
    }

    #[test]
    fn stage_two_clears_chains_through_the_circuit() {
        let pair = |debtor, creditor, amount| Pair { debtor, creditor, amount };
        let room = |pay_max, receive_max| Headroom { pay_max, receive_max };
        // A chain: 0 owes 1 100, 1 owes 2 100. Firm 0 pays 30 into the circuit, firm 2 receives it.
        let chain = [pair(0, 1, 100), pair(1, 2, 100)];
        check_credit(&chain, &[room(30, 0), room(0, 0), room(0, 50)], &[30, 30], &[30, 0, -30]);
        // The receiving side limits it.
        check_credit(&chain, &[room(80, 0), room(0, 0), room(0, 50)], &[50, 50], &[50, 0, -50]);
        // No headroom, nothing.
        check_credit(&chain, &[room(0, 0), room(0, 0), room(0, 0)], &[0, 0], &[0, 0, 0]);
        // The middle firm can pay and receive, but gains nothing: its debt and claim cancel.
        check_credit(&[pair(0, 1, 10)], &[room(5, 5), room(5, 5)], &[5], &[5, -5]);
    }

    #[test]
    fn check_with_credit_names_the_firm() {
        let pairs = [Pair { debtor: 0, creditor: 1, amount: 10 }];
        let headroom = [Headroom { pay_max: 5, receive_max: 0 }, Headroom { pay_max: 0, receive_max: 5 }];
        let w = solve_with_credit(2, &pairs, &headroom).unwrap();
        let with_payment = |payment: Vec<i128>| {
            let w = WithCredit { payment, ..w.clone() };
            check_with_credit(2, &pairs, &headroom, &w).unwrap_err().to_string()
        };
        assert_eq!(
            with_payment(vec![6, -6]),
            "the payment of firm 0 into the circuit: flow 6 exceeds the capacity 5"
        );
        assert_eq!(with_payment(vec![4, -4]), "firm 0: flow in minus flow out is -1, not 0");
        assert_eq!(with_payment(vec![5, -4]), "firm 1: flow in minus flow out is 1, not 0");
        let w2 = WithCredit { cleared: vec![4], payment: vec![4, -4], ..w.clone() };
        let e = check_with_credit(2, &pairs, &headroom, &w2).unwrap_err().to_string();
        assert!(
            e.starts_with("the receipt of firm 1 from the circuit: flow 4 is below the capacity 5 but"),
            "{e}"
        );
    }
}
