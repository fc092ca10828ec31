//! `POST /events/count-by/{countable}` (Prefect's `counting.py` and
//! `storage.process_time_based_counts`).
//!
//! The caller runs the one query [`count_sql`] builds, reads its rows with
//! [`CountRow::from_row`], and hands them to [`event_counts`], a pure function
//! that produces Prefect's `EventCount` list:
//!
//! * `event` / `resource`: one entry per value, labelled with the label of
//!   its most recent event (`resource`: `prefect.resource.name`, else
//!   `prefect.name`, else the id), ordered by count descending, then label.
//! * `day` / `time`: buckets of `time_interval` `time_unit`s aligned to the
//!   pivot 2024-04-01T00:00:00Z, from the bucket holding `since` to the one
//!   holding `until` (or the end of the current unit, when `until` is in the
//!   future), empty ones back-filled with 0, `value` numbering them from "0".

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::filter::{events_where, parse_stored, pydantic_ts, python_isoformat, EventFilter, EventFilterError};
use crate::db::sql::{Bind, Dialect, Sql};

/// Prefect's `MAX_ALLOWED_BUCKETS`.
pub const MAX_BUCKETS: i64 = 1000;

/// Prefect's `PIVOT_DATETIME` (2024-04-01T00:00:00Z) in microseconds since the epoch.
pub const PIVOT_MICROS: i64 = 1_711_929_600_000_000;

/// What to count events by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Countable {
    /// The legacy form of `time`: buckets of one day.
    Day,
    Time,
    Event,
    Resource,
}

impl Countable {
    /// Parses the `{countable}` path segment.
    pub fn parse(s: &str) -> Result<Countable, EventFilterError> {
        match s {
            "day" => Ok(Countable::Day),
            "time" => Ok(Countable::Time),
            "event" => Ok(Countable::Event),
            "resource" => Ok(Countable::Resource),
            _ => Err(EventFilterError::invalid(&["path", "countable"], "Input should be 'day', 'time', 'event' or 'resource'")),
        }
    }

    fn is_time(self) -> bool {
        matches!(self, Countable::Day | Countable::Time)
    }
}

/// The unit of `time_interval`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    Week,
    #[default]
    Day,
    Hour,
    Minute,
    Second,
}

impl TimeUnit {
    fn unit_micros(self) -> i64 {
        const S: i64 = 1_000_000;
        match self {
            TimeUnit::Week => 7 * 86_400 * S,
            TimeUnit::Day => 86_400 * S,
            TimeUnit::Hour => 3_600 * S,
            TimeUnit::Minute => 60 * S,
            TimeUnit::Second => S,
        }
    }

    /// Prefect's `as_timedelta(interval)` in whole microseconds.
    pub fn delta_micros(self, interval: f64) -> i64 {
        ((self.unit_micros() as f64) * interval).round() as i64
    }

    /// The last microsecond of the unit holding `dt` (weeks end on Sunday),
    /// as Prefect's `end_of_period`.
    pub fn end_of_period(self, dt: DateTime<Utc>) -> DateTime<Utc> {
        let d = dt.date_naive();
        let end_of_day = |date: chrono::NaiveDate| Utc.from_utc_datetime(&date.and_hms_micro_opt(23, 59, 59, 999_999).unwrap_or_default());
        match self {
            TimeUnit::Second => {
                Utc.from_utc_datetime(&d.and_hms_micro_opt(dt.hour(), dt.minute(), dt.second(), 999_999).unwrap_or_default())
            }
            TimeUnit::Minute => Utc.from_utc_datetime(&d.and_hms_micro_opt(dt.hour(), dt.minute(), 59, 999_999).unwrap_or_default()),
            TimeUnit::Hour => Utc.from_utc_datetime(&d.and_hms_micro_opt(dt.hour(), 59, 59, 999_999).unwrap_or_default()),
            TimeUnit::Day => end_of_day(d),
            TimeUnit::Week => end_of_day(d + Duration::days(6 - i64::from(d.weekday().num_days_from_monday()))),
        }
    }

