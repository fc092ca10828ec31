//! `/task_run_states` routes.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::error::{ApiResult, AppError};
use super::json::path_id;
use super::AppState;
use crate::server_model::states::{read_state, read_states, StateTable};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/task_run_states/", get(list))
        .route("/task_run_states/{id}", get(one))
}

#[derive(Deserialize)]
struct ByRun {
    task_run_id: String,
}

async fn list(State(state): State<AppState>, Query(q): Query<ByRun>) -> ApiResult<Json<Vec<Value>>> {
    let id = uuid::Uuid::parse_str(&q.task_run_id)
        .map_err(|e| AppError::Validation {
            detail: vec![serde_json::json!({"type": "uuid_parsing", "loc": ["query", "task_run_id"], "msg": format!("Input should be a valid UUID, {e}"), "input": q.task_run_id})],
            body: Value::Null,
        })?;
    let mut conn = state.db.reader().acquire().await?;
    Ok(Json(read_states(&mut conn, state.db.dialect, StateTable::TaskRun, &id.to_string()).await?))
}

async fn one(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = path_id(&id)?;
    let mut conn = state.db.reader().acquire().await?;
    read_state(&mut conn, state.db.dialect, StateTable::TaskRun, &id.to_string())
        .await?
        .map(Json)
        .ok_or_else(|| AppError::not_found("Task run state"))
}
