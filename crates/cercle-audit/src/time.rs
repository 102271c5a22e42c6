//! Entry timestamps (ms since the Unix epoch, UTC) as dates and RFC 3339 times.

/// An RFC 3339 UTC timestamp to the second: `2026-11-22T10:00:00Z`.
pub fn rfc3339(timestamp_ms: u64) -> String {
    let (year, month, day) = date(timestamp_ms);
    let second_of_day = timestamp_ms / 1000 % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// The UTC date: `2026-11-22`.
pub fn utc_date(timestamp_ms: u64) -> String {
    let (year, month, day) = date(timestamp_ms);
    format!("{year:04}-{month:02}-{day:02}")
}

fn date(timestamp_ms: u64) -> (i64, u32, u32) {
    // u64::MAX / 86_400_000 days fits an i64 comfortably.
    civil_from_days((timestamp_ms / 86_400_000) as i64)
}

/// The proleptic Gregorian date of a day number counted from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`), for days >= 0.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(timestamp_ms: u64, expected: &str) {
        assert_eq!(rfc3339(timestamp_ms), expected, "{timestamp_ms} ms");
        assert_eq!(utc_date(timestamp_ms), expected[..expected.len() - 10], "{timestamp_ms} ms");
    }

    #[test]
    fn formats_timestamps() {
        check(0, "1970-01-01T00:00:00Z");
        check(86_399_999, "1970-01-01T23:59:59Z");
        check(951_782_400_000, "2000-02-29T00:00:00Z");
        check(4_107_542_400_000, "2100-03-01T00:00:00Z");
        check(1_795_341_600_000, "2026-11-22T10:00:00Z");
        check(u64::MAX, "584556019-04-03T14:25:51Z");
    }
}
