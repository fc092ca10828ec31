//! `/concurrency_limits` (Prefect's v1 `concurrency_limits` router): tag
//! limits, served over the v2 `tag:<tag>` limits and their leases
//! (`commands::tag_concurrency_limits`).

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::body::{limit_offset, Fields};
use super::error::{ApiResult, AppError};
use super::json::{path_id, AppJson};
use super::AppState;
use crate::commands::tag_concurrency_limits::{self as cmd, by_tag, not_found, tag_limit, v1_json};
use crate::server_model::concurrency_limits::{list, LimitRef};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/concurrency_limits/", post(create))
        .route("/concurrency_limits/filter", post(filter))
        .route("/concurrency_limits/increment", post(increment))
        .route("/concurrency_limits/decrement", post(decrement))
        .route("/concurrency_limits/tag/{tag}", get(read_by_tag).delete(delete_by_tag))
        .route("/concurrency_limits/tag/{tag}/reset", post(reset))
        .route("/concurrency_limits/{id}", get(read).delete(delete_by_id))
}

/// `ConcurrencyLimitCreate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    tag: String,
    concurrency_limit: i64,
}

async fn read_json(state: &AppState, which: &LimitRef) -> ApiResult<Value> {
    let mut conn = state.db.reader().acquire().await?;
    let row = tag_limit(&mut conn, state.db.dialect, which).await?.ok_or_else(not_found)?;
    v1_json(&mut conn, state.db.dialect, &row).await
}

/// 201 with the limit when it was created, 200 when the tag's limit existed.
async fn create(State(state): State<AppState>, AppJson(body): AppJson<Create>) -> ApiResult<Response> {
    let (id, created) = cmd::upsert(&state.db, body.tag, body.concurrency_limit).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(read_json(&state, &LimitRef::Id(id)).await?)).into_response())
}

async fn read(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(read_json(&state, &LimitRef::Id(path_id(&id)?)).await?))
}

async fn read_by_tag(State(state): State<AppState>, Path(tag): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(read_json(&state, &by_tag(&tag)).await?))
}

/// Tag limits by tag, `limit` (up to the server's default) and `offset`.
async fn filter(State(state): State<AppState>, body: axum::body::Bytes) -> ApiResult<Json<Vec<Value>>> {
    let (limit, offset) = limit_offset(&body, state.settings.default_limit)?;
    let mut conn = state.db.reader().acquire().await?;
    let rows = list(&mut conn, state.db.dialect, true, limit, offset).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(v1_json(&mut conn, state.db.dialect, row).await?);
    }
    Ok(Json(out))
}

/// `slot_override: Optional[List[UUID]] = Body(None, embed=True)`.
async fn reset(State(state): State<AppState>, Path(tag): Path<String>, body: axum::body::Bytes) -> ApiResult<Json<Value>> {
    let mut fields = Fields::parse(&body)?;
    let overrides = match fields.map.get("slot_override") {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(_) => fields.uuids("slot_override"),
    };
    fields.check()?;
    cmd::reset(&state.db, tag, overrides.unwrap_or_default()).await?;
    Ok(Json(Value::Null))
}

async fn delete_by_id(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    cmd::delete(&state.db, LimitRef::Id(path_id(&id)?)).await?;
    Ok(Json(Value::Null))
}

async fn delete_by_tag(State(state): State<AppState>, Path(tag): Path<String>) -> ApiResult<Json<Value>> {
    cmd::delete(&state.db, by_tag(&tag)).await?;
    Ok(Json(Value::Null))
}

/// `names` (tags) and `task_run_id`, both required.
fn slot_body(bytes: &[u8]) -> ApiResult<(Vec<String>, Uuid)> {
    let mut fields = Fields::parse(bytes)?;
    let names = match fields.map.get("names").cloned() {
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Some(items.iter().filter_map(Value::as_str).map(str::to_owned).collect::<Vec<_>>()),
        Some(other) => {
            return Err(AppError::Validation {
                detail: vec![json!({"type": "list_type", "loc": ["body", "names"], "msg": "Input should be a valid list of strings", "input": other})],
                body: Value::Object(fields.map.clone()),
            })
        }
        None => None,
    };
    if names.is_none() {
        return Err(AppError::Validation {
            detail: vec![json!({"type": "missing", "loc": ["body", "names"], "msg": "Field required", "input": null})],
            body: Value::Object(fields.map.clone()),
        });
    }
    let run = fields.uuids_one("task_run_id");
    fields.check()?;
    Ok((names.unwrap_or_default(), run.unwrap_or_default()))
}

async fn increment(State(state): State<AppState>, body: axum::body::Bytes) -> ApiResult<Response> {
    let (tags, run) = slot_body(&body)?;
    match cmd::increment(&state.db, tags, run).await? {
        Ok(limits) => Ok(Json(limits).into_response()),
        Err(refused) => {
            let mut response = (StatusCode::LOCKED, Json(json!({"detail": refused.detail}))).into_response();
            if refused.retry {
                let wait = state.settings.services.tag_concurrency_slot_wait.as_secs_f64();
                let shown = if wait.fract() == 0.0 { format!("{}", wait as i64) } else { format!("{wait:?}") };
                if let Ok(v) = shown.parse() {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            Ok(response)
        }
    }
}

async fn decrement(State(state): State<AppState>, body: axum::body::Bytes) -> ApiResult<Json<Vec<Value>>> {
    let (tags, run) = slot_body(&body)?;
    Ok(Json(cmd::decrement(&state.db, tags, run, state.settings.services.concurrency_waits()).await?))
}
