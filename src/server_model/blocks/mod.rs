//! Blocks in the server read model: the JSON Prefect returns for block
//! types, schemas and documents, and the reads behind them. A document is
//! returned with its nested blocks resolved (each reference's data put
//! under its field, as Prefect's `_construct_full_block_document` does) and
//! its secrets hidden unless the caller asks for them.

pub mod checksum;
pub mod secrets;

use std::collections::HashMap;

use serde_json::{json, Map, Value};
use sqlx::AnyConnection;

use super::documents::{Table, BLOCK_DOCUMENT, BLOCK_SCHEMA, BLOCK_TYPE};
use crate::db::sealed::{DataKey, SealError};
use crate::db::{Bind, Dialect};
use crate::server_model::work_pools::select_docs;

/// How deep nested block references may go (Prefect's
/// `_BLOCK_DOCUMENT_REFERENCE_MAX_DEPTH`); writes refuse cycles, so this
/// only guards against a model that somehow holds one.
pub const MAX_REFERENCE_DEPTH: usize = 50;

/// Rows of `table` whose id is one of `ids`.
async fn by_ids(conn: &mut AnyConnection, dialect: Dialect, table: &Table, ids: &[String]) -> Result<Vec<Map<String, Value>>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let binds: Vec<Bind> = ids.iter().cloned().map(Bind::Text).collect();
    select_docs(conn, dialect, table, &format!("t.id IN ({})", placeholders.join(", ")), "t.id", &binds).await
}

fn id(doc: &Map<String, Value>) -> String {
    doc.get("id").and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn text<'a>(doc: &'a Map<String, Value>, key: &str) -> &'a str {
    doc.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Block types by id, loaded as needed.
#[derive(Default)]
pub struct Cache {
    types: HashMap<String, Value>,
    schemas: HashMap<String, Value>,
}

impl Cache {
    /// The `BlockType` JSON of each id (missing ones are left out).
    pub async fn types(&mut self, conn: &mut AnyConnection, dialect: Dialect, ids: &[String]) -> Result<(), sqlx::Error> {
        let missing: Vec<String> = ids.iter().filter(|i| !self.types.contains_key(*i)).cloned().collect();
        for doc in by_ids(conn, dialect, &BLOCK_TYPE, &missing).await? {
            self.types.insert(id(&doc), Value::Object(doc));
        }
        Ok(())
    }

    pub fn block_type(&self, id: &str) -> Value {
        self.types.get(id).cloned().unwrap_or(Value::Null)
    }

    /// Loads the `BlockSchema` JSON (with its block type) of each id.
    pub async fn schemas(&mut self, conn: &mut AnyConnection, dialect: Dialect, ids: &[String]) -> Result<(), sqlx::Error> {
        let missing: Vec<String> = ids.iter().filter(|i| !self.schemas.contains_key(*i)).cloned().collect();
        let docs = by_ids(conn, dialect, &BLOCK_SCHEMA, &missing).await?;
        let type_ids: Vec<String> = docs.iter().map(|d| text(d, "block_type_id").to_owned()).collect();
        self.types(conn, dialect, &type_ids).await?;
        for doc in docs {
            let json = self.schema_json(doc);
            self.schemas.insert(id(json.as_object().expect("schema JSON is an object")), json);
        }
        Ok(())
    }

    pub fn block_schema(&self, id: &str) -> Value {
        self.schemas.get(id).cloned().unwrap_or(Value::Null)
    }

    /// Prefect's `BlockSchema`: `fields` always carries
    /// `block_schema_references` (`{}` when there are none).
    pub fn schema_json(&self, mut doc: Map<String, Value>) -> Value {
        let mut fields = match doc.remove("fields") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        fields.entry("block_schema_references").or_insert_with(|| json!({}));
        let block_type_id = doc.remove("block_type_id").unwrap_or(Value::Null);
        let block_type = self.block_type(block_type_id.as_str().unwrap_or_default());
        json!({
            "id": doc.remove("id"),
            "created": doc.remove("created"),
            "updated": doc.remove("updated"),
            "checksum": doc.remove("checksum"),
            "fields": fields,
            "block_type_id": block_type_id,
            "block_type": block_type,
            "capabilities": doc.remove("capabilities").filter(Value::is_array).unwrap_or_else(|| json!([])),
            "version": doc.remove("version"),
        })
    }
}

