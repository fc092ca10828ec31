//! Task runs from client events (`prefect.task-run.*` with
//! `prefect.orchestration=client`), as Prefect's TaskRunRecorder builds them:
//! the task run is upserted on its id (or on its natural key
//! `(flow_run_id, task_key, dynamic_key)`), and only a newer state timestamp
//! overwrites the row, so events arriving out of order or twice are harmless.
//! Every state is recorded with the event id as its id.

use serde_json::{Map, Value};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::{exec, insert_state, opt_ts, ProjectionError};
use crate::db::{Bind, Dialect};
use crate::eventlog::RecordedEvent;
use crate::orchestration::states::{State, StateDetails, StateType};
use crate::time::{fmt_ts, parse_ts};

/// The parts of a client task-run event the recorder uses.
struct TaskRunEvent {
    task_run_id: Uuid,
    flow_run_id: Option<Uuid>,
    state: State,
    task_run: Map<String, Value>,
}

fn resource_uuid(id: Option<&str>, prefix: &str) -> Option<Uuid> {
    id.and_then(|s| s.strip_prefix(prefix)).and_then(|s| Uuid::parse_str(s).ok())
}

/// Parses the event; `None` when it is not a recordable task-run event.
fn parse(event: &Value, event_id: Uuid) -> Option<TaskRunEvent> {
    let resource = event.get("resource")?;
    if resource.get("prefect.orchestration").and_then(Value::as_str) != Some("client") {
        return None;
    }
    let task_run_id = resource_uuid(resource.get("prefect.resource.id")?.as_str(), "prefect.task-run.")?;
    let flow_run_id = event
        .get("related")
        .and_then(Value::as_array)
        .and_then(|rel| {
            rel.iter()
                .find(|r| r.get("prefect.resource.role").and_then(Value::as_str) == Some("flow-run"))
        })
        .and_then(|r| resource_uuid(r.get("prefect.resource.id").and_then(Value::as_str), "prefect.flow-run."));
    let payload = event.get("payload")?;
    let validated = payload.get("validated_state")?;
    let occurred = parse_ts(event.get("occurred")?.as_str()?)?;
    let state_type = StateType::parse(validated.get("type")?.as_str()?)?;
    let mut details: StateDetails = validated
        .get("state_details")
        .cloned()
        .and_then(|d| serde_json::from_value(d).ok())
        .unwrap_or_default();
    details.task_run_id = Some(task_run_id);
    details.flow_run_id = flow_run_id;
    let state = State {
        id: event_id,
        state_type,
        name: validated
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| state_type.default_name().to_owned()),
        timestamp: occurred,
        message: validated.get("message").and_then(Value::as_str).map(str::to_owned),
        data: validated.get("data").cloned().filter(|d| !d.is_null()),
        state_details: details,
    };
    let task_run = payload.get("task_run")?.as_object()?.clone();
    Some(TaskRunEvent { task_run_id, flow_run_id, state, task_run })
}

/// Columns the recorder copies from `payload.task_run` when present.
const TEXT_FIELDS: &[&str] = &["name", "task_key", "dynamic_key", "cache_key", "task_version"];
const JSON_FIELDS: &[&str] = &["empirical_policy", "tags", "labels", "task_inputs"];
const TIME_FIELDS: &[&str] = &["cache_expiration", "expected_start_time", "next_scheduled_start_time", "start_time", "end_time"];
const INT_FIELDS: &[&str] = &["run_count", "flow_run_run_count"];

fn columns_from(task_run: &Map<String, Value>) -> Vec<(&'static str, Bind)> {
    let mut cols = Vec::new();
    for &f in TEXT_FIELDS {
        if let Some(v) = task_run.get(f) {
            cols.push((f, v.as_str().map(str::to_owned).into()));
        }
    }
    for &f in JSON_FIELDS {
        if let Some(v) = task_run.get(f).filter(|v| !v.is_null()) {
            cols.push((f, Bind::Text(v.to_string())));
        }
    }
    for &f in TIME_FIELDS {
        if let Some(v) = task_run.get(f) {
            cols.push((f, opt_ts(v.as_str().and_then(parse_ts))));
        }
    }
    for &f in INT_FIELDS {
        if let Some(v) = task_run.get(f).and_then(Value::as_i64) {
            cols.push((f, Bind::Int(v)));
        }
    }
    if let Some(v) = task_run.get("total_run_time").and_then(Value::as_f64) {
        cols.push(("total_run_time", Bind::Float(v)));
    }
    cols
}

