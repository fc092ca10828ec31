//! Replays every case recorded from Prefect 3.8.8 against our implementation.

use serde_json::Value;

use super::prefect_data::{self, Case, Expect};
use super::{iso, utc, FIXED_NOW};
use crate::schedules::Schedule;

/// Checks one case; returns a description of the mismatch, if any.
fn check(case: &Case) -> Option<String> {
    let input: Value = serde_json::from_str(case.schedule).ok()?;
    let parsed = Schedule::parse_at(&input, utc(FIXED_NOW));
    let (schedule, json) = match (&case.expect, parsed) {
        (Expect::Invalid { loc, msg }, Err(err)) => {
            let msg_ok = match msg.strip_suffix("...") {
                Some(prefix) => err.msg.starts_with(prefix),
                None => err.msg == *msg,
            };
            return (err.loc != *loc || !msg_ok).then(|| format!("error {err:?}"));
        }
        (Expect::Invalid { .. }, Ok(s)) => return Some(format!("accepted: {}", s.to_json())),
        (_, Err(err)) => return Some(format!("rejected: {err:?}")),
        (Expect::Parses { json }, Ok(s))
        | (Expect::Dates { json, .. }, Ok(s))
        | (Expect::Raises { json, .. }, Ok(s)) => (s, *json),
    };
    let expected_json: Value = serde_json::from_str(json).ok()?;
    if schedule.to_json() != expected_json {
        return Some(format!("json {} != {json}", schedule.to_json()));
    }
    let query = case.query.as_ref()?;
    let got: Vec<String> = schedule
        .dates_in_generation_order(query.n, utc(query.start), query.end.map(utc))
        .iter()
        .map(iso)
        .collect();
    let (want, note): (Vec<String>, &str) = match &case.expect {
        Expect::Dates { dates, .. } => (dates.iter().map(|d| d.to_string()).collect(), ""),
        Expect::Raises { why, .. } => (Vec::new(), why),
        _ => (Vec::new(), ""),
    };
    (got != want).then(|| format!("dates {got:?} != {want:?} {note}"))
}

fn run(cases: &[Case]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| check(c).map(|why| format!("{}: {why}", c.name)))
        .collect();
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn given_prefects_recorded_interval_cases_then_we_reproduce_them() {
    run(prefect_data::interval::CASES);
}

#[test]
fn given_prefects_recorded_cron_cases_then_we_reproduce_them() {
    run(prefect_data::cron::CASES);
}

#[test]
fn given_prefects_recorded_rrule_cases_then_we_reproduce_them() {
    run(prefect_data::rrule::CASES);
}

#[test]
fn given_prefects_recorded_filtered_rrule_cases_then_we_reproduce_them() {
    run(prefect_data::rrule_filters::CASES);
}

#[test]
fn given_prefects_recorded_shape_errors_then_we_reproduce_them() {
    run(prefect_data::shape::CASES);
}
