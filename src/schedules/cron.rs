//! `CronSchedule`: cron strings with croniter's dialect, evaluated like Prefect.
//!
//! Prefect converts `start` to the schedule's zone, takes one second off
//! (so a match exactly at `start` is included; sub-second starts round up),
//! runs croniter on the *naive* wall clock, and turns each naive match back
//! into an aware time with pendulum using `fold=0`. Consequences we keep:
//! a repeated hour (fall back) fires once, at its first occurrence; a skipped
//! time (spring forward) fires one gap-length earlier, which can even land
//! before `start` and out of order (hence `dates_in_generation_order`).
//!
//! Matching is done by `croner`; [`dialect`] only rewrites the few croniter
//! spellings croner lacks and rejects croner extensions croniter refuses.

mod dialect;

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, Timelike, Utc};
use croner::Cron;
use serde_json::{json, Value};

use super::dates::{self, EndCompare};
use super::fields::{self, Object};
use super::tz::{self, Fold};
use super::ScheduleError;

/// croniter gives up when the next match is more than 50 years away.
const MAX_YEARS_BETWEEN_MATCHES: i32 = 50;

fn compile(cron: &str, day_or: bool) -> Result<Cron, ScheduleError> {
    dialect::compile(cron, day_or).map_err(|kind| {
        let msg = match kind {
            dialect::Invalid::Syntax => format!("Value error, Invalid cron string: \"{cron}\""),
            dialect::Invalid::RandomOrHashed => format!(
                "Value error, Random and Hashed expressions are unsupported, received: \"{cron}\""
            ),
        };
        ScheduleError::at("cron", msg)
    })
}

/// A cron schedule (`cron`, `timezone`, `day_or`).
#[derive(Debug, Clone, PartialEq)]
pub struct CronSchedule {
    cron: String,
    timezone: Option<String>,
    day_or: bool,
    compiled: Cron,
}

impl CronSchedule {
    /// Validates like Prefect: croniter must accept the string, random/hashed
    /// (`R`/`H`) fields are refused, and a non-empty timezone must be an IANA
    /// name. `timezone: None` stays `None` (evaluated as UTC) and so does `""`.
    pub fn new(cron: &str, timezone: Option<&str>, day_or: bool) -> Result<Self, ScheduleError> {
        let compiled = compile(cron, day_or)?;
        if let Some(tz) = timezone {
            if !tz.is_empty() && !tz::is_available(tz) {
                return Err(ScheduleError::model(format!(
                    "Value error, Invalid timezone: \"{tz}\" (specify in IANA tzdata format, \
                     for example, America/New_York)"
                )));
            }
        }
        Ok(Self {
            cron: cron.to_string(),
            timezone: timezone.map(str::to_string),
            day_or,
            compiled,
        })
    }

    pub fn cron(&self) -> &str {
        &self.cron
    }

    pub fn timezone(&self) -> Option<&str> {
        self.timezone.as_deref()
    }

    pub fn day_or(&self) -> bool {
        self.day_or
    }

    pub(crate) fn from_json(map: &Object) -> Result<Self, ScheduleError> {
        let cron = fields::string(fields::required(map, "cron")?, "cron")?;
        // pydantic runs the `cron` field validator before looking at the
        // other fields, so its error wins.
        compile(&cron, true)?;
        let timezone = fields::optional_string(map, "timezone")?;
        let day_or = match map.get("day_or") {
            Some(v) => fields::boolean(v, "day_or")?,
            None => true,
        };
        fields::forbid_extra(map, &["cron", "timezone", "day_or"])?;
        Self::new(&cron, timezone.as_deref(), day_or)
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "cron": self.cron,
            "timezone": self.timezone,
            "day_or": self.day_or,
        })
    }

    /// Prefect's `get_dates` in generation order (see the module docs).
    pub(crate) fn dates(
        &self,
        n: usize,
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
    ) -> Vec<DateTime<Utc>> {
        let zone = match self.timezone.as_deref() {
            None | Some("") => chrono_tz::UTC,
            Some(name) => match tz::lookup(name) {
                Some(zone) => zone,
                None => return Vec::new(),
            },
        };
        let Some(first_cursor) = Self::cursor(zone, start) else {
            return Vec::new();
        };
        let matches = std::iter::successors(
            self.next_after(first_cursor, first_cursor.year()),
            |prev| self.next_after(*prev, prev.year()),
        );
        let candidates = matches.map_while(|naive| tz::resolve(&zone, naive, Fold::Zero));
        dates::collect(candidates, zone, n, end, EndCompare::WallClock)
    }

    /// The naive wall-clock time croniter starts after: `start` in the zone,
    /// minus one second, plus one second again if it had a fraction.
    fn cursor(zone: chrono_tz::Tz, start: DateTime<Utc>) -> Option<NaiveDateTime> {
        let local = start.with_timezone(&zone);
        let mut local = local.checked_sub_signed(Duration::seconds(1))?;
        if local.nanosecond() > 0 {
            local = local.checked_add_signed(Duration::seconds(1))?;
        }
        // Matches are whole seconds, so "after x" equals "after floor(x)".
        local.naive_local().with_nanosecond(0)
    }

    /// The first naive match strictly after `after`, within croniter's reach.
    fn next_after(&self, after: NaiveDateTime, from_year: i32) -> Option<NaiveDateTime> {
        let next = self.compiled.find_next_occurrence(&after, false).ok()?;
        (next.year() - from_year <= MAX_YEARS_BETWEEN_MATCHES).then_some(next)
    }
}
