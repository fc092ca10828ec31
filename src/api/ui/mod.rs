//! Prefect's `/ui/*` helper routers (prefect/server/api/ui/): read-only
//! queries the dashboard pages make over the server read model.

mod flow_runs;
mod flows;
mod schemas;
mod task_runs;

use std::collections::HashMap;

use axum::Router;
use serde_json::Value;
use sqlx::Row;

use super::error::ApiResult;
use super::AppState;
use crate::db::Sql;

pub fn router() -> Router<AppState> {
    Router::new().merge(flows::router()).merge(flow_runs::router()).merge(task_runs::router()).merge(schemas::router())
}

/// `{<ids_key>: [uuid, ...]}` → `{id: count}` for every id asked (0 when
/// the query finds none): the shape of the UI's per-id count routes.
async fn counts_for_ids(state: &AppState, body: &[u8], ids_key: &str, query: fn(&[uuid::Uuid], &str) -> Sql) -> ApiResult<Value> {
    let mut fields = super::body::Fields::parse(body)?;
    let ids = fields.uuids(ids_key);
    fields.check()?;
    let ids = ids.unwrap_or_default();
    let found = if ids.is_empty() { Default::default() } else { counts_by_key(state, &query(&ids, &super::workspace())).await? };
    Ok(crate::server_model::ui::by_id(&ids, found, Value::from(0)))
}

/// Runs a `SELECT key, COUNT(*) … GROUP BY key` query into `{key: count}`.
async fn counts_by_key(state: &AppState, sql: &Sql) -> ApiResult<HashMap<String, Value>> {
    let rows = super::fetch(&state.db, sql).await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, Value::from(r.try_get::<i64, _>(1)?))))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}