    /// Prefect's `validate_buckets`: the interval is at least 0.01 and the
    /// range makes at most [`MAX_BUCKETS`] buckets.
    pub fn validate_buckets(self, start: DateTime<Utc>, end: DateTime<Utc>, interval: f64) -> Result<(), EventFilterError> {
        if interval.is_nan() || interval < 0.01 {
            return Err(EventFilterError::InvalidCountParameters("The minimum interval is 0.01".to_owned()));
        }
        let delta = self.delta_micros(interval).max(1);
        let span = end.timestamp_micros() - start.timestamp_micros();
        let buckets = ceil_div(span, delta);
        if buckets > MAX_BUCKETS {
            return Err(EventFilterError::InvalidCountParameters(format!(
                "The given interval would create {buckets} buckets, which is too many. Please increase the interval or \
                 reduce the time range to produce {MAX_BUCKETS} buckets or fewer."
            )));
        }
        Ok(())
    }
}

fn floor_div(a: i64, b: i64) -> i64 {
    a.div_euclid(b)
}

fn ceil_div(a: i64, b: i64) -> i64 {
    -((-a).div_euclid(b))
}

/// The body of `POST /events/count-by/{countable}`.
#[derive(Debug, Clone, PartialEq)]
pub struct CountByBody {
    pub filter: EventFilter,
    pub time_unit: TimeUnit,
    pub time_interval: f64,
}

impl CountByBody {
    pub fn new(filter: EventFilter) -> CountByBody {
        CountByBody { filter, time_unit: TimeUnit::Day, time_interval: 1.0 }
    }

    /// Parses a request body as FastAPI does: `filter` is required,
    /// `time_unit` defaults to `day`, `time_interval` to 1.0 and must be at
    /// least 0.01; other keys are ignored.
    pub fn from_json(bytes: &[u8]) -> Result<CountByBody, EventFilterError> {
        let body = super::filter::parse_body_object(bytes)?;
        let filter = match body.get("filter") {
            None => return Err(EventFilterError::invalid(&["body", "filter"], "Field required")),
            Some(Value::Null) => {
                return Err(EventFilterError::invalid(
                    &["body", "filter"],
                    "Input should be a valid dictionary or object to extract fields from",
                ))
            }
            Some(v) => EventFilter::from_value(v.clone())?,
        };
        let time_unit = match body.get("time_unit") {
            None => TimeUnit::Day,
            Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
                EventFilterError::invalid(&["body", "time_unit"], "Input should be 'week', 'day', 'hour', 'minute' or 'second'")
            })?,
        };
        let time_interval = match body.get("time_interval") {
            None => 1.0,
            Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            Some(Value::String(s)) => s.trim().parse::<f64>().map_err(|_| {
                EventFilterError::invalid(&["body", "time_interval"], "Input should be a valid number, unable to parse string as a number")
            })?,
            Some(_) => return Err(EventFilterError::invalid(&["body", "time_interval"], "Input should be a valid number")),
        };
        if !time_interval.is_finite() || time_interval < 0.01 {
            return Err(EventFilterError::invalid(&["body", "time_interval"], "Input should be greater than or equal to 0.01"));
        }
        Ok(CountByBody { filter, time_unit, time_interval })
    }
}

/// One count as Prefect returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventCount {
    pub value: String,
    pub label: String,
    pub count: i64,
    #[serde(serialize_with = "ser_ts")]
    pub start_time: DateTime<Utc>,
    #[serde(serialize_with = "ser_ts")]
    pub end_time: DateTime<Utc>,
}

fn ser_ts<S: Serializer>(dt: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&pydantic_ts(*dt))
}

/// One row of the [`count_sql`] query: `value`, `label`, `count`, and the
/// oldest and latest `occurred` of the group (stored text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountRow {
    pub value: String,
    pub label: String,
    pub count: i64,
    pub start_time: String,
    pub end_time: String,
}

impl CountRow {
    pub fn from_row(row: &sqlx::any::AnyRow) -> Result<CountRow, sqlx::Error> {
        use sqlx::Row;
        Ok(CountRow {
            value: row.try_get::<Option<String>, _>("value")?.unwrap_or_default(),
            label: row.try_get::<Option<String>, _>("label")?.unwrap_or_default(),
            count: row.try_get::<i64, _>("count")?,
            start_time: row.try_get::<Option<String>, _>("start_time")?.unwrap_or_default(),
            end_time: row.try_get::<Option<String>, _>("end_time")?.unwrap_or_default(),
        })
    }
}

