//! Flow rows.

use sqlx::AnyConnection;

use super::{exec, json_text, payload, update_columns, ProjectionError};
use crate::db::{Bind, Dialect};
use crate::eventlog::RecordedEvent;
use crate::server_events::{FlowCreated, RowUpdated, FLOW_CREATED, FLOW_DELETED, FLOW_UPDATED};
use crate::time::fmt_ts;

pub(super) async fn apply(conn: &mut AnyConnection, dialect: Dialect, event: &RecordedEvent) -> Result<(), ProjectionError> {
    let id = event.stream.id.to_string();
    match event.event_type.as_str() {
        FLOW_CREATED => {
            let FlowCreated { flow } = payload(event)?;
            let created = fmt_ts(flow.created);
            exec(
                conn,
                dialect,
                "INSERT INTO flow (id, workspace_id, created, updated, name, tags, labels, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    Bind::Text(id),
                    Bind::Text(event.workspace_id.to_string()),
                    Bind::Text(created.clone()),
                    Bind::Text(created),
                    Bind::Text(flow.name),
                    json_text(&flow.tags),
                    json_text(&flow.labels),
                    Bind::Int(event.stream_version),
                ],
            )
            .await?;
        }
        FLOW_UPDATED => {
            let RowUpdated { changes, updated } = payload(event)?;
            update_columns(conn, dialect, "flow", &id, &changes, &["tags", "labels"], fmt_ts(updated), event.stream_version).await?;
        }
        FLOW_DELETED => {
            // Prefect cascades a flow's deletion to its runs.
            for sql in [
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
