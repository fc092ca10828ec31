//! Block document commands (Prefect's `block_documents` router). A
//! document's nested blocks are references (`{"$ref": {"block_document_id":
//! ...}}` in the data sent), kept apart from its own values; reads resolve
//! them (`server_model::blocks`). Names are unique per block type, under a
//! name lock. Named documents carry Prefect's `prefect.block-document.*`
//! feed events; anonymous ones (made by Prefect itself) carry none.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sqlx::AnyConnection;
use uuid::Uuid;

use super::documents::{self as doc, find};
use super::{write, ws};
use crate::api::error::{ApiResult, AppError};
use crate::db::{Bind, Db, Dialect};
use crate::eventlog::{lock_key, lock_stream, StreamRef, StreamType};
use crate::db::sealed::{DataKey, SealError};
use crate::server_model::blocks::{opened_data, references, secrets};
use std::sync::Arc;
use crate::server_model::documents::BLOCK_DOCUMENT;
use crate::server_model::feed_events::lifecycle_event;

/// `BlockDocumentCreate` (extra fields forbidden).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockDocumentCreate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub data: Map<String, Value>,
    pub block_schema_id: Uuid,
    pub block_type_id: Uuid,
    #[serde(default)]
    pub is_anonymous: bool,
}

/// `BlockDocumentUpdate`: `data` replaces the stored values, merged into
/// them unless `merge_existing_data` is false.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockDocumentUpdate {
    #[serde(default)]
    pub block_schema_id: Option<Uuid>,
    #[serde(default)]
    pub data: Option<Map<String, Value>>,
    #[serde(default = "yes")]
    pub merge_existing_data: bool,
}

fn yes() -> bool {
    true
}


fn sealing(e: SealError) -> AppError {
    AppError::Internal(e.into())
}

fn key(db: &Db) -> ApiResult<Arc<DataKey>> {
    db.block_key().map_err(AppError::Internal)
}

pub fn not_found() -> AppError {
    AppError::Detail(StatusCode::NOT_FOUND, "Block document not found".into())
}

fn bad_request(msg: impl Into<String>) -> AppError {
    AppError::Detail(StatusCode::BAD_REQUEST, msg.into())
}

/// Prefect's `BlockDocumentCreate` checks: a name unless anonymous (the
/// model validator runs first), and a `BlockDocumentName`.
pub fn validate_create(body: &Value) -> ApiResult<()> {
    let anonymous = body.get("is_anonymous").and_then(Value::as_bool).unwrap_or(false);
    let named = body.get("name").is_some_and(|n| !n.is_null() && n.as_str() != Some(""));
    if body.is_object() && !anonymous && !named {
        return Err(AppError::Validation {
            detail: vec![json!({"type": "value_error", "loc": ["body"], "msg": "Value error, Names must be provided for block documents.", "input": body, "ctx": {"error": {}}})],
            body: Value::Null,
        });
    }
    if let Some(name) = body.get("name").and_then(Value::as_str) {
        super::names::validate_name(&["body", "name"], name)?;
        super::names::validate_dashed(&["body", "name"], "Block document name", name)?;
    }
    Ok(())
}

// ------------------------------------------------------------ lookups ---

pub async fn by_id(conn: &mut AnyConnection, dialect: Dialect, id: Uuid) -> ApiResult<Option<Map<String, Value>>> {
    find(conn, dialect, &BLOCK_DOCUMENT, "t.workspace_id = $1 AND t.id = $2", &[Bind::Text(ws()), Bind::Text(id.to_string())]).await
}

async fn by_name(conn: &mut AnyConnection, dialect: Dialect, block_type_id: Uuid, name: &str) -> ApiResult<Option<Map<String, Value>>> {
    let binds = [Bind::Text(ws()), Bind::Text(block_type_id.to_string()), Bind::Text(name.to_owned())];
    find(conn, dialect, &BLOCK_DOCUMENT, "t.workspace_id = $1 AND t.block_type_id = $2 AND t.name = $3", &binds).await
}

