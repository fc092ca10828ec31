//! `/ui/flow_runs`: the run-history scatter plot and task-run counts per run.

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use serde_json::Value;

use super::super::body::Fields;
use super::super::error::ApiResult;
use super::AppState;
use crate::server_model::filters;
use crate::server_model::sorts::FlowRunSort;
use crate::server_model::ui;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/flow_runs/history", post(history))
        .route("/ui/flow_runs/count-task-runs", post(count_task_runs))
}

/// `list[SimpleFlowRun]`: sort (default `EXPECTED_START_TIME_DESC`), limit
/// (default and maximum 1000), offset and the run filters.
async fn history(State(state): State<AppState>, body: Bytes) -> ApiResult<Json<Vec<Value>>> {
    const KEYS: &[(&str, &str)] = &[
        ("flows", "flows"),
        ("flow_runs", "flow_runs"),
        ("task_runs", "task_runs"),
        ("deployments", "deployments"),
        ("work_pools", "work_pools"),
    ];
    let mut fields = Fields::parse(&body)?;
    let sort = match fields.map.get("sort") {
        None | Some(Value::Null) => Ok(FlowRunSort::ExpectedStartTimeDesc),
        Some(Value::String(s)) => FlowRunSort::parse(s),
        Some(other) => FlowRunSort::parse(&other.to_string()),
    }
    .map_err(super::super::filter_error)?;
    // Prefect bounds the limit above only; a negative one is refused here
    // (SQLite would read it as "no limit", Postgres fails).
    let limit = fields.int("limit", 1000, Some(0), Some(1000));
    let offset = fields.int("offset", 0, Some(0), None);
    fields.check()?;
    let (limit, offset) = (limit.unwrap_or(1000), offset.unwrap_or(0));
    let body = fields.filters(KEYS)?;
    let sql = filters::select_flow_runs_page(&body, state.db.dialect, &super::super::workspace(), ui::SIMPLE_FLOW_RUN_COLUMNS, sort, limit, offset)
        .map_err(super::super::filter_error)?;
    let rows = super::super::fetch(&state.db, &sql).await?;
    let now = Utc::now();
    Ok(Json(rows.iter().map(|r| ui::simple_flow_run_json(r, now)).collect()))
}

/// `{flow_run_ids}` → `{flow_run_id: number of task runs}` (subflow runs'
/// parent tasks left out).
async fn count_task_runs(State(state): State<AppState>, body: Bytes) -> ApiResult<Json<Value>> {
    Ok(Json(super::counts_for_ids(&state, &body, "flow_run_ids", ui::count_task_runs_by_flow_run).await?))
}
