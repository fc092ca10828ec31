//! The loop shared by all three `_get_dates_generator`s in Prefect.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;

use super::MAX_ITERATIONS;

/// How Prefect's `next_date > end` compares, which depends on whether both
/// datetimes share one `tzinfo` object in Python.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndCompare {
    /// Same tzinfo object (interval, cron): Python compares the local wall
    /// clocks and ignores `fold`.
    WallClock,
    /// Different tzinfo objects (rrule): Python compares instants.
    Instant,
}

/// Consumes candidate dates the way Prefect's generators do: stop at the
/// first candidate past `end`, drop duplicates, and stop once `n` distinct
/// dates were produced or more than `MAX_ITERATIONS` candidates were seen.
///
/// Duplicates are detected on the local wall clock, because Python's
/// equality and hash for datetimes sharing a tzinfo ignore `fold`: during a
/// fall-back hour, `01:30 EST` counts as a duplicate of `01:30 EDT`.
///
/// The check `len >= n` runs after a date is emitted, which is why `n == 0`
/// still yields one date in Prefect; we keep that.
pub(crate) fn collect(
    candidates: impl Iterator<Item = DateTime<Utc>>,
    zone: Tz,
    n: usize,
    end: Option<DateTime<Utc>>,
    end_compare: EndCompare,
) -> Vec<DateTime<Utc>> {
    let wall = |d: &DateTime<Utc>| -> NaiveDateTime { d.with_timezone(&zone).naive_local() };
    let end_wall = end.map(|e| wall(&e));
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (counter, date) in candidates.enumerate() {
        let past_end = match end_compare {
            EndCompare::WallClock => end_wall.is_some_and(|e| wall(&date) > e),
            EndCompare::Instant => end.is_some_and(|e| date > e),
        };
        if past_end {
            break;
        }
        if seen.insert(wall(&date)) {
            out.push(date);
        }
        if out.len() >= n || counter > MAX_ITERATIONS {
            break;
        }
    }
    out
}
