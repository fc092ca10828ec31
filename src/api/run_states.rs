//! The shared body of the `/flow_run_states` and `/task_run_states` routers:
//! list a run's states, or read one state.

use axum::extract::State;
use axum::Json;
use serde_json::Value;

use super::error::{ApiResult, AppError};
use super::json::path_id;
use super::AppState;
use crate::server_model::states::{read_state, read_states, StateTable};

/// `GET /<kind>_run_states/?<query_param>=<id>`.
pub(super) async fn list(state: &AppState, table: StateTable, query_param: &str, raw_id: &str) -> ApiResult<Json<Vec<Value>>> {
    let id = uuid::Uuid::parse_str(raw_id).map_err(|e| AppError::Validation {
        detail: vec![serde_json::json!({"type": "uuid_parsing", "loc": ["query", query_param], "msg": format!("Input should be a valid UUID, {e}"), "input": raw_id})],
        body: Value::Null,
    })?;
    let mut conn = state.db.reader().acquire().await?;
    Ok(Json(read_states(&mut conn, state.db.dialect, table, &id.to_string()).await?))
}

/// `GET /<kind>_run_states/{id}`.
pub(super) async fn one(State(state): State<AppState>, table: StateTable, raw_id: &str, what: &str) -> ApiResult<Json<Value>> {
    let id = path_id(raw_id)?;
    let mut conn = state.db.reader().acquire().await?;
    read_state(&mut conn, state.db.dialect, table, &id.to_string())
        .await?
        .map(Json)
        .ok_or_else(|| AppError::not_found(what))
}
