//! dateutil-exact iteration of `MINUTELY`/`SECONDLY` rules with filters.
//!
//! dateutil keeps such rules on the lattice `DTSTART + k * INTERVAL`: a day
//! rejected by the date filters (BYMONTH, BYMONTHDAY, BYDAY, ...) is skipped
//! without changing the phase, and inside accepted days the lattice points
//! are kept when their hour/minute(/second) pass BYHOUR/BYMINUTE/BYSECOND.
//! The `rrule` crate's minute/second carry logic re-phases the lattice when
//! a coarser filter skips ahead, and returns nothing at all for some
//! combinations (e.g. `FREQ=MINUTELY;BYDAY=WE;BYHOUR=1`).
//!
//! So for these rules we ask the crate only for the accepted *days* (a
//! `FREQ=DAILY` rule with the same date filters, which it handles well) and
//! walk the lattice inside each day ourselves. `COUNT`, `UNTIL` and `EXDATE`
//! are applied on the result as dateutil's `rrule`/`rruleset` do.

use std::collections::HashSet;
use std::str::FromStr;

use chrono::{Duration, NaiveDateTime, NaiveTime, Timelike, Weekday};
use rrule::{Frequency, NWeekday, RRule, RRuleSet, Unvalidated};

use super::{floating, Parts, Rule};

/// Upper bound on lattice points and days examined per query.
const MAX_STEPS: usize = 5_000_000;

pub(super) struct Lattice<'a> {
    rule: &'a Rule,
    minutely: bool,
    period: i64,
    hours: Vec<u32>,
    minutes: Vec<u32>,
    seconds: Vec<u32>,
    days: RRule<Unvalidated>,
    rdates: Vec<NaiveDateTime>,
    exdates: HashSet<NaiveDateTime>,
}

/// The plan for a single `MINUTELY`/`SECONDLY` RRULE (RDATE/EXDATE allowed) with
/// a filter coarser than its step; `None` leaves the rule to the crate.
pub(super) fn plan(parts: &Parts) -> Option<Lattice<'_>> {
    let [rule] = parts.rrules.as_slice() else {
        return None;
    };
    if !parts.exrules.is_empty() {
        return None;
    }
    let r = &rule.rule;
    let minutely = match r.get_freq() {
        Frequency::Minutely => true,
        Frequency::Secondly => false,
        _ => return None,
    };
    let date_filtered = !r.get_by_month().is_empty()
        || !r.get_by_month_day().is_empty()
        || !r.get_by_year_day().is_empty()
        || !r.get_by_weekday().is_empty()
        || r.get_by_easter().is_some();
    let coarser = date_filtered
        || !r.get_by_hour().is_empty()
        || (!minutely && !r.get_by_minute().is_empty());
    // BYSETPOS/BYWEEKNO stay with the crate (rare, and not DAILY-expressible).
    if !coarser || !r.get_by_set_pos().is_empty() || !r.get_by_week_no().is_empty() {
        return None;
    }
    let to_u32 = |v: &[u8]| {
        let mut v: Vec<u32> = v.iter().map(|x| u32::from(*x)).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut seconds = to_u32(r.get_by_second());
    if minutely && seconds.is_empty() {
        // dateutil's timeset defaults BYSECOND to DTSTART's second.
        seconds.push(parts.dtstart.map_or(0, |d| d.wall.second()));
    }
    Some(Lattice {
        rule,
        minutely,
        period: (if minutely { 60 } else { 1 }) * i64::from(r.get_interval().max(1)),
        hours: to_u32(r.get_by_hour()),
        minutes: to_u32(r.get_by_minute()),
        seconds,
        days: day_rule(r)?,
        rdates: {
            let mut rdates: Vec<NaiveDateTime> = parts.rdates.iter().map(|s| s.wall).collect();
            rdates.sort_unstable();
            rdates
        },
        exdates: parts.exdates.iter().map(|s| s.wall).collect(),
    })
}

/// `FREQ=DAILY` with the rule's date filters, firing at midnight.
fn day_rule(r: &RRule<Unvalidated>) -> Option<RRule<Unvalidated>> {
    let join = |v: Vec<String>| v.join(",");
    let mut parts = vec!["FREQ=DAILY".to_string()];
    let mut add = |name: &str, values: Vec<String>| {
        if !values.is_empty() {
            parts.push(format!("{name}={}", join(values)));
        }
    };
    add("BYMONTH", r.get_by_month().iter().map(u8::to_string).collect());
    add("BYMONTHDAY", r.get_by_month_day().iter().map(i8::to_string).collect());
    add("BYYEARDAY", r.get_by_year_day().iter().map(i16::to_string).collect());
    // dateutil ignores the ordinal of BYDAY entries below MONTHLY.
    add(
        "BYDAY",
        r.get_by_weekday()
            .iter()
            .map(|d| match d {
                NWeekday::Every(w) | NWeekday::Nth(_, w) => weekday_code(*w).to_string(),
            })
            .collect(),
    );
    if let Some(easter) = r.get_by_easter() {
        parts.push(format!("BYEASTER={easter}"));
    }
    parts.push("BYHOUR=0;BYMINUTE=0;BYSECOND=0".to_string());
    RRule::<Unvalidated>::from_str(&parts.join(";")).ok()
}

