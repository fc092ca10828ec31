//! Run history (`POST /flow_runs/history`, `/task_runs/history`), flow-run
//! lateness (`/flow_runs/lateness`) and the task-run dashboard buckets
//! (`/ui/task_runs/dashboard/counts`), as Prefect 3.8.8 computes them
//! (prefect/server/api/run_history.py, api/flow_runs.py, api/ui/task_runs.py).
//!
//! The windows and buckets are pure ([`HistoryWindow`], [`DashboardWindow`],
//! [`history_json`], [`dashboard_json`]); the SQL only groups the filtered
//! runs by bucket index, computed in integer microseconds on both backends
//! (Prefect does the same with `make_timestamp_bucket_index`).

use chrono::{DateTime, Duration, Timelike, Utc};
use serde_json::{json, Value};

use super::filters::{self, format_ts, FilterError, RunFilterBody};
use crate::db::sql::{Bind, Dialect, Sql};
use crate::db::timestamp::pydantic_ts;

/// Prefect caps a history at 500 intervals.
pub const MAX_INTERVALS: i64 = 500;
/// `/ui/task_runs/dashboard/counts` always answers 20 buckets.
pub const DASHBOARD_BUCKETS: usize = 20;
/// Prefect's `TERMINAL_STATES`.
const TERMINAL: &str = "('COMPLETED', 'CANCELLED', 'FAILED', 'CRASHED')";
/// What the dashboard counts as failed.
const FAILED: &str = "('CRASHED', 'FAILED')";

/// Whose history: the table the runs live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Flow,
    Task,
}

impl RunKind {
    pub fn table(self) -> &'static str {
        match self {
            RunKind::Flow => "flow_run",
            RunKind::Task => "task_run",
        }
    }
}

/// The intervals of a history: `count` intervals of `interval_us`
/// microseconds from `start`, the last one possibly ending after the
/// requested end (Prefect rounds the count up, then caps it at 500).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryWindow {
    pub start: DateTime<Utc>,
    pub interval_us: i64,
    pub count: i64,
}

impl HistoryWindow {
    /// `None` when the range is empty (`end <= start`): Prefect answers `[]`.
    /// `interval_us` must be positive (the route rejects intervals under 1 s).
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>, interval_us: i64) -> Option<HistoryWindow> {
        assert!(interval_us > 0, "history interval must be positive");
        let elapsed = i128::from((end - start).num_microseconds().unwrap_or(i64::MAX));
        if elapsed <= 0 {
            return None;
        }
        let interval = i128::from(interval_us);
        let count = ((elapsed + interval - 1) / interval).min(i128::from(MAX_INTERVALS)) as i64;
        Some(HistoryWindow { start, interval_us, count })
    }

    /// The start of interval `i` (`i == count` is the end of the last one);
    /// `None` past the calendar's range.
    pub fn bound(&self, i: i64) -> Option<DateTime<Utc>> {
        let offset = i128::from(i) * i128::from(self.interval_us);
        let offset = i64::try_from(offset).ok()?;
        self.start.checked_add_signed(Duration::microseconds(offset))
    }

    /// Where the runs counted stop (exclusive).
    pub fn query_end(&self) -> Option<DateTime<Utc>> {
        self.bound(self.count)
    }
}

/// One (interval, state) group of runs, as the query returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct StateBucket {
    pub bucket: i64,
    pub state_type: String,
    pub state_name: String,
    pub count_runs: i64,
    pub sum_estimated_run_time: f64,
    pub sum_estimated_lateness: f64,
}

/// Prefect's `list[HistoryResponse]`: every interval, empty ones included,
/// each with its states ordered by (type, name). Groups outside the window
/// are dropped.
pub fn history_json(w: &HistoryWindow, mut rows: Vec<StateBucket>) -> Vec<Value> {
    rows.sort_by(|a, b| (a.bucket, &a.state_type, &a.state_name).cmp(&(b.bucket, &b.state_type, &b.state_name)));
    let mut rows = rows.into_iter().peekable();
    let mut out = Vec::with_capacity(w.count as usize);
    for i in 0..w.count {
        let (Some(from), Some(to)) = (w.bound(i), w.bound(i + 1)) else { break };
        while rows.next_if(|r| r.bucket < i).is_some() {}
        let mut states = Vec::new();
        while let Some(r) = rows.next_if(|r| r.bucket == i) {
            states.push(json!({
                "state_type": r.state_type,
                "state_name": r.state_name,
                "count_runs": r.count_runs,
                "sum_estimated_run_time": r.sum_estimated_run_time,
                "sum_estimated_lateness": r.sum_estimated_lateness,
            }));
        }
        out.push(json!({"interval_start": pydantic_ts(from), "interval_end": pydantic_ts(to), "states": states}));
    }
    out
}

