//! Money: parsing and formatting amounts held as `i64` minor units.
//!
//! The currency's exponent (digits after the decimal point) is fixed at genesis. Amounts
//! are never floats: parsing works on the decimal string, formatting on the integer.
//!
//! Half of the people who use a WIR-style currency write a decimal comma (French,
//! Italian, German-speaking Swiss), the other half a decimal point and a thousands comma.
//! So the parser never guesses: an amount that a reasonable person could read two ways
//! (`10,00`, `1,5`, `1,000`, `1.250`) is refused with both readings, and the decimal mark
//! is always a point. Digits may be grouped by three with one kind of separator (`1,250.50`,
//! `1'250.50`, `1 250.50`), and only in correct groups.

use cercle_limits::EXPONENT_MAX;

/// A currency may not have exactly three decimals: `1.250` would then be both one and a
/// quarter, and one thousand two hundred and fifty, and no way of writing it reads one way.
pub const AMBIGUOUS_EXPONENT: u8 = 3;

/// Characters that may separate groups of three digits in the integer part. A comma also
/// may, with the rules of `parse_major`. Never the decimal mark.
const GROUP_SEPARATORS: [char; 5] = ['\'', '\u{2019}', ' ', '\u{a0}', '\u{202f}'];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount is empty")]
    Empty,
    #[error("'{0}' is not a decimal amount (expected digits, e.g. 125.50)")]
    NotDecimal(String),
    #[error("'{text}' has {given} decimals but the currency has {exponent}{}", thousands_hint(thousands))]
    TooManyDecimals { text: String, given: usize, exponent: u8, thousands: Option<String> },
    #[error("'{0}' has a sign, but amounts here are written without one")]
    Signed(String),
    #[error("'{0}' is out of range")]
    OutOfRange(String),
    /// Two readings are possible: refused rather than guessed.
    #[error(
        "'{text}' is ambiguous: it could mean {first} or {second}; write {first} or {second} (a point for decimals; for thousands no separator, or groups of three before a point)"
    )]
    Ambiguous { text: String, first: String, second: String },
    /// A decimal comma (`1.250,50`, `1,2345`): the decimal mark here is a point.
    #[error("'{text}' uses a comma for decimals: write {suggestion} (a point for decimals)")]
    DecimalComma { text: String, suggestion: String },
    #[error(
        "'{text}' has badly grouped digits: separate thousands only in groups of three (1,250.50, 1'250.50 or 1 250.50), or not at all"
    )]
    BadGrouping { text: String },
}

fn thousands_hint(thousands: &Option<String>) -> String {
    match thousands {
        Some(whole) => format!("; if the point separates thousands, write {whole}"),
        None => String::new(),
    }
}

/// The parts of an amount as written: integer digits and fraction digits, separators gone.
struct Digits {
    int: String,
    frac: String,
}

impl Digits {
    fn plain(&self) -> String {
        if self.frac.is_empty() { self.int.clone() } else { format!("{}.{}", self.int, self.frac) }
    }

    /// The decimal reading written so that it reads one way: never a point followed by
    /// exactly three digits.
    fn unambiguous(&self) -> String {
        if self.frac.len() != 3 {
            return self.plain();
        }
        let trimmed = self.frac.trim_end_matches('0');
        if trimmed.len() < 3 {
            Digits { int: self.int.clone(), frac: trimmed.to_string() }.plain()
        } else {
            format!("{}0", self.plain())
        }
    }
}

/// Digits read as a whole number, written without leading zeros.
fn whole(digits: &str) -> String {
    let trimmed = digits.trim_start_matches('0');
    if trimmed.is_empty() { "0".to_string() } else { trimmed.to_string() }
}

/// Splits `int_part` into groups at `separator` and checks they are groups of three after
/// a first group of one to three digits. Returns the digits, or `None`.
fn grouped_digits(int_part: &str, separator: char) -> Option<String> {
    let mut groups = int_part.split(separator);
    let first = groups.next()?;
    if !(1..=3).contains(&first.len()) || !first.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits = first.to_string();
    for g in groups {
        if g.len() != 3 || !g.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.push_str(g);
    }
    Some(digits)
}

/// Reads the integer part: plain digits, or digits grouped by three with one separator.
fn integer_digits(text: &str, int_part: &str) -> Result<String, AmountError> {
    if int_part.is_empty() {
        return Err(AmountError::NotDecimal(text.to_string()));
    }
    if int_part.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(int_part.to_string());
    }
    let separator = int_part.chars().find(|c| !c.is_ascii_digit()).unwrap_or(',');
    if separator != ',' && !GROUP_SEPARATORS.contains(&separator) {
        return Err(AmountError::NotDecimal(text.to_string()));
    }
    if int_part.chars().any(|c| !c.is_ascii_digit() && c != separator) {
        // Two kinds of separators (`1'000,000`): one of them may be a decimal mark.
        return Err(AmountError::BadGrouping { text: text.to_string() });
    }
    grouped_digits(int_part, separator).ok_or_else(|| AmountError::BadGrouping { text: text.to_string() })
}

