//! Optimal multilateral set-off of obligations, and the certificate that proves it optimal.
//!
//! Firms owe each other money (invoices). Multilateral trade-credit set-off (MTCS) cancels as
//! much of that debt as possible without changing any firm's net position: every firm has
//! exactly as much of its own debt cancelled as of the debt owed to it. Fleischman and Dini
//! (2021) showed this is a max-weight circulation, i.e. a min-cost circulation with cost -1 per
//! unit on every obligation; this crate solves it exactly (integer optimum, not a heuristic).
//!
//! Code map:
//! - [`circulation`]: the general min-cost circulation ([`min_cost_circulation`]) with its bounds,
//!   and [`check_circulation`], the linear-time check of a flow and its node potentials.
//! - `scc`, `chains` and `scaling` (private), the solver: strongly connected components
//!   (iterative Tarjan), contraction of chains of firms with one arc in and one out, and
//!   cost-scaling push-relabel with an early exact certificate.
//! - [`setoff`]: the clearing problems on firms: aggregation of obligations into pairs, stage 1
//!   (pure set-off), stage 2 (set-off through the mutual-credit circuit within each firm's
//!   headroom), the allocation back to single obligations, and [`clear`], all of it in one call.
//! - [`generate`]: a seeded generator of realistic invoice networks, for tests and the benchmark.
//! - [`csv`]: reading obligations from and writing the result to CSV: the only I/O.
//!
//! Architecture invariant: the library is pure (no clock, no randomness but the seeded
//! generator, no I/O outside [`csv`]) and deterministic: the same input gives the same output,
//! bit for bit. Every solution comes with node potentials, and the `check_*` functions verify
//! primal feasibility and complementary slackness in linear time, so a caller (or an auditor)
//! never has to trust the solver. The solver runs that check on its own answer before returning
//! it: a wrong answer would come out as [`SolveError::Uncertified`], never as a result.
//!
//! API boundary: amounts are minor units; single obligations are `i64`, sums and per-pair
//! amounts `i128`, so ten million obligations of any `i64` amount cannot overflow. Every input
//! is bounded by a named constant and a bound hit is a [`SolveError`], never a panic.

mod chains;
pub mod circulation;
pub mod csv;
pub mod generate;
mod scaling;
mod scc;
pub mod setoff;
#[cfg(test)]
mod tests;

pub use circulation::{
    ARCS_MAX, Arc, ArcRef, CAPACITY_MAX, COST_ABS_MAX, Circulation, NODES_MAX, NodeRef, check_circulation,
    min_cost_circulation,
};
pub use setoff::{
    AMOUNT_MAX, Clearing, FIRMS_MAX, Headroom, OBLIGATIONS_MAX, PAIRS_MAX, Pair, Report, SetOff, WithCredit,
    aggregate, allocate, check_setoff, check_with_credit, clear, components, net_positions, solve_setoff,
    solve_with_credit,
};

/// Why a problem could not be solved: its input is outside the bounds, or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SolveError {
    #[error("too many nodes: {count}, at most {NODES_MAX}")]
    TooManyNodes { count: u64 },
    #[error("too many arcs: {count}, at most {ARCS_MAX}")]
    TooManyArcs { count: u64 },
    #[error("arc {arc}: node {node} is out of range (there are {node_count} nodes)")]
    NodeOutOfRange { arc: u64, node: u32, node_count: u32 },
    #[error("arc {arc}: capacity {capacity} is outside 0..={CAPACITY_MAX}")]
    CapacityOutOfRange { arc: u64, capacity: i128 },
    #[error("arc {arc}: cost {cost} is outside -{COST_ABS_MAX}..={COST_ABS_MAX}")]
    CostOutOfRange { arc: u64, cost: i64 },
    #[error("too many firms: {count}, at most {FIRMS_MAX}")]
    TooManyFirms { count: u64 },
    #[error("too many pairs of firms: {count}, at most {PAIRS_MAX}")]
    TooManyPairs { count: u64 },
    #[error("pair {pair}: firm {firm} is out of range (there are {firm_count} firms)")]
    FirmOutOfRange { pair: u64, firm: u32, firm_count: u32 },
    #[error("pair {pair}: amount {amount} is outside 0..={AMOUNT_MAX}")]
    AmountOutOfRange { pair: u64, amount: i128 },
    #[error("too many obligations: {count}, at most {OBLIGATIONS_MAX}")]
    TooManyObligations { count: u64 },
    #[error("obligation {obligation}: firm {firm} is out of range (there are {firm_count} firms)")]
    ObligationFirmOutOfRange { obligation: u64, firm: u32, firm_count: u32 },
    #[error("obligation {obligation}: firm {firm} cannot owe itself")]
    SelfObligation { obligation: u64, firm: u32 },
    #[error("obligation {obligation}: amount {amount} is not positive")]
    AmountNotPositive { obligation: u64, amount: i64 },
    #[error("the headroom has {count} entries for {firm_count} firms")]
    HeadroomLength { count: u64, firm_count: u32 },
    #[error("firm {firm}: headroom to pay {pay_max} or to receive {receive_max} is outside 0..={AMOUNT_MAX}")]
    HeadroomOutOfRange { firm: u32, pay_max: i128, receive_max: i128 },
    /// The solver's own certificate failed its check: a bug, reported rather than returned.
    #[error("internal error, the solution failed its own check: {0}")]
    Uncertified(Box<CertificateError>),
}

/// Why a claimed optimal solution is not one. Each message names the first violated condition,
/// the arc or node, and the numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("the problem itself is invalid: {0}")]
    Problem(SolveError),
    #[error("{what} has {count} entries, expected {expected}")]
    Length { what: &'static str, count: u64, expected: u64 },
    #[error("{arc}: flow {flow} is negative")]
    NegativeFlow { arc: ArcRef, flow: i128 },
    #[error("{arc}: flow {flow} exceeds the capacity {capacity}")]
    OverCapacity { arc: ArcRef, flow: i128, capacity: i128 },
    #[error("{node}: flow in minus flow out is {excess}, not 0")]
    Unbalanced { node: NodeRef, excess: i128 },
    #[error(
        "{arc}: flow {flow} is below the capacity {capacity} but the reduced cost is {reduced_cost} < 0 \
         (cost {cost}, potentials {tail_potential} at the tail and {head_potential} at the head): \
         more flow would be cheaper"
    )]
    NotOptimalBelowCapacity {
        arc: ArcRef,
        flow: i128,
        capacity: i128,
        cost: i64,
        tail_potential: i64,
        head_potential: i64,
        reduced_cost: i128,
    },
    #[error(
        "{arc}: flow {flow} is positive but the reduced cost is {reduced_cost} > 0 \
         (cost {cost}, potentials {tail_potential} at the tail and {head_potential} at the head): \
         less flow would be cheaper"
    )]
    NotOptimalAboveZero {
        arc: ArcRef,
        flow: i128,
        cost: i64,
        tail_potential: i64,
        head_potential: i64,
        reduced_cost: i128,
    },
}

impl From<SolveError> for CertificateError {
    fn from(e: SolveError) -> Self {
        CertificateError::Problem(e)
    }
}

impl From<CertificateError> for SolveError {
    fn from(e: CertificateError) -> Self {
        SolveError::Uncertified(Box::new(e))
    }
}
