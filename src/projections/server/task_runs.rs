//! Task-run rows created or orchestrated through the REST API.

use sqlx::AnyConnection;

use super::{exec, insert_row, insert_state, json_text, opt_ts, opt_uuid, payload, task_run_recorder, update_columns, update_row, Cols, ProjectionError};
use crate::db::{Bind, Dialect};
use crate::eventlog::RecordedEvent;
use crate::server_events::{StateSet, TaskRunCreated, TaskRunRecord, RowUpdated, TASK_RUN_CREATED, TASK_RUN_DELETED, TASK_RUN_UPDATED};
use crate::time::fmt_ts;

pub(super) async fn apply(conn: &mut AnyConnection, dialect: Dialect, event: &RecordedEvent) -> Result<(), ProjectionError> {
    let id = event.stream.id.to_string();
    match event.event_type.as_str() {
        TASK_RUN_CREATED => {
            let TaskRunCreated { task_run } = payload(event)?;
            insert_row(conn, dialect, "task_run", created_row(event, task_run), false).await?;
        }
        TASK_RUN_UPDATED => {
            let RowUpdated { changes, updated } = payload(event)?;
            update_columns(conn, dialect, "task_run", &id, &changes, UPDATABLE, fmt_ts(updated), event.stream_version).await?;
        }
        TASK_RUN_DELETED => {
            exec(conn, dialect, "DELETE FROM task_run_state WHERE task_run_id = $1", &[Bind::Text(id.clone())]).await?;
            exec(conn, dialect, "DELETE FROM task_run WHERE id = $1", &[Bind::Text(id)]).await?;
        }
        _ if event.payload.get("run").is_some() => {
            let set: StateSet = payload(event)?;
            apply_state(conn, dialect, event, &id, &set).await?;
        }
        _ => task_run_recorder::apply(conn, dialect, event).await?,
    }
    Ok(())
}

async fn apply_state(conn: &mut AnyConnection, dialect: Dialect, event: &RecordedEvent, id: &str, set: &StateSet) -> Result<(), sqlx::Error> {
    insert_state(conn, dialect, "task_run_state", "task_run_id", id, &set.state, fmt_ts(event.occurred)).await?;
    update_row(conn, dialect, "task_run", id, state_columns(event, set)).await?;
    if let Some(row) = cache_row(event, &set.state) {
        insert_row(conn, dialect, "task_run_state_cache", row, false).await?;
    }
    Ok(())
}

/// Columns a `task-run.updated` event may change.
pub(super) const UPDATABLE: &[&str] = &["name"];

/// The task_run row a `task-run.created` event inserts.
pub(super) fn created_row(event: &RecordedEvent, r: TaskRunRecord) -> Cols {
    let created = fmt_ts(r.created);
    vec![
        ("id", Bind::Text(event.stream.id.to_string())),
        ("workspace_id", Bind::Text(event.workspace_id.to_string())),
        ("created", Bind::Text(created.clone())),
        ("updated", Bind::Text(created)),
        ("name", Bind::Text(r.name)),
        ("flow_run_id", opt_uuid(r.flow_run_id)),
        ("task_key", Bind::Text(r.task_key)),
        ("dynamic_key", Bind::Text(r.dynamic_key)),
        ("cache_key", r.cache_key.into()),
        ("cache_expiration", opt_ts(r.cache_expiration)),
        ("task_version", r.task_version.into()),
        ("empirical_policy", json_text(&r.empirical_policy)),
        ("tags", json_text(&r.tags)),
        ("labels", json_text(&r.labels)),
        ("task_inputs", json_text(&r.task_inputs)),
        ("version", Bind::Int(event.stream_version)),
    ]
}

/// What a state event sets on its task_run row. `flow_run_run_count`,
/// `cache_key` and `cache_expiration` are set only when the event carries
/// them (otherwise the row keeps its value).
pub(super) fn state_columns(event: &RecordedEvent, set: &StateSet) -> Cols {
    let (state, run) = (&set.state, &set.run);
    let mut cols = super::flow_runs::state_columns(event, set);
    if let Some(n) = run.flow_run_run_count {
        cols.push(("flow_run_run_count", Bind::Int(n)));
    }
    if let Some(key) = &state.state_details.cache_key {
        cols.push(("cache_key", Bind::Text(key.clone())));
    }
    if let Some(exp) = state.state_details.cache_expiration {
        cols.push(("cache_expiration", Bind::Text(fmt_ts(exp))));
    }
    cols
}

/// CacheInsertion: a COMPLETED state with a cache key becomes cacheable.
pub(super) fn cache_row(event: &RecordedEvent, state: &crate::orchestration::states::State) -> Option<Cols> {
    if state.state_type != crate::orchestration::states::StateType::Completed {
        return None;
    }
    let key = state.state_details.cache_key.as_ref()?;
    Some(vec![
        ("cache_key", Bind::Text(key.clone())),
        ("cache_expiration", opt_ts(state.state_details.cache_expiration)),
        ("task_run_state_id", Bind::Text(state.id.to_string())),
        ("created", Bind::Text(fmt_ts(event.occurred))),
    ])
}