/// Splits `text` (trimmed, unsigned) into digits, refusing what could be read two ways in
/// a currency with `exponent` decimals.
fn split_digits(text: &str, exponent: u8) -> Result<Digits, AmountError> {
    let points = text.matches('.').count();
    let commas = text.matches(',').count();
    if let Some(comma) = text.rfind(',')
        && text.find('.').is_some_and(|point| point < comma)
        && text[comma + 1..].bytes().all(|b| b.is_ascii_digit())
        && comma + 1 < text.len()
    {
        // `1.250,50`: points between thousands and a decimal comma.
        let suggestion = Digits {
            int: text[..comma].chars().filter(char::is_ascii_digit).collect(),
            frac: text[comma + 1..].to_string(),
        };
        return Err(AmountError::DecimalComma { text: text.to_string(), suggestion: suggestion.plain() });
    }
    if points > 1 {
        return Err(AmountError::BadGrouping { text: text.to_string() });
    }
    let (int_part, frac_part) = match text.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (text, None),
    };
    if let Some(frac) = frac_part
        && (frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(AmountError::NotDecimal(text.to_string()));
    }
    if points == 0 && commas == 1 && !int_part.chars().any(|c| GROUP_SEPARATORS.contains(&c)) {
        // A lone comma: a decimal comma, or a thousands comma?
        let (before, after) = int_part.split_once(',').unwrap_or((int_part, ""));
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if all_digits(before) && all_digits(after) {
            let as_decimal = Digits { int: before.to_string(), frac: after.to_string() };
            if after.len() <= 3 {
                return Err(AmountError::Ambiguous {
                    text: text.to_string(),
                    first: as_decimal.unambiguous(),
                    second: whole(&format!("{before}{after}")),
                });
            }
            return Err(AmountError::DecimalComma { text: text.to_string(), suggestion: as_decimal.plain() });
        }
    }
    let int = integer_digits(text, int_part)?;
    let frac = frac_part.unwrap_or("").to_string();
    if frac.len() == 3 && int_part.bytes().all(|b| b.is_ascii_digit()) && int_part.len() <= 3 {
        // `1.250`: a decimal point, or a point between thousands (as in German)?
        if frac.trim_end_matches('0').len() > usize::from(exponent) {
            // Only the second reading is an amount of this currency: still not guessed.
            return Err(AmountError::TooManyDecimals {
                text: text.to_string(),
                given: 3,
                exponent,
                thousands: Some(whole(&format!("{int}{frac}"))),
            });
        }
        return Err(AmountError::Ambiguous {
            text: text.to_string(),
            first: Digits { int: int.clone(), frac: frac.clone() }.unambiguous(),
            second: whole(&format!("{int}{frac}")),
        });
    }
    Ok(Digits { int, frac })
}

/// Parses a non-negative decimal amount in major units (`"125.50"`) into minor units.
///
/// Signs are refused: whether an amount is a debit or a credit is said by the operation,
/// never by the number. The decimal mark is a point. Thousands may be grouped by three
/// with a comma, an apostrophe or a space (`1,250.00`, `1'250.00`, `1 250.00`). Anything a
/// reasonable person could read two ways is refused with both readings: a lone comma
/// followed by one to three digits (`10,00`, `1,5`, `1,000`), or a point followed by
/// exactly three digits after at most three (`1.250`).
pub fn parse_major(text: &str, exponent: u8) -> Result<i64, AmountError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(AmountError::Empty);
    }
    if text.starts_with(['-', '+', '\u{2212}']) {
        return Err(AmountError::Signed(text.to_string()));
    }
    let Digits { int, frac } = split_digits(text, exponent)?;
    if frac.len() > usize::from(exponent) {
        return Err(AmountError::TooManyDecimals {
            text: text.to_string(),
            given: frac.len(),
            exponent,
            thousands: None,
        });
    }
    let out_of_range = || AmountError::OutOfRange(text.to_string());
    let scale = 10i64.checked_pow(u32::from(exponent)).ok_or_else(out_of_range)?;
    // Digit by digit with checked arithmetic: no intermediate type can overflow.
    let mut major: i64 = 0;
    for d in int.bytes() {
        major = major
            .checked_mul(10)
            .and_then(|m| m.checked_add(i64::from(d - b'0')))
            .ok_or_else(out_of_range)?;
    }
    let mut minor_frac: i64 = 0;
    for i in 0..usize::from(exponent) {
        let d = frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
        minor_frac = minor_frac * 10 + d;
    }
    major.checked_mul(scale).and_then(|m| m.checked_add(minor_frac)).ok_or_else(out_of_range)
}

