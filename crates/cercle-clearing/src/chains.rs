//! Contraction of chains before solving, and expansion after.
//!
//! A node whose only arcs are one arc in (u -> v) and one arc out (v -> w) carries the same flow
//! on both, so the pair can be replaced by one arc u -> w with the smaller capacity and the sum of
//! the costs, and v removed. Chains of such nodes collapse into single arcs. This matters for
//! the solver: a long thin cycle forces a gradient of potentials along its whole length, which
//! push-relabel builds one small step at a time (quadratic in the length); contracted, a cycle
//! of a million firms is a handful of arcs. Invoice networks also have many firms with one
//! supplier and one customer, so the problem shrinks.
//!
//! A joined arc's cost is bounded by [`JOINED_COST_ABS_MAX`], which keeps the solver's prices
//! within `i64` (see `scaling`); a chain longer than that becomes several arcs.

use crate::circulation::COST_ABS_MAX;
use crate::scaling::Problem;

/// Largest absolute cost of a joined arc: no more than of any arc, so the solver's bounds hold.
pub(crate) const JOINED_COST_ABS_MAX: i64 = COST_ABS_MAX;

const NONE: u32 = u32::MAX;

/// A contracted problem and what it takes to expand its solution.
pub(crate) struct Contracted {
    pub problem: Problem,
    /// Every arc, original (0..original_arc_count) then joined, as (tail, head, capacity, cost).
    arcs: Vec<(u32, u32, i128, i64)>,
    original_arc_count: usize,
    /// The arc of `arcs` behind each arc of `problem`.
    arc_of: Vec<u32>,
    /// The node of `problem` for each original node, NONE if removed.
    node_of: Vec<u32>,
    /// Each removal, in order: the node, its arc in, its arc out, the arc that replaced them.
    joins: Vec<(u32, u32, u32, u32)>,
}

/// Contracts the chains of `problem`.
pub(crate) fn contract(problem: &Problem) -> Contracted {
    let n = problem.node_count;
    let m = problem.source.len();
    let mut arcs: Vec<(u32, u32, i128, i64)> =
        (0..m).map(|k| (problem.source[k], problem.target[k], problem.cap[k], problem.cost[k])).collect();
    let mut alive = vec![true; m];
    let (mut in_count, mut out_count) = (vec![0u32; n], vec![0u32; n]);
    // Meaningful only where the count is 1: then it is the one arc.
    let (mut in_arc, mut out_arc) = (vec![NONE; n], vec![NONE; n]);
    for (k, &(t, h, _, _)) in arcs.iter().enumerate() {
        out_count[t as usize] += 1;
        out_arc[t as usize] = k as u32;
        in_count[h as usize] += 1;
        in_arc[h as usize] = k as u32;
    }
    let mut removed = vec![false; n];
    let mut joins = Vec::new();
    for v in 0..n {
        if in_count[v] != 1 || out_count[v] != 1 {
            continue;
        }
        let (e1, e2) = (in_arc[v], out_arc[v]);
        let (u, _, cap1, cost1) = arcs[e1 as usize];
        let (_, w, cap2, cost2) = arcs[e2 as usize];
        if u as usize == v || w as usize == v {
            continue; // a self-loop: nothing to join
        }
        let cost = cost1 + cost2;
        if cost.abs() > JOINED_COST_ABS_MAX {
            continue;
        }
        let joined = arcs.len() as u32;
        arcs.push((u, w, cap1.min(cap2), cost));
        alive[e1 as usize] = false;
        alive[e2 as usize] = false;
        alive.push(true);
        if out_arc[u as usize] == e1 {
            out_arc[u as usize] = joined;
        }
        if in_arc[w as usize] == e2 {
            in_arc[w as usize] = joined;
        }
        removed[v] = true;
        joins.push((v as u32, e1, e2, joined));
    }

    let mut node_of = vec![NONE; n];
    let mut kept = 0u32;
    for v in 0..n {
        if !removed[v] {
            node_of[v] = kept;
            kept += 1;
        }
    }
    let live = alive.iter().filter(|&&a| a).count();
    let mut contracted = Problem::with_capacity(kept as usize, live);
    let mut arc_of = Vec::with_capacity(live);
    for (k, &(t, h, cap, cost)) in arcs.iter().enumerate() {
        if alive[k] {
            contracted.push(node_of[t as usize], node_of[h as usize], cap, cost);
            arc_of.push(k as u32);
        }
    }
    Contracted { problem: contracted, arcs, original_arc_count: m, arc_of, node_of, joins }
}

