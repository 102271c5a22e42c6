//! Cost-scaling min-cost circulation (Goldberg and Tarjan 1990; Goldberg 1997) with the partial
//! augment-relabel operation and global price updates of LEMON's `CostScaling` (Kovács 2015),
//! ending in exact integer potentials for the certificate.
//!
//! Costs are multiplied by `scale = ALPHA * node_count`. Each phase ("refine") makes the
//! circulation ε-optimal for a smaller ε: it saturates every residual arc of negative reduced
//! cost, then moves the excesses this creates along admissible paths (negative reduced cost),
//! lowering the price of a node that has no admissible arc. At ε = 1, a 1/(ALPHA·n) fraction of
//! a unit of cost, the circulation is optimal (every cycle has integer cost, more than -1 once
//! ε-optimal). The first phase runs at ε = 1/ALPHA of a unit of cost (or less), the next ones
//! at ε / EPSILON_FACTOR each.
//!
//! Early end: after each phase the prices, rounded to whole units of cost, are a
//! near-certificate (reduced costs >= -1), and a label-correcting shortest-path pass with a
//! budget either makes them exact, which proves the circulation optimal and ends the solve, or
//! runs out of budget (a negative cycle is left) and the phases go on. On invoice networks the
//! first phase usually suffices: an ε-optimal circulation has no negative cycle shorter than 1/ε
//! arcs. [`tighten`] then turns any certificate into shortest-path distances, the smallest.
//!
//! Bounds: n <= NODES_MAX < 2^24 and |cost| <= COST_ABS_MAX = 2^10 (arcs joined by `chains`
//! included), so scaled costs are below 2^37. Prices only fall. In a phase at ε whose input is
//! ε'-optimal, a price falls by at most about n·(ε' + 2ε) (Goldberg and Tarjan). The first
//! phase's input, the zero circulation, is (max |cost| · scale)-optimal, so prices fall by less
//! than 2^24 · 2^10 · 2^27 = 2^61 there, and by a geometric series far below that in the phases
//! after: `i64` holds every price and reduced cost.
//!
//! Cost: near-linear on networks of small diameter such as invoice networks. A component of
//! large diameter whose optimal potentials span a long gradient (a long cycle with chords, say)
//! is the worst case: push-relabel builds the gradient a step at a time, in time quadratic in
//! its length. `chains` removes the plainest form of it, long chains and cycles.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// Costs are scaled by ALPHA·n, and the first phase runs at ε = 1/ALPHA of a unit of cost
/// (LEMON scales by 16 and divides ε by 16 each phase). At 1/8 the first phase, usually the
/// only one, is cheapest on invoice networks.
const ALPHA: i64 = 8;
/// Factor between the ε of two phases. The phases after the first are there for the few long
/// negative cycles the first leaves; halving ε finds the phase that removes them with less work
/// than a larger step (on the benchmark's three million obligations, 11 s instead of 17 s).
const EPSILON_FACTOR: i64 = 2;
/// Longest path searched before augmenting (LEMON's partial augment).
const PATH_LENGTH_MAX: usize = 4;
/// Relabels between two global price updates, per node.
const GLOBAL_UPDATE_FACTOR: u64 = 2;
/// Arc scans the early-end check may spend, per residual arc, before concluding the circulation
/// is not optimal yet. A successful check takes about one scan per arc.
const CERTIFY_SCANS_PER_ARC: u64 = 4;

/// A min-cost circulation problem on nodes `0..node_count`, validated by the caller: nodes in
/// range, capacities in `0..=CAPACITY_MAX`, costs within `±COST_ABS_MAX`.
pub(crate) struct Problem {
    pub node_count: usize,
    pub source: Vec<u32>,
    pub target: Vec<u32>,
    pub cap: Vec<i128>,
    pub cost: Vec<i64>,
}

impl Problem {
    pub fn with_capacity(node_count: usize, arc_count: usize) -> Problem {
        Problem {
            node_count,
            source: Vec::with_capacity(arc_count),
            target: Vec::with_capacity(arc_count),
            cap: Vec::with_capacity(arc_count),
            cost: Vec::with_capacity(arc_count),
        }
    }

    pub fn push(&mut self, tail: u32, head: u32, capacity: i128, cost: i64) {
        self.source.push(tail);
        self.target.push(head);
        self.cap.push(capacity);
        self.cost.push(cost);
    }
}