/// The query behind `/events/count-by/{countable}`: columns `value`,
/// `label`, `count` (BIGINT), `start_time`, `end_time`. Validates the time
/// buckets first (for every countable, as Prefect does).
pub fn count_sql(
    countable: Countable,
    body: &CountByBody,
    dialect: Dialect,
    workspace_id: &str,
    now: DateTime<Utc>,
) -> Result<Sql, EventFilterError> {
    let (since, until) = body.filter.occurred.bounds(now);
    body.time_unit.validate_buckets(since.datetime(), until.datetime(), body.time_interval)?;
    let mut sql = Sql::default();
    let cond = events_where(&body.filter, dialect, &mut sql, workspace_id, now)?;
    let aggregates = "COUNT(*) AS count, MIN(events.occurred) AS start_time, MAX(events.occurred) AS end_time";
    sql.text = match countable {
        Countable::Event => {
            format!("SELECT events.event AS value, events.event AS label, {aggregates} FROM events WHERE {cond} GROUP BY events.event")
        }
        Countable::Resource => {
            let label = resource_label(dialect, &mut sql);
            format!("SELECT events.resource_id AS value, {label} AS label, {aggregates} FROM events WHERE {cond} GROUP BY 1, 2")
        }
        Countable::Day | Countable::Time => {
            // `day` buckets by one day whatever the body says (as Prefect's SQL does).
            let delta =
                if countable == Countable::Day { TimeUnit::Day.delta_micros(1.0) } else { body.time_unit.delta_micros(body.time_interval) }
                    .max(1);
            let micros = epoch_micros(dialect);
            let pivot = sql.placeholder(Bind::Int(PIVOT_MICROS));
            let d = sql.placeholder(Bind::Int(delta));
            // Floor division (integer division truncates towards zero).
            let bucket = format!("(t.x / {d} - CASE WHEN t.x % {d} < 0 THEN 1 ELSE 0 END)");
            format!(
                "SELECT CAST(b.bucket AS TEXT) AS value, CAST(b.bucket AS TEXT) AS label, COUNT(*) AS count, \
                 MIN(b.occurred) AS start_time, MAX(b.occurred) AS end_time FROM \
                 (SELECT t.occurred AS occurred, {bucket} AS bucket FROM \
                 (SELECT events.occurred AS occurred, {micros} - {pivot} AS x FROM events WHERE {cond}) AS t) AS b \
                 GROUP BY b.bucket"
            )
        }
    };
    Ok(sql)
}

/// `COALESCE(resource->>'prefect.resource.name', resource->>'prefect.name', resource_id)`.
fn resource_label(dialect: Dialect, sql: &mut Sql) -> String {
    let label = |sql: &mut Sql, name: &str| match dialect {
        Dialect::Postgres => {
            let p = sql.placeholder(Bind::Text(name.to_owned()));
            format!("((events.resource)::jsonb ->> {p})")
        }
        Dialect::Sqlite => {
            let p = sql.placeholder(Bind::Text(format!("$.\"{name}\"")));
            format!("json_extract(events.resource, {p})")
        }
    };
    let a = label(sql, "prefect.resource.name");
    let b = label(sql, "prefect.name");
    format!("COALESCE({a}, {b}, events.resource_id)")
}

/// `events.occurred` (stored text) as BIGINT microseconds since the epoch.
fn epoch_micros(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => "CAST(ROUND(EXTRACT(EPOCH FROM CAST(events.occurred AS TIMESTAMPTZ)) * 1000000) AS BIGINT)",
        Dialect::Sqlite => {
            "(CAST(strftime('%s', substr(events.occurred, 1, 19)) AS INTEGER) * 1000000 + CAST(substr(events.occurred, 21, 6) AS INTEGER))"
        }
    }
}

fn ts_of(s: &str) -> DateTime<Utc> {
    parse_stored(s).unwrap_or_default()
}

/// Builds Prefect's `EventCount` list from the rows of [`count_sql`]
/// (pure; `now` must be the one `count_sql` was given).
pub fn event_counts(
    countable: Countable,
    body: &CountByBody,
    now: DateTime<Utc>,
    rows: Vec<CountRow>,
) -> Result<Vec<EventCount>, EventFilterError> {
    if countable.is_time() {
        time_counts(body, now, &rows)
    } else {
        Ok(value_counts(rows))
    }
}

