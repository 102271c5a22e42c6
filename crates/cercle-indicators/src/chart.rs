//! Charts of a report as SVG, drawn with plotters (its SVG backend, no font files: text is
//! laid out by the browser that shows the file).
//!
//! - [`series_svg`]: four panels over the periods: turnover, active share, velocity, credit
//!   use. A value that is suppressed or has no data leaves a gap, never a zero.
//! - [`flows_svg`]: the flow matrix between groups, summed over the report's periods, as a
//!   heat map: a row per payers' group, a column per payees' group. A cell suppressed in any
//!   period is drawn hatched grey and marked "s", with no amount.

use std::collections::BTreeMap;

use plotters::prelude::*;

use crate::measure::{Cell, Measure};
use crate::{Report, group_order};

/// Why a chart could not be drawn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChartError {
    #[error("the report has no flows between groups: give --group-by")]
    NoGroups,
    #[error("drawing the chart failed: {0}")]
    Draw(String),
}

fn draw<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> ChartError {
    ChartError::Draw(e.to_string())
}

/// The label of period `i` on the x axis: its month, or its first day.
fn period_label(report: &Report, i: usize) -> String {
    let Some(p) = report.periods.get(i) else { return String::new() };
    let date = cercle_core::time::date(p.from_day);
    match report.query.by {
        crate::Granularity::Month => date[..7].to_string(),
        crate::Granularity::Year => date[..4].to_string(),
        _ => date,
    }
}

/// The monthly (or quarterly, yearly) series of turnover, active share, velocity and credit
/// use, one panel each.
pub fn series_svg(report: &Report, currency: &str, exponent: u8) -> Result<String, ChartError> {
    let n = report.periods.len();
    let scale = 10f64.powi(i32::from(exponent));
    let panels: [(Measure, String, f64); 4] = [
        (Measure::TurnoverMinor, format!("Turnover ({currency})"), 1.0 / scale),
        (Measure::ActiveShare, "Active firms (% of firms)".into(), 100.0),
        (Measure::Velocity, "Velocity (turnover / mean positive balances)".into(), 1.0),
        (Measure::CreditUse, "Credit use (% of credit limits)".into(), 100.0),
    ];
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 1080)).into_drawing_area();
        root.fill(&WHITE).map_err(draw)?;
        let title = format!(
            "Indicators of local exchange, {} to {}",
            cercle_core::time::date(report.query.from_day),
            cercle_core::time::date(report.query.to_day)
        );
        let root = root.titled(&title, ("sans-serif", 26)).map_err(draw)?;
        for (area, (measure, caption, factor)) in root.split_evenly((4, 1)).iter().zip(panels) {
            let values: Vec<Option<f64>> = report
                .periods
                .iter()
                .map(|p| match p.totals.get(measure) {
                    Cell::Suppressed | Cell::NoData => None,
                    cell => cell.value().map(|v| v * factor),
                })
                .collect();
            let top = values.iter().flatten().fold(0.0f64, |a, &b| a.max(b));
            let top = if top > 0.0 { top * 1.15 } else { 1.0 };
            let mut chart = ChartBuilder::on(area)
                .caption(&caption, ("sans-serif", 18))
                .margin(8)
                .x_label_area_size(28)
                .y_label_area_size(70)
                .build_cartesian_2d(-0.5f64..(n as f64 - 0.5).max(0.5), 0f64..top)
                .map_err(draw)?;
            let label = |x: &f64| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    period_label(report, i as usize)
                } else {
                    String::new()
                }
            };
            chart
                .configure_mesh()
                .x_labels(n.clamp(1, 13))
                .x_label_formatter(&label)
                .y_labels(5)
                .light_line_style(WHITE.mix(0.0))
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(draw)?;
            // A line through each run of periods with a value; a gap where there is none.
            let mut run: Vec<(f64, f64)> = Vec::new();
            let mut runs = Vec::new();
            for (i, v) in values.iter().enumerate() {
                match v {
                    Some(v) => run.push((i as f64, *v)),
                    None => runs.push(std::mem::take(&mut run)),
                }
            }
            runs.push(run);
            for run in runs.into_iter().filter(|r| !r.is_empty()) {
                chart.draw_series(LineSeries::new(run.clone(), BLUE.stroke_width(2))).map_err(draw)?;
                chart.draw_series(run.into_iter().map(|p| Circle::new(p, 3, BLUE.filled()))).map_err(draw)?;
            }
        }
        root.present().map_err(draw)?;
    }
    Ok(svg)
}

