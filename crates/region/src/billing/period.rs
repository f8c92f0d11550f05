//! Times and months of billing, in microseconds (UTC).

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, Time};

use crate::api::error::{ApiError, ApiResult};

fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

fn date_of(micros: i64) -> Date {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .date()
}

fn first_of(year: i32, month: Month) -> i64 {
    Date::from_calendar_date(year, month, 1)
        .map(|d| micros(d.with_time(Time::MIDNIGHT).assume_utc()))
        .unwrap_or(0)
}

/// A time given as RFC 3339 or as a UTC date.
pub fn parse_time(name: &str, text: &str) -> ApiResult<i64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).or_else(|_| {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        Date::parse(text, &format).map(|d| d.with_time(Time::MIDNIGHT).assume_utc())
    });
    at.map(micros).map_err(|_| {
        ApiError::invalid(format!(
            "{name} {text:?} is neither RFC 3339 nor YYYY-MM-DD"
        ))
    })
}

/// The window a report asks for: from `since` (default: the start of this
/// month) to `until` (default and at most: now).
pub fn window(since: Option<&str>, until: Option<&str>, now: i64) -> ApiResult<(i64, i64)> {
    let until = match until {
        Some(t) => parse_time("until", t)?.min(now),
        None => now,
    };
    let since = match since {
        Some(t) => parse_time("since", t)?,
        None => month_start(now),
    };
    if since >= until {
        return Err(ApiError::invalid(
            "since must be before until (and before now)",
        ));
    }
    Ok((since, until))
}

/// The first moment of the month of `micros`.
pub fn month_start(micros: i64) -> i64 {
    let d = date_of(micros);
    first_of(d.year(), d.month())
}

/// The first moment of the month after the one of `micros`.
pub fn next_month(micros: i64) -> i64 {
    let d = date_of(micros);
    let year = if d.month() == Month::December {
        d.year() + 1
    } else {
        d.year()
    };
    first_of(year, d.month().next())
}

/// `YYYY-MM` of the month of `micros`.
pub fn month_name(micros: i64) -> String {
    let d = date_of(micros);
    format!("{:04}-{:02}", d.year(), u8::from(d.month()))
}

/// The bounds of the month named `YYYY-MM`.
pub fn parse_month(text: &str) -> ApiResult<(i64, i64)> {
    let invalid = || ApiError::invalid(format!("month {text:?} is not YYYY-MM"));
    let (year, month) = text.split_once('-').ok_or_else(invalid)?;
    let year: i32 = year.parse().map_err(|_| invalid())?;
    let month: u8 = month.parse().map_err(|_| invalid())?;
    let month = Month::try_from(month).map_err(|_| invalid())?;
    if !(1970..=9999).contains(&year) || text.len() != 7 {
        return Err(invalid());
    }
    let start = first_of(year, month);
    Ok((start, next_month(start)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_have_their_bounds() {
        let (nov, dec) = parse_month("2026-11").unwrap();
        assert_eq!(crate::clock::rfc3339(nov), "2026-11-01T00:00:00Z");
        assert_eq!(crate::clock::rfc3339(dec), "2026-12-01T00:00:00Z");
        let (_, jan) = parse_month("2026-12").unwrap();
        assert_eq!(crate::clock::rfc3339(jan), "2027-01-01T00:00:00Z");
        assert_eq!(month_start(dec - 1), nov);
        assert_eq!(next_month(nov + 5), dec);
        assert_eq!(month_name(dec - 1), "2026-11");
        for bad in ["2026-13", "2026-1", "26-11", "november", "2026-11-01"] {
            assert!(parse_month(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_time("since", "2026-11-01").unwrap(), nov);
        assert!(parse_time("since", "yesterday").is_err());
    }
}
