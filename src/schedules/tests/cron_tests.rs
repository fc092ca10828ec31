//! Cron schedules. Expected values were produced by Prefect 3.8.8.

use serde_json::json;

use super::*;
use crate::schedules::CronSchedule;

const NY: &str = "America/New_York";

#[test]
fn given_daily_9am_new_york_when_clocks_spring_forward_then_local_9am_is_kept() {
    let s = schedule(json!({"cron": "0 9 * * *", "timezone": NY}));
    let dates = next(&s, 4, "2024-03-08T00:00:00Z", None);
    assert_eq!(
        dates,
        ["2024-03-08T14:00:00Z", "2024-03-09T14:00:00Z", "2024-03-10T13:00:00Z", "2024-03-11T13:00:00Z"]
    );
}

#[test]
fn given_daily_9am_new_york_when_clocks_fall_back_then_local_9am_is_kept() {
    let s = schedule(json!({"cron": "0 9 * * *", "timezone": NY}));
    let dates = next(&s, 4, "2024-11-01T00:00:00Z", None);
    assert_eq!(
        dates,
        ["2024-11-01T13:00:00Z", "2024-11-02T13:00:00Z", "2024-11-03T14:00:00Z", "2024-11-04T14:00:00Z"]
    );
}

#[test]
fn given_0230_new_york_when_the_time_is_skipped_then_it_fires_one_hour_early() {
    // 02:30 does not exist on 2024-03-10; pendulum's fold=0 moves it back
    // by the gap, to 01:30 EST (06:30Z).
    let s = schedule(json!({"cron": "30 2 * * *", "timezone": NY}));
    let dates = next(&s, 4, "2024-03-08T00:00:00Z", None);
    assert_eq!(
        dates,
        ["2024-03-08T07:30:00Z", "2024-03-09T07:30:00Z", "2024-03-10T06:30:00Z", "2024-03-11T06:30:00Z"]
    );
}

#[test]
fn given_0130_new_york_when_the_time_repeats_then_only_the_first_occurrence_fires() {
    let s = schedule(json!({"cron": "30 1 * * *", "timezone": NY}));
    let dates = next(&s, 4, "2024-11-01T00:00:00Z", None);
    assert_eq!(
        dates,
        ["2024-11-01T05:30:00Z", "2024-11-02T05:30:00Z", "2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z"]
    );
}

#[test]
fn given_hourly_new_york_when_clocks_fall_back_then_two_hour_pause() {
    let s = schedule(json!({"cron": "0 * * * *", "timezone": NY}));
    let dates = next(&s, 3, "2024-11-03T04:30:00Z", None);
    assert_eq!(dates, ["2024-11-03T05:00:00Z", "2024-11-03T07:00:00Z", "2024-11-03T08:00:00Z"]);
}

#[test]
fn given_every_15_minutes_new_york_when_clocks_spring_forward_then_generation_order_is_prefects() {
    let s = schedule(json!({"cron": "*/15 * * * *", "timezone": NY}));
    let start = utc("2024-03-10T06:20:00Z");
    let generated: Vec<String> = s.dates_in_generation_order(6, start, None).iter().map(iso).collect();
    assert_eq!(
        generated,
        [
            "2024-03-10T06:30:00Z",
            "2024-03-10T06:45:00Z",
            "2024-03-10T06:00:00Z",
            "2024-03-10T06:15:00Z",
            "2024-03-10T07:00:00Z",
            "2024-03-10T07:15:00Z"
        ]
    );
    let sorted = next(&s, 6, "2024-03-10T06:20:00Z", None);
    assert_eq!(sorted.first().map(String::as_str), Some("2024-03-10T06:00:00Z"));
}

#[test]
fn given_start_on_a_match_when_next_dates_then_it_is_included_unless_subsecond_later() {
    let s = schedule(json!({"cron": "0 0 * * *"}));
    assert_eq!(next(&s, 1, "2024-01-01T00:00:00Z", None), ["2024-01-01T00:00:00Z"]);
    assert_eq!(next(&s, 1, "2024-01-01T00:00:00.5Z", None), ["2024-01-02T00:00:00Z"]);
    assert_eq!(next(&s, 1, "2023-12-31T23:59:59.5Z", None), ["2024-01-01T00:00:00Z"]);
}

#[test]
fn given_day_of_month_and_weekday_when_day_or_true_then_either_matches() {
    let s = schedule(json!({"cron": "0 0 13 * 5", "day_or": true}));
    let dates = next(&s, 4, "2024-01-01T00:00:00Z", None);
    assert_eq!(
        dates,
        ["2024-01-05T00:00:00Z", "2024-01-12T00:00:00Z", "2024-01-13T00:00:00Z", "2024-01-19T00:00:00Z"]
    );
}

#[test]
fn given_day_of_month_and_weekday_when_day_or_false_then_both_must_match() {
    let s = schedule(json!({"cron": "0 0 13 * 5", "day_or": false}));
    let dates = next(&s, 3, "2024-01-01T00:00:00Z", None);
    assert_eq!(dates, ["2024-09-13T00:00:00Z", "2024-12-13T00:00:00Z", "2025-06-13T00:00:00Z"]);
}