/// An optimal circulation (per arc, in the order pushed) and potentials (per node) under which
/// every arc is complementary-slack, with reduced cost `cost + potential[tail] - potential[head]`.
pub(crate) struct Solution {
    pub flow: Vec<i128>,
    pub potential: Vec<i64>,
}

pub(crate) fn solve(problem: &Problem) -> Solution {
    let n = problem.node_count;
    let m = problem.source.len();
    if n == 0 || m == 0 {
        return Solution { flow: vec![0; m], potential: vec![0; n] };
    }
    let mut g = Residual::new(problem);
    let potential = Refiner::new(&mut g).run();
    let flow = g.forward.iter().map(|&a| g.arcs[a as usize].res_reverse).collect();
    Solution { flow, potential }
}

/// The residual network in compressed rows: the arcs out of node u are
/// `first_out[u]..first_out[u + 1]`. Each original arc has a forward residual arc (residual
/// capacity cap - flow) and a backward one (residual capacity flow, opposite cost).
struct Residual {
    n: usize,
    first_out: Vec<u32>,
    arcs: Vec<ResArc>,
    scale: i64,
    /// The forward residual arc of each original arc.
    forward: Vec<u32>,
}

/// One residual arc, with a copy of its reverse arc's residual capacity, so that scanning a
/// node's arcs in either direction reads one contiguous run of memory.
#[derive(Clone, Copy, Default)]
struct ResArc {
    res: i128,
    res_reverse: i128,
    /// Scaled by `Residual::scale`; the reverse arc's cost is the opposite.
    cost: i64,
    target: u32,
    reverse: u32,
}

impl Residual {
    fn new(p: &Problem) -> Residual {
        let n = p.node_count;
        let m = p.source.len();
        let mut first_out = vec![0u32; n + 1];
        for k in 0..m {
            first_out[p.source[k] as usize + 1] += 1;
            first_out[p.target[k] as usize + 1] += 1;
        }
        for u in 0..n {
            first_out[u + 1] += first_out[u];
        }
        let mut next = first_out.clone();
        let mut arcs = vec![ResArc::default(); 2 * m];
        let mut forward = vec![0u32; m];
        let scale = n as i64 * ALPHA;
        for (k, forward) in forward.iter_mut().enumerate() {
            let (u, v) = (p.source[k] as usize, p.target[k] as usize);
            let f = next[u];
            next[u] += 1;
            let b = next[v];
            next[v] += 1;
            let (cap, cost) = (p.cap[k], p.cost[k] * scale);
            arcs[f as usize] = ResArc { res: cap, res_reverse: 0, cost, target: v as u32, reverse: b };
            arcs[b as usize] = ResArc { res: 0, res_reverse: cap, cost: -cost, target: u as u32, reverse: f };
            *forward = f;
        }
        Residual { n, first_out, arcs, scale, forward }
    }

    fn out(&self, u: usize) -> std::ops::Range<usize> {
        self.first_out[u] as usize..self.first_out[u + 1] as usize
    }

    /// Moves `delta` units along residual arc `a`.
    fn push(&mut self, a: usize, delta: i128) {
        let arc = &mut self.arcs[a];
        arc.res -= delta;
        arc.res_reverse += delta;
        let r = arc.reverse as usize;
        let rev = &mut self.arcs[r];
        rev.res += delta;
        rev.res_reverse -= delta;
    }
}

/// The state of the refine phases.
struct Refiner<'a> {
    g: &'a mut Residual,
    /// Prices, in scaled units.
    pi: Vec<i64>,
    excess: Vec<i128>,
    /// Per node, the arc to resume the search for an admissible arc from.
    next_out: Vec<u32>,
    /// Nodes with positive excess, first in first out (with stale entries skipped).
    active: VecDeque<u32>,
    epsilon: i64,
    relabels: u64,
    next_global_update: u64,
}

