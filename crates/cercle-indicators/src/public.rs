//! Statistical confidentiality ("secret statistique"), as official statistics apply it to
//! tables of business data, for `--public`.
//!
//! **Cells.** Every additive figure of a period is a cell, for the whole circuit and for
//! each group: the counts (transfers, firms, active firms, stuck firms), the amounts
//! (turnover, cleared, stuck amounts, net internal debt), and the amounts a published ratio
//! would reveal once multiplied by a published turnover (what was paid within the circular
//! core, to firms that paid back, within the commune, within the territory; and the sum of
//! positive balances behind velocity). So is every flow between two groups.
//!
//! **Primary rule.** An amount cell is suppressed when it is not zero and fewer than
//! `CONFIDENTIAL_FIRMS_MIN` (3) firms make it, or one firm makes
//! `CONFIDENTIAL_DOMINANCE_PERCENT` (85%) of it or more; a flow when that holds of its payers
//! or of its payees. A group of fewer than 3 firms is suppressed whole; so is a period of a
//! circuit of fewer than 3 firms. Counts are not confidential by themselves.
//!
//! **Secondary suppression.** The published figures are tied by sums: the groups add up to
//! the circuit, a group's flows add up to its turnover, and (grouping by commune or
//! territory) a group's flow to itself is what its firms paid within their commune or
//! territory. A suppressed cell that these sums determine could be recomputed, so more cells
//! are suppressed until none is determined: first, any sum with a single suppressed term
//! gets a second (the smallest other published term, not the circuit's total if another
//! will do); then exact elimination over the sums finds any suppressed cell that a
//! combination of sums would still give, and a term of one of its sums is suppressed too.
//!
//! A ratio is suppressed with its numerator or its denominator; clearable debt follows the
//! primary rule on its debtors' open debts. The output marks a suppressed value as such,
//! never as zero.

use std::collections::{BTreeMap, HashMap};

use crate::measure::{Cell, Measure};
use crate::{CONFIDENTIAL_DOMINANCE_PERCENT, CONFIDENTIAL_FIRMS_MIN, PeriodReport};

/// The additive figures of a scope (the circuit, or a group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Add {
    Transfers,
    TurnoverMinor,
    ClearedMinor,
    Firms,
    ActiveFirms,
    StuckDebtors,
    StuckDebtorsMinor,
    StuckCreditors,
    StuckCreditorsMinor,
    NidMinor,
    CorePaid,
    ReciprocalPaid,
    LocalPaid,
    TerritoryPaid,
    PositiveDays,
}

const ADDS: usize = 15;

/// The figures of one scope, with each firm's contribution to the amounts.
pub(crate) struct ScopeCells {
    firms: usize,
    values: [i128; ADDS],
    /// `None` for counts, which the primary rule leaves alone.
    contributions: [Option<Vec<i128>>; ADDS],
    /// Each debtor's open debt in the obligations clearable debt is computed on.
    pub clearable: Vec<i128>,
}

impl ScopeCells {
    pub fn new(firms: usize) -> ScopeCells {
        ScopeCells { firms, values: [0; ADDS], contributions: Default::default(), clearable: Vec::new() }
    }

    pub fn set(&mut self, add: Add, value: i128, contributions: Option<Vec<i128>>) {
        self.values[add as usize] = value;
        self.contributions[add as usize] = contributions;
    }
}

/// A flow between two groups, with what each payer paid and each payee received of it.
pub(crate) struct FlowCell {
    pub from: usize,
    pub to: usize,
    pub value: i128,
    pub payers: Vec<(u32, i128)>,
    pub payees: Vec<(u32, i128)>,
}

impl FlowCell {
    pub fn new(from: usize, to: usize) -> FlowCell {
        FlowCell { from, to, value: 0, payers: Vec::new(), payees: Vec::new() }
    }
}

/// Everything of one period the rules look at.
pub(crate) struct PeriodCells {
    pub total: ScopeCells,
    pub groups: Vec<ScopeCells>,
    pub flows: Vec<FlowCell>,
    /// The figure a group's flow to itself equals, if any (grouping by commune: what its
    /// firms paid within their commune).
    pub diagonal: Option<Add>,
}

