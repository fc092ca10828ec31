//! Task runs from client events (`prefect.task-run.*` with
//! `prefect.orchestration=client`), as Prefect's TaskRunRecorder builds them:
//! the task run is upserted on its id (or on its natural key
//! `(flow_run_id, task_key, dynamic_key)`), and only a newer state timestamp
//! overwrites the row, so events arriving out of order or twice are harmless.
//! Every state is recorded with the event id as its id.

use serde::Deserialize;
use serde_json::{Map, Value};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::rebuild::prune::Keep;
use super::{exec, insert_row, insert_state, opt_ts, Cols, ProjectionError};
use crate::db::{Bind, Dialect};
use crate::eventlog::RecordedEvent;
use crate::orchestration::states::{State, StateDetails, StateType};
use crate::time::{fmt_ts, parse_ts};

/// The parts of a client task-run event the recorder uses.
pub(super) struct TaskRunEvent<'a> {
    pub(super) task_run_id: Uuid,
    pub(super) flow_run_id: Option<Uuid>,
    pub(super) state: State,
    pub(super) task_run: &'a Map<String, Value>,
}

fn resource_uuid(id: Option<&str>, prefix: &str) -> Option<Uuid> {
    id.and_then(|s| s.strip_prefix(prefix)).and_then(|s| Uuid::parse_str(s).ok())
}

/// Parses the event; `None` when it is not a recordable task-run event.
pub(super) fn parse(event: &Value, event_id: Uuid) -> Option<TaskRunEvent<'_>> {
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
        .and_then(|d| StateDetails::deserialize(d).ok())
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
    let task_run = payload.get("task_run")?.as_object()?;
    Some(TaskRunEvent { task_run_id, flow_run_id, state, task_run })
}

/// Every part of a log entry holding a client event that [`parse`],
/// [`row_columns`] and [`natural_key`] read (and the top-level `run` the
/// fold looks for to tell server-side task-run states apart), so that the
/// replay can parse only these ([`super::rebuild::prune`]) and get the same
/// rows. A key read above must be listed here.
pub(super) const READ_PARTS: Keep = Keep::Keys(&[
    (
        "event",
        Keep::Keys(&[
            ("resource", Keep::Keys(&[("prefect.orchestration", Keep::All), ("prefect.resource.id", Keep::All)])),
            ("related", Keep::Each(&Keep::Keys(&[("prefect.resource.role", Keep::All), ("prefect.resource.id", Keep::All)]))),
            ("occurred", Keep::All),
            ("payload", Keep::Keys(&[("validated_state", Keep::All), ("task_run", Keep::Keys(TASK_RUN_PARTS))])),
        ]),
    ),
    ("run", Keep::All),
]);

/// The keys of `payload.task_run` the recorder reads: the `*_FIELDS` below
/// and `total_run_time`.
const TASK_RUN_PARTS: &[(&str, Keep)] = &[
    ("name", Keep::All),
    ("task_key", Keep::All),
    ("dynamic_key", Keep::All),
    ("cache_key", Keep::All),
    ("task_version", Keep::All),
    ("empirical_policy", Keep::All),
    ("tags", Keep::All),
    ("labels", Keep::All),
    ("task_inputs", Keep::All),
    ("cache_expiration", Keep::All),
    ("expected_start_time", Keep::All),
    ("next_scheduled_start_time", Keep::All),
    ("start_time", Keep::All),
    ("end_time", Keep::All),
    ("run_count", Keep::All),
    ("flow_run_run_count", Keep::All),
    ("total_run_time", Keep::All),
];

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

/// The task_run columns an event sets: the fields its payload carries, its
/// flow run, its state and the stream version.
pub(super) fn row_columns(ev: &TaskRunEvent, stream_version: i64) -> Vec<(&'static str, Bind)> {
    let mut cols = columns_from(ev.task_run);
    cols.push(("flow_run_id", ev.flow_run_id.map(|u| u.to_string()).into()));
    cols.push(("state_id", Bind::Text(ev.state.id.to_string())));
    cols.push(("state_type", Bind::Text(ev.state.state_type.as_str().to_owned())));
    cols.push(("state_name", Bind::Text(ev.state.name.clone())));
    cols.push(("state_timestamp", Bind::Text(fmt_ts(ev.state.timestamp))));
    cols.push(("version", Bind::Int(stream_version)));
    cols
}

