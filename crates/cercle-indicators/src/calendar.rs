//! Periods: a range of whole days (UTC) cut into calendar months, quarters or years, or
//! kept whole. Days are numbered from 1970-01-01, as `cercle_core::time` numbers them.

use cercle_core::time::{civil_from_days, days_from_civil};

/// How a range of days is cut into periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Month,
    Quarter,
    Year,
    /// The whole range, one period.
    All,
}

impl Granularity {
    pub const ALL: [Granularity; 4] =
        [Granularity::Month, Granularity::Quarter, Granularity::Year, Granularity::All];

    pub fn name(self) -> &'static str {
        match self {
            Granularity::Month => "month",
            Granularity::Quarter => "quarter",
            Granularity::Year => "year",
            Granularity::All => "all",
        }
    }

    pub fn parse(text: &str) -> Option<Granularity> {
        Granularity::ALL.into_iter().find(|g| g.name() == text)
    }

    /// Calendar months per period (`None`: the whole range).
    fn months(self) -> Option<u32> {
        match self {
            Granularity::Month => Some(1),
            Granularity::Quarter => Some(3),
            Granularity::Year => Some(12),
            Granularity::All => None,
        }
    }
}

/// The first day of the calendar period of `months` months that holds `day`.
fn period_start(day: u32, months: u32) -> (i64, u32) {
    let (year, month, _) = civil_from_days(i64::from(day));
    let first_month = (month - 1) / months * months + 1;
    (year, first_month)
}

/// The periods of `[from_day, to_day]` (both included, `from_day <= to_day`), in order:
/// calendar periods clipped to the range, so the first and last may be partial.
pub fn periods(from_day: u32, to_day: u32, by: Granularity) -> Vec<(u32, u32)> {
    let Some(months) = by.months() else { return vec![(from_day, to_day)] };
    let mut out = Vec::new();
    let (mut year, mut month) = period_start(from_day, months);
    loop {
        let start = days_from_civil(year, month, 1);
        month += months;
        if month > 12 {
            month -= 12;
            year += 1;
        }
        let next = days_from_civil(year, month, 1);
        let (first, last) = (start.max(i64::from(from_day)), (next - 1).min(i64::from(to_day)));
        // Days of the supported range (1970 to 9999) fit u32.
        out.push((first as u32, last as u32));
        if next > i64::from(to_day) {
            return out;
        }
    }
}

/// How many periods `periods` would return, without building them.
pub fn period_count(from_day: u32, to_day: u32, by: Granularity) -> u64 {
    let Some(months) = by.months() else { return 1 };
    let index = |day: u32| {
        let (year, month) = period_start(day, months);
        (year * 12 + i64::from(month - 1)) / i64::from(months)
    };
    (index(to_day) - index(from_day) + 1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use cercle_core::time::{date, parse_date};

    fn check(from: &str, to: &str, by: Granularity, expected: &[(&str, &str)]) {
        let (f, t) = (parse_date(from).unwrap(), parse_date(to).unwrap());
        let got: Vec<(String, String)> =
            periods(f, t, by).into_iter().map(|(a, b)| (date(a), date(b))).collect();
        let expected: Vec<(String, String)> =
            expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        assert_eq!(got, expected);
        assert_eq!(period_count(f, t, by), expected.len() as u64);
    }

    #[test]
    fn periods_are_calendar_periods_clipped_to_the_range() {
        check(
            "2026-01-15",
            "2026-03-10",
            Granularity::Month,
            &[("2026-01-15", "2026-01-31"), ("2026-02-01", "2026-02-28"), ("2026-03-01", "2026-03-10")],
        );
        check(
            "2027-11-01",
            "2028-02-29",
            Granularity::Quarter,
            &[("2027-11-01", "2027-12-31"), ("2028-01-01", "2028-02-29")],
        );
        check(
            "2026-06-01",
            "2027-06-30",
            Granularity::Year,
            &[("2026-06-01", "2026-12-31"), ("2027-01-01", "2027-06-30")],
        );
        check("2026-06-01", "2027-06-30", Granularity::All, &[("2026-06-01", "2027-06-30")]);
        check("2026-12-31", "2026-12-31", Granularity::Month, &[("2026-12-31", "2026-12-31")]);
        check(
            "2026-01-01",
            "2026-12-31",
            Granularity::Month,
            &[
                ("2026-01-01", "2026-01-31"),
                ("2026-02-01", "2026-02-28"),
                ("2026-03-01", "2026-03-31"),
                ("2026-04-01", "2026-04-30"),
                ("2026-05-01", "2026-05-31"),
                ("2026-06-01", "2026-06-30"),
                ("2026-07-01", "2026-07-31"),
                ("2026-08-01", "2026-08-31"),
                ("2026-09-01", "2026-09-30"),
                ("2026-10-01", "2026-10-31"),
                ("2026-11-01", "2026-11-30"),
                ("2026-12-01", "2026-12-31"),
            ],
        );
    }
}
