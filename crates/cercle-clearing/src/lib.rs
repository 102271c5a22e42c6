//! Optimal multilateral set-off of obligations, and the certificate that proves it optimal.
//!
//! Obligations are aggregated per ordered pair of firms (`Pair`, debtor to creditor).
//! Stage 1, set-off: find `x` with `0 <= x <= amount` on every pair and, at every firm,
//! as much cleared on what it owes as on what it is owed (so net positions are unchanged),
//! maximising the sum of `x`: a min-cost circulation with cost -1 per unit on every pair.
//! Stage 2, mutual credit: on what stage 1 left, a "circuit" node is added; an arc from
//! the circuit to a firm (capacity `pay_max`) is the firm paying into the circuit, an arc
//! from the firm to the circuit (capacity `receive_max`) is the firm being paid.
//!
//! Certificate: node potentials `p`. With reduced cost `rc = cost + p[tail] - p[head]`, a
//! feasible circulation is optimal exactly when every arc with `flow < capacity` has
//! `rc >= 0` and every arc with `flow > 0` has `rc <= 0` (complementary slackness).
//! `check_setoff` and `check_with_credit` verify feasibility and these conditions in time
//! linear in the arcs; they are what the ledger runs on every clearing entry.
//!
//! Amounts are i128 throughout (sums of up to ten million i64 obligations cannot
//! overflow); potentials are i64, bounded by the number of nodes.
//!
//! The solver is exact: negative-cycle cancelling (queue-based Bellman-Ford), whose final
//! distances are the potentials. It is simple and deterministic, and far too slow for the
//! largest networks (hundreds of thousands of obligations): a network simplex is the
//! planned replacement, behind the same functions and checks.

use std::collections::VecDeque;

/// The most firms a problem may have.
pub const FIRMS_MAX: u32 = 10_000_000;
/// The most pairs a problem may have.
pub const PAIRS_MAX: usize = 10_000_000;

/// Obligations aggregated for one ordered pair of firms (dense indices `0..firm_count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    pub debtor: u32,
    pub creditor: u32,
    pub amount: i128,
}

/// Stage 1: the amount cleared on each pair, and a potential per firm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOff {
    pub cleared: Vec<i128>,
    pub potential: Vec<i64>,
}

/// What a firm may pay into the circuit (down to its credit limit) and receive from it (up
/// to its maximum balance), for stage 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headroom {
    pub pay_max: i128,
    pub receive_max: i128,
}

