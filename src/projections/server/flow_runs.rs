//! Flow-run rows and their states.

use sqlx::AnyConnection;

use super::{exec, insert_row, insert_state, json_text, opt_ts, opt_uuid, payload, update_columns, update_row, Cols, ProjectionError};
use crate::db::{Bind, Dialect};
use crate::eventlog::RecordedEvent;
use crate::server_events::{FlowRunCreated, FlowRunRecord, RowUpdated, StateSet, FLOW_RUN_CREATED, FLOW_RUN_DELETED, FLOW_RUN_UPDATED};
use crate::time::fmt_ts;

/// Columns a `flow-run.updated` event may change.
pub(crate) const UPDATABLE: &[&str] = &[
    "name",
    "flow_version",
    "parameters",
    "empirical_policy",
    "tags",
    "labels",
    "infrastructure_pid",
    "job_variables",
];

pub(super) async fn apply(conn: &mut AnyConnection, dialect: Dialect, event: &RecordedEvent) -> Result<(), ProjectionError> {
    let id = event.stream.id.to_string();
    match event.event_type.as_str() {
        FLOW_RUN_CREATED => {
            let FlowRunCreated { flow_run } = payload(event)?;
            insert_row(conn, dialect, "flow_run", created_row(event, flow_run), false).await?;
        }
        FLOW_RUN_UPDATED => {
            let RowUpdated { changes, updated } = payload(event)?;
            update_columns(conn, dialect, "flow_run", &id, &changes, UPDATABLE, fmt_ts(updated), event.stream_version).await?;
        }
        FLOW_RUN_DELETED => {
            for sql in [
                "DELETE FROM flow_run_input WHERE flow_run_id = $1",
                "DELETE FROM flow_run_state WHERE flow_run_id = $1",
                "DELETE FROM task_run_state WHERE task_run_id IN (SELECT id FROM task_run WHERE flow_run_id = $1)",
                "DELETE FROM task_run WHERE flow_run_id = $1",
                "DELETE FROM flow_run WHERE id = $1",
            ] {
                exec(conn, dialect, sql, &[Bind::Text(id.clone())]).await?;
            }
        }
        _ => {
            let set: StateSet = payload(event)?;
            apply_state(conn, dialect, event, &id, &set).await?;
        }
    }
    Ok(())
}

async fn apply_state(conn: &mut AnyConnection, dialect: Dialect, event: &RecordedEvent, id: &str, set: &StateSet) -> Result<(), sqlx::Error> {
    insert_state(conn, dialect, "flow_run_state", "flow_run_id", id, &set.state, fmt_ts(event.occurred)).await?;
    update_row(conn, dialect, "flow_run", id, state_columns(event, set)).await
}

/// The flow_run row a `flow-run.created` event inserts.
pub(super) fn created_row(event: &RecordedEvent, r: FlowRunRecord) -> Cols {
    let created = fmt_ts(r.created);
    vec![
        ("id", Bind::Text(event.stream.id.to_string())),
        ("workspace_id", Bind::Text(event.workspace_id.to_string())),
        ("created", Bind::Text(created.clone())),
        ("updated", Bind::Text(created)),
        ("name", Bind::Text(r.name)),
        ("flow_id", Bind::Text(r.flow_id.to_string())),
        ("deployment_id", opt_uuid(r.deployment_id)),
        ("deployment_version", r.deployment_version.into()),
        ("work_queue_id", opt_uuid(r.work_queue_id)),
        ("work_queue_name", r.work_queue_name.into()),
        ("work_pool_id", opt_uuid(r.work_pool_id)),
        ("work_pool_name", r.work_pool_name.into()),
        ("flow_version", r.flow_version.into()),
        ("parameters", json_text(&r.parameters)),
        ("idempotency_key", r.idempotency_key.into()),
        ("context", json_text(&r.context)),
        ("empirical_policy", json_text(&r.empirical_policy)),
        ("tags", json_text(&r.tags)),
        ("labels", json_text(&r.labels)),
        ("parent_task_run_id", opt_uuid(r.parent_task_run_id)),
        ("auto_scheduled", Bind::Int(r.auto_scheduled as i64)),
        ("infrastructure_document_id", opt_uuid(r.infrastructure_document_id)),
        ("created_by", if r.created_by.is_null() { Bind::Null } else { json_text(&r.created_by) }),
        ("job_variables", json_text(&r.job_variables)),
        ("version", Bind::Int(event.stream_version)),
    ]
}

/// What a state event sets on its flow_run row (the state row itself is
/// [`super::state_row`]). Task runs keep the same bookkeeping and add to it
/// (`task_runs::state_columns`).
pub(super) fn state_columns(event: &RecordedEvent, set: &StateSet) -> Cols {
    let (state, run) = (&set.state, &set.run);
    vec![
        ("state_id", Bind::Text(state.id.to_string())),
        ("state_type", Bind::Text(state.state_type.as_str().to_owned())),
        ("state_name", Bind::Text(state.name.clone())),
        ("state_timestamp", Bind::Text(fmt_ts(state.timestamp))),
        ("run_count", Bind::Int(run.run_count)),
        ("start_time", opt_ts(run.start_time)),
        ("end_time", opt_ts(run.end_time)),
        ("total_run_time", Bind::Float(run.total_run_time)),
        ("expected_start_time", opt_ts(run.expected_start_time)),
        ("next_scheduled_start_time", opt_ts(run.next_scheduled_start_time)),
        ("empirical_policy", json_text(&run.empirical_policy)),
        ("updated", Bind::Text(fmt_ts(event.occurred))),
        ("version", Bind::Int(event.stream_version)),
    ]
}