impl Contracted {
    /// The flow on each original arc and valid potentials for each original node, from an
    /// optimal solution of the contracted problem. Removed nodes get potentials that keep both
    /// their arcs complementary-slack (they may not be the tightest).
    pub fn expand(&self, flow: &[i128], potential: &[i64]) -> (Vec<i128>, Vec<i64>) {
        let mut all_flow = vec![0i128; self.arcs.len()];
        for (k, &a) in self.arc_of.iter().enumerate() {
            all_flow[a as usize] = flow[k];
        }
        let mut p: Vec<i64> =
            self.node_of.iter().map(|&k| if k == NONE { 0 } else { potential[k as usize] }).collect();
        // Later joins may have absorbed earlier ones: undo them in reverse.
        for &(v, e1, e2, joined) in self.joins.iter().rev() {
            let x = all_flow[joined as usize];
            all_flow[e1 as usize] = x;
            all_flow[e2 as usize] = x;
            let (u, _, _, cost1) = self.arcs[e1 as usize];
            let (_, w, cap2, cost2) = self.arcs[e2 as usize];
            // With rc = cost + p(tail) - p(head) and rc(joined) = rc(e1) + rc(e2): if the arc
            // out has room, make its rc 0, and the arc in inherits the joined arc's rc, which
            // fits its state; if the arc out is full, so is the joined arc, and the other way.
            p[v as usize] = if x < cap2 { p[w as usize] - cost2 } else { p[u as usize] + cost1 };
        }
        all_flow.truncate(self.original_arc_count);
        (all_flow, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(n: usize, arcs: &[(u32, u32, i128, i64)]) -> Problem {
        let mut p = Problem::with_capacity(n, arcs.len());
        for &(t, h, cap, cost) in arcs {
            p.push(t, h, cap, cost);
        }
        p
    }

    /// Asserts complementary slackness of `flow` and `p` on every arc.
    fn assert_slack(arcs: &[(u32, u32, i128, i64)], flow: &[i128], p: &[i64]) {
        for (&(t, h, cap, cost), &x) in arcs.iter().zip(flow) {
            let rc = cost + p[t as usize] - p[h as usize];
            assert!(x == cap || rc >= 0, "{arcs:?} {flow:?} {p:?}");
            assert!(x == 0 || rc <= 0, "{arcs:?} {flow:?} {p:?}");
        }
    }

    #[test]
    fn a_cycle_collapses_to_a_loop_and_expands_back() {
        let arcs: Vec<(u32, u32, i128, i64)> =
            (0..6).map(|i| (i, (i + 1) % 6, 10 + i128::from(i), -1)).collect();
        let c = contract(&problem(6, &arcs));
        assert_eq!(c.problem.node_count, 1);
        assert_eq!((&c.problem.source, &c.problem.cap, &c.problem.cost), (&vec![0], &vec![10], &vec![-6]));
        let (flow, p) = c.expand(&[10], &[0]);
        assert_eq!(flow, vec![10; 6]);
        assert_slack(&arcs, &flow, &p);
        // And with the cycle left empty, as it is when its cost is positive.
        let positive: Vec<(u32, u32, i128, i64)> =
            arcs.iter().map(|&(t, h, cap, _)| (t, h, cap, 1)).collect();
        let c = contract(&problem(6, &positive));
        let (flow, p) = c.expand(&[0], &[0]);
        assert_eq!(flow, vec![0; 6]);
        assert_slack(&positive, &flow, &p);
    }

    #[test]
    fn hubs_and_loops_stay() {
        // 0 -> 1 -> 2 -> 0 and 0 -> 3 -> 0: node 0 has two arcs each way and stays; 1, 2, 3 go.
        let c = contract(&problem(
            4,
            &[(0, 1, 5, -1), (1, 2, 4, -1), (2, 0, 6, -1), (0, 3, 2, -1), (3, 0, 3, -1)],
        ));
        assert_eq!(c.problem.node_count, 1);
        let mut joined: Vec<(i128, i64)> =
            c.problem.cap.iter().copied().zip(c.problem.cost.iter().copied()).collect();
        joined.sort_unstable();
        assert_eq!(joined, vec![(2, -2), (4, -3)]);
        // A self-loop is left alone.
        assert_eq!(contract(&problem(1, &[(0, 0, 5, -1)])).problem.node_count, 1);
    }

    #[test]
    fn joined_costs_are_bounded() {
        let n = 3 * JOINED_COST_ABS_MAX as u32;
        let arcs: Vec<(u32, u32, i128, i64)> = (0..n).map(|i| (i, (i + 1) % n, 1, -1)).collect();
        let c = contract(&problem(n as usize, &arcs));
        assert!(c.problem.cost.iter().all(|&x| x.abs() <= JOINED_COST_ABS_MAX));
        assert!(c.problem.node_count <= 4, "{}", c.problem.node_count);
    }
}
