//! `RRuleSchedule`: RFC 5545 recurrence rules, evaluated like Prefect.
//!
//! Prefect's `to_rrule` parses the string with dateutil (implicit start
//! 2020-01-01 00:00), then *replaces* the timezone of `DTSTART`, `UNTIL`,
//! `RDATE` and `EXDATE` with the schedule's timezone, keeping their
//! wall-clock digits. dateutil then iterates on that wall clock and each
//! occurrence is placed in the zone with `fold=0` (first of a repeated time;
//! a skipped time moves back by the gap). `get_dates` keeps occurrences at
//! or after `start` (`xafter(start, inc=True)`).
//!
//! We do the same: the `rrule` crate iterates in a floating (UTC-labelled)
//! wall clock, and [`super::tz::resolve`] places each result in the zone.

mod lattice;

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use rrule::{Frequency, RRuleSet, Tz as RTz};
use serde_json::{json, Value};

use super::dates::{self, EndCompare};
use super::fields::{self, Object};
use super::rrule_text::{self, Parts, Rule, Stamp};
use super::tz::{self, Fold};
use super::ScheduleError;

/// Prefect's `MAX_RRULE_LENGTH` (about a year of RDATEs).
pub const MAX_RRULE_LENGTH: usize = 6500;
/// How many occurrences before `start` we are willing to walk past. Prefect
/// walks from `DTSTART` unboundedly; high-frequency rules are fast-forwarded
/// instead (see [`fast_forward`]), so this only cuts off
/// pathological rules (e.g. a huge `COUNT` of seconds from years ago).
const MAX_SKIPPED_OCCURRENCES: usize = 2_000_000;

/// An rrule schedule (`rrule`, `timezone`).
#[derive(Debug, Clone, PartialEq)]
pub struct RRuleSchedule {
    rrule: String,
    timezone: Option<String>,
    parts: Parts,
}

impl RRuleSchedule {
    /// Validates like Prefect: dateutil must parse the string, it must be at
    /// most [`MAX_RRULE_LENGTH`] characters, and the timezone must match the
    /// `TimeZone` pattern (which only requires *containing* a zone name).
    pub fn new(rrule: &str, timezone: Option<&str>) -> Result<Self, ScheduleError> {
        let parts = validate_rrule(rrule)?;
        if let Some(tz) = timezone {
            validate_timezone(tz)?;
        }
        Ok(Self {
            rrule: rrule.to_string(),
            timezone: timezone.map(str::to_string),
            parts,
        })
    }

    pub fn rrule(&self) -> &str {
        &self.rrule
    }

    pub fn timezone(&self) -> Option<&str> {
        self.timezone.as_deref()
    }

    pub(crate) fn from_json(map: &Object) -> Result<Self, ScheduleError> {
        let rrule = fields::string(fields::required(map, "rrule")?, "rrule")?;
        validate_rrule(&rrule)?;
        let timezone = match map.get("timezone") {
            None => Some("UTC".to_string()),
            Some(Value::Null) => None,
            Some(v) => Some(fields::string(v, "timezone")?),
        };
        if let Some(tz) = &timezone {
            validate_timezone(tz)?;
        }
        fields::forbid_extra(map, &["rrule", "timezone"])?;
        Self::new(&rrule, timezone.as_deref())
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({ "rrule": self.rrule, "timezone": self.timezone })
    }

    /// `normalize_schedule_rrule` for the action schemas (see [`rrule_text::normalize`]).
    pub(crate) fn normalized(self, now: DateTime<Utc>) -> Result<Self, ScheduleError> {
        let rrule = rrule_text::normalize(&self.rrule, self.timezone.as_deref(), now);
        if rrule == self.rrule {
            Ok(self)
        } else {
            Self::new(&rrule, self.timezone.as_deref())
        }
    }

    /// Prefect's `get_dates` in generation order: occurrences at or after
    /// `start` (compared as instants, like `xafter`), in iteration order.
    pub(crate) fn dates(
        &self,
        n: usize,
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
    ) -> Vec<DateTime<Utc>> {
        // Prefect raises for a missing/unknown zone, and for an aware UNTIL
        // without DTSTART (naive 2020 default start); we yield nothing.
        let Some(zone) = self.timezone.as_deref().and_then(tz::lookup) else {
            return Vec::new();
        };
        let parts = &self.parts;
        if parts.dtstart.is_none() && has_aware_until(parts) {
            return Vec::new();
        }
        // No occurrence before this wall-clock floor can be at/after `start`.
        let Some(floor) = tz::earliest_wall_for(&zone, start) else {
            return Vec::new();
        };
        let dtstart = dtstart_of(parts);
        let iter_start = fast_forward(parts, floor).unwrap_or(dtstart);
        // The iterators own their state; the sets can be dropped right away.
        let walls: Box<dyn Iterator<Item = NaiveDateTime> + '_> = match lattice::plan(parts) {
            Some(plan) => match plan.walls(dtstart, iter_start) {
                Some(walls) => Box::new(walls),
                None => return Vec::new(),
            },
            None => match build_set(parts, iter_start) {
                Some(set) => Box::new((&set.limit()).into_iter().map(|d| d.naive_utc())),
                None => return Vec::new(),
            },
        };
        let mut skipped = 0usize;
        let candidates = walls
            .take_while(|wall| {
                if *wall < floor {
                    skipped += 1;
                }
                skipped < MAX_SKIPPED_OCCURRENCES
            })
            .filter(|wall| *wall >= floor)
            .filter_map(|wall| tz::resolve(&zone, wall, Fold::Zero))
            .filter(|date| *date >= start);
        dates::collect(candidates, zone, n, end, EndCompare::Instant)
    }
}

