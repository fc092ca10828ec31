//! `/block_documents` routes (Prefect's `block_documents` router). Reads
//! return each document with its nested blocks resolved and its secrets
//! hidden unless `include_secrets` is set.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiResult, AppError};
use super::json::{from_value, path_id, AppJson};
use super::AppState;
use crate::commands::block_documents::{self as cmd, BlockDocumentCreate, BlockDocumentUpdate};
use crate::db::{Bind, Sql};
use crate::server_model::blocks::{self, ReadError};
use crate::server_model::filters::{block_documents_where, block_documents_where_exactly, page};
use crate::server_model::sorts::BlockDocumentSort;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/block_documents/", post(create))
        .route("/block_documents/filter", post(filter))
        .route("/block_documents/count", post(count))
        .route("/block_documents/{id}", axum::routing::get(read).patch(update).delete(delete))
}

/// The `include_secrets` query parameter, parsed as pydantic parses a bool.
pub(crate) fn include_secrets(query: &HashMap<String, String>) -> ApiResult<bool> {
    let Some(raw) = query.get("include_secrets") else { return Ok(false) };
    match raw.to_ascii_lowercase().as_str() {
        "1" | "on" | "t" | "true" | "y" | "yes" => Ok(true),
        "0" | "off" | "f" | "false" | "n" | "no" => Ok(false),
        _ => Err(AppError::Validation {
            detail: vec![json!({
                "type": "bool_parsing",
                "loc": ["query", "include_secrets"],
                "msg": "Input should be a valid boolean, unable to interpret input",
                "input": raw,
            })],
            body: Value::Null,
        }),
    }
}

/// Documents matching `cond`, in `order` (which may carry paging), as JSON.
pub(crate) async fn documents_json(state: &AppState, cond: &str, order: &str, binds: &[Bind], include_secrets: bool) -> ApiResult<Vec<Value>> {
    let key = state.db.block_key().map_err(AppError::Internal)?;
    let mut conn = state.db.reader().acquire().await?;
    blocks::documents_where(&mut conn, state.db.dialect, &key, cond, order, binds, include_secrets).await.map_err(|e| match e {
        ReadError::Db(e) => e.into(),
        other => AppError::Internal(other.into()),
    })
}

async fn by_id(state: &AppState, id: uuid::Uuid, include_secrets: bool) -> ApiResult<Value> {
    let filter = json!({"id": {"any_": [id]}});
    let mut sql = Sql::new("");
    let cond = block_documents_where_exactly(&mut sql, state.db.dialect, &super::workspace(), &filter, None, None).map_err(super::filter_error)?;
    documents_json(state, &cond, "t.id", &sql.binds, include_secrets).await?.into_iter().next().ok_or_else(cmd::not_found)
}

async fn create(State(state): State<AppState>, AppJson(raw): AppJson<Value>) -> ApiResult<Response> {
    cmd::validate_create(&raw).map_err(|e| e.with_body(&raw))?;
    let body: BlockDocumentCreate = from_value(raw)?;
    let id = cmd::create(&state.db, body).await?;
    Ok((StatusCode::CREATED, Json(by_id(&state, id, false).await?)).into_response())
}

async fn read(State(state): State<AppState>, Path(id): Path<String>, Query(q): Query<HashMap<String, String>>) -> ApiResult<Json<Value>> {
    let include = include_secrets(&q)?;
    Ok(Json(by_id(&state, path_id(&id)?, include).await?))
}

async fn update(State(state): State<AppState>, Path(id): Path<String>, AppJson(body): AppJson<BlockDocumentUpdate>) -> ApiResult<StatusCode> {
    cmd::update(&state.db, path_id(&id)?, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    cmd::delete(&state.db, path_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `/block_documents/filter` and `/count` bodies (other keys are ignored).
#[derive(Debug, Default, Deserialize)]
struct FilterBody {
    #[serde(default)]
    block_documents: Option<Value>,
    #[serde(default)]
    block_types: Option<Value>,
    #[serde(default)]
    block_schemas: Option<Value>,
    #[serde(default)]
    include_secrets: Option<bool>,
    #[serde(default)]
    sort: Option<BlockDocumentSort>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

fn filter_where(state: &AppState, body: &FilterBody) -> ApiResult<(String, Vec<Bind>)> {
    let mut sql = Sql::new("");
    let cond = block_documents_where(
        &mut sql,
        state.db.dialect,
        &super::workspace(),
        body.block_documents.as_ref(),
        body.block_types.as_ref(),
        body.block_schemas.as_ref(),
    )
    .map_err(super::filter_error)?;
    Ok((cond, sql.binds))
}

async fn filter(State(state): State<AppState>, AppJson(body): AppJson<Option<FilterBody>>) -> ApiResult<Json<Vec<Value>>> {
    let body = body.unwrap_or_default();
    let (limit, offset) = page(body.limit, body.offset).map_err(super::filter_error)?;
    let (cond, binds) = filter_where(&state, &body)?;
    let order = body.sort.unwrap_or_default().order_by("t");
    let order = format!("{order} LIMIT {limit} OFFSET {offset}");
    Ok(Json(documents_json(&state, &cond, &order, &binds, body.include_secrets.unwrap_or(false)).await?))
}

async fn count(State(state): State<AppState>, AppJson(body): AppJson<Option<FilterBody>>) -> ApiResult<Json<i64>> {
    let body = body.unwrap_or_default();
    let (cond, binds) = filter_where(&state, &body)?;
    Ok(Json(super::work_pools::count(&state, "block_document", &cond, &binds).await?))
}
