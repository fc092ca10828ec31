//! Document rows (work pools, work queues, workers, deployments, deployment
//! schedules, variables, flow-run inputs, saved searches, blocks...): one generic insert / update / delete driven by the table
//! descriptors in `server_model::documents`, plus the cascades Prefect's
//! foreign keys perform when a document is deleted.

use sqlx::AnyConnection;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{exec, insert_row, payload, update_row, Cols, ProjectionError};
use crate::db::{Bind, Dialect};
use crate::eventlog::{RecordedEvent, StreamType};
use crate::server_events::{DocumentCreated, DocumentUpdated};
use crate::server_model::documents::{bind, Table, ARTIFACT, AUTOMATION, ARTIFACT_COLLECTION, BLOCK_DOCUMENT, BLOCK_SCHEMA, BLOCK_TYPE, CONFIGURATION, CONCURRENCY_LEASE, CONCURRENCY_LIMIT, DEPLOYMENT, DEPLOYMENT_SCHEDULE, FLOW_RUN_INPUT, SAVED_SEARCH, TASK_RUN_DELIVERY, VARIABLE, WORKER, WORK_POOL, WORK_QUEUE};
use crate::time::fmt_ts;

pub(super) fn table_of(stream_type: StreamType) -> Option<&'static Table> {
    Some(match stream_type {
        StreamType::WorkPool => &WORK_POOL,
        StreamType::WorkQueue => &WORK_QUEUE,
        StreamType::Worker => &WORKER,
        StreamType::Deployment => &DEPLOYMENT,
        StreamType::DeploymentSchedule => &DEPLOYMENT_SCHEDULE,
        StreamType::Variable => &VARIABLE,
        StreamType::FlowRunInput => &FLOW_RUN_INPUT,
        StreamType::SavedSearch => &SAVED_SEARCH,
        StreamType::Automation => &AUTOMATION,
        StreamType::ConcurrencyLimit => &CONCURRENCY_LIMIT,
        StreamType::ConcurrencyLease => &CONCURRENCY_LEASE,
        StreamType::TaskRunDelivery => &TASK_RUN_DELIVERY,
        StreamType::Artifact => &ARTIFACT,
        StreamType::ArtifactCollection => &ARTIFACT_COLLECTION,
        StreamType::BlockType => &BLOCK_TYPE,
        StreamType::BlockSchema => &BLOCK_SCHEMA,
        StreamType::BlockDocument => &BLOCK_DOCUMENT,
        StreamType::Configuration => &CONFIGURATION,
        _ => return None,
    })
}

pub(super) async fn apply(conn: &mut AnyConnection, dialect: Dialect, table: &Table, event: &RecordedEvent) -> Result<(), ProjectionError> {
    let id = event.stream.id.to_string();
    let action = event.event_type.rsplit('.').next().unwrap_or_default();
    match action {
        "created" => {
            let DocumentCreated { record, created, .. } = payload(event)?;
            insert_row(conn, dialect, table.name, created_row(table, event, &record, created), false).await?;
        }
        "updated" => {
            let DocumentUpdated { changes, updated, .. } = payload(event)?;
            update_row(conn, dialect, table.name, &id, updated_columns(table, event, &changes, updated)).await?;
        }
        "deleted" => {
            for sql in cascade(table) {
                exec(conn, dialect, sql, &[Bind::Text(id.clone())]).await?;
            }
            exec(conn, dialect, &format!("DELETE FROM {} WHERE id = $1", table.name), &[Bind::Text(id)]).await?;
        }
        other => tracing::warn!(event_type = %event.event_type, action = other, "document event with no projection"),
    }
    Ok(())
}

/// The row a document's `created` event inserts: the bookkeeping columns,
/// then each field the record carries.
pub(super) fn created_row(table: &Table, event: &RecordedEvent, record: &Map<String, Value>, created: DateTime<Utc>) -> Cols {
    let created = fmt_ts(created);
    let mut cols: Cols = vec![
        ("id", Bind::Text(event.stream.id.to_string())),
        ("workspace_id", Bind::Text(event.workspace_id.to_string())),
        ("created", Bind::Text(created.clone())),
        ("updated", Bind::Text(created)),
        ("version", Bind::Int(event.stream_version)),
    ];
    for field in table.fields {
        if let Some(v) = record.get(field.json) {
            cols.push((field.column, bind(field.kind, v)));
        }
    }
    cols
}

/// What a document's `updated` event sets: `updated`, `version`, then each
/// change that names a field of the table.
pub(super) fn updated_columns(table: &Table, event: &RecordedEvent, changes: &Map<String, Value>, updated: DateTime<Utc>) -> Cols {
    let mut cols: Cols = vec![("updated", Bind::Text(fmt_ts(updated))), ("version", Bind::Int(event.stream_version))];
    for (key, value) in changes {
        if let Some(field) = table.field(key) {
            cols.push((field.column, bind(field.kind, value)));
        }
    }
    cols
}

/// What Prefect's foreign keys do when a row of `table` (id = `$1`) goes.
fn cascade(table: &Table) -> &'static [&'static str] {
    match table.name {
        "work_pool" => &[
            "UPDATE deployment SET work_queue_id = NULL WHERE work_queue_id IN (SELECT id FROM work_queue WHERE work_pool_id = $1)",
            "UPDATE flow_run SET work_queue_id = NULL, work_pool_id = NULL, work_pool_name = NULL WHERE work_pool_id = $1",
            "DELETE FROM worker WHERE work_pool_id = $1",
            "DELETE FROM work_queue WHERE work_pool_id = $1",
        ],
        "work_queue" => &[
            "UPDATE deployment SET work_queue_id = NULL WHERE work_queue_id = $1",
            "UPDATE flow_run SET work_queue_id = NULL, work_pool_id = NULL, work_pool_name = NULL WHERE work_queue_id = $1",
        ],
        "deployment" => &[
            "DELETE FROM deployment_schedule WHERE deployment_id = $1",
            "UPDATE flow_run SET deployment_id = NULL WHERE deployment_id = $1",
        ],
        // A block type takes its schemas and documents with it, and a
        // schema its documents (Prefect's `ondelete="cascade"`).
        "block_type" => &["DELETE FROM block_document WHERE block_type_id = $1", "DELETE FROM block_schema WHERE block_type_id = $1"],
        "block_schema" => &["DELETE FROM block_document WHERE block_schema_id = $1"],
        _ => &[],
    }
}
