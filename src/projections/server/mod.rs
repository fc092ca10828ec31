//! The server read model: applies one recorded event to the flow, flow-run,
//! task-run, state and log tables. Deterministic: everything comes from the
//! event, so replaying the log rebuilds the same rows.

mod documents;
mod flow_runs;
mod flows;
mod logs;
pub mod rebuild;
mod task_run_recorder;
mod task_runs;

use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::AnyConnection;
use tracing::Instrument;

use crate::db::{bind_all, Bind, Dialect};
use crate::eventlog::{RecordedEvent, StreamType};

/// Why an event could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("event {0} has a malformed payload: {1}")]
    Payload(uuid::Uuid, serde_json::Error),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The tables of this model, in an order safe for truncation.
pub const TABLES: &[&str] = &[
    "log",
    "task_run_state_cache",
    "task_run_state",
    "task_run",
    "flow_run_state",
    "flow_run",
    "deployment_schedule",
    "deployment",
    "worker",
    "work_queue",
    "work_pool",
    "variable",
    "flow_run_input",
    "saved_search",
    "automation",
    "concurrency_limit_v2",
    "concurrency_lease",
    "task_run_delivery",
    "artifact_collection",
    "artifact",
    "block_document",
    "block_schema",
    "block_type",
    "configuration",
    "flow",
];

/// Applies one event to the server model.
pub async fn apply(conn: &mut AnyConnection, dialect: Dialect, event: &RecordedEvent) -> Result<(), ProjectionError> {
    let span = tracing::trace_span!("project", event_type = %event.event_type, position = event.position);
    async move {
        match event.stream.stream_type {
            StreamType::Flow => flows::apply(conn, dialect, event).await,
            StreamType::FlowRun => flow_runs::apply(conn, dialect, event).await,
            StreamType::TaskRun => task_runs::apply(conn, dialect, event).await,
            StreamType::LogBatch => logs::apply(conn, dialect, event).await,
            StreamType::ClientEvent => Ok(()),
            other => match documents::table_of(other) {
                Some(table) => documents::apply(conn, dialect, table, event).await,
                None => Ok(()),
            },
        }
    }
    .instrument(span)
    .await
}

/// The event's payload as `T`, read in place (no copy of the JSON tree).
fn payload<T: DeserializeOwned>(event: &RecordedEvent) -> Result<T, ProjectionError> {
    T::deserialize(&event.payload).map_err(|e| ProjectionError::Payload(event.event_id, e))
}

/// Runs `$n` SQL with binds.
async fn exec(conn: &mut AnyConnection, dialect: Dialect, sql: &str, binds: &[Bind]) -> Result<u64, sqlx::Error> {
    let sql = dialect.rewrite(sql);
    Ok(bind_all(sqlx::query(&sql), binds).execute(&mut *conn).await?.rows_affected())
}

/// A JSON value as stored in a text column.
fn json_text(v: &Value) -> Bind {
    Bind::Text(v.to_string())
}

fn opt_uuid(v: Option<uuid::Uuid>) -> Bind {
    v.map(|u| u.to_string()).into()
}

fn opt_ts(v: Option<chrono::DateTime<chrono::Utc>>) -> Bind {
    v.map(crate::time::fmt_ts).into()
}

