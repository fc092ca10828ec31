//! Task-run rows, Prefect's `TaskRun` JSON, and the orchestration snapshot.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use uuid::Uuid;

use super::flow_runs::{estimated_run_time, estimated_start_time_delta};
use super::states::{state_columns, state_from_row, state_json};
use super::{float_col, int_col, json_col, object, opt_text, text_col};
use crate::db::Dialect;
use crate::eventlog::DEFAULT_WORKSPACE;
use crate::orchestration::task_policy::TaskRunSnapshot;
use crate::time::parse_ts;

pub fn task_run_columns() -> String {
    format!(
        "task_run.id, task_run.created, task_run.updated, task_run.name, task_run.flow_run_id, task_run.task_key, \
         task_run.dynamic_key, task_run.cache_key, task_run.cache_expiration, task_run.task_version, \
         task_run.flow_run_run_count, task_run.empirical_policy, task_run.task_inputs, task_run.tags, task_run.labels, \
         task_run.state_id, task_run.state_type, task_run.state_name, task_run.state_timestamp, task_run.run_count, \
         task_run.expected_start_time, task_run.next_scheduled_start_time, task_run.start_time, task_run.end_time, \
         task_run.total_run_time, task_run.version, {}",
        state_columns("trs", "s_")
    )
}

pub const TASK_RUN_FROM: &str = "task_run LEFT JOIN task_run_state trs ON trs.id = task_run.state_id";

fn ts(row: &AnyRow, col: &str) -> Option<DateTime<Utc>> {
    opt_text(row, col).and_then(|s| parse_ts(&s))
}

fn seconds(v: f64) -> Value {
    serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::from(0))
}

pub fn task_run_json(row: &AnyRow, now: DateTime<Utc>) -> Value {
    let state_type = opt_text(row, "state_type");
    let total = float_col(row, "total_run_time");
    let start = ts(row, "start_time");
    object(vec![
        ("id", text_col(row, "id")),
        ("created", text_col(row, "created")),
        ("updated", text_col(row, "updated")),
        ("name", text_col(row, "name")),
        ("flow_run_id", text_col(row, "flow_run_id")),
        ("task_key", text_col(row, "task_key")),
        ("dynamic_key", text_col(row, "dynamic_key")),
        ("cache_key", text_col(row, "cache_key")),
        ("cache_expiration", text_col(row, "cache_expiration")),
        ("task_version", text_col(row, "task_version")),
        ("empirical_policy", json_col(row, "empirical_policy")),
        ("tags", json_col(row, "tags")),
        ("labels", json_col(row, "labels")),
        ("state_id", text_col(row, "state_id")),
        ("task_inputs", json_col(row, "task_inputs")),
        ("state_type", text_col(row, "state_type")),
        ("state_name", text_col(row, "state_name")),
        ("run_count", Value::from(int_col(row, "run_count"))),
        ("flow_run_run_count", Value::from(int_col(row, "flow_run_run_count"))),
        ("expected_start_time", text_col(row, "expected_start_time")),
        ("next_scheduled_start_time", text_col(row, "next_scheduled_start_time")),
        ("start_time", text_col(row, "start_time")),
        ("end_time", text_col(row, "end_time")),
        ("total_run_time", seconds(total)),
        (
            "estimated_run_time",
            seconds(estimated_run_time(state_type.as_deref(), start, ts(row, "s_timestamp"), total, now)),
        ),
        (
            "estimated_start_time_delta",
            seconds(estimated_start_time_delta(state_type.as_deref(), start, ts(row, "expected_start_time"), now)),
        ),
        ("state", state_json(row, "s_")),
    ])
}

pub async fn read_task_run_row(conn: &mut AnyConnection, dialect: Dialect, id: &str) -> Result<Option<AnyRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {} FROM {TASK_RUN_FROM} WHERE task_run.id = $1 AND task_run.workspace_id = $2",
        task_run_columns()
    );
    sqlx::query(&dialect.rewrite(&sql))
        .bind(id)
        .bind(DEFAULT_WORKSPACE.to_string())
        .fetch_optional(&mut *conn)
        .await
}

pub async fn read_task_run(conn: &mut AnyConnection, dialect: Dialect, id: &str, now: DateTime<Utc>) -> Result<Option<Value>, sqlx::Error> {
    Ok(read_task_run_row(conn, dialect, id).await?.map(|r| task_run_json(&r, now)))
}

pub fn snapshot_from_row(row: &AnyRow) -> TaskRunSnapshot {
    let uuid = |c: &str| opt_text(row, c).and_then(|s| Uuid::parse_str(&s).ok());
    TaskRunSnapshot {
        id: uuid("id").unwrap_or_default(),
        flow_run_id: uuid("flow_run_id"),
        state: state_from_row(row, "s_"),
        empirical_policy: serde_json::from_value(json_col(row, "empirical_policy")).unwrap_or_default(),
        run_count: int_col(row, "run_count"),
        flow_run_run_count: int_col(row, "flow_run_run_count"),
        start_time: ts(row, "start_time"),
        end_time: ts(row, "end_time"),
        total_run_time: float_col(row, "total_run_time"),
        expected_start_time: ts(row, "expected_start_time"),
        next_scheduled_start_time: ts(row, "next_scheduled_start_time"),
    }
}
