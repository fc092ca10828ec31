//! Block schema commands (Prefect's `block_schemas` router). A schema is
//! identified by its checksum and version: registering one that exists
//! returns it (200) instead of storing a copy. A schema naming nested block
//! schemas in `block_schema_references` needs their block types; a nested
//! schema not registered yet is created from the root's `definitions`, as
//! Prefect's `_register_nested_block_schemas` does. Schemas carry no feed
//! event (Prefect emits none).

use axum::http::StatusCode;
use chrono::Utc;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sqlx::AnyConnection;
use uuid::Uuid;

use super::documents::{self as doc, find};
use super::{write, ws};
use crate::api::error::{ApiResult, AppError};
use crate::db::{Bind, Db, Dialect};
use crate::eventlog::{lock_key, lock_stream, StreamRef, StreamType};
use crate::server_model::blocks::checksum::{definition_key, reference_strings, schema_checksum, stored_definitions};
use crate::server_model::documents::BLOCK_SCHEMA;

/// Prefect's `DEFAULT_BLOCK_SCHEMA_VERSION`.
pub const DEFAULT_VERSION: &str = "non-versioned";

fn default_version() -> String {
    DEFAULT_VERSION.to_owned()
}

/// `BlockSchemaCreate` (extra fields forbidden).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockSchemaCreate {
    #[serde(default)]
    pub fields: Map<String, Value>,
    pub block_type_id: Uuid,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default = "default_version")]
    pub version: String,
}


pub fn not_found() -> AppError {
    AppError::Detail(StatusCode::NOT_FOUND, "Block schema not found".into())
}

// ------------------------------------------------------------ lookups ---

pub async fn by_id(conn: &mut AnyConnection, dialect: Dialect, id: Uuid) -> ApiResult<Option<Map<String, Value>>> {
    find(conn, dialect, &BLOCK_SCHEMA, "t.workspace_id = $1 AND t.id = $2", &[Bind::Text(ws()), Bind::Text(id.to_string())]).await
}

/// The newest schema with `checksum` (and `version`, when given).
pub async fn by_checksum(conn: &mut AnyConnection, dialect: Dialect, checksum: &str, version: Option<&str>) -> ApiResult<Option<Map<String, Value>>> {
    let mut binds = vec![Bind::Text(ws()), Bind::Text(checksum.to_owned())];
    let mut cond = "t.workspace_id = $1 AND t.checksum = $2".to_owned();
    if let Some(v) = version {
        binds.push(Bind::Text(v.to_owned()));
        cond.push_str(" AND t.schema_version = $3");
    }
    cond.push_str(" ORDER BY t.created DESC, t.id DESC LIMIT 1");
    find(conn, dialect, &BLOCK_SCHEMA, &cond, &binds).await
}

/// The schema a block document row names (`None` when it is gone).
pub async fn of_document(conn: &mut AnyConnection, dialect: Dialect, document: &Map<String, Value>) -> ApiResult<Option<Map<String, Value>>> {
    match document.get("block_schema_id").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok()) {
        Some(schema_id) => by_id(conn, dialect, schema_id).await,
        None => Ok(None),
    }
}

// ---------------------------------------------------------- commands ---

/// Registers a schema; returns its id and whether it is new (201) or was
/// already there (200).
pub async fn create(db: &Db, body: BlockSchemaCreate) -> ApiResult<(Uuid, bool)> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let body = body.clone();
        Box::pin(async move {
            if super::block_types::by_id(conn, dialect, body.block_type_id).await?.is_none() {
                return Err(AppError::Detail(StatusCode::NOT_FOUND, format!("Block type {} not found.", body.block_type_id)));
            }
            let checksum = schema_checksum(&body.fields);
            if let Some(existing) = by_checksum(conn, dialect, &checksum, Some(&body.version)).await? {
                return Ok((super::work_pools::id_of(&existing)?, false));
            }
            let definitions = body.fields.get("definitions").and_then(Value::as_object).cloned();
            let id = insert(conn, dialect, body.fields, body.block_type_id, body.capabilities, body.version, definitions).await?;
            Ok((id, true))
        })
    })
    .await
}

/// Stores a schema after registering the nested schemas it references;
/// returns the id of the (possibly already present) schema.
fn insert(
    conn: &mut AnyConnection,
    dialect: Dialect,
    fields: Map<String, Value>,
    block_type_id: Uuid,
    capabilities: Vec<String>,
    version: String,
    definitions: Option<Map<String, Value>>,
) -> BoxFuture<'_, ApiResult<Uuid>> {
    Box::pin(async move {
        let mut stored = fields.clone();
        if let Some(defs) = definitions.as_ref().filter(|d| !d.is_empty()) {
            stored.insert("definitions".into(), Value::Object(defs.clone()));
        }
        let checksum = schema_checksum(&stored);
        match definitions.as_ref().and_then(|defs| stored_definitions(&stored, defs)) {
            Some(kept) => stored.insert("definitions".into(), Value::Object(kept)),
            None => stored.remove("definitions"),
        };
        lock_key(conn, dialect, &format!("block-schema:{checksum}:{version}")).await?;
        if let Some(existing) = by_checksum(conn, dialect, &checksum, Some(&version)).await? {
            return super::work_pools::id_of(&existing);
        }
        register_nested(conn, dialect, &fields, definitions.as_ref()).await?;
        let now = crate::time::micros(Utc::now());
        let id = Uuid::now_v7();
        let record = Map::from_iter([
            ("checksum".into(), json!(checksum)),
            ("fields".into(), Value::Object(stored)),
            ("capabilities".into(), json!(capabilities)),
            ("version".into(), json!(version)),
            ("block_type_id".into(), json!(block_type_id)),
        ]);
        doc::create(conn, dialect, StreamType::BlockSchema, id, record, now, None).await?;
        Ok(id)
    })
}