#[test]
fn given_full_day_of_month_range_and_starred_weekday_when_day_or_then_weekday_only() {
    // croniter treats "1-31" as "*" because the weekday field contains "*".
    let s = schedule(json!({"cron": "0 0 1-31 * */3"}));
    let dates = next(&s, 4, "2024-01-01T00:00:00Z", None);
    assert_eq!(
        dates,
        ["2024-01-03T00:00:00Z", "2024-01-06T00:00:00Z", "2024-01-07T00:00:00Z", "2024-01-10T00:00:00Z"]
    );
}

#[test]
fn given_croniter_only_syntax_when_next_dates_then_matches_croniter() {
    let cases = [
        ("0 0 * * * 30", ["2024-01-01T00:00:30Z", "2024-01-02T00:00:30Z"]),
        ("0 0 L * *", ["2024-01-31T00:00:00Z", "2024-02-29T00:00:00Z"]),
        ("0 0 * * fri#2", ["2024-01-12T00:00:00Z", "2024-02-09T00:00:00Z"]),
        ("0 0 * * L5", ["2024-01-26T00:00:00Z", "2024-02-23T00:00:00Z"]),
        ("0 0 * * fri-mon", ["2024-01-01T00:00:00Z", "2024-01-05T00:00:00Z"]),
        ("10/20 * * * *", ["2024-01-01T00:10:00Z", "2024-01-01T00:30:00Z"]),
        ("@weekly", ["2024-01-07T00:00:00Z", "2024-01-14T00:00:00Z"]),
        ("0 0 ? * mon", ["2024-01-01T00:00:00Z", "2024-01-08T00:00:00Z"]),
    ];
    for (cron, expected) in cases {
        let s = schedule(json!({ "cron": cron }));
        assert_eq!(next(&s, 2, "2024-01-01T00:00:00Z", None), expected, "{cron}");
    }
}

#[test]
fn given_end_bound_across_fall_back_when_next_dates_then_end_compares_wall_clocks() {
    let s = schedule(json!({"cron": "0 * * * *", "timezone": NY}));
    let dates = next(&s, 100, "2024-11-03T04:00:00Z", Some("2024-11-03T08:00:00Z"));
    assert_eq!(
        dates,
        ["2024-11-03T04:00:00Z", "2024-11-03T05:00:00Z", "2024-11-03T07:00:00Z", "2024-11-03T08:00:00Z"]
    );
}

#[test]
fn given_a_cron_that_never_matches_when_next_dates_then_empty_and_bounded() {
    // Prefect raises CroniterBadDateError; we return no dates.
    let s = schedule(json!({"cron": "0 0 30 2 *"}));
    assert!(next(&s, 2, "2024-01-01T00:00:00Z", None).is_empty());
}

#[test]
fn given_no_or_empty_timezone_when_serialized_then_kept_and_evaluated_as_utc() {
    let s = schedule(json!({"cron": "0 0 * * *", "timezone": ""}));
    assert_eq!(s.to_json(), json!({"cron": "0 0 * * *", "timezone": "", "day_or": true}));
    assert_eq!(next(&s, 1, "2024-01-01T00:07:00Z", None), ["2024-01-02T00:00:00Z"]);
    let s = schedule(json!({"cron": "0 9 * * *", "day_or": "false"}));
    assert_eq!(
        serde_json::to_string(&s.to_json()).ok().as_deref(),
        Some(r#"{"cron":"0 9 * * *","timezone":null,"day_or":false}"#)
    );
}

#[test]
fn given_invalid_crons_when_parsed_then_prefects_messages() {
    let invalid = |c: &str| format!("Value error, Invalid cron string: \"{c}\"");
    let cases = [
        ("bad", invalid("bad")),
        ("61 * * * *", invalid("61 * * * *")),
        ("* * * *", invalid("* * * *")),
        ("*/0 * * * *", invalid("*/0 * * * *")),
        ("0 0 15W * *", invalid("0 0 15W * *")),
        ("* * * * 5L", invalid("* * * * 5L")),
        ("H * * * *", invalid("H * * * *")),
        (
            "r * * * *",
            "Value error, Random and Hashed expressions are unsupported, received: \"r * * * *\"".to_string(),
        ),
    ];
    for (cron, msg) in cases {
        let err = CronSchedule::new(cron, None, true).err();
        assert_eq!(err.map(|e| (e.loc, e.msg)), Some((vec!["cron".to_string()], msg)), "{cron}");
    }
}

#[test]
fn given_invalid_timezone_or_day_or_when_parsed_then_errors() {
    let err = Schedule::parse_at(&json!({"cron": "0 0 * * *", "timezone": "Nope/Nope"}), utc(FIXED_NOW)).err();
    assert_eq!(
        err.map(|e| (e.loc.len(), e.msg)),
        Some((
            0,
            "Value error, Invalid timezone: \"Nope/Nope\" (specify in IANA tzdata format, for example, America/New_York)"
                .to_string()
        ))
    );
    let err = Schedule::parse_at(&json!({"cron": "0 0 * * *", "day_or": "maybe"}), utc(FIXED_NOW)).err();
    assert_eq!(
        err.map(|e| (e.loc, e.msg)),
        Some((
            vec!["day_or".to_string()],
            "Input should be a valid boolean, unable to interpret input".to_string()
        ))
    );
}
