//! `/block_schemas` routes (Prefect's `block_schemas` router).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

use super::error::ApiResult;
use super::json::{path_id, AppJson};
use super::AppState;
use crate::commands::block_schemas::{self as cmd, BlockSchemaCreate};
use crate::db::Sql;
use crate::server_model::blocks;
use crate::server_model::filters::{block_schemas_where, page};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/block_schemas/", post(create))
        .route("/block_schemas/filter", post(filter))
        .route("/block_schemas/checksum/{checksum}", get(read_by_checksum))
        .route("/block_schemas/{id}", get(read).delete(delete))
}

/// A schema row (from the command lookups) as Prefect's JSON, or 404.
async fn schema_json(conn: &mut sqlx::AnyConnection, state: &AppState, doc: Option<serde_json::Map<String, Value>>) -> ApiResult<Value> {
    let doc = doc.ok_or_else(cmd::not_found)?;
    Ok(blocks::schemas_json(conn, state.db.dialect, vec![doc]).await?.remove(0))
}

async fn by_id(state: &AppState, id: uuid::Uuid) -> ApiResult<Value> {
    let mut conn = state.db.reader().acquire().await?;
    let doc = cmd::by_id(&mut conn, state.db.dialect, id).await?;
    schema_json(&mut conn, state, doc).await
}

/// 201 with the new schema, or 200 with the one already registered under
/// the same checksum and version.
async fn create(State(state): State<AppState>, AppJson(body): AppJson<BlockSchemaCreate>) -> ApiResult<Response> {
    let (id, created) = cmd::create(&state.db, body).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(by_id(&state, id).await?)).into_response())
}

async fn read(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(by_id(&state, path_id(&id)?).await?))
}

/// The newest schema with the checksum (and `?version=`, when given).
async fn read_by_checksum(State(state): State<AppState>, Path(checksum): Path<String>, Query(q): Query<HashMap<String, String>>) -> ApiResult<Json<Value>> {
    let mut conn = state.db.reader().acquire().await?;
    let doc = cmd::by_checksum(&mut conn, state.db.dialect, &checksum, q.get("version").map(String::as_str)).await?;
    Ok(Json(schema_json(&mut conn, &state, doc).await?))
}

async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    cmd::delete(&state.db, path_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `/block_schemas/filter` body (other keys are ignored).
#[derive(Debug, Default, Deserialize)]
struct FilterBody {
    #[serde(default)]
    block_schemas: Option<Value>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

/// Schemas, newest first.
async fn filter(State(state): State<AppState>, AppJson(body): AppJson<Option<FilterBody>>) -> ApiResult<Json<Vec<Value>>> {
    let body = body.unwrap_or_default();
    let (limit, offset) = page(body.limit, body.offset).map_err(super::filter_error)?;
    let mut sql = Sql::new("");
    let cond = block_schemas_where(&mut sql, state.db.dialect, &super::workspace(), body.block_schemas.as_ref()).map_err(super::filter_error)?;
    let order = format!("t.created DESC, t.id DESC LIMIT {limit} OFFSET {offset}");
    let mut conn = state.db.reader().acquire().await?;
    Ok(Json(blocks::schemas_where(&mut conn, state.db.dialect, &cond, &order, &sql.binds).await?))
}
