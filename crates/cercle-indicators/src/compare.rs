//! An external monthly series that the user supplies (unemployment, business failures,
//! a local activity index...), and its correlation with the circuit's turnover and velocity
//! month by month: WIR's counter-cyclical signal (Stodder found WIR turnover rising when the
//! Swiss economy slowed) measured on one's own circuit.
//!
//! The file is CSV: one line per month, `YYYY-MM,value` (a date `YYYY-MM-DD` stands for its
//! month), a decimal point, an optional header line whose second column names the series.
//! A line that is not so is refused with its number and what is wrong.

use std::collections::BTreeMap;

use cercle_core::time::civil_from_days;

use crate::measure::Measure;
use crate::{Granularity, Report};

/// Largest file read, in bytes.
pub const COMPARE_BYTES_MAX: usize = 1024 * 1024;
/// Most months in a series (a century).
pub const COMPARE_MONTHS_MAX: usize = 1_200;
/// Fewest months in common for a correlation to be given.
pub const COMPARE_MONTHS_MIN: usize = 3;

/// Why a series cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeriesError {
    #[error("the file is {bytes} bytes, the most is {COMPARE_BYTES_MAX}")]
    TooLarge { bytes: usize },
    #[error("line {line}: {problem}")]
    Line { line: usize, problem: String },
    #[error("more than {COMPARE_MONTHS_MAX} months")]
    TooManyMonths,
    #[error("the file holds no month")]
    Empty,
    #[error("the report is by {0}: --compare needs --by month")]
    NotMonthly(&'static str),
}

/// A monthly series: (year, month) → value.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub values: BTreeMap<(i64, u32), f64>,
}

fn month_of(text: &str) -> Result<(i64, u32), String> {
    let bad = || {
        format!(
            "'{}' is not a month (YYYY-MM) or a date (YYYY-MM-DD)",
            text.chars().take(40).collect::<String>()
        )
    };
    let day = match text.len() {
        7 => cercle_core::time::parse_date(&format!("{text}-01")),
        10 => cercle_core::time::parse_date(text),
        _ => return Err(bad()),
    }
    .map_err(|_| bad())?;
    let (year, month, _) = civil_from_days(i64::from(day));
    Ok((year, month))
}

/// Reads a series from the text of its CSV file.
pub fn read(text: &str) -> Result<Series, SeriesError> {
    if text.len() > COMPARE_BYTES_MAX {
        return Err(SeriesError::TooLarge { bytes: text.len() });
    }
    let mut name = String::from("value");
    let mut values = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let err = |problem: String| SeriesError::Line { line: line_no, problem };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut cols = line.split(',').map(str::trim);
        let (Some(first), Some(second), None) = (cols.next(), cols.next(), cols.next()) else {
            return Err(err("expected two columns, a month and a value".into()));
        };
        let month = match month_of(first) {
            Ok(m) => m,
            Err(_) if values.is_empty() && line_no == 1 && second.parse::<f64>().is_err() => {
                name = second.chars().take(64).collect();
                continue;
            }
            Err(e) => return Err(err(e)),
        };
        let value: f64 = second.parse().ok().filter(|v: &f64| v.is_finite()).ok_or_else(|| {
            err(format!(
                "'{}' is not a number (use a decimal point)",
                second.chars().take(40).collect::<String>()
            ))
        })?;
        if values.insert(month, value).is_some() {
            return Err(err(format!("{:04}-{:02} is given twice", month.0, month.1)));
        }
        if values.len() > COMPARE_MONTHS_MAX {
            return Err(SeriesError::TooManyMonths);
        }
    }
    if values.is_empty() {
        return Err(SeriesError::Empty);
    }
    Ok(Series { name, values })
}

/// The correlation of a series with turnover and with velocity.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub series: String,
    /// Months with both a turnover and the series' value, and the correlation (`None`
    /// below `COMPARE_MONTHS_MIN` months, or when either does not vary).
    pub turnover_months: usize,
    pub turnover: Option<f64>,
    pub velocity_months: usize,
    pub velocity: Option<f64>,
}

/// Pearson's correlation coefficient.
pub fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    if pairs.len() < COMPARE_MONTHS_MIN {
        return None;
    }
    let n = pairs.len() as f64;
    let (mx, my) = (pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| p.1).sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for &(x, y) in pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    let r = sxy / (sxx * syy).sqrt();
    r.is_finite().then_some(r.clamp(-1.0, 1.0))
}

/// Compares `series` with the report's monthly turnover and velocity (totals).
pub fn compare(report: &Report, series: &Series) -> Result<Comparison, SeriesError> {
    if report.query.by != Granularity::Month {
        return Err(SeriesError::NotMonthly(report.query.by.name()));
    }
    let pairs = |measure: Measure| -> Vec<(f64, f64)> {
        report
            .periods
            .iter()
            .filter_map(|p| {
                let (year, month, _) = civil_from_days(i64::from(p.from_day));
                Some((*series.values.get(&(year, month))?, p.totals.get(measure).value()?))
            })
            .collect()
    };
    let (turnover, velocity) = (pairs(Measure::TurnoverMinor), pairs(Measure::Velocity));
    Ok(Comparison {
        series: series.name.clone(),
        turnover_months: turnover.len(),
        turnover: pearson(&turnover),
        velocity_months: velocity.len(),
        velocity: pearson(&velocity),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_read_with_its_name_and_bad_lines_named() {
        let s = read("month,unemployment\n2026-01,7.5\n2026-02-01, 7.25\n# note\n\n2026-03,-1e1\n").unwrap();
        assert_eq!(s.name, "unemployment");
        assert_eq!(
            s.values.into_iter().collect::<Vec<_>>(),
            [((2026, 1), 7.5), ((2026, 2), 7.25), ((2026, 3), -10.0)]
        );
        let check = |text: &str, needle: &str| {
            let e = read(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{e:?} lacks {needle:?}");
        };
        check("2026-01,7,5\n", "line 1: expected two columns");
        check("2026-01,7.5\n2026-13,1\n", "line 2: '2026-13' is not a month");
        check("2026-01,abc\n", "line 1: 'abc' is not a number");
        check("2026-01,NaN\n", "is not a number");
        check("2026-01,1\n2026-01-15,2\n", "line 2: 2026-01 is given twice");
        check("month,value\n", "no month");
        check(&"x".repeat(COMPARE_BYTES_MAX + 1), "the most is");
    }

    #[test]
    fn pearson_is_exact_on_lines_and_none_without_variance() {
        let up: Vec<(f64, f64)> = (0..5).map(|i| (f64::from(i), 2.0 * f64::from(i) + 1.0)).collect();
        assert!((pearson(&up).unwrap() - 1.0).abs() < 1e-12);
        let down: Vec<(f64, f64)> = (0..5).map(|i| (f64::from(i), -f64::from(i))).collect();
        assert!((pearson(&down).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(pearson(&[(1.0, 2.0), (1.0, 3.0), (1.0, 4.0)]), None);
        assert_eq!(pearson(&[(1.0, 2.0), (2.0, 3.0)]), None);
    }
}
