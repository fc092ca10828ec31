//! `/flow_runs` routes.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{json, Map, Value};

use super::error::{ApiResult, AppError};
use super::json::{parse_body, path_id, AppJson};
use super::version_check::client_api_version;
use super::AppState;
use crate::commands::flow_runs::{self as cmd, FlowRunCreate, SetStateBody};
use crate::orchestration::outcome::{Details, Status};
use crate::orchestration::states::{FlowRunPolicy, State as PrefectState};
use crate::server_model::filters::{self, RunFilterBody};
use crate::server_model::flow_runs::{FLOW_RUN_FROM, flow_run_columns, flow_run_json, read_flow_run};
use crate::server_model::paginate;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/flow_runs/", post(create))
        .route("/flow_runs/filter", post(filter_runs))
        .route("/flow_runs/count", post(count_runs))
        .route("/flow_runs/paginate", post(paginate_runs))
        .route("/flow_runs/bulk_delete", post(bulk_delete))
        .route("/flow_runs/bulk_set_state", post(bulk_set_state))
        .route("/flow_runs/{id}", get(read).patch(update).delete(delete))
        .route("/flow_runs/{id}/set_state", post(set_state))
        .route("/flow_runs/{id}/resume", post(resume))
        .route("/flow_runs/{id}/graph", get(graph_v1))
        .route("/flow_runs/{id}/graph-v2", get(graph_v2))
        .route("/flow_runs/{id}/labels", patch(update_labels))
}

async fn read_json(state: &AppState, id: &str) -> ApiResult<Value> {
    let mut conn = state.db.reader().acquire().await?;
    read_flow_run(&mut conn, state.db.dialect, id, Utc::now())
        .await?
        .ok_or_else(|| AppError::not_found("Flow run"))
}

async fn create(State(state): State<AppState>, AppJson(body): AppJson<FlowRunCreate>) -> ApiResult<Response> {
    let (id, created) = cmd::create_flow_run(&state.db, body, uuid::Uuid::new_v4().as_u128()).await?;
    let run = read_json(&state, &id.to_string()).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(run)).into_response())
}

async fn read(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = path_id(&id)?;
    Ok(Json(read_json(&state, &id.to_string()).await?))
}

/// Fields `FlowRunUpdate` accepts.
const UPDATE_FIELDS: &[&str] = &["name", "flow_version", "parameters", "empirical_policy", "tags", "infrastructure_pid", "job_variables"];

/// Validates a `FlowRunUpdate` body, keeping only the fields that were set.
fn validate_update(body: Map<String, Value>) -> ApiResult<Map<String, Value>> {
    for (k, v) in &body {
        if !UPDATE_FIELDS.contains(&k.as_str()) {
            return Err(AppError::Validation {
                detail: vec![json!({"type": "extra_forbidden", "loc": ["body", k], "msg": "Extra inputs are not permitted", "input": v})],
                body: Value::Object(body.clone()),
            });
        }
        let ok = match k.as_str() {
            "name" | "flow_version" | "infrastructure_pid" => v.is_string() || v.is_null(),
            "parameters" => v.is_object(),
            "job_variables" => v.is_object() || v.is_null(),
            "tags" => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            "empirical_policy" => serde_json::from_value::<FlowRunPolicy>(v.clone()).is_ok(),
            _ => true,
        };
        if !ok {
            return Err(AppError::invalid(&["body", k], "Input has the wrong type", v.clone()));
        }
    }
    let mut body = body;
    if let Some(policy) = body.get("empirical_policy").cloned() {
        let policy: FlowRunPolicy = serde_json::from_value(policy).map_err(anyhow::Error::from)?;
        body.insert("empirical_policy".into(), serde_json::to_value(policy).map_err(anyhow::Error::from)?);
    }
    Ok(body)
}

