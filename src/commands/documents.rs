//! Appending document events (see `server_model::documents`): each command
//! for work pools, queues, workers, deployments and schedules ends in one of
//! these, inside its write transaction.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::AnyConnection;
use uuid::Uuid;

use super::record as append;
use crate::api::error::{ApiResult, AppError};
use crate::db::Dialect;
use crate::eventlog::{ExpectedVersion, NewEvent, StreamRef, StreamType};
use crate::server_events::{document_event_type, DocumentCreated, DocumentDeleted, DocumentUpdated};

/// The name a stream type's document events carry (`work-pool`, ...).
fn kind(stream_type: StreamType) -> &'static str {
    match stream_type {
        StreamType::WorkPool => "work-pool",
        StreamType::WorkQueue => "work-queue",
        StreamType::Worker => "worker",
        StreamType::Deployment => "deployment",
        StreamType::DeploymentSchedule => "deployment-schedule",
        StreamType::Variable => "variable",
        StreamType::FlowRunInput => "flow-run-input",
        StreamType::SavedSearch => "saved-search",
        StreamType::ConcurrencyLimit => "concurrency-limit",
        StreamType::ConcurrencyLease => "concurrency-lease",
        StreamType::TaskRunDelivery => "task-run-delivery",
        StreamType::Artifact => "artifact",
        StreamType::ArtifactCollection => "artifact-collection",
        StreamType::BlockType => "block-type",
        StreamType::BlockSchema => "block-schema",
        StreamType::BlockDocument => "block-document",
        StreamType::Configuration => "configuration",
        StreamType::Automation => "automation",
        _ => "document",
    }
}

fn to_value<T: serde::Serialize>(v: T) -> ApiResult<Value> {
    serde_json::to_value(v).map_err(|e| AppError::Internal(e.into()))
}

pub async fn create(
    conn: &mut AnyConnection,
    dialect: Dialect,
    stream_type: StreamType,
    id: Uuid,
    record: Map<String, Value>,
    now: DateTime<Utc>,
    event: Option<Value>,
) -> ApiResult<()> {
    let payload = to_value(DocumentCreated { record, created: now, event })?;
    let e = NewEvent::new(Uuid::now_v7(), document_event_type(kind(stream_type), "created"), now, payload);
    append(conn, dialect, StreamRef::new(stream_type, id), ExpectedVersion::NoStream, vec![e]).await?;
    Ok(())
}

/// Appends an update; an empty change set appends nothing.
pub async fn update(
    conn: &mut AnyConnection,
    dialect: Dialect,
    stream_type: StreamType,
    id: Uuid,
    changes: Map<String, Value>,
    now: DateTime<Utc>,
    event: Option<Value>,
) -> ApiResult<()> {
    if changes.is_empty() && event.is_none() {
        return Ok(());
    }
    let payload = to_value(DocumentUpdated { changes, updated: now, event })?;
    let e = NewEvent::new(Uuid::now_v7(), document_event_type(kind(stream_type), "updated"), now, payload);
    append(conn, dialect, StreamRef::new(stream_type, id), ExpectedVersion::Any, vec![e]).await?;
    Ok(())
}

/// Appends a change that may carry two Prefect events, as Prefect emits
/// them: the non-status fields with `updated_event`, then the status with
/// `status_event` (a log event carries at most one feed event). Without a
/// status event it is one plain [`update`].
#[allow(clippy::too_many_arguments)]
pub async fn update_with_status(
    conn: &mut AnyConnection,
    dialect: Dialect,
    stream_type: StreamType,
    id: Uuid,
    mut changes: Map<String, Value>,
    now: DateTime<Utc>,
    updated_event: Option<Value>,
    status_event: Option<Value>,
) -> ApiResult<()> {
    let Some(status_event) = status_event else {
        return update(conn, dialect, stream_type, id, changes, now, updated_event).await;
    };
    let status = changes.remove("status");
    update(conn, dialect, stream_type, id, changes, now, updated_event).await?;
    let status_changes = status.map(|s| Map::from_iter([("status".to_owned(), s)])).unwrap_or_default();
    update(conn, dialect, stream_type, id, status_changes, now, Some(status_event)).await
}

pub async fn delete(
    conn: &mut AnyConnection,
    dialect: Dialect,
    stream_type: StreamType,
    id: Uuid,
    now: DateTime<Utc>,
    event: Option<Value>,
) -> ApiResult<()> {
    let payload = to_value(DocumentDeleted { event })?;
    let e = NewEvent::new(Uuid::now_v7(), document_event_type(kind(stream_type), "deleted"), now, payload);
    append(conn, dialect, StreamRef::new(stream_type, id), ExpectedVersion::Any, vec![e]).await?;
    Ok(())
}

/// Reads one document row by a `WHERE` clause over `$n` binds.
pub async fn find(
    conn: &mut AnyConnection,
    dialect: Dialect,
    table: &crate::server_model::documents::Table,
    cond: &str,
    binds: &[crate::db::Bind],
) -> ApiResult<Option<Map<String, Value>>> {
    let sql = format!("SELECT {} FROM {} t WHERE {cond}", table.select_list("t"), table.name);
    let sql = dialect.rewrite(&sql);
    let row = crate::db::bind_all(sqlx::query(&sql), binds).fetch_optional(&mut *conn).await?;
    Ok(row.map(|r| table.row_json(&r)))
}
