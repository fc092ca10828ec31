//! Queries and JSON shapes behind Prefect's `/ui/*` helper routes
//! (prefect/server/api/ui/flows.py, flow_runs.py, task_runs.py).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::filters::{self, FilterError, RunFilterBody};
use super::flow_runs::estimated_start_time_delta;
use super::{float_col, object, opt_text, text_col};
use crate::db::sql::{Bind, Dialect, Sql};
use crate::db::timestamp::stored_to_pydantic;
use crate::time::parse_ts;

/// `workspace_id = $n AND {column} IN (...)` for a non-empty id list
/// (callers answer an empty list without a query).
fn ids_in(sql: &mut Sql, table: &str, column: &str, ids: &[Uuid], workspace_id: &str) -> String {
    let ws = sql.placeholder(Bind::Text(workspace_id.to_owned()));
    let phs: Vec<String> = ids.iter().map(|id| sql.placeholder(Bind::Text(id.to_string()))).collect();
    format!("{table}.workspace_id = {ws} AND {table}.{column} IN ({})", phs.join(", "))
}

/// `/ui/flow_runs/count-task-runs`: `(flow_run_id, count)` of each run's task
/// runs, leaving out the tasks that stand for subflow runs.
pub fn count_task_runs_by_flow_run(ids: &[Uuid], workspace_id: &str) -> Sql {
    let mut sql = Sql::default();
    let cond = ids_in(&mut sql, "task_run", "flow_run_id", ids, workspace_id);
    sql.text = format!(
        "SELECT task_run.flow_run_id, COUNT(*) FROM task_run WHERE {cond} \
         AND NOT EXISTS (SELECT 1 FROM flow_run sub WHERE sub.parent_task_run_id = task_run.id) \
         GROUP BY task_run.flow_run_id"
    );
    sql
}

/// `/ui/flows/count-deployments`: `(flow_id, count)` of each flow's deployments.
pub fn count_deployments_by_flow(ids: &[Uuid], workspace_id: &str) -> Sql {
    let mut sql = Sql::default();
    let cond = ids_in(&mut sql, "deployment", "flow_id", ids, workspace_id);
    sql.text = format!("SELECT deployment.flow_id, COUNT(*) FROM deployment WHERE {cond} GROUP BY deployment.flow_id");
    sql
}

/// `/ui/flows/next-runs`: each flow's SCHEDULED run due first (ties broken by id).
pub fn next_runs_by_flow(ids: &[Uuid], workspace_id: &str) -> Sql {
    let mut sql = Sql::default();
    let cond = ids_in(&mut sql, "flow_run", "flow_id", ids, workspace_id);
    sql.text = format!(
        "SELECT id, flow_id, name, state_name, state_type, next_scheduled_start_time FROM (\
         SELECT flow_run.id, flow_run.flow_id, flow_run.name, flow_run.state_name, flow_run.state_type, \
         flow_run.next_scheduled_start_time, ROW_NUMBER() OVER (PARTITION BY flow_run.flow_id \
         ORDER BY flow_run.next_scheduled_start_time, flow_run.id) AS rn \
         FROM flow_run WHERE {cond} AND flow_run.state_type = 'SCHEDULED' \
         AND flow_run.next_scheduled_start_time IS NOT NULL) firsts WHERE rn = 1"
    );
    sql
}

/// Prefect's `SimpleNextFlowRun`.
pub fn next_run_json(row: &AnyRow) -> Value {
    object(vec![
        ("id", text_col(row, "id")),
        ("flow_id", text_col(row, "flow_id")),
        ("name", text_col(row, "name")),
        ("state_name", text_col(row, "state_name")),
        ("state_type", text_col(row, "state_type")),
        ("next_scheduled_start_time", pydantic_col(row, "next_scheduled_start_time")),
    ])
}

/// A `{id: value}` answer in request order (a repeated id appears once),
/// with `missing` for ids the query found nothing for.
pub fn by_id(ids: &[Uuid], mut found: HashMap<String, Value>, missing: Value) -> Value {
    let mut out = Map::new();
    for id in ids {
        let key = id.to_string();
        if !out.contains_key(&key) {
            let v = found.remove(&key).unwrap_or_else(|| missing.clone());
            out.insert(key, v);
        }
    }
    Value::Object(out)
}

