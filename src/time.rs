//! Timestamps as stored in the read models: UTC RFC 3339 with exactly six
//! fractional digits, so that text order is time order on both backends.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

/// Formats a timestamp the way the read models store it (and Prefect returns it).
pub fn fmt_ts(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses any RFC 3339 / ISO 8601 timestamp, plus the space-separated and
/// zone-less forms Python's `str(datetime)` produces (taken as UTC).
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    let t = s.replacen(' ', "T", 1);
    if let Ok(dt) = DateTime::parse_from_rfc3339(&t) {
        return Some(dt.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%#z"] {
        if let Ok(dt) = DateTime::parse_from_str(&t, fmt) {
            return Some(dt.with_timezone(&Utc));
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(&t, fmt) {
            return Some(n.and_utc());
        }
    }
    chrono::NaiveDate::parse_from_str(&t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|n| n.and_utc())
}

/// Truncates to whole microseconds (the stored precision).
pub fn micros(ts: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(ts.timestamp_micros()).unwrap_or(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_sorts_as_text() {
        let a = parse_ts("2026-11-23T07:58:33.3164Z").unwrap();
        let b = parse_ts("2026-11-23 07:58:33.316432+00:00").unwrap();
        assert_eq!(fmt_ts(a), "2026-11-23T07:58:33.316400Z");
        assert_eq!(fmt_ts(b), "2026-11-23T07:58:33.316432Z");
        assert!(fmt_ts(a) < fmt_ts(b));
        assert_eq!(fmt_ts(parse_ts("2026-11-23T08:58:33+01:00").unwrap()), "2026-11-23T07:58:33.000000Z");
        assert!(parse_ts("yesterday").is_none());
    }
}
