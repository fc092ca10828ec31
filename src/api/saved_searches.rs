//! `/saved_searches` routes (Prefect's `saved_searches` router): the UI's
//! saved filter views (`commands::saved_searches`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::Value;

use super::error::{ApiResult, AppError};
use super::json::{path_id, AppJson};
use super::AppState;
use crate::commands::saved_searches::{self as cmd, SavedSearchCreate};
use crate::db::Bind;
use crate::server_model::documents::SAVED_SEARCH;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/saved_searches/", put(upsert))
        .route("/saved_searches/filter", post(filter))
        .route("/saved_searches/{id}", get(read).delete(delete))
}

async fn read_json(state: &AppState, id: uuid::Uuid) -> ApiResult<Value> {
    let mut conn = state.db.reader().acquire().await?;
    let found = crate::commands::documents::find(&mut conn, state.db.dialect, &SAVED_SEARCH, "t.id = $1", &[Bind::Text(id.to_string())]).await?;
    found.map(Value::Object).ok_or_else(|| AppError::Detail(StatusCode::NOT_FOUND, "Saved search not found".into()))
}

/// 201 with the search when it was created, 200 when an existing one (same
/// name) got the new filters.
async fn upsert(State(state): State<AppState>, AppJson(body): AppJson<SavedSearchCreate>) -> ApiResult<Response> {
    let (id, created) = cmd::upsert(&state.db, body).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(read_json(&state, id).await?)).into_response())
}

async fn read(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(read_json(&state, path_id(&id)?).await?))
}

/// `limit` (up to the server's default limit) and `offset`, by name.
async fn filter(State(state): State<AppState>, body: axum::body::Bytes) -> ApiResult<Json<Vec<Value>>> {
    let (limit, offset) = super::body::limit_offset(&body, state.settings.default_limit)?;
    let sql = state.db.q(&format!("SELECT {} FROM saved_search t WHERE t.workspace_id = $1 ORDER BY t.name LIMIT $2 OFFSET $3", SAVED_SEARCH.select_list("t")));
    let rows = sqlx::query(&sql).bind(super::workspace()).bind(limit).bind(offset).fetch_all(state.db.reader()).await?;
    Ok(Json(rows.iter().map(|r| Value::Object(SAVED_SEARCH.row_json(r))).collect()))
}

async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    cmd::delete(&state.db, path_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
