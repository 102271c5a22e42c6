//! Money: parsing and formatting amounts held as `i64` minor units.
//!
//! The currency's exponent (digits after the decimal point) is fixed at genesis. Amounts
//! are never floats: parsing works on the decimal string, formatting on the integer.

/// The largest exponent a ledger may use. 10^18 still fits an `i64`.
pub const EXPONENT_MAX: u8 = 9;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount is empty")]
    Empty,
    #[error("'{0}' is not a decimal amount (expected digits, e.g. 125.50)")]
    NotDecimal(String),
    #[error("'{text}' has {given} decimals but the currency has {exponent}")]
    TooManyDecimals { text: String, given: usize, exponent: u8 },
    #[error("'{0}' has a sign, but amounts here are written without one")]
    Signed(String),
    #[error("'{0}' is out of range")]
    OutOfRange(String),
}

/// Parses a non-negative decimal amount in major units (`"125.50"`) into minor units.
///
/// Signs are refused: whether an amount is a debit or a credit is said by the
/// operation, never by the number. Thousands separators (`,`, `_`, `'`) are accepted
/// between digits of the integer part, so `1,250.00` and `1'250.00` parse.
pub fn parse_major(text: &str, exponent: u8) -> Result<i64, AmountError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(AmountError::Empty);
    }
    if text.starts_with(['-', '+']) {
        return Err(AmountError::Signed(text.to_string()));
    }
    let (int_part, frac_part) = match text.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (text, None),
    };
    let not_decimal = || AmountError::NotDecimal(text.to_string());
    let int_digits: String = {
        let bytes = int_part.as_bytes();
        let mut out = String::with_capacity(bytes.len());
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'0'..=b'9' => out.push(b as char),
                b',' | b'_' | b'\'' => {
                    let prev_digit = i > 0 && bytes[i - 1].is_ascii_digit();
                    let next_digit = bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
                    if !prev_digit || !next_digit {
                        return Err(not_decimal());
                    }
                }
                _ => return Err(not_decimal()),
            }
        }
        out
    };
    if int_digits.is_empty() {
        return Err(not_decimal());
    }
    let frac = frac_part.unwrap_or("");
    if frac_part.is_some() && frac.is_empty() {
        return Err(not_decimal());
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_decimal());
    }
    if frac.len() > usize::from(exponent) {
        return Err(AmountError::TooManyDecimals { text: text.to_string(), given: frac.len(), exponent });
    }
    let out_of_range = || AmountError::OutOfRange(text.to_string());
    let scale = 10i64.checked_pow(u32::from(exponent)).ok_or_else(out_of_range)?;
    // Parse digit by digit with checked arithmetic: no intermediate type can overflow.
    let mut major: i64 = 0;
    for d in int_digits.bytes() {
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
/// `-125000` with exponent 2 is `"-1,250.00"`.
pub fn format_minor(minor: i64, exponent: u8) -> String {
    let negative = minor < 0;
    // `unsigned_abs` handles `i64::MIN` without overflow.
    let magnitude = minor.unsigned_abs();
    let scale = 10u64.pow(u32::from(exponent.min(EXPONENT_MAX)));
    let major = magnitude / scale;
    let frac = magnitude % scale;
    let digits = major.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
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
        check_parse("7", 0, Ok(7));
        check_parse("92233720368547758.07", 2, Ok(i64::MAX));
    }

    #[test]
    fn refuses_bad_amounts() {
        check_parse("", 2, Err("amount is empty"));
        check_parse("1.234", 2, Err("'1.234' has 3 decimals but the currency has 2"));
        check_parse("1.5", 0, Err("'1.5' has 1 decimals but the currency has 0"));
        check_parse("-5", 2, Err("'-5' has a sign, but amounts here are written without one"));
        check_parse("+5", 2, Err("'+5' has a sign, but amounts here are written without one"));
        check_parse("92233720368547758.08", 2, Err("'92233720368547758.08' is out of range"));
        check_parse("99999999999999999999999", 2, Err("'99999999999999999999999' is out of range"));
        for bad in ["abc", "1.", ".5", "1..2", "1,", ",1", "1,,000", "1e5", "0x10", "1 000", "١٢"] {
            assert!(
                matches!(parse_major(bad, 2), Err(AmountError::NotDecimal(_))),
                "{bad:?} should be refused"
            );
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
        check(1234, 0, "1,234");
        check(i64::MIN, 2, "-92,233,720,368,547,758.08");
        check(i64::MAX, 2, "92,233,720,368,547,758.07");
        assert_eq!(format_with_currency(-125_000, 2, "CHW"), "-1,250.00 CHW");
    }

    #[test]
    fn format_then_parse_round_trips() {
        for minor in [0i64, 1, 99, 100, 12_345_678, i64::MAX] {
            for exponent in 0..=4u8 {
                let text = format_minor(minor, exponent);
                assert_eq!(parse_major(&text, exponent), Ok(minor), "{text}");
            }
        }
    }
}
