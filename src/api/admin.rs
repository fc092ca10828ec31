//! Health, version, CSRF and admin routes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

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
        .route("/admin/storage", get(read_storage))
        .route("/csrf-token", get(csrf_token))
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    match sqlx::query("SELECT 1").execute(state.db.reader()).await {
        Ok(_) => (StatusCode::OK, Json(json!({"message": "OK"}))),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"message": "Database is not ready"}))),
    }
}

/// No default result storage block can be configured here yet, so it is
/// always unset (the client then uses its local default).
async fn read_storage() -> impl IntoResponse {
    Json(json!({"default_result_storage_block_id": null}))
}

/// CSRF protection is off (Prefect's default); the client then sends no
/// CSRF headers.
async fn csrf_token() -> impl IntoResponse {
    (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"detail": "CSRF protection is disabled."})))
}
