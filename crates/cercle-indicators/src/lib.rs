//! Indicators of local exchange, computed from the entries of a Cercle log alone: what a
//! commune asks of a B2B currency (more exchange between its firms, a damper on the
//! business cycle), measured on every signed payment, so that anyone who holds the log can
//! recompute what the association publishes. Definitions, sources and limits: INDICATORS.md.
//!
//! Code map:
//! - [`accounts`]: the administrators' overview: filters and orders over the accounts.
//! - [`calendar`]: the periods of a range of days (months, quarters, years, or all).
//! - [`measure`]: the measures ([`Measure`], named as in JSON), their values ([`Cell`]: an
//!   integer, an exact [`Ratio`], no data, or suppressed), never a float until printed.
//! - `compute` ([`Computer`]): one pass over the entries in order. It keeps what the
//!   entries imply (balances, limits, profiles, open invoices), accumulates each period's
//!   payments per firm and per pair of firms, and closes a period when the first entry past
//!   its end arrives (or at [`Computer::finish`]).
//! - `public`: statistical confidentiality for `--public`: the primary rule (fewer than 3
//!   firms, or one firm 85% or more of a cell) and secondary suppression, checked with exact
//!   linear algebra so that no suppressed cell can be recomputed from what is published.
//! - [`render`]: the report as JSON, CSV and text.
//! - [`compare`]: an external monthly series (unemployment, say) read from CSV, and its
//!   correlation with turnover and velocity.
//! - `chart` (feature `chart`): SVG charts drawn with plotters.
//!
//! Architecture invariant: pure. No clock, storage, network or randomness: entries and a
//! query come in, a [`Report`] comes out, and the same entries give the same report bit for
//! bit, on the node, in the wallet and in an auditor's hands. Every ratio is an exact pair
//! of integers; a zero denominator is "no data", never NaN. The node, the wallet with the
//! node and the wallet offline all run this one computation.
//!
//! API boundary: [`Query::new`], [`Computer`] (`new`, `push`, `finish`) or [`compute`], the
//! [`Report`] types, [`render`], [`compare`], and `chart` behind its feature. Entries are
//! taken as the log holds them (`cercle_core::Entry`), decoded with `cercle_core::body`; an
//! entry that does not decode, or that comes out of order, is an error naming it.

pub mod accounts;
pub mod calendar;
#[cfg(feature = "chart")]
pub mod chart;
pub mod compare;
mod compute;
pub mod measure;
mod public;
pub mod render;

pub use calendar::Granularity;
pub use compute::{Computer, compute};
pub use measure::{Cell, Kind, MEASURES, Measure, Measures, Ratio};

use cercle_core::profile::{self, Profile};

/// The most periods one report holds (50 years by month).
pub const PERIODS_MAX: u64 = 600;
/// The most groups of one period (`--group-by`).
pub const GROUPS_MAX: usize = 1_000;
/// The most flows (pairs of groups with a payment between them) one report holds.
pub const FLOWS_MAX: usize = 250_000;
/// Days a debtor must have been at or below `STUCK_DEBT_PERCENT` of its limit, or a
/// creditor without paying anyone, to be counted as stuck.
pub const STUCK_DAYS: u64 = 90;
/// A debtor at or below this share of its credit limit (as a negative balance) is stuck
/// once it has stayed there `STUCK_DAYS`.
pub const STUCK_DEBT_PERCENT: i128 = 80;
/// A cell is confidential when fewer firms than this make it...
pub const CONFIDENTIAL_FIRMS_MIN: usize = 3;
/// ...or when one firm makes this percentage of it or more.
pub const CONFIDENTIAL_DOMINANCE_PERCENT: i128 = 85;

/// How firms are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// NACE section (`C`), from a sector given at any level.
    Sector,
    /// NACE division (`10`); firms whose sector is only a section are not classified.
    Division,
    /// INSEE commune code.
    Commune,
    /// Territory label.
    Territory,
}

impl GroupBy {
    pub const ALL: [GroupBy; 4] = [GroupBy::Sector, GroupBy::Division, GroupBy::Commune, GroupBy::Territory];

    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Sector => "sector",
            GroupBy::Division => "division",
            GroupBy::Commune => "commune",
            GroupBy::Territory => "territory",
        }
    }

    pub fn parse(text: &str) -> Option<GroupBy> {
        GroupBy::ALL.into_iter().find(|g| g.name() == text)
    }

    /// The group of a firm with `profile`; `None` when the profile does not say.
    pub fn key(self, profile: &Profile) -> Option<String> {
        match self {
            GroupBy::Sector => profile.sector.as_deref().and_then(profile::section).map(String::from),
            GroupBy::Division => profile.sector.as_deref().and_then(profile::division).map(String::from),
            GroupBy::Commune => profile.commune.clone(),
            GroupBy::Territory => profile.territory.clone(),
        }
    }
}

