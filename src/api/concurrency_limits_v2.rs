//! `/v2/concurrency_limits`: only the lease route a tagged task calls.
//!
//! Concurrency limits cannot be created on this server yet, so no `tag:*`
//! limit exists and a lease request holds nothing: Prefect answers that case
//! with an empty `limits` list, and the client then skips renew and release.
//! The other routes answer 404 until limits are built.

use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiResult;
use super::json::AppJson;
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v2/concurrency_limits/increment-with-lease", post(increment_with_lease))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct IncrementWithLease {
    names: Vec<String>,
    slots: i64,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    lease_duration: Option<f64>,
    #[serde(default)]
    holder: Option<Value>,
    #[serde(default)]
    create_if_missing: Option<bool>,
}

async fn increment_with_lease(AppJson(_body): AppJson<IncrementWithLease>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({"lease_id": uuid::Uuid::now_v7(), "limits": []})))
}
