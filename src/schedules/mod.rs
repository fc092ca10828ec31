//! Deployment schedules (interval, cron, rrule) as Prefect 3.8.8's server
//! understands them: parsing/validating the schedule JSON a client sends,
//! serializing it back the way Prefect's `model_dump(mode="json")` does, and
//! computing the next run times exactly like `Schedule._get_dates_generator`.
//!
//! Prefect's behaviour, including its quirks, is the spec here, because the
//! server must produce the same flow runs (same scheduled times, same
//! idempotency keys) as the Python server for the same deployment:
//!
//! * Interval schedules jump to the first date `>= start` in exact seconds,
//!   then step in *local wall-clock* time when the interval is a day or more
//!   (so a daily schedule keeps its local hour across DST), and in exact
//!   seconds otherwise. See `IntervalSchedule`.
//! * Cron schedules are evaluated on the naive local wall clock and each
//!   match is then placed in the timezone (ambiguous times take the first
//!   occurrence, skipped times are shifted back by the gap). See `CronSchedule`.
//! * RRule schedules are evaluated on the wall clock of `DTSTART` with its
//!   timezone replaced by the schedule's (dateutil + `to_rrule`). See `RRuleSchedule`.
//!
//! Every computation is bounded: Prefect stops after `MAX_ITERATIONS` candidate
//! dates, and the underlying cron/rrule searches are capped too, so a schedule
//! that never matches returns an empty list instead of spinning.

mod cron;
mod dates;
mod fields;
mod interval;
mod rrule;
mod rrule_text;
mod tz;

#[cfg(test)]
mod tests;

pub use cron::CronSchedule;
pub use interval::IntervalSchedule;
pub use rrule::{RRuleSchedule, MAX_RRULE_LENGTH};

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Prefect's cap on candidate dates examined per `get_dates` call.
pub const MAX_ITERATIONS: usize = 1000;

/// A validation error for a schedule object, shaped like one pydantic error.
///
/// `loc` is relative to the schedule object (e.g. `["cron"]`, or empty for a
/// model-level error such as an invalid timezone on an interval/cron schedule,
/// which Prefect raises from a model validator). `msg` follows pydantic's
/// wording (`"Field required"`, `"Value error, Invalid cron string: ..."`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_error(.loc, .msg))]
pub struct ScheduleError {
    pub loc: Vec<String>,
    pub msg: String,
}

fn display_error(loc: &[String], msg: &str) -> String {
    if loc.is_empty() {
        msg.to_string()
    } else {
        format!("{}: {}", loc.join("."), msg)
    }
}

impl ScheduleError {
    pub(crate) fn at(loc: &str, msg: impl Into<String>) -> Self {
        Self {
            loc: vec![loc.to_string()],
            msg: msg.into(),
        }
    }

    pub(crate) fn model(msg: impl Into<String>) -> Self {
        Self {
            loc: Vec::new(),
            msg: msg.into(),
        }
    }
}

/// One of Prefect's three schedule shapes (`SCHEDULE_TYPES`).
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Interval(IntervalSchedule),
    Cron(CronSchedule),
    RRule(RRuleSchedule),
}

impl Schedule {
    /// Parses the schedule JSON a client sends, as the pydantic union
    /// `IntervalSchedule | CronSchedule | RRuleSchedule` does.
    ///
    /// The shape is chosen by key (`interval`, then `cron`, then `rrule`);
    /// all three models forbid extra keys, so e.g. `{"interval": 60,
    /// "cron": "..."}` is rejected. An interval without `anchor_date` is
    /// anchored at the current time, as in Prefect.
    ///
    /// This is the schema-level parse used when reading stored schedules.
    /// For the `schedule` field of `DeploymentScheduleCreate/Update` use
    /// [`Schedule::parse_action`], which also injects an rrule `DTSTART`.
    pub fn parse(value: &Value) -> Result<Schedule, ScheduleError> {
        Self::parse_at(value, Utc::now())
    }

    /// [`Schedule::parse`] with an explicit "now" (the default interval
    /// anchor), so callers and tests can be deterministic.
    pub fn parse_at(value: &Value, now: DateTime<Utc>) -> Result<Schedule, ScheduleError> {
        let Some(map) = value.as_object() else {
            // pydantic reports the first union member's error first.
            return Err(ScheduleError::model(
                "Input should be a valid dictionary or instance of IntervalSchedule",
            ));
        };
        if map.contains_key("interval") {
            IntervalSchedule::from_json(map, now).map(Schedule::Interval)
        } else if map.contains_key("cron") {
            CronSchedule::from_json(map).map(Schedule::Cron)
        } else if map.contains_key("rrule") {
            RRuleSchedule::from_json(map).map(Schedule::RRule)
        } else {
            Err(ScheduleError::at("interval", "Field required"))
        }
    }

    /// Parses the `schedule` field of `DeploymentScheduleCreate` /
    /// `DeploymentScheduleUpdate`: [`Schedule::parse_at`] followed by
    /// Prefect's `normalize_schedule_rrule`, which prepends a `DTSTART` to
    /// rrules that lack one (PrefectHQ/prefect#21362). `now` picks the
    /// phase-equivalent anchor for high-frequency rules.
    pub fn parse_action(value: &Value, now: DateTime<Utc>) -> Result<Schedule, ScheduleError> {
        match Self::parse_at(value, now)? {
            Schedule::RRule(r) => r.normalized(now).map(Schedule::RRule),
            other => Ok(other),
        }
    }

    /// The JSON Prefect's server returns for this schedule
    /// (`model_dump(mode="json")`, same key order and formats).
    pub fn to_json(&self) -> Value {
        match self {
            Schedule::Interval(s) => s.to_json(),
            Schedule::Cron(s) => s.to_json(),
            Schedule::RRule(s) => s.to_json(),
        }
    }

    /// Up to `n` dates `>= start` (and `<= end` when given), ascending, as
    /// Prefect's `get_dates(n, start, end)` returns them.
    ///
    /// Prefect semantics kept on purpose: at most `MAX_ITERATIONS + 2`
    /// candidates are examined; `n == 0` behaves like `n == 1`; where
    /// Prefect's Python code raises (e.g. a cron that never matches, an
    /// interval with timezone `""`), this returns an empty list.
    pub fn next_dates(
        &self,
        n: usize,
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
    ) -> Vec<DateTime<Utc>> {
        let mut dates = self.dates_in_generation_order(n, start, end);
        dates.sort();
        dates
    }

    /// Like [`Schedule::next_dates`] but in the order Prefect's
    /// `_get_dates_generator` yields them (what the scheduler consumes when
    /// it stops early). It differs from ascending order only around DST
    /// transitions for cron schedules.
    pub fn dates_in_generation_order(
        &self,
        n: usize,
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
    ) -> Vec<DateTime<Utc>> {
        match self {
            Schedule::Interval(s) => s.dates(n, start, end),
            Schedule::Cron(s) => s.dates(n, start, end),
            Schedule::RRule(s) => s.dates(n, start, end),
        }
    }

    /// What Prefect's scheduler puts in a run's `created_by.display_value`
    /// when the deployment schedule has no slug: the schedule class name.
    pub fn display_value(&self) -> String {
        match self {
            Schedule::Interval(_) => "IntervalSchedule",
            Schedule::Cron(_) => "CronSchedule",
            Schedule::RRule(_) => "RRuleSchedule",
        }
        .to_string()
    }
}