impl<'a> Refiner<'a> {
    fn new(g: &'a mut Residual) -> Refiner<'a> {
        let n = g.n;
        // The first phase runs at 1/ALPHA of a unit of cost at most: on invoice networks that one
        // phase usually ends optimal, while a coarser start costs a phase or two more.
        let max_cost = g.arcs.iter().map(|a| a.cost.abs()).max().unwrap_or(0);
        let epsilon = max_cost.min(g.scale) / ALPHA;
        let next_out = g.first_out[..n].to_vec();
        Refiner {
            g,
            pi: vec![0; n],
            excess: vec![0; n],
            next_out,
            active: VecDeque::new(),
            epsilon,
            relabels: 0,
            next_global_update: GLOBAL_UPDATE_FACTOR * n as u64,
        }
    }

    /// Runs phases until the circulation is optimal, and returns integer potentials proving it.
    fn run(mut self) -> Vec<i64> {
        let budget = CERTIFY_SCANS_PER_ARC * self.g.arcs.len() as u64;
        while self.epsilon > 1 {
            self.refine();
            if let Some(p) = certify(self.g, &self.pi, budget) {
                return p;
            }
            self.epsilon = (self.epsilon / EPSILON_FACTOR).max(1);
        }
        // All costs zero (ε = 0): the zero circulation is optimal. Otherwise the ε = 1 phase.
        if self.epsilon == 1 {
            self.refine();
        }
        // ε = 1 is below 1/n of a unit of cost: the circulation is optimal and has no negative
        // residual cycle, so this check ends and succeeds.
        certify(self.g, &self.pi, u64::MAX).unwrap_or_else(|| vec![0; self.g.n])
    }

    fn reduced_cost(&self, u: usize, a: usize) -> i64 {
        let arc = &self.g.arcs[a];
        arc.cost + self.pi[u] - self.pi[arc.target as usize]
    }

    /// One phase: saturation makes the circulation a 0-optimal pseudoflow, and pushes and
    /// relabels turn it back into an ε-optimal circulation.
    fn refine(&mut self) {
        let n = self.g.n;
        for u in 0..n {
            for a in self.g.out(u) {
                let delta = self.g.arcs[a].res;
                if delta > 0 && self.reduced_cost(u, a) < 0 {
                    let v = self.g.arcs[a].target as usize;
                    self.excess[u] -= delta;
                    self.excess[v] += delta;
                    self.g.push(a, delta);
                }
            }
        }
        self.active.clear();
        self.active.extend((0..n as u32).filter(|&u| self.excess[u as usize] > 0));
        self.next_out.copy_from_slice(&self.g.first_out[..n]);

        let mut path: Vec<(u32, u32)> = Vec::with_capacity(PATH_LENGTH_MAX);
        loop {
            while self.active.front().is_some_and(|&u| self.excess[u as usize] <= 0) {
                self.active.pop_front();
            }
            let Some(&start) = self.active.front() else { break };
            self.find_path(start as usize, &mut path);
            self.augment(start as usize, &path);
            path.clear();
            if self.relabels >= self.next_global_update {
                self.global_update();
                self.next_global_update = self.relabels + GLOBAL_UPDATE_FACTOR * n as u64;
            }
        }
    }

    /// Extends an admissible path (pairs of a node and the arc out of it) from `start` until it
    /// reaches a node with a deficit or PATH_LENGTH_MAX arcs, relabelling dead ends.
    fn find_path(&mut self, start: usize, path: &mut Vec<(u32, u32)>) {
        let mut tip = start;
        'extend: while path.len() < PATH_LENGTH_MAX && self.excess[tip] >= 0 {
            let pi_tip = self.pi[tip];
            let mut min_rc = i64::MAX;
            let end = self.g.first_out[tip + 1] as usize;
            for a in self.next_out[tip] as usize..end {
                let arc = &self.g.arcs[a];
                if arc.res > 0 {
                    let v = arc.target as usize;
                    let rc = arc.cost + pi_tip - self.pi[v];
                    if rc < 0 {
                        self.next_out[tip] = a as u32;
                        path.push((tip as u32, a as u32));
                        tip = v;
                        continue 'extend;
                    }
                    min_rc = min_rc.min(rc);
                }
            }
            // No admissible arc: lower tip's price just enough to make one, counting the way
            // back along the path as an arc.
            if let Some(&(u, a)) = path.last() {
                min_rc = min_rc.min(-self.g.arcs[a as usize].cost + pi_tip - self.pi[u as usize]);
            }
            for a in self.g.first_out[tip] as usize..self.next_out[tip] as usize {
                if self.g.arcs[a].res > 0 {
                    min_rc = min_rc.min(self.reduced_cost(tip, a));
                }
            }
            // A node with excess has a residual arc (the flow came in somewhere) and a node on
            // the path has the way back, so min_rc is finite; saturating keeps it panic-free.
            self.pi[tip] = pi_tip.saturating_sub(min_rc.saturating_add(self.epsilon));
            self.next_out[tip] = self.g.first_out[tip];
            self.relabels += 1;
            if let Some((u, _)) = path.pop() {
                tip = u as usize;
            }
        }
    }

