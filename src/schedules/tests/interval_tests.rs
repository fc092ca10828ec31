//! Interval schedules. Expected values were produced by Prefect 3.8.8.

use serde_json::json;

use super::*;
use crate::schedules::IntervalSchedule;

const NY: &str = "America/New_York";

#[test]
fn given_hourly_utc_anchor_in_past_when_next_dates_then_aligned_to_anchor() {
    let s = schedule(json!({"interval": 3600, "anchor_date": "2020-01-01T00:00:00Z"}));
    let dates = next(&s, 3, "2024-03-10T05:30:00Z", None);
    assert_eq!(dates, ["2024-03-10T06:00:00Z", "2024-03-10T07:00:00Z", "2024-03-10T08:00:00Z"]);
}

#[test]
fn given_hourly_in_new_york_when_clocks_spring_forward_then_fires_every_utc_hour() {
    let s = schedule(json!({"interval": 3600, "anchor_date": "2020-01-01T00:00:00Z", "timezone": NY}));
    let dates = next(&s, 5, "2024-03-10T05:30:00Z", None);
    assert_eq!(
        dates,
        [
            "2024-03-10T06:00:00Z",
            "2024-03-10T07:00:00Z",
            "2024-03-10T08:00:00Z",
            "2024-03-10T09:00:00Z",
            "2024-03-10T10:00:00Z"
        ]
    );
}

#[test]
fn given_hourly_in_new_york_when_clocks_fall_back_then_repeated_local_hour_is_dropped() {
    // 06:00Z is 01:00 EST, the same wall clock as 05:00Z (01:00 EDT); Python
    // treats them as equal (fold is ignored) so Prefect skips it.
    let s = schedule(json!({"interval": 3600, "anchor_date": "2020-01-01T00:00:00Z", "timezone": NY}));
    let dates = next(&s, 5, "2024-11-03T04:30:00Z", None);
    assert_eq!(
        dates,
        [
            "2024-11-03T05:00:00Z",
            "2024-11-03T07:00:00Z",
            "2024-11-03T08:00:00Z",
            "2024-11-03T09:00:00Z",
            "2024-11-03T10:00:00Z"
        ]
    );
}

#[test]
fn given_daily_9am_new_york_when_clocks_spring_forward_then_local_hour_is_kept() {
    let s = schedule(json!({"interval": 86400, "anchor_date": "2024-01-01T14:00:00Z", "timezone": NY}));
    let dates = next(&s, 4, "2024-03-08T00:00:00Z", None);
    assert_eq!(
        dates,
        ["2024-03-08T14:00:00Z", "2024-03-09T14:00:00Z", "2024-03-10T13:00:00Z", "2024-03-11T13:00:00Z"]
    );
}

#[test]
fn given_daily_9am_new_york_when_clocks_fall_back_then_local_hour_is_kept() {
    let s = schedule(json!({"interval": 86400, "anchor_date": "2024-01-01T14:00:00Z", "timezone": NY}));
    let dates = next(&s, 4, "2024-11-01T00:00:00Z", None);
    assert_eq!(
        dates,
        ["2024-11-01T14:00:00Z", "2024-11-02T14:00:00Z", "2024-11-03T15:00:00Z", "2024-11-04T15:00:00Z"]
    );
}

#[test]
fn given_daily_anchor_in_winter_when_first_evaluated_in_summer_then_prefects_shifted_hour_is_kept() {
    // Prefect jumps in exact seconds, landing on 10:00 EDT, then steps daily
    // on the wall clock: the schedule fires at 10:00 local, not 09:00.
    let s = schedule(json!({"interval": 86400, "anchor_date": "2024-01-01T14:00:00Z", "timezone": NY}));
    let dates = next(&s, 2, "2024-07-01T00:00:00Z", None);
    assert_eq!(dates, ["2024-07-01T14:00:00Z", "2024-07-02T14:00:00Z"]);
}

#[test]
fn given_daily_0230_new_york_when_the_time_does_not_exist_then_it_moves_forward() {
    let s = schedule(json!({"interval": 86400, "anchor_date": "2024-03-08T07:30:00Z", "timezone": NY}));
    let dates = next(&s, 4, "2024-03-08T00:00:00Z", None);
    assert_eq!(
        dates,
        ["2024-03-08T07:30:00Z", "2024-03-09T07:30:00Z", "2024-03-10T07:30:00Z", "2024-03-11T07:30:00Z"]
    );
}

