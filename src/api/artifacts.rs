//! `/artifacts` routes (Prefect's `artifacts` router): artifacts and the
//! latest artifact of each key (`commands::artifacts`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

use super::error::ApiResult;
use super::json::{path_id, AppJson};
use super::AppState;
use crate::commands::artifacts::{self as cmd, ArtifactCreate, ArtifactUpdate};
use crate::db::Sql;
use crate::server_model::documents::{Table, ARTIFACT, ARTIFACT_COLLECTION};
use crate::server_model::filters::{artifacts_where, page, ArtifactFilterBody};
use crate::server_model::sorts::ArtifactSort;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/artifacts/", post(create))
        .route("/artifacts/filter", post(filter))
        .route("/artifacts/count", post(count))
        .route("/artifacts/latest/filter", post(filter_latest))
        .route("/artifacts/latest/count", post(count_latest))
        .route("/artifacts/{id}/latest", get(read_latest))
        .route("/artifacts/{id}", get(read).patch(update).delete(delete))
}

async fn create(State(state): State<AppState>, AppJson(body): AppJson<ArtifactCreate>) -> ApiResult<Response> {
    let id = cmd::create(&state.db, body).await?;
    let mut conn = state.db.reader().acquire().await?;
    let doc = cmd::artifact_by_id(&mut conn, state.db.dialect, id).await?.ok_or_else(cmd::not_found)?;
    Ok((StatusCode::CREATED, Json(Value::Object(doc))).into_response())
}

async fn read(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = path_id(&id)?;
    let mut conn = state.db.reader().acquire().await?;
    let doc = cmd::artifact_by_id(&mut conn, state.db.dialect, id).await?.ok_or_else(cmd::not_found)?;
    Ok(Json(Value::Object(doc)))
}

/// `GET /artifacts/{key}/latest`: the key's collection in the `Artifact`
/// shape, as Prefect answers it (the collection's id, no `latest_id`).
async fn read_latest(State(state): State<AppState>, Path(key): Path<String>) -> ApiResult<Json<Value>> {
    let mut conn = state.db.reader().acquire().await?;
    let mut doc = cmd::collection_by_key(&mut conn, state.db.dialect, &key).await?.ok_or_else(cmd::not_found)?;
    doc.remove("latest_id");
    Ok(Json(Value::Object(doc)))
}

async fn update(State(state): State<AppState>, Path(id): Path<String>, AppJson(body): AppJson<ArtifactUpdate>) -> ApiResult<StatusCode> {
    cmd::update(&state.db, path_id(&id)?, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    cmd::delete(&state.db, path_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `SELECT` (or `COUNT`) over `table` for a filter body.
fn query(state: &AppState, body: &ArtifactFilterBody, table: &Table, select: bool) -> ApiResult<Sql> {
    let collection = table.name == ARTIFACT_COLLECTION.name;
    let mut sql = Sql::default();
    let cond = artifacts_where(body, collection, state.db.dialect, &mut sql, &super::workspace()).map_err(super::filter_error)?;
    if !select {
        sql.text = format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {} t WHERE {cond}", table.name);
        return Ok(sql);
    }
    let order = ArtifactSort::parse_or_default(body.sort.as_deref()).map_err(super::filter_error)?.order_by("t");
    let (limit, offset) = page(body.limit, body.offset).map_err(super::filter_error)?;
    sql.text = format!("SELECT {} FROM {} t WHERE {cond} ORDER BY {order} LIMIT {limit} OFFSET {offset}", table.select_list("t"), table.name);
    Ok(sql)
}

async fn rows(state: &AppState, body: Option<ArtifactFilterBody>, table: &Table) -> ApiResult<Json<Vec<Value>>> {
    let sql = query(state, &body.unwrap_or_default(), table, true)?;
    let rows = crate::db::bind_all(sqlx::query(&state.db.q(&sql.text)), &sql.binds).fetch_all(state.db.reader()).await?;
    Ok(Json(rows.iter().map(|r| Value::Object(table.row_json(r))).collect()))
}

async fn total(state: &AppState, body: Option<ArtifactFilterBody>, table: &Table) -> ApiResult<Json<i64>> {
    use sqlx::Row;
    let sql = query(state, &body.unwrap_or_default(), table, false)?;
    let row = crate::db::bind_all(sqlx::query(&state.db.q(&sql.text)), &sql.binds).fetch_one(state.db.reader()).await?;
    Ok(Json(row.try_get::<i64, _>(0)?))
}

async fn filter(State(state): State<AppState>, AppJson(body): AppJson<Option<ArtifactFilterBody>>) -> ApiResult<Json<Vec<Value>>> {
    rows(&state, body, &ARTIFACT).await
}

async fn filter_latest(State(state): State<AppState>, AppJson(body): AppJson<Option<ArtifactFilterBody>>) -> ApiResult<Json<Vec<Value>>> {
    rows(&state, body, &ARTIFACT_COLLECTION).await
}

async fn count(State(state): State<AppState>, AppJson(body): AppJson<Option<ArtifactFilterBody>>) -> ApiResult<Json<i64>> {
    total(&state, body, &ARTIFACT).await
}

async fn count_latest(State(state): State<AppState>, AppJson(body): AppJson<Option<ArtifactFilterBody>>) -> ApiResult<Json<i64>> {
    total(&state, body, &ARTIFACT_COLLECTION).await
}