    fn augment(&mut self, start: usize, path: &[(u32, u32)]) {
        let mut u = start;
        for &(_, a) in path {
            let a = a as usize;
            let v = self.g.arcs[a].target as usize;
            let delta = self.g.arcs[a].res.min(self.excess[u]);
            if delta <= 0 {
                break;
            }
            self.g.push(a, delta);
            self.excess[u] -= delta;
            self.excess[v] += delta;
            if self.excess[v] > 0 && self.excess[v] <= delta {
                self.active.push_back(v as u32);
            }
            u = v;
        }
    }

    /// Global price update: lowers each node's price by ε times its distance (in steps of ε of
    /// reduced cost, through residual arcs) to the nearest node with a deficit, capped at the
    /// distance that covers all the excess. Admissible paths towards deficits then appear at once
    /// instead of through many single relabels.
    fn global_update(&mut self) {
        const UNREACHED: u64 = u64::MAX;
        let n = self.g.n;
        let mut rank = vec![UNREACHED; n];
        let mut heap: BinaryHeap<Reverse<(u64, u32)>> = BinaryHeap::new();
        let mut excess_left: i128 = 0;
        for (u, (rank, &excess)) in rank.iter_mut().zip(&self.excess).enumerate() {
            if excess < 0 {
                *rank = 0;
                heap.push(Reverse((0, u as u32)));
            } else {
                excess_left += excess;
            }
        }
        if excess_left == 0 {
            return;
        }
        let mut reached = 0;
        while let Some(Reverse((r, u))) = heap.pop() {
            let u = u as usize;
            if rank[u] != r {
                continue;
            }
            reached = r;
            // Nodes v with a residual arc v -> u: the reverses of the arcs u -> v.
            let pi_u = self.pi[u];
            for a in self.g.out(u) {
                let arc = &self.g.arcs[a];
                if arc.res_reverse > 0 {
                    let v = arc.target as usize;
                    if r < rank[v] {
                        // ε-optimality keeps this reduced cost >= -ε, so the step is >= 0.
                        let rc = -arc.cost + self.pi[v] - pi_u;
                        let step = (rc / self.epsilon + 1).max(0) as u64;
                        let new_rank = r.saturating_add(step);
                        if new_rank < rank[v] {
                            rank[v] = new_rank;
                            heap.push(Reverse((new_rank, v as u32)));
                        }
                    }
                }
            }
            if self.excess[u] > 0 {
                excess_left -= self.excess[u];
                if excess_left <= 0 {
                    break;
                }
            }
        }
        for (u, &r) in rank.iter().enumerate() {
            let k = r.min(reached);
            if k > 0 {
                // k is at most the ε-distance of a path to a deficit: within the price bound.
                self.pi[u] = self.pi[u].saturating_sub(self.epsilon.saturating_mul(k as i64));
                self.next_out[u] = self.g.first_out[u];
            }
        }
    }
}

/// Integer potentials proving the current circulation optimal, if it is. The prices are rounded
/// to the nearest unit of cost, which leaves every residual reduced cost >= -1 (ε < 1 unit), then
/// repaired by label-correcting shortest paths (Bellman-Ford with a queue, every node starting at
/// distance 0). Without a negative residual cycle this ends; with one it would not, and stops
/// with None after `scans_max` arc scans.
fn certify(g: &Residual, pi: &[i64], scans_max: u64) -> Option<Vec<i64>> {
    let n = g.n;
    let half = g.scale / 2;
    let mut p: Vec<i64> = pi.iter().map(|&x| (x + half).div_euclid(g.scale)).collect();
    let mut d = vec![0i64; n];
    let mut queued = vec![true; n];
    let mut queue: VecDeque<u32> = (0..n as u32).collect();
    let mut scans = 0u64;
    while let Some(u) = queue.pop_front() {
        let u = u as usize;
        queued[u] = false;
        let out = g.out(u);
        scans = scans.saturating_add(out.len() as u64);
        if scans > scans_max {
            return None;
        }
        for arc in &g.arcs[out] {
            if arc.res > 0 {
                let v = arc.target as usize;
                let dv = d[u] + arc.cost / g.scale + p[u] - p[v];
                if dv < d[v] {
                    d[v] = dv;
                    if !queued[v] {
                        queued[v] = true;
                        queue.push_back(v as u32);
                    }
                }
            }
        }
    }
    for (x, dx) in p.iter_mut().zip(&d) {
        *x += dx;
    }
    Some(p)
}

