//! RRule schedules. Expected values were produced by Prefect 3.8.8.

use serde_json::json;

use super::*;
use crate::schedules::RRuleSchedule;

const NY: &str = "America/New_York";

#[test]
fn given_rule_without_dtstart_when_next_dates_then_anchored_at_2020_midnight() {
    let s = schedule(json!({"rrule": "FREQ=DAILY"}));
    assert_eq!(s.to_json(), json!({"rrule": "FREQ=DAILY", "timezone": "UTC"}));
    let dates = next(&s, 2, "2024-01-01T12:00:00Z", None);
    assert_eq!(dates, ["2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z"]);
}

#[test]
fn given_daily_9am_new_york_when_clocks_change_then_local_9am_is_kept() {
    let s = schedule(json!({"rrule": "DTSTART:20240101T090000\nRRULE:FREQ=DAILY", "timezone": NY}));
    assert_eq!(
        next(&s, 4, "2024-03-08T00:00:00Z", None),
        ["2024-03-08T14:00:00Z", "2024-03-09T14:00:00Z", "2024-03-10T13:00:00Z", "2024-03-11T13:00:00Z"]
    );
    assert_eq!(
        next(&s, 4, "2024-11-01T00:00:00Z", None),
        ["2024-11-01T13:00:00Z", "2024-11-02T13:00:00Z", "2024-11-03T14:00:00Z", "2024-11-04T14:00:00Z"]
    );
}

#[test]
fn given_hourly_new_york_when_clocks_fall_back_then_repeated_hour_fires_once() {
    let s = schedule(json!({"rrule": "DTSTART:20240101T000000\nRRULE:FREQ=HOURLY", "timezone": NY}));
    assert_eq!(
        next(&s, 3, "2024-11-03T04:30:00Z", None),
        ["2024-11-03T05:00:00Z", "2024-11-03T07:00:00Z", "2024-11-03T08:00:00Z"]
    );
}

#[test]
fn given_daily_0230_new_york_when_the_time_is_skipped_then_it_fires_one_hour_early() {
    let s = schedule(json!({"rrule": "DTSTART:20240101T023000\nRRULE:FREQ=DAILY", "timezone": NY}));
    assert_eq!(
        next(&s, 4, "2024-03-08T00:00:00Z", None),
        ["2024-03-08T07:30:00Z", "2024-03-09T07:30:00Z", "2024-03-10T06:30:00Z", "2024-03-11T06:30:00Z"]
    );
}

#[test]
fn given_count_until_exdate_rdate_when_next_dates_then_rfc5545_semantics() {
    let count = schedule(json!({"rrule": "DTSTART:20240101T000000\nRRULE:FREQ=DAILY;COUNT=3"}));
    assert_eq!(
        next(&count, 5, "2023-01-01T00:00:00Z", None),
        ["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z"]
    );
    let until = schedule(json!({"rrule": "DTSTART:20240101T000000\nRRULE:FREQ=DAILY;UNTIL=20240104T000000"}));
    assert_eq!(
        next(&until, 5, "2024-01-02T00:00:00Z", None),
        ["2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z", "2024-01-04T00:00:00Z"]
    );
    let exdate = schedule(json!({
        "rrule": "DTSTART:20240101T100000\nRRULE:FREQ=DAILY\nEXDATE:20240103T100000", "timezone": NY
    }));
    assert_eq!(
        next(&exdate, 3, "2024-01-02T00:00:00Z", None),
        ["2024-01-02T15:00:00Z", "2024-01-04T15:00:00Z", "2024-01-05T15:00:00Z"]
    );
    let rdate = schedule(json!({
        "rrule": "DTSTART:20240101T100000\nRRULE:FREQ=WEEKLY\nRDATE:20240110T120000", "timezone": NY
    }));
    assert_eq!(
        next(&rdate, 3, "2024-01-02T00:00:00Z", None),
        ["2024-01-08T15:00:00Z", "2024-01-10T17:00:00Z", "2024-01-15T15:00:00Z"]
    );
}

