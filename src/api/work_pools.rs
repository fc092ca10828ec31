//! `/work_pools` routes (Prefect's `workers` router): pools, their queues,
//! worker heartbeats, and the scheduled-run polling workers do.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::error::{ApiResult, AppError};
use super::json::AppJson;
use super::AppState;
use crate::commands::work_pools::{self as cmd, WorkPoolCreate, WorkPoolUpdate, WorkQueueCreate, WorkQueueUpdate};
use crate::db::Bind;
use crate::server_model::filters::page;
use crate::server_model::filters::documents::{WORKER_FILTER, WORK_POOL_FILTER, WORK_QUEUE_FILTER};
use crate::server_model::flow_runs::read_flow_run;
use crate::server_model::work_pools::{self as model, ScheduledQuery};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/work_pools/", post(create_pool))
        .route("/work_pools/filter", post(filter_pools))
        .route("/work_pools/count", post(count_pools))
        .route("/work_pools/{name}", get(read_pool).patch(update_pool).delete(delete_pool))
        .route("/work_pools/{name}/get_scheduled_flow_runs", post(scheduled_flow_runs))
        .route("/work_pools/{name}/concurrency_status", post(pool_concurrency_status))
        .route("/work_pools/{name}/queues", post(create_queue))
        .route("/work_pools/{name}/queues/filter", post(filter_queues))
        .route("/work_pools/{name}/queues/{queue}", get(read_queue).patch(update_queue).delete(delete_queue))
        .route("/work_pools/{name}/workers/heartbeat", post(heartbeat))
        .route("/work_pools/{name}/workers/connect", any(super::worker_channel::connect))
        .route("/work_pools/{name}/workers/filter", post(filter_workers))
        .route("/work_pools/{name}/workers/{worker}", delete(delete_worker))
}

/// A document filter body: `{<key>: filter, limit, offset}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct DocFilterBody {
    #[serde(default)]
    pub work_pools: Option<Value>,
    #[serde(default)]
    pub work_queues: Option<Value>,
    #[serde(default)]
    pub workers: Option<Value>,
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub offset: Option<i64>,
}

/// `WHERE` text and binds for a document filter on alias `t`, after `prefix`
/// conditions that use `$1..$n` of `binds`.
pub(crate) fn doc_where(
    dialect: crate::db::Dialect,
    filter: Option<&Value>,
    fields: &[crate::server_model::filters::documents::FieldSpec],
    loc: &[&str],
    prefix: &str,
    binds: Vec<Bind>,
) -> ApiResult<(String, Vec<Bind>)> {
    let mut sql = crate::db::Sql { text: String::new(), binds };
    let cond = crate::server_model::filters::compile_doc_filter(&mut sql, dialect, filter.unwrap_or(&Value::Null), fields, "t", loc).map_err(super::filter_error)?;
    Ok((format!("({prefix}) AND ({cond})"), sql.binds))
}

async fn pool_doc(state: &AppState, name: &str) -> ApiResult<Map<String, Value>> {
    let mut conn = state.db.reader().acquire().await?;
    cmd::require_pool(&mut conn, state.db.dialect, name).await
}

async fn pool_response(state: &AppState, name: &str) -> ApiResult<Value> {
    let doc = pool_doc(state, name).await?;
    let mut conn = state.db.reader().acquire().await?;
    Ok(model::pool_json(&mut conn, state.db.dialect, doc).await?)
}

async fn create_pool(State(state): State<AppState>, AppJson(body): AppJson<WorkPoolCreate>) -> ApiResult<Response> {
    let name = body.name.clone();
    cmd::create_pool(&state.db, body).await?;
    Ok((StatusCode::CREATED, Json(pool_response(&state, &name).await?)).into_response())
}

async fn read_pool(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(pool_response(&state, &name).await?))
}