/// The tightest potentials for an optimal `flow`: given potentials `p` under which every
/// residual arc has reduced cost >= 0, Dijkstra on those reduced costs, each node starting at
/// -p(v) (the reduced cost of a 0-cost arc to it from a virtual source), gives
/// D(v) = p(v) + label(v): the cost of the cheapest residual path ending at v, or 0. These are
/// potentials too, and lie in `-(n - 1) * max |cost| ..= 0`.
pub(crate) fn tighten(problem: &Problem, flow: &[i128], p: &[i64]) -> Vec<i64> {
    let n = problem.node_count;
    // The residual arcs in compressed rows, as (head, cost).
    let mut first_out = vec![0u32; n + 1];
    let residual = |k: usize| (flow[k] < problem.cap[k], flow[k] > 0);
    for k in 0..problem.source.len() {
        let (forward, backward) = residual(k);
        first_out[problem.source[k] as usize + 1] += u32::from(forward);
        first_out[problem.target[k] as usize + 1] += u32::from(backward);
    }
    for u in 0..n {
        first_out[u + 1] += first_out[u];
    }
    let mut next = first_out.clone();
    let mut out = vec![(0u32, 0i64); first_out[n] as usize];
    for k in 0..problem.source.len() {
        let (t, h, cost) = (problem.source[k], problem.target[k], problem.cost[k]);
        let (forward, backward) = residual(k);
        if forward {
            out[next[t as usize] as usize] = (h, cost);
            next[t as usize] += 1;
        }
        if backward {
            out[next[h as usize] as usize] = (t, -cost);
            next[h as usize] += 1;
        }
    }
    drop(next);
    let mut label: Vec<i64> = p.iter().map(|&x| -x).collect();
    let mut done = vec![false; n];
    let mut heap: BinaryHeap<Reverse<(i64, u32)>> =
        (0..n as u32).map(|u| Reverse((label[u as usize], u))).collect();
    while let Some(Reverse((l, u))) = heap.pop() {
        let u = u as usize;
        if done[u] || l != label[u] {
            continue;
        }
        done[u] = true;
        for &(v, cost) in &out[first_out[u] as usize..first_out[u + 1] as usize] {
            let v = v as usize;
            let lv = l + cost + p[u] - p[v];
            if lv < label[v] {
                label[v] = lv;
                heap.push(Reverse((lv, v as u32)));
            }
        }
    }
    p.iter().zip(&label).map(|(&x, &l)| x + l).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Solves pseudo-random problems with costs of both signs and checks optimality by
    /// complementary slackness, and the range of the potentials.
    #[test]
    fn optimal_with_tight_potentials() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        for _ in 0..500 {
            let n = 1 + next(12) as usize;
            let m = next(40) as usize;
            let mut p = Problem::with_capacity(n, m);
            for _ in 0..m {
                let cost = next(7) as i64 - 4;
                p.push(next(n as u64) as u32, next(n as u64) as u32, next(20) as i128, cost);
            }
            let arcs: Vec<(u32, u32, i128, i64)> =
                (0..m).map(|k| (p.source[k], p.target[k], p.cap[k], p.cost[k])).collect();
            let s = solve(&p);
            let potential = tighten(&p, &s.flow, &s.potential);
            let s = Solution { potential, ..s };
            let mut excess = vec![0i128; n];
            for (&(t, h, cap, cost), &f) in arcs.iter().zip(&s.flow) {
                assert!((0..=cap).contains(&f));
                excess[t as usize] -= f;
                excess[h as usize] += f;
                let rc = cost + s.potential[t as usize] - s.potential[h as usize];
                assert!(f == cap || rc >= 0, "{arcs:?}");
                assert!(f == 0 || rc <= 0, "{arcs:?}");
            }
            assert!(excess.iter().all(|&e| e == 0));
            let bound = (n as i64 - 1) * 4;
            assert!(s.potential.iter().all(|&x| (-bound..=0).contains(&x)), "{:?}", s.potential);
        }
    }
}