/// What to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    /// First and last day (days since 1970-01-01, UTC), both included.
    pub from_day: u32,
    pub to_day: u32,
    pub by: Granularity,
    pub group_by: Option<GroupBy>,
    /// Apply statistical confidentiality.
    pub public: bool,
}

/// Why a query or a computation cannot be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndicatorError {
    #[error("the period starts ({from}) after it ends ({to})")]
    DatesInWrongOrder { from: String, to: String },
    #[error(
        "{count} periods from {from} to {to} by {by}, the most is {PERIODS_MAX}: choose a longer period or a shorter range"
    )]
    TooManyPeriods { count: u64, from: String, to: String, by: &'static str },
    #[error("{count} {by} groups in the period from {from}, the most is {GROUPS_MAX}")]
    TooManyGroups { count: usize, by: &'static str, from: String },
    #[error("more than {FLOWS_MAX} flows between groups: choose fewer periods or a coarser grouping")]
    TooManyFlows,
    #[error("entry {sequence} comes after entry {previous}: entries must be given in order from the first")]
    OutOfOrder { sequence: u64, previous: u64 },
    #[error("entry {sequence} does not decode: {reason}")]
    Entry { sequence: u64, reason: String },
    #[error("clearing the open invoices at the end of {period} failed: {reason}")]
    Clearing { period: String, reason: String },
    /// A query given as text that does not parse.
    #[error("{0}")]
    Invalid(String),
}

impl Query {
    /// A query from its text form, as `cercle indicators` and `GetIndicators` take it:
    /// dates `YYYY-MM-DD`, `by` one of month, quarter, year, all, and `group_by` one of
    /// sector, division, commune, territory, or empty.
    pub fn parse(
        from: &str,
        to: &str,
        by: &str,
        group_by: &str,
        public: bool,
    ) -> Result<Query, IndicatorError> {
        let date = |text: &str, which: &str| {
            cercle_core::time::parse_date(text).map_err(|e| IndicatorError::Invalid(format!("{which}: {e}")))
        };
        let (from_day, to_day) = (date(from, "from")?, date(to, "to")?);
        let names = |all: &[&str]| all.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
        let by = Granularity::parse(by).ok_or_else(|| {
            let all: Vec<&str> = Granularity::ALL.iter().map(|g| g.name()).collect();
            IndicatorError::Invalid(format!("by '{by}': give one of {}", names(&all)))
        })?;
        let group_by = match group_by {
            "" => None,
            g => Some(GroupBy::parse(g).ok_or_else(|| {
                let all: Vec<&str> = GroupBy::ALL.iter().map(|g| g.name()).collect();
                IndicatorError::Invalid(format!("group by '{g}': give one of {}", names(&all)))
            })?),
        };
        Query::new(from_day, to_day, by, group_by, public)
    }

    /// A query, checked: the days in order, not too many periods.
    pub fn new(
        from_day: u32,
        to_day: u32,
        by: Granularity,
        group_by: Option<GroupBy>,
        public: bool,
    ) -> Result<Query, IndicatorError> {
        let date = cercle_core::time::date;
        if from_day > to_day {
            return Err(IndicatorError::DatesInWrongOrder { from: date(from_day), to: date(to_day) });
        }
        let count = calendar::period_count(from_day, to_day, by);
        if count > PERIODS_MAX {
            return Err(IndicatorError::TooManyPeriods {
                count,
                from: date(from_day),
                to: date(to_day),
                by: by.name(),
            });
        }
        Ok(Query { from_day, to_day, by, group_by, public })
    }
}

/// The indicators of one group of firms in a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupReport {
    /// The group's key (a section, a commune code...); `None`: firms whose profile does not
    /// say.
    pub group: Option<String>,
    pub measures: Measures,
}

/// The payments from the firms of one group to those of another in a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub from_group: Option<String>,
    pub to_group: Option<String>,
    /// An amount, or suppressed.
    pub turnover_minor: Cell,
}

/// The indicators of one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodReport {
    pub from_day: u32,
    pub to_day: u32,
    pub totals: Measures,
    /// With `--group-by`: every group with a firm open in the period, in key order (the
    /// unclassified last).
    pub groups: Vec<GroupReport>,
    /// With `--group-by`: every pair of groups with a payment between them, in key order.
    pub flows: Vec<Flow>,
}

/// The indicators of every period of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub query: Query,
    /// The entries the report was computed from: the log up to and including this one.
    pub through_sequence: u64,
    pub periods: Vec<PeriodReport>,
}

/// Orders group keys, the unclassified (`None`) last.
pub fn group_order(a: &Option<String>, b: &Option<String>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}
