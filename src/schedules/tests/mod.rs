//! Tests. Expected values come from running Prefect 3.8.8's own schedule
//! code; the hand-written tests quote them inline, `prefect_data` holds the
//! bulk recordings replayed by `conformance`.

mod conformance;
mod cron_tests;
mod divergences;
mod interval_tests;
mod parse_tests;
mod prefect_data;
mod rrule_tests;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Schedule;

/// The "now" used where parsing needs one (default interval anchor).
pub(crate) const FIXED_NOW: &str = "2026-01-01T00:00:00Z";

pub(crate) fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("bad test timestamp {s}: {e}"))
}

/// ISO 8601 in UTC the way the recordings print it (6-digit fraction only
/// when non-zero).
pub(crate) fn iso(d: &DateTime<Utc>) -> String {
    let micros = d.timestamp_subsec_micros();
    if micros == 0 {
        d.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        format!("{}.{micros:06}Z", d.format("%Y-%m-%dT%H:%M:%S"))
    }
}

pub(crate) fn schedule(json: Value) -> Schedule {
    Schedule::parse_at(&json, utc(FIXED_NOW))
        .unwrap_or_else(|e| panic!("expected a valid schedule, got {e}"))
}

pub(crate) fn next(s: &Schedule, n: usize, start: &str, end: Option<&str>) -> Vec<String> {
    s.next_dates(n, utc(start), end.map(utc))
        .iter()
        .map(iso)
        .collect()
}
