//! `/deployments` routes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::error::{ApiResult, AppError};
use super::json::{path_id, AppJson};
use super::AppState;
use crate::commands::deployments::{self as cmd, DeploymentCreate, DeploymentFlowRunCreate, ScheduleCreate, ScheduleUpdate};
use crate::db::Bind;
use crate::server_model::deployments::{self as model, read_deployment};
use crate::server_model::filters::{self, RunFilterBody};
use crate::server_model::flow_runs::{flow_run_columns, flow_run_json, read_flow_run, FLOW_RUN_FROM};
use crate::server_model::paginate;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/deployments/", post(create))
        .route("/deployments/filter", post(filter_deployments))
        .route("/deployments/count", post(count_deployments))
        .route("/deployments/paginate", post(paginate_deployments))
        .route("/deployments/get_scheduled_flow_runs", post(scheduled_flow_runs))
        .route("/deployments/name/{flow_name}/{name}", get(read_by_name))
        .route("/deployments/{id}", get(read).patch(update).delete(delete))
        .route("/deployments/bulk_delete", post(bulk_delete))
        .route("/deployments/{id}/create_flow_run", post(create_flow_run))
        .route("/deployments/{id}/create_flow_run/bulk", post(create_flow_runs))
        .route("/deployments/{id}/schedules", get(read_schedules).post(create_schedules))
        .route("/deployments/{id}/schedules/{schedule_id}", patch(update_schedule).delete(delete_schedule))
        .route("/deployments/{id}/pause_deployment", post(pause))
        .route("/deployments/{id}/resume_deployment", post(resume))
        .route("/deployments/{id}/schedule", post(schedule_now))
        .route("/deployments/{id}/work_queue_check", get(work_queue_check))
}

fn not_found() -> AppError {
    AppError::Detail(StatusCode::NOT_FOUND, "Deployment not found".into())
}

async fn read_json(state: &AppState, id: Uuid) -> ApiResult<Value> {
    let mut conn = state.db.reader().acquire().await?;
    read_deployment(&mut conn, state.db.dialect, "t.id = $1", &[Bind::Text(id.to_string())]).await?.ok_or_else(not_found)
}

async fn create(State(state): State<AppState>, AppJson(body): AppJson<DeploymentCreate>) -> ApiResult<Response> {
    let (id, created) = cmd::create_deployment(&state.db, body).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(read_json(&state, id).await?)).into_response())
}

async fn read(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(read_json(&state, path_id(&id)?).await?))
}

