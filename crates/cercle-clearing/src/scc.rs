//! Strongly connected components by Tarjan's algorithm, iterative so that a path of ten million
//! nodes needs no deep call stack.

/// The components of a graph.
pub(crate) struct Components {
    /// The component of each node. Components are numbered in the order Tarjan completes them,
    /// which is a reverse topological order: an arc between two components goes from the
    /// higher number to the lower.
    pub of: Vec<u32>,
    /// Every node once, component by component in increasing number.
    pub order: Vec<u32>,
}

const UNVISITED: u32 = u32::MAX;

/// The components of the graph on nodes `0..node_count` with the given arcs (tail, head), which
/// must be in range. `arcs` is iterated twice.
pub(crate) fn components(node_count: usize, arcs: impl Iterator<Item = (u32, u32)> + Clone) -> Components {
    // Adjacency in compressed rows: the heads of node v's arcs are heads[start[v]..start[v + 1]].
    let mut start = vec![0u32; node_count + 1];
    for (tail, _) in arcs.clone() {
        start[tail as usize + 1] += 1;
    }
    for v in 0..node_count {
        start[v + 1] += start[v];
    }
    let mut fill = start.clone();
    let mut heads = vec![0u32; start[node_count] as usize];
    for (tail, head) in arcs {
        heads[fill[tail as usize] as usize] = head;
        fill[tail as usize] += 1;
    }
    drop(fill);

    let mut index = vec![UNVISITED; node_count];
    let mut low = vec![0u32; node_count];
    let mut of = vec![UNVISITED; node_count];
    let mut order = Vec::with_capacity(node_count);
    // Nodes visited but not yet in a component; `of` is UNVISITED exactly for those (and for
    // unvisited nodes), which serves as the on-stack flag.
    let mut stack: Vec<u32> = Vec::new();
    // The DFS path: a node and the position of its next arc to explore.
    let mut path: Vec<(u32, u32)> = Vec::new();
    let mut visited = 0u32;
    let mut component = 0u32;
    for root in 0..node_count as u32 {
        if index[root as usize] != UNVISITED {
            continue;
        }
        index[root as usize] = visited;
        low[root as usize] = visited;
        visited += 1;
        stack.push(root);
        path.push((root, start[root as usize]));
        while let Some((v, next)) = path.last_mut() {
            let v = *v as usize;
            if *next < start[v + 1] {
                let w = heads[*next as usize] as usize;
                *next += 1;
                if index[w] == UNVISITED {
                    index[w] = visited;
                    low[w] = visited;
                    visited += 1;
                    stack.push(w as u32);
                    path.push((w as u32, start[w]));
                } else if of[w] == UNVISITED {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            path.pop();
            if low[v] == index[v] {
                while let Some(w) = stack.pop() {
                    of[w as usize] = component;
                    order.push(w);
                    if w as usize == v {
                        break;
                    }
                }
                component += 1;
            }
            if let Some(&(parent, _)) = path.last() {
                low[parent as usize] = low[parent as usize].min(low[v]);
            }
        }
    }
    Components { of, order }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computes the components and compares them as sets of nodes, in completion order.
    fn check(node_count: usize, arcs: &[(u32, u32)], expected: &[&[u32]]) {
        let c = components(node_count, arcs.iter().copied());
        let mut groups: Vec<Vec<u32>> = c
            .order
            .chunk_by(|&a, &b| c.of[a as usize] == c.of[b as usize])
            .map(|g| {
                let mut g = g.to_vec();
                g.sort_unstable();
                g
            })
            .collect();
        assert_eq!(groups.len(), expected.len(), "{groups:?}");
        for (i, g) in groups.iter_mut().enumerate() {
            assert!(g.iter().all(|&v| c.of[v as usize] == i as u32));
        }
        let expected: Vec<Vec<u32>> = expected.iter().map(|g| g.to_vec()).collect();
        assert_eq!(groups, expected);
        // Arcs between components go from a higher number to a lower one.
        for &(t, h) in arcs {
            assert!(c.of[t as usize] >= c.of[h as usize]);
        }
    }

    #[test]
    fn finds_components_in_reverse_topological_order() {
        check(0, &[], &[]);
        check(1, &[], &[&[0]]);
        check(1, &[(0, 0)], &[&[0]]);
        check(3, &[(0, 1), (1, 2)], &[&[2], &[1], &[0]]);
        check(3, &[(0, 1), (1, 2), (2, 0)], &[&[0, 1, 2]]);
        check(
            6,
            &[(0, 1), (1, 0), (1, 2), (2, 3), (3, 4), (4, 2), (5, 4), (3, 3)],
            &[&[2, 3, 4], &[0, 1], &[5]],
        );
    }

    #[test]
    fn a_long_path_and_a_long_cycle_need_no_deep_stack() {
        let n = 1_000_000u32;
        let path: Vec<(u32, u32)> = (0..n - 1).map(|v| (v, v + 1)).collect();
        let c = components(n as usize, path.iter().copied());
        assert_eq!(c.of[0], n - 1);
        assert_eq!(c.of[(n - 1) as usize], 0);
        let cycle: Vec<(u32, u32)> = (0..n).map(|v| (v, (v + 1) % n)).collect();
        let c = components(n as usize, cycle.iter().copied());
        assert!(c.of.iter().all(|&x| x == 0));
    }
}
