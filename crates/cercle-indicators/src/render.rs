//! The report as JSON, CSV and text. Every form is a function of the report alone, so the
//! node's report and the offline one print the same bytes.
//!
//! Values: a count or an amount is an integer (in JSON a number, or a string of digits past
//! 64 bits); a ratio is a decimal rounded to `RATIO_DECIMALS` places; "no data" (a ratio
//! whose denominator is zero) is `null` in JSON and an empty CSV field; a value withheld by
//! statistical confidentiality is the string `"suppressed"`, never zero.

use serde_json::{Map, Value, json};

use crate::measure::{Cell, Kind, Measure, Measures};
use crate::{Flow, PeriodReport, Report};

/// Decimal places of a ratio in JSON and CSV.
pub const RATIO_DECIMALS: i32 = 6;
/// How a suppressed value is written.
pub const SUPPRESSED: &str = "suppressed";

/// A ratio rounded to `RATIO_DECIMALS` places.
pub fn rounded(value: f64) -> f64 {
    let scale = 10f64.powi(RATIO_DECIMALS);
    (value * scale).round() / scale
}

/// A cell as a JSON value.
pub fn cell_json(cell: Cell) -> Value {
    match cell {
        Cell::Int(v) => match i64::try_from(v) {
            Ok(v) => json!(v),
            Err(_) => json!(v.to_string()),
        },
        Cell::Ratio(r) => serde_json::Number::from_f64(rounded(r.value())).map_or(Value::Null, Value::Number),
        Cell::NoData => Value::Null,
        Cell::Suppressed => json!(SUPPRESSED),
    }
}

/// A cell as a CSV field.
pub fn cell_csv(cell: Cell) -> String {
    match cell {
        Cell::Int(v) => v.to_string(),
        Cell::Ratio(r) => format!("{:.*}", RATIO_DECIMALS as usize, rounded(r.value())),
        Cell::NoData => String::new(),
        Cell::Suppressed => SUPPRESSED.into(),
    }
}

fn measures_json(m: &Measures, into: &mut Map<String, Value>) {
    for measure in Measure::ALL {
        into.insert(measure.name().into(), cell_json(m.get(measure)));
    }
}

fn group_json(g: &Option<String>) -> Value {
    g.as_ref().map_or(Value::Null, |g| json!(g))
}

fn period_json(p: &PeriodReport, grouped: bool) -> Value {
    let mut o = Map::new();
    o.insert("from".into(), json!(cercle_core::time::date(p.from_day)));
    o.insert("to".into(), json!(cercle_core::time::date(p.to_day)));
    measures_json(&p.totals, &mut o);
    if grouped {
        let groups: Vec<Value> = p
            .groups
            .iter()
            .map(|g| {
                let mut go = Map::new();
                go.insert("group".into(), group_json(&g.group));
                measures_json(&g.measures, &mut go);
                Value::Object(go)
            })
            .collect();
        o.insert("groups".into(), Value::Array(groups));
        let flows: Vec<Value> = p.flows.iter().map(flow_json).collect();
        o.insert("flows".into(), Value::Array(flows));
    }
    Value::Object(o)
}

fn flow_json(f: &Flow) -> Value {
    json!({
        "from_group": group_json(&f.from_group),
        "to_group": group_json(&f.to_group),
        "turnover_minor": cell_json(f.turnover_minor),
    })
}

/// The report's fields as a JSON object (the wallet adds `"ok": true`).
pub fn json(report: &Report, currency: &str, exponent: u8) -> Map<String, Value> {
    let q = &report.query;
    let mut o = Map::new();
    o.insert("currency".into(), json!(currency));
    o.insert("exponent".into(), json!(exponent));
    o.insert("from".into(), json!(cercle_core::time::date(q.from_day)));
    o.insert("to".into(), json!(cercle_core::time::date(q.to_day)));
    o.insert("by".into(), json!(q.by.name()));
    o.insert("group_by".into(), q.group_by.map_or(Value::Null, |g| json!(g.name())));
    o.insert("public".into(), json!(q.public));
    o.insert("through_sequence".into(), json!(report.through_sequence));
    let periods: Vec<Value> = report.periods.iter().map(|p| period_json(p, q.group_by.is_some())).collect();
    o.insert("periods".into(), Value::Array(periods));
    o
}

/// A CSV field, quoted when it must be.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The report as CSV: one row per period (`row` = `total`), per group (`group`) and per
/// flow (`flow`, with only `turnover_minor`), after a header.
pub fn csv(report: &Report) -> String {
    let mut out = String::from("from,to,row,group,from_group,to_group");
    for m in Measure::ALL {
        out.push(',');
        out.push_str(m.name());
    }
    out.push('\n');
    let label = |g: &Option<String>| g.as_deref().map(field).unwrap_or_default();
    for p in &report.periods {
        let (from, to) = (cercle_core::time::date(p.from_day), cercle_core::time::date(p.to_day));
        let mut row =
            |kind: &str, group: String, from_group: String, to_group: String, cells: Vec<String>| {
                out.push_str(&format!(
                    "{from},{to},{kind},{group},{from_group},{to_group},{}\n",
                    cells.join(",")
                ));
            };
        let all = |m: &Measures| Measure::ALL.iter().map(|&x| cell_csv(m.get(x))).collect::<Vec<_>>();
        row("total", String::new(), String::new(), String::new(), all(&p.totals));
        for g in &p.groups {
            row("group", label(&g.group), String::new(), String::new(), all(&g.measures));
        }
        for f in &p.flows {
            let cells = Measure::ALL
                .iter()
                .map(
                    |&m| if m == Measure::TurnoverMinor { cell_csv(f.turnover_minor) } else { String::new() },
                )
                .collect();
            row("flow", String::new(), label(&f.from_group), label(&f.to_group), cells);
        }
    }
    out
}