#[test]
fn given_daily_0130_new_york_when_the_time_repeats_then_the_second_occurrence_is_used() {
    let s = schedule(json!({"interval": 86400, "anchor_date": "2024-11-01T05:30:00Z", "timezone": NY}));
    let dates = next(&s, 4, "2024-11-01T00:00:00Z", None);
    assert_eq!(
        dates,
        ["2024-11-01T05:30:00Z", "2024-11-02T05:30:00Z", "2024-11-03T06:30:00Z", "2024-11-04T06:30:00Z"]
    );
}

#[test]
fn given_25_hour_interval_when_crossing_spring_forward_then_steps_on_wall_clock() {
    let s = schedule(json!({"interval": 90000, "anchor_date": "2024-03-08T12:00:00Z", "timezone": NY}));
    let dates = next(&s, 4, "2024-03-08T12:00:00Z", None);
    assert_eq!(
        dates,
        ["2024-03-08T12:00:00Z", "2024-03-09T13:00:00Z", "2024-03-10T13:00:00Z", "2024-03-11T14:00:00Z"]
    );
}

#[test]
fn given_anchor_in_future_when_start_is_earlier_then_dates_are_aligned_before_anchor() {
    let s = schedule(json!({"interval": 3600, "anchor_date": "2030-01-01T00:30:00Z"}));
    let dates = next(&s, 3, "2024-01-01T00:00:00Z", None);
    assert_eq!(dates, ["2024-01-01T00:30:00Z", "2024-01-01T01:30:00Z", "2024-01-01T02:30:00Z"]);
}

#[test]
fn given_end_bound_when_next_dates_then_stops_at_end() {
    let s = schedule(json!({"interval": 600, "anchor_date": "2024-01-01T00:00:00Z"}));
    let dates = next(&s, 100, "2024-01-01T00:05:00Z", Some("2024-01-01T00:45:00Z"));
    assert_eq!(
        dates,
        ["2024-01-01T00:10:00Z", "2024-01-01T00:20:00Z", "2024-01-01T00:30:00Z", "2024-01-01T00:40:00Z"]
    );
    let none = next(&s, 10, "2024-01-01T00:05:00Z", Some("2024-01-01T00:06:00Z"));
    assert!(none.is_empty());
}

#[test]
fn given_start_equal_to_a_date_when_next_dates_then_it_is_included() {
    let s = schedule(json!({"interval": 600, "anchor_date": "2024-01-01T00:00:00Z"}));
    let dates = next(&s, 2, "2024-01-01T00:00:00Z", None);
    assert_eq!(dates, ["2024-01-01T00:00:00Z", "2024-01-01T00:10:00Z"]);
}

#[test]
fn given_fractional_interval_when_next_dates_then_microseconds_are_kept() {
    let s = schedule(json!({"interval": 0.25, "anchor_date": "2024-01-01T00:00:00.1Z"}));
    let dates = next(&s, 2, "2024-01-01T00:00:01Z", None);
    assert_eq!(dates, ["2024-01-01T00:00:01.100000Z", "2024-01-01T00:00:01.350000Z"]);
}

#[test]
fn given_n_zero_when_next_dates_then_prefect_still_yields_one() {
    let s = schedule(json!({"interval": 3600, "anchor_date": "2020-01-01T00:00:00Z"}));
    assert_eq!(next(&s, 0, "2024-01-01T00:00:01Z", None), ["2024-01-01T01:00:00Z"]);
}

#[test]
fn given_huge_n_when_next_dates_then_capped_at_max_iterations_plus_two() {
    let s = schedule(json!({"interval": 60, "anchor_date": "2020-01-01T00:00:00Z"}));
    let dates = next(&s, 2000, "2024-01-01T00:00:00Z", None);
    assert_eq!(dates.len(), 1002);
    assert_eq!(dates.first().map(String::as_str), Some("2024-01-01T00:00:00Z"));
    assert_eq!(dates.last().map(String::as_str), Some("2024-01-01T16:41:00Z"));
}

