//! `POST /flow_runs/history`, `/task_runs/history` and `/flow_runs/lateness`
//! (Prefect's flow_runs and task_runs routers; prefect/server/api/run_history.py).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use serde_json::Value;
use sqlx::Row;

use super::body::{Fields, RUN_AND_POOL_FILTERS, RUN_FILTERS};
use super::error::{ApiResult, AppError};
use super::AppState;
use crate::server_model::history::{self, HistoryWindow, RunKind, StateBucket};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/flow_runs/history", post(flow_run_history))
        .route("/task_runs/history", post(task_run_history))
        .route("/flow_runs/lateness", post(lateness))
}

/// An interval past the calendar (Prefect fails with 500 on these).
fn too_large(interval: f64) -> AppError {
    AppError::invalid(&["body", "history_interval_seconds"], "History interval is too large.", Value::from(interval))
}

async fn run_history(state: AppState, kind: RunKind, bytes: &[u8], filter_keys: &[(&str, &str)]) -> ApiResult<Json<Vec<Value>>> {
    let mut fields = Fields::parse(bytes)?;
    let start = fields.datetime("history_start");
    let end = fields.datetime("history_end");
    let interval = fields.float("history_interval_seconds");
    fields.check()?;
    let (Some(start), Some(end), Some(interval)) = (start, end, interval) else {
        return Err(AppError::Internal(anyhow::anyhow!("history fields checked but absent")));
    };
    // `timedelta(seconds=x)`: microsecond resolution.
    let interval_us = (interval * 1e6).round();
    if interval.is_nan() || interval_us < 1e6 {
        return Err(AppError::Detail(StatusCode::UNPROCESSABLE_ENTITY, "History interval must not be less than 1 second.".into()));
    }
    if interval_us >= i64::MAX as f64 {
        return Err(too_large(interval));
    }
    let body = fields.filters(filter_keys)?;
    let Some(window) = HistoryWindow::new(start.datetime(), end.datetime(), interval_us as i64) else {
        return Ok(Json(Vec::new()));
    };
    if window.query_end().is_none() {
        return Err(too_large(interval));
    }
    let sql = history::history_sql(kind, &body, state.db.dialect, &super::workspace(), &window, Utc::now()).map_err(super::filter_error)?;
    let rows = super::fetch(&state.db, &sql).await?;
    let buckets = rows
        .iter()
        .map(|r| {
            Ok(StateBucket {
                bucket: r.try_get::<i64, _>(0)?,
                state_type: r.try_get::<String, _>(1)?,
                state_name: r.try_get::<String, _>(2)?,
                count_runs: r.try_get::<i64, _>(3)?,
                sum_estimated_run_time: r.try_get::<Option<f64>, _>(4)?.unwrap_or(0.0),
                sum_estimated_lateness: r.try_get::<Option<f64>, _>(5)?.unwrap_or(0.0),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(history::history_json(&window, buckets)))
}

async fn flow_run_history(State(state): State<AppState>, body: Bytes) -> ApiResult<Json<Vec<Value>>> {
    run_history(state, RunKind::Flow, &body, RUN_AND_POOL_FILTERS).await
}

async fn task_run_history(State(state): State<AppState>, body: Bytes) -> ApiResult<Json<Vec<Value>>> {
    run_history(state, RunKind::Task, &body, RUN_FILTERS).await
}

/// The average lateness in seconds of the filtered flow runs, or null.
async fn lateness(State(state): State<AppState>, body: Bytes) -> ApiResult<Json<Option<f64>>> {
    const KEYS: &[(&str, &str)] = &[
        ("flows", "flows"),
        ("flow_runs", "flow_runs"),
        ("task_runs", "task_runs"),
        ("deployments", "deployments"),
        ("work_pools", "work_pools"),
        ("work_pool_queues", "work_pool_queues"),
    ];
    let body = Fields::parse(&body)?.filters(KEYS)?;
    let sql = history::lateness_sql(&body, state.db.dialect, &super::workspace(), Utc::now()).map_err(super::filter_error)?;
    let rows = super::fetch(&state.db, &sql).await?;
    let avg = match rows.first() {
        Some(r) => r.try_get::<Option<f64>, _>(0)?,
        None => None,
    };
    Ok(Json(avg))
}
