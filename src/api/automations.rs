//! `/automations`: only what deployments need today. Automations cannot be
//! created on this server yet (the other routes answer 404), so a resource
//! never owns any and deleting "the automations owned by X" deletes none:
//! 202 as Prefect answers, with nothing removed.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::delete;
use axum::Router;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/automations/owned-by/{resource_id}", delete(delete_owned))
}

async fn delete_owned(Path(_resource_id): Path<String>) -> StatusCode {
    StatusCode::ACCEPTED
}