/// `event` / `resource`: re-label each value with its latest label, sum,
/// order by count descending then label.
fn value_counts(rows: Vec<CountRow>) -> Vec<EventCount> {
    struct Acc {
        value: String,
        label: String,
        label_latest: String,
        count: i64,
        start: String,
        end: String,
    }
    let mut accs: Vec<Acc> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for r in rows {
        match index.get(&r.value) {
            Some(&i) => {
                let a = &mut accs[i];
                a.count += r.count;
                if (r.end_time.as_str(), r.label.as_str()) > (a.label_latest.as_str(), a.label.as_str()) {
                    a.label = r.label.clone();
                    a.label_latest = r.end_time.clone();
                }
                if r.start_time < a.start {
                    a.start = r.start_time;
                }
                if r.end_time > a.end {
                    a.end = r.end_time;
                }
            }
            None => {
                index.insert(r.value.clone(), accs.len());
                accs.push(Acc {
                    value: r.value,
                    label: r.label,
                    label_latest: r.end_time.clone(),
                    count: r.count,
                    start: r.start_time,
                    end: r.end_time,
                });
            }
        }
    }
    accs.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.label.cmp(&b.label)).then_with(|| a.value.cmp(&b.value)));
    accs.into_iter()
        .map(|a| EventCount { value: a.value, label: a.label, count: a.count, start_time: ts_of(&a.start), end_time: ts_of(&a.end) })
        .collect()
}

