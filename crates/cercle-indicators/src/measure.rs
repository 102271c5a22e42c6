//! The measures of a period or a group, and their values: counts, amounts and exact ratios,
//! or "no data" (a ratio whose denominator is zero), or suppressed (`--public`). Never NaN:
//! a ratio is a pair of integers until it is printed.

/// An exact ratio `num / den`, `den > 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    pub num: i128,
    pub den: i128,
}

impl Ratio {
    /// `num / den`, or `None` ("no data") when `den` is zero.
    pub fn new(num: i128, den: i128) -> Option<Ratio> {
        match den {
            0 => None,
            d if d < 0 => Some(Ratio { num: -num, den: -d }),
            d => Some(Ratio { num, den: d }),
        }
    }

    /// The value as a float, for printing and charts only.
    pub fn value(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// Exact comparison with another ratio.
    pub fn same_as(self, other: Ratio) -> bool {
        // Both numerators and denominators are far below 2^63 in practice; the products are
        // computed in i128 with a check rather than assumed.
        match (self.num.checked_mul(other.den), other.num.checked_mul(self.den)) {
            (Some(a), Some(b)) => a == b,
            _ => self.value() == other.value(),
        }
    }
}

/// One value of a measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// A count or an amount in minor units.
    Int(i128),
    Ratio(Ratio),
    /// A ratio whose denominator is zero: nothing to measure (no turnover, no firm...).
    NoData,
    /// Withheld by the rules of statistical confidentiality (`--public`).
    Suppressed,
}

impl Cell {
    pub fn ratio(num: i128, den: i128) -> Cell {
        Ratio::new(num, den).map_or(Cell::NoData, Cell::Ratio)
    }

    pub fn int(&self) -> Option<i128> {
        match self {
            Cell::Int(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_ratio(&self) -> Option<Ratio> {
        match self {
            Cell::Ratio(r) => Some(*r),
            _ => None,
        }
    }

    /// The value as a float (an integer or a ratio), `None` when there is none.
    pub fn value(&self) -> Option<f64> {
        match self {
            Cell::Int(v) => Some(*v as f64),
            Cell::Ratio(r) => Some(r.value()),
            Cell::NoData | Cell::Suppressed => None,
        }
    }

    pub fn is_suppressed(&self) -> bool {
        matches!(self, Cell::Suppressed)
    }
}

/// What a measure's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Count,
    /// Minor units (the field name ends in `_minor`).
    Amount,
    Ratio,
}

/// Every measure of a period and of a group, in output order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Measure {
    Transfers,
    TurnoverMinor,
    ClearedMinor,
    Firms,
    ActiveFirms,
    ActiveShare,
    Velocity,
    GiniTurnover,
    TopDecileShare,
    CreditUse,
    StuckDebtors,
    StuckDebtorsMinor,
    StuckCreditors,
    StuckCreditorsMinor,
    SccShare,
    Reciprocity,
    LocalShare,
    TerritoryShare,
    NidMinor,
    ClearableMinor,
}

/// How many measures there are.
pub const MEASURES: usize = 20;

impl Measure {
    pub const ALL: [Measure; MEASURES] = [
        Measure::Transfers,
        Measure::TurnoverMinor,
        Measure::ClearedMinor,
        Measure::Firms,
        Measure::ActiveFirms,
        Measure::ActiveShare,
        Measure::Velocity,
        Measure::GiniTurnover,
        Measure::TopDecileShare,
        Measure::CreditUse,
        Measure::StuckDebtors,
        Measure::StuckDebtorsMinor,
        Measure::StuckCreditors,
        Measure::StuckCreditorsMinor,
        Measure::SccShare,
        Measure::Reciprocity,
        Measure::LocalShare,
        Measure::TerritoryShare,
        Measure::NidMinor,
        Measure::ClearableMinor,
    ];

    /// The field name in JSON and CSV.
    pub fn name(self) -> &'static str {
        match self {
            Measure::Transfers => "transfers",
            Measure::TurnoverMinor => "turnover_minor",
            Measure::ClearedMinor => "cleared_minor",
            Measure::Firms => "firms",
            Measure::ActiveFirms => "active_firms",
            Measure::ActiveShare => "active_share",
            Measure::Velocity => "velocity",
            Measure::GiniTurnover => "gini_turnover",
            Measure::TopDecileShare => "top_decile_share",
            Measure::CreditUse => "credit_use",
            Measure::StuckDebtors => "stuck_debtors",
            Measure::StuckDebtorsMinor => "stuck_debtors_minor",
            Measure::StuckCreditors => "stuck_creditors",
            Measure::StuckCreditorsMinor => "stuck_creditors_minor",
            Measure::SccShare => "scc_share",
            Measure::Reciprocity => "reciprocity",
            Measure::LocalShare => "local_share",
            Measure::TerritoryShare => "territory_share",
            Measure::NidMinor => "nid_minor",
            Measure::ClearableMinor => "clearable_minor",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Measure::Transfers
            | Measure::Firms
            | Measure::ActiveFirms
            | Measure::StuckDebtors
            | Measure::StuckCreditors => Kind::Count,
            Measure::TurnoverMinor
            | Measure::ClearedMinor
            | Measure::StuckDebtorsMinor
            | Measure::StuckCreditorsMinor
            | Measure::NidMinor
            | Measure::ClearableMinor => Kind::Amount,
            Measure::ActiveShare
            | Measure::Velocity
            | Measure::GiniTurnover
            | Measure::TopDecileShare
            | Measure::CreditUse
            | Measure::SccShare
            | Measure::Reciprocity
            | Measure::LocalShare
            | Measure::TerritoryShare => Kind::Ratio,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn parse(name: &str) -> Option<Measure> {
        Measure::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// The value of every measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measures(pub [Cell; MEASURES]);

impl Default for Measures {
    fn default() -> Self {
        Measures([Cell::NoData; MEASURES])
    }
}

impl Measures {
    pub fn get(&self, m: Measure) -> Cell {
        self.0[m.index()]
    }

    pub fn set(&mut self, m: Measure, cell: Cell) {
        self.0[m.index()] = cell;
    }

    /// Every measure suppressed.
    pub fn suppressed() -> Measures {
        Measures([Cell::Suppressed; MEASURES])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_are_in_order_with_their_names() {
        for (i, m) in Measure::ALL.iter().enumerate() {
            assert_eq!(m.index(), i);
            assert_eq!(Measure::parse(m.name()), Some(*m));
            assert_eq!(m.kind() == Kind::Amount, m.name().ends_with("_minor"), "{}", m.name());
        }
    }

    #[test]
    fn ratios_are_exact_and_a_zero_denominator_is_no_data() {
        assert_eq!(Cell::ratio(1, 0), Cell::NoData);
        assert_eq!(Cell::ratio(3, -4), Cell::Ratio(Ratio { num: -3, den: 4 }));
        assert!(Ratio { num: 1, den: 3 }.same_as(Ratio { num: 2, den: 6 }));
        assert!(!Ratio { num: 1, den: 3 }.same_as(Ratio { num: 1, den: 4 }));
        assert_eq!(Cell::ratio(0, 5).value(), Some(0.0));
    }
}
