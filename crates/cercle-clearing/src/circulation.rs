//! Min-cost circulation: the bounds on a problem, the solver's entry point, and the linear-time
//! check of its certificate (a flow and node potentials).
//!
//! The solver splits the graph into strongly connected components first: an arc between two
//! components lies on no cycle, so it carries 0 in every circulation, and each component is an
//! independent problem. Cost scaling (`scaling`) then runs on the arcs inside components only.
//! Its potentials make every arc inside a component complementary-slack; each component's
//! potentials are then shifted by a constant (which changes no reduced cost inside it) so that
//! the arcs between components, all empty, have reduced cost >= 0 too.

use std::fmt;

use crate::{CertificateError, SolveError, chains, scaling, scc};

/// Most nodes a problem may have: ten million firms and the mutual-credit circuit.
pub const NODES_MAX: u32 = 10_000_001;
/// Most arcs a problem may have: ten million pairs of firms, and two arcs per firm to the
/// circuit for ten million firms, with room to spare.
pub const ARCS_MAX: u32 = 32_000_000;
/// Largest capacity of one arc. With at most [`ARCS_MAX`] < 2^25 arcs, any sum of flows stays
/// below 2^125, so sums in `i128` cannot overflow.
pub const CAPACITY_MAX: i128 = 1 << 100;
/// Largest absolute cost of one arc. The solver scales costs by 8 times the node count, and its
/// prices then stay below 2^60 in absolute value (see `scaling`), so `i64` holds them.
pub const COST_ABS_MAX: i64 = 1 << 10;

/// One arc of a flow network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arc {
    pub tail: u32,
    pub head: u32,
    pub capacity: i128,
    pub cost: i64,
}

/// A circulation and the node potentials that certify it optimal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Circulation {
    pub flow: Vec<i128>,
    pub potential: Vec<i64>,
}

/// Where a certificate fails: an arc, in the words of the problem it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArcRef {
    Arc {
        index: u32,
        tail: u32,
        head: u32,
    },
    Pair {
        index: u32,
        debtor: u32,
        creditor: u32,
    },
    /// The arc circuit -> firm: the firm pays into the circuit.
    Pay {
        firm: u32,
    },
    /// The arc firm -> circuit: the firm receives from the circuit.
    Receive {
        firm: u32,
    },
}

impl fmt::Display for ArcRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ArcRef::Arc { index, tail, head } => write!(f, "arc {index} ({tail} -> {head})"),
            ArcRef::Pair { index, debtor, creditor } => {
                write!(f, "pair {index} (firm {debtor} owes firm {creditor})")
            }
            ArcRef::Pay { firm } => write!(f, "the payment of firm {firm} into the circuit"),
            ArcRef::Receive { firm } => write!(f, "the receipt of firm {firm} from the circuit"),
        }
    }
}

/// Where a certificate fails: a node, in the words of the problem it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRef {
    Node(u32),
    Firm(u32),
    Circuit,
}

impl fmt::Display for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NodeRef::Node(node) => write!(f, "node {node}"),
            NodeRef::Firm(firm) => write!(f, "firm {firm}"),
            NodeRef::Circuit => write!(f, "the circuit"),
        }
    }
}

/// Checks a problem against the bounds.
pub(crate) fn validate(node_count: u32, arcs: &[Arc]) -> Result<(), SolveError> {
    if node_count > NODES_MAX {
        return Err(SolveError::TooManyNodes { count: node_count.into() });
    }
    if arcs.len() > ARCS_MAX as usize {
        return Err(SolveError::TooManyArcs { count: arcs.len() as u64 });
    }
    for (i, a) in arcs.iter().enumerate() {
        let arc = i as u64;
        for node in [a.tail, a.head] {
            if node >= node_count {
                return Err(SolveError::NodeOutOfRange { arc, node, node_count });
            }
        }
        if !(0..=CAPACITY_MAX).contains(&a.capacity) {
            return Err(SolveError::CapacityOutOfRange { arc, capacity: a.capacity });
        }
        if !(-COST_ABS_MAX..=COST_ABS_MAX).contains(&a.cost) {
            return Err(SolveError::CostOutOfRange { arc, cost: a.cost });
        }
    }
    Ok(())
}

/// Exact min-cost circulation (all supplies zero). capacity >= 0. Deterministic: same input,
/// same output.
///
/// The potentials satisfy complementary slackness with reduced cost
/// `cost + potential[tail] - potential[head]` (checked by [`check_circulation`] before
/// returning), and lie in `0..node_count * max(1, |cost|)`: with costs -1 and 0,
/// `0 <= potential < node_count`.
pub fn min_cost_circulation(node_count: u32, arcs: &[Arc]) -> Result<Circulation, SolveError> {
    let c = solve(node_count, arcs)?;
    check_circulation(node_count, arcs, &c)?;
    Ok(c)
}