/// `_separate_block_references_from_data`: the values, and the fields that
/// are references with the document each names.
fn separate_references(data: Map<String, Value>) -> ApiResult<(Map<String, Value>, Vec<(String, Uuid)>)> {
    let mut values = Map::new();
    let mut refs = Vec::new();
    for (key, value) in data {
        match value.as_object().and_then(|m| m.get("$ref")) {
            Some(reference) => {
                let id = reference.get("block_document_id").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok());
                let Some(id) = id else {
                    return Err(bad_request(format!("Received block reference without a block_document_id in key {key}")));
                };
                refs.push((key, id));
            }
            None => {
                values.insert(key, value);
            }
        }
    }
    Ok((values, refs))
}

/// Would `parent` → `reference` close a cycle (a self-reference, or
/// `parent` already reachable from `reference`)?
async fn would_form_cycle(conn: &mut AnyConnection, dialect: Dialect, parent: Uuid, reference: Uuid) -> ApiResult<bool> {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![reference];
    while let Some(current) = stack.pop() {
        if current == parent {
            return Ok(true);
        }
        if !seen.insert(current) {
            continue;
        }
        if let Some(row) = by_id(conn, dialect, current).await? {
            stack.extend(references(&row).into_iter().filter_map(|(_, id)| Uuid::parse_str(&id).ok()));
        }
    }
    Ok(false)
}

/// Checks each new reference of `parent` (the referenced document must
/// exist, and no cycle may form) and returns them as the stored
/// `{field: id}` map.
async fn checked_references(conn: &mut AnyConnection, dialect: Dialect, parent: Uuid, refs: &[(String, Uuid)], known: &Map<String, Value>) -> ApiResult<Value> {
    let mut out = Map::new();
    for (field, id) in refs {
        let unchanged = known.get(field).and_then(Value::as_str) == Some(id.to_string().as_str());
        if !unchanged {
            if by_id(conn, dialect, *id).await?.is_none() {
                return Err(AppError::Conflict);
            }
            if would_form_cycle(conn, dialect, parent, *id).await? {
                return Err(bad_request(format!(
                    "Cannot create block document reference: it would introduce a cycle into the block_document_reference graph (parent={parent}, reference={id})."
                )));
            }
        }
        out.insert(field.clone(), json!(id));
    }
    Ok(Value::Object(out))
}

/// Prefect's `prefect.block-document.<action>` event: the name, the
/// non-secret string values (as a read without secrets shows them), the
/// schema's capabilities and block type; related to the type and schema.
#[allow(clippy::too_many_arguments)]
async fn document_event(conn: &mut AnyConnection, dialect: Dialect, key: &DataKey, action: &str, id: Uuid, row: &Map<String, Value>, occurred: DateTime<Utc>) -> ApiResult<Option<Value>> {
    if row.get("is_anonymous").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    let text = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let schema = super::block_schemas::of_document(conn, dialect, row).await?;
    let schema_fields = schema.as_ref().and_then(|s| s.get("fields")).cloned().unwrap_or(Value::Null);
    let secret_keys: Vec<&str> = schema_fields.get("secret_fields").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let mut data = opened_data(key, row).map_err(sealing)?;
    secrets::obfuscate(&mut data, &secrets::secret_paths(&schema_fields));
    let data: Map<String, Value> = data.into_iter().filter(|(k, v)| v.is_string() && !secret_keys.contains(&k.as_str())).collect();
    let type_name = row.get("block_type_name").and_then(Value::as_str).filter(|s| !s.is_empty());
    let block_schema = schema.as_ref().map(|s| {
        json!({
            "capabilities": s.get("capabilities").filter(|c| c.is_array()).cloned().unwrap_or_else(|| json!([])),
            "block_type": {"id": text("block_type_id"), "name": type_name.unwrap_or_default()},
        })
    });
    let mut type_ref = json!({"prefect.resource.id": format!("prefect.block-type.{}", text("block_type_id")), "prefect.resource.role": "block-type"});
    if let Some(name) = type_name {
        type_ref["prefect.resource.name"] = json!(name);
    }
    let related = vec![type_ref, json!({"prefect.resource.id": format!("prefect.block-schema.{}", text("block_schema_id")), "prefect.resource.role": "block-schema"})];
    let payload = json!({"name": row.get("name"), "data": data, "block_schema": block_schema});
    let name = row.get("name").and_then(Value::as_str);
    Ok(Some(lifecycle_event("block-document", action, &id.to_string(), name, related, payload, occurred)))
}

