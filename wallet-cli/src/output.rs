//! Printing: timestamps, receipts, and the one place that writes to stdout.
//!
//! Human output is for reading; `--json` output is one JSON object (or one per line for
//! `submit`) with amounts in minor units, so scripts never parse formatted money: on
//! success `{"ok": true, ...}` ([`emit_ok`]); failures are printed by `main`.
//! Text that comes from the ledger (memos, names, the node's messages) is written by
//! other people: control characters and Unicode bidirectional controls are escaped before
//! it reaches a terminal.

use std::fmt::Write as _;
use std::io::Write as _;

use cercle_core::{Genesis, format_with_currency};
use cercle_proto as pb;
use serde_json::json;

/// Writes `text` and a newline to stdout. A closed pipe comes back as an error that
/// `main` recognises with [`is_broken_pipe`].
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.write_all(b"\n")?;
    stdout.flush()?;
    Ok(())
}

/// Prints a command's result as the JSON success object: `value`'s fields and `"ok": true`,
/// on one line.
pub fn emit_ok(value: serde_json::Value) -> anyhow::Result<()> {
    emit(&ok(value).to_string())
}

/// `value` (an object) with `"ok": true` added.
pub fn ok(mut value: serde_json::Value) -> serde_json::Value {
    if let Some(object) = value.as_object_mut() {
        object.insert("ok".into(), serde_json::Value::Bool(true));
    }
    value
}

/// An amount in minor units for JSON: a number, unless it does not fit in an i64 (sums
/// only: `clearing solve`'s totals, a statement's turnover), then a string of digits, so
/// no script ever reads a rounded amount.
pub fn amount_json(minor: i128) -> serde_json::Value {
    i64::try_from(minor).map_or_else(|_| json!(minor.to_string()), |m| json!(m))
}

/// `part / whole` as a percentage rounded half up to two decimals, `66.67%`; `0.00%` when
/// there is no whole. The one format every command uses.
pub fn percent(part: i128, whole: i128) -> String {
    let bp = basis_points(part, whole);
    format!("{}.{:02}%", bp / 100, bp % 100)
}

/// `part / whole` in hundredths of a percent, rounded half up; 0 when `whole <= 0`.
/// Callers pass amounts below 2^100, so the products stay far inside i128.
pub fn basis_points(part: i128, whole: i128) -> i128 {
    if whole <= 0 {
        return 0;
    }
    // Round half up: floor((2 * part * 10_000 + whole) / (2 * whole)).
    (2 * part * 10_000 + whole).div_euclid(2 * whole)
}

pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Unicode's bidirectional formatting characters (embeddings, overrides, isolates, marks):
/// printed as they are, they reorder what a terminal shows, so that a memo could make
/// `-1000` read as `0001-` or hide the end of a line.
const BIDI_CONTROLS: [char; 12] = [
    '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}',
    '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
];