/// SQL for a run's `estimated_run_time` in seconds (a float): the stored
/// total plus, while RUNNING, the time since it entered that state.
fn estimated_run_time_sql(dialect: Dialect, t: &str, now_us: &str) -> String {
    format!(
        "CASE WHEN {t}.state_type = 'RUNNING' AND {t}.state_timestamp IS NOT NULL \
         THEN {t}.total_run_time + ({now_us} - {}) / 1000000.0 ELSE {t}.total_run_time END",
        dialect.epoch_micros(&format!("{t}.state_timestamp"))
    )
}

/// SQL for a run's `estimated_start_time_delta` in seconds (a float): how
/// late it started, or, not started and not finished, how late it is now.
fn start_time_delta_sql(dialect: Dialect, t: &str, now_text: &str, now_us: &str) -> String {
    let expected = dialect.epoch_micros(&format!("{t}.expected_start_time"));
    format!(
        "CASE WHEN {t}.start_time > {t}.expected_start_time THEN ({} - {expected}) / 1000000.0 \
         WHEN {t}.start_time IS NULL AND {t}.state_type NOT IN {TERMINAL} AND {t}.expected_start_time < {now_text} \
         THEN ({now_us} - {expected}) / 1000000.0 ELSE 0 END",
        dialect.epoch_micros(&format!("{t}.start_time"))
    )
}

/// The runs a history counts: the route's filters (Prefect's
/// `_apply_flow_run_filters` / `_apply_task_run_filters`).
fn runs_where(kind: RunKind, body: &RunFilterBody, dialect: Dialect, sql: &mut Sql, workspace_id: &str) -> Result<String, FilterError> {
    match kind {
        RunKind::Flow => filters::flow_runs_where(body, dialect, sql, workspace_id),
        RunKind::Task => filters::task_runs_where(body, dialect, sql, workspace_id, true),
    }
}

/// `SELECT bucket, state_type, state_name, count_runs, sum_estimated_run_time,
/// sum_estimated_lateness` for the runs expected to start inside the window.
pub fn history_sql(
    kind: RunKind,
    body: &RunFilterBody,
    dialect: Dialect,
    workspace_id: &str,
    w: &HistoryWindow,
    now: DateTime<Utc>,
) -> Result<Sql, FilterError> {
    let t = kind.table();
    let mut sql = Sql::default();
    let cond = runs_where(kind, body, dialect, &mut sql, workspace_id)?;
    let end = w.query_end().unwrap_or(DateTime::<Utc>::MAX_UTC);
    let from = sql.placeholder(Bind::Text(format_ts(w.start)));
    let to = sql.placeholder(Bind::Text(format_ts(end)));
    let start_us = sql.placeholder(Bind::Int(w.start.timestamp_micros()));
    let interval = sql.placeholder(Bind::Int(w.interval_us));
    let now_us = sql.placeholder(Bind::Int(now.timestamp_micros()));
    let now_text = sql.placeholder(Bind::Text(format_ts(now)));
    let run_time = dialect.greatest("0", &estimated_run_time_sql(dialect, t, &now_us));
    let lateness = dialect.greatest("0", &start_time_delta_sql(dialect, t, &now_text, &now_us));
    sql.text = format!(
        "SELECT bucket, state_type, state_name, COUNT(*) AS count_runs, \
         CAST(SUM(run_time) AS DOUBLE PRECISION) AS sum_estimated_run_time, \
         CAST(SUM(lateness) AS DOUBLE PRECISION) AS sum_estimated_lateness \
         FROM (SELECT ({} - {start_us}) / {interval} AS bucket, {t}.state_type AS state_type, {t}.state_name AS state_name, \
         {run_time} AS run_time, {lateness} AS lateness FROM {t} \
         WHERE ({cond}) AND {t}.expected_start_time >= {from} AND {t}.expected_start_time < {to} AND {t}.state_type IS NOT NULL) runs \
         GROUP BY bucket, state_type, state_name ORDER BY bucket, state_type, state_name",
        dialect.epoch_micros(&format!("{t}.expected_start_time")),
    );
    Ok(sql)
}

