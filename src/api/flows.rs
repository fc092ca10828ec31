//! `/flows` routes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::Value;

use super::error::{ApiResult, AppError};
use super::json::{path_id, AppJson};
use super::AppState;
use crate::commands::flows::{self as cmd, FlowCreate, FlowUpdate};
use crate::server_model::filters::RunFilterBody;
use crate::server_model::flows::{flow_json, read_flow, read_flow_by_name, FLOW_COLUMNS};
use crate::server_model::{filters, paginate};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/flows/", post(create_flow))
        .route("/flows/filter", post(filter_flows))
        .route("/flows/count", post(count_flows))
        .route("/flows/paginate", post(paginate_flows))
        .route("/flows/bulk_delete", post(bulk_delete))
        .route("/flows/name/{name}", get(read_by_name))
        .route("/flows/{id}", get(read).patch(update).delete(delete))
        .route("/flows/{id}/", patch(update))
}

async fn create_flow(State(state): State<AppState>, AppJson(body): AppJson<FlowCreate>) -> ApiResult<Response> {
    let (id, created) = cmd::create_flow(&state.db, body).await?;
    let mut conn = state.db.reader().acquire().await?;
    let flow = read_flow(&mut conn, state.db.dialect, &id.to_string()).await?.ok_or_else(|| AppError::not_found("Flow"))?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(flow)).into_response())
}

async fn read(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = path_id(&id)?;
    let mut conn = state.db.reader().acquire().await?;
    read_flow(&mut conn, state.db.dialect, &id.to_string()).await?.map(Json).ok_or_else(|| AppError::not_found("Flow"))
}

async fn read_by_name(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let mut conn = state.db.reader().acquire().await?;
    read_flow_by_name(&mut conn, state.db.dialect, &name).await?.map(Json).ok_or_else(|| AppError::not_found("Flow"))
}

async fn update(State(state): State<AppState>, Path(id): Path<String>, AppJson(body): AppJson<FlowUpdate>) -> ApiResult<StatusCode> {
    cmd::update_flow(&state.db, path_id(&id)?, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    cmd::delete_flow(&state.db, path_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /flows/bulk_delete`: deletes up to `limit` flows that match
/// `flows` (with their runs and deployments, as one flow's delete does) and
/// answers `{"deleted": [ids]}`.
async fn bulk_delete(State(state): State<AppState>, body: axum::body::Bytes) -> ApiResult<Json<Value>> {
    let filter = super::body::bulk_filter(&body, "flows")?;
    let sql = filters::select_flows(&filter, state.db.dialect, &super::workspace(), "flow.id").map_err(super::filter_error)?;
    let deleted = cmd::delete_flows(&state.db, super::fetch_ids(&state.db, &sql).await?).await?;
    Ok(Json(serde_json::json!({"deleted": deleted})))
}

async fn filter_flows(State(state): State<AppState>, AppJson(body): AppJson<RunFilterBody>) -> ApiResult<Json<Vec<Value>>> {
    let sql = filters::select_flows(&body, state.db.dialect, &super::workspace(), FLOW_COLUMNS).map_err(super::filter_error)?;
    let rows = super::fetch(&state.db, &sql).await?;
    Ok(Json(rows.iter().map(flow_json).collect()))
}

async fn count_flows(State(state): State<AppState>, AppJson(body): AppJson<RunFilterBody>) -> ApiResult<Json<i64>> {
    let sql = filters::count_flows(&body, state.db.dialect, &super::workspace()).map_err(super::filter_error)?;
    Ok(Json(super::fetch_count(&state.db, &sql).await?))
}

async fn paginate_flows(State(state): State<AppState>, AppJson(body): AppJson<serde_json::Map<String, Value>>) -> ApiResult<Json<Value>> {
    let (filter, page, limit): (RunFilterBody, _, _) = paginate::prepare(body, state.settings.default_limit)?;
    let count_sql = filters::count_flows(&filter, state.db.dialect, &super::workspace()).map_err(super::filter_error)?;
    let count = super::fetch_count(&state.db, &count_sql).await?;
    let sql = filters::select_flows(&filter, state.db.dialect, &super::workspace(), FLOW_COLUMNS).map_err(super::filter_error)?;
    let rows = super::fetch(&state.db, &sql).await?;
    Ok(Json(paginate::page(rows.iter().map(flow_json).collect(), count, limit, page)))
}
