//! The text layer of rrule strings, following `dateutil.rrule.rrulestr`:
//! which lines exist (`DTSTART`, `RRULE`, `RDATE`, `EXRULE`, `EXDATE`), their
//! parameters, and their date values. The rule bodies themselves
//! (`FREQ=...;BYDAY=...`) are parsed by the `rrule` crate.
//!
//! Dates are kept as naive wall-clock times plus whether they were
//! timezone-aware, because Prefect's `to_rrule` replaces every timezone with
//! the schedule's (keeping the wall-clock digits); awareness only matters
//! for dateutil's "UNTIL must match DTSTART" rule.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use rrule::{Frequency, RRule, Unvalidated};

/// Rule parts dateutil knows; anything else is "unknown parameter".
const RULE_PARTS: [&str; 16] = [
    "FREQ", "INTERVAL", "COUNT", "UNTIL", "WKST", "BYSETPOS", "BYMONTH", "BYMONTHDAY",
    "BYYEARDAY", "BYEASTER", "BYWEEKNO", "BYWEEKDAY", "BYDAY", "BYHOUR", "BYMINUTE", "BYSECOND",
];

/// dateutil's implicit start when the string has no `DTSTART`.
pub(crate) fn default_dtstart() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2020, 1, 1)
        .unwrap_or_default()
        .and_time(NaiveTime::MIN)
}

/// A date value: wall-clock digits and whether it carried a zone/offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub wall: NaiveDateTime,
    pub aware: bool,
}

/// One `RRULE`/`EXRULE` body, parsed by the `rrule` crate with `UNTIL`
/// taken out (it is re-applied on the wall clock when building the set).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rule {
    pub rule: RRule<Unvalidated>,
    pub until: Option<Stamp>,
    /// The same rule with `INTERVAL` and `COUNT` dropped, i.e. every step
    /// of its frequency that passes the BYxxx filters (see `rrule::lattice`).
    pub every_step: Option<RRule<Unvalidated>>,
}

/// The pieces of an rrule string.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Parts {
    pub dtstart: Option<Stamp>,
    pub rrules: Vec<Rule>,
    pub exrules: Vec<Rule>,
    pub rdates: Vec<Stamp>,
    pub exdates: Vec<Stamp>,
    /// Whether dateutil returns an `rruleset` rather than a single `rrule`.
    pub is_set: bool,
}

/// Splits an rrule string like `rrulestr` does; errors carry dateutil's text.
pub(crate) fn parse(s: &str) -> Result<Parts, String> {
    let upper = s.to_uppercase();
    if upper.trim().is_empty() {
        return Err("empty string".into());
    }
    let lines: Vec<&str> = upper.split_whitespace().collect();
    let mut parts = Parts {
        dtstart: None,
        rrules: Vec::new(),
        exrules: Vec::new(),
        rdates: Vec::new(),
        exdates: Vec::new(),
        is_set: false,
    };
    if let [line] = lines.as_slice() {
        if upper.contains(':') && !upper.starts_with("RRULE:") {
            return parse_lines(&lines, parts);
        }
        let body = match line.split_once(':') {
            None => line,
            Some((_, rest)) if rest.contains(':') => {
                return Err("too many values to unpack (expected 2)".into())
            }
            Some(("RRULE", rest)) => rest,
            Some(_) => return Err("unknown parameter name".into()),
        };
        parts.rrules.push(parse_rule(body)?);
        return Ok(parts);
    }
    parse_lines(&lines, parts)
}