/// Stage 2: cleared per pair, the payment of each firm (> 0 pays into the circuit, < 0
/// receives; they sum to zero), a potential per firm and the circuit's last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithCredit {
    pub cleared: Vec<i128>,
    pub payment: Vec<i128>,
    pub potential: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SolveError {
    #[error("{count} {what}, the maximum is {max}")]
    TooLarge { what: &'static str, count: u64, max: u64 },
    #[error("pair {index} names firm {firm}, but there are {firm_count} firms")]
    BadFirm { index: usize, firm: u32, firm_count: u32 },
    #[error("pair {index} has a negative amount {amount}")]
    NegativeAmount { index: usize, amount: i128 },
    #[error("{0} values were given, one per {1} is needed")]
    Length(usize, &'static str),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("{got} values for {expected} {what}")]
    Length { what: &'static str, got: usize, expected: usize },
    #[error("{what} {index}: flow {flow} is outside 0..={capacity}")]
    Capacity { what: &'static str, index: usize, flow: i128, capacity: i128 },
    #[error("firm {firm}: {inflow} cleared on what it is owed but {outflow} on what it owes")]
    Conservation { firm: usize, inflow: i128, outflow: i128 },
    #[error("{what} {index} is not optimal: reduced cost {reduced_cost} with flow {flow} of {capacity}")]
    NotOptimal { what: &'static str, index: usize, reduced_cost: i64, flow: i128, capacity: i128 },
    #[error("a potential is out of range")]
    PotentialRange,
}

/// One arc of the flow network the stages are solved on.
#[derive(Debug, Clone, Copy)]
struct Arc {
    tail: usize,
    head: usize,
    capacity: i128,
    cost: i64,
}

/// Aggregates `(debtor, creditor, amount_minor)` triples per ordered pair, sorted by
/// (debtor, creditor); self-pairs are dropped.
pub fn aggregate(obligations: impl IntoIterator<Item = (u32, u32, i64)>) -> Vec<Pair> {
    let mut all: Vec<(u32, u32, i64)> = obligations.into_iter().filter(|(d, c, _)| d != c).collect();
    all.sort_unstable_by_key(|(d, c, _)| (*d, *c));
    let mut pairs: Vec<Pair> = Vec::new();
    for (debtor, creditor, amount) in all {
        match pairs.last_mut() {
            Some(p) if (p.debtor, p.creditor) == (debtor, creditor) => p.amount += i128::from(amount),
            _ => pairs.push(Pair { debtor, creditor, amount: i128::from(amount) }),
        }
    }
    pairs
}

fn validate(firm_count: u32, pairs: &[Pair]) -> Result<(), SolveError> {
    if firm_count > FIRMS_MAX {
        return Err(SolveError::TooLarge { what: "firms", count: firm_count.into(), max: FIRMS_MAX.into() });
    }
    if pairs.len() > PAIRS_MAX {
        return Err(SolveError::TooLarge { what: "pairs", count: pairs.len() as u64, max: PAIRS_MAX as u64 });
    }
    for (index, p) in pairs.iter().enumerate() {
        for firm in [p.debtor, p.creditor] {
            if firm >= firm_count {
                return Err(SolveError::BadFirm { index, firm, firm_count });
            }
        }
        if p.amount < 0 {
            return Err(SolveError::NegativeAmount { index, amount: p.amount });
        }
    }
    Ok(())
}

fn setoff_arcs(pairs: &[Pair]) -> Vec<Arc> {
    pairs
        .iter()
        .map(|p| Arc { tail: p.debtor as usize, head: p.creditor as usize, capacity: p.amount, cost: -1 })
        .collect()
}

/// The stage-2 network: the pairs, then for each firm `f` the arcs circuit -> f (pays)
/// and f -> circuit (receives), the circuit being node `firm_count`.
fn credit_arcs(firm_count: u32, pairs: &[Pair], headroom: &[Headroom]) -> Vec<Arc> {
    let circuit = firm_count as usize;
    let mut arcs = setoff_arcs(pairs);
    for (f, h) in headroom.iter().enumerate() {
        arcs.push(Arc { tail: circuit, head: f, capacity: h.pay_max.max(0), cost: 0 });
        arcs.push(Arc { tail: f, head: circuit, capacity: h.receive_max.max(0), cost: 0 });
    }
    arcs
}

pub fn solve_setoff(firm_count: u32, pairs: &[Pair]) -> Result<SetOff, SolveError> {
    validate(firm_count, pairs)?;
    let (cleared, potential) = min_cost_circulation(firm_count as usize, &setoff_arcs(pairs));
    Ok(SetOff { cleared, potential })
}

pub fn check_setoff(firm_count: u32, pairs: &[Pair], s: &SetOff) -> Result<(), CertificateError> {
    check_circulation(firm_count as usize, &setoff_arcs(pairs), &s.cleared, &s.potential)
}

pub fn solve_with_credit(
    firm_count: u32,
    pairs: &[Pair],
    headroom: &[Headroom],
) -> Result<WithCredit, SolveError> {
    validate(firm_count, pairs)?;
    if headroom.len() != firm_count as usize {
        return Err(SolveError::Length(headroom.len(), "firm"));
    }
    let arcs = credit_arcs(firm_count, pairs, headroom);
    let (flow, potential) = min_cost_circulation(firm_count as usize + 1, &arcs);
    let m = pairs.len();
    let payment = (0..firm_count as usize).map(|f| flow[m + 2 * f] - flow[m + 2 * f + 1]).collect();
    Ok(WithCredit { cleared: flow[..m].to_vec(), payment, potential })
}

pub fn check_with_credit(
    firm_count: u32,
    pairs: &[Pair],
    headroom: &[Headroom],
    w: &WithCredit,
) -> Result<(), CertificateError> {
    if headroom.len() != firm_count as usize || w.payment.len() != firm_count as usize {
        return Err(CertificateError::Length {
            what: "firms",
            got: w.payment.len().min(headroom.len()),
            expected: firm_count as usize,
        });
    }
    if w.cleared.len() != pairs.len() {
        return Err(CertificateError::Length { what: "pairs", got: w.cleared.len(), expected: pairs.len() });
    }
    // A payment is carried by one of the firm's two circuit arcs.
    let mut flow = w.cleared.clone();
    for p in &w.payment {
        flow.push((*p).max(0));
        flow.push((-*p).max(0));
    }
    check_circulation(firm_count as usize + 1, &credit_arcs(firm_count, pairs, headroom), &flow, &w.potential)
}

/// Feasibility and complementary slackness, in one pass over the arcs and one over the nodes.
fn check_circulation(
    n: usize,
    arcs: &[Arc],
    flow: &[i128],
    potential: &[i64],
) -> Result<(), CertificateError> {
    if flow.len() != arcs.len() {
        return Err(CertificateError::Length { what: "arcs", got: flow.len(), expected: arcs.len() });
    }
    if potential.len() != n {
        return Err(CertificateError::Length { what: "potentials", got: potential.len(), expected: n });
    }
    let what = |i: usize| if i < arcs.len() { "pair" } else { "circuit arc" };
    let (mut inflow, mut outflow) = (vec![0i128; n], vec![0i128; n]);
    for (index, (a, &x)) in arcs.iter().zip(flow).enumerate() {
        if x < 0 || x > a.capacity {
            return Err(CertificateError::Capacity {
                what: what(index),
                index,
                flow: x,
                capacity: a.capacity,
            });
        }
        outflow[a.tail] += x;
        inflow[a.head] += x;
        let reduced_cost = a
            .cost
            .checked_add(potential[a.tail])
            .and_then(|c| c.checked_sub(potential[a.head]))
            .ok_or(CertificateError::PotentialRange)?;
        if (x < a.capacity && reduced_cost < 0) || (x > 0 && reduced_cost > 0) {
            return Err(CertificateError::NotOptimal {
                what: what(index),
                index,
                reduced_cost,
                flow: x,
                capacity: a.capacity,
            });
        }
    }
    for firm in 0..n {
        if inflow[firm] != outflow[firm] {
            return Err(CertificateError::Conservation {
                firm,
                inflow: inflow[firm],
                outflow: outflow[firm],
            });
        }
    }
    Ok(())
}

/// An exact min-cost circulation and its potentials: negative cycles of the residual
/// network are cancelled until none is left; the Bellman-Ford distances of the last pass
/// (from a virtual source joined to every node at cost 0) are then potentials satisfying
/// complementary slackness. Deterministic: arcs and nodes are always scanned in order.
fn min_cost_circulation(n: usize, arcs: &[Arc]) -> (Vec<i128>, Vec<i64>) {
    let mut flow = vec![0i128; arcs.len()];
    // Residual arcs: 2k is arc k forward, 2k + 1 backward.
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (k, a) in arcs.iter().enumerate() {
        out[a.tail].push(2 * k);
        out[a.head].push(2 * k + 1);
    }
    let ends = |r: usize| {
        let a = &arcs[r / 2];
        if r.is_multiple_of(2) { (a.tail, a.head, a.cost) } else { (a.head, a.tail, -a.cost) }
    };
    loop {
        let open = |flow: &[i128], r: usize| {
            let a = &arcs[r / 2];
            if r.is_multiple_of(2) { flow[r / 2] < a.capacity } else { flow[r / 2] > 0 }
        };
        // Queue-based Bellman-Ford (SPFA) with a relaxation count per node: a node
        // relaxed more than n times lies on or behind a negative cycle.
        let mut dist = vec![0i64; n];
        let mut pred: Vec<Option<usize>> = vec![None; n];
        let mut relaxed = vec![0usize; n];
        let mut queued = vec![true; n];
        let mut queue: VecDeque<usize> = (0..n).collect();
        let mut cycle_at = None;
        'search: while let Some(u) = queue.pop_front() {
            queued[u] = false;
            for &r in &out[u] {
                if !open(&flow, r) {
                    continue;
                }
                let (_, v, cost) = ends(r);
                if dist[u] + cost < dist[v] {
                    dist[v] = dist[u] + cost;
                    pred[v] = Some(r);
                    relaxed[v] += 1;
                    if relaxed[v] > n {
                        cycle_at = Some(v);
                        break 'search;
                    }
                    if !queued[v] {
                        queued[v] = true;
                        queue.push_back(v);
                    }
                }
            }
        }
        let Some(cycle) = cycle_at.and_then(|v| find_cycle(v, &pred, n, ends)) else {
            return (flow, dist);
        };
        let delta = cycle
            .iter()
            .map(|&r| if r.is_multiple_of(2) { arcs[r / 2].capacity - flow[r / 2] } else { flow[r / 2] })
            .min()
            .unwrap_or(0);
        if delta <= 0 {
            // Cannot happen (every residual arc of the cycle is open); stop rather than
            // loop, and let the certificate check judge the result.
            return (flow, dist);
        }
        for &r in &cycle {
            if r.is_multiple_of(2) {
                flow[r / 2] += delta;
            } else {
                flow[r / 2] -= delta;
            }
        }
    }
}

/// Walks predecessors back from `v` until a node repeats, and returns that cycle's arcs.
fn find_cycle(
    v: usize,
    pred: &[Option<usize>],
    n: usize,
    ends: impl Fn(usize) -> (usize, usize, i64),
) -> Option<Vec<usize>> {
    let mut seen = vec![false; n];
    let mut u = v;
    while !seen[u] {
        seen[u] = true;
        u = ends(pred[u]?).0;
    }
    let start = u;
    let mut cycle = Vec::new();
    loop {
        let r = pred[u]?;
        cycle.push(r);
        u = ends(r).0;
        if u == start {
            return Some(cycle);
        }
    }
}

#[cfg(test)]
mod tests;