fn validate_rrule(rrule: &str) -> Result<Parts, ScheduleError> {
    let invalid = |detail: String| {
        ScheduleError::at(
            "rrule",
            format!("Value error, Invalid RRule string \"{rrule}\": {detail}"),
        )
    };
    let parts = rrule_text::parse(rrule).map_err(invalid)?;
    if let Some(start) = parts.dtstart {
        let mismatch = parts
            .rrules
            .iter()
            .chain(&parts.exrules)
            .any(|r| r.until.is_some_and(|u| u.aware != start.aware));
        if mismatch {
            return Err(invalid(
                "RRULE UNTIL values must be specified in UTC when DTSTART is timezone-aware"
                    .into(),
            ));
        }
    }
    // The crate's own checks (ranges, FREQ/BYxxx combinations).
    let dtstart = dtstart_of(&parts);
    for rule in parts.rrules.iter().chain(&parts.exrules) {
        let mut unbounded = rule.clone();
        unbounded.until = None;
        validated(&unbounded, dtstart).map_err(invalid)?;
    }
    let length = rrule.chars().count();
    if length > MAX_RRULE_LENGTH {
        let head: String = rrule.chars().take(40).collect();
        return Err(ScheduleError::at(
            "rrule",
            format!(
                "Value error, Invalid RRule string \"{head}...\"\nMax length is \
                 {MAX_RRULE_LENGTH}, got {length}"
            ),
        ));
    }
    Ok(parts)
}

fn validate_timezone(tz: &str) -> Result<(), ScheduleError> {
    if tz::matches_pattern(tz) {
        Ok(())
    } else {
        Err(ScheduleError::at(
            "timezone",
            format!("String should match pattern '{}'", tz::pattern_text()),
        ))
    }
}

fn has_aware_until(parts: &Parts) -> bool {
    parts
        .rrules
        .iter()
        .chain(&parts.exrules)
        .any(|r| r.until.is_some_and(|u| u.aware))
}

fn dtstart_of(parts: &Parts) -> NaiveDateTime {
    parts
        .dtstart
        .map(|s| s.wall)
        .unwrap_or_else(rrule_text::default_dtstart)
}

fn floating(wall: NaiveDateTime) -> DateTime<RTz> {
    RTz::UTC.from_utc_datetime(&wall)
}

/// Validates one rule against a (floating) start, applying its `UNTIL`.
fn validated(rule: &Rule, dtstart: NaiveDateTime) -> Result<rrule::RRule, String> {
    let mut r = rule.rule.clone();
    if let Some(Stamp { wall, .. }) = rule.until {
        r = r.until(floating(wall));
    }
    r.validate(floating(dtstart)).map_err(|e| e.to_string())
}

/// The floating set, or `None` if a rule fails validation for this start.
/// A rule whose `UNTIL` precedes `DTSTART` has no occurrences (dateutil),
/// whereas the crate would reject it, so it is left out.
fn build_set(parts: &Parts, dtstart: NaiveDateTime) -> Option<RRuleSet> {
    let live = |r: &&Rule| r.until.is_none_or(|u| u.wall >= dtstart);
    let rrules = parts
        .rrules
        .iter()
        .filter(live)
        .map(|r| validated(r, dtstart).ok())
        .collect::<Option<Vec<_>>>()?;
    let exrules = parts
        .exrules
        .iter()
        .filter(live)
        .map(|r| validated(r, dtstart).ok())
        .collect::<Option<Vec<_>>>()?;
    Some(
        RRuleSet::new(floating(dtstart))
            .set_rrules(rrules)
            .set_exrules(exrules)
            .set_rdates(parts.rdates.iter().map(|s| floating(s.wall)).collect())
            .set_exdates(parts.exdates.iter().map(|s| floating(s.wall)).collect()),
    )
}

/// For a single `SECONDLY`/`MINUTELY`/`HOURLY` rule without `COUNT`, moving
/// `DTSTART` forward by whole periods yields the same occurrences from the
/// new start on (the lattice and the BYxxx defaults taken from `DTSTART` are
/// unchanged). This is the argument behind Prefect's own
/// `normalize_rrule_string`; we use it to avoid walking millions of
/// occurrences from an old `DTSTART`.
fn fast_forward(parts: &Parts, floor: NaiveDateTime) -> Option<NaiveDateTime> {
    let [rule] = parts.rrules.as_slice() else {
        return None;
    };
    if !parts.exrules.is_empty() || rule.rule.get_count().is_some() {
        return None;
    }
    let unit = match rule.rule.get_freq() {
        Frequency::Secondly => 1,
        Frequency::Minutely => 60,
        Frequency::Hourly => 3600,
        _ => return None,
    };
    let period = unit * i64::from(rule.rule.get_interval().max(1));
    let dtstart = dtstart_of(parts);
    let behind = (floor - dtstart).num_seconds();
    if behind <= period {
        return None;
    }
    dtstart.checked_add_signed(Duration::seconds(behind / period * period))
}
