//! `/block_capabilities/` (Prefect's `block_capabilities` router): every
//! capability a registered block schema declares.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::error::ApiResult;
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/block_capabilities/", get(read_available))
}

async fn read_available(State(state): State<AppState>) -> ApiResult<Json<Vec<String>>> {
    let mut conn = state.db.reader().acquire().await?;
    Ok(Json(crate::server_model::blocks::capabilities(&mut conn, state.db.dialect, &super::workspace()).await?))
}