/// `day` / `time`: Prefect's `get_interval_spans` + `process_time_based_counts`.
fn time_counts(body: &CountByBody, now: DateTime<Utc>, rows: &[CountRow]) -> Result<Vec<EventCount>, EventFilterError> {
    let (since, until) = body.filter.occurred.bounds(now);
    let (start, end) = (since.datetime(), until.datetime());
    let unit = body.time_unit;
    unit.validate_buckets(start, end, body.time_interval)?;
    let delta = unit.delta_micros(body.time_interval).max(1);
    let end = if end > now { unit.end_of_period(now) } else { end };
    let first_span = floor_div(start.timestamp_micros() - PIVOT_MICROS, delta);
    let mut out = Vec::new();
    let mut span_start = PIVOT_MICROS + delta * first_span;
    let end_micros = end.timestamp_micros();
    while span_start < end_micros {
        let s = DateTime::from_timestamp_micros(span_start).unwrap_or_default();
        let e = DateTime::from_timestamp_micros(span_start + delta - 1).unwrap_or_default();
        out.push(EventCount { value: out.len().to_string(), label: python_isoformat(s), count: 0, start_time: s, end_time: e });
        span_start += delta;
    }
    let len = out.len() as i64;
    for r in rows {
        let Ok(bucket) = r.value.trim().parse::<f64>() else { continue };
        // Python list indexing: negative indexes count from the end; an index
        // out of range is an IndexError (a 500) in Prefect, skipped here.
        let mut i = bucket as i64 - first_span;
        if i < 0 {
            i += len;
        }
        if (0..len).contains(&i) {
            out[i as usize].count = r.count;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dt(s: &str) -> DateTime<Utc> {
        parse_stored(s).unwrap()
    }

    fn body(v: Value) -> CountByBody {
        CountByBody::from_json(v.to_string().as_bytes()).unwrap()
    }

    fn row(value: &str, label: &str, count: i64, start: &str, end: &str) -> CountRow {
        CountRow { value: value.into(), label: label.into(), count, start_time: start.into(), end_time: end.into() }
    }

    fn js(counts: &[EventCount]) -> Value {
        serde_json::to_value(counts).unwrap()
    }

    const NOW: &str = "2024-05-03T10:30:15.123456Z";

    #[test]
    fn day_buckets_match_prefect() {
        // Same inputs as Prefect's process_time_based_counts run with now = NOW.
        let b = body(json!({"filter": {"occurred": {"since": "2024-05-01T05:00:00Z", "until": "2024-05-04T00:00:00Z"}}}));
        let rows = vec![row("31", "31", 5, "2024-05-02T01:00:00.000000Z", "2024-05-02T02:00:00.000000Z")];
        let got = event_counts(Countable::Time, &b, dt(NOW), rows).unwrap();
        assert_eq!(
            js(&got),
            json!([
                {"value": "0", "label": "2024-05-01T00:00:00+00:00", "count": 0, "start_time": "2024-05-01T00:00:00Z", "end_time": "2024-05-01T23:59:59.999999Z"},
                {"value": "1", "label": "2024-05-02T00:00:00+00:00", "count": 5, "start_time": "2024-05-02T00:00:00Z", "end_time": "2024-05-02T23:59:59.999999Z"},
                {"value": "2", "label": "2024-05-03T00:00:00+00:00", "count": 0, "start_time": "2024-05-03T00:00:00Z", "end_time": "2024-05-03T23:59:59.999999Z"},
            ])
        );
    }

    #[test]
    fn fractional_hours_and_weeks_match_prefect() {
        let b = body(
            json!({"filter": {"occurred": {"since": "2024-05-01T05:00:00Z", "until": "2024-05-04T00:00:00Z"}}, "time_unit": "hour", "time_interval": 7.5}),
        );
        let got = event_counts(Countable::Time, &b, dt(NOW), vec![]).unwrap();
        assert_eq!(got.len(), 8);
        assert_eq!(
            js(&got[..1]),
            json!([{"value": "0", "label": "2024-05-01T00:00:00+00:00", "count": 0, "start_time": "2024-05-01T00:00:00Z", "end_time": "2024-05-01T07:29:59.999999Z"}])
        );
        assert_eq!(
            js(&got[7..]),
            json!([{"value": "7", "label": "2024-05-03T04:30:00+00:00", "count": 0, "start_time": "2024-05-03T04:30:00Z", "end_time": "2024-05-03T11:59:59.999999Z"}])
        );
        let b = body(
            json!({"filter": {"occurred": {"since": "2024-05-01T05:00:00Z", "until": "2024-05-04T00:00:00Z"}}, "time_unit": "week", "time_interval": 1}),
        );
        let got = event_counts(Countable::Time, &b, dt(NOW), vec![]).unwrap();
        assert_eq!(
            js(&got),
            json!([{"value": "0", "label": "2024-04-29T00:00:00+00:00", "count": 0, "start_time": "2024-04-29T00:00:00Z", "end_time": "2024-05-05T23:59:59.999999Z"}])
        );
    }

    #[test]
    fn past_ranges_are_not_clamped_and_sub_second_buckets_work() {
        let b = body(
            json!({"filter": {"occurred": {"since": "2024-04-01T00:00:01Z", "until": "2024-04-01T00:00:02.2Z"}}, "time_unit": "second", "time_interval": 0.5}),
        );
        let rows = vec![row("3", "3", 2, "2024-04-01T00:00:01.600000Z", "2024-04-01T00:00:01.700000Z")];
        let got = event_counts(Countable::Time, &b, dt(NOW), rows).unwrap();
        let labels: Vec<&str> = got.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["2024-04-01T00:00:01+00:00", "2024-04-01T00:00:01.500000+00:00", "2024-04-01T00:00:02+00:00"]);
        assert_eq!(got.iter().map(|c| c.count).collect::<Vec<_>>(), [0, 2, 0]);
        assert_eq!(pydantic_ts(got[1].end_time), "2024-04-01T00:00:01.999999Z");
    }

    #[test]
    fn before_the_pivot_buckets_floor() {
        let b = body(json!({"filter": {"occurred": {"since": "2024-03-30T12:00:00Z", "until": "2024-04-01T12:00:00Z"}}}));
        let rows = vec![row("-2", "-2", 1, "2024-03-30T13:00:00.000000Z", "2024-03-30T13:00:00.000000Z")];
        let got = event_counts(Countable::Day, &b, dt(NOW), rows).unwrap();
        let labels: Vec<&str> = got.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["2024-03-30T00:00:00+00:00", "2024-03-31T00:00:00+00:00", "2024-04-01T00:00:00+00:00"]);
        assert_eq!(got.iter().map(|c| c.count).collect::<Vec<_>>(), [1, 0, 0]);
    }

    #[test]
    fn too_many_buckets_is_an_error() {
        let b = body(
            json!({"filter": {"occurred": {"since": "2024-05-01T00:00:00Z", "until": "2024-05-02T00:00:00Z"}}, "time_unit": "minute"}),
        );
        let err = count_sql(Countable::Event, &b, Dialect::Sqlite, "w", dt(NOW)).unwrap_err();
        assert_eq!(
            err,
            EventFilterError::InvalidCountParameters(
                "The given interval would create 1440 buckets, which is too many. Please increase the interval or reduce the time range to produce 1000 buckets or fewer.".into()
            )
        );
        assert_eq!(err.detail(), json!("The given interval would create 1440 buckets, which is too many. Please increase the interval or reduce the time range to produce 1000 buckets or fewer."));
        // 1000 exactly is fine.
        let b = body(
            json!({"filter": {"occurred": {"since": "2024-05-01T00:00:00Z", "until": "2024-05-01T16:40:00Z"}}, "time_unit": "minute"}),
        );
        assert!(count_sql(Countable::Time, &b, Dialect::Sqlite, "w", dt(NOW)).is_ok());
        // The default window (180 days) in days is fine; in hours it is not.
        let b = body(json!({"filter": {}}));
        assert!(count_sql(Countable::Day, &b, Dialect::Sqlite, "w", dt(NOW)).is_ok());
        let b = body(json!({"filter": {}, "time_unit": "hour"}));
        assert!(matches!(count_sql(Countable::Time, &b, Dialect::Sqlite, "w", dt(NOW)), Err(EventFilterError::InvalidCountParameters(_))));
    }

    #[test]
    fn future_until_clamps_to_the_end_of_the_current_unit() {
        let b = body(
            json!({"filter": {"occurred": {"since": "2024-05-03T00:00:00Z", "until": "2024-05-05T00:00:00Z"}}, "time_unit": "hour", "time_interval": 4}),
        );
        let got = event_counts(Countable::Time, &b, dt(NOW), vec![]).unwrap();
        // Through the end of 10:xx (the current hour): buckets 00, 04, 08.
        assert_eq!(got.len(), 3);
        assert_eq!(got[2].label, "2024-05-03T08:00:00+00:00");
        assert_eq!(TimeUnit::Week.end_of_period(dt(NOW)), dt("2024-05-05T23:59:59.999999Z"));
        assert_eq!(TimeUnit::Second.end_of_period(dt(NOW)), dt("2024-05-03T10:30:15.999999Z"));
        assert_eq!(TimeUnit::Minute.end_of_period(dt(NOW)), dt("2024-05-03T10:30:59.999999Z"));
    }

    #[test]
    fn value_counts_relabel_sum_and_order() {
        let rows = vec![
            row("r1", "old name", 2, "2024-05-01T00:00:00.000000Z", "2024-05-01T01:00:00.000000Z"),
            row("r2", "b", 3, "2024-05-01T00:00:00.000000Z", "2024-05-01T00:00:00.000000Z"),
            row("r1", "new name", 1, "2024-05-02T00:00:00.500000Z", "2024-05-02T00:00:00.500000Z"),
            row("r3", "a", 3, "2024-05-01T00:00:00.000000Z", "2024-05-01T00:00:00.000000Z"),
            row("r4", "c", 1, "2024-05-01T00:00:00.000000Z", "2024-05-01T00:00:00.000000Z"),
        ];
        let b = CountByBody::new(EventFilter::default());
        let got = event_counts(Countable::Resource, &b, dt(NOW), rows).unwrap();
        assert_eq!(
            js(&got),
            json!([
                {"value": "r3", "label": "a", "count": 3, "start_time": "2024-05-01T00:00:00Z", "end_time": "2024-05-01T00:00:00Z"},
                {"value": "r2", "label": "b", "count": 3, "start_time": "2024-05-01T00:00:00Z", "end_time": "2024-05-01T00:00:00Z"},
                {"value": "r1", "label": "new name", "count": 3, "start_time": "2024-05-01T00:00:00Z", "end_time": "2024-05-02T00:00:00.500000Z"},
                {"value": "r4", "label": "c", "count": 1, "start_time": "2024-05-01T00:00:00Z", "end_time": "2024-05-01T00:00:00Z"},
            ])
        );
    }

    #[test]
    fn parses_bodies_like_fastapi() {
        let loc = |e: EventFilterError| match e {
            EventFilterError::Invalid { loc, msg } => (loc.join("."), msg),
            other => panic!("{other:?}"),
        };
        assert_eq!(loc(CountByBody::from_json(b"").unwrap_err()).0, "body.filter");
        assert_eq!(
            loc(CountByBody::from_json(br#"{"filter": {}, "time_interval": 0.001}"#).unwrap_err()),
            ("body.time_interval".into(), "Input should be greater than or equal to 0.01".into())
        );
        assert_eq!(loc(CountByBody::from_json(br#"{"filter": {}, "time_unit": "month"}"#).unwrap_err()).0, "body.time_unit");
        assert_eq!(loc(CountByBody::from_json(br#"{"filter": {"bogus": 1}}"#).unwrap_err()).0, "body.filter");
        let b = CountByBody::from_json(br#"{"filter": {}, "time_unit": "minute", "time_interval": "2.5", "extra": 1}"#).unwrap();
        assert_eq!((b.time_unit, b.time_interval), (TimeUnit::Minute, 2.5));
        assert_eq!(Countable::parse("resource").unwrap(), Countable::Resource);
        assert!(Countable::parse("flows").is_err());
    }
}
