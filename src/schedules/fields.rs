//! Pydantic-style (lax mode) coercion of the JSON fields schedules use, with
//! pydantic's error wording, so clients see the messages Prefect sends.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use serde_json::{Map, Value};

use super::ScheduleError;

pub(crate) type Object = Map<String, Value>;

/// The first key not in `allowed`, as pydantic's `extra="forbid"` reports it.
pub(crate) fn forbid_extra(map: &Object, allowed: &[&str]) -> Result<(), ScheduleError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(ScheduleError::at(key, "Extra inputs are not permitted")),
        None => Ok(()),
    }
}

pub(crate) fn required<'a>(map: &'a Object, key: &str) -> Result<&'a Value, ScheduleError> {
    map.get(key)
        .ok_or_else(|| ScheduleError::at(key, "Field required"))
}

/// A `str` field (pydantic never coerces numbers to strings).
pub(crate) fn string(value: &Value, key: &str) -> Result<String, ScheduleError> {
    value
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| ScheduleError::at(key, "Input should be a valid string"))
}

/// An `Optional[str]` field: absent or `null` is `None`.
pub(crate) fn optional_string(map: &Object, key: &str) -> Result<Option<String>, ScheduleError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => string(v, key).map(Some),
    }
}

/// A `bool` field in lax mode: booleans, 0/1 and pydantic's truthy strings.
pub(crate) fn boolean(value: &Value, key: &str) -> Result<bool, ScheduleError> {
    let parsed = match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().and_then(|x| {
            if x == 0.0 {
                Some(false)
            } else if x == 1.0 {
                Some(true)
            } else {
                None
            }
        }),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "0" | "off" | "f" | "false" | "n" | "no" => Some(false),
            "1" | "on" | "t" | "true" | "y" | "yes" => Some(true),
            _ => None,
        },
        _ => None,
    };
    parsed.ok_or_else(|| {
        let msg = match value {
            Value::Null | Value::Array(_) | Value::Object(_) => "Input should be a valid boolean",
            _ => "Input should be a valid boolean, unable to interpret input",
        };
        ScheduleError::at(key, msg)
    })
}

/// A `timedelta` field, returned in microseconds: numbers are seconds,
/// strings are ISO 8601 durations or `[D day[s][,]] [HH:]MM:SS[.f]`.
pub(crate) fn timedelta_micros(value: &Value, key: &str) -> Result<i64, ScheduleError> {
    let invalid = |detail: &str| {
        let msg = if detail.is_empty() {
            "Input should be a valid timedelta".to_string()
        } else {
            format!("Input should be a valid timedelta, {detail}")
        };
        ScheduleError::at(key, msg)
    };
    match value {
        Value::Bool(b) => Ok(if *b { 1_000_000 } else { 0 }),
        Value::Number(n) => {
            let secs = n.as_f64().ok_or_else(|| invalid(""))?;
            seconds_to_micros(secs).ok_or_else(|| invalid("durations may not exceed 999,999,999 days"))
        }
        Value::String(s) => parse_duration(s).map_err(invalid),
        _ => Err(invalid("")),
    }
}

fn seconds_to_micros(secs: f64) -> Option<i64> {
    let micros = (secs * 1e6).round();
    (micros.is_finite() && micros.abs() < 9.0e18).then_some(micros as i64)
}

fn parse_duration(s: &str) -> Result<i64, &'static str> {
    let (sign, body) = match s.as_bytes().first() {
        Some(b'-') => (-1.0, &s[1..]),
        Some(b'+') => (1.0, &s[1..]),
        _ => (1.0, s),
    };
    let secs = if let Some(iso) = body.strip_prefix('P') {
        parse_iso_duration(iso)?
    } else {
        parse_days_time(body)?
    };
    seconds_to_micros(sign * secs).ok_or("durations may not exceed 999,999,999 days")
}

/// `P[nY][nM][nW][nD][T[nH][nM][nS]]` with pydantic's 365/30-day Y/M.
fn parse_iso_duration(s: &str) -> Result<f64, &'static str> {
    if s.is_empty() || s == "T" {
        return Err("input is too short");
    }
    let (date, time) = match s.split_once('T') {
        Some((_, "")) => return Err("input is too short"),
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut total = 0.0;
    for (qty, unit) in iso_parts(date)? {
        total += qty
            * match unit {
                'Y' => 365.0 * 86400.0,
                'M' => 30.0 * 86400.0,
                'W' => 7.0 * 86400.0,
                'D' => 86400.0,
                _ => return Err("quantity invalid in date part of duration"),
            };
    }
    for (qty, unit) in iso_parts(time.unwrap_or(""))? {
        total += qty
            * match unit {
                'H' => 3600.0,
                'M' => 60.0,
                'S' => 1.0,
                _ => return Err("quantity invalid in time part of duration"),
            };
    }
    Ok(total)
}

fn iso_parts(s: &str) -> Result<Vec<(f64, char)>, &'static str> {
    let mut parts = Vec::new();
    let mut number = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
        } else {
            let qty: f64 = number.parse().map_err(|_| "invalid digit in duration")?;
            parts.push((qty, c));
            number.clear();
        }
    }
    if number.is_empty() {
        Ok(parts)
    } else {
        Err("invalid digit in duration")
    }
}

