//! Timestamps as stored in the read models: UTC RFC 3339 with exactly six
//! fractional digits, so that text order is time order on both backends.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, TimeZone, Utc};

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

/// A datetime as pydantic reads one leniently: RFC 3339, a date alone, a
/// `T`/space/`_` separator, optional fraction and zone (naive = UTC).
pub fn parse_lax_datetime(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    let s = s.trim();
    let bytes = s.as_bytes();
    if bytes.len() < 10 || !s.is_char_boundary(10) {
        return None;
    }
    let date = NaiveDate::parse_from_str(&s[..10], "%Y-%m-%d").ok()?;
    if bytes.len() == 10 {
        return Some(date.and_hms_opt(0, 0, 0)?.and_utc());
    }
    if !matches!(bytes[10], b'T' | b't' | b' ' | b'_') {
        return None;
    }
    let rest = &s[11..];
    // Split the time from the zone designator.
    let tz_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (time_s, zone_s) = rest.split_at(tz_at);
    let time = parse_time(time_s)?;
    let naive = NaiveDateTime::new(date, time);
    let offset = parse_zone(zone_s)?;
    let local = offset.from_local_datetime(&naive).single()?;
    Some(local.with_timezone(&Utc))
}

fn parse_time(s: &str) -> Option<NaiveTime> {
    let (hms, frac) = match s.find(['.', ',']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    let num = |p: &str| -> Option<u32> {
        if p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()) {
            p.parse().ok()
        } else {
            None
        }
    };
    let (h, m, sec) = match parts.as_slice() {
        [h, m] if frac.is_none() => (num(h)?, num(m)?, 0),
        [h, m, sec] => (num(h)?, num(m)?, num(sec)?),
        _ => return None,
    };
    let micros = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            // Truncate to microseconds, as pydantic does.
            let mut digits: String = f.chars().take(6).collect();
            while digits.len() < 6 {
                digits.push('0');
            }
            digits.parse().ok()?
        }
        Some(_) => return None,
    };
    NaiveTime::from_hms_micro_opt(h, m, sec, micros)
}

fn parse_zone(s: &str) -> Option<FixedOffset> {
    if s.is_empty() || s == "Z" || s == "z" {
        return FixedOffset::east_opt(0);
    }
    let sign = match s.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = s[1..].chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (i32, i32) = match digits.len() {
        2 => (digits.parse().ok()?, 0),
        4 => (digits[..2].parse().ok()?, digits[2..].parse().ok()?),
        _ => return None,
    };
    if h > 23 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
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
