//! Event-time parsing: RFC 3339, `YYYY-MM-DD HH:MM:SS[.fff]` (UTC) and epoch numbers, into
//! milliseconds since the Unix epoch. Hand-written because it runs once per event.

use serde::Deserialize;
use std::fmt;

/// How the timestamp field is written; `auto` accepts all of them.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// RFC 3339 or `YYYY-MM-DD HH:MM:SS[.fff]` strings, or epoch milliseconds numbers.
    #[default]
    Auto,
    /// `2026-01-27T22:35:51.123Z`, `2026-01-27T23:35:51+01:00`.
    Rfc3339,
    /// `2026-01-27 22:35:51[.fff]`, taken as UTC.
    DateTime,
    /// Integer milliseconds since the Unix epoch.
    EpochMillis,
    /// Seconds since the Unix epoch, fractions allowed.
    EpochSeconds,
}

/// A timestamp given as JSON text.
pub enum Raw<'a> {
    /// The contents of a JSON string.
    Str(&'a [u8]),
    /// The text of a JSON number.
    Num(&'a [u8]),
}

/// The earliest event time accepted: 0001-01-01T00:00:00Z, in epoch milliseconds.
pub const MIN_TIME: i64 = -62_135_596_800_000;
/// The latest event time accepted: 9999-12-31T23:59:59.999Z. Windows, delays and cooldowns
/// (at most 100 years each) added to any time in range stay far from overflowing.
pub const MAX_TIME: i64 = 253_402_300_799_999;

/// Why a timestamp was not accepted.
pub type TimeError = &'static str;

/// Parses timestamps of one format into epoch milliseconds (digits past milliseconds are
/// truncated). It remembers the last date it saw: events arrive roughly in time order, so
/// the calendar arithmetic is rarely needed.
pub struct TimeParser {
    format: TimeFormat,
    last_date: Option<([u8; 10], i64)>,
}

impl TimeParser {
    /// A parser for `format`.
    pub fn new(format: TimeFormat) -> Self {
        TimeParser {
            format,
            last_date: None,
        }
    }

    /// Parses one timestamp; times outside [`MIN_TIME`]`..=`[`MAX_TIME`] are refused.
    pub fn parse(&mut self, raw: Raw<'_>) -> Result<i64, TimeError> {
        let t = self.parse_any(raw)?;
        if (MIN_TIME..=MAX_TIME).contains(&t) {
            Ok(t)
        } else {
            Err("outside the years 0001 to 9999")
        }
    }

    fn parse_any(&mut self, raw: Raw<'_>) -> Result<i64, TimeError> {
        match (raw, self.format) {
            (Raw::Str(s), TimeFormat::Auto | TimeFormat::Rfc3339 | TimeFormat::DateTime) => {
                parse_text(s, self.format, &mut self.last_date)
            }
            (Raw::Num(n), TimeFormat::Auto | TimeFormat::EpochMillis) => epoch_millis(n),
            (Raw::Num(n), TimeFormat::EpochSeconds) => epoch_seconds(n),
            (Raw::Str(_), TimeFormat::EpochMillis | TimeFormat::EpochSeconds) => {
                Err("expected a number of the epoch, found a string")
            }
            (Raw::Num(_), TimeFormat::Rfc3339 | TimeFormat::DateTime) => {
                Err("expected a date-time string, found a number")
            }
        }
    }
}

fn epoch_millis(n: &[u8]) -> Result<i64, TimeError> {
    std::str::from_utf8(n)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or("epoch milliseconds must be an integer")
}

fn epoch_seconds(n: &[u8]) -> Result<i64, TimeError> {
    let secs: f64 = std::str::from_utf8(n)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or("not a number")?;
    let ms = (secs * 1000.0).floor();
    if ms.is_finite() && ms.abs() < 9.0e15 {
        Ok(ms as i64)
    } else {
        Err("epoch seconds out of range")
    }
}

fn digits(s: &[u8], at: usize, n: usize) -> Result<i64, TimeError> {
    let d = s.get(at..at + n).ok_or("too short for a date-time")?;
    d.iter().try_fold(0i64, |acc, &c| {
        if c.is_ascii_digit() {
            Ok(acc * 10 + (c - b'0') as i64)
        } else {
            Err("expected a digit")
        }
    })
}

fn expect(s: &[u8], at: usize, what: &[u8], err: TimeError) -> Result<(), TimeError> {
    match s.get(at) {
        Some(c) if what.contains(c) => Ok(()),
        _ => Err(err),
    }
}

/// Days since the epoch of the `YYYY-MM-DD` that starts `s`.
fn date(s: &[u8]) -> Result<i64, TimeError> {
    let year = digits(s, 0, 4).map_err(|_| "does not start with a 4-digit year")?;
    expect(s, 4, b"-", "expected '-' after the year")?;
    let month = digits(s, 5, 2)?;
    expect(s, 7, b"-", "expected '-' after the month")?;
    let day = digits(s, 8, 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("no such date");
    }
    Ok(days_from_civil(year, month, day))
}

fn parse_text(
    s: &[u8],
    format: TimeFormat,
    last_date: &mut Option<([u8; 10], i64)>,
) -> Result<i64, TimeError> {
    let days = match (s.first_chunk::<10>(), *last_date) {
        (Some(d), Some((seen, days))) if *d == seen => days,
        _ => {
            let days = date(s)?;
            *last_date = s.first_chunk::<10>().map(|d| (*d, days));
            days
        }
    };
    let sep: &[u8] = match format {
        TimeFormat::Rfc3339 => b"Tt",
        TimeFormat::DateTime => b" ",
        _ => b"Tt ",
    };
    expect(s, 10, sep, "expected 'T' or ' ' between date and time")?;
    let hour = digits(s, 11, 2)?;
    expect(s, 13, b":", "expected ':' after the hour")?;
    let minute = digits(s, 14, 2)?;
    expect(s, 16, b":", "expected ':' after the minute")?;
    let second = digits(s, 17, 2)?;
    if hour > 23 || minute > 59 || second > 60 {
        return Err("no such time of day");
    }
    let mut i = 19;
    let mut millis = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while let Some(c) = s.get(i).filter(|c| c.is_ascii_digit()) {
            if i - start < 3 {
                millis = millis * 10 + (c - b'0') as i64;
            }
            i += 1;
        }
        match i - start {
            0 => return Err("expected digits after '.'"),
            1 => millis *= 100,
            2 => millis *= 10,
            _ => {}
        }
    }
    let offset_min = match (s.get(i), format) {
        (None, TimeFormat::Rfc3339) => return Err("missing time zone (Z or ±HH:MM)"),
        (None, _) => 0,
        (Some(_), TimeFormat::DateTime) => return Err("unexpected characters after the time"),
        (Some(b'Z' | b'z'), _) if i + 1 == s.len() => 0,
        (Some(&sign @ (b'+' | b'-')), _) => {
            let h = digits(s, i + 1, 2)?;
            expect(s, i + 3, b":", "expected ':' in the time zone offset")?;
            let m = digits(s, i + 4, 2)?;
            if i + 6 != s.len() || h > 23 || m > 59 {
                return Err("invalid time zone offset");
            }
            if sign == b'+' {
                h * 60 + m
            } else {
                -(h * 60 + m)
            }
        }
        _ => return Err("unexpected characters after the time"),
    };
    // A leap second is folded into the next second, as most systems do.
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    Ok(secs * 1000 + millis)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Broken-down UTC time: (year, month, day, hour, minute, second, millisecond).
fn civil(ms: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        ms.rem_euclid(1000),
    )
}

