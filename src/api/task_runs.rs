//! `/task_runs` routes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{ApiResult, AppError};
use super::flow_runs::orchestration_result;
use super::json::{parse_body, path_id, AppJson};
use super::AppState;
use crate::commands::task_runs::{self as cmd, SetTaskStateBody, TaskRunCreate};
use crate::server_model::filters::{self, RunFilterBody};
use crate::server_model::paginate;
use crate::server_model::task_runs::{TASK_RUN_FROM, read_task_run, task_run_columns, task_run_json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/task_runs/", post(create))
        .route("/task_runs/filter", post(filter_runs))
        .route("/task_runs/count", post(count_runs))
        .route("/task_runs/paginate", post(paginate_runs))
        .route("/task_runs/{id}", get(read).patch(update).delete(delete))
        .route("/task_runs/{id}/set_state", post(set_state))
}

async fn read_json(state: &AppState, id: &str) -> ApiResult<Value> {
    let mut conn = state.db.reader().acquire().await?;
    read_task_run(&mut conn, state.db.dialect, id, Utc::now())
        .await?
        .ok_or_else(|| AppError::not_found("Task run"))
}

async fn create(State(state): State<AppState>, AppJson(body): AppJson<TaskRunCreate>) -> ApiResult<Response> {
    let (id, created) = cmd::create_task_run(&state.db, body).await?;
    let run = read_json(&state, &id.to_string()).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(run)).into_response())
}

async fn read(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = path_id(&id)?;
    Ok(Json(read_json(&state, &id.to_string()).await?))
}

/// `TaskRunUpdate`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskRunUpdate {
    #[serde(default)]
    name: Option<String>,
}

async fn update(State(state): State<AppState>, Path(id): Path<String>, AppJson(body): AppJson<TaskRunUpdate>) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let mut changes = Map::new();
    if let Some(name) = body.name {
        changes.insert("name".into(), Value::String(name));
    }
    cmd::update_task_run(&state.db, id, changes).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    cmd::delete_task_run(&state.db, path_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_state(State(state): State<AppState>, Path(id): Path<String>, body: axum::body::Bytes) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let body: SetTaskStateBody = parse_body(&body)?;
    let jitter = (uuid::Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0;
    let o = cmd::set_task_run_state(&state.db, id, body, jitter, state.settings.services.concurrency_waits()).await?;
    let status = if o.written.is_some() { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(orchestration_result(o.returned_state.as_ref(), &o.status, &o.details))).into_response())
}

async fn filter_runs(State(state): State<AppState>, AppJson(body): AppJson<RunFilterBody>) -> ApiResult<Json<Vec<Value>>> {
    let sql = super::join_state(filters::select_task_runs(&body, state.db.dialect, &super::workspace(), &task_run_columns()).map_err(super::filter_error)?, "task_run", TASK_RUN_FROM);
    let rows = super::fetch(&state.db, &sql).await?;
    let now = Utc::now();
    Ok(Json(rows.iter().map(|r| task_run_json(r, now)).collect()))
}

async fn count_runs(State(state): State<AppState>, AppJson(body): AppJson<RunFilterBody>) -> ApiResult<Json<i64>> {
    let sql = filters::count_task_runs(&body, state.db.dialect, &super::workspace()).map_err(super::filter_error)?;
    Ok(Json(super::fetch_count(&state.db, &sql).await?))
}

async fn paginate_runs(State(state): State<AppState>, AppJson(body): AppJson<Map<String, Value>>) -> ApiResult<Json<Value>> {
    let (filter, page, limit): (RunFilterBody, _, _) = paginate::prepare(body, state.settings.default_limit)?;
    let count = super::fetch_count(&state.db, &filters::count_task_runs(&filter, state.db.dialect, &super::workspace()).map_err(super::filter_error)?).await?;
    let sql = super::join_state(filters::select_task_runs(&filter, state.db.dialect, &super::workspace(), &task_run_columns()).map_err(super::filter_error)?, "task_run", TASK_RUN_FROM);
    let rows = super::fetch(&state.db, &sql).await?;
    let now = Utc::now();
    Ok(Json(paginate::page(rows.iter().map(|r| task_run_json(r, now)).collect(), count, limit, page)))
}
