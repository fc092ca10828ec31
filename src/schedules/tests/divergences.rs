//! Where we deliberately differ from Prefect 3.8.8, pinned so that changes
//! are noticed. Prefect's behaviour is quoted in each test.

use serde_json::json;

use super::*;

#[test]
fn given_random_cron_field_with_step_when_parsed_then_rejected() {
    // Prefect accepts "R/5 * * * *" (croniter picks a random minute offset)
    // because it only refuses fields that are exactly "R"/"H".
    let err = Schedule::parse_at(&json!({"cron": "R/5 * * * *"}), utc(FIXED_NOW)).err();
    assert_eq!(
        err.map(|e| e.msg),
        Some("Value error, Random and Hashed expressions are unsupported, received: \"R/5 * * * *\"".to_string())
    );
}

#[test]
fn given_cron_year_field_when_next_dates_then_matches_are_found() {
    // croniter 7-field crons raise CroniterBadDateError here in Prefect.
    let s = schedule(json!({"cron": "0 0 1 1 * 0 2026,2028"}));
    assert_eq!(
        next(&s, 3, "2024-01-01T00:00:00Z", None),
        ["2026-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]
    );
}

#[test]
fn given_rrule_without_any_rule_when_parsed_then_validation_error() {
    // Prefect: dateutil raises IndexError, which escapes validation (HTTP 500).
    let err = Schedule::parse_at(&json!({"rrule": "DTSTART:20240101T000000"}), utc(FIXED_NOW)).err();
    assert_eq!(
        err.map(|e| e.msg),
        Some("Value error, Invalid RRule string \"DTSTART:20240101T000000\": list index out of range".to_string())
    );
}

#[test]
fn given_rrule_values_dateutil_tolerates_when_parsed_then_rejected_by_the_rrule_crate() {
    // dateutil accepts these (BYMONTH=13 never matches; WEEKLY+BYMONTHDAY is
    // outside RFC 5545); the rrule crate validates them away.
    for rrule in ["FREQ=DAILY;BYMONTH=13", "FREQ=WEEKLY;BYMONTHDAY=1"] {
        assert!(Schedule::parse_at(&json!({ "rrule": rrule }), utc(FIXED_NOW)).is_err(), "{rrule}");
    }
}