/// Makes untrusted text safe to print on one terminal line: line breaks become spaces,
/// other control characters and bidirectional controls are escaped, so a memo cannot move
/// the cursor, reorder the line or fake another line of output.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() || BIDI_CONTROLS.contains(&c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Formats milliseconds since the Unix epoch as an RFC 3339 UTC timestamp to the second,
/// e.g. `2026-11-22T10:00:00Z`.
pub fn rfc3339(timestamp_ms: u64) -> String {
    let seconds = timestamp_ms / 1000;
    // u64::MAX / 86_400_000 days fits an i64 comfortably.
    let days = (seconds / 86_400) as i64;
    let second_of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// The day number (days since 1970-01-01) of a `YYYY-MM-DD` date from 1970 to 9999.
pub fn parse_date(text: &str) -> Result<u32, String> {
    let bad = || format!("'{text}' is not a date of the form YYYY-MM-DD");
    let mut parts = text.splitn(3, '-');
    let (y, m, d) = (parts.next(), parts.next(), parts.next());
    let (Some(y), Some(m), Some(d)) = (y, m, d) else { return Err(bad()) };
    let (y, m, d): (i64, u32, u32) =
        (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days_in_month = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 || d > days_in_month[(m - 1) as usize]
    {
        return Err(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    // 1970..=9999 keeps this within 0..2_933_000.
    Ok((era * 146_097 + doe - 719_468) as u32)
}

const DAY_MS: u64 = 86_400_000;

/// A span of whole days, UTC, both ends included, as `--from DATE --to DATE` give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// Day numbers (days since 1970-01-01); `None` is unbounded.
    pub from: Option<u32>,
    pub to: Option<u32>,
}

impl Period {
    /// The period of `--from` and `--to`, refused (naming both) when it ends before it starts.
    pub fn new(from: Option<u32>, to: Option<u32>) -> anyhow::Result<Period> {
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            crate::usage_bail!("--from {} is after --to {}: the period is empty", date(from), date(to));
        }
        Ok(Period { from, to })
    }

    /// The first millisecond of the period.
    pub fn start_ms(&self) -> u64 {
        self.from.map_or(0, |day| u64::from(day) * DAY_MS)
    }

    /// The last millisecond of the period (the whole `--to` day).
    pub fn end_ms(&self) -> u64 {
        self.to.map_or(u64::MAX, |day| (u64::from(day) + 1) * DAY_MS - 1)
    }

    pub fn is_bounded(&self) -> bool {
        self.from.is_some() || self.to.is_some()
    }

    /// Whether the entry time `timestamp_ms` is before, in or after the period.
    pub fn place(&self, timestamp_ms: u64) -> std::cmp::Ordering {
        if timestamp_ms < self.start_ms() {
            std::cmp::Ordering::Less
        } else if timestamp_ms > self.end_ms() {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    }

    /// The period for JSON: `{"from": "YYYY-MM-DD" | null, "to": ...}`.
    pub fn json(&self) -> serde_json::Value {
        json!({"from": self.from.map(date), "to": self.to.map(date)})
    }
}

/// A day number as `YYYY-MM-DD`.
pub fn date(day: u32) -> String {
    let (year, month, day) = civil_from_days(i64::from(day));
    format!("{year:04}-{month:02}-{day:02}")
}

/// The proleptic Gregorian date of a day number counted from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`), for days >= 0.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // [0, 146096]
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // [0, 399]
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // [0, 365]
    let mp = (5 * day_of_year + 2) / 153; // [0, 11], March-based month
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Money as people read it: `-1,250.00 CHW`.
pub fn money(genesis: &Genesis, minor: i64) -> String {
    format_with_currency(minor, genesis.exponent, &genesis.currency)
}

/// A credit limit as the wallet always writes it: a positive amount, then the floor it
/// puts under the balance, `1,000.00 CHW (floor -1,000.00 CHW)`. `money` formats minor
/// units in the ledger's currency.
pub fn credit_limit(limit_minor: i64, money: impl Fn(i64) -> String) -> String {
    // A limit is never negative, so its negation cannot overflow; saturate all the same.
    format!("{} (floor {})", money(limit_minor), money(limit_minor.saturating_neg()))
}

/// Where a limit comes from, as the node names it: `own`, or `group:NAME` for a member that
/// follows its group's default. A node from before groups sends nothing: its limits are
/// the accounts' own.
pub fn limit_source(source: &str) -> &str {
    if source.is_empty() { "own" } else { source }
}

/// The short form of a hash for human output.
fn short_hash(hash: &[u8]) -> String {
    let full = hex::encode(hash);
    match full.get(..16) {
        Some(prefix) if full.len() > 16 => format!("{prefix}…"),
        _ => full,
    }
}

/// A receipt as JSON, amounts in minor units.
pub fn receipt_json(receipt: &pb::Receipt) -> serde_json::Value {
    let balances: Vec<serde_json::Value> = receipt
        .balances_after
        .iter()
        .map(|b| json!({"account": b.account, "balance_minor": b.balance_minor}))
        .collect();
    let mut value = json!({
        "sequence": receipt.sequence,
        "entry_hash": hex::encode(&receipt.entry_hash),
        "timestamp_ms": receipt.timestamp_ms,
        "timestamp": rfc3339(receipt.timestamp_ms),
        "duplicate": receipt.duplicate,
        "operation_id": hex::encode(&receipt.operation_id),
        "balances_after": balances,
        "state": if receipt.pending_id.is_some() { "pending" } else { "done" },
    });
    if let Some(id) = receipt.pending_id {
        value["pending_id"] = json!(id);
    }
    value
}

/// A receipt for people: `accepted: entry 7 at 2026-11-22T10:00:00Z, hash ab12…;
/// balance of a: -125.50 CHW`.
pub fn receipt_line(genesis: &Genesis, receipt: &pb::Receipt) -> String {
    let mut line = format!(
        "{}: entry {} at {}, hash {}",
        if receipt.duplicate { "already accepted earlier (duplicate)" } else { "accepted" },
        receipt.sequence,
        rfc3339(receipt.timestamp_ms),
        short_hash(&receipt.entry_hash)
    );
    if let Some(id) = receipt.pending_id {
        let _ = write!(
            line,
            "; PENDING: held for an owner's approval as pending payment {id}, nothing is paid yet (an owner key runs `cercle pending approve ACCOUNT {id}`)"
        );
    }
    for (i, b) in receipt.balances_after.iter().enumerate() {
        line.push_str(if i == 0 { "; " } else { ", " });
        let _ = write!(line, "balance of {}: {}", one_line(&b.account), money(genesis, b.balance_minor));
    }
    line
}

/// Prints a receipt in the chosen form.
pub fn receipt(json: bool, genesis: &Genesis, receipt: &pb::Receipt) -> anyhow::Result<()> {
    if json { emit_ok(receipt_json(receipt)) } else { emit(&receipt_line(genesis, receipt)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(timestamp_ms: u64, expected: &str) {
        assert_eq!(rfc3339(timestamp_ms), expected, "{timestamp_ms} ms");
    }

    #[test]
    fn formats_timestamps() {
        check(0, "1970-01-01T00:00:00Z");
        check(999, "1970-01-01T00:00:00Z");
        check(1_000, "1970-01-01T00:00:01Z");
        check(86_399_999, "1970-01-01T23:59:59Z");
        check(86_400_000, "1970-01-02T00:00:00Z");
        // Leap days, century rules and month ends.
        check(951_782_400_000, "2000-02-29T00:00:00Z");
        check(951_868_800_000, "2000-03-01T00:00:00Z");
        check(4_107_456_000_000, "2100-02-28T00:00:00Z");
        check(4_107_542_400_000, "2100-03-01T00:00:00Z");
        check(1_709_164_800_000, "2024-02-29T00:00:00Z");
        check(1_704_067_199_000, "2023-12-31T23:59:59Z");
        check(1_704_067_200_000, "2024-01-01T00:00:00Z");
        check(1_795_341_600_000, "2026-11-22T10:00:00Z");
        check(1_700_000_000_123, "2023-11-14T22:13:20Z");
        // The largest input does not overflow.
        check(u64::MAX, "584556019-04-03T14:25:51Z");
    }

    #[test]
    fn periods_are_whole_days_and_never_empty() {
        let day = |text: &str| parse_date(text).unwrap();
        let p = Period::new(Some(day("2026-11-22")), Some(day("2026-11-22"))).unwrap();
        use std::cmp::Ordering::*;
        assert_eq!(p.place(1_795_305_600_000 - 1), Less);
        assert_eq!(p.place(1_795_305_600_000), Equal);
        assert_eq!(p.place(1_795_305_600_000 + DAY_MS - 1), Equal);
        assert_eq!(p.place(1_795_305_600_000 + DAY_MS), Greater);
        let open = Period::new(None, None).unwrap();
        assert!(!open.is_bounded());
        assert_eq!((open.place(0), open.place(u64::MAX)), (Equal, Equal));
        let err = Period::new(Some(day("2026-12-01")), Some(day("2026-11-01"))).unwrap_err();
        assert_eq!(err.to_string(), "--from 2026-12-01 is after --to 2026-11-01: the period is empty");
    }

    #[test]
    fn dates_round_trip() {
        let check = |text: &str, day: u32| {
            assert_eq!(parse_date(text), Ok(day), "{text}");
            assert_eq!(date(day), text);
        };
        check("1970-01-01", 0);
        check("2000-02-29", 11_016);
        check("2026-11-22", 20_779);
        check("9999-12-31", 2_932_896);
        for bad in ["2026-02-29", "2026-13-01", "1969-12-31", "2026-1", "x", "2026-11-22-1", ""] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn percentages_round_half_up() {
        let check = |part: i128, whole: i128, expected: &str| {
            assert_eq!(percent(part, whole), expected, "{part}/{whole}");
        };
        check(2, 3, "66.67%");
        check(1, 3, "33.33%");
        check(150, 270, "55.56%");
        check(1, 8, "12.50%");
        // Exactly half a hundredth rounds up.
        check(1, 80_000, "0.00%");
        check(1, 20_000, "0.01%");
        check(1, 40_000, "0.00%");
        check(3, 40_000, "0.01%");
        check(0, 0, "0.00%");
        check(5, 0, "0.00%");
        check(7, 7, "100.00%");
        let big = i128::from(i64::MAX) * 3;
        check(2 * i128::from(i64::MAX), big, "66.67%");
        assert_eq!(basis_points(1, 3), 3_333);
        assert_eq!(basis_points(2, 3), 6_667);
    }

    #[test]
    fn a_credit_limit_is_positive_and_its_floor_negative() {
        let money = |minor: i64| cercle_core::format_with_currency(minor, 2, "CHW");
        assert_eq!(credit_limit(300_000, money), "3,000.00 CHW (floor -3,000.00 CHW)");
        assert_eq!(credit_limit(0, money), "0.00 CHW (floor 0.00 CHW)");
    }

    #[test]
    fn escapes_control_characters() {
        let check = |text: &str, expected: &str| assert_eq!(one_line(text), expected);
        check("flour, week 47", "flour, week 47");
        check("a\nb\r\tc", "a b  c");
        check("\u{1b}[31mred", "\\u{1b}[31mred");
        check("café", "café");
        // Every bidirectional control is escaped, and nothing else of the script.
        check("pay \u{202E}0001-", "pay \\u{202e}0001-");
        for c in BIDI_CONTROLS {
            assert_eq!(one_line(&c.to_string()), format!("\\u{{{:x}}}", u32::from(c)));
        }
        check("שלום", "שלום");
        check("مرحبا", "مرحبا");
    }
}