/// The primary rule on a cell made of `contributions` (each firm's, positive).
pub(crate) fn confidential(contributions: &[i128]) -> bool {
    let value: i128 = contributions.iter().sum();
    if value == 0 {
        return false;
    }
    let largest = contributions.iter().copied().max().unwrap_or(0);
    contributions.iter().filter(|&&c| c != 0).count() < CONFIDENTIAL_FIRMS_MIN
        || largest * 100 >= CONFIDENTIAL_DOMINANCE_PERCENT * value
}

/// Sums each firm's part of a flow.
fn per_firm(parts: &[(u32, i128)]) -> Vec<i128> {
    let mut by: BTreeMap<u32, i128> = BTreeMap::new();
    for &(f, a) in parts {
        *by.entry(f).or_insert(0) += a;
    }
    by.into_values().collect()
}

/// The table of one period: cells, which are suppressed, and the sums that tie them.
struct Table {
    values: Vec<i128>,
    suppressed: Vec<bool>,
    /// Cells of the circuit's totals: suppressed for secondary reasons only as a last resort.
    is_total: Vec<bool>,
    /// Each sum as terms (cell, coefficient) adding up to zero.
    relations: Vec<Vec<(usize, i128)>>,
}

impl Table {
    /// Suppresses more cells until no suppressed cell is determined by the relations.
    fn protect(&mut self) {
        loop {
            self.protect_singletons();
            match determined(&self.relations, &self.suppressed) {
                None => return,
                Some(cell) => {
                    if !self.suppress_partner(cell) {
                        // No published term shares a sum with it: it cannot be determined
                        // (elimination found it so only through an overflow); stop there.
                        return;
                    }
                }
            }
        }
    }

    /// Every sum with exactly one suppressed term gets a second one.
    fn protect_singletons(&mut self) {
        loop {
            let mut changed = false;
            for r in 0..self.relations.len() {
                let unknown: Vec<usize> =
                    self.relations[r].iter().map(|t| t.0).filter(|&c| self.suppressed[c]).collect();
                if unknown.len() == 1 {
                    changed |= self.suppress_in(r);
                }
            }
            if !changed {
                return;
            }
        }
    }

    /// Suppresses the best published term of relation `r`; false when it has none.
    fn suppress_in(&mut self, r: usize) -> bool {
        let best = self.relations[r]
            .iter()
            .map(|t| t.0)
            .filter(|&c| !self.suppressed[c])
            .min_by_key(|&c| (self.is_total[c], self.values[c] == 0, self.values[c].abs(), c));
        match best {
            Some(c) => {
                self.suppressed[c] = true;
                true
            }
            None => false,
        }
    }

    /// Suppresses a published term of some relation of `cell`: the best over its relations.
    fn suppress_partner(&mut self, cell: usize) -> bool {
        let best = self
            .relations
            .iter()
            .filter(|rel| rel.iter().any(|t| t.0 == cell))
            .flat_map(|rel| rel.iter().map(|t| t.0))
            .filter(|&c| !self.suppressed[c])
            .min_by_key(|&c| (self.is_total[c], self.values[c] == 0, self.values[c].abs(), c));
        match best {
            Some(c) => {
                self.suppressed[c] = true;
                true
            }
            None => false,
        }
    }
}

/// The first suppressed cell that the relations determine (a combination of them gives its
/// value from published cells alone), by exact elimination over the suppressed cells.
fn determined(relations: &[Vec<(usize, i128)>], suppressed: &[bool]) -> Option<usize> {
    // Rows over the suppressed cells only; the published terms are constants.
    let mut pivots: BTreeMap<usize, BTreeMap<usize, i128>> = BTreeMap::new();
    for relation in relations {
        let mut row: BTreeMap<usize, i128> = BTreeMap::new();
        for &(c, k) in relation {
            if suppressed[c] {
                *row.entry(c).or_insert(0) += k;
            }
        }
        row.retain(|_, k| *k != 0);
        // Eliminate the existing pivots from the new row.
        let cols: Vec<usize> = row.keys().copied().collect();
        for col in cols {
            let Some(k) = row.get(&col).copied() else { continue };
            let Some(p) = pivots.get(&col) else { continue };
            match combine(&row, k, p, p[&col]) {
                Some(r) => row = r,
                None => return row.keys().next().copied(),
            }
        }
        let Some((&pivot, &kp)) = row.iter().next() else { continue };
        // Keep the rows reduced: eliminate the new pivot from every other row.
        let others: Vec<usize> = pivots.keys().copied().collect();
        for other in others {
            let Some(k) = pivots[&other].get(&pivot).copied() else { continue };
            match combine(&pivots[&other], k, &row, kp) {
                Some(r) => {
                    pivots.insert(other, r);
                }
                None => return Some(other),
            }
        }
        pivots.insert(pivot, row);
    }
    pivots.iter().find(|(_, row)| row.len() == 1).map(|(&col, _)| col)
}

