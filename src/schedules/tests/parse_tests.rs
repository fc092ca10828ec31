//! The union as a whole: shape selection, errors, display values.

use serde_json::json;

use super::*;
use crate::schedules::ScheduleError;

fn parse_err(input: serde_json::Value) -> Option<(Vec<String>, String)> {
    Schedule::parse_at(&input, utc(FIXED_NOW)).err().map(|e| (e.loc, e.msg))
}

#[test]
fn given_each_shape_when_parsed_then_the_matching_variant_and_display_value() {
    let cases = [
        (json!({"interval": 60}), "IntervalSchedule"),
        (json!({"cron": "* * * * *"}), "CronSchedule"),
        (json!({"rrule": "FREQ=DAILY"}), "RRuleSchedule"),
    ];
    for (input, class) in cases {
        assert_eq!(schedule(input).display_value(), class);
    }
}

#[test]
fn given_not_an_object_when_parsed_then_first_union_member_error() {
    assert_eq!(
        parse_err(json!("hello")),
        Some((vec![], "Input should be a valid dictionary or instance of IntervalSchedule".to_string()))
    );
}

#[test]
fn given_no_known_key_when_parsed_then_interval_is_required() {
    let expected = Some((vec!["interval".to_string()], "Field required".to_string()));
    assert_eq!(parse_err(json!({})), expected);
    assert_eq!(parse_err(json!({"timezone": "UTC"})), expected);
}

#[test]
fn given_two_shapes_mixed_when_parsed_then_extra_key_is_forbidden() {
    assert_eq!(
        parse_err(json!({"interval": 60, "cron": "* * * * *"})),
        Some((vec!["cron".to_string()], "Extra inputs are not permitted".to_string()))
    );
    assert_eq!(
        parse_err(json!({"rrule": "FREQ=DAILY", "day_or": true})),
        Some((vec!["day_or".to_string()], "Extra inputs are not permitted".to_string()))
    );
}

#[test]
fn given_wrong_field_types_when_parsed_then_string_errors() {
    assert_eq!(
        parse_err(json!({"cron": 5})),
        Some((vec!["cron".to_string()], "Input should be a valid string".to_string()))
    );
    assert_eq!(
        parse_err(json!({"rrule": 7})),
        Some((vec!["rrule".to_string()], "Input should be a valid string".to_string()))
    );
}

#[test]
fn given_a_schedule_error_when_displayed_then_location_and_message() {
    let err = ScheduleError {
        loc: vec!["cron".into()],
        msg: "Field required".into(),
    };
    assert_eq!(err.to_string(), "cron: Field required");
    let model = ScheduleError {
        loc: vec![],
        msg: "bad".into(),
    };
    assert_eq!(model.to_string(), "bad");
}

#[test]
fn given_parsed_schedules_when_round_tripped_through_to_json_then_stable() {
    let inputs = [
        json!({"interval": 90.5, "anchor_date": "2024-01-01T00:00:00+05:30", "timezone": "Asia/Kolkata"}),
        json!({"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin", "day_or": false}),
        json!({"rrule": "DTSTART:20240101T090000\nRRULE:FREQ=WEEKLY;BYDAY=MO", "timezone": "Europe/London"}),
    ];
    for input in inputs {
        let once = schedule(input).to_json();
        assert_eq!(schedule(once.clone()).to_json(), once);
    }
}

#[test]
fn given_hostile_inputs_when_parsed_and_evaluated_then_no_panic() {
    let inputs = [
        json!({"interval": 1e300}),
        json!({"interval": -1e300}),
        json!({"interval": 1, "anchor_date": 1e300}),
        json!({"interval": 1, "anchor_date": "9999-12-31T23:59:59Z"}),
        json!({"interval": 3e17, "anchor_date": "0001-01-01T00:00:00Z"}),
        json!({"interval": "P99999999999D"}),
        json!({"interval": "99999999999999999999 days"}),
        json!({"cron": "59 23 31 12 * 59 2099"}),
        json!({"cron": "0-59/1 0-23/1 1-31/1 1-12/1 0-7/1"}),
        json!({"cron": "🙂 * * * *"}),
        json!({"rrule": "DTSTART:99991231T235959\nRRULE:FREQ=SECONDLY"}),
        json!({"rrule": "DTSTART:00010101T000000\nRRULE:FREQ=YEARLY;INTERVAL=65535"}),
        json!({"rrule": "FREQ=SECONDLY;COUNT=4294967295"}),
        json!({"rrule": "FREQ=MONTHLY;BYMONTHDAY=31;BYMONTH=2,4,6"}),
        json!({"rrule": "RRULE:FREQ=DAILY:X"}),
        json!({"rrule": "\u{0}"}),
    ];
    let starts = ["2024-01-01T00:00:00Z", "0001-01-02T00:00:00Z", "9999-12-30T00:00:00Z"];
    for input in inputs {
        if let Ok(s) = Schedule::parse_at(&input, utc(FIXED_NOW)) {
            for start in starts {
                let _ = s.next_dates(5, utc(start), None);
            }
        }
    }
}

#[test]
fn given_a_schedule_when_shared_across_tasks_then_it_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Schedule>();
    assert_send_sync::<ScheduleError>();
}

#[test]
fn given_null_or_odd_field_values_when_parsed_then_pydantic_messages() {
    assert_eq!(
        parse_err(json!({"cron": "0 0 * * *", "day_or": null})),
        Some((vec!["day_or".to_string()], "Input should be a valid boolean".to_string()))
    );
    assert_eq!(
        parse_err(json!({"interval": 60, "anchor_date": null})),
        Some((vec!["anchor_date".to_string()], "value is not a valid datetime".to_string()))
    );
    assert_eq!(
        parse_err(json!({"interval": "PT0S"})),
        Some((vec!["interval".to_string()], "Value error, interval must be positive".to_string()))
    );
}