/// The flow matrix between groups, summed over the periods, as a heat map.
pub fn flows_svg(report: &Report, currency: &str, exponent: u8) -> Result<String, ChartError> {
    let Some(group_by) = report.query.group_by else { return Err(ChartError::NoGroups) };
    let mut cells: BTreeMap<(Option<String>, Option<String>), Option<i128>> = BTreeMap::new();
    let mut groups: Vec<Option<String>> = Vec::new();
    for p in &report.periods {
        groups.extend(p.groups.iter().map(|g| g.group.clone()));
        for f in &p.flows {
            let cell = cells.entry((f.from_group.clone(), f.to_group.clone())).or_insert(Some(0));
            *cell = match (*cell, f.turnover_minor) {
                (Some(sum), Cell::Int(v)) => Some(sum + v),
                _ => None,
            };
        }
    }
    groups.sort_by(group_order);
    groups.dedup();
    let n = groups.len().max(1);
    let index = |g: &Option<String>| groups.iter().position(|x| x == g).unwrap_or(0);
    let name = |i: usize| match groups.get(i) {
        Some(Some(g)) => g.clone(),
        Some(None) => "(unclassified)".into(),
        None => String::new(),
    };
    let largest = cells.values().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let scale = 10f64.powi(i32::from(exponent));
    let side = (180 + 56 * n).min(2400) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (side + 60, side + 40)).into_drawing_area();
        root.fill(&WHITE).map_err(draw)?;
        let caption = format!(
            "Flows between {}s, {} to {} ({currency}; rows pay, columns are paid)",
            group_by.name(),
            cercle_core::time::date(report.query.from_day),
            cercle_core::time::date(report.query.to_day)
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(&caption, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(110)
            .build_cartesian_2d(0f64..n as f64, 0f64..n as f64)
            .map_err(draw)?;
        let label = |v: &f64| {
            let i = v.floor();
            if (v - i - 0.5).abs() < 1e-6 { name(i as usize) } else { String::new() }
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(2 * n + 1)
            .y_labels(2 * n + 1)
            .x_label_formatter(&label)
            .y_label_formatter(&label)
            .x_desc("paid by the firms of (row) to the firms of (column)")
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(draw)?;
        for ((from, to), value) in &cells {
            let (x, y) = (index(to) as f64, (n - 1 - index(from)) as f64);
            let (fill, text) = match value {
                Some(v) => {
                    let share = (*v as f64 / largest).clamp(0.0, 1.0);
                    (HSLColor(0.6, 0.75, 0.95 - 0.6 * share.sqrt()), format!("{:.0}", *v as f64 / scale))
                }
                None => (HSLColor(0.0, 0.0, 0.75), "s".to_string()),
            };
            chart
                .draw_series(std::iter::once(Rectangle::new([(x, y), (x + 1.0, y + 1.0)], fill.filled())))
                .map_err(draw)?;
            if value.is_none() {
                let hatch = (1..4).map(|k| {
                    let t = f64::from(k) / 4.0;
                    PathElement::new(vec![(x + t, y), (x, y + t)], BLACK.mix(0.3))
                });
                chart.draw_series(hatch).map_err(draw)?;
            }
            chart
                .draw_series(std::iter::once(Text::new(
                    text,
                    (x + 0.5, y + 0.5),
                    ("sans-serif", 13).into_font().color(&BLACK).pos(plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Center,
                        plotters::style::text_anchor::VPos::Center,
                    )),
                )))
                .map_err(draw)?;
        }
        root.present().map_err(draw)?;
    }
    Ok(svg)
}