/// `row * kp - pivot_row * k`, divided by the gcd of its entries; `None` on overflow.
fn combine(
    row: &BTreeMap<usize, i128>,
    k: i128,
    pivot_row: &BTreeMap<usize, i128>,
    kp: i128,
) -> Option<BTreeMap<usize, i128>> {
    let mut out: BTreeMap<usize, i128> = BTreeMap::new();
    for (&c, &v) in row {
        out.insert(c, v.checked_mul(kp)?);
    }
    for (&c, &v) in pivot_row {
        let e = out.entry(c).or_insert(0);
        *e = e.checked_sub(v.checked_mul(k)?)?;
    }
    out.retain(|_, v| *v != 0);
    let g = out.values().fold(0i128, |g, &v| gcd(g, v.abs()));
    if g > 1 {
        for v in out.values_mut() {
            *v /= g;
        }
    }
    // A positive leading coefficient, so that equal rows look equal.
    if out.values().next().is_some_and(|&v| v < 0) {
        for v in out.values_mut() {
            *v = -*v;
        }
    }
    Some(out)
}

fn gcd(a: i128, b: i128) -> i128 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The fields of a scope's measures that an additive cell stands behind.
const ADD_MEASURES: [(Add, Option<Measure>); ADDS] = [
    (Add::Transfers, Some(Measure::Transfers)),
    (Add::TurnoverMinor, Some(Measure::TurnoverMinor)),
    (Add::ClearedMinor, Some(Measure::ClearedMinor)),
    (Add::Firms, Some(Measure::Firms)),
    (Add::ActiveFirms, Some(Measure::ActiveFirms)),
    (Add::StuckDebtors, Some(Measure::StuckDebtors)),
    (Add::StuckDebtorsMinor, Some(Measure::StuckDebtorsMinor)),
    (Add::StuckCreditors, Some(Measure::StuckCreditors)),
    (Add::StuckCreditorsMinor, Some(Measure::StuckCreditorsMinor)),
    (Add::NidMinor, Some(Measure::NidMinor)),
    (Add::CorePaid, None),
    (Add::ReciprocalPaid, None),
    (Add::LocalPaid, None),
    (Add::TerritoryPaid, None),
    (Add::PositiveDays, None),
];

/// The ratios and what they are suppressed with.
const RATIOS: [(Measure, &[Add]); 8] = [
    (Measure::ActiveShare, &[Add::ActiveFirms, Add::Firms]),
    (Measure::Velocity, &[Add::TurnoverMinor, Add::PositiveDays]),
    (Measure::GiniTurnover, &[Add::TurnoverMinor]),
    (Measure::TopDecileShare, &[Add::TurnoverMinor]),
    (Measure::SccShare, &[Add::TurnoverMinor, Add::CorePaid]),
    (Measure::Reciprocity, &[Add::TurnoverMinor, Add::ReciprocalPaid]),
    (Measure::LocalShare, &[Add::TurnoverMinor, Add::LocalPaid]),
    (Measure::TerritoryShare, &[Add::TurnoverMinor, Add::TerritoryPaid]),
];

