//! Timezone lookup and wall-clock → instant resolution with Python's `fold`.

use std::sync::OnceLock;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// The one zone in Python's tzdata that chrono-tz lacks; it is UTC+0.
const FACTORY: &str = "Factory";

/// Looks up an IANA name exactly as Python's `zoneinfo` does (case-sensitive).
pub(crate) fn lookup(name: &str) -> Option<Tz> {
    if name == FACTORY {
        return Some(chrono_tz::UTC);
    }
    name.parse::<Tz>().ok()
}

/// `name in zoneinfo.available_timezones()`, Prefect's `default_timezone` check.
pub(crate) fn is_available(name: &str) -> bool {
    lookup(name).is_some()
}

/// The names Prefect's `TimeZone` type joins into one regex alternation.
fn pattern_names() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: Vec<&'static str> = chrono_tz::TZ_VARIANTS
            .iter()
            .map(|tz| tz.name())
            .filter(|n| !n.contains("localtime"))
            .chain([FACTORY])
            .collect();
        names.sort_unstable();
        names
    })
}

/// The pattern text pydantic prints in `string_pattern_mismatch` errors.
pub(crate) fn pattern_text() -> String {
    pattern_names().join("|")
}

/// Whether `value` matches RRuleSchedule's `TimeZone` pattern.
///
/// Prefect's pattern is every zone name joined with `|`, unanchored, and
/// pydantic *searches* it: any value that merely contains a zone name
/// passes (e.g. `"GBfoo"`). The only regex metacharacter in zone names is
/// `+` (`Etc/GMT+5`), and each such alternative can only match text that
/// also contains a `+`-free zone name (`Etc/GMT`, `GMT`), so a substring
/// test over the `+`-free names is equivalent.
pub(crate) fn matches_pattern(value: &str) -> bool {
    pattern_names()
        .iter()
        .filter(|n| !n.contains('+'))
        .any(|n| value.contains(n))
}

/// Python's `fold` for resolving a wall-clock time that is ambiguous or
/// does not exist in a timezone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fold {
    /// `fold=0`: first occurrence of a repeated time; a skipped time is
    /// moved *back* by the gap (pendulum's `Timezone.convert`), i.e.
    /// interpreted with the offset in force after the transition.
    Zero,
    /// `fold=1`: second occurrence of a repeated time; a skipped time is
    /// moved *forward* by the gap, i.e. interpreted with the offset in
    /// force before the transition.
    One,
}

/// The instant for local wall-clock `wall` in `tz`, resolved like pendulum's
/// `DateTime.create(..., fold=...)`. `None` only at chrono's range limits.
pub(crate) fn resolve(tz: &Tz, wall: NaiveDateTime, fold: Fold) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(dt) => Some(dt.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, second) => Some(match fold {
            Fold::Zero => first.with_timezone(&Utc),
            Fold::One => second.with_timezone(&Utc),
        }),
        LocalResult::None => {
            let (before, after) = gap_offsets(tz, wall)?;
            let offset = match fold {
                Fold::Zero => after,
                Fold::One => before,
            };
            let utc = wall.checked_sub_signed(Duration::seconds(i64::from(offset)))?;
            Some(utc.and_utc())
        }
    }
}

/// UTC offsets (seconds) in force just before and just after the gap that
/// swallows `wall`. Found by stepping out of the gap in 15-minute steps;
/// real gaps are at most a day (Samoa 2011), so this is bounded.
fn gap_offsets(tz: &Tz, wall: NaiveDateTime) -> Option<(i32, i32)> {
    let offset_at = |t: NaiveDateTime| match tz.from_local_datetime(&t) {
        LocalResult::Single(dt) => Some(dt.offset().fix().local_minus_utc()),
        LocalResult::Ambiguous(a, _) => Some(a.offset().fix().local_minus_utc()),
        LocalResult::None => None,
    };
    let step = Duration::minutes(15);
    let search = |forward: bool| {
        let mut t = wall;
        for _ in 0..(4 * 26) {
            t = if forward {
                t.checked_add_signed(step)?
            } else {
                t.checked_sub_signed(step)?
            };
            if let Some(offset) = offset_at(t) {
                return Some(offset);
            }
        }
        None
    };
    Some((search(false)?, search(true)?))
}

/// The earliest wall-clock time that can still resolve to `instant` or
/// later: `instant` shifted by the smallest UTC offset `tz` uses within two
/// days of it (a wall time resolves with one of those offsets).
pub(crate) fn earliest_wall_for(tz: &Tz, instant: DateTime<Utc>) -> Option<NaiveDateTime> {
    let min_offset = (-48..=48)
        .filter_map(|h| instant.checked_add_signed(Duration::hours(h)))
        .map(|t| t.with_timezone(tz).offset().fix().local_minus_utc())
        .min()?;
    instant
        .naive_utc()
        .checked_add_signed(Duration::seconds(i64::from(min_offset)))
}