// ---------------------------------------------------------- commands ---

/// Creates a block document; returns its id. A name taken within the block
/// type is a 409 ("Block already exists"); an anonymous document without a
/// name gets `anonymous-<uuid>`.
pub async fn create(db: &Db, body: BlockDocumentCreate) -> ApiResult<Uuid> {
    let dialect = db.dialect;
    let key = key(db)?;
    write(db, move |conn| {
        let body = body.clone();
        let key = key.clone();
        Box::pin(async move {
            let Some(block_type) = super::block_types::by_id(conn, dialect, body.block_type_id).await? else {
                return Err(AppError::Detail(StatusCode::NOT_FOUND, format!("Block type {} not found", body.block_type_id)));
            };
            if super::block_schemas::by_id(conn, dialect, body.block_schema_id).await?.is_none() {
                return Err(AppError::Conflict);
            }
            let name = match (&body.name, body.is_anonymous) {
                (Some(name), _) if !name.is_empty() => name.clone(),
                _ => format!("anonymous-{}", Uuid::new_v4()),
            };
            lock_key(conn, dialect, &format!("block-document-name:{}:{name}", body.block_type_id)).await?;
            if by_name(conn, dialect, body.block_type_id, &name).await?.is_some() {
                return Err(AppError::Detail(StatusCode::CONFLICT, "Block already exists".into()));
            }
            let id = Uuid::now_v7();
            let (data, refs) = separate_references(body.data)?;
            let references = checked_references(conn, dialect, id, &refs, &Map::new()).await?;
            let record = Map::from_iter([
                ("name".into(), json!(name)),
                ("data".into(), key.seal(&Value::Object(data)).map_err(sealing)?),
                ("is_anonymous".into(), json!(body.is_anonymous)),
                ("block_type_name".into(), block_type.get("name").cloned().unwrap_or(Value::Null)),
                ("block_type_id".into(), json!(body.block_type_id)),
                ("block_schema_id".into(), json!(body.block_schema_id)),
                ("references".into(), references),
            ]);
            let now = crate::time::micros(Utc::now());
            let event = document_event(conn, dialect, &key, "created", id, &record, now).await?;
            doc::create(conn, dialect, StreamType::BlockDocument, id, record, now, event).await?;
            Ok(id)
        })
    })
    .await
}

