//! Amounts typed by people, validated before anything is signed or sent.
//!
//! The currency's exponent comes from the node, so validation happens in two steps:
//! [`precheck`] refuses what no currency accepts (a sign, letters, zero where a payment
//! is meant) before connecting, and [`parse`] applies the ledger's exponent and range
//! once the genesis is known.

use cercle_core::{AmountError, parse_major};
use cercle_limits::EXPONENT_MAX;

/// What an amount may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    /// A payment: strictly positive.
    Positive,
    /// A limit: zero is meaningful.
    NonNegative,
}

/// Refuses amounts that are wrong whatever the currency. `what` names the argument
/// ("amount", "credit limit").
pub fn precheck(text: &str, what: &str, sign: Sign) -> anyhow::Result<()> {
    match parse_major(text, EXPONENT_MAX) {
        Ok(minor) => check_sign(text, what, sign, minor),
        // Whether it fits depends on the exponent: `parse` decides. So does `1.250`, a
        // decimal point or a thousands point: how to say so depends on the decimals the
        // currency has. A lone comma (`10,00`) is refused whatever the currency.
        Err(AmountError::OutOfRange(_)) => Ok(()),
        Err(AmountError::Ambiguous { .. }) if !text.contains(',') => Ok(()),
        Err(AmountError::TooManyDecimals { text, given, thousands: None, .. }) => {
            crate::usage_bail!("invalid {what}: '{text}' has {given} decimals, more than any currency has")
        }
        Err(e) => crate::usage_bail!("invalid {what}: {e}"),
    }
}

/// Parses an amount in major units into minor units of a currency with `exponent`
/// decimals.
pub fn parse(text: &str, what: &str, sign: Sign, exponent: u8) -> anyhow::Result<i64> {
    match parse_major(text, exponent) {
        Ok(minor) => {
            check_sign(text, what, sign, minor)?;
            Ok(minor)
        }
        Err(e) => crate::usage_bail!("invalid {what}: {e}"),
    }
}

/// The `--max-balance` value that removes the maximum.
pub const NO_MAXIMUM: &str = "none";

/// A change of limits as typed: a new credit limit, and a new maximum balance or `none` to
/// remove it (`set-limits` on an account, `group set` on a group's defaults). Checked
/// before connecting ([`LimitsChange::precheck`]), parsed once the exponent is known.
pub struct LimitsChange<'a> {
    credit_limit: Option<&'a str>,
    max_balance: Option<&'a str>,
}

impl<'a> LimitsChange<'a> {
    /// Refuses a change of nothing, and amounts wrong whatever the currency.
    pub fn precheck(credit_limit: Option<&'a str>, max_balance: Option<&'a str>) -> anyhow::Result<Self> {
        if credit_limit.is_none() && max_balance.is_none() {
            crate::usage_bail!(
                "nothing to change: give --credit-limit AMOUNT, --max-balance AMOUNT, or --max-balance none"
            );
        }
        if let Some(limit) = credit_limit {
            precheck(limit, "credit limit", Sign::NonNegative)?;
        }
        let change = LimitsChange { credit_limit, max_balance };
        if let Some(max) = change.max_amount() {
            precheck(max, "maximum balance", Sign::NonNegative)?;
        }
        Ok(change)
    }

    fn max_amount(&self) -> Option<&'a str> {
        self.max_balance.filter(|m| m.trim() != NO_MAXIMUM)
    }

    /// The credit limit, and the maximum: `None` keeps it, `Some(None)` removes it,
    /// `Some(Some(m))` replaces it; in minor units of a currency with `exponent` decimals.
    #[allow(clippy::type_complexity)]
    pub fn parse(&self, exponent: u8) -> anyhow::Result<(Option<i64>, Option<Option<i64>>)> {
        let credit_limit_minor = self
            .credit_limit
            .map(|limit| parse(limit, "credit limit", Sign::NonNegative, exponent))
            .transpose()?;
        let max_balance_minor = match (self.max_balance, self.max_amount()) {
            (None, _) => None,
            (Some(_), None) => Some(None),
            (Some(_), Some(max)) => Some(Some(parse(max, "maximum balance", Sign::NonNegative, exponent)?)),
        };
        Ok((credit_limit_minor, max_balance_minor))
    }
}

fn check_sign(text: &str, what: &str, sign: Sign, minor: i64) -> anyhow::Result<()> {
    if sign == Sign::Positive && minor == 0 {
        crate::usage_bail!("invalid {what}: '{}' is zero; it must be positive", text.trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs both steps at `exponent` and returns the minor units or the error message.
    fn check(text: &str, sign: Sign, exponent: u8, expected: Result<i64, &str>) {
        let got = precheck(text, "amount", sign)
            .and_then(|()| parse(text, "amount", sign, exponent))
            .map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(str::to_string), "{text:?}");
    }

    #[test]
    fn validates_amounts() {
        use Sign::*;
        check("125.50", Positive, 2, Ok(12_550));
        check("1,000.00", NonNegative, 2, Ok(100_000));
        check("1'000", NonNegative, 2, Ok(100_000));
        // A decimal comma is never guessed: 10,00 once signed 1,000.00.
        check(
            "10,00",
            Positive,
            2,
            Err(
                "invalid amount: '10,00' is ambiguous: it could mean 10.00 or 1000; write 10.00 or 1000 (a point for decimals; for thousands no separator, or groups of three before a point)",
            ),
        );
        check("0", NonNegative, 2, Ok(0));
        check("0", Positive, 2, Err("invalid amount: '0' is zero; it must be positive"));
        check("0.00", Positive, 2, Err("invalid amount: '0.00' is zero; it must be positive"));
        check(
            "1.234",
            Positive,
            2,
            Err(
                "invalid amount: '1.234' has 3 decimals but the currency has 2; if the point separates thousands, write 1234",
            ),
        );
        check(
            "-5",
            Positive,
            2,
            Err("invalid amount: '-5' has a sign, but amounts here are written without one"),
        );
        check(
            "1.0000000001",
            Positive,
            2,
            Err("invalid amount: '1.0000000001' has 10 decimals, more than any currency has"),
        );
        check(
            "abc",
            Positive,
            2,
            Err("invalid amount: 'abc' is not a decimal amount (expected digits, e.g. 125.50)"),
        );
        check(
            "99999999999999999999",
            Positive,
            2,
            Err("invalid amount: '99999999999999999999' is out of range"),
        );
        // Out of range at 9 decimals, but fine at 2.
        check("92233720368547758", Positive, 2, Ok(9_223_372_036_854_775_800));
    }
}