/// `CountByState`'s fields, in Prefect's order.
pub const COUNT_BY_STATE: [&str; 9] = ["COMPLETED", "PENDING", "RUNNING", "FAILED", "CANCELLED", "CRASHED", "PAUSED", "CANCELLING", "SCHEDULED"];

/// `/ui/task_runs/count`: `(state_type, count)` of the filtered task runs.
pub fn task_run_counts_by_state(body: &RunFilterBody, dialect: Dialect, workspace_id: &str) -> Result<Sql, FilterError> {
    let mut sql = Sql::default();
    let cond = filters::task_runs_where(body, dialect, &mut sql, workspace_id, true)?;
    sql.text = format!(
        "SELECT task_run.state_type, COUNT(*) FROM task_run WHERE ({cond}) AND task_run.state_type IS NOT NULL GROUP BY task_run.state_type"
    );
    Ok(sql)
}

/// Prefect's `CountByState`: every state type, zero when absent.
pub fn count_by_state_json(rows: &[(String, i64)]) -> Value {
    let mut out = Map::new();
    for key in COUNT_BY_STATE {
        let n = rows.iter().filter(|(t, _)| t == key).map(|(_, n)| n).sum::<i64>();
        out.insert(key.to_owned(), Value::from(n));
    }
    Value::Object(out)
}

/// What `/ui/flow_runs/history` reads of each run.
pub const SIMPLE_FLOW_RUN_COLUMNS: &str = "flow_run.id, flow_run.state_type, flow_run.start_time, flow_run.expected_start_time, \
     flow_run.total_run_time, flow_run.state_timestamp";

/// A stored timestamp column the way pydantic writes it (null when absent).
fn pydantic_col(row: &AnyRow, col: &str) -> Value {
    opt_text(row, col).map_or(Value::Null, |s| Value::String(stored_to_pydantic(&s)))
}

/// Prefect's `SimpleFlowRun`: `timestamp` is the start time or else the
/// expected one; `duration` the estimated run time (running runs count up
/// to now); `lateness` the estimated start time delta; both in seconds.
pub fn simple_flow_run_json(row: &AnyRow, now: DateTime<Utc>) -> Value {
    let ts = |c: &str| opt_text(row, c).and_then(|s| parse_ts(&s));
    let state_type = opt_text(row, "state_type");
    let total = float_col(row, "total_run_time");
    let duration = match (state_type.as_deref(), ts("state_timestamp")) {
        (Some("RUNNING"), Some(since)) => total + (now - since).num_microseconds().unwrap_or(0) as f64 / 1e6,
        _ => total,
    };
    let lateness = estimated_start_time_delta(state_type.as_deref(), ts("start_time"), ts("expected_start_time"), now);
    let timestamp = match pydantic_col(row, "start_time") {
        Value::Null => pydantic_col(row, "expected_start_time"),
        v => v,
    };
    object(vec![
        ("id", text_col(row, "id")),
        ("state_type", text_col(row, "state_type")),
        ("timestamp", timestamp),
        ("duration", seconds(duration)),
        ("lateness", seconds(lateness)),
    ])
}

fn seconds(v: f64) -> Value {
    serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::from(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_by_state_name_every_state_type_in_prefects_order() {
        let out = count_by_state_json(&[("RUNNING".into(), 2), ("COMPLETED".into(), 5)]);
        assert_eq!(
            out.to_string(),
            r#"{"COMPLETED":5,"PENDING":0,"RUNNING":2,"FAILED":0,"CANCELLED":0,"CRASHED":0,"PAUSED":0,"CANCELLING":0,"SCHEDULED":0}"#
        );
    }

    #[test]
    fn answers_by_id_keep_request_order_and_fill_the_gaps() {
        let (a, b) = (Uuid::from_u128(2), Uuid::from_u128(1));
        let found = HashMap::from([(b.to_string(), json!(3))]);
        let out = by_id(&[a, b, a], found, json!(0));
        assert_eq!(out.to_string(), format!(r#"{{"{a}":0,"{b}":3}}"#));
    }
}