/// Block schema rows as Prefect's `BlockSchema` JSON, each with its type.
pub async fn schemas_json(conn: &mut AnyConnection, dialect: Dialect, docs: Vec<Map<String, Value>>) -> Result<Vec<Value>, sqlx::Error> {
    let mut cache = Cache::default();
    let type_ids: Vec<String> = docs.iter().map(|d| text(d, "block_type_id").to_owned()).collect();
    cache.types(conn, dialect, &type_ids).await?;
    Ok(docs.into_iter().map(|d| cache.schema_json(d)).collect())
}

/// Block schemas matching `cond`, in `order` (which may carry paging).
pub async fn schemas_where(conn: &mut AnyConnection, dialect: Dialect, cond: &str, order: &str, binds: &[Bind]) -> Result<Vec<Value>, sqlx::Error> {
    let docs = select_docs(conn, dialect, &BLOCK_SCHEMA, cond, order, binds).await?;
    schemas_json(conn, dialect, docs).await
}

/// Block types matching `cond`, in `order`, as stored (their JSON is the row).
pub async fn types_where(conn: &mut AnyConnection, dialect: Dialect, cond: &str, order: &str, binds: &[Bind]) -> Result<Vec<Value>, sqlx::Error> {
    Ok(select_docs(conn, dialect, &BLOCK_TYPE, cond, order, binds).await?.into_iter().map(Value::Object).collect())
}

/// The referenced document ids of a row (`{field: id}`), in field order.
pub fn references(row: &Map<String, Value>) -> Vec<(String, String)> {
    row.get("references")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default()
}

/// Why a document could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("Block document reference graph exceeds max depth {MAX_REFERENCE_DEPTH}; refusing to recurse further.")]
    TooDeep,
    #[error(transparent)]
    Sealed(#[from] SealError),
}

/// A document row's values, opened (see `db::sealed`).
pub fn opened_data(key: &DataKey, row: &Map<String, Value>) -> Result<Map<String, Value>, SealError> {
    match key.open(row.get("data").unwrap_or(&Value::Null))? {
        Value::Object(m) => Ok(m),
        _ => Ok(Map::new()),
    }
}

/// Documents matching `cond`, in `order`, as Prefect's `BlockDocument` JSON.
#[allow(clippy::too_many_arguments)]
pub async fn documents_where(
    conn: &mut AnyConnection,
    dialect: Dialect,
    key: &DataKey,
    cond: &str,
    order: &str,
    binds: &[Bind],
    include_secrets: bool,
) -> Result<Vec<Value>, ReadError> {
    let roots = select_docs(conn, dialect, &BLOCK_DOCUMENT, cond, order, binds).await?;
    assemble(conn, dialect, key, roots, include_secrets).await
}