/// `[N day[s][,]] [H]H:MM[:SS[.ffffff]]`, `Nd`, or `N days`.
fn parse_days_time(s: &str) -> Result<f64, &'static str> {
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let rest = &s[digits_end..];
    let (days, time) = if rest.starts_with(':') || digits_end == 0 {
        (0.0, s)
    } else {
        let days: f64 = s[..digits_end]
            .parse()
            .map_err(|_| "invalid digit in duration")?;
        let rest = rest.trim_start();
        let rest = ["days", "day", "d"]
            .iter()
            .find_map(|unit| rest.strip_prefix(unit))
            .ok_or("\"day\" identifier in duration not correctly formatted")?;
        let rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        (days, rest)
    };
    if time.is_empty() {
        return Ok(days * 86400.0);
    }
    let fields: Vec<&str> = time.split(':').collect();
    let numbers = fields
        .iter()
        .map(|f| f.parse::<f64>().map_err(|_| "invalid digit in duration"))
        .collect::<Result<Vec<_>, _>>()?;
    let secs = match numbers.as_slice() {
        [h, m] => h * 3600.0 + m * 60.0,
        [h, m, s] => h * 3600.0 + m * 60.0 + s,
        _ => return Err("invalid digit in duration"),
    };
    Ok(days * 86400.0 + secs)
}

/// A pendulum `DateTime` field (pydantic-extra-types): RFC 3339-ish strings,
/// dates, basic ISO (`20240101T000000Z`) and Unix timestamps. Naive values
/// are UTC, as pendulum assumes. The original offset is kept because
/// Prefect echoes it back (`"2020-01-01T09:00:00-05:00"`).
pub(crate) fn datetime(value: &Value, key: &str) -> Result<DateTime<FixedOffset>, ScheduleError> {
    let parsed = match value {
        Value::Number(n) => n.as_f64().and_then(from_timestamp),
        Value::String(s) => parse_datetime_str(s),
        _ => None,
    };
    parsed.ok_or_else(|| match value {
        Value::String(s) => ScheduleError::at(key, format!("Value error, Unable to parse string [{s}]")),
        _ => ScheduleError::at(key, "value is not a valid datetime"),
    })
}

/// Pydantic treats numbers above 2e10 as milliseconds.
fn from_timestamp(ts: f64) -> Option<DateTime<FixedOffset>> {
    let secs = if ts.abs() > 2e10 { ts / 1000.0 } else { ts };
    let micros = (secs * 1e6).round();
    if !micros.is_finite() || micros.abs() > 9.0e18 {
        return None;
    }
    DateTime::<Utc>::from_timestamp_micros(micros as i64).map(|d| d.fixed_offset())
}

fn parse_datetime_str(s: &str) -> Option<DateTime<FixedOffset>> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.len() > 8 {
        return s.parse::<f64>().ok().and_then(from_timestamp);
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d);
    }
    let (body, offset) = split_offset(s)?;
    let naive = parse_naive(body)?;
    let offset = offset.unwrap_or(FixedOffset::east_opt(0)?);
    offset.from_local_datetime(&naive).single()
}

/// Splits a trailing `Z`, `±HH`, `±HHMM` or `±HH:MM` offset off a datetime.
fn split_offset(s: &str) -> Option<(&str, Option<FixedOffset>)> {
    if let Some(body) = s.strip_suffix(['Z', 'z']) {
        return Some((body, Some(FixedOffset::east_opt(0)?)));
    }
    let t_pos = s.find(['T', 't', ' ']);
    let Some(t_pos) = t_pos else {
        return Some((s, None));
    };
    let time_part = &s[t_pos..];
    let Some(sign_pos) = time_part.rfind(['+', '-']) else {
        return Some((s, None));
    };
    let (body, off) = s.split_at(t_pos + sign_pos);
    let sign = if off.starts_with('-') { -1 } else { 1 };
    let digits: String = off[1..].chars().filter(|c| *c != ':').collect();
    let (h, m) = match digits.len() {
        2 => (digits.parse::<i32>().ok()?, 0),
        4 => (digits[..2].parse::<i32>().ok()?, digits[2..].parse::<i32>().ok()?),
        _ => return None,
    };
    Some((body, Some(FixedOffset::east_opt(sign * (h * 3600 + m * 60))?)))
}

fn parse_naive(s: &str) -> Option<NaiveDateTime> {
    const FORMATS: [&str; 8] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dt%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dt%H:%M",
        "%Y-%m-%d %H:%M",
        "%Y%m%dT%H%M%S",
        "%Y%m%dT%H%M",
    ];
    if let Some(dt) = FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    {
        return Some(dt);
    }
    ["%Y-%m-%d", "%Y%m%d"]
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(s, f).ok())
        .map(|d| d.and_time(NaiveTime::MIN))
}

/// Formats like pydantic's JSON mode: microseconds only when non-zero and
/// `Z` for a zero offset.
pub(crate) fn format_datetime(dt: &DateTime<FixedOffset>) -> String {
    let mut out = dt.format("%Y-%m-%dT%H:%M:%S").to_string();
    let micros = dt.timestamp_subsec_micros();
    if micros != 0 {
        out.push_str(&format!(".{micros:06}"));
    }
    let offset = dt.offset().local_minus_utc();
    if offset == 0 {
        out.push('Z');
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let abs = offset.abs();
        out.push_str(&format!("{sign}{:02}:{:02}", abs / 3600, (abs % 3600) / 60));
        if abs % 60 != 0 {
            out.push_str(&format!(":{:02}", abs % 60));
        }
    }
    out
}
