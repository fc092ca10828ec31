//! Health, version, CSRF and admin routes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::error::ApiResult;
use super::json::AppJson;
use crate::commands::storage_defaults;

use super::version_check::SERVER_API_VERSION;
use super::AppState;

/// The Prefect release whose API this server speaks.
pub const PREFECT_VERSION: &str = "3.8.8";

/// `/health` and `/version` sit outside Prefect's routers.
pub fn unversioned_router() -> Router<AppState> {
    Router::new()
        .route("/health", get(|| async { Json(true) }))
        .route("/version", get(|| async { Json(SERVER_API_VERSION) }))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/hello", get(|| async { Json("👋") }))
        .route("/ready", get(ready))
        .route("/admin/version", get(|| async { Json(PREFECT_VERSION) }))
        .route("/admin/settings", get(super::admin_settings::read_settings))
        .route("/admin/storage", get(read_storage).put(set_storage).delete(clear_storage))
        .route("/csrf-token", get(csrf_token))
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    match sqlx::query("SELECT 1").execute(state.db.reader()).await {
        Ok(_) => (StatusCode::OK, Json(json!({"message": "OK"}))),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"message": "Database is not ready"}))),
    }
}

/// The server default result storage block (`null` when unset: the
/// client then uses its local default).
async fn read_storage(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let mut conn = state.db.reader().acquire().await?;
    let id = storage_defaults::read(&mut conn, state.db.dialect).await?;
    Ok(Json(json!({"default_result_storage_block_id": id})))
}

async fn set_storage(State(state): State<AppState>, AppJson(body): AppJson<storage_defaults::StorageUpdate>) -> ApiResult<Json<Value>> {
    storage_defaults::set(&state.db, body).await?;
    read_storage(State(state)).await
}

async fn clear_storage(State(state): State<AppState>) -> ApiResult<StatusCode> {
    storage_defaults::clear(&state.db).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// CSRF protection is off (Prefect's default); the client then sends no
/// CSRF headers.
async fn csrf_token() -> impl IntoResponse {
    (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"detail": "CSRF protection is disabled."})))
}