/// The id of an existing row for this task run: by id, else by natural key.
async fn existing_id(conn: &mut AnyConnection, dialect: Dialect, ev: &TaskRunEvent<'_>) -> Result<Option<String>, sqlx::Error> {
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
    let cols = row_columns(&ev, event.stream_version);

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
            let mut row: Cols = vec![("updated", Bind::Text(received.clone()))];
            row.extend(cols);
            insert_row(conn, dialect, "task_run", new_row(&id, &event.workspace_id.to_string(), received, row), true).await?;
            id
        }
    };
    insert_state(conn, dialect, "task_run_state", "task_run_id", &run_id, &ev.state, fmt_ts(event.occurred)).await?;
    Ok(())
}

/// A task run as the batch leaves it: the columns to write and whether the
/// row already exists in the table.
struct PendingRow {
    id: String,
    exists: bool,
    natural_key: Option<(String, String, String)>,
    state_timestamp: Option<String>,
    /// Columns set by the events that won, later ones overwriting earlier ones.
    cols: Vec<(&'static str, Bind)>,
    created: String,
    changed: bool,
}

impl PendingRow {
    fn set(&mut self, cols: Vec<(&'static str, Bind)>) {
        for (c, b) in cols {
            match self.cols.iter_mut().find(|(k, _)| *k == c) {
                Some(slot) => slot.1 = b,
                None => self.cols.push((c, b)),
            }
        }
        self.changed = true;
    }
}

pub(super) fn natural_key(ev: &TaskRunEvent) -> Option<(String, String, String)> {
    Some((
        ev.flow_run_id?.to_string(),
        ev.task_run.get("task_key")?.as_str()?.to_owned(),
        ev.task_run.get("dynamic_key")?.as_str()?.to_owned(),
    ))
}

/// The rows that exist for these events' task runs, by id or natural key.
async fn existing_rows(conn: &mut AnyConnection, dialect: Dialect, events: &[(TaskRunEvent<'_>, &RecordedEvent)]) -> Result<Vec<PendingRow>, sqlx::Error> {
    let mut binds: Vec<Bind> = events.iter().map(|(ev, _)| Bind::Text(ev.task_run_id.to_string())).collect();
    let ids = crate::db::sql::placeholders(1, binds.len());
    let keys: Vec<(String, String, String)> = events.iter().filter_map(|(ev, _)| natural_key(ev)).collect();
    let mut sql = format!("SELECT id, flow_run_id, task_key, dynamic_key, state_timestamp FROM task_run WHERE id IN ({ids})");
    if !keys.is_empty() {
        let tuples: Vec<String> = (0..keys.len()).map(|i| format!("({})", crate::db::sql::placeholders(binds.len() + 3 * i + 1, 3))).collect();
        sql.push_str(&format!(" OR (flow_run_id, task_key, dynamic_key) IN (VALUES {})", tuples.join(", ")));
        binds.extend(keys.into_iter().flat_map(|(f, t, d)| [Bind::Text(f), Bind::Text(t), Bind::Text(d)]));
    }
    let rows = crate::db::bind_all(sqlx::query(&dialect.rewrite(&sql)), &binds).fetch_all(&mut *conn).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let key = match (r.try_get::<Option<String>, _>(1)?, r.try_get::<Option<String>, _>(2)?, r.try_get::<Option<String>, _>(3)?) {
            (Some(f), Some(t), Some(d)) => Some((f, t, d)),
            _ => None,
        };
        out.push(PendingRow {
            id: r.try_get(0)?,
            exists: true,
            natural_key: key,
            state_timestamp: r.try_get(4)?,
            cols: Vec::new(),
            created: String::new(),
            changed: false,
        });
    }
    Ok(out)
}

/// [`apply`] for a batch of task-run client events (in log order), with the
/// same outcome as applying them one by one: each task run is found by id,
/// else by natural key, created by its first event, and overwritten only by
/// a newer state; every state is recorded. The batch reads the existing rows
/// once, writes each task run once and inserts the states together, instead
/// of three or four statements per event.
pub(super) async fn apply_batch(conn: &mut AnyConnection, dialect: Dialect, events: &[&RecordedEvent]) -> Result<(), ProjectionError> {
    let parsed: Vec<(TaskRunEvent<'_>, &RecordedEvent)> = events
        .iter()
        .copied()
        .filter_map(|e| Some((parse(e.payload.get("event")?, e.event_id)?, e)))
        .collect();
    if parsed.is_empty() {
        return Ok(());
    }
    let mut rows = existing_rows(conn, dialect, &parsed).await?;
    let mut states: Vec<(String, &State, String)> = Vec::with_capacity(parsed.len());
    for (ev, event) in &parsed {
        let id = ev.task_run_id.to_string();
        let key = natural_key(ev);
        let found = rows.iter().position(|r| r.id == id).or_else(|| key.as_ref().and_then(|k| rows.iter().position(|r| r.natural_key.as_ref() == Some(k))));
        let received = fmt_ts(event.occurred);
        let state_ts = fmt_ts(ev.state.timestamp);
        let mut cols = row_columns(ev, event.stream_version);
        cols.push(("updated", Bind::Text(received.clone())));
        let row_id = match found {
            Some(i) => {
                let row = &mut rows[i];
                if row.state_timestamp.as_ref().is_none_or(|t| *t < state_ts) {
                    row.state_timestamp = Some(state_ts);
                    row.set(cols);
                }
                row.id.clone()
            }
            None => {
                let mut row = PendingRow { id: id.clone(), exists: false, natural_key: key, state_timestamp: Some(state_ts), cols: Vec::new(), created: received, changed: false };
                row.set(cols);
                rows.push(row);
                id
            }
        };
        states.push((row_id, &ev.state, fmt_ts(event.occurred)));
    }
    for row in rows.iter().filter(|r| r.changed) {
        write_row(conn, dialect, row, &parsed[0].1.workspace_id.to_string()).await?;
    }
    super::insert_states(conn, dialect, "task_run_state", "task_run_id", &states).await?;
    Ok(())
}

async fn write_row(conn: &mut AnyConnection, dialect: Dialect, row: &PendingRow, workspace: &str) -> Result<(), sqlx::Error> {
    let state_ts = row.state_timestamp.clone().unwrap_or_default();
    if row.exists {
        let mut binds: Vec<Bind> = Vec::new();
        let mut sets = Vec::new();
        for (c, b) in &row.cols {
            binds.push(b.clone());
            sets.push(format!("{c} = ${}", binds.len()));
        }
        binds.push(Bind::Text(row.id.clone()));
        let id_ph = binds.len();
        binds.push(Bind::Text(state_ts));
        let sql = format!("UPDATE task_run SET {} WHERE id = ${id_ph} AND (state_timestamp IS NULL OR state_timestamp < ${})", sets.join(", "), binds.len());
        exec(conn, dialect, &sql, &binds).await?;
        return Ok(());
    }
    insert_row(conn, dialect, "task_run", new_row(&row.id, workspace, row.created.clone(), row.cols.clone()), true).await
}

/// The task_run row the recorder inserts for a task run it has not seen:
/// `cols` (what its events set, `updated` included) after the id, workspace
/// and `created`, with an empty name, task key and dynamic key when no
/// event carried them (they are NOT NULL).
pub(super) fn new_row(id: &str, workspace: &str, created: String, cols: Cols) -> Cols {
    let mut row: Cols = vec![("id", Bind::Text(id.to_owned())), ("workspace_id", Bind::Text(workspace.to_owned())), ("created", Bind::Text(created))];
    row.extend(cols);
    for required in ["name", "task_key", "dynamic_key"] {
        if !row.iter().any(|(c, _)| *c == required) {
            row.push((required, Bind::Text(String::new())));
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_run_field_the_recorder_reads_is_kept_for_the_replay() {
        let read = TEXT_FIELDS.iter().chain(JSON_FIELDS).chain(TIME_FIELDS).chain(INT_FIELDS).chain(&["total_run_time"]);
        for field in read {
            assert!(TASK_RUN_PARTS.iter().any(|(name, _)| name == field), "{field} is read but not kept");
        }
    }
}
