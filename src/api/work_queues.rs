//! `/work_queues` routes: work queues addressed by id (and, for the legacy
//! agent pool, by name).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::error::{ApiResult, AppError};
use super::json::{path_id, AppJson};
use super::work_pools::{list_queues, poll_record_interval, ConcurrencyStatusBody, DocFilterBody};
use super::AppState;
use crate::commands::work_pools::{self as cmd, WorkQueueCreate, WorkQueueUpdate, DEFAULT_AGENT_POOL};
use crate::db::Bind;
use crate::server_model::flow_runs::read_flow_run;
use crate::server_model::work_pools::{self as model, ScheduledQuery};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/work_queues/", post(create))
        .route("/work_queues/filter", post(filter))
        .route("/work_queues/name/{name}", get(read_by_name))
        .route("/work_queues/{id}", get(read).patch(update).delete(delete))
        .route("/work_queues/{id}/get_runs", post(get_runs))
        .route("/work_queues/{id}/status", get(status))
        .route("/work_queues/{id}/concurrency_status", post(concurrency_status))
}

fn not_found() -> AppError {
    AppError::Detail(StatusCode::NOT_FOUND, "Work queue not found".into())
}

async fn queue_doc(state: &AppState, id: Uuid) -> ApiResult<Map<String, Value>> {
    let mut conn = state.db.reader().acquire().await?;
    cmd::queue_by_id(&mut conn, state.db.dialect, id).await?.ok_or_else(not_found)
}

async fn respond(state: &AppState, q: Map<String, Value>) -> ApiResult<Value> {
    let mut conn = state.db.reader().acquire().await?;
    Ok(model::queue_json(&mut conn, state.db.dialect, q).await?)
}

/// Creates a queue in Prefect's legacy `default-agent-pool`.
async fn create(State(state): State<AppState>, AppJson(body): AppJson<WorkQueueCreate>) -> ApiResult<Response> {
    cmd::validate_queue_create(&body)?;
    let dialect = state.db.dialect;
    let id = crate::commands::write(&state.db, move |conn| {
        let body = body.clone();
        Box::pin(async move {
            crate::eventlog::lock_key(conn, dialect, &format!("work-pool-name:{DEFAULT_AGENT_POOL}")).await?;
            let pool = match cmd::pool_by_name(conn, dialect, DEFAULT_AGENT_POOL).await? {
                Some(p) => p,
                None => {
                    let create = cmd::WorkPoolCreate {
                        name: DEFAULT_AGENT_POOL.into(),
                        description: None,
                        pool_type: "prefect-agent".into(),
                        base_job_template: Map::new(),
                        is_paused: false,
                        concurrency_limit: None,
                        storage_configuration: None,
                    };
                    cmd::insert_pool(conn, dialect, create, Utc::now()).await?;
                    cmd::require_pool(conn, dialect, DEFAULT_AGENT_POOL).await?
                }
            };
            cmd::create_queue_in(conn, dialect, cmd::id_of(&pool)?, body).await
        })
    })
    .await?;
    let q = queue_doc(&state, id).await?;
    Ok((StatusCode::CREATED, Json(respond(&state, q).await?)).into_response())
}

async fn read(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let q = queue_doc(&state, path_id(&id)?).await?;
    Ok(Json(respond(&state, q).await?))
}

async fn read_by_name(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let mut conn = state.db.reader().acquire().await?;
    let docs = model::queues(
        &mut conn,
        state.db.dialect,
        "t.name = $1 AND t.work_pool_id IN (SELECT id FROM work_pool WHERE name = $2)",
        &[Bind::Text(name), Bind::Text(DEFAULT_AGENT_POOL.into())],
    )
    .await?;
    drop(conn);
    let q = docs.into_iter().next().ok_or_else(not_found)?;
    Ok(Json(respond(&state, q).await?))
}

