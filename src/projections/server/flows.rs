//! Flow rows.

use sqlx::AnyConnection;

use super::{exec, insert_row, json_text, payload, update_columns, Cols, ProjectionError};
use crate::db::{Bind, Dialect};
use crate::eventlog::RecordedEvent;
use crate::server_events::{FlowCreated, FlowRecord, RowUpdated, FLOW_CREATED, FLOW_DELETED, FLOW_UPDATED};
use crate::time::fmt_ts;

/// The flow row a `prefect.flow.created` event inserts.
pub(super) fn created_row(event: &RecordedEvent, flow: FlowRecord) -> Cols {
    let created = fmt_ts(flow.created);
    vec![
        ("id", Bind::Text(event.stream.id.to_string())),
        ("workspace_id", Bind::Text(event.workspace_id.to_string())),
        ("created", Bind::Text(created.clone())),
        ("updated", Bind::Text(created)),
        ("name", Bind::Text(flow.name)),
        ("tags", json_text(&flow.tags)),
        ("labels", json_text(&flow.labels)),
        ("version", Bind::Int(event.stream_version)),
    ]
}

/// Columns a `prefect.flow.updated` event may change.
pub(super) const UPDATABLE: &[&str] = &["tags", "labels"];

pub(super) async fn apply(conn: &mut AnyConnection, dialect: Dialect, event: &RecordedEvent) -> Result<(), ProjectionError> {
    let id = event.stream.id.to_string();
    match event.event_type.as_str() {
        FLOW_CREATED => {
            let FlowCreated { flow } = payload(event)?;
            insert_row(conn, dialect, "flow", created_row(event, flow), false).await?;
        }
        FLOW_UPDATED => {
            let RowUpdated { changes, updated } = payload(event)?;
            update_columns(conn, dialect, "flow", &id, &changes, UPDATABLE, fmt_ts(updated), event.stream_version).await?;
        }
        FLOW_DELETED => {
            // Prefect cascades a flow's deletion to its runs.
            for sql in [
                "DELETE FROM flow_run_input WHERE flow_run_id IN (SELECT id FROM flow_run WHERE flow_id = $1)",
                "DELETE FROM flow_run_state WHERE flow_run_id IN (SELECT id FROM flow_run WHERE flow_id = $1)",
                "DELETE FROM task_run_state WHERE task_run_id IN (SELECT id FROM task_run WHERE flow_run_id IN (SELECT id FROM flow_run WHERE flow_id = $1))",
                "DELETE FROM task_run WHERE flow_run_id IN (SELECT id FROM flow_run WHERE flow_id = $1)",
                "DELETE FROM flow_run WHERE flow_id = $1",
                "DELETE FROM deployment_schedule WHERE deployment_id IN (SELECT id FROM deployment WHERE flow_id = $1)",
                "DELETE FROM deployment WHERE flow_id = $1",
                "DELETE FROM flow WHERE id = $1",
            ] {
                exec(conn, dialect, sql, &[Bind::Text(id.clone())]).await?;
            }
        }
        other => tracing::warn!(event_type = other, "flow stream event with no projection"),
    }
    Ok(())
}