async fn read_by_name(State(state): State<AppState>, Path((flow_name, name)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let mut conn = state.db.reader().acquire().await?;
    read_deployment(
        &mut conn,
        state.db.dialect,
        "t.name = $1 AND t.workspace_id = $2 AND t.flow_id IN (SELECT id FROM flow WHERE name = $3 AND workspace_id = $2)",
        &[Bind::Text(name), Bind::Text(super::workspace()), Bind::Text(flow_name)],
    )
    .await?
    .map(Json)
    .ok_or_else(not_found)
}

async fn update(State(state): State<AppState>, Path(id): Path<String>, AppJson(body): AppJson<Map<String, Value>>) -> ApiResult<StatusCode> {
    cmd::update_deployment(&state.db, path_id(&id)?, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    cmd::delete_deployment(&state.db, path_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn pause(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    cmd::update_deployment(&state.db, path_id(&id)?, Map::from_iter([("paused".into(), json!(true))])).await?;
    Ok(Json(Value::Null))
}

async fn resume(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    cmd::update_deployment(&state.db, path_id(&id)?, Map::from_iter([("paused".into(), json!(false))])).await?;
    Ok(Json(Value::Null))
}

async fn filter_deployments(State(state): State<AppState>, AppJson(body): AppJson<RunFilterBody>) -> ApiResult<Json<Vec<Value>>> {
    let sql = filters::select_deployments(&body, state.db.dialect, &super::workspace(), &model::columns()).map_err(super::filter_error)?;
    let rows = super::fetch(&state.db, &sql).await?;
    let mut conn = state.db.reader().acquire().await?;
    Ok(Json(model::rows_json(&mut conn, state.db.dialect, &rows).await?))
}

async fn count_deployments(State(state): State<AppState>, AppJson(body): AppJson<RunFilterBody>) -> ApiResult<Json<i64>> {
    let sql = filters::count_deployments(&body, state.db.dialect, &super::workspace()).map_err(super::filter_error)?;
    Ok(Json(super::fetch_count(&state.db, &sql).await?))
}

async fn paginate_deployments(State(state): State<AppState>, AppJson(body): AppJson<Map<String, Value>>) -> ApiResult<Json<Value>> {
    let (filter, page, limit): (RunFilterBody, _, _) = paginate::prepare(body, state.settings.default_limit)?;
    let count_sql = filters::count_deployments(&filter, state.db.dialect, &super::workspace()).map_err(super::filter_error)?;
    let count = super::fetch_count(&state.db, &count_sql).await?;
    let sql = filters::select_deployments(&filter, state.db.dialect, &super::workspace(), &model::columns()).map_err(super::filter_error)?;
    let rows = super::fetch(&state.db, &sql).await?;
    let mut conn = state.db.reader().acquire().await?;
    let items = model::rows_json(&mut conn, state.db.dialect, &rows).await?;
    Ok(Json(paginate::page(items, count, limit, page)))
}

#[derive(Debug, Deserialize)]
struct ScheduledBody {
    deployment_ids: Vec<Uuid>,
    #[serde(default)]
    scheduled_before: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

/// What a runner (`serve()`) polls: SCHEDULED runs of these deployments,
/// soonest first.
async fn scheduled_flow_runs(State(state): State<AppState>, AppJson(body): AppJson<ScheduledBody>) -> ApiResult<Json<Vec<Value>>> {
    let (limit, _) = filters::page(body.limit, None).map_err(super::filter_error)?;
    let before = match body.scheduled_before.as_deref() {
        None => None,
        Some(s) => Some(crate::time::parse_lax_datetime(s).ok_or_else(|| AppError::invalid(&["body", "scheduled_before"], "Input should be a valid datetime", json!(s)))?),
    };
    let mut binds: Vec<Bind> = Vec::new();
    let mut ids = Vec::new();
    for id in &body.deployment_ids {
        binds.push(Bind::Text(id.to_string()));
        ids.push(format!("${}", binds.len()));
    }
    let mut cond = format!(
        "flow_run.state_type = 'SCHEDULED' AND flow_run.deployment_id IN ({})",
        if ids.is_empty() { "NULL".to_owned() } else { ids.join(", ") }
    );
    if let Some(b) = before {
        binds.push(Bind::Text(crate::time::fmt_ts(b)));
        cond.push_str(&format!(" AND flow_run.next_scheduled_start_time <= ${}", binds.len()));
    }
    binds.push(Bind::Int(limit));
    let sql = format!(
        "SELECT {} FROM {FLOW_RUN_FROM} WHERE {cond} ORDER BY flow_run.next_scheduled_start_time ASC, flow_run.id ASC LIMIT ${}",
        flow_run_columns(),
        binds.len()
    );
    let rows = crate::db::bind_all(sqlx::query(&state.db.q(&sql)), &binds).fetch_all(state.db.reader()).await?;
    let now = Utc::now();
    let runs = rows.iter().map(|r| flow_run_json(r, now)).collect();
    if let Err(e) = cmd::mark_deployment_ids_polled(&state.db, body.deployment_ids, super::work_pools::poll_record_interval()).await {
        tracing::warn!(error = %e, "could not record a deployment poll");
    }
    Ok(Json(runs))
}

async fn create_flow_run(State(state): State<AppState>, Path(id): Path<String>, AppJson(body): AppJson<DeploymentFlowRunCreate>) -> ApiResult<Response> {
    let (run_id, created) = cmd::create_flow_run(&state.db, path_id(&id)?, body, Uuid::new_v4().as_u128()).await?;
    let mut conn = state.db.reader().acquire().await?;
    let run = read_flow_run(&mut conn, state.db.dialect, &run_id.to_string(), Utc::now()).await?.ok_or_else(|| AppError::not_found("Flow run"))?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(run)).into_response())
}

async fn work_queue_check(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Vec<Value>>> {
    let deployment = read_json(&state, path_id(&id)?).await?;
    let mut conn = state.db.reader().acquire().await?;
    Ok(Json(model::queues_for_deployment(&mut conn, state.db.dialect, &deployment).await?))
}

async fn read_schedules(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Vec<Value>>> {
    let id = path_id(&id)?;
    read_json(&state, id).await?;
    let mut conn = state.db.reader().acquire().await?;
    Ok(Json(model::schedules(&mut conn, state.db.dialect, &id.to_string()).await?))
}

async fn create_schedules(State(state): State<AppState>, Path(id): Path<String>, AppJson(body): AppJson<Vec<ScheduleCreate>>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let created = cmd::create_schedules(&state.db, id, body).await?;
    let mut conn = state.db.reader().acquire().await?;
    let all = model::schedules(&mut conn, state.db.dialect, &id.to_string()).await?;
    let wanted: Vec<String> = created.iter().map(Uuid::to_string).collect();
    let out: Vec<Value> = all.into_iter().filter(|s| s.get("id").and_then(Value::as_str).is_some_and(|i| wanted.iter().any(|w| w == i))).collect();
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

async fn update_schedule(State(state): State<AppState>, Path((id, sid)): Path<(String, String)>, AppJson(body): AppJson<ScheduleUpdate>) -> ApiResult<StatusCode> {
    cmd::update_schedule(&state.db, path_id(&id)?, path_id(&sid)?, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_schedule(State(state): State<AppState>, Path((id, sid)): Path<(String, String)>) -> ApiResult<StatusCode> {
    cmd::delete_schedule(&state.db, path_id(&id)?, path_id(&sid)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Legacy `POST /deployments/{id}/schedule`: schedule this deployment's
/// runs now, with the scheduler's bounds unless overridden.
#[derive(Debug, Default, Deserialize)]
struct ScheduleNowBody {
    #[serde(default)]
    start_time: Option<String>,
    #[serde(default)]
    end_time: Option<String>,
    #[serde(default)]
    min_time: Option<f64>,
    #[serde(default)]
    min_runs: Option<usize>,
    #[serde(default)]
    max_runs: Option<usize>,
}

async fn schedule_now(State(state): State<AppState>, Path(id): Path<String>, AppJson(body): AppJson<Option<ScheduleNowBody>>) -> ApiResult<Json<Value>> {
    let id = path_id(&id)?;
    read_json(&state, id).await?;
    let body = body.unwrap_or_default();
    let mut bounds = crate::services::scheduler::Bounds::from_settings(&state.settings);
    if let Some(s) = body.start_time.as_deref().and_then(crate::time::parse_lax_datetime) {
        bounds.start = Some(s);
    }
    if let Some(e) = body.end_time.as_deref().and_then(crate::time::parse_lax_datetime) {
        bounds.max_time = e - bounds.start.unwrap_or_else(Utc::now);
    }
    if let Some(m) = body.min_time {
        bounds.min_time = chrono::Duration::milliseconds((m * 1000.0) as i64);
    }
    if let Some(m) = body.min_runs {
        bounds.min_runs = m;
    }
    if let Some(m) = body.max_runs {
        bounds.max_runs = m;
    }
    crate::services::scheduler::schedule_deployment(&state.db, id, &bounds).await?;
    Ok(Json(Value::Null))
}

/// Prefect's caps on the bulk routes.
const BULK_DELETE_LIMIT: i64 = 50;
const BULK_CREATE_LIMIT: usize = 100;

#[derive(Debug, Default, Deserialize)]
struct BulkDeleteBody {
    #[serde(default)]
    deployments: Option<Value>,
    #[serde(default)]
    limit: Option<i64>,
}

/// `POST /deployments/bulk_delete`: deletes up to `limit` (1..=50)
/// deployments matching the filter, each as its own delete.
async fn bulk_delete(State(state): State<AppState>, AppJson(body): AppJson<Option<BulkDeleteBody>>) -> ApiResult<Json<Value>> {
    let body = body.unwrap_or_default();
    let limit = body.limit.unwrap_or(BULK_DELETE_LIMIT);
    if !(1..=BULK_DELETE_LIMIT).contains(&limit) {
        return Err(AppError::invalid(&["body", "limit"], format!("Input should be between 1 and {BULK_DELETE_LIMIT}"), json!(limit)));
    }
    let filter = RunFilterBody { deployments: body.deployments, limit: Some(limit), ..Default::default() };
    let sql = filters::select_deployments(&filter, state.db.dialect, &super::workspace(), "deployment.id").map_err(super::filter_error)?;
    let rows = super::fetch(&state.db, &sql).await?;
    let mut deleted = Vec::new();
    for row in rows {
        use sqlx::Row;
        let id = Uuid::parse_str(&row.try_get::<String, _>(0)?).map_err(anyhow::Error::from)?;
        match cmd::delete_deployment(&state.db, id).await {
            Ok(()) => deleted.push(id),
            // Deleted by someone else meanwhile: not ours to report.
            Err(AppError::Detail(StatusCode::NOT_FOUND, _)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Json(json!({"deleted": deleted})))
}

/// `POST /deployments/{id}/create_flow_run/bulk`: up to 100 runs; each is
/// created (and acknowledged) on its own, and one that fails is reported
/// FAILED with its reason without stopping the others.
async fn create_flow_runs(State(state): State<AppState>, Path(id): Path<String>, AppJson(body): AppJson<Vec<DeploymentFlowRunCreate>>) -> ApiResult<Json<Value>> {
    let id = path_id(&id)?;
    if body.len() > BULK_CREATE_LIMIT {
        return Err(AppError::Detail(StatusCode::BAD_REQUEST, format!("Cannot create more than {BULK_CREATE_LIMIT} flow runs at once.")));
    }
    read_json(&state, id).await?;
    let mut results = Vec::with_capacity(body.len());
    for run in body {
        match cmd::create_flow_run(&state.db, id, run, Uuid::new_v4().as_u128()).await {
            Ok((run_id, _)) => results.push(json!({"flow_run_id": run_id, "status": "CREATED", "error": null})),
            Err(AppError::Detail(_, reason)) => {
                // Prefect's bulk route reports a hydration error by its bare message.
                let reason = reason.strip_prefix("Error hydrating flow run parameters: ").map(str::to_owned).unwrap_or(reason);
                results.push(json!({"flow_run_id": null, "status": "FAILED", "error": reason}))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Json(json!({"results": results})))
}