async fn update(State(state): State<AppState>, Path(id): Path<String>, AppJson(body): AppJson<Map<String, Value>>) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let changes = validate_update(body)?;
    cmd::update_flow_run(&state.db, id, changes, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn update_labels(State(state): State<AppState>, Path(id): Path<String>, AppJson(body): AppJson<Map<String, Value>>) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    cmd::update_flow_run(&state.db, id, body, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    cmd::delete_flow_run(&state.db, path_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /flow_runs/bulk_delete`: deletes up to `limit` runs that match
/// `flow_runs` and answers `{"deleted": [ids]}`. The runs are read, then
/// deleted in one transaction; one deleted meanwhile is not listed.
async fn bulk_delete(State(state): State<AppState>, body: axum::body::Bytes) -> ApiResult<Json<Value>> {
    let filter = super::body::bulk_filter(&body, "flow_runs")?;
    let sql = filters::select_flow_runs(&filter, state.db.dialect, &super::workspace(), "flow_run.id").map_err(super::filter_error)?;
    let deleted = cmd::delete_flow_runs(&state.db, super::fetch_ids(&state.db, &sql).await?).await?;
    Ok(Json(json!({"deleted": deleted})))
}

/// The state part of a `bulk_set_state` body (its filter and limit are read
/// by [`super::body::bulk_filter`]).
#[derive(serde::Deserialize)]
struct BulkState {
    state: crate::orchestration::outcome::ProposedState,
    #[serde(default)]
    force: bool,
}

/// `POST /flow_runs/bulk_set_state`: proposes `state` to up to `limit`
/// runs matching `flow_runs`, one transaction per run through the flow
/// policy, and lists each run's orchestration result. A run that cannot be
/// set (deleted meanwhile, say) gets an ABORT with the reason, as in Prefect.
async fn bulk_set_state(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> ApiResult<Json<Value>> {
    let filter = super::body::bulk_filter(&body, "flow_runs")?;
    let BulkState { state: proposed, force } = parse_body(&body)?;
    let sql = filters::select_flow_runs(&filter, state.db.dialect, &super::workspace(), "flow_run.id").map_err(super::filter_error)?;
    let api_version = client_api_version(&headers);
    let mut results = Vec::new();
    for id in super::fetch_ids(&state.db, &sql).await? {
        let body = SetStateBody { state: proposed.clone(), force };
        let mut result = match cmd::set_flow_run_state(&state.db, id, body, api_version).await {
            Ok(r) => orchestration_result(r.outcome.returned_state.as_ref(), &r.outcome.status, &r.outcome.details),
            Err(e) => orchestration_result(None, &Status::Abort, &Details::Abort { reason: e.reason() }),
        };
        if let Value::Object(m) = &mut result {
            let mut with_id = Map::from_iter([("flow_run_id".to_owned(), json!(id))]);
            with_id.append(m);
            result = Value::Object(with_id);
        }
        results.push(result);
    }
    Ok(Json(json!({"results": results})))
}

/// Prefect's `OrchestrationResult` JSON.
pub(crate) fn orchestration_result(state: Option<&PrefectState>, status: &Status, details: &Details) -> Value {
    json!({"state": state, "status": status, "details": details})
}

async fn set_state(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>, body: axum::body::Bytes) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let body: SetStateBody = parse_body(&body)?;
    let result = cmd::set_flow_run_state(&state.db, id, body, client_api_version(&headers)).await?;
    let o = &result.outcome;
    let status = if o.written.is_some() { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(orchestration_result(o.returned_state.as_ref(), &o.status, &o.details))).into_response())
}

/// `{"run_input": {...}}`, or no body at all.
#[derive(serde::Deserialize, Default)]
struct ResumeBody {
    #[serde(default)]
    run_input: Option<Map<String, Value>>,
}

/// `POST /flow_runs/{id}/resume`: an `OrchestrationResult`, 201 when a new
/// state was written. `run_input` answers a run that waits for input.
async fn resume(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>, body: axum::body::Bytes) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let body: ResumeBody = if body.iter().all(u8::is_ascii_whitespace) { ResumeBody::default() } else { parse_body(&body)? };
    let answer = match cmd::resume_flow_run(&state.db, id, body.run_input, client_api_version(&headers)).await? {
        cmd::Resumed::NotPaused => {
            let details = Details::Abort { reason: "Cannot resume a flow run that is not paused.".into() };
            (StatusCode::OK, orchestration_result(None, &Status::Abort, &details))
        }
        cmd::Resumed::Refused(current, reason) => (StatusCode::OK, orchestration_result(Some(&current), &Status::Reject, &Details::Abort { reason })),
        cmd::Resumed::Transition(result) => {
            let o = &result.outcome;
            let status = if o.written.is_some() { StatusCode::CREATED } else { StatusCode::OK };
            (status, orchestration_result(o.returned_state.as_ref(), &o.status, &o.details))
        }
    };
    Ok((answer.0, Json(answer.1)).into_response())
}

async fn filter_runs(State(state): State<AppState>, AppJson(body): AppJson<RunFilterBody>) -> ApiResult<Json<Vec<Value>>> {
    let sql = super::join_state(filters::select_flow_runs(&body, state.db.dialect, &super::workspace(), &flow_run_columns()).map_err(super::filter_error)?, "flow_run", FLOW_RUN_FROM);
    let rows = super::fetch(&state.db, &sql).await?;
    let now = Utc::now();
    Ok(Json(rows.iter().map(|r| flow_run_json(r, now)).collect()))
}

async fn count_runs(State(state): State<AppState>, AppJson(body): AppJson<RunFilterBody>) -> ApiResult<Json<i64>> {
    let sql = filters::count_flow_runs(&body, state.db.dialect, &super::workspace()).map_err(super::filter_error)?;
    Ok(Json(super::fetch_count(&state.db, &sql).await?))
}

async fn paginate_runs(State(state): State<AppState>, AppJson(body): AppJson<Map<String, Value>>) -> ApiResult<Json<Value>> {
    let (filter, page, limit): (RunFilterBody, _, _) = paginate::prepare(body, state.settings.default_limit)?;
    let count = super::fetch_count(&state.db, &filters::count_flow_runs(&filter, state.db.dialect, &super::workspace()).map_err(super::filter_error)?).await?;
    let sql = super::join_state(filters::select_flow_runs(&filter, state.db.dialect, &super::workspace(), &flow_run_columns()).map_err(super::filter_error)?, "flow_run", FLOW_RUN_FROM);
    let rows = super::fetch(&state.db, &sql).await?;
    let now = Utc::now();
    Ok(Json(paginate::page(rows.iter().map(|r| flow_run_json(r, now)).collect(), count, limit, page)))
}

#[derive(serde::Deserialize)]
struct GraphQuery {
    since: Option<String>,
}

/// `GET /flow_runs/{id}/graph` (v1): each task run of the run with the task
/// runs its inputs came from, as Prefect's `DependencyResult`s.
async fn graph_v1(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    use crate::server_model::task_runs::{task_run_columns, task_run_json, TASK_RUN_FROM};
    let id = path_id(&id)?.to_string();
    let dialect = state.db.dialect;
    let mut conn = state.db.reader().acquire().await?;
    let exists = sqlx::query(&dialect.rewrite("SELECT id FROM flow_run WHERE id = $1")).bind(id.clone()).fetch_optional(&mut *conn).await?;
    if exists.is_none() {
        let body = json!({"exception_message": format!("Flow run with id {id} not found")});
        return Ok((StatusCode::NOT_FOUND, Json(body)).into_response());
    }
    let sql = format!("SELECT {} FROM {TASK_RUN_FROM} WHERE task_run.flow_run_id = $1 AND task_run.workspace_id = $2 ORDER BY task_run.id DESC", task_run_columns());
    let rows = sqlx::query(&dialect.rewrite(&sql)).bind(id).bind(super::workspace()).fetch_all(&mut *conn).await?;
    let now = chrono::Utc::now();
    let results: Vec<Value> = rows.iter().map(|row| crate::server_model::flow_run_graph::dependency_result(&task_run_json(row, now))).collect();
    Ok(Json(results).into_response())
}

/// `GET /flow_runs/{id}/graph-v2`: the run's task and subflow runs as
/// Prefect's `Graph` (`server_model::flow_run_graph`).
async fn graph_v2(State(state): State<AppState>, Path(id): Path<String>, axum::extract::Query(q): axum::extract::Query<GraphQuery>) -> ApiResult<Response> {
    use crate::server_model::flow_run_graph::{build_nodes, load_artifacts, load_rows, load_states, node_json, TooLarge};
    let id = path_id(&id)?.to_string();
    let since = match q.since.as_deref() {
        None => String::new(),
        Some(raw) => crate::time::parse_lax_datetime(raw)
            .map(crate::time::fmt_ts)
            .ok_or_else(|| AppError::invalid(&["query", "since"], "Input should be a valid datetime", json!(raw)))?,
    };
    let dialect = state.db.dialect;
    let mut conn = state.db.reader().acquire().await?;
    let run = sqlx::query(&dialect.rewrite("SELECT start_time, expected_start_time, end_time FROM flow_run WHERE id = $1"))
        .bind(id.clone())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(run) = run else {
        let body = json!({"exception_message": format!("Flow run {id} not found")});
        return Ok((StatusCode::NOT_FOUND, Json(body)).into_response());
    };
    let col = |name: &str| sqlx::Row::try_get::<Option<String>, _>(&run, name).ok().flatten();
    let max = state.settings.max_flow_run_graph_nodes;
    let nodes = match build_nodes(load_rows(&mut conn, dialect, &id).await?, &since, max) {
        Ok(nodes) => nodes,
        Err(TooLarge) => return Err(AppError::Detail(StatusCode::BAD_REQUEST, format!("The graph of flow run {id} has more than {max} nodes."))),
    };
    let roots: Vec<&str> = nodes.iter().filter(|n| n.parents.is_empty()).map(|n| n.row.id.as_str()).collect();
    let artifacts = load_artifacts(&mut conn, dialect, &id).await?;
    let graph = json!({
        "start_time": col("start_time").or_else(|| col("expected_start_time")),
        "end_time": col("end_time"),
        "root_node_ids": roots,
        "nodes": nodes.iter().map(|n| node_json(n, &artifacts)).collect::<Vec<_>>(),
        "artifacts": artifacts.get(&None).cloned().unwrap_or_default(),
        "states": load_states(&mut conn, dialect, &id).await?,
    });
    Ok(Json(graph).into_response())
}