#[test]
fn given_dtstart_with_its_own_zone_when_evaluated_then_wall_clock_is_moved_to_schedule_zone() {
    let paris = schedule(json!({
        "rrule": "DTSTART;TZID=Europe/Paris:20240101T090000\nRRULE:FREQ=DAILY", "timezone": "UTC"
    }));
    assert_eq!(next(&paris, 1, "2024-03-01T00:00:00Z", None), ["2024-03-01T09:00:00Z"]);
    let zulu = schedule(json!({"rrule": "DTSTART:20240101T090000Z\nRRULE:FREQ=DAILY", "timezone": NY}));
    assert_eq!(next(&zulu, 1, "2024-03-01T00:00:00Z", None), ["2024-03-01T14:00:00Z"]);
}

#[test]
fn given_end_bound_when_next_dates_then_stops_at_end() {
    let s = schedule(json!({"rrule": "DTSTART:20240101T000000\nRRULE:FREQ=HOURLY"}));
    assert_eq!(
        next(&s, 100, "2024-01-01T00:30:00Z", Some("2024-01-01T04:00:00Z")),
        ["2024-01-01T01:00:00Z", "2024-01-01T02:00:00Z", "2024-01-01T03:00:00Z", "2024-01-01T04:00:00Z"]
    );
}

#[test]
fn given_high_frequency_rule_with_old_dtstart_when_next_dates_then_fast_and_phase_exact() {
    let minutely = schedule(json!({
        "rrule": "DTSTART:20230601T000300\nRRULE:FREQ=MINUTELY;INTERVAL=7", "timezone": NY
    }));
    assert_eq!(
        next(&minutely, 3, "2024-03-10T06:58:00Z", None),
        ["2024-03-10T07:04:00Z", "2024-03-10T07:11:00Z", "2024-03-10T07:18:00Z"]
    );
    let secondly = schedule(json!({"rrule": "DTSTART:20231201T000001\nRRULE:FREQ=SECONDLY;INTERVAL=7;BYMINUTE=0,30"}));
    assert_eq!(
        next(&secondly, 3, "2024-01-01T00:00:00Z", None),
        ["2024-01-01T00:00:04Z", "2024-01-01T00:00:11Z", "2024-01-01T00:00:18Z"]
    );
    let hourly = schedule(json!({"rrule": "DTSTART:20200101T001500\nRRULE:FREQ=HOURLY;INTERVAL=5;UNTIL=20240101T200000"}));
    assert_eq!(
        next(&hourly, 9, "2024-01-01T00:00:00Z", None),
        ["2024-01-01T01:15:00Z", "2024-01-01T06:15:00Z", "2024-01-01T11:15:00Z", "2024-01-01T16:15:00Z"]
    );
}

#[test]
fn given_rules_that_never_match_or_loop_in_prefect_when_next_dates_then_empty() {
    let never = schedule(json!({"rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"}));
    assert!(next(&never, 3, "2024-01-01T00:00:00Z", None).is_empty());
    // Prefect accepts INTERVAL=0 and then loops forever in dateutil.
    let zero = schedule(json!({"rrule": "FREQ=DAILY;INTERVAL=0"}));
    assert!(next(&zero, 3, "2024-01-01T00:00:00Z", None).is_empty());
}

#[test]
fn given_timezone_null_or_unknown_but_pattern_matching_when_next_dates_then_empty() {
    // Both validate in Prefect but make get_dates raise.
    for tz in [json!(null), json!("GBxyz")] {
        let s = schedule(json!({"rrule": "DTSTART:20240101T000000\nRRULE:FREQ=HOURLY", "timezone": tz}));
        assert_eq!(s.to_json()["timezone"], tz);
        assert!(next(&s, 2, "2024-01-01T00:30:00Z", None).is_empty());
    }
}