/// Formats minor units as a major-unit decimal with thousands separators:
/// `-125000` with exponent 2 is `"-1,250.00"`. A currency without decimals groups with an
/// apostrophe (`1'000`), since `1,000` alone could be read as one.
pub fn format_minor(minor: i64, exponent: u8) -> String {
    let negative = minor < 0;
    // `unsigned_abs` handles `i64::MIN` without overflow.
    let magnitude = minor.unsigned_abs();
    let scale = 10u64.pow(u32::from(exponent.min(EXPONENT_MAX)));
    let major = magnitude / scale;
    let frac = magnitude % scale;
    let digits = major.to_string();
    let separator = if exponent == 0 { '\'' } else { ',' };
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(separator);
        }
        grouped.push(c);
    }
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    out.push_str(&grouped);
    if exponent > 0 {
        out.push('.');
        out.push_str(&format!("{frac:0width$}", width = usize::from(exponent)));
    }
    out
}

/// Formats minor units followed by the currency code: `"-1,250.00 CHW"`.
pub fn format_with_currency(minor: i64, exponent: u8, currency: &str) -> String {
    format!("{} {currency}", format_minor(minor, exponent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check_parse(text: &str, exponent: u8, expected: Result<i64, &str>) {
        let got = parse_major(text, exponent).map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(str::to_string), "parsing {text:?}");
    }

    #[test]
    fn parses_amounts() {
        check_parse("125.50", 2, Ok(12_550));
        check_parse("125.5", 2, Ok(12_550));
        check_parse("125", 2, Ok(12_500));
        check_parse("0.01", 2, Ok(1));
        check_parse("0", 2, Ok(0));
        check_parse("1,250.00", 2, Ok(125_000));
        check_parse("1'250", 2, Ok(125_000));
        check_parse("1'250.50", 2, Ok(125_050));
        check_parse("1 250.50", 2, Ok(125_050));
        check_parse("1\u{202f}250.50", 2, Ok(125_050));
        check_parse("1\u{2019}250", 2, Ok(125_000));
        check_parse("1,000,000", 2, Ok(100_000_000));
        check_parse("12,345,678.9", 2, Ok(1_234_567_890));
        check_parse("1250", 2, Ok(125_000));
        check_parse("1.5", 2, Ok(150));
        check_parse("7", 0, Ok(7));
        check_parse("1'000", 0, Ok(1_000));
        check_parse(
            "1.250",
            4,
            Err(
                "'1.250' is ambiguous: it could mean 1.25 or 1250; write 1.25 or 1250 (a point for decimals; for thousands no separator, or groups of three before a point)",
            ),
        );
        check_parse("1.2500", 4, Ok(12_500));
        check_parse("1234.250", 4, Ok(12_342_500));
        check_parse("92233720368547758.07", 2, Ok(i64::MAX));
        check_parse("92,233,720,368,547,758.07", 2, Ok(i64::MAX));
    }

    #[test]
    fn refuses_what_reads_two_ways() {
        let ambiguous = |text: &str, first: &str, second: &str| {
            check_parse(
                text,
                2,
                Err(&format!(
                    "'{text}' is ambiguous: it could mean {first} or {second}; write {first} or {second} (a point for decimals; for thousands no separator, or groups of three before a point)"
                )),
            );
        };
        // The defects of issue #10: each of these used to pay a hundred times too much or
        // a tenth of what was meant.
        ambiguous("10,00", "10.00", "1000");
        ambiguous("1,5", "1.5", "15");
        ambiguous("1,000", "1", "1000");
        ambiguous("0,250", "0.25", "250");
        ambiguous("1.250", "1.25", "1250");
        ambiguous("12.500", "12.5", "12500");
        check_parse(
            "1.251",
            4,
            Err(
                "'1.251' is ambiguous: it could mean 1.2510 or 1251; write 1.2510 or 1251 (a point for decimals; for thousands no separator, or groups of three before a point)",
            ),
        );
        check_parse(
            "1,000,0",
            2,
            Err(
                "'1,000,0' has badly grouped digits: separate thousands only in groups of three (1,250.50, 1'250.50 or 1 250.50), or not at all",
            ),
        );
        check_parse("1_0.5", 2, Err("'1_0.5' is not a decimal amount (expected digits, e.g. 125.50)"));
        check_parse(
            "1.250,50",
            2,
            Err("'1.250,50' uses a comma for decimals: write 1250.50 (a point for decimals)"),
        );
        check_parse(
            "1'250,50",
            2,
            Err(
                "'1'250,50' has badly grouped digits: separate thousands only in groups of three (1,250.50, 1'250.50 or 1 250.50), or not at all",
            ),
        );
        check_parse(
            "1,2345",
            4,
            Err("'1,2345' uses a comma for decimals: write 1.2345 (a point for decimals)"),
        );
        check_parse(
            "1.000.000",
            2,
            Err(
                "'1.000.000' has badly grouped digits: separate thousands only in groups of three (1,250.50, 1'250.50 or 1 250.50), or not at all",
            ),
        );
        check_parse(
            "12,50.00",
            2,
            Err(
                "'12,50.00' has badly grouped digits: separate thousands only in groups of three (1,250.50, 1'250.50 or 1 250.50), or not at all",
            ),
        );
        check_parse(
            "1,000 000",
            2,
            Err(
                "'1,000 000' has badly grouped digits: separate thousands only in groups of three (1,250.50, 1'250.50 or 1 250.50), or not at all",
            ),
        );
    }

    /// The name of a refusal, as `amount_vectors.json` writes it.
    fn variant(e: &AmountError) -> &'static str {
        match e {
            AmountError::Empty => "Empty",
            AmountError::NotDecimal(_) => "NotDecimal",
            AmountError::TooManyDecimals { .. } => "TooManyDecimals",
            AmountError::Signed(_) => "Signed",
            AmountError::OutOfRange(_) => "OutOfRange",
            AmountError::Ambiguous { .. } => "Ambiguous",
            AmountError::DecimalComma { .. } => "DecimalComma",
            AmountError::BadGrouping { .. } => "BadGrouping",
        }
    }

    /// The cases shared with the browser app (`web/test/amount.test.js`), which reads them
    /// with the same rule (`en`), and in French also the unambiguous decimal comma (`fr`).
    #[test]
    fn shared_vectors() {
        let file: serde_json::Value = serde_json::from_str(include_str!("../amount_vectors.json"))
            .expect("amount_vectors.json is JSON");
        let vectors = file["vectors"].as_array().expect("a list of vectors");
        assert!(vectors.len() > 40);
        for v in vectors {
            let text = v["text"].as_str().expect("text");
            let exponent = v["exponent"].as_u64().and_then(|e| u8::try_from(e).ok()).expect("exponent");
            let got = match parse_major(text, exponent) {
                Ok(minor) => serde_json::json!(minor.to_string()),
                Err(e) => serde_json::json!({ "error": variant(&e) }),
            };
            assert_eq!(got, v["en"], "parsing {text:?} with exponent {exponent}");
        }
    }

    #[test]
    fn refuses_bad_amounts() {
        check_parse("", 2, Err("amount is empty"));
        check_parse(
            "1.234",
            2,
            Err(
                "'1.234' has 3 decimals but the currency has 2; if the point separates thousands, write 1234",
            ),
        );
        check_parse("1.2345", 2, Err("'1.2345' has 4 decimals but the currency has 2"));
        check_parse("1.5", 0, Err("'1.5' has 1 decimals but the currency has 0"));
        check_parse("-5", 2, Err("'-5' has a sign, but amounts here are written without one"));
        check_parse("+5", 2, Err("'+5' has a sign, but amounts here are written without one"));
        check_parse("92233720368547758.08", 2, Err("'92233720368547758.08' is out of range"));
        check_parse("99999999999999999999999", 2, Err("'99999999999999999999999' is out of range"));
        for bad in ["abc", "1.", ".5", "1..2", "1,", ",1", "1,,000", "1e5", "0x10", "١٢", "1 5", "1''000"] {
            assert!(parse_major(bad, 2).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn formats_amounts() {
        let check = |minor: i64, exponent: u8, expected: &str| {
            assert_eq!(format_minor(minor, exponent), expected);
        };
        check(0, 2, "0.00");
        check(1, 2, "0.01");
        check(-125_000, 2, "-1,250.00");
        check(100_000_000, 2, "1,000,000.00");
        check(123, 0, "123");
        check(1234, 0, "1'234");
        check(i64::MIN, 2, "-92,233,720,368,547,758.08");
        check(i64::MAX, 2, "92,233,720,368,547,758.07");
        assert_eq!(format_with_currency(-125_000, 2, "CHW"), "-1,250.00 CHW");
    }

    /// An exact decimal value: digits and how many of them are decimals.
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    struct Value {
        digits: u128,
        scale: u32,
    }

    impl Value {
        /// The same value with `scale` decimals, if it has no more than that.
        fn at_scale(&self, scale: u32) -> Option<u128> {
            if self.scale > scale {
                let drop = 10u128.pow(self.scale - scale);
                return self.digits.is_multiple_of(drop).then_some(self.digits / drop);
            }
            self.digits.checked_mul(10u128.pow(scale - self.scale))
        }

        /// Without trailing zeros in the fraction, so equal values compare equal.
        fn normalized(mut self) -> Value {
            while self.scale > 0 && self.digits.is_multiple_of(10) {
                self.digits /= 10;
                self.scale -= 1;
            }
            self
        }
    }

    /// The independent reference: every value a reasonable reader could see in `text`.
    /// The decimal mark is a point, a comma, or absent; every other punctuation mark in the
    /// integer part separates groups of three (one kind per number), and there is none in
    /// the fraction. Returns each value with whether it reads the comma as decimal mark.
    fn readings(text: &str) -> Vec<(Value, bool)> {
        let text = text.trim();
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let mut out = Vec::new();
        for mark in [None, Some('.'), Some(',')] {
            let (int_part, frac) = match mark {
                Some(m) if text.matches(m).count() == 1 => {
                    let (i, f) = text.split_once(m).unwrap_or((text, ""));
                    (i, f)
                }
                Some(_) => continue,
                None => (text, ""),
            };
            if mark.is_some() && !digits(frac) {
                continue;
            }
            let seps: Vec<char> = int_part.chars().filter(|c| !c.is_ascii_digit()).collect();
            let int = if seps.is_empty() {
                int_part.to_string()
            } else {
                if seps.iter().any(|&c| c != seps[0]) {
                    continue;
                }
                let groups: Vec<&str> = int_part.split(seps[0]).collect();
                let ok = (1..=3).contains(&groups[0].len())
                    && groups.iter().all(|g| digits(g))
                    && groups[1..].iter().all(|g| g.len() == 3);
                if !ok {
                    continue;
                }
                groups.concat()
            };
            if !digits(&int) {
                continue;
            }
            let all = format!("{int}{frac}");
            let Ok(value) = all.parse::<u128>() else { continue };
            out.push((Value { digits: value, scale: frac.len() as u32 }, mark == Some(',')));
        }
        out
    }

    fn amount_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            4 => "[0-9]{1,4}",
            1 => Just(",".to_string()),
            1 => Just(".".to_string()),
            1 => Just("'".to_string()),
            1 => Just(" ".to_string()),
            1 => Just("_".to_string()),
        ];
        proptest::collection::vec(piece, 1..7).prop_map(|p| p.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Every accepted string has exactly one reading, which is the parsed value; every
        /// string with two readings is refused.
        #[test]
        fn an_accepted_amount_reads_one_way(text in amount_text(), exponent in prop_oneof![0u8..=2, 4u8..=6]) {
            let values: std::collections::BTreeSet<Value> =
                readings(&text).into_iter().map(|(v, _)| v.normalized()).collect();
            if let Ok(minor) = parse_major(&text, exponent) {
                prop_assert_eq!(values.len(), 1, "{:?} accepted with readings {:?}", text, readings(&text));
                let readings = readings(&text);
                let (value, _) = readings.iter().find(|(_, comma)| !comma).expect("a point reading");
                prop_assert_eq!(value.at_scale(u32::from(exponent)), Some(minor as u128));
            }
            if values.len() > 1 {
                prop_assert!(parse_major(&text, exponent).is_err(), "{:?} has two readings", text);
            }
        }

        /// Formatting then parsing gives the amount back, for every non-negative amount.
        #[test]
        fn format_then_parse_is_the_identity(
            minor in 0i64..=i64::MAX,
            exponent in (0u8..=EXPONENT_MAX).prop_filter("three decimals read two ways", |e| *e != AMBIGUOUS_EXPONENT),
        ) {
            let text = format_minor(minor, exponent);
            prop_assert_eq!(parse_major(&text, exponent), Ok(minor), "{}", text);
        }
    }

    #[test]
    fn format_then_parse_round_trips_at_the_edges() {
        for minor in [0i64, 1, 99, 100, 999, 1000, 12_345_678, i64::MAX] {
            for exponent in (0..=EXPONENT_MAX).filter(|e| *e != AMBIGUOUS_EXPONENT) {
                let text = format_minor(minor, exponent);
                assert_eq!(parse_major(&text, exponent), Ok(minor), "{text}");
            }
        }
    }
}