/// Applies the rules to a period's report.
pub(crate) fn apply(cells: &PeriodCells, report: &mut PeriodReport) {
    let scopes: Vec<&ScopeCells> = std::iter::once(&cells.total).chain(&cells.groups).collect();
    let cell_of = |scope: usize, add: Add| scope * ADDS + add as usize;
    let flow_base = scopes.len() * ADDS;
    let count = flow_base + cells.flows.len();
    let mut table = Table {
        values: vec![0; count],
        suppressed: vec![false; count],
        is_total: (0..count).map(|c| c < ADDS).collect(),
        relations: Vec::new(),
    };
    let tiny = |s: &ScopeCells| s.firms < CONFIDENTIAL_FIRMS_MIN;

    // Values and the primary rule.
    for (s, scope) in scopes.iter().enumerate() {
        for a in 0..ADDS {
            let c = s * ADDS + a;
            table.values[c] = scope.values[a];
            table.suppressed[c] = tiny(scope) || scope.contributions[a].as_deref().is_some_and(confidential);
        }
    }
    for (k, flow) in cells.flows.iter().enumerate() {
        let c = flow_base + k;
        table.values[c] = flow.value;
        table.suppressed[c] = confidential(&per_firm(&flow.payers)) || confidential(&per_firm(&flow.payees));
    }
    if tiny(&cells.total) {
        table.suppressed.iter_mut().for_each(|s| *s = true);
    }

    // The sums.
    for (a, _) in ADD_MEASURES {
        let mut rel = vec![(cell_of(0, a), -1)];
        rel.extend((1..scopes.len()).map(|s| (cell_of(s, a), 1)));
        if rel.len() > 1 {
            table.relations.push(rel);
        }
    }
    let mut rows: HashMap<usize, Vec<(usize, i128)>> = HashMap::new();
    for (k, flow) in cells.flows.iter().enumerate() {
        rows.entry(flow.from)
            .or_insert_with(|| vec![(cell_of(flow.from + 1, Add::TurnoverMinor), -1)])
            .push((flow_base + k, 1));
        if let Some(d) = cells.diagonal
            && flow.from == flow.to
        {
            table.relations.push(vec![(cell_of(flow.from + 1, d), -1), (flow_base + k, 1)]);
        }
    }
    let mut rows: Vec<(usize, Vec<(usize, i128)>)> = rows.into_iter().collect();
    rows.sort_by_key(|r| r.0);
    table.relations.extend(rows.into_iter().map(|r| r.1));

    table.protect();

    // Back to the report.
    let suppressed = |s: usize, a: Add| table.suppressed[cell_of(s, a)];
    for (s, scope) in scopes.iter().enumerate() {
        let measures = if s == 0 { &mut report.totals } else { &mut report.groups[s - 1].measures };
        for (a, measure) in ADD_MEASURES {
            if let Some(m) = measure
                && suppressed(s, a)
            {
                measures.set(m, Cell::Suppressed);
            }
        }
        for (m, behind) in RATIOS {
            if behind.iter().any(|&a| suppressed(s, a)) {
                measures.set(m, Cell::Suppressed);
            }
        }
        if tiny(scope) || tiny(&cells.total) {
            measures.set(Measure::CreditUse, Cell::Suppressed);
        }
        if tiny(scope) || tiny(&cells.total) || confidential(&scope.clearable) {
            measures.set(Measure::ClearableMinor, Cell::Suppressed);
        }
    }
    for (k, flow) in report.flows.iter_mut().enumerate() {
        if table.suppressed[flow_base + k] {
            flow.turnover_minor = Cell::Suppressed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primary_rule_counts_firms_and_dominance() {
        assert!(!confidential(&[]), "nothing to hide in zero");
        assert!(confidential(&[5, 5]));
        assert!(!confidential(&[5, 5, 5]));
        assert!(confidential(&[85, 10, 5]), "85% is dominance");
        assert!(!confidential(&[84, 10, 6]));
    }

    #[test]
    fn elimination_finds_what_a_combination_of_sums_gives() {
        // a + b = k1, b + c = k2, a - c = k3: with a, b, c suppressed, rank 2, none determined.
        let rel = vec![
            vec![(0, 1), (1, 1), (3, -1)],
            vec![(1, 1), (2, 1), (4, -1)],
            vec![(0, 1), (2, -1), (5, -1)],
        ];
        let sup = [true, true, true, false, false, false];
        assert_eq!(determined(&rel, &sup), None);
        // a + b = k1, a - b = k2: both determined.
        let rel = vec![vec![(0, 1), (1, 1), (2, -1)], vec![(0, 1), (1, -1), (3, -1)]];
        assert_eq!(determined(&rel, &[true, true, false, false]), Some(0));
        // A single suppressed term.
        let rel = vec![vec![(0, 1), (1, 1), (2, -1)]];
        assert_eq!(determined(&rel, &[true, false, false]), Some(0));
    }

    #[test]
    fn a_lone_suppressed_term_gets_a_partner() {
        // total = g1 + g2 + g3, with g1 suppressed: the smallest of g2, g3 goes too.
        let mut t = Table {
            values: vec![60, 10, 30, 20],
            suppressed: vec![false, true, false, false],
            is_total: vec![true, false, false, false],
            relations: vec![vec![(0, -1), (1, 1), (2, 1), (3, 1)]],
        };
        t.protect();
        assert_eq!(t.suppressed, [false, true, false, true]);
    }
}
