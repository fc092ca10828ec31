//! `/block_types` routes (Prefect's `block_types` router), including the
//! two reads of a type's documents by slug that `Block.load("type/name")`
//! uses.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

use super::block_documents::{documents_json, include_secrets};
use super::error::{ApiResult, AppError};
use super::json::{from_value, path_id, AppJson};
use super::AppState;
use crate::commands::block_types::{self as cmd, BlockTypeCreate, BlockTypeUpdate};
use crate::db::Sql;
use crate::server_model::blocks;
use crate::server_model::filters::{block_documents_where, block_documents_where_exactly, block_types_where, page};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/block_types/", post(create))
        .route("/block_types/filter", post(filter))
        .route("/block_types/install_system_block_types", post(install_system_block_types))
        .route("/block_types/slug/{slug}", get(read_by_slug))
        .route("/block_types/slug/{slug}/block_documents", get(documents_of_type))
        .route("/block_types/slug/{slug}/block_documents/name/{name}", get(document_by_name))
        .route("/block_types/{id}", get(read).patch(update).delete(delete))
}

/// A block type's JSON is its row.
async fn by_id(state: &AppState, id: uuid::Uuid) -> ApiResult<Value> {
    let mut conn = state.db.reader().acquire().await?;
    cmd::by_id(&mut conn, state.db.dialect, id).await?.map(Value::Object).ok_or_else(cmd::not_found)
}

async fn by_slug(state: &AppState, slug: &str) -> ApiResult<Value> {
    let mut conn = state.db.reader().acquire().await?;
    cmd::by_slug(&mut conn, state.db.dialect, slug).await?.map(Value::Object).ok_or_else(cmd::not_found)
}

async fn create(State(state): State<AppState>, AppJson(raw): AppJson<Value>) -> ApiResult<Response> {
    let body: BlockTypeCreate = from_value(raw.clone())?;
    let id = cmd::create(&state.db, body).await.map_err(|e| e.with_body(&raw))?;
    Ok((StatusCode::CREATED, Json(by_id(&state, id).await?)).into_response())
}

async fn read(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(by_id(&state, path_id(&id)?).await?))
}

async fn read_by_slug(State(state): State<AppState>, Path(slug): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(by_slug(&state, &slug).await?))
}

async fn update(State(state): State<AppState>, Path(id): Path<String>, AppJson(body): AppJson<BlockTypeUpdate>) -> ApiResult<StatusCode> {
    cmd::update(&state.db, path_id(&id)?, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    cmd::delete(&state.db, path_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `/block_types/filter` body (other keys are ignored, as FastAPI does).
#[derive(Debug, Default, Deserialize)]
struct FilterBody {
    #[serde(default)]
    block_types: Option<Value>,
    #[serde(default)]
    block_schemas: Option<Value>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

/// Block types by name.
async fn filter(State(state): State<AppState>, AppJson(body): AppJson<Option<FilterBody>>) -> ApiResult<Json<Vec<Value>>> {
    let body = body.unwrap_or_default();
    let (limit, offset) = page(body.limit, body.offset).map_err(super::filter_error)?;
    let mut sql = Sql::new("");
    let cond = block_types_where(&mut sql, state.db.dialect, &super::workspace(), body.block_types.as_ref(), body.block_schemas.as_ref()).map_err(super::filter_error)?;
    let order = format!("t.name, t.id LIMIT {limit} OFFSET {offset}");
    let mut conn = state.db.reader().acquire().await?;
    Ok(Json(blocks::types_where(&mut conn, state.db.dialect, &cond, &order, &sql.binds).await?))
}

/// Prefect installs its own block types (Secret, JSON, webhooks...) from
/// their Python classes; this server has no such classes to read them
/// from. The client registers every type it saves, so this is only needed
/// for a catalogue of types nobody has used yet.
async fn install_system_block_types() -> AppError {
    AppError::Detail(StatusCode::NOT_IMPLEMENTED, "Installing Prefect's system block types is not supported by this server; saving a block registers its type.".into())
}

/// The named documents of a type (anonymous ones left out).
async fn documents_of_type(State(state): State<AppState>, Path(slug): Path<String>, Query(q): Query<HashMap<String, String>>) -> ApiResult<Json<Vec<Value>>> {
    let include = include_secrets(&q)?;
    let block_type = by_slug(&state, &slug).await?;
    let filter = serde_json::json!({"block_type_id": {"any_": [block_type["id"]]}});
    let mut sql = Sql::new("");
    let cond = block_documents_where(&mut sql, state.db.dialect, &super::workspace(), Some(&filter), None, None).map_err(super::filter_error)?;
    Ok(Json(documents_json(&state, &cond, "t.name, t.id", &sql.binds, include).await?))
}

/// `Block.load("slug/name")`: one document, anonymous or not.
async fn document_by_name(State(state): State<AppState>, Path((slug, name)): Path<(String, String)>, Query(q): Query<HashMap<String, String>>) -> ApiResult<Json<Value>> {
    let include = include_secrets(&q)?;
    let documents = serde_json::json!({"name": {"any_": [name]}});
    let types = serde_json::json!({"slug": {"any_": [slug]}});
    let mut sql = Sql::new("");
    let cond = block_documents_where_exactly(&mut sql, state.db.dialect, &super::workspace(), &documents, Some(&types), None).map_err(super::filter_error)?;
    let found = documents_json(&state, &cond, "t.name, t.id LIMIT 1", &sql.binds, include).await?;
    found.into_iter().next().map(Json).ok_or_else(|| AppError::Detail(StatusCode::NOT_FOUND, "Block document not found".into()))
}