async fn update_pool(State(state): State<AppState>, Path(name): Path<String>, AppJson(body): AppJson<WorkPoolUpdate>) -> ApiResult<StatusCode> {
    cmd::update_pool(&state.db, name, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_pool(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    cmd::delete_pool(&state.db, name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn filter_pools(State(state): State<AppState>, AppJson(body): AppJson<Option<DocFilterBody>>) -> ApiResult<Json<Vec<Value>>> {
    let body = body.unwrap_or_default();
    let (limit, offset) = page(body.limit, body.offset).map_err(super::filter_error)?;
    let (cond, mut binds) = doc_where(state.db.dialect, body.work_pools.as_ref(), WORK_POOL_FILTER, &["body", "work_pools"], "t.workspace_id = $1", vec![Bind::Text(super::workspace())])?;
    binds.push(Bind::Int(limit));
    binds.push(Bind::Int(offset));
    let order = format!("t.name LIMIT ${} OFFSET ${}", binds.len() - 1, binds.len());
    let mut conn = state.db.reader().acquire().await?;
    let docs = model::select_docs(&mut conn, state.db.dialect, &crate::server_model::documents::WORK_POOL, &cond, &order, &binds).await?;
    let mut out = Vec::with_capacity(docs.len());
    for d in docs {
        out.push(model::pool_json(&mut conn, state.db.dialect, d).await?);
    }
    Ok(Json(out))
}

async fn count_pools(State(state): State<AppState>, AppJson(body): AppJson<Option<DocFilterBody>>) -> ApiResult<Json<i64>> {
    let body = body.unwrap_or_default();
    let (cond, binds) = doc_where(state.db.dialect, body.work_pools.as_ref(), WORK_POOL_FILTER, &["body", "work_pools"], "t.workspace_id = $1", vec![Bind::Text(super::workspace())])?;
    Ok(Json(count(&state, "work_pool", &cond, &binds).await?))
}

pub(crate) async fn count(state: &AppState, table: &str, cond: &str, binds: &[Bind]) -> ApiResult<i64> {
    use sqlx::Row;
    let sql = state.db.q(&format!("SELECT COUNT(*) FROM {table} t WHERE {cond}"));
    let row = crate::db::bind_all(sqlx::query(&sql), binds).fetch_one(state.db.reader()).await?;
    Ok(row.try_get::<i64, _>(0)?)
}

/// `get_scheduled_flow_runs` body.
#[derive(Debug, Default, Deserialize)]
struct ScheduledBody {
    #[serde(default)]
    work_queue_names: Option<Vec<String>>,
    #[serde(default)]
    scheduled_before: Option<String>,
    #[serde(default)]
    scheduled_after: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

fn parse_time(field: &str, v: Option<&str>) -> ApiResult<Option<chrono::DateTime<Utc>>> {
    match v {
        None => Ok(None),
        Some(s) => crate::time::parse_lax_datetime(s)
            .map(Some)
            .ok_or_else(|| AppError::invalid(&["body", field], "Input should be a valid datetime", json!(s))),
    }
}

/// How old a queue's or deployment's recorded `last_polled` may get before a
/// poll records it again (readiness times out after 60 s).
pub(crate) fn poll_record_interval() -> chrono::Duration {
    chrono::Duration::seconds(10)
}

async fn scheduled_flow_runs(State(state): State<AppState>, Path(name): Path<String>, AppJson(body): AppJson<Option<ScheduledBody>>) -> ApiResult<Json<Vec<Value>>> {
    let body = body.unwrap_or_default();
    let (limit, _) = page(body.limit, None).map_err(super::filter_error)?;
    let before = parse_time("scheduled_before", body.scheduled_before.as_deref())?;
    let after = parse_time("scheduled_after", body.scheduled_after.as_deref())?;
    let dialect = state.db.dialect;
    let mut conn = state.db.reader().acquire().await?;
    let pool = cmd::require_pool(&mut conn, dialect, &name).await?;
    let pool_id = pool.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut queues = Vec::new();
    match body.work_queue_names.filter(|n| !n.is_empty()) {
        None => queues = model::queues(&mut conn, dialect, "t.work_pool_id = $1", &[Bind::Text(pool_id.clone())]).await?,
        Some(names) => {
            for qname in names {
                let q = cmd::queue_in_pool(&mut conn, dialect, &pool_id, &qname).await?.ok_or_else(|| {
                    AppError::Detail(StatusCode::NOT_FOUND, format!("Work pool queue '{name}/{qname}' not found."))
                })?;
                queues.push(q);
            }
        }
    }
    let query = ScheduledQuery {
        pool_id: pool_id.clone(),
        pool_paused: pool.get("is_paused").and_then(Value::as_bool).unwrap_or(false),
        pool_limit: pool.get("concurrency_limit").and_then(Value::as_i64),
        queues: queues.clone(),
        scheduled_before: before,
        scheduled_after: after,
        limit,
    };
    let picked = model::scheduled_runs(&mut conn, dialect, &query).await?;
    let now = Utc::now();
    let mut out = Vec::with_capacity(picked.len());
    for (queue_id, run_id) in picked {
        if let Some(run) = read_flow_run(&mut conn, dialect, &run_id, now).await? {
            out.push(json!({"work_pool_id": pool_id, "work_queue_id": queue_id, "flow_run": run}));
        }
    }
    drop(conn);
    let ids: Vec<Uuid> = queues.iter().filter_map(|q| q.get("id").and_then(Value::as_str)).filter_map(|s| Uuid::parse_str(s).ok()).collect();
    if let Err(e) = cmd::mark_polled(&state.db, ids, poll_record_interval()).await {
        // Readiness bookkeeping must not fail the poll itself.
        tracing::warn!(error = %e, "could not record a work queue poll");
    }
    Ok(Json(out))
}

async fn create_queue(State(state): State<AppState>, Path(name): Path<String>, AppJson(body): AppJson<WorkQueueCreate>) -> ApiResult<Response> {
    let id = cmd::create_queue(&state.db, name, body).await?;
    let mut conn = state.db.reader().acquire().await?;
    let q = cmd::queue_by_id(&mut conn, state.db.dialect, id).await?.ok_or_else(|| AppError::not_found("Work queue"))?;
    Ok((StatusCode::CREATED, Json(model::queue_json(&mut conn, state.db.dialect, q).await?)).into_response())
}

async fn pool_queue(state: &AppState, pool: &str, queue: &str) -> ApiResult<(Map<String, Value>, Map<String, Value>)> {
    let mut conn = state.db.reader().acquire().await?;
    let p = cmd::require_pool(&mut conn, state.db.dialect, pool).await?;
    let pid = p.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let q = cmd::queue_in_pool(&mut conn, state.db.dialect, &pid, queue)
        .await?
        .ok_or_else(|| AppError::Detail(StatusCode::NOT_FOUND, format!("Work pool queue '{pool}/{queue}' not found.")))?;
    Ok((p, q))
}

async fn read_queue(State(state): State<AppState>, Path((pool, queue)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let (_, q) = pool_queue(&state, &pool, &queue).await?;
    let mut conn = state.db.reader().acquire().await?;
    Ok(Json(model::queue_json(&mut conn, state.db.dialect, q).await?))
}

async fn update_queue(State(state): State<AppState>, Path((pool, queue)): Path<(String, String)>, AppJson(body): AppJson<WorkQueueUpdate>) -> ApiResult<StatusCode> {
    let (_, q) = pool_queue(&state, &pool, &queue).await?;
    let dialect = state.db.dialect;
    crate::commands::write(&state.db, move |conn| {
        let q = q.clone();
        let body = body.clone();
        Box::pin(async move { cmd::update_queue_in(conn, dialect, q, body).await })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_queue(State(state): State<AppState>, Path((pool, queue)): Path<(String, String)>) -> ApiResult<StatusCode> {
    let (p, q) = pool_queue(&state, &pool, &queue).await?;
    let dialect = state.db.dialect;
    crate::commands::write(&state.db, move |conn| {
        let (p, q) = (p.clone(), q.clone());
        Box::pin(async move { cmd::delete_queue_in(conn, dialect, Some(&p), q).await })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn filter_queues(State(state): State<AppState>, Path(name): Path<String>, AppJson(body): AppJson<Option<DocFilterBody>>) -> ApiResult<Json<Vec<Value>>> {
    let body = body.unwrap_or_default();
    let pool = pool_doc(&state, &name).await?;
    let pid = pool.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    list_queues(&state, body, "t.work_pool_id = $1", vec![Bind::Text(pid)]).await.map(Json)
}

/// Queues matching a `work_queues` filter under `prefix`, by priority.
pub(crate) async fn list_queues(state: &AppState, body: DocFilterBody, prefix: &str, binds: Vec<Bind>) -> ApiResult<Vec<Value>> {
    let (limit, offset) = page(body.limit, body.offset).map_err(super::filter_error)?;
    let (cond, mut binds) = doc_where(state.db.dialect, body.work_queues.as_ref(), WORK_QUEUE_FILTER, &["body", "work_queues"], prefix, binds)?;
    binds.push(Bind::Int(limit));
    binds.push(Bind::Int(offset));
    let order = format!("t.priority, t.name LIMIT ${} OFFSET ${}", binds.len() - 1, binds.len());
    let mut conn = state.db.reader().acquire().await?;
    let docs = model::select_docs(&mut conn, state.db.dialect, &crate::server_model::documents::WORK_QUEUE, &cond, &order, &binds).await?;
    let mut out = Vec::with_capacity(docs.len());
    for d in docs {
        out.push(model::queue_json(&mut conn, state.db.dialect, d).await?);
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeartbeatBody {
    name: String,
    #[serde(default)]
    heartbeat_interval_seconds: Option<i64>,
}

async fn heartbeat(State(state): State<AppState>, Path(name): Path<String>, AppJson(body): AppJson<HeartbeatBody>) -> ApiResult<StatusCode> {
    cmd::worker_heartbeat(&state.db, name, body.name, body.heartbeat_interval_seconds).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn filter_workers(State(state): State<AppState>, Path(name): Path<String>, AppJson(body): AppJson<Option<DocFilterBody>>) -> ApiResult<Json<Vec<Value>>> {
    let body = body.unwrap_or_default();
    let pool = pool_doc(&state, &name).await?;
    let pid = pool.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let (limit, offset) = page(body.limit, body.offset).map_err(super::filter_error)?;
    let (cond, mut binds) = doc_where(state.db.dialect, body.workers.as_ref(), WORKER_FILTER, &["body", "workers"], "t.work_pool_id = $1", vec![Bind::Text(pid)])?;
    binds.push(Bind::Int(limit));
    binds.push(Bind::Int(offset));
    let order = format!("t.last_heartbeat_time DESC LIMIT ${} OFFSET ${}", binds.len() - 1, binds.len());
    let mut conn = state.db.reader().acquire().await?;
    let docs = model::select_docs(&mut conn, state.db.dialect, &crate::server_model::documents::WORKER, &cond, &order, &binds).await?;
    let now = Utc::now();
    Ok(Json(docs.into_iter().map(|d| model::worker_json(d, now)).collect()))
}

async fn delete_worker(State(state): State<AppState>, Path((pool, worker)): Path<(String, String)>) -> ApiResult<StatusCode> {
    cmd::delete_worker(&state.db, pool, worker).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `concurrency_status` bodies: `page` (from 1), `limit`, and for pools
/// `flow_run_limit` (runs listed per queue, 0..=200, default 10).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ConcurrencyStatusBody {
    #[serde(default)]
    pub page: Option<i64>,
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub flow_run_limit: Option<i64>,
}

impl ConcurrencyStatusBody {
    pub(crate) fn paging(&self) -> ApiResult<(i64, i64)> {
        let page = self.page.unwrap_or(1);
        if page < 1 {
            return Err(AppError::invalid(&["body", "page"], "Input should be greater than or equal to 1", json!(page)));
        }
        let (limit, _) = page_limit(self.limit)?;
        Ok((page, limit))
    }
}

fn page_limit(limit: Option<i64>) -> ApiResult<(i64, i64)> {
    page(limit, None).map_err(super::filter_error)
}

/// `POST /work_pools/{name}/concurrency_status`: the pool's slot holders,
/// broken down by queue (queues paginated).
async fn pool_concurrency_status(State(state): State<AppState>, Path(name): Path<String>, AppJson(body): AppJson<Option<ConcurrencyStatusBody>>) -> ApiResult<Json<Value>> {
    let body = body.unwrap_or_default();
    let (page_no, limit) = body.paging()?;
    let flow_run_limit = body.flow_run_limit.unwrap_or(10);
    if !(0..=200).contains(&flow_run_limit) {
        return Err(AppError::invalid(&["body", "flow_run_limit"], "Input should be between 0 and 200", json!(flow_run_limit)));
    }
    let dialect = state.db.dialect;
    let mut conn = state.db.reader().acquire().await?;
    let pool = cmd::pool_by_name(&mut conn, dialect, &name)
        .await?
        .ok_or_else(|| AppError::Detail(StatusCode::NOT_FOUND, format!("Work pool '{name}' not found.")))?;
    let pool_id = pool.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let now = Utc::now();
    let (active, _) = model::slot_holders(&mut conn, dialect, "work_pool_id", &pool_id, 0, 0, now).await?;
    let all_queues = model::queues(&mut conn, dialect, "t.work_pool_id = $1", &[Bind::Text(pool_id)]).await?;
    let count = all_queues.len() as i64;
    let mut queues = Vec::new();
    for q in all_queues.into_iter().skip(((page_no - 1) * limit) as usize).take(limit as usize) {
        let qid = q.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let (held, runs) = model::slot_holders(&mut conn, dialect, "work_queue_id", &qid, flow_run_limit, 0, now).await?;
        queues.push(json!({
            "queue_id": qid, "queue_name": q.get("name"), "active_slots": held,
            "concurrency_limit": q.get("concurrency_limit"), "flow_runs": runs, "flow_run_count": held,
        }));
    }
    Ok(Json(json!({
        "active_slots": active, "concurrency_limit": pool.get("concurrency_limit"), "queues": queues,
        "count": count, "limit": limit, "pages": model::pages(count, limit), "page": page_no,
    })))
}