fn write_time(
    f: &mut fmt::Formatter<'_>,
    ms: i64,
    sep: char,
    millis: Millis,
    zone: &str,
) -> fmt::Result {
    let (y, mo, d, h, mi, s, frac) = civil(ms);
    write!(f, "{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}")?;
    if millis == Millis::Always || frac != 0 {
        write!(f, ".{frac:03}")?;
    }
    f.write_str(zone)
}

#[derive(PartialEq, Eq)]
enum Millis {
    WhenNotWhole,
    Always,
}

/// Displays epoch milliseconds as RFC 3339 UTC with milliseconds always:
/// `2026-01-27T22:35:51.000Z`, as log producers write them.
pub struct Rfc3339Millis(pub i64);

impl fmt::Display for Rfc3339Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_time(f, self.0, 'T', Millis::Always, "Z")
    }
}

struct Rfc3339(i64);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_time(f, self.0, 'T', Millis::WhenNotWhole, "Z")
    }
}

struct Spark(i64);

impl fmt::Display for Spark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_time(f, self.0, ' ', Millis::WhenNotWhole, "")
    }
}

/// Formats epoch milliseconds as RFC 3339 UTC: whole seconds when whole, else with ms.
pub fn format_rfc3339(ms: i64) -> String {
    Rfc3339(ms).to_string()
}

