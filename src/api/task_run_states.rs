//! `/task_run_states` routes.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::error::ApiResult;
use super::{run_states, AppState};
use crate::server_model::states::StateTable;

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
    run_states::list(&state, StateTable::TaskRun, "task_run_id", &q.task_run_id).await
}

async fn one(state: State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    run_states::one(state, StateTable::TaskRun, &id, "Task run state").await
}