fn weekday_code(w: Weekday) -> &'static str {
    match w {
        Weekday::Mon => "MO",
        Weekday::Tue => "TU",
        Weekday::Wed => "WE",
        Weekday::Thu => "TH",
        Weekday::Fri => "FR",
        Weekday::Sat => "SA",
        Weekday::Sun => "SU",
    }
}

impl<'a> Lattice<'a> {
    /// Wall-clock occurrences at or after `iter_start` (a lattice point of
    /// `dtstart`), in order.
    pub(super) fn walls(
        self,
        dtstart: NaiveDateTime,
        iter_start: NaiveDateTime,
    ) -> Option<impl Iterator<Item = NaiveDateTime> + 'a> {
        let first_day = iter_start.date().and_time(NaiveTime::MIN);
        let days = self.days.clone().validate(floating(first_day)).ok()?;
        let days = RRuleSet::new(floating(first_day)).rrule(days).limit();
        let until = self.rule.until.map(|u| u.wall);
        let count = self.rule.rule.get_count();
        let exdates = self.exdates.clone();
        let rdates = self.rdates.clone();
        let mut steps = 0usize;
        let rule_walls = (&days)
            .into_iter()
            .map(|d| d.naive_utc())
            .take(MAX_STEPS)
            .flat_map(move |day| self.points_in_day(dtstart, iter_start, day))
            .take_while(move |_| {
                steps += 1;
                steps <= MAX_STEPS
            })
            .take_while(move |wall| until.is_none_or(|u| *wall <= u))
            .take(count.map_or(usize::MAX, |c| c as usize));
        // rruleset: merge RDATEs in order, drop repeats, then EXDATEs.
        let walls = MergeSorted {
            a: rule_walls.peekable(),
            b: rdates.into_iter().peekable(),
            last: None,
        }
        .filter(move |wall| !exdates.contains(wall));
        Some(walls)
    }

    /// Lattice points of `day` (not before `iter_start`) passing the time
    /// filters; for `MINUTELY`, each expanded by the BYSECOND timeset.
    fn points_in_day(
        &self,
        dtstart: NaiveDateTime,
        iter_start: NaiveDateTime,
        day: NaiveDateTime,
    ) -> Vec<NaiveDateTime> {
        let mut out = Vec::new();
        let Some(day_end) = day.checked_add_signed(Duration::days(1)) else {
            return out;
        };
        let from = day.max(iter_start);
        let offset = (from - dtstart).num_seconds();
        let k = offset.div_euclid(self.period) + i64::from(offset.rem_euclid(self.period) != 0);
        let Some(mut t) = k
            .checked_mul(self.period)
            .and_then(|secs| dtstart.checked_add_signed(Duration::seconds(secs)))
        else {
            return out;
        };
        let pass = |list: &[u32], v: u32| list.is_empty() || list.contains(&v);
        while t < day_end && out.len() < MAX_STEPS {
            if pass(&self.hours, t.hour()) && pass(&self.minutes, t.minute()) {
                if self.minutely {
                    let minute = t.with_second(0).unwrap_or(t);
                    out.extend(
                        self.seconds
                            .iter()
                            .filter_map(|s| minute.with_second(*s))
                            .filter(|w| *w >= dtstart),
                    );
                } else if pass(&self.seconds, t.second()) {
                    out.push(t);
                }
            }
            let Some(next) = t.checked_add_signed(Duration::seconds(self.period)) else {
                break;
            };
            t = next;
        }
        out
    }
}

/// Merges two ascending streams, yielding each distinct value once.
struct MergeSorted<A: Iterator<Item = NaiveDateTime>, B: Iterator<Item = NaiveDateTime>> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
    last: Option<NaiveDateTime>,
}

impl<A, B> Iterator for MergeSorted<A, B>
where
    A: Iterator<Item = NaiveDateTime>,
    B: Iterator<Item = NaiveDateTime>,
{
    type Item = NaiveDateTime;

    fn next(&mut self) -> Option<NaiveDateTime> {
        loop {
            let next = match (self.a.peek(), self.b.peek()) {
                (Some(a), Some(b)) if a <= b => self.a.next(),
                (Some(_), Some(_)) => self.b.next(),
                (Some(_), None) => self.a.next(),
                (None, _) => self.b.next(),
            }?;
            if self.last != Some(next) {
                self.last = Some(next);
                return Some(next);
            }
        }
    }
}
