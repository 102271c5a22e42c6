//! Calendar arithmetic on the node's timestamps (ms since the Unix epoch, UTC) and day
//! numbers (days since 1970-01-01): pure functions, no clock. Messages and outputs show
//! dates, never raw milliseconds.

/// Milliseconds in a day.
pub const DAY_MS: u64 = 86_400_000;

/// Formats milliseconds since the Unix epoch as an RFC 3339 UTC timestamp to the second,
/// e.g. `2026-11-22T10:00:00Z`.
pub fn rfc3339_ms(timestamp_ms: u64) -> String {
    let seconds = timestamp_ms / 1000;
    // u64::MAX / 86_400 days fits an i64 comfortably.
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

/// A day number as `YYYY-MM-DD`.
pub fn date(day: u32) -> String {
    let (year, month, day) = civil_from_days(i64::from(day));
    format!("{year:04}-{month:02}-{day:02}")
}

/// The day number (days since 1970-01-01) of a `YYYY-MM-DD` date from 1970 to 9999.
pub fn parse_date(text: &str) -> Result<u32, String> {
    let bad = || format!("'{text}' is not a date of the form YYYY-MM-DD");
    let mut parts = text.splitn(3, '-');
    let (y, m, d) = (parts.next(), parts.next(), parts.next());
    let (Some(y), Some(m), Some(d)) = (y, m, d) else { return Err(bad()) };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let (y, m, d): (i64, u32, u32) =
        (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return Err(bad());
    }
    Ok(days_from_civil(y, m, d) as u32)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][(month - 1) as usize]
}

/// Days from a civil date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day number counted from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`), for days >= 0.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(timestamp_ms: u64, expected: &str) {
        assert_eq!(rfc3339_ms(timestamp_ms), expected, "{timestamp_ms} ms");
    }

    #[test]
    fn formats_timestamps() {
        check(0, "1970-01-01T00:00:00Z");
        check(999, "1970-01-01T00:00:00Z");
        check(86_400_000, "1970-01-02T00:00:00Z");
        check(951_782_400_000, "2000-02-29T00:00:00Z");
        check(4_107_542_400_000, "2100-03-01T00:00:00Z");
        check(1_795_341_600_000, "2026-11-22T10:00:00Z");
        check(u64::MAX, "584556019-04-03T14:25:51Z");
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
        for bad in ["2026-02-29", "2026-13-01", "1969-12-31", "2026-1", "x", "2026-11-22-1", "", "2026-1-01"]
        {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
        for day in (0..2_932_896).step_by(997) {
            assert_eq!(parse_date(&date(day)), Ok(day));
        }
    }
}