/// `POST /flow_runs/lateness`: one row, the average `estimated_start_time_delta`
/// in seconds of the filtered runs (NULL when there are none).
pub fn lateness_sql(body: &RunFilterBody, dialect: Dialect, workspace_id: &str, now: DateTime<Utc>) -> Result<Sql, FilterError> {
    let mut sql = Sql::default();
    let cond = filters::flow_runs_where(body, dialect, &mut sql, workspace_id)?;
    let now_us = sql.placeholder(Bind::Int(now.timestamp_micros()));
    let now_text = sql.placeholder(Bind::Text(format_ts(now)));
    let delta = start_time_delta_sql(dialect, "flow_run", &now_text, &now_us);
    sql.text = format!("SELECT CAST(AVG(CAST({delta} AS DOUBLE PRECISION)) AS DOUBLE PRECISION) FROM flow_run WHERE {cond}");
    Ok(sql)
}

/// The window of `/ui/task_runs/dashboard/counts`: from `start_time.after_`
/// down to its minute, to the end of the minute of `start_time.before_` (or
/// of now), cut into 20 equal buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DashboardWindow {
    pub start: DateTime<Utc>,
    pub delta_us: i64,
}

impl DashboardWindow {
    pub fn new(after: DateTime<Utc>, before: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DashboardWindow {
        let minute = |t: DateTime<Utc>| t.with_nanosecond(0).and_then(|t| t.with_second(0)).unwrap_or(t);
        let start = minute(after);
        let end = minute(before.unwrap_or(now)) + Duration::microseconds(59_999_999);
        let window = (end - start).num_microseconds().unwrap_or(i64::MAX);
        DashboardWindow { start, delta_us: div_round_half_even(window, DASHBOARD_BUCKETS as i64) }
    }
}

/// `timedelta / int`: rounded to the microsecond, ties to even.
fn div_round_half_even(n: i64, d: i64) -> i64 {
    let (q, r) = (n.div_euclid(d), n.rem_euclid(d));
    match (2 * r).cmp(&d) {
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal if q % 2 != 0 => q + 1,
        _ => q,
    }
}

/// `SELECT bucket, completed, failed` over the filtered task runs that
/// started (their state filter already replaced by the terminal types).
pub fn dashboard_sql(body: &RunFilterBody, dialect: Dialect, workspace_id: &str, w: &DashboardWindow) -> Result<Sql, FilterError> {
    let mut sql = Sql::default();
    let cond = filters::task_runs_where_with_pools(body, dialect, &mut sql, workspace_id)?;
    let start_us = sql.placeholder(Bind::Int(w.start.timestamp_micros()));
    let delta = sql.placeholder(Bind::Int(w.delta_us.max(1)));
    sql.text = format!(
        "SELECT bucket, COUNT(CASE WHEN state_type NOT IN {FAILED} THEN 1 END) AS completed, \
         COUNT(CASE WHEN state_type IN {FAILED} THEN 1 END) AS failed \
         FROM (SELECT ({} - {start_us}) / {delta} AS bucket, task_run.state_type AS state_type FROM task_run \
         WHERE ({cond}) AND task_run.start_time IS NOT NULL) runs GROUP BY bucket ORDER BY bucket",
        dialect.epoch_micros("task_run.start_time"),
    );
    Ok(sql)
}

/// Prefect's `list[TaskRunCount]`: 20 buckets, zero where nothing finished;
/// rows are `(bucket, completed, failed)`. Buckets outside the 20 (runs that
/// started after the window's end) are dropped, where Prefect fails with 500.
pub fn dashboard_json(rows: &[(i64, i64, i64)]) -> Vec<Value> {
    let mut buckets = [(0i64, 0i64); DASHBOARD_BUCKETS];
    for &(bucket, completed, failed) in rows {
        if let Some(b) = usize::try_from(bucket).ok().and_then(|i| buckets.get_mut(i)) {
            *b = (completed, failed);
        }
    }
    buckets.iter().map(|(c, f)| json!({"completed": c, "failed": f})).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn row(bucket: i64, state_type: &str, count_runs: i64) -> StateBucket {
        StateBucket {
            bucket,
            state_type: state_type.into(),
            state_name: state_type.to_lowercase(),
            count_runs,
            sum_estimated_run_time: 1.5,
            sum_estimated_lateness: 0.0,
        }
    }

    #[test]
    fn an_empty_or_reversed_range_has_no_intervals() {
        let s = t("2024-01-01T00:00:00Z");
        assert_eq!(HistoryWindow::new(s, s, 60_000_000), None);
        assert_eq!(HistoryWindow::new(s, s - Duration::seconds(1), 60_000_000), None);
    }

    #[test]
    fn the_interval_count_rounds_up_and_stops_at_500() {
        let s = t("2024-01-01T00:00:00Z");
        assert_eq!(HistoryWindow::new(s, s + Duration::minutes(30), 600_000_000).unwrap().count, 3);
        assert_eq!(HistoryWindow::new(s, s + Duration::microseconds(1_800_000_001), 600_000_000).unwrap().count, 4);
        assert_eq!(HistoryWindow::new(s, s + Duration::days(365), 60_000_000).unwrap().count, 500);
        // One interval longer than the whole range still makes one interval.
        assert_eq!(HistoryWindow::new(s, s + Duration::seconds(5), 3_600_000_000).unwrap().count, 1);
    }

    #[test]
    fn the_last_interval_may_end_after_the_requested_end() {
        let s = t("2024-01-01T00:00:00Z");
        let w = HistoryWindow::new(s, s + Duration::seconds(1201), 600_500_000).unwrap();
        assert_eq!(w.count, 2);
        assert_eq!(w.query_end(), Some(t("2024-01-01T00:20:01Z")));
    }

    #[test]
    fn every_interval_is_listed_with_its_own_states() {
        let s = t("2024-01-01T00:00:00Z");
        let w = HistoryWindow::new(s, s + Duration::seconds(1201), 600_500_000).unwrap();
        let out = history_json(&w, vec![row(1, "RUNNING", 1), row(1, "COMPLETED", 2), row(7, "FAILED", 1)]);
        assert_eq!(
            Value::Array(out),
            json!([
                {"interval_start": "2024-01-01T00:00:00Z", "interval_end": "2024-01-01T00:10:00.500000Z", "states": []},
                {"interval_start": "2024-01-01T00:10:00.500000Z", "interval_end": "2024-01-01T00:20:01Z", "states": [
                    {"state_type": "COMPLETED", "state_name": "completed", "count_runs": 2, "sum_estimated_run_time": 1.5, "sum_estimated_lateness": 0.0},
                    {"state_type": "RUNNING", "state_name": "running", "count_runs": 1, "sum_estimated_run_time": 1.5, "sum_estimated_lateness": 0.0},
                ]},
            ])
        );
    }

    #[test]
    fn dashboard_window_runs_from_the_minute_of_after_to_the_end_of_the_minute_of_before() {
        let w = DashboardWindow::new(t("2024-01-01T00:00:30.5Z"), Some(t("2024-01-01T00:19:10Z")), t("2030-01-01T00:00:00Z"));
        assert_eq!(w.start, t("2024-01-01T00:00:00Z"));
        // 19 min 59.999999 s in 20 buckets: 59.99999995 s, rounded half to even.
        assert_eq!(w.delta_us, 60_000_000);
        let w = DashboardWindow::new(t("2024-01-01T00:00:00Z"), None, t("2024-01-01T00:00:10Z"));
        assert_eq!(w.delta_us, 3_000_000);
    }

    #[test]
    fn timedelta_division_rounds_half_to_even() {
        assert_eq!(div_round_half_even(50, 20), 2);
        assert_eq!(div_round_half_even(70, 20), 4);
        assert_eq!(div_round_half_even(71, 20), 4);
        assert_eq!(div_round_half_even(69, 20), 3);
    }

    #[test]
    fn dashboard_always_has_twenty_buckets() {
        let out = dashboard_json(&[(0, 3, 1), (19, 0, 2), (20, 9, 9), (-1, 9, 9)]);
        assert_eq!(out.len(), 20);
        assert_eq!(out[0], json!({"completed": 3, "failed": 1}));
        assert_eq!(out[1], json!({"completed": 0, "failed": 0}));
        assert_eq!(out[19], json!({"completed": 0, "failed": 2}));
    }
}
