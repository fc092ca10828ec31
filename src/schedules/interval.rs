//! `IntervalSchedule`: `anchor_date + k * interval`, with Prefect's DST rules.
//!
//! Prefect (pendulum path, Python < 3.13) computes:
//! 1. `offset = (start - anchor).total_seconds() / interval.total_seconds()`
//!    and jumps to `anchor + interval * int(offset)` in *exact* seconds;
//! 2. steps with `add(days=interval.days, seconds=rest)`, which pendulum does
//!    in exact seconds when `days == 0` but on the *local wall clock* (then
//!    re-localized with `fold=1`) when `days > 0`.
//!
//! So sub-day intervals fire every elapsed UTC interval, while day-or-longer
//! intervals keep their local clock time across DST. Because step 1 is exact,
//! a daily schedule anchored in winter and first evaluated in summer keeps the
//! shifted (UTC-aligned) local hour; we reproduce that faithfully.

use chrono::{DateTime, Duration, FixedOffset, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};

use super::dates::{self, EndCompare};
use super::fields::{self, Object};
use super::tz::{self, Fold};
use super::ScheduleError;

const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Bound on the "advance until >= start" loop; Prefect needs at most a few
/// steps after its jump, this only guards against pathological inputs.
const MAX_CATCH_UP_STEPS: usize = 10_000;

/// A schedule formed by adding `interval` increments to an `anchor_date`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntervalSchedule {
    interval_micros: i64,
    anchor_date: DateTime<FixedOffset>,
    timezone: String,
}

impl IntervalSchedule {
    /// Builds a validated schedule. `timezone: None` infers it from the
    /// anchor as Prefect does, which always yields `"UTC"` for anchors given
    /// as offsets. `""` is accepted (Prefect accepts it) but computes no dates.
    pub fn new(
        interval: Duration,
        anchor_date: DateTime<FixedOffset>,
        timezone: Option<&str>,
    ) -> Result<Self, ScheduleError> {
        let interval_micros = interval
            .num_microseconds()
            .ok_or_else(|| ScheduleError::at("interval", "Input should be a valid timedelta"))?;
        if interval_micros <= 0 {
            return Err(ScheduleError::at(
                "interval",
                "Value error, interval must be positive",
            ));
        }
        let timezone = match timezone {
            Some(tz) if !tz.is_empty() && !tz::is_available(tz) => {
                return Err(ScheduleError::model(format!(
                    "Value error, Invalid timezone: \"{tz}\" (specify in IANA tzdata format, \
                     for example, America/New_York)"
                )))
            }
            Some(tz) => tz.to_string(),
            None => "UTC".to_string(),
        };
        Ok(Self {
            interval_micros,
            anchor_date,
            timezone,
        })
    }

    pub fn interval(&self) -> Duration {
        Duration::microseconds(self.interval_micros)
    }

    pub fn anchor_date(&self) -> DateTime<FixedOffset> {
        self.anchor_date
    }

    pub fn timezone(&self) -> &str {
        &self.timezone
    }

    pub(crate) fn from_json(map: &Object, now: DateTime<Utc>) -> Result<Self, ScheduleError> {
        let interval = fields::timedelta_micros(fields::required(map, "interval")?, "interval")?;
        if interval <= 0 {
            return Err(ScheduleError::at(
                "interval",
                "Value error, interval must be positive",
            ));
        }
        let anchor = match map.get("anchor_date") {
            Some(v) => fields::datetime(v, "anchor_date")?,
            None => now.fixed_offset(),
        };
        let timezone = fields::optional_string(map, "timezone")?;
        fields::forbid_extra(map, &["interval", "anchor_date", "timezone"])?;
        Self::new(
            Duration::microseconds(interval),
            anchor,
            timezone.as_deref(),
        )
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "interval": self.interval_micros as f64 / 1e6,
            "anchor_date": fields::format_datetime(&self.anchor_date),
            "timezone": self.timezone,
        })
    }

    /// Prefect's `get_dates` in generation order (see [`super::Schedule::next_dates`]).
    pub(crate) fn dates(
        &self,
        n: usize,
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
    ) -> Vec<DateTime<Utc>> {
        // Timezone "" passes validation but makes pendulum raise.
        let Some(zone) = tz::lookup(&self.timezone) else {
            return Vec::new();
        };
        let stepper = Stepper {
            tz: zone,
            days: self.interval_micros / MICROS_PER_DAY,
            rest_micros: self.interval_micros % MICROS_PER_DAY,
            total_micros: self.interval_micros,
        };
        let first = self.first_on_or_after(&stepper, start);
        let candidates = std::iter::successors(first, |date| stepper.advance(*date));
        dates::collect(candidates, zone, n, end, EndCompare::WallClock)
    }

    /// Prefect's jump-then-catch-up to the first date not before `start`.
    /// "Before" compares local wall clocks, as Python does for two datetimes
    /// sharing a tzinfo.
    fn first_on_or_after(&self, stepper: &Stepper, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let anchor = self.anchor_date.with_timezone(&Utc);
        // Mirror Python's float arithmetic: total_seconds() / total_seconds().
        let diff_secs = (start - anchor).num_microseconds()? as f64 / 1e6;
        let interval_secs = self.interval_micros as f64 / 1e6;
        let k = (diff_secs / interval_secs).trunc();
        let jump_micros = (interval_secs * k * 1e6).round();
        if !jump_micros.is_finite() || jump_micros.abs() > 9.0e18 {
            return None;
        }
        let mut next = anchor.checked_add_signed(Duration::microseconds(jump_micros as i64))?;
        let wall = |d: DateTime<Utc>| d.with_timezone(&stepper.tz).naive_local();
        let start_wall = wall(start);
        for _ in 0..MAX_CATCH_UP_STEPS {
            if wall(next) >= start_wall {
                return Some(next);
            }
            next = stepper.advance(next)?;
        }
        None
    }
}

/// One `next_date.add(days=..., seconds=...)` step in the schedule's zone.
#[derive(Debug, Clone, Copy)]
struct Stepper {
    tz: Tz,
    days: i64,
    rest_micros: i64,
    total_micros: i64,
}

impl Stepper {
    fn advance(&self, date: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.days == 0 {
            return date.checked_add_signed(Duration::microseconds(self.total_micros));
        }
        let wall = date.with_timezone(&self.tz).naive_local();
        let wall = wall
            .checked_add_signed(Duration::days(self.days))?
            .checked_add_signed(Duration::microseconds(self.rest_micros))?;
        tz::resolve(&self.tz, wall, Fold::One)
    }
}