/// Makes sure each schema in `fields.block_schema_references` exists: its
/// block type must (409 otherwise); a missing schema is created from
/// `definitions`.
async fn register_nested(conn: &mut AnyConnection, dialect: Dialect, fields: &Map<String, Value>, definitions: Option<&Map<String, Value>>) -> ApiResult<()> {
    let Some(references) = fields.get("block_schema_references").and_then(Value::as_object) else {
        return Ok(());
    };
    for (name, entries) in references {
        let entries = match entries {
            Value::Array(items) => items.clone(),
            one => vec![one.clone()],
        };
        for entry in entries {
            let slug = entry.get("block_type_slug").and_then(Value::as_str).unwrap_or_default();
            let Some(block_type) = super::block_types::by_slug(conn, dialect, slug).await? else {
                return Err(AppError::Detail(
                    StatusCode::CONFLICT,
                    format!(
                        "Cannot create block schema because block type {} was not found.Did you forget to register the block type?",
                        crate::py_repr::str_repr(slug)
                    ),
                ));
            };
            let checksum = entry.get("block_schema_checksum").and_then(Value::as_str).unwrap_or_default();
            if by_checksum(conn, dialect, checksum, None).await?.is_some() {
                continue;
            }
            let Some(definitions) = definitions else {
                return Err(AppError::Detail(StatusCode::CONFLICT, "Unable to create nested block schema due to missing definitions in root block schema fields".into()));
            };
            let Some(child) = child_fields(definitions, fields, name, slug) else {
                let type_name = block_type.get("name").and_then(Value::as_str).unwrap_or_default();
                return Err(AppError::Detail(
                    StatusCode::CONFLICT,
                    format!("Unable to create nested block schema for block type {} due to missing definition.", crate::py_repr::str_repr(type_name)),
                ));
            };
            let type_id = super::work_pools::id_of(&block_type)?;
            insert(conn, dialect, child, type_id, vec![], DEFAULT_VERSION.to_owned(), Some(definitions.clone())).await?;
        }
    }
    Ok(())
}

/// `_get_fields_for_child_schema`: the definition the parent's property
/// `name` points to; when it points to several (a union), the one of the
/// block type `slug`.
fn child_fields(definitions: &Map<String, Value>, parent: &Map<String, Value>, name: &str, slug: &str) -> Option<Map<String, Value>> {
    let property = parent.get("properties")?.get(name)?;
    let refs: Vec<&str> = reference_strings(property).into_iter().filter_map(Value::as_str).collect();
    let found = match refs.as_slice() {
        [one] => definitions.get(definition_key(one)),
        many => many
            .iter()
            .filter_map(|r| definitions.get(definition_key(r)))
            .find(|d| d.get("block_type_slug").and_then(Value::as_str) == Some(slug)),
    };
    found.and_then(Value::as_object).cloned()
}

/// Deletes a schema and the documents that use it (404 when there is
/// none; 403 when its block type is protected).
pub async fn delete(db: &Db, id: Uuid) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        Box::pin(async move {
            let current = by_id(conn, dialect, id).await?.ok_or_else(not_found)?;
            let type_id = current.get("block_type_id").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok());
            if let Some(type_id) = type_id {
                let block_type = super::block_types::by_id(conn, dialect, type_id).await?;
                if block_type.and_then(|t| t.get("is_protected").and_then(Value::as_bool)) == Some(true) {
                    return Err(AppError::Detail(StatusCode::FORBIDDEN, "Block schemas for protected block types cannot be deleted.".into()));
                }
            }
            lock_stream(conn, dialect, &StreamRef::new(StreamType::BlockSchema, id)).await?;
            doc::delete(conn, dialect, StreamType::BlockSchema, id, crate::time::micros(Utc::now()), None).await
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_schema_is_found_through_its_property_reference() {
        let definitions = json!({
            "A": {"title": "A", "block_type_slug": "a"},
            "B": {"title": "B", "block_type_slug": "b"}
        });
        let definitions = definitions.as_object().unwrap();
        let parent = json!({"properties": {
            "one": {"$ref": "#/definitions/A"},
            "either": {"anyOf": [{"$ref": "#/definitions/A"}, {"$ref": "#/definitions/B"}]}
        }});
        let parent = parent.as_object().unwrap();
        assert_eq!(child_fields(definitions, parent, "one", "ignored").unwrap()["title"], "A");
        assert_eq!(child_fields(definitions, parent, "either", "b").unwrap()["title"], "B");
        assert!(child_fields(definitions, parent, "either", "c").is_none());
        assert!(child_fields(definitions, parent, "missing", "a").is_none());
    }
}