/// A cell as text: amounts in the currency, ratios as percentages or plain numbers.
pub fn cell_text(measure: Measure, cell: Cell, currency: &str, exponent: u8) -> String {
    match (cell, measure.kind()) {
        (Cell::Suppressed, _) => SUPPRESSED.into(),
        (Cell::NoData, _) => "no data".into(),
        (Cell::Int(v), Kind::Amount) => match i64::try_from(v) {
            Ok(v) => cercle_core::format_with_currency(v, exponent, currency),
            Err(_) => format!("{v} minor units of {currency}"),
        },
        (Cell::Int(v), _) => thousands(v),
        (Cell::Ratio(r), _) if measure == Measure::Velocity || measure == Measure::GiniTurnover => {
            format!("{:.2}", r.value())
        }
        (Cell::Ratio(r), _) => format!("{:.1}%", r.value() * 100.0),
    }
}

fn thousands(v: i128) -> String {
    let digits = v.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0 { format!("-{out}") } else { out }
}

/// The measures a text table of groups shows (the JSON and CSV have them all).
const GROUP_COLUMNS: [Measure; 7] = [
    Measure::Firms,
    Measure::ActiveShare,
    Measure::TurnoverMinor,
    Measure::Velocity,
    Measure::LocalShare,
    Measure::CreditUse,
    Measure::NidMinor,
];

/// The report as text for a person: each period's measures, its groups and its flows.
pub fn text(report: &Report, currency: &str, exponent: u8) -> String {
    let q = &report.query;
    let mut out = format!(
        "indicators from {} to {} by {}{}{}, from the log up to entry {}\n",
        cercle_core::time::date(q.from_day),
        cercle_core::time::date(q.to_day),
        q.by.name(),
        q.group_by.map(|g| format!(", grouped by {}", g.name())).unwrap_or_default(),
        if q.public { ", with statistical confidentiality" } else { "" },
        report.through_sequence,
    );
    let name = |g: &Option<String>| g.clone().unwrap_or_else(|| "(unclassified)".into());
    for p in &report.periods {
        out.push_str(&format!(
            "\n{} to {}\n",
            cercle_core::time::date(p.from_day),
            cercle_core::time::date(p.to_day)
        ));
        for m in Measure::ALL {
            out.push_str(&format!(
                "  {:<22}{}\n",
                m.name(),
                cell_text(m, p.totals.get(m), currency, exponent)
            ));
        }
        if q.group_by.is_none() {
            continue;
        }
        let mut rows: Vec<Vec<String>> = vec![
            std::iter::once("group".to_string())
                .chain(GROUP_COLUMNS.iter().map(|m| m.name().to_string()))
                .collect(),
        ];
        for g in &p.groups {
            rows.push(
                std::iter::once(name(&g.group))
                    .chain(GROUP_COLUMNS.iter().map(|&m| cell_text(m, g.measures.get(m), currency, exponent)))
                    .collect(),
            );
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        for r in rows {
            let line: Vec<String> =
                r.iter().zip(&widths).map(|(c, w)| format!("{c:<width$}", width = *w)).collect();
            out.push_str(&format!("  {}\n", line.join("  ").trim_end()));
        }
        if !p.flows.is_empty() {
            out.push_str("  flows (payers' group -> payees' group):\n");
            for f in &p.flows {
                out.push_str(&format!(
                    "    {} -> {}: {}\n",
                    name(&f.from_group),
                    name(&f.to_group),
                    cell_text(Measure::TurnoverMinor, f.turnover_minor, currency, exponent)
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Ratio;

    #[test]
    fn cells_print_as_documented() {
        assert_eq!(cell_json(Cell::Int(12)), json!(12));
        assert_eq!(cell_json(Cell::Int(i128::from(i64::MAX) + 1)), json!("9223372036854775808"));
        assert_eq!(cell_json(Cell::Ratio(Ratio { num: 1, den: 3 })), json!(0.333333));
        assert_eq!(cell_json(Cell::NoData), Value::Null);
        assert_eq!(cell_json(Cell::Suppressed), json!("suppressed"));
        assert_eq!(cell_csv(Cell::Ratio(Ratio { num: 2, den: 3 })), "0.666667");
        assert_eq!(cell_csv(Cell::NoData), "");
        assert_eq!(cell_text(Measure::TurnoverMinor, Cell::Int(123_456), "CHW", 2), "1,234.56 CHW");
        assert_eq!(cell_text(Measure::LocalShare, Cell::Ratio(Ratio { num: 1, den: 8 }), "CHW", 2), "12.5%");
        assert_eq!(cell_text(Measure::Firms, Cell::Int(12_345), "CHW", 2), "12,345");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"x\""), "\"say \"\"x\"\"\"");
    }
}
