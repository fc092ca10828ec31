//! The Prefect REST and WebSocket API, mounted at `/api`: one module per
//! Prefect router.

pub mod admin;
mod admin_settings;
mod artifacts;
mod automations;
mod block_capabilities;
mod block_documents;
mod block_schemas;
mod block_types;
mod body;
pub mod concurrency_limits;
pub mod concurrency_limits_v2;
pub mod deployments;
pub mod error;
pub mod events;
mod events_feed;
mod events_out;
pub mod flow_run_inputs;
pub mod flow_run_states;
pub mod flow_runs;
pub mod flows;
mod history;
pub mod json;
pub mod logs;
pub mod logs_out;
mod logs_download;
mod run_states;
mod saved_searches;
pub mod task_run_states;
mod task_run_subscriptions;
pub mod task_runs;
pub mod task_workers;
mod ui;
pub mod variables;
mod version_check;
pub mod work_pools;
pub mod work_queues;
mod worker_channel;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use tower_http::cors::CorsLayer;
use tower_http::trace::TraceLayer;

use crate::config::Settings;
use crate::db::Db;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub settings: Arc<Settings>,
    /// Live events from every process (`/events/out`).
    pub broker: Arc<dyn crate::broker::Broker>,
    /// Task workers subscribed through this process (`/task_workers/filter`).
    pub task_workers: Arc<task_workers::TaskWorkers>,
    /// Client events from every socket, appended in groups (`/events/in`).
    pub ingest: crate::commands::ingest_queue::IngestQueue,
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    let api = Router::new()
        .merge(admin::router())
        .merge(flows::router())
        .merge(flow_runs::router())
        .merge(flow_run_states::router())
        .merge(flow_run_inputs::router())
        .merge(task_runs::router())
        .merge(task_run_states::router())
        .merge(task_run_subscriptions::router())
        .merge(task_workers::router())
        .merge(artifacts::router())
        .merge(block_types::router())
        .merge(block_schemas::router())
        .merge(block_documents::router())
        .merge(block_capabilities::router())
        .merge(history::router())
        .merge(ui::router())
        .merge(logs::router())
        .merge(logs_download::router())
        .merge(events::router())
        .merge(concurrency_limits::router())
        .merge(concurrency_limits_v2::router())
        .merge(deployments::router())
        .merge(work_pools::router())
        .merge(work_queues::router())
        .merge(automations::router())
        .merge(variables::router())
        .merge(saved_searches::router())
        .layer(axum::middleware::from_fn(version_check::enforce_minimum_api_version))
        .fallback(not_found)
        // Outside Prefect's routers, so not subject to the version check.
        .merge(admin::unversioned_router());
    let root = Router::new().nest("/api", api);
    let root = match crate::web_ui::WebUi::from_settings(&state.settings.ui) {
        Some(ui) => root.fallback_service(axum::routing::any(crate::web_ui::serve).with_state(ui)),
        None => root.fallback(not_found),
    };
    root.layer(DefaultBodyLimit::max(max_body))
        .layer(CorsLayer::permissive())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
        }))
        .with_state(state)
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"detail": "Not Found"})))
}

/// The workspace of single-tenant mode.
pub(crate) fn workspace() -> String {
    crate::eventlog::DEFAULT_WORKSPACE.to_string()
}

/// A filter body the SQL builder refused: Prefect answers such bodies with 422.
pub(crate) fn filter_error(err: crate::server_model::filters::FilterError) -> error::AppError {
    use crate::server_model::filters::FilterError;
    match err {
        // Prefect reports a bad limit as an HTTPException, not a validation error.
        FilterError::Invalid { msg, .. } if msg.starts_with("Invalid limit") => {
            error::AppError::Detail(axum::http::StatusCode::UNPROCESSABLE_ENTITY, msg)
        }
        FilterError::Invalid { loc, msg } => error::AppError::Validation {
            detail: vec![serde_json::json!({"type": "value_error", "loc": loc, "msg": msg, "input": null})],
            body: serde_json::Value::Null,
        },
        FilterError::Unsupported(what) => error::AppError::Validation {
            detail: vec![serde_json::json!({"type": "value_error", "loc": ["body", what.clone()], "msg": format!("filtering on {what} is not supported by this server yet"), "input": null})],
            body: serde_json::Value::Null,
        },
    }
}

/// Runs a built query on the read pool.
pub(crate) async fn fetch(db: &Db, sql: &crate::db::Sql) -> Result<Vec<sqlx::any::AnyRow>, error::AppError> {
    let text = db.q(&sql.text);
    Ok(crate::db::bind_all(sqlx::query(&text), &sql.binds).fetch_all(db.reader()).await?)
}

/// Runs a built query whose first column is a row id (text), as uuids.
pub(crate) async fn fetch_ids(db: &Db, sql: &crate::db::Sql) -> Result<Vec<uuid::Uuid>, error::AppError> {
    use sqlx::Row;
    Ok(fetch(db, sql).await?.iter().filter_map(|r| r.try_get::<String, _>(0).ok()).filter_map(|s| uuid::Uuid::parse_str(&s).ok()).collect())
}

/// Runs a built `SELECT count(...)` query.
pub(crate) async fn fetch_count(db: &Db, sql: &crate::db::Sql) -> Result<i64, error::AppError> {
    use sqlx::Row;
    let text = db.q(&sql.text);
    let row = crate::db::bind_all(sqlx::query(&text), &sql.binds).fetch_one(db.reader()).await?;
    Ok(row.try_get::<i64, _>(0)?)
}

/// Joins a run's current state into a `SELECT … FROM <table> …` built by the
/// filter module (whose main `FROM` is the first one in the text).
pub(crate) fn join_state(mut sql: crate::db::Sql, table: &str, from_with_join: &str) -> crate::db::Sql {
    sql.text = sql.text.replacen(&format!(" FROM {table} "), &format!(" FROM {from_with_join} "), 1);
    sql
}
