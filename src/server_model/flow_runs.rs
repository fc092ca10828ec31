//! Flow-run rows, Prefect's `FlowRunResponse` JSON, and the snapshot the
//! orchestration rules decide on.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use uuid::Uuid;

use super::states::{state_columns, state_from_row, state_json};
use super::{float_col, int_col, json_col, object, opt_text, text_col};
use crate::db::Dialect;
use crate::eventlog::DEFAULT_WORKSPACE;
use crate::orchestration::flow_policy::FlowRunSnapshot;
use crate::time::parse_ts;

/// The run's columns plus its current state's (prefixed `s_`).
pub fn flow_run_columns() -> String {
    format!(
        "flow_run.id, flow_run.created, flow_run.updated, flow_run.name, flow_run.flow_id, flow_run.state_id, \
         flow_run.deployment_id, flow_run.deployment_version, flow_run.work_queue_id, flow_run.work_queue_name, \
         flow_run.work_pool_id, flow_run.work_pool_name, flow_run.flow_version, flow_run.parameters, \
         flow_run.idempotency_key, flow_run.context, flow_run.empirical_policy, flow_run.tags, flow_run.labels, \
         flow_run.parent_task_run_id, flow_run.state_type, flow_run.state_name, flow_run.run_count, \
         flow_run.expected_start_time, flow_run.next_scheduled_start_time, flow_run.start_time, flow_run.end_time, \
         flow_run.total_run_time, flow_run.auto_scheduled, flow_run.infrastructure_document_id, \
         flow_run.infrastructure_pid, flow_run.created_by, flow_run.job_variables, flow_run.version, {}",
        state_columns("frs", "s_")
    )
}

/// `FROM` clause joining the current state.
pub const FLOW_RUN_FROM: &str = "flow_run LEFT JOIN flow_run_state frs ON frs.id = flow_run.state_id";

fn ts(row: &AnyRow, col: &str) -> Option<DateTime<Utc>> {
    opt_text(row, col).and_then(|s| parse_ts(&s))
}

/// Seconds as Prefect serialises a `timedelta`.
fn seconds(v: f64) -> Value {
    serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::from(0))
}

/// `estimated_run_time`: the stored total plus the current running stretch.
pub fn estimated_run_time(state_type: Option<&str>, start_time: Option<DateTime<Utc>>, state_ts: Option<DateTime<Utc>>, total: f64, now: DateTime<Utc>) -> f64 {
    match (state_type, start_time, state_ts) {
        (Some("RUNNING"), Some(_), Some(since)) => total + (now - since).num_microseconds().unwrap_or(0) as f64 / 1e6,
        _ => total,
    }
}

