//! State rows (`flow_run_state`, `task_run_state`) and their JSON shape.

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use super::{json_col, object, text_col};
use crate::db::Dialect;
use crate::orchestration::states::State;

/// Which state table to read.
#[derive(Debug, Clone, Copy)]
pub enum StateTable {
    FlowRun,
    TaskRun,
}

impl StateTable {
    fn table(self) -> &'static str {
        match self {
            StateTable::FlowRun => "flow_run_state",
            StateTable::TaskRun => "task_run_state",
        }
    }
    fn run_column(self) -> &'static str {
        match self {
            StateTable::FlowRun => "flow_run_id",
            StateTable::TaskRun => "task_run_id",
        }
    }
}

/// Columns of a state row, aliased with `prefix` (used when joined to a run).
pub fn state_columns(alias: &str, prefix: &str) -> String {
    ["id", "type", "name", "timestamp", "message", "state_details", "data"]
        .iter()
        .map(|c| format!("{alias}.{c} AS {prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `State` JSON for a row read with `state_columns(_, prefix)`; null when
/// the run has no state.
pub fn state_json(row: &AnyRow, prefix: &str) -> Value {
    let id = text_col(row, &format!("{prefix}id"));
    if id.is_null() {
        return Value::Null;
    }
    object(vec![
        ("id", id),
        ("type", text_col(row, &format!("{prefix}type"))),
        ("name", text_col(row, &format!("{prefix}name"))),
        ("timestamp", text_col(row, &format!("{prefix}timestamp"))),
        ("message", text_col(row, &format!("{prefix}message"))),
        ("data", json_col(row, &format!("{prefix}data"))),
        ("state_details", json_col(row, &format!("{prefix}state_details"))),
    ])
}

/// Decodes the `State` of a row (for orchestration), if it has one.
pub fn state_from_row(row: &AnyRow, prefix: &str) -> Option<State> {
    let json = state_json(row, prefix);
    if json.is_null() {
        None
    } else {
        serde_json::from_value(json).ok()
    }
}

/// All states of one run, oldest first.
pub async fn read_states(
    conn: &mut AnyConnection,
    dialect: Dialect,
    table: StateTable,
    run_id: &str,
) -> Result<Vec<Value>, sqlx::Error> {
    let sql = format!(
        "SELECT {} FROM {} s WHERE s.{} = $1 ORDER BY s.timestamp, s.id",
        state_columns("s", ""),
        table.table(),
        table.run_column()
    );
    let rows = sqlx::query(&dialect.rewrite(&sql)).bind(run_id).fetch_all(&mut *conn).await?;
    Ok(rows.iter().map(|r| state_json(r, "")).collect())
}

/// One state by id.
pub async fn read_state(
    conn: &mut AnyConnection,
    dialect: Dialect,
    table: StateTable,
    id: &str,
) -> Result<Option<Value>, sqlx::Error> {
    let sql = format!("SELECT {} FROM {} s WHERE s.id = $1", state_columns("s", ""), table.table());
    let row = sqlx::query(&dialect.rewrite(&sql)).bind(id).fetch_optional(&mut *conn).await?;
    Ok(row.map(|r| state_json(&r, "")))
}
