//! Commands: each API write runs here as one transaction that takes the
//! stream lock, reads the current read-model row, decides (pure
//! orchestration code), appends the resulting events and projects them
//! inline. Handlers stay thin; the log stays the source of truth.

pub mod artifacts;
pub mod automations;
pub mod block_documents;
pub mod block_schemas;
pub mod block_types;
pub mod client_events;
pub mod concurrency_limits;
pub mod flow_run_inputs;
pub mod flow_runs;
pub mod deployments;
pub mod documents;
pub mod flows;
pub mod ingest_queue;
pub mod logs;
pub mod names;
pub mod saved_searches;
pub mod storage_defaults;
pub mod schedule_patch;
pub mod tag_concurrency_limits;
pub mod task_run_delivery;
pub mod task_runs;
pub mod variables;
pub mod work_pools;

use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::AnyConnection;

use crate::api::error::{ApiResult, AppError};
use crate::db::{Db, Dialect};
use crate::eventlog::{self, ExpectedVersion, NewEvent, RecordedEvent, StreamRef};
use crate::projections;

/// The workspace every command writes in (single-tenant mode).
pub(crate) fn ws() -> String {
    crate::eventlog::DEFAULT_WORKSPACE.to_string()
}

/// A body field that was sent, even as `null` (`None` = not sent), for the
/// update models where only the fields sent change.
pub(crate) fn present<'de, T: serde::Deserialize<'de>, D: serde::Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Runs `op` in a write transaction and commits it, retrying transient
/// failures (deadlocks, serialization failures, a busy database) a few times.
pub async fn write<T, F>(db: &Db, mut op: F) -> ApiResult<T>
where
    F: for<'c> FnMut(&'c mut AnyConnection) -> BoxFuture<'c, ApiResult<T>>,
{
    let mut attempt = 0u32;
    loop {
        let result = async {
            let mut tx = db.begin_write().await?;
            let value = op(&mut tx).await?;
            tx.commit().await?;
            db.appended.notify_waiters();
            Ok::<T, AppError>(value)
        }
        .await;
        match result {
            Err(AppError::Unavailable(cause)) if attempt < 8 => {
                attempt += 1;
                tracing::debug!(attempt, cause = %cause, "retrying write transaction");
                tokio::time::sleep(Duration::from_millis(5 * 2u64.pow(attempt))).await;
            }
            other => return other,
        }
    }
}

/// Appends a client event that is a stream of its own (keyed by its id) and
/// applies it to the server model. `false` when it was already in the log.
pub async fn record_singleton(conn: &mut AnyConnection, dialect: Dialect, stream: StreamRef, event: NewEvent) -> ApiResult<bool> {
    let Some(recorded) = eventlog::append_singleton(conn, dialect, stream, event).await? else {
        return Ok(false);
    };
    projections::server::apply(conn, dialect, &recorded).await?;
    Ok(true)
}

/// Appends events to a stream and applies them to the server model, in the
/// caller's transaction. Returns the events actually appended (resends of an
/// event id already in the log are skipped).
pub async fn record(
    conn: &mut AnyConnection,
    dialect: Dialect,
    stream: StreamRef,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> ApiResult<Vec<RecordedEvent>> {
    let recorded = eventlog::append(conn, dialect, stream, expected, events).await?;
    for event in &recorded {
        projections::server::apply(conn, dialect, event).await?;
    }
    Ok(recorded)
}

/// Reads `null` as the type's default, as pydantic does for the optional
/// collections Prefect's client sends as `null` (e.g. `job_variables`).
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