/// Formats epoch milliseconds as `YYYY-MM-DD HH:MM:SS[.fff]` UTC, as Spark's console shows
/// timestamps.
pub fn format_spark(ms: i64) -> String {
    Spark(ms).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: Raw<'_>, format: TimeFormat) -> Result<i64, TimeError> {
        TimeParser::new(format).parse(raw)
    }

    fn auto(s: &str) -> Result<i64, TimeError> {
        parse(Raw::Str(s.as_bytes()), TimeFormat::Auto)
    }

    #[test]
    fn accepts_the_documented_formats() {
        let base = 1_769_553_351_000; // 2026-01-27T22:35:51Z
        assert_eq!(auto("2026-01-27T22:35:51Z"), Ok(base));
        assert_eq!(auto("2026-01-27T22:35:51.123Z"), Ok(base + 123));
        assert_eq!(auto("2026-01-27T22:35:51.1Z"), Ok(base + 100));
        assert_eq!(auto("2026-01-27T22:35:51.123456789Z"), Ok(base + 123));
        assert_eq!(auto("2026-01-27T23:35:51+01:00"), Ok(base));
        assert_eq!(auto("2026-01-27T20:05:51.5-02:30"), Ok(base + 500));
        assert_eq!(auto("2026-01-27 22:35:51"), Ok(base));
        assert_eq!(auto("2026-01-27 22:35:51.250"), Ok(base + 250));
        assert_eq!(auto("1969-12-31T23:59:59.999Z"), Ok(-1));
        assert_eq!(
            parse(Raw::Num(b"1769553351123"), TimeFormat::Auto),
            Ok(base + 123)
        );
        assert_eq!(
            parse(Raw::Num(b"1769553351.5"), TimeFormat::EpochSeconds),
            Ok(base + 500)
        );
    }

    #[test]
    fn rejects_what_is_not_a_timestamp() {
        for bad in [
            "yesterday",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-27T24:00:00Z",
            "2026-01-27T22:35:51",
            "2026-01-27T22:35:51.Z",
            "2026-01-27T22:35:51+0100",
            "2026-01-27T22:35:51Zx",
            "2026-01-27",
            "",
        ] {
            assert!(
                parse(Raw::Str(bad.as_bytes()), TimeFormat::Rfc3339).is_err(),
                "{bad}"
            );
        }
        assert!(auto("2026-01-27 22:35:51 UTC").is_err());
        assert!(parse(Raw::Num(b"1.5"), TimeFormat::EpochMillis).is_err());
        assert!(parse(Raw::Str(b"2026-01-27T22:35:51Z"), TimeFormat::DateTime).is_err());
        assert!(parse(Raw::Num(b"12"), TimeFormat::Rfc3339).is_err());
        // Times outside years 0001..=9999, however written.
        for n in [
            "9223372036854775807",
            "-9223372036854775808",
            "253402300800000",
        ] {
            assert!(
                parse(Raw::Num(n.as_bytes()), TimeFormat::Auto).is_err(),
                "{n}"
            );
        }
        assert!(parse(Raw::Num(b"8000000000000"), TimeFormat::EpochSeconds).is_err());
        assert!(auto("0000-12-31T23:59:59Z").is_err());
        assert_eq!(auto("9999-12-31T23:59:59.999Z"), Ok(MAX_TIME));
        assert_eq!(auto("0001-01-01T00:00:00Z"), Ok(MIN_TIME));
        assert_eq!(
            parse(Raw::Num(b"253402300799999"), TimeFormat::Auto),
            Ok(MAX_TIME)
        );
    }

    #[test]
    fn the_date_cache_does_not_leak_between_dates() {
        let mut p = TimeParser::new(TimeFormat::Auto);
        let at = |p: &mut TimeParser, s: &str| p.parse(Raw::Str(s.as_bytes()));
        assert_eq!(at(&mut p, "2026-01-27T00:00:00Z"), Ok(1_769_472_000_000));
        assert_eq!(at(&mut p, "2026-01-27T00:00:01Z"), Ok(1_769_472_001_000));
        assert_eq!(at(&mut p, "2026-01-28T00:00:00Z"), Ok(1_769_558_400_000));
        assert!(at(&mut p, "2026-02-30T00:00:00Z").is_err());
        assert!(at(&mut p, "2026-02-30T00:00:00Z").is_err());
        assert_eq!(at(&mut p, "2026-01-28 00:00:00"), Ok(1_769_558_400_000));
    }

    #[test]
    fn formats_round_trip() {
        for ms in [0, 1_769_553_350_000, 1_769_553_351_123, -1, 951_782_400_000] {
            assert_eq!(auto(&format_rfc3339(ms)), Ok(ms));
            assert_eq!(auto(&format_spark(ms)), Ok(ms));
        }
        assert_eq!(format_rfc3339(1_769_553_350_000), "2026-01-27T22:35:50Z");
        assert_eq!(format_spark(1_769_553_351_123), "2026-01-27 22:35:51.123");
        assert_eq!(
            Rfc3339Millis(1_769_553_350_000).to_string(),
            "2026-01-27T22:35:50.000Z"
        );
    }
}