/// The multi-line form: each line is `NAME[;PARAMS]:VALUE` (or a bare rule).
fn parse_lines(lines: &[&str], mut parts: Parts) -> Result<Parts, String> {
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or(("RRULE", line));
        let mut params = name.split(';');
        let name = params.next().unwrap_or_default();
        let params: Vec<&str> = params.collect();
        match name {
            "RRULE" | "EXRULE" => {
                if let Some(p) = params.first() {
                    return Err(format!("unsupported {name} parm: {p}"));
                }
                let rule = parse_rule(value)?;
                if name == "RRULE" {
                    parts.rrules.push(rule);
                } else {
                    parts.exrules.push(rule);
                }
            }
            "RDATE" => {
                if let Some(p) = params.iter().find(|p| **p != "VALUE=DATE-TIME") {
                    return Err(format!("unsupported RDATE parm: {p}"));
                }
                for v in value.split(',') {
                    parts.rdates.push(parse_stamp(v)?);
                }
            }
            "EXDATE" => parts.exdates.extend(parse_date_value(value, &params)?),
            "DTSTART" => {
                let values = parse_date_value(value, &params)?;
                match values.as_slice() {
                    [one] => parts.dtstart = Some(*one),
                    _ => return Err(format!("Multiple DTSTART values specified:{value}")),
                }
            }
            other => return Err(format!("unsupported property: {other}")),
        }
    }
    parts.is_set = parts.rrules.len() > 1
        || !parts.rdates.is_empty()
        || !parts.exrules.is_empty()
        || !parts.exdates.is_empty();
    if !parts.is_set && parts.rrules.is_empty() {
        // dateutil raises IndexError here (a 500 in Prefect); we refuse it.
        return Err("list index out of range".into());
    }
    Ok(parts)
}

/// `DTSTART`/`EXDATE` values with their `TZID`/`VALUE` parameters.
fn parse_date_value(value: &str, params: &[&str]) -> Result<Vec<Stamp>, String> {
    let mut tzid = false;
    let mut value_seen = false;
    for p in params {
        if let Some(name) = p.strip_prefix("TZID=") {
            // dateutil silently ignores zones it cannot find.
            tzid |= chrono_tz::TZ_VARIANTS
                .iter()
                .any(|tz| tz.name().eq_ignore_ascii_case(name));
        } else if *p == "VALUE=DATE-TIME" || *p == "VALUE=DATE" {
            if value_seen {
                return Err(format!("Duplicate value parameter found in: {p}"));
            }
            value_seen = true;
        } else {
            return Err(format!("unsupported parm: {p}"));
        }
    }
    value
        .split(',')
        .map(|v| {
            let stamp = parse_stamp(v)?;
            if tzid && stamp.aware {
                return Err("DTSTART/EXDATE specifies multiple timezone".to_string());
            }
            Ok(Stamp {
                aware: stamp.aware || tzid,
                ..stamp
            })
        })
        .collect()
}

/// iCalendar (`20240101T090000[Z]`) or ISO (`2024-01-01T09:00:00[Z]`) dates;
/// a trailing `Z` or `±HH[:]MM` offset makes the value aware.
fn parse_stamp(value: &str) -> Result<Stamp, String> {
    let unknown = || format!("Unknown string format: {value}");
    let (body, aware) = match value.strip_suffix('Z') {
        Some(body) => (body, true),
        None => match value.rfind(['+', '-']) {
            Some(pos) if value[..pos].contains('T') => (&value[..pos], true),
            _ => (value, false),
        },
    };
    const DATETIME: [&str; 4] = ["%Y%m%dT%H%M%S", "%Y%m%dT%H%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"];
    let wall = DATETIME
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(body, f).ok())
        .or_else(|| {
            ["%Y%m%d", "%Y-%m-%d"]
                .iter()
                .find_map(|f| NaiveDate::parse_from_str(body, f).ok())
                .map(|d| d.and_time(NaiveTime::MIN))
        })
        .ok_or_else(unknown)?;
    Ok(Stamp { wall, aware })
}

