//! Artifact commands (Prefect's `artifacts` router): each artifact is a
//! document on its own stream; a keyed artifact also moves its key's
//! collection (`artifact_collection`, the latest artifact of the key) to
//! itself, with Prefect's `prefect.artifact-collection.*` feed events.
//! Deleting the latest artifact of a key hands the collection to the
//! key's next newest artifact, or deletes it when none is left.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sqlx::AnyConnection;
use uuid::Uuid;

use super::documents::{self as doc, find};
use super::{present, write, ws};
use crate::api::error::{ApiResult, AppError};
use crate::db::{Bind, Db, Dialect};
use crate::eventlog::{lock_key, lock_stream, StreamRef, StreamType};
use crate::server_model::documents::{ARTIFACT, ARTIFACT_COLLECTION};

/// Prefect's limit on each metadata value; longer ones are cut and end in `...`.
const MAX_METADATA_LENGTH: usize = 500;

/// `ArtifactCreate` (extra fields forbidden).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactCreate {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default)]
    pub metadata_: Option<Map<String, Value>>,
    #[serde(default)]
    pub flow_run_id: Option<Uuid>,
    #[serde(default)]
    pub task_run_id: Option<Uuid>,
}

/// `ArtifactUpdate`: only the fields sent change.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactUpdate {
    #[serde(default, deserialize_with = "present")]
    pub data: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub metadata_: Option<Value>,
}



pub fn not_found() -> AppError {
    AppError::Detail(StatusCode::NOT_FOUND, "Artifact not found.".into())
}

/// Prefect's metadata rules: string values (a number is a 422, as pydantic's
/// strict `dict[str, str]`), each cut to 500 characters plus `...`.
fn metadata(m: Option<&Map<String, Value>>) -> ApiResult<Value> {
    let Some(m) = m else { return Ok(Value::Null) };
    let mut out = Map::new();
    for (k, v) in m {
        let Some(s) = v.as_str() else {
            return Err(AppError::invalid(&["body", "metadata_", k], "Input should be a valid string", v.clone()));
        };
        let cut = if s.chars().count() > MAX_METADATA_LENGTH { format!("{}...", s.chars().take(MAX_METADATA_LENGTH).collect::<String>()) } else { s.to_owned() };
        out.insert(k.clone(), Value::String(cut));
    }
    Ok(Value::Object(out))
}

pub async fn artifact_by_id(conn: &mut AnyConnection, dialect: Dialect, id: Uuid) -> ApiResult<Option<Map<String, Value>>> {
    find(conn, dialect, &ARTIFACT, "t.workspace_id = $1 AND t.id = $2", &[Bind::Text(ws()), Bind::Text(id.to_string())]).await
}

pub async fn collection_by_key(conn: &mut AnyConnection, dialect: Dialect, key: &str) -> ApiResult<Option<Map<String, Value>>> {
    find(conn, dialect, &ARTIFACT_COLLECTION, "t.workspace_id = $1 AND t.key = $2", &[Bind::Text(ws()), Bind::Text(key.to_owned())]).await
}

/// The key's newest artifact other than `except`, by creation time.
async fn newest_of_key(conn: &mut AnyConnection, dialect: Dialect, key: &str, except: Uuid) -> ApiResult<Option<Map<String, Value>>> {
    let cond = "t.workspace_id = $1 AND t.key = $2 AND t.id <> $3 ORDER BY t.created DESC, t.id DESC LIMIT 1";
    find(conn, dialect, &ARTIFACT, cond, &[Bind::Text(ws()), Bind::Text(key.to_owned()), Bind::Text(except.to_string())]).await
}

fn id_of(doc: &Map<String, Value>) -> ApiResult<Uuid> {
    doc.get("id").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok()).ok_or_else(|| AppError::Internal(anyhow::anyhow!("a stored artifact has no id")))
}

/// The collection's copy of an artifact's fields, pointing at it.
fn collection_fields(artifact_id: Uuid, artifact: &Map<String, Value>) -> Map<String, Value> {
    let mut fields = Map::from_iter([("latest_id".to_owned(), json!(artifact_id))]);
    for key in ["key", "type", "description", "data", "metadata_", "flow_run_id", "task_run_id"] {
        fields.insert(key.into(), artifact.get(key).cloned().unwrap_or(Value::Null));
    }
    fields
}

/// Prefect's `prefect.artifact-collection.<action>` feed event.
fn collection_event(action: &str, id: Uuid, collection: &Map<String, Value>, occurred: DateTime<Utc>) -> Value {
    let field = |k: &str| collection.get(k).cloned().unwrap_or(Value::Null);
    let mut related = vec![json!({"prefect.resource.id": format!("prefect.artifact.{}", field("latest_id").as_str().unwrap_or_default()), "prefect.resource.role": "latest"})];
    if let Some(run) = field("flow_run_id").as_str() {
        related.push(json!({"prefect.resource.id": format!("prefect.flow-run.{run}"), "prefect.resource.role": "flow-run"}));
    }
    if let Some(run) = field("task_run_id").as_str() {
        related.push(json!({"prefect.resource.id": format!("prefect.task-run.{run}"), "prefect.resource.role": "task-run"}));
    }
    json!({
        "id": Uuid::now_v7(),
        "occurred": crate::time::fmt_ts(occurred),
        "event": format!("prefect.artifact-collection.{action}"),
        "resource": {"prefect.resource.id": format!("prefect.artifact-collection.{id}"), "prefect.resource.name": field("key")},
        "related": related,
        "payload": {"key": field("key"), "type": field("type"), "data": field("data"), "description": field("description")},
    })
}