/// The id of an existing row for this task run: by id, else by natural key.
async fn existing_id(conn: &mut AnyConnection, dialect: Dialect, ev: &TaskRunEvent) -> Result<Option<String>, sqlx::Error> {
    let by_id = sqlx::query(&dialect.rewrite("SELECT id FROM task_run WHERE id = $1"))
        .bind(ev.task_run_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = by_id {
        return row.try_get::<String, _>(0).map(Some);
    }
    let (Some(flow_run_id), Some(task_key), Some(dynamic_key)) = (
        ev.flow_run_id,
        ev.task_run.get("task_key").and_then(Value::as_str),
        ev.task_run.get("dynamic_key").and_then(Value::as_str),
    ) else {
        return Ok(None);
    };
    let row = sqlx::query(&dialect.rewrite(
        "SELECT id FROM task_run WHERE flow_run_id = $1 AND task_key = $2 AND dynamic_key = $3",
    ))
    .bind(flow_run_id.to_string())
    .bind(task_key)
    .bind(dynamic_key)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| r.try_get::<String, _>(0)).transpose()
}

pub(super) async fn apply(conn: &mut AnyConnection, dialect: Dialect, event: &RecordedEvent) -> Result<(), ProjectionError> {
    let Some(prefect_event) = event.payload.get("event") else { return Ok(()) };
    let Some(ev) = parse(prefect_event, event.event_id) else { return Ok(()) };
    let received = fmt_ts(event.occurred);
    let state_ts = fmt_ts(ev.state.timestamp);
    let mut cols = columns_from(&ev.task_run);
    cols.push(("flow_run_id", ev.flow_run_id.map(|u| u.to_string()).into()));
    cols.push(("state_id", Bind::Text(ev.state.id.to_string())));
    cols.push(("state_type", Bind::Text(ev.state.state_type.as_str().to_owned())));
    cols.push(("state_name", Bind::Text(ev.state.name.clone())));
    cols.push(("state_timestamp", Bind::Text(state_ts.clone())));
    cols.push(("version", Bind::Int(event.stream_version)));

    let run_id = match existing_id(conn, dialect, &ev).await? {
        Some(id) => {
            // Only a newer state overwrites the row.
            let mut binds: Vec<Bind> = Vec::new();
            let mut sets = Vec::new();
            for (c, b) in cols {
                binds.push(b);
                sets.push(format!("{c} = ${}", binds.len()));
            }
            binds.push(Bind::Text(received.clone()));
            sets.push(format!("updated = ${}", binds.len()));
            binds.push(Bind::Text(id.clone()));
            let id_ph = binds.len();
            binds.push(Bind::Text(state_ts));
            let sql = format!(
                "UPDATE task_run SET {} WHERE id = ${id_ph} AND (state_timestamp IS NULL OR state_timestamp < ${})",
                sets.join(", "),
                binds.len()
            );
            exec(conn, dialect, &sql, &binds).await?;
            id
        }
        None => {
            let id = ev.task_run_id.to_string();
            let mut names = vec!["id", "workspace_id", "created", "updated"];
            let mut binds = vec![
                Bind::Text(id.clone()),
                Bind::Text(event.workspace_id.to_string()),
                Bind::Text(received.clone()),
                Bind::Text(received),
            ];
            for (c, b) in cols {
                names.push(c);
                binds.push(b);
            }
            for (required, default) in [("name", ""), ("task_key", ""), ("dynamic_key", "")] {
                if !names.contains(&required) {
                    names.push(required);
                    binds.push(Bind::Text(default.to_owned()));
                }
            }
            let phs: Vec<String> = (1..=binds.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "INSERT INTO task_run ({}) VALUES ({}) ON CONFLICT DO NOTHING",
                names.join(", "),
                phs.join(", ")
            );
            exec(conn, dialect, &sql, &binds).await?;
            id
        }
    };
    insert_state(conn, dialect, "task_run_state", "task_run_id", &run_id, &ev.state, fmt_ts(event.occurred)).await?;
    Ok(())
}
