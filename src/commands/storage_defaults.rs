//! The server default result storage (Prefect's `storage_defaults` and
//! `PUT|DELETE /admin/storage`): a configuration entry naming a block
//! document whose schema can `write-path`. The client reads it before each
//! flow run and, when set, persists results there.
//!
//! The entry lives on one fixed stream; clearing it sets `null` rather than
//! deleting the stream, so it can be set again. Prefect clears the entry
//! when its block document (or that document's schema or type) is deleted;
//! here the read answers `null` once the document is gone, which is the
//! same for every client, since a deleted document's id never comes back.

use axum::http::StatusCode;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sqlx::AnyConnection;
use uuid::Uuid;

use super::documents::{self as doc, find};
use super::{write, ws};
use crate::api::error::{ApiResult, AppError};
use crate::db::{Bind, Db, Dialect};
use crate::eventlog::{lock_stream, StreamRef, StreamType};
use crate::server_model::documents::CONFIGURATION;

/// Prefect's `SERVER_DEFAULT_RESULT_STORAGE_CONFIGURATION_KEY`.
pub const KEY: &str = "server-default-result-storage";

/// The stream of the entry (one per workspace's key; fixed, so concurrent
/// writers serialise on it).
const STREAM_ID: Uuid = Uuid::from_u128(0x0000_0000_0000_7000_8000_5354_4f52_4147);

/// `ServerDefaultResultStorageUpdate`.
#[derive(Debug, Clone, Deserialize)]
pub struct StorageUpdate {
    pub default_result_storage_block_id: Uuid,
}

async fn entry(conn: &mut AnyConnection, dialect: Dialect) -> ApiResult<Option<Map<String, Value>>> {
    find(conn, dialect, &CONFIGURATION, "t.workspace_id = $1 AND t.key = $2", &[Bind::Text(ws()), Bind::Text(KEY.into())]).await
}

/// The block document id the entry holds (`None` when unset or cleared).
async fn stored_id(conn: &mut AnyConnection, dialect: Dialect) -> ApiResult<Option<Uuid>> {
    let entry = entry(conn, dialect).await?;
    Ok(entry.and_then(|e| e.get("value")?.get("default_result_storage_block_id")?.as_str().and_then(|s| Uuid::parse_str(s).ok())))
}

/// The configured block document id, if it is set and the document exists.
pub async fn read(conn: &mut AnyConnection, dialect: Dialect) -> ApiResult<Option<Uuid>> {
    let Some(id) = stored_id(conn, dialect).await? else { return Ok(None) };
    Ok(super::block_documents::by_id(conn, dialect, id).await?.map(|_| id))
}

async fn store(conn: &mut AnyConnection, dialect: Dialect, block_id: Option<Uuid>) -> ApiResult<()> {
    lock_stream(conn, dialect, &StreamRef::new(StreamType::Configuration, STREAM_ID)).await?;
    let value = json!({"default_result_storage_block_id": block_id});
    let now = crate::time::micros(Utc::now());
    if entry(conn, dialect).await?.is_some() {
        doc::update(conn, dialect, StreamType::Configuration, STREAM_ID, Map::from_iter([("value".into(), value)]), now, None).await
    } else {
        let record = Map::from_iter([("key".into(), json!(KEY)), ("value".into(), value)]);
        doc::create(conn, dialect, StreamType::Configuration, STREAM_ID, record, now, None).await
    }
}

/// Sets the default storage: the document must exist (404) and its schema
/// must have the `write-path` capability (422), as Prefect checks.
pub async fn set(db: &Db, body: StorageUpdate) -> ApiResult<()> {
    let dialect = db.dialect;
    let id = body.default_result_storage_block_id;
    write(db, move |conn| {
        Box::pin(async move {
            let Some(document) = super::block_documents::by_id(conn, dialect, id).await? else {
                return Err(AppError::Detail(StatusCode::NOT_FOUND, format!("Block document {id} not found.")));
            };
            let schema = super::block_schemas::of_document(conn, dialect, &document).await?;
            let writes = schema.as_ref().and_then(|s| s.get("capabilities")).and_then(Value::as_array).is_some_and(|c| c.iter().any(|c| c == "write-path"));
            if !writes {
                return Err(AppError::Detail(StatusCode::UNPROCESSABLE_ENTITY, format!("Block document {id} cannot be used for result storage.")));
            }
            store(conn, dialect, Some(id)).await
        })
    })
    .await
}

/// Clears the default storage (nothing is written when it is not set).
pub async fn clear(db: &Db) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        Box::pin(async move {
            match stored_id(conn, dialect).await? {
                Some(_) => store(conn, dialect, None).await,
                None => Ok(()),
            }
        })
    })
    .await
}
