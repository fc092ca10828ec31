//! Saved searches (Prefect's `saved_searches` router): the UI's saved
//! filter views, documents on their own streams. `PUT` upserts by name:
//! an existing search keeps its id and gets the new filters.

use axum::http::StatusCode;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::documents::{self as doc, find};
use super::write;
use crate::api::error::{ApiResult, AppError};
use crate::db::{Bind, Db};
use crate::eventlog::{lock_key, lock_stream, StreamRef, StreamType, DEFAULT_WORKSPACE};
use crate::server_model::documents::SAVED_SEARCH;

/// `SavedSearchFilter`: every field required (`value` may be `null`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SavedSearchFilter {
    pub object: String,
    pub property: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub operation: String,
    pub value: Value,
}

/// `SavedSearchCreate` (extra fields forbidden, as Prefect's action models).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedSearchCreate {
    pub name: String,
    #[serde(default)]
    pub filters: Vec<SavedSearchFilter>,
}

fn not_found() -> AppError {
    AppError::Detail(StatusCode::NOT_FOUND, "Saved search not found".into())
}

/// Creates the search, or replaces the filters of the one with its name.
/// Returns `(id, created)`.
pub async fn upsert(db: &Db, body: SavedSearchCreate) -> ApiResult<(Uuid, bool)> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let body = body.clone();
        Box::pin(async move {
            lock_key(conn, dialect, &format!("saved-search-name:{}", body.name)).await?;
            let filters = serde_json::to_value(&body.filters).map_err(|e| AppError::Internal(e.into()))?;
            let now = crate::time::micros(Utc::now());
            let existing = find(conn, dialect, &SAVED_SEARCH, "t.workspace_id = $1 AND t.name = $2", &[Bind::Text(DEFAULT_WORKSPACE.to_string()), Bind::Text(body.name.clone())]).await?;
            if let Some(current) = existing {
                let id = super::work_pools::id_of(&current)?;
                lock_stream(conn, dialect, &StreamRef::new(StreamType::SavedSearch, id)).await?;
                doc::update(conn, dialect, StreamType::SavedSearch, id, Map::from_iter([("filters".into(), filters)]), now, None).await?;
                return Ok((id, false));
            }
            let id = Uuid::now_v7();
            let record = Map::from_iter([("name".into(), json!(body.name)), ("filters".into(), filters)]);
            doc::create(conn, dialect, StreamType::SavedSearch, id, record, now, None).await?;
            Ok((id, true))
        })
    })
    .await
}

/// Deletes a search (404 when there is none).
pub async fn delete(db: &Db, id: Uuid) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        Box::pin(async move {
            lock_stream(conn, dialect, &StreamRef::new(StreamType::SavedSearch, id)).await?;
            find(conn, dialect, &SAVED_SEARCH, "t.id = $1", &[Bind::Text(id.to_string())]).await?.ok_or_else(not_found)?;
            doc::delete(conn, dialect, StreamType::SavedSearch, id, crate::time::micros(Utc::now()), None).await
        })
    })
    .await
}