/// `estimated_start_time_delta` as Prefect computes it.
pub fn estimated_start_time_delta(
    state_type: Option<&str>,
    start: Option<DateTime<Utc>>,
    expected: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> f64 {
    let terminal = matches!(state_type, Some("COMPLETED" | "FAILED" | "CANCELLED" | "CRASHED"));
    let delta = match (start, expected) {
        (Some(s), Some(e)) if s > e => s - e,
        (None, Some(e)) if e < now && !terminal => now - e,
        _ => return 0.0,
    };
    delta.num_microseconds().unwrap_or(0) as f64 / 1e6
}

pub fn flow_run_json(row: &AnyRow, now: DateTime<Utc>) -> Value {
    let state_type = opt_text(row, "state_type");
    let total = float_col(row, "total_run_time");
    let start = ts(row, "start_time");
    object(vec![
        ("id", text_col(row, "id")),
        ("created", text_col(row, "created")),
        ("updated", text_col(row, "updated")),
        ("name", text_col(row, "name")),
        ("flow_id", text_col(row, "flow_id")),
        ("state_id", text_col(row, "state_id")),
        ("deployment_id", text_col(row, "deployment_id")),
        ("deployment_version", text_col(row, "deployment_version")),
        ("work_queue_id", text_col(row, "work_queue_id")),
        ("work_queue_name", text_col(row, "work_queue_name")),
        ("flow_version", text_col(row, "flow_version")),
        ("parameters", json_col(row, "parameters")),
        ("idempotency_key", text_col(row, "idempotency_key")),
        ("context", json_col(row, "context")),
        ("empirical_policy", json_col(row, "empirical_policy")),
        ("tags", json_col(row, "tags")),
        ("labels", json_col(row, "labels")),
        ("parent_task_run_id", text_col(row, "parent_task_run_id")),
        ("state_type", text_col(row, "state_type")),
        ("state_name", text_col(row, "state_name")),
        ("run_count", Value::from(int_col(row, "run_count"))),
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
        ("auto_scheduled", Value::Bool(int_col(row, "auto_scheduled") != 0)),
        ("infrastructure_document_id", text_col(row, "infrastructure_document_id")),
        ("infrastructure_pid", text_col(row, "infrastructure_pid")),
        ("created_by", json_col(row, "created_by")),
        ("work_pool_id", text_col(row, "work_pool_id")),
        ("work_pool_name", text_col(row, "work_pool_name")),
        ("state", state_json(row, "s_")),
        ("job_variables", json_col(row, "job_variables")),
    ])
}

/// Reads one run row (with its state).
pub async fn read_flow_run_row(conn: &mut AnyConnection, dialect: Dialect, id: &str) -> Result<Option<AnyRow>, sqlx::Error> {
    read_row(conn, dialect, id, "").await
}

/// [`read_flow_run_row`] plus what its state events relate to (the `rel_`
/// columns of `run_relations::columns`), in the same round trip.
pub async fn read_flow_run_row_with_relations(conn: &mut AnyConnection, dialect: Dialect, id: &str) -> Result<Option<AnyRow>, sqlx::Error> {
    let relations = super::run_relations::columns(&super::run_relations::RelationIds {
        flow: "flow_run.flow_id",
        deployment: "flow_run.deployment_id",
        work_queue: "flow_run.work_queue_id",
        work_pool: "flow_run.work_pool_id",
        task_run: "flow_run.parent_task_run_id",
    });
    read_row(conn, dialect, id, &format!(", {relations}")).await
}

async fn read_row(conn: &mut AnyConnection, dialect: Dialect, id: &str, extra_columns: &str) -> Result<Option<AnyRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {}{extra_columns} FROM {FLOW_RUN_FROM} WHERE flow_run.id = $1 AND flow_run.workspace_id = $2",
        flow_run_columns()
    );
    sqlx::query(&dialect.rewrite(&sql))
        .bind(id)
        .bind(DEFAULT_WORKSPACE.to_string())
        .fetch_optional(&mut *conn)
        .await
}

pub async fn read_flow_run(conn: &mut AnyConnection, dialect: Dialect, id: &str, now: DateTime<Utc>) -> Result<Option<Value>, sqlx::Error> {
    Ok(read_flow_run_row(conn, dialect, id).await?.map(|r| flow_run_json(&r, now)))
}

/// What orchestration needs to know about a run.
pub fn snapshot_from_row(row: &AnyRow) -> FlowRunSnapshot {
    let uuid = |c: &str| opt_text(row, c).and_then(|s| Uuid::parse_str(&s).ok());
    FlowRunSnapshot {
        id: uuid("id").unwrap_or_default(),
        state: state_from_row(row, "s_"),
        empirical_policy: serde_json::from_value(json_col(row, "empirical_policy")).unwrap_or_default(),
        run_count: int_col(row, "run_count"),
        start_time: ts(row, "start_time"),
        end_time: ts(row, "end_time"),
        total_run_time: float_col(row, "total_run_time"),
        expected_start_time: ts(row, "expected_start_time"),
        next_scheduled_start_time: ts(row, "next_scheduled_start_time"),
        deployment_id: uuid("deployment_id"),
        infrastructure_pid: opt_text(row, "infrastructure_pid"),
        parent_task_run_id: uuid("parent_task_run_id"),
    }
}
