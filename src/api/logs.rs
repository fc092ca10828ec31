//! `/logs` routes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

use super::error::ApiResult;
use super::json::AppJson;
use super::AppState;
use crate::commands::logs::{create_logs, LogCreate};
use crate::server_model::filters::{self, LogFilterBody};
use crate::server_model::logs::{log_json, LOG_COLUMNS};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/logs/", post(create))
        .route("/logs/filter", post(filter_logs))
        .route("/logs/out", axum::routing::any(super::logs_out::logs_out))
}

async fn create(State(state): State<AppState>, AppJson(body): AppJson<Vec<LogCreate>>) -> ApiResult<(StatusCode, Json<Value>)> {
    create_logs(&state.db, body).await?;
    Ok((StatusCode::CREATED, Json(Value::Null)))
}

async fn filter_logs(State(state): State<AppState>, AppJson(body): AppJson<LogFilterBody>) -> ApiResult<Json<Vec<Value>>> {
    let sql = filters::select_logs(&body, state.db.dialect, &super::workspace(), LOG_COLUMNS).map_err(super::filter_error)?;
    let rows = super::fetch(&state.db, &sql).await?;
    Ok(Json(rows.iter().map(log_json).collect()))
}
