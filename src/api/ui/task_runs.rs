//! `/ui/task_runs`: task-run counts by state, the dashboard's completed /
//! failed buckets, and a task run with its flow run's name.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::Value;
use sqlx::Row;

use super::super::body::{Fields, RUN_AND_POOL_FILTERS, RUN_FILTERS};
use super::super::error::{ApiResult, AppError};
use super::super::json::path_id;
use super::AppState;
use crate::server_model::filters::{StateType, TaskRunFilter, TaskRunFilterState, TaskRunFilterStateType};
use crate::server_model::history::{self, DashboardWindow};
use crate::server_model::task_runs::read_task_run;
use crate::server_model::ui;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/task_runs/dashboard/counts", post(dashboard_counts))
        .route("/ui/task_runs/count", post(counts_by_state))
        .route("/ui/task_runs/{id}", get(read_with_flow_run_name))
}

/// `list[TaskRunCount]`: 20 buckets of finished task runs (completed,
/// failed or crashed) by start time, from `task_runs.start_time.after_`.
async fn dashboard_counts(State(state): State<AppState>, body: Bytes) -> ApiResult<Json<Vec<Value>>> {
    let fields = Fields::parse(&body)?;
    if !matches!(fields.map.get("task_runs"), Some(Value::Object(_))) {
        let input = fields.map.get("task_runs").cloned().unwrap_or(Value::Null);
        let detail = if input.is_null() && !fields.map.contains_key("task_runs") {
            serde_json::json!({"type": "missing", "loc": ["body", "task_runs"], "msg": "Field required", "input": null})
        } else {
            serde_json::json!({"type": "model_attributes_type", "loc": ["body", "task_runs"], "msg": "Input should be a valid dictionary or object to extract fields from", "input": input})
        };
        return Err(AppError::Validation { detail: vec![detail], body: Value::Object(fields.map.clone()) });
    }
    let mut body = fields.filters(RUN_AND_POOL_FILTERS)?;
    let task_runs = body.task_runs.get_or_insert_with(TaskRunFilter::default);
    let Some(after) = task_runs.start_time.as_ref().and_then(|s| s.after_.as_ref()) else {
        return Err(AppError::Detail(StatusCode::UNPROCESSABLE_ENTITY, "task_runs.start_time.after_ is required".into()));
    };
    let before = task_runs.start_time.as_ref().and_then(|s| s.before_.as_ref()).map(|b| b.datetime());
    let window = DashboardWindow::new(after.datetime(), before, Utc::now());
    // Only finished runs count, whatever state filter was sent.
    let terminal = vec![StateType::Completed, StateType::Cancelled, StateType::Failed, StateType::Crashed];
    task_runs.state = Some(TaskRunFilterState { operator: None, type_: Some(TaskRunFilterStateType { any_: Some(terminal) }), name: None });
    let sql = history::dashboard_sql(&body, state.db.dialect, &super::super::workspace(), &window).map_err(super::super::filter_error)?;
    let rows = super::super::fetch(&state.db, &sql).await?;
    let rows = rows
        .iter()
        .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<i64, _>(1)?, r.try_get::<i64, _>(2)?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(history::dashboard_json(&rows)))
}

/// `CountByState` of the filtered task runs.
async fn counts_by_state(State(state): State<AppState>, body: Bytes) -> ApiResult<Json<Value>> {
    let body = Fields::parse(&body)?.filters(RUN_FILTERS)?;
    let sql = ui::task_run_counts_by_state(&body, state.db.dialect, &super::super::workspace()).map_err(super::super::filter_error)?;
    let rows = super::super::fetch(&state.db, &sql).await?;
    let rows = rows
        .iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(ui::count_by_state_json(&rows)))
}

/// `UITaskRun`: the task run plus `flow_run_name`.
async fn read_with_flow_run_name(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = path_id(&id)?;
    let mut conn = state.db.reader().acquire().await?;
    let mut run = read_task_run(&mut conn, state.db.dialect, &id.to_string(), Utc::now())
        .await?
        .ok_or_else(|| AppError::Detail(StatusCode::NOT_FOUND, "Task not found".into()))?;
    let name = match run.get("flow_run_id").and_then(Value::as_str) {
        Some(fr) => {
            let q = state.db.q("SELECT name FROM flow_run WHERE id = $1");
            sqlx::query(&q).bind(fr.to_owned()).fetch_optional(&mut *conn).await?.map(|r| r.try_get::<String, _>(0)).transpose()?
        }
        None => None,
    };
    if let Value::Object(m) = &mut run {
        m.insert("flow_run_name".into(), name.filter(|n| !n.is_empty()).map_or(Value::Null, Value::String));
    }
    Ok(Json(run))
}