/// Resolves the references of `roots` (loading every document they reach)
/// and builds each root's JSON.
pub async fn assemble(conn: &mut AnyConnection, dialect: Dialect, key: &DataKey, roots: Vec<Map<String, Value>>, include_secrets: bool) -> Result<Vec<Value>, ReadError> {
    let mut rows: HashMap<String, Map<String, Value>> = roots.iter().map(|r| (id(r), r.clone())).collect();
    let mut frontier: Vec<String> = roots.iter().flat_map(references).map(|(_, i)| i).collect();
    let mut depth = 0;
    while !frontier.is_empty() {
        depth += 1;
        if depth > MAX_REFERENCE_DEPTH + 1 {
            return Err(ReadError::TooDeep);
        }
        frontier.retain(|i| !rows.contains_key(i));
        frontier.sort();
        frontier.dedup();
        let loaded = by_ids(conn, dialect, &BLOCK_DOCUMENT, &frontier).await?;
        frontier = loaded.iter().flat_map(references).map(|(_, i)| i).collect();
        rows.extend(loaded.into_iter().map(|r| (id(&r), r)));
    }
    let mut cache = Cache::default();
    let schema_ids: Vec<String> = rows.values().map(|r| text(r, "block_schema_id").to_owned()).collect();
    cache.schemas(conn, dialect, &schema_ids).await?;
    let type_ids: Vec<String> = rows.values().map(|r| text(r, "block_type_id").to_owned()).collect();
    cache.types(conn, dialect, &type_ids).await?;
    roots
        .iter()
        .map(|root| {
            let (data, refs) = resolve(root, &rows, &cache, key, include_secrets, 0)?;
            Ok(json!({
                "id": root.get("id"),
                "created": root.get("created"),
                "updated": root.get("updated"),
                "name": root.get("name"),
                "data": data,
                "block_schema_id": root.get("block_schema_id"),
                "block_schema": cache.block_schema(text(root, "block_schema_id")),
                "block_type_id": root.get("block_type_id"),
                "block_type_name": root.get("block_type_name"),
                "block_type": cache.block_type(text(root, "block_type_id")),
                "block_document_references": refs,
                "is_anonymous": root.get("is_anonymous").cloned().unwrap_or(Value::Bool(false)),
            }))
        })
        .collect()
}

/// A document's data with its secrets hidden (unless `include_secrets`)
/// and each reference's resolved data under its field, plus Prefect's
/// `block_document_references` record of those references. A reference
/// whose document is gone is left out, as Prefect's cascading delete of
/// the reference row does.
fn resolve(
    row: &Map<String, Value>,
    rows: &HashMap<String, Map<String, Value>>,
    cache: &Cache,
    key: &DataKey,
    include_secrets: bool,
    depth: usize,
) -> Result<(Map<String, Value>, Map<String, Value>), ReadError> {
    if depth > MAX_REFERENCE_DEPTH {
        return Err(ReadError::TooDeep);
    }
    let mut data = opened_data(key, row)?;
    if !include_secrets {
        let schema = cache.block_schema(text(row, "block_schema_id"));
        secrets::obfuscate(&mut data, &secrets::secret_paths(schema.get("fields").unwrap_or(&Value::Null)));
    }
    let mut refs = Map::new();
    for (field, ref_id) in references(row) {
        let Some(child) = rows.get(&ref_id) else { continue };
        let (child_data, child_refs) = resolve(child, rows, cache, key, include_secrets, depth + 1)?;
        data.insert(field.clone(), Value::Object(child_data));
        refs.insert(
            field,
            json!({"block_document": {
                "id": child.get("id"),
                "name": child.get("name"),
                "block_type": cache.block_type(text(child, "block_type_id")),
                "is_anonymous": child.get("is_anonymous"),
                "block_document_references": child_refs,
            }}),
        );
    }
    Ok((data, refs))
}

/// Every capability some block schema declares (Prefect's
/// `read_available_block_capabilities`), sorted.
pub async fn capabilities(conn: &mut AnyConnection, dialect: Dialect, workspace_id: &str) -> Result<Vec<String>, sqlx::Error> {
    use sqlx::Row;
    let sql = dialect.rewrite("SELECT DISTINCT capabilities FROM block_schema WHERE workspace_id = $1");
    let rows = sqlx::query(&sql).bind(workspace_id.to_owned()).fetch_all(&mut *conn).await?;
    let mut out = std::collections::BTreeSet::new();
    for row in rows {
        let text: String = row.try_get(0)?;
        if let Ok(Value::Array(items)) = serde_json::from_str::<Value>(&text) {
            out.extend(items.into_iter().filter_map(|v| v.as_str().map(str::to_owned)));
        }
    }
    Ok(out.into_iter().collect())
}