#[test]
fn given_action_schema_when_rrule_lacks_dtstart_then_prefects_anchor_is_prepended() {
    // normalize_rrule_string(..., now=2026-03-08T14:07:42.123456Z)
    let now = utc("2026-03-08T14:07:42.123456Z");
    let cases = [
        ("FREQ=DAILY", json!("UTC"), "DTSTART:20200101T000000\nFREQ=DAILY"),
        ("FREQ=MINUTELY;INTERVAL=7", json!("UTC"), "DTSTART:20260308T140100\nFREQ=MINUTELY;INTERVAL=7"),
        ("FREQ=MINUTELY;INTERVAL=7", json!(NY), "DTSTART:20260308T100300\nFREQ=MINUTELY;INTERVAL=7"),
        ("FREQ=SECONDLY;INTERVAL=45", json!("Asia/Kolkata"), "DTSTART:20260308T193730\nFREQ=SECONDLY;INTERVAL=45"),
        ("FREQ=SECONDLY;INTERVAL=7;COUNT=3", json!("UTC"), "DTSTART:20200101T000000\nFREQ=SECONDLY;INTERVAL=7;COUNT=3"),
        ("RRULE:FREQ=DAILY\nRRULE:FREQ=HOURLY", json!("UTC"), "DTSTART:20200101T000000\nRRULE:FREQ=DAILY\nRRULE:FREQ=HOURLY"),
        ("dtstart:20210101T000000\nFREQ=DAILY", json!("UTC"), "dtstart:20210101T000000\nFREQ=DAILY"),
        ("FREQ=DAILY;UNTIL=20250101T000000Z", json!("UTC"), "FREQ=DAILY;UNTIL=20250101T000000Z"),
        ("FREQ=MINUTELY", json!(null), "DTSTART:20260308T140700\nFREQ=MINUTELY"),
        ("FREQ=MINUTELY;INTERVAL=13", json!("GBxyz"), "DTSTART:20260308T140600\nFREQ=MINUTELY;INTERVAL=13"),
        ("FREQ=HOURLY;INTERVAL=2", json!("UTC"), "DTSTART:20200101T000000\nFREQ=HOURLY;INTERVAL=2"),
        (
            "FREQ=MINUTELY;INTERVAL=7\nEXDATE:20240101T000000",
            json!("UTC"),
            "DTSTART:20200101T000000\nFREQ=MINUTELY;INTERVAL=7\nEXDATE:20240101T000000",
        ),
        ("FREQ=MINUTELY;BYHOUR=9", json!("Europe/Berlin"), "DTSTART:20260308T150700\nFREQ=MINUTELY;BYHOUR=9"),
    ];
    for (rrule, tz, expected) in cases {
        let input = json!({"rrule": rrule, "timezone": tz});
        let parsed = Schedule::parse_action(&input, now).map(|s| s.to_json());
        assert_eq!(parsed, Ok(json!({"rrule": expected, "timezone": tz})), "{rrule}");
    }
}

#[test]
fn given_invalid_rrules_when_parsed_then_prefects_messages() {
    let cases = [
        ("FREQ=BOGUS", "Value error, Invalid RRule string \"FREQ=BOGUS\": invalid 'FREQ': BOGUS"),
        ("", "Value error, Invalid RRule string \"\": empty string"),
        ("FREQ=DAILY;FOO=1", "Value error, Invalid RRule string \"FREQ=DAILY;FOO=1\": unknown parameter 'FOO'"),
        (
            "DTSTART:20240101T000000\nRRULE:FREQ=DAILY;UNTIL=20250101T000000Z",
            "Value error, Invalid RRule string \"DTSTART:20240101T000000\nRRULE:FREQ=DAILY;UNTIL=20250101T000000Z\": \
             RRULE UNTIL values must be specified in UTC when DTSTART is timezone-aware",
        ),
    ];
    for (rrule, msg) in cases {
        let err = RRuleSchedule::new(rrule, Some("UTC")).err();
        assert_eq!(err.map(|e| (e.loc, e.msg)), Some((vec!["rrule".to_string()], msg.to_string())), "{rrule}");
    }
}

#[test]
fn given_rrule_longer_than_6500_chars_when_parsed_then_length_error() {
    let rrule = format!("DTSTART:20200101T000000\nRRULE:FREQ=DAILY\n{}", "EXDATE:20200102T000000\n".repeat(300));
    let err = RRuleSchedule::new(&rrule, None).err().map(|e| e.msg);
    assert_eq!(
        err.as_deref(),
        Some(
            "Value error, Invalid RRule string \"DTSTART:20200101T000000\nRRULE:FREQ=DAILY...\"\n\
             Max length is 6500, got 6941"
        )
    );
}

#[test]
fn given_timezone_not_containing_a_zone_name_when_parsed_then_pattern_error() {
    let err = Schedule::parse_at(&json!({"rrule": "FREQ=DAILY", "timezone": "Nowhere"}), utc(FIXED_NOW)).err();
    let err = err.map(|e| (e.loc, e.msg.starts_with("String should match pattern 'Africa/Abidjan|Africa/Accra|")));
    assert_eq!(err, Some((vec!["timezone".to_string()], true)));
}