/// Columns of a row in the order they are set, as an INSERT lists them or
/// an UPDATE sets them. Both the per-event path and the replay fold build
/// rows with the same functions, so they cannot drift apart.
pub(crate) type Cols = Vec<(&'static str, Bind)>;

/// A JSON value as the bind for a `*.updated` change (objects and arrays as
/// JSON text, booleans as 0/1).
fn change_bind(value: &Value) -> Bind {
    match value {
        Value::Null => Bind::Null,
        Value::String(s) => Bind::Text(s.clone()),
        Value::Bool(b) => Bind::Int(*b as i64),
        Value::Number(n) if n.is_i64() => Bind::Int(n.as_i64().unwrap_or(0)),
        Value::Number(n) => Bind::Float(n.as_f64().unwrap_or(0.0)),
        other => Bind::Text(other.to_string()),
    }
}

/// What a `*.updated` event sets: `updated`, `version`, then each change
/// whose column is one of `columns` (others are ignored).
fn changed_columns(changes: &serde_json::Map<String, Value>, columns: &[&'static str], updated: String, version: i64) -> Cols {
    let mut cols: Cols = vec![("updated", Bind::Text(updated)), ("version", Bind::Int(version))];
    for (col, value) in changes {
        if let Some(&column) = columns.iter().find(|c| **c == col.as_str()) {
            cols.push((column, change_bind(value)));
        }
    }
    cols
}

/// `INSERT INTO table (cols) VALUES (...)`, optionally `ON CONFLICT DO NOTHING`.
async fn insert_row(conn: &mut AnyConnection, dialect: Dialect, table: &str, cols: Cols, on_conflict_nothing: bool) -> Result<(), sqlx::Error> {
    let names: Vec<&str> = cols.iter().map(|(c, _)| *c).collect();
    let binds: Vec<Bind> = cols.into_iter().map(|(_, b)| b).collect();
    let sql = format!(
        "INSERT INTO {table} ({}) VALUES ({}){}",
        names.join(", "),
        crate::db::sql::placeholders(1, binds.len()),
        if on_conflict_nothing { " ON CONFLICT DO NOTHING" } else { "" }
    );
    exec(conn, dialect, &sql, &binds).await?;
    Ok(())
}

/// `UPDATE table SET cols WHERE id = id`.
async fn update_row(conn: &mut AnyConnection, dialect: Dialect, table: &str, id: &str, cols: Cols) -> Result<(), sqlx::Error> {
    let mut sets = Vec::with_capacity(cols.len());
    let mut binds = Vec::with_capacity(cols.len() + 1);
    for (col, bind) in cols {
        binds.push(bind);
        sets.push(format!("{col} = ${}", binds.len()));
    }
    binds.push(Bind::Text(id.to_owned()));
    let sql = format!("UPDATE {table} SET {} WHERE id = ${}", sets.join(", "), binds.len());
    exec(conn, dialect, &sql, &binds).await?;
    Ok(())
}

/// Writes `changes` (column → JSON value) to `table` for row `id`, allowing
/// only `columns`; JSON objects and arrays go to text columns as JSON.
#[allow(clippy::too_many_arguments)]
async fn update_columns(
    conn: &mut AnyConnection,
    dialect: Dialect,
    table: &str,
    id: &str,
    changes: &serde_json::Map<String, Value>,
    columns: &[&'static str],
    updated: String,
    version: i64,
) -> Result<(), sqlx::Error> {
    update_row(conn, dialect, table, id, changed_columns(changes, columns, updated, version)).await
}

/// The columns of the state row for run `run_id` (a `flow_run_state` or
/// `task_run_state` row).
fn state_row(run_column: &'static str, run_id: String, state: &crate::orchestration::states::State, created: String) -> Cols {
    // The same text as serializing through a `Value` (fields in struct order).
    let details = serde_json::to_string(&state.state_details).unwrap_or_else(|_| "null".to_owned());
    vec![
        ("id", Bind::Text(state.id.to_string())),
        (run_column, Bind::Text(run_id)),
        ("created", Bind::Text(created)),
        ("type", Bind::Text(state.state_type.as_str().to_owned())),
        ("name", Bind::Text(state.name.clone())),
        ("timestamp", Bind::Text(crate::time::fmt_ts(state.timestamp))),
        ("message", state.message.clone().into()),
        ("state_details", Bind::Text(details)),
        ("data", state.data.as_ref().map(|d| d.to_string()).into()),
    ]
}

/// Inserts state rows into `table` (`flow_run_state` / `task_run_state`):
/// `(run id, state, created)`, in multi-row INSERTs; a state id already
/// present is left alone.
async fn insert_states(
    conn: &mut AnyConnection,
    dialect: Dialect,
    table: &str,
    run_column: &'static str,
    states: &[(String, &crate::orchestration::states::State, String)],
) -> Result<(), sqlx::Error> {
    const STATES_PER_INSERT: usize = 200;
    for chunk in states.chunks(STATES_PER_INSERT) {
        let values: Vec<String> = (0..chunk.len()).map(|i| format!("({})", crate::db::sql::placeholders(i * 9 + 1, 9))).collect();
        let sql = format!(
            "INSERT INTO {table} (id, {run_column}, created, type, name, timestamp, message, state_details, data) VALUES {} ON CONFLICT DO NOTHING",
            values.join(", ")
        );
        let mut binds = Vec::with_capacity(chunk.len() * 9);
        for (run_id, state, created) in chunk {
            binds.extend(state_row(run_column, run_id.clone(), state, created.clone()).into_iter().map(|(_, b)| b));
        }
        let sql = dialect.rewrite(&sql);
        crate::db::bind_chunk(sqlx::query(&sql), &binds, chunk.len() == STATES_PER_INSERT).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Applies a batch of client events (what `/events/in` appends) to the
/// server model, with the same result as [`apply`] on each in turn:
/// task-run client events go through the recorder's batch path, and the
/// other client events change nothing here. Anything else is applied one
/// event at a time.
pub async fn apply_client_batch(conn: &mut AnyConnection, dialect: Dialect, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
    let client_only = events.iter().all(|e| match e.stream.stream_type {
        StreamType::ClientEvent => true,
        StreamType::TaskRun => e.payload.get("event").is_some() && e.payload.get("run").is_none(),
        _ => false,
    });
    if !client_only {
        for event in events {
            apply(conn, dialect, event).await?;
        }
        return Ok(());
    }
    let task_events: Vec<&RecordedEvent> = events.iter().filter(|e| e.stream.stream_type == StreamType::TaskRun).collect();
    task_run_recorder::apply_batch(conn, dialect, &task_events).await
}

async fn insert_state(
    conn: &mut AnyConnection,
    dialect: Dialect,
    table: &str,
    run_column: &'static str,
    run_id: &str,
    state: &crate::orchestration::states::State,
    created: String,
) -> Result<(), sqlx::Error> {
    insert_states(conn, dialect, table, run_column, &[(run_id.to_owned(), state, created)]).await
}