fn solve(node_count: u32, arcs: &[Arc]) -> Result<Circulation, SolveError> {
    validate(node_count, arcs)?;
    let n = node_count as usize;
    let live = |a: &Arc| a.capacity > 0;
    let components = scc::components(n, arcs.iter().filter(|a| live(a)).map(|a| (a.tail, a.head)));

    // The nodes the solver sees: those with an arc inside their component, numbered component
    // by component (in Tarjan's order, which is a DFS order) for locality.
    let inner = |a: &Arc| live(a) && components.of[a.tail as usize] == components.of[a.head as usize];
    let mut in_solver = vec![false; n];
    for a in arcs.iter().filter(|a| inner(a)) {
        in_solver[a.tail as usize] = true;
        in_solver[a.head as usize] = true;
    }
    let mut local = vec![u32::MAX; n];
    let mut solver_node_count = 0u32;
    for &v in &components.order {
        if in_solver[v as usize] {
            local[v as usize] = solver_node_count;
            solver_node_count += 1;
        }
    }
    drop(in_solver);
    let mut problem = scaling::Problem::with_capacity(solver_node_count as usize, arcs.len());
    let mut arc_index = Vec::new();
    for (i, a) in arcs.iter().enumerate() {
        if inner(a) {
            problem.push(local[a.tail as usize], local[a.head as usize], a.capacity, a.cost);
            arc_index.push(i as u32);
        }
    }
    let contracted = chains::contract(&problem);
    let solution = scaling::solve(&contracted.problem);
    let (inner_flow, p) = contracted.expand(&solution.flow, &solution.potential);
    drop((contracted, solution));
    let inner_potential = scaling::tighten(&problem, &inner_flow, &p);

    let mut flow = vec![0i128; arcs.len()];
    for (k, &i) in arc_index.iter().enumerate() {
        flow[i as usize] = inner_flow[k];
    }

    // Shift each component's potentials so that its lowest is `gap` above the highest of every
    // component numbered before it, which includes all those it has arcs into (Tarjan numbers a
    // component after all it reaches): the arcs between components, all empty, then have
    // reduced cost >= cost + gap >= 0.
    let gap = arcs
        .iter()
        .filter(|a| live(a) && !inner(a))
        .map(|a| a.cost.saturating_neg())
        .max()
        .unwrap_or(0)
        .max(0);
    let mut potential = vec![0i64; n];
    let mut top: Option<i64> = None;
    for members in components.order.chunk_by(|&a, &b| components.of[a as usize] == components.of[b as usize])
    {
        let solved = |v: u32| match local[v as usize] {
            u32::MAX => 0,
            k => inner_potential[k as usize],
        };
        let lowest = members.iter().map(|&v| solved(v)).min().unwrap_or(0);
        let offset = top.map_or(0, |top| top + gap);
        let mut highest = offset;
        for &v in members {
            let p = solved(v) - lowest + offset;
            potential[v as usize] = p;
            highest = highest.max(p);
        }
        top = Some(highest);
    }
    Ok(Circulation { flow, potential })
}

/// Linear-time check: 0 <= flow <= capacity, conservation at every node, and complementary
/// slackness with reduced cost `rc = cost + potential[tail] - potential[head]`:
/// `flow < capacity => rc >= 0; flow > 0 => rc <= 0`. Names the first violated condition
/// (arc index / node index) in the error.
///
/// Together these prove the flow optimal: for any circulation y, cost(y) - cost(flow) =
/// sum over arcs of rc * (y - flow), and each term is >= 0 under these conditions.
pub fn check_circulation(node_count: u32, arcs: &[Arc], c: &Circulation) -> Result<(), CertificateError> {
    check_labelled(
        node_count,
        arcs,
        c,
        |i| ArcRef::Arc { index: i, tail: arcs[i as usize].tail, head: arcs[i as usize].head },
        NodeRef::Node,
    )
}