/// One rule body: dateutil's pair checks, then the `rrule` crate's parser.
fn parse_rule(body: &str) -> Result<Rule, String> {
    let mut until = None;
    let mut kept = Vec::new();
    for pair in body.split(';') {
        let mut split = pair.split('=');
        let (Some(name), Some(value), None) = (split.next(), split.next(), split.next()) else {
            return Err(if pair.contains('=') {
                "too many values to unpack (expected 2)".into()
            } else {
                "not enough values to unpack (expected 2, got 1)".into()
            });
        };
        if !RULE_PARTS.contains(&name) {
            return Err(format!("unknown parameter '{name}'"));
        }
        if name == "UNTIL" {
            until = Some(parse_stamp(value).map_err(|_| format!("invalid 'UNTIL': {value}"))?);
        } else {
            kept.push(pair);
        }
    }
    let rule = RRule::<Unvalidated>::from_str(&kept.join(";")).map_err(|e| {
        // Name the offending part the way dateutil does when we can.
        kept.iter()
            .find(|pair| {
                let alone = if pair.starts_with("FREQ=") {
                    pair.to_string()
                } else {
                    format!("FREQ=DAILY;{pair}")
                };
                RRule::<Unvalidated>::from_str(&alone).is_err()
            })
            .and_then(|pair| pair.split_once('='))
            .map(|(name, value)| format!("invalid '{name}': {value}"))
            .unwrap_or_else(|| e.to_string())
    })?;
    let every_step = kept
        .iter()
        .filter(|pair| !pair.starts_with("INTERVAL=") && !pair.starts_with("COUNT="))
        .copied()
        .collect::<Vec<_>>()
        .join(";");
    let every_step = RRule::<Unvalidated>::from_str(&every_step).ok();
    Ok(Rule {
        rule,
        until,
        every_step,
    })
}

/// `normalize_rrule_string`: prepend a floating `DTSTART` to rrules that
/// lack one, so the scheduler never walks from 2020 on every loop.
///
/// High-frequency rules (`SECONDLY`/`MINUTELY`, no `COUNT`, single rule)
/// get the latest phase-equivalent anchor at or before `now` on the
/// schedule's wall clock; everything else gets the legacy 2020-01-01 anchor.
/// Strings dateutil cannot parse with a naive start are left unchanged.
pub(crate) fn normalize(rrule: &str, timezone: Option<&str>, now: DateTime<Utc>) -> String {
    if rrule.to_uppercase().contains("DTSTART") {
        return rrule.to_string();
    }
    let Ok(parts) = parse(rrule) else {
        return rrule.to_string();
    };
    // A naive default start with an aware UNTIL is a dateutil ValueError.
    let aware_until = parts
        .rrules
        .iter()
        .chain(&parts.exrules)
        .any(|r| r.until.is_some_and(|u| u.aware));
    if aware_until {
        return rrule.to_string();
    }
    let legacy = default_dtstart();
    let anchor = match (parts.is_set, parts.rrules.first()) {
        (false, Some(rule)) => phase_anchor(&rule.rule, timezone, now).unwrap_or(legacy),
        _ => legacy,
    };
    format!("DTSTART:{}\n{rrule}", anchor.format("%Y%m%dT%H%M%S"))
}

fn phase_anchor(rule: &RRule<Unvalidated>, timezone: Option<&str>, now: DateTime<Utc>) -> Option<NaiveDateTime> {
    let unit = match rule.get_freq() {
        Frequency::Secondly => 1,
        Frequency::Minutely => 60,
        _ => return None,
    };
    if rule.get_count().is_some() {
        return None;
    }
    let period = unit * i64::from(rule.get_interval());
    if period <= 0 {
        return None;
    }
    let zone = timezone
        .filter(|t| !t.is_empty())
        .and_then(super::tz::lookup)
        .unwrap_or(chrono_tz::UTC);
    let wall = now.with_timezone(&zone).naive_local();
    let legacy = default_dtstart();
    let delta = (wall - legacy).num_microseconds()? as f64 / 1e6;
    if delta <= 0.0 {
        return None;
    }
    let k = (delta / period as f64).floor() as i64;
    legacy.checked_add_signed(chrono::Duration::seconds(k.checked_mul(period)?))
}