#[test]
fn given_empty_timezone_when_next_dates_then_none_because_prefect_raises() {
    let s = schedule(json!({"interval": 3600, "anchor_date": "2020-01-01T00:00:00Z", "timezone": ""}));
    assert_eq!(s.to_json()["timezone"], "");
    assert!(next(&s, 2, "2024-01-01T00:00:00Z", None).is_empty());
}

#[test]
fn given_offset_anchor_when_serialized_then_offset_is_kept_and_timezone_is_utc() {
    let s = schedule(json!({"interval": 86400, "anchor_date": "2020-01-01T09:00:00-05:00"}));
    assert_eq!(
        s.to_json(),
        json!({"interval": 86400.0, "anchor_date": "2020-01-01T09:00:00-05:00", "timezone": "UTC"})
    );
    assert_eq!(
        serde_json::to_string(&s.to_json()).ok().as_deref(),
        Some(r#"{"interval":86400.0,"anchor_date":"2020-01-01T09:00:00-05:00","timezone":"UTC"}"#)
    );
}

#[test]
fn given_missing_anchor_when_parsed_then_anchor_is_now() {
    let s = schedule(json!({"interval": 60}));
    assert_eq!(s.to_json()["anchor_date"], "2026-01-01T00:00:00Z");
}

#[test]
fn given_pydantic_timedelta_and_datetime_spellings_when_parsed_then_normalized_like_prefect() {
    let cases = [
        (json!({"interval": "P1DT2H", "anchor_date": "2024-01-01"}), 93600.0, "2024-01-01T00:00:00Z"),
        (json!({"interval": "01:30:00", "anchor_date": "2024-01-01T00:00:00"}), 5400.0, "2024-01-01T00:00:00Z"),
        (json!({"interval": "2 days, 01:00:00", "anchor_date": 1704067200}), 176400.0, "2024-01-01T00:00:00Z"),
        (json!({"interval": true, "anchor_date": "2024-01-01T00:00:00.123456+00:00"}), 1.0, "2024-01-01T00:00:00.123456Z"),
        (json!({"interval": 60, "anchor_date": "2024-01-01 00:00:00+01:00"}), 60.0, "2024-01-01T00:00:00+01:00"),
    ];
    for (input, interval, anchor) in cases {
        let out = schedule(input).to_json();
        assert_eq!(out["interval"], json!(interval));
        assert_eq!(out["anchor_date"], anchor);
    }
}

#[test]
fn given_invalid_intervals_when_parsed_then_pydantic_like_errors() {
    let cases = [
        (json!({"interval": 0}), vec!["interval"], "Value error, interval must be positive"),
        (json!({"interval": -1.5}), vec!["interval"], "Value error, interval must be positive"),
        (json!({"interval": 1e-7}), vec!["interval"], "Value error, interval must be positive"),
        (json!({"interval": null}), vec!["interval"], "Input should be a valid timedelta"),
        (json!({"interval": 60, "foo": 1}), vec!["foo"], "Extra inputs are not permitted"),
        (json!({"interval": 60, "timezone": 5}), vec!["timezone"], "Input should be a valid string"),
        (
            json!({"interval": 60, "anchor_date": "not a date"}),
            vec!["anchor_date"],
            "Value error, Unable to parse string [not a date]",
        ),
        (
            json!({"interval": 60, "timezone": "Mars/Olympus"}),
            vec![],
            "Value error, Invalid timezone: \"Mars/Olympus\" (specify in IANA tzdata format, for example, America/New_York)",
        ),
    ];
    for (input, loc, msg) in cases {
        let err = Schedule::parse_at(&input, utc(FIXED_NOW)).err();
        let got = err.map(|e| (e.loc, e.msg));
        assert_eq!(got, Some((loc.iter().map(|s| s.to_string()).collect(), msg.to_string())), "{input}");
    }
}

#[test]
fn given_constructor_when_interval_not_positive_then_error() {
    let anchor = utc("2024-01-01T00:00:00Z").fixed_offset();
    assert!(IntervalSchedule::new(chrono::Duration::zero(), anchor, None).is_err());
    let ok = IntervalSchedule::new(chrono::Duration::minutes(5), anchor, Some(NY));
    assert_eq!(ok.map(|s| s.timezone().to_string()).ok().as_deref(), Some(NY));
}