/// [`check_circulation`], naming arcs and nodes in the caller's terms.
pub(crate) fn check_labelled(
    node_count: u32,
    arcs: &[Arc],
    c: &Circulation,
    arc_ref: impl Fn(u32) -> ArcRef,
    node_ref: impl Fn(u32) -> NodeRef,
) -> Result<(), CertificateError> {
    validate(node_count, arcs)?;
    check_length("the flow", c.flow.len(), arcs.len())?;
    check_length("the potential", c.potential.len(), node_count as usize)?;
    for (i, (a, &flow)) in arcs.iter().zip(&c.flow).enumerate() {
        if flow < 0 {
            return Err(CertificateError::NegativeFlow { arc: arc_ref(i as u32), flow });
        }
        if flow > a.capacity {
            return Err(CertificateError::OverCapacity {
                arc: arc_ref(i as u32),
                flow,
                capacity: a.capacity,
            });
        }
    }
    // Flows are now within 0..=CAPACITY_MAX and there are at most ARCS_MAX of them: no sum
    // below can overflow.
    let mut excess = vec![0i128; node_count as usize];
    for (a, &flow) in arcs.iter().zip(&c.flow) {
        excess[a.tail as usize] -= flow;
        excess[a.head as usize] += flow;
    }
    if let Some(node) = excess.iter().position(|&e| e != 0) {
        return Err(CertificateError::Unbalanced { node: node_ref(node as u32), excess: excess[node] });
    }
    for (i, (a, &flow)) in arcs.iter().zip(&c.flow).enumerate() {
        let (tail_potential, head_potential) = (c.potential[a.tail as usize], c.potential[a.head as usize]);
        // In i128, any i64 potentials give an exact reduced cost.
        let reduced_cost = i128::from(a.cost) + i128::from(tail_potential) - i128::from(head_potential);
        if flow < a.capacity && reduced_cost < 0 {
            return Err(CertificateError::NotOptimalBelowCapacity {
                arc: arc_ref(i as u32),
                flow,
                capacity: a.capacity,
                cost: a.cost,
                tail_potential,
                head_potential,
                reduced_cost,
            });
        }
        if flow > 0 && reduced_cost > 0 {
            return Err(CertificateError::NotOptimalAboveZero {
                arc: arc_ref(i as u32),
                flow,
                cost: a.cost,
                tail_potential,
                head_potential,
                reduced_cost,
            });
        }
    }
    Ok(())
}