/// Applies a `BlockDocumentUpdate` (Prefect's `update_block_document`):
/// hidden secrets posted back keep their stored values, the data is merged
/// into the stored values unless `merge_existing_data` is false, the
/// references become those of the new data, and a new schema must be of the
/// same block type (400).
pub async fn update(db: &Db, id: Uuid, body: BlockDocumentUpdate) -> ApiResult<()> {
    let dialect = db.dialect;
    let key = key(db)?;
    write(db, move |conn| {
        let body = body.clone();
        let key = key.clone();
        Box::pin(async move {
            let current = by_id(conn, dialect, id).await?.ok_or_else(not_found)?;
            lock_stream(conn, dialect, &StreamRef::new(StreamType::BlockDocument, id)).await?;
            let mut changes = Map::new();
            let data_sent = body.data.is_some() || !body.merge_existing_data;
            if data_sent {
                let current_data = opened_data(&key, &current).map_err(sealing)?;
                let current_schema = super::block_schemas::of_document(conn, dialect, &current).await?;
                let secret_paths = secrets::secret_paths(current_schema.as_ref().and_then(|s| s.get("fields")).unwrap_or(&Value::Null));
                let mut update = body.data.clone().unwrap_or_default();
                secrets::restore(&mut update, &current_data, &secret_paths);
                let data = if body.merge_existing_data {
                    let mut merged = current_data;
                    merged.extend(update);
                    merged
                } else {
                    update
                };
                let (values, refs) = separate_references(data)?;
                if let Some(schema_id) = body.block_schema_id.filter(|s| current.get("block_schema_id").and_then(Value::as_str) != Some(s.to_string().as_str())) {
                    let Some(schema) = super::block_schemas::by_id(conn, dialect, schema_id).await? else {
                        return Err(AppError::Detail(StatusCode::NOT_FOUND, format!("Block schema {schema_id} not found")));
                    };
                    if schema.get("block_type_id") != current.get("block_type_id") {
                        return Err(bad_request("Must migrate block document to a block schema of the same block type."));
                    }
                    changes.insert("block_schema_id".into(), json!(schema_id));
                }
                let known = current.get("references").and_then(Value::as_object).cloned().unwrap_or_default();
                changes.insert("references".into(), checked_references(conn, dialect, id, &refs, &known).await?);
                changes.insert("data".into(), key.seal(&Value::Object(values)).map_err(sealing)?);
            }
            let now = crate::time::micros(Utc::now());
            let after = crate::server_model::feed_events::merged(&current, &changes);
            let event = document_event(conn, dialect, &key, "updated", id, &after, now).await?;
            doc::update(conn, dialect, StreamType::BlockDocument, id, changes, now, event).await
        })
    })
    .await
}

/// Deletes a block document (404 when there is none). Documents that
/// referenced it lose that reference.
pub async fn delete(db: &Db, id: Uuid) -> ApiResult<()> {
    let dialect = db.dialect;
    let key = key(db)?;
    write(db, move |conn| {
        let key = key.clone();
        Box::pin(async move {
            let current = by_id(conn, dialect, id).await?.ok_or_else(not_found)?;
            lock_stream(conn, dialect, &StreamRef::new(StreamType::BlockDocument, id)).await?;
            let now = crate::time::micros(Utc::now());
            let event = document_event(conn, dialect, &key, "deleted", id, &current, now).await?;
            doc::delete(conn, dialect, StreamType::BlockDocument, id, now, event).await
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_split_from_values_in_field_order() {
        let a = Uuid::new_v4();
        let data = json!({"x": 1, "creds": {"$ref": {"block_document_id": a.to_string()}}, "y": {"z": 2}});
        let (values, refs) = separate_references(data.as_object().cloned().unwrap()).unwrap();
        assert_eq!(Value::Object(values), json!({"x": 1, "y": {"z": 2}}));
        assert_eq!(refs, vec![("creds".to_owned(), a)]);
    }

    #[test]
    fn a_reference_without_a_document_id_is_a_400() {
        let data = json!({"creds": {"$ref": {}}});
        let err = separate_references(data.as_object().cloned().unwrap()).unwrap_err();
        assert!(matches!(err, AppError::Detail(StatusCode::BAD_REQUEST, ref m) if m == "Received block reference without a block_document_id in key creds"));
    }

    #[test]
    fn documents_need_a_name_unless_anonymous() {
        let id = Uuid::new_v4();
        assert!(validate_create(&json!({"block_type_id": id, "block_schema_id": id})).is_err());
        assert!(validate_create(&json!({"block_type_id": id, "block_schema_id": id, "is_anonymous": true})).is_ok());
        assert!(validate_create(&json!({"name": "my-block"})).is_ok());
        assert!(validate_create(&json!({"name": "My Block"})).is_err());
        assert!(validate_create(&json!({"name": "a/b"})).is_err());
    }
}