async fn update(State(state): State<AppState>, Path(id): Path<String>, AppJson(body): AppJson<WorkQueueUpdate>) -> ApiResult<StatusCode> {
    cmd::update_queue(&state.db, path_id(&id)?, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let q = queue_doc(&state, path_id(&id)?).await?;
    let pool_id = q.get("work_pool_id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut conn = state.db.reader().acquire().await?;
    let pool = crate::commands::documents::find(&mut conn, state.db.dialect, &crate::server_model::documents::WORK_POOL, "t.id = $1", &[Bind::Text(pool_id)]).await?;
    drop(conn);
    let dialect = state.db.dialect;
    crate::commands::write(&state.db, move |conn| {
        let (q, pool) = (q.clone(), pool.clone());
        Box::pin(async move { cmd::delete_queue_in(conn, dialect, pool.as_ref(), q).await })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn filter(State(state): State<AppState>, AppJson(body): AppJson<Option<DocFilterBody>>) -> ApiResult<Json<Vec<Value>>> {
    let body = body.unwrap_or_default();
    list_queues(&state, body, "t.workspace_id = $1", vec![Bind::Text(super::workspace())]).await.map(Json)
}

#[derive(Debug, Default, Deserialize)]
struct GetRunsBody {
    #[serde(default)]
    scheduled_before: Option<String>,
    #[serde(default)]
    agent_id: Option<Uuid>,
    #[serde(default)]
    limit: Option<i64>,
}

/// `POST /work_queues/{id}/get_runs`: the queue's scheduled runs (marks it polled).
async fn get_runs(State(state): State<AppState>, Path(id): Path<String>, AppJson(body): AppJson<Option<GetRunsBody>>) -> ApiResult<Json<Vec<Value>>> {
    let id = path_id(&id)?;
    let body = body.unwrap_or_default();
    let _ = body.agent_id;
    let (limit, _) = crate::server_model::filters::page(body.limit, None).map_err(super::filter_error)?;
    let before = match body.scheduled_before.as_deref() {
        None => None,
        Some(s) => Some(crate::time::parse_lax_datetime(s).ok_or_else(|| AppError::invalid(&["body", "scheduled_before"], "Input should be a valid datetime", json!(s)))?),
    };
    let q = queue_doc(&state, id).await?;
    let pool_id = q.get("work_pool_id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let query = ScheduledQuery { pool_id, pool_paused: false, pool_limit: None, queues: vec![q], scheduled_before: before, scheduled_after: None, limit };
    let mut conn = state.db.reader().acquire().await?;
    let picked = model::scheduled_runs(&mut conn, state.db.dialect, &query).await?;
    let now = Utc::now();
    let mut out = Vec::new();
    for (_, run_id) in picked {
        if let Some(run) = read_flow_run(&mut conn, state.db.dialect, &run_id, now).await? {
            out.push(run);
        }
    }
    drop(conn);
    if let Err(e) = cmd::mark_polled(&state.db, vec![id], poll_record_interval()).await {
        tracing::warn!(error = %e, "could not record a work queue poll");
    }
    Ok(Json(out))
}

/// `GET /work_queues/{id}/status`: `WorkQueueStatusDetail` under Prefect's
/// default health policy (no late runs, polled within 60 s).
async fn status(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let q = queue_doc(&state, path_id(&id)?).await?;
    let qid = q.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    use sqlx::Row;
    let late: i64 = sqlx::query(&state.db.q("SELECT COUNT(*) FROM flow_run WHERE work_queue_id = $1 AND state_type = 'SCHEDULED' AND state_name = 'Late'"))
        .bind(qid)
        .fetch_one(state.db.reader())
        .await?
        .try_get(0)?;
    let last_polled = q.get("last_polled").cloned().unwrap_or(Value::Null);
    let polled_recently = last_polled.as_str().and_then(crate::time::parse_ts).is_some_and(|t| (Utc::now() - t).num_seconds() <= 60);
    Ok(Json(json!({
        "healthy": late <= 0 && polled_recently,
        "late_runs_count": late,
        "last_polled": last_polled,
        "health_check_policy": {"maximum_late_runs": 0, "maximum_seconds_since_last_polled": 60},
    })))
}

/// `POST /work_queues/{id}/concurrency_status`: the queue's slot holders, paginated.
async fn concurrency_status(State(state): State<AppState>, Path(id): Path<String>, AppJson(body): AppJson<Option<ConcurrencyStatusBody>>) -> ApiResult<Json<Value>> {
    let body = body.unwrap_or_default();
    let (page, limit) = body.paging()?;
    let q = queue_doc(&state, path_id(&id)?).await?;
    let qid = q.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut conn = state.db.reader().acquire().await?;
    let (active, runs) = model::slot_holders(&mut conn, state.db.dialect, "work_queue_id", &qid, limit, (page - 1) * limit, Utc::now()).await?;
    Ok(Json(json!({
        "active_slots": active, "concurrency_limit": q.get("concurrency_limit"), "flow_runs": runs,
        "count": active, "limit": limit, "pages": model::pages(active, limit), "page": page,
    })))
}
