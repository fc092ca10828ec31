//! What a worker-channel connection reads and writes. Every write goes
//! through the REST routes' commands (pool creation, pool update, worker
//! heartbeat), so the channel changes the server exactly as the REST calls
//! it replaces would, and every change is in the event log.

use axum::http::StatusCode;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::decide::{self, CloseReason, QueueRef};
use super::frames::{self, Hello};
use crate::api::error::AppError;
use crate::commands::work_pools::{self as cmd, WorkPoolCreate, WorkPoolUpdate};
use crate::db::{Bind, Db};
use crate::server_model::work_pools as model;

/// Why a connection is being closed, and a detail for the logs.
pub type Refusal = (CloseReason, &'static str);

/// The pool as last sent to the worker.
#[derive(Debug, Clone)]
pub struct PoolView {
    pub id: Uuid,
    /// The row's `updated`: a heartbeat that finds it moved sends a fresh snapshot.
    pub updated: Value,
    pub paused: bool,
    /// `WorkPoolResponse`, as `GET /work_pools/{name}` returns it.
    pub json: Value,
}

/// A connection that passed setup: the `worker.ready.v1` frame to send and
/// the pool it describes.
#[derive(Debug, Clone)]
pub struct Ready {
    pub frame: Value,
    pub pool: PoolView,
}

/// A request the commands refused is the worker's fault (a protocol error,
/// as Prefect closes on an `HTTPException` during setup); anything else is
/// a server-side failure the worker may retry.
fn refusal(err: &AppError, detail: &'static str) -> Refusal {
    let worker_fault = match err {
        AppError::Validation { .. } => true,
        AppError::Detail(status, _) => status.is_client_error(),
        _ => false,
    };
    (if worker_fault { CloseReason::ProtocolError } else { CloseReason::TransientServerError }, detail)
}

async fn reader(db: &Db) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, Refusal> {
    db.reader().acquire().await.map_err(|_| (CloseReason::TransientServerError, "database_unavailable"))
}

async fn read_pool(db: &Db, name: &str) -> Result<Option<Map<String, Value>>, Refusal> {
    let mut conn = reader(db).await?;
    cmd::pool_by_name(&mut conn, db.dialect, name).await.map_err(|e| refusal(&e, "work_pool_read_failed"))
}

/// The pool's current snapshot view, or `None` once it is gone (the row and
/// its active slots read on one connection).
pub async fn pool_view(db: &Db, name: &str) -> Result<Option<PoolView>, Refusal> {
    let mut conn = reader(db).await?;
    let Some(pool) = cmd::pool_by_name(&mut conn, db.dialect, name).await.map_err(|e| refusal(&e, "work_pool_read_failed"))? else {
        return Ok(None);
    };
    let id = cmd::id_of(&pool).map_err(|e| refusal(&e, "work_pool_read_failed"))?;
    let updated = pool.get("updated").cloned().unwrap_or(Value::Null);
    let paused = pool.get("is_paused").and_then(Value::as_bool).unwrap_or(false);
    let json = model::pool_json(&mut conn, db.dialect, pool).await.map_err(|_| (CloseReason::TransientServerError, "work_pool_read_failed"))?;
    Ok(Some(PoolView { id, updated, paused, json }))
}

async fn pool_queues(db: &Db, pool_id: Uuid) -> Result<Vec<QueueRef>, Refusal> {
    let mut conn = reader(db).await?;
    let queues = model::queues(&mut conn, db.dialect, "t.work_pool_id = $1", &[Bind::Text(pool_id.to_string())])
        .await
        .map_err(|_| (CloseReason::TransientServerError, "work_queue_read_failed"))?;
    Ok(queues
        .iter()
        .filter_map(|q| {
            let id = q.get("id")?.as_str()?.parse().ok()?;
            Some((id, q.get("name")?.as_str()?.to_owned()))
        })
        .collect())
}

/// Creates the pool a hello asks for, as `POST /work_pools/` would; a pool
/// another worker created meanwhile is simply used.
async fn create_pool(db: &Db, name: &str, hello: &Hello) -> Result<Map<String, Value>, Refusal> {
    decide::may_create_pool(hello, name)?;
    let body = WorkPoolCreate {
        name: name.to_owned(),
        description: None,
        pool_type: hello.worker_type.clone(),
        base_job_template: hello.default_base_job_template.clone(),
        is_paused: false,
        concurrency_limit: None,
        storage_configuration: None,
    };
    match cmd::create_pool(db, body).await {
        Ok(_) | Err(AppError::Detail(StatusCode::CONFLICT, _)) => {}
        Err(e) => return Err(refusal(&e, "work_pool_create_failed")),
    }
    read_pool(db, name).await?.ok_or((CloseReason::TransientServerError, "work_pool_create_failed"))
}

/// Sets up a connection after its hello, in Prefect's order: the version,
/// the pool (created if asked and allowed), the queues, the worker's default
/// base job template for a pool that has none, the first heartbeat, and the
/// initial snapshot.
pub async fn open(db: &Db, pool_name: &str, hello: &Hello) -> Result<Ready, Refusal> {
    let version = decide::select_version(&hello.supported_channel_versions).map_err(|r| (r, "no_mutually_supported_version"))?;
    let pool = match read_pool(db, pool_name).await? {
        Some(pool) => pool,
        None => create_pool(db, pool_name, hello).await?,
    };
    let pool_id = cmd::id_of(&pool).map_err(|e| refusal(&e, "work_pool_read_failed"))?;
    let resolved = decide::resolve_queues(&hello.work_queue_names, &pool_queues(db, pool_id).await?)?;
    let has_template = pool.get("base_job_template").and_then(Value::as_object).is_some_and(|t| !t.is_empty());
    if !has_template && !hello.default_base_job_template.is_empty() {
        cmd::validate_pool_defaults(&hello.default_base_job_template).map_err(|e| refusal(&e, "work_pool_update_failed"))?;
        let update = WorkPoolUpdate {
            description: None,
            is_paused: None,
            base_job_template: Some(hello.default_base_job_template.clone()),
            concurrency_limit: None,
            storage_configuration: None,
        };
        cmd::update_pool(db, pool_name.to_owned(), update).await.map_err(|e| refusal(&e, "work_pool_update_failed"))?;
    }
    cmd::worker_heartbeat(db, pool_name.to_owned(), hello.worker_name.clone(), Some(hello.heartbeat_interval_seconds))
        .await
        .map_err(|_| (CloseReason::HeartbeatPersistenceFailed, "worker_channel_initial_heartbeat_failed"))?;
    let pool = pool_view(db, pool_name).await?.ok_or((CloseReason::AuthorizationFailed, "work_pool_not_found"))?;
    let snapshot = frames::snapshot_payload(1, "initial", pool.json.clone());
    let frame = frames::server_frame("worker.ready.v1", decide::ready_payload(hello, version, &resolved, snapshot));
    Ok(Ready { frame, pool })
}

/// Records a heartbeat received over the channel, as the REST heartbeat
/// does, and returns the pool's `updated` afterwards.
pub async fn heartbeat(db: &Db, pool_name: &str, worker_name: &str, interval: i64) -> Result<Value, Refusal> {
    let failed = (CloseReason::HeartbeatPersistenceFailed, "worker_channel_heartbeat_failed");
    cmd::worker_heartbeat(db, pool_name.to_owned(), worker_name.to_owned(), Some(interval)).await.map_err(|_| failed)?;
    let pool = read_pool(db, pool_name).await?.ok_or(failed)?;
    Ok(pool.get("updated").cloned().unwrap_or(Value::Null))
}