pub(crate) fn check_length(
    what: &'static str,
    count: usize,
    expected: usize,
) -> Result<(), CertificateError> {
    if count == expected {
        Ok(())
    } else {
        Err(CertificateError::Length { what, count: count as u64, expected: expected as u64 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arc(tail: u32, head: u32, capacity: i128, cost: i64) -> Arc {
        Arc { tail, head, capacity, cost }
    }

    /// Solves, checks the certificate, and compares the total cost and the flow.
    fn check(node_count: u32, arcs: &[Arc], expected_cost: i128, expected_flow: Option<&[i128]>) {
        let c = min_cost_circulation(node_count, arcs).unwrap();
        check_circulation(node_count, arcs, &c).unwrap();
        let cost: i128 = arcs.iter().zip(&c.flow).map(|(a, f)| i128::from(a.cost) * f).sum();
        assert_eq!(cost, expected_cost, "{arcs:?} -> {c:?}");
        if let Some(flow) = expected_flow {
            assert_eq!(c.flow, flow);
        }
        assert_eq!(min_cost_circulation(node_count, arcs).unwrap(), c, "deterministic");
    }

    #[test]
    fn small_circulations() {
        check(0, &[], 0, Some(&[]));
        check(3, &[], 0, Some(&[]));
        // A 2-cycle clears its smaller side.
        check(2, &[arc(0, 1, 5, -1), arc(1, 0, 3, -1)], -6, Some(&[3, 3]));
        // A self-loop of negative cost is a cycle by itself.
        check(1, &[arc(0, 0, 7, -1)], -7, Some(&[7]));
        // A triangle and a chord: the triangle's bottleneck, then what the chord allows.
        check(
            3,
            &[arc(0, 1, 100, -1), arc(1, 2, 70, -1), arc(2, 0, 50, -1), arc(1, 0, 30, -1)],
            -(3 * 50 + 2 * 30),
            Some(&[80, 50, 50, 30]),
        );
        // Positive costs are used only when the cycle pays: here it does not.
        check(2, &[arc(0, 1, 5, -1), arc(1, 0, 5, 1)], 0, Some(&[0, 0]));
        check(2, &[arc(0, 1, 5, -2), arc(1, 0, 5, 1)], -5, Some(&[5, 5]));
        // A DAG carries nothing.
        check(4, &[arc(0, 1, 5, -1), arc(1, 2, 5, -1), arc(0, 3, 5, -1), arc(3, 2, 5, -1)], 0, None);
        // Zero capacities.
        check(2, &[arc(0, 1, 0, -1), arc(1, 0, 3, -1)], 0, Some(&[0, 0]));
    }

    #[test]
    fn a_million_node_path_and_cycle() {
        let n = 1_000_000u32;
        // A path has no cycle: nothing flows, and no step recurses.
        let path: Vec<Arc> = (0..n - 1).map(|i| arc(i, i + 1, 5, -1)).collect();
        let c = min_cost_circulation(n, &path).unwrap();
        assert!(c.flow.iter().all(|&f| f == 0));
        // A cycle with growing amounts: its smallest amount clears all round, and the
        // potentials fall by one per arc all the way round (the range is n - 1).
        let cycle: Vec<Arc> = (0..n).map(|i| arc(i, (i + 1) % n, 1_000 + i128::from(i), -1)).collect();
        let c = min_cost_circulation(n, &cycle).unwrap();
        assert!(c.flow.iter().all(|&f| f == 1_000));
        assert_eq!(c.potential.iter().max(), Some(&(i64::from(n) - 1)));
    }

    #[test]
    fn huge_capacities_do_not_overflow() {
        let arcs: Vec<Arc> = (0..50).map(|i| arc(i, (i + 1) % 50, CAPACITY_MAX, -1)).collect();
        check(50, &arcs, -50 * CAPACITY_MAX, None);
    }

    #[test]
    fn potentials_are_small_and_certify_arcs_between_components() {
        // Two 2-cycles joined by a one-way arc, and a tail of single nodes.
        let arcs = [
            arc(0, 1, 4, -1),
            arc(1, 0, 4, -1),
            arc(1, 2, 9, -1),
            arc(2, 3, 2, -1),
            arc(3, 2, 2, -1),
            arc(3, 4, 1, -1),
            arc(4, 5, 1, -1),
        ];
        let c = min_cost_circulation(6, &arcs).unwrap();
        check_circulation(6, &arcs, &c).unwrap();
        assert!(c.potential.iter().all(|&p| (0..6).contains(&p)), "{:?}", c.potential);
    }

    #[test]
    fn rejects_bad_problems() {
        let e = |node_count, arcs: &[Arc]| min_cost_circulation(node_count, arcs).unwrap_err();
        assert_eq!(e(2, &[arc(0, 2, 1, 0)]), SolveError::NodeOutOfRange { arc: 0, node: 2, node_count: 2 });
        assert_eq!(e(2, &[arc(0, 1, -1, 0)]), SolveError::CapacityOutOfRange { arc: 0, capacity: -1 });
        assert_eq!(
            e(2, &[arc(0, 1, CAPACITY_MAX + 1, 0)]),
            SolveError::CapacityOutOfRange { arc: 0, capacity: CAPACITY_MAX + 1 }
        );
        assert_eq!(
            e(2, &[arc(0, 1, 1, COST_ABS_MAX + 1)]),
            SolveError::CostOutOfRange { arc: 0, cost: COST_ABS_MAX + 1 }
        );
        assert_eq!(e(NODES_MAX + 1, &[]), SolveError::TooManyNodes { count: u64::from(NODES_MAX) + 1 });
        // The bounds themselves are accepted.
        check(2, &[arc(0, 1, CAPACITY_MAX, -COST_ABS_MAX), arc(1, 0, 1, COST_ABS_MAX)], 0, Some(&[0, 0]));
        check(2, &[arc(0, 1, CAPACITY_MAX, -COST_ABS_MAX), arc(1, 0, 1, 0)], -COST_ABS_MAX as i128, None);
    }

    #[test]
    fn check_names_the_first_violation() {
        let arcs = [arc(0, 1, 5, -1), arc(1, 0, 3, -1)];
        let good = min_cost_circulation(2, &arcs).unwrap();
        let with = |flow: [i128; 2], potential: [i64; 2]| {
            check_circulation(2, &arcs, &Circulation { flow: flow.to_vec(), potential: potential.to_vec() })
                .unwrap_err()
                .to_string()
        };
        let p = [good.potential[0], good.potential[1]];
        assert_eq!(with([-1, 3], p), "arc 0 (0 -> 1): flow -1 is negative");
        assert_eq!(with([3, 4], p), "arc 1 (1 -> 0): flow 4 exceeds the capacity 3");
        assert_eq!(with([3, 2], p), "node 0: flow in minus flow out is -1, not 0");
        assert!(
            with([2, 2], p).starts_with("arc 1 (1 -> 0): flow 2 is below the capacity 3 but the reduced")
        );
        assert!(with([3, 3], [0, 0]).starts_with("arc 0 (0 -> 1): flow 3 is below the capacity 5"));
        assert!(with([3, 3], [5, 0]).contains("flow 3 is positive but the reduced cost is 4 > 0"));
        let short = Circulation { flow: vec![3], potential: p.to_vec() };
        assert_eq!(
            check_circulation(2, &arcs, &short).unwrap_err(),
            CertificateError::Length { what: "the flow", count: 1, expected: 2 }
        );
    }
}
