//! `/ui/flows`: deployment counts and next scheduled runs per flow.

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

use super::super::body::Fields;
use super::super::error::ApiResult;
use super::AppState;
use crate::server_model::ui;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/flows/count-deployments", post(count_deployments))
        .route("/ui/flows/next-runs", post(next_runs))
}

/// `{flow_ids}` → `{flow_id: number of deployments}`.
async fn count_deployments(State(state): State<AppState>, body: Bytes) -> ApiResult<Json<Value>> {
    Ok(Json(super::counts_for_ids(&state, &body, "flow_ids", ui::count_deployments_by_flow).await?))
}

/// `{flow_ids}` → `{flow_id: SimpleNextFlowRun | null}`: each flow's
/// SCHEDULED run due first.
async fn next_runs(State(state): State<AppState>, body: Bytes) -> ApiResult<Json<Value>> {
    use sqlx::Row;
    let mut fields = Fields::parse(&body)?;
    let ids = fields.uuids("flow_ids");
    fields.check()?;
    let ids = ids.unwrap_or_default();
    let mut found = std::collections::HashMap::new();
    if !ids.is_empty() {
        let rows = super::super::fetch(&state.db, &ui::next_runs_by_flow(&ids, &super::super::workspace())).await?;
        for r in &rows {
            found.insert(r.try_get::<String, _>("flow_id")?, ui::next_run_json(r));
        }
    }
    Ok(Json(ui::by_id(&ids, found, Value::Null)))
}