/// Applies `changes` to an existing collection, with its `updated` feed event.
async fn update_collection(conn: &mut AnyConnection, dialect: Dialect, collection: &Map<String, Value>, changes: Map<String, Value>, now: DateTime<Utc>) -> ApiResult<()> {
    let id = id_of(collection)?;
    let mut after = collection.clone();
    after.extend(changes.clone());
    let event = collection_event("updated", id, &after, now);
    doc::update(conn, dialect, StreamType::ArtifactCollection, id, changes, now, Some(event)).await
}

/// Points `key`'s collection at `artifact` (creating the collection when
/// the key is new). Runs under the key's lock.
async fn move_collection(conn: &mut AnyConnection, dialect: Dialect, key: &str, artifact_id: Uuid, artifact: &Map<String, Value>, now: DateTime<Utc>) -> ApiResult<()> {
    let fields = collection_fields(artifact_id, artifact);
    match collection_by_key(conn, dialect, key).await? {
        Some(existing) => update_collection(conn, dialect, &existing, fields, now).await,
        None => {
            let id = Uuid::now_v7();
            let event = collection_event("created", id, &fields, now);
            doc::create(conn, dialect, StreamType::ArtifactCollection, id, fields, now, Some(event)).await
        }
    }
}

/// Creates an artifact; returns its id.
pub async fn create(db: &Db, body: ArtifactCreate) -> ApiResult<Uuid> {
    if let Some(key) = &body.key {
        super::names::validate_dashed(&["body", "key"], "Artifact key", key)?;
    }
    let meta = metadata(body.metadata_.as_ref())?;
    let record = Map::from_iter([
        ("key".to_owned(), json!(body.key)),
        ("type".to_owned(), json!(body.kind)),
        ("description".to_owned(), json!(body.description)),
        ("data".to_owned(), body.data.clone().unwrap_or(Value::Null)),
        ("metadata_".to_owned(), meta),
        ("flow_run_id".to_owned(), json!(body.flow_run_id)),
        ("task_run_id".to_owned(), json!(body.task_run_id)),
    ]);
    let dialect = db.dialect;
    write(db, move |conn| {
        let (record, key) = (record.clone(), body.key.clone());
        Box::pin(async move {
            let now = crate::time::micros(Utc::now());
            let id = Uuid::now_v7();
            if let Some(key) = &key {
                lock_key(conn, dialect, &format!("artifact-key:{key}")).await?;
                move_collection(conn, dialect, key, id, &record, now).await?;
            }
            doc::create(conn, dialect, StreamType::Artifact, id, record, now, None).await?;
            Ok(id)
        })
    })
    .await
}

/// Applies an `ArtifactUpdate` to the artifact and, when it is its key's
/// latest, to the collection's copy (404 when there is no such artifact).
pub async fn update(db: &Db, id: Uuid, body: ArtifactUpdate) -> ApiResult<()> {
    let mut changes = Map::new();
    if let Some(data) = &body.data {
        changes.insert("data".into(), data.clone());
    }
    if let Some(description) = &body.description {
        changes.insert("description".into(), description.clone());
    }
    if let Some(meta) = &body.metadata_ {
        let meta = match meta {
            Value::Null => Value::Null,
            Value::Object(m) => metadata(Some(m))?,
            other => return Err(AppError::invalid(&["body", "metadata_"], "Input should be a valid dictionary", other.clone())),
        };
        changes.insert("metadata_".into(), meta);
    }
    let dialect = db.dialect;
    write(db, move |conn| {
        let changes = changes.clone();
        Box::pin(async move {
            lock_stream(conn, dialect, &StreamRef::new(StreamType::Artifact, id)).await?;
            let artifact = artifact_by_id(conn, dialect, id).await?.ok_or_else(not_found)?;
            let now = crate::time::micros(Utc::now());
            if let Some(key) = artifact.get("key").and_then(Value::as_str) {
                lock_key(conn, dialect, &format!("artifact-key:{key}")).await?;
                if let Some(collection) = collection_by_key(conn, dialect, key).await? {
                    if collection.get("latest_id") == Some(&json!(id)) && !changes.is_empty() {
                        update_collection(conn, dialect, &collection, changes.clone(), now).await?;
                    }
                }
            }
            doc::update(conn, dialect, StreamType::Artifact, id, changes, now, None).await
        })
    })
    .await
}

/// Deletes an artifact (404 when there is none); when it was its key's
/// latest, the collection moves to the key's next newest artifact, or is
/// deleted when none is left.
pub async fn delete(db: &Db, id: Uuid) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        Box::pin(async move {
            lock_stream(conn, dialect, &StreamRef::new(StreamType::Artifact, id)).await?;
            let artifact = artifact_by_id(conn, dialect, id).await?.ok_or_else(not_found)?;
            let now = crate::time::micros(Utc::now());
            if let Some(key) = artifact.get("key").and_then(Value::as_str) {
                lock_key(conn, dialect, &format!("artifact-key:{key}")).await?;
                let collection = collection_by_key(conn, dialect, key).await?.filter(|c| c.get("latest_id") == Some(&json!(id)));
                if let Some(collection) = collection {
                    match newest_of_key(conn, dialect, key, id).await? {
                        Some(next) => update_collection(conn, dialect, &collection, collection_fields(id_of(&next)?, &next), now).await?,
                        None => {
                            let cid = id_of(&collection)?;
                            let event = collection_event("deleted", cid, &collection, now);
                            doc::delete(conn, dialect, StreamType::ArtifactCollection, cid, now, Some(event)).await?;
                        }
                    }
                }
            }
            doc::delete(conn, dialect, StreamType::Artifact, id, now, None).await
        })
    })
    .await
}
