//! `WHERE` conditions for the block routes: `BlockTypeFilter`,
//! `BlockSchemaFilter` and `BlockDocumentFilter`, combined as Prefect's
//! `read_block_types` / `_apply_block_document_filters` do (a type or schema
//! filter on documents is an `EXISTS` on the document's type or schema).

use serde_json::{json, Value};

use super::common::Ctx;
use super::documents::{compile, BLOCK_DOCUMENT_FILTER, BLOCK_SCHEMA_FILTER, BLOCK_TYPE_FILTER};
use super::FilterError;
use crate::db::sql::{Dialect, Sql};

fn given(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// `EXISTS` over `table` (alias `a`) joined on `join`, under `filter`.
fn exists(ctx: &mut Ctx, table: &str, join: &str, filter: &Value, fields: &[super::documents::FieldSpec], loc: &[&str]) -> Result<String, FilterError> {
    let a = ctx.alias(table);
    let cond = compile(ctx, filter, fields, &a, loc)?;
    Ok(format!("EXISTS (SELECT 1 FROM {table} {a} WHERE {a}.id = {join} AND ({cond}))"))
}

/// Block types (alias `t`) of the workspace matching `block_types`, with a
/// schema matching `block_schemas` when one is given.
pub fn block_types_where(sql: &mut Sql, dialect: Dialect, workspace_id: &str, types: Option<&Value>, schemas: Option<&Value>) -> Result<String, FilterError> {
    let mut ctx = Ctx::new(sql, dialect);
    let ws = ctx.bind(workspace_id);
    let mut parts = vec![format!("t.workspace_id = {ws}")];
    if let Some(types) = given(types) {
        parts.push(compile(&mut ctx, types, BLOCK_TYPE_FILTER, "t", &["body", "block_types"])?);
    }
    if let Some(schemas) = given(schemas) {
        let a = ctx.alias("block_schema");
        let cond = compile(&mut ctx, schemas, BLOCK_SCHEMA_FILTER, &a, &["body", "block_schemas"])?;
        parts.push(format!("EXISTS (SELECT 1 FROM block_schema {a} WHERE {a}.block_type_id = t.id AND ({cond}))"));
    }
    Ok(parts.join(" AND "))
}

/// Block schemas (alias `t`) of the workspace matching `block_schemas`.
pub fn block_schemas_where(sql: &mut Sql, dialect: Dialect, workspace_id: &str, schemas: Option<&Value>) -> Result<String, FilterError> {
    let mut ctx = Ctx::new(sql, dialect);
    let ws = ctx.bind(workspace_id);
    let cond = compile(&mut ctx, given(schemas).unwrap_or(&Value::Null), BLOCK_SCHEMA_FILTER, "t", &["body", "block_schemas"])?;
    Ok(format!("t.workspace_id = {ws} AND ({cond})"))
}

/// Block documents (alias `t`) of the workspace. Anonymous documents are
/// left out unless the document filter says otherwise: a missing filter,
/// or one without `is_anonymous`, means `is_anonymous.eq_ = false`
/// (Prefect's default); an explicit `"is_anonymous": null` lifts it.
pub fn block_documents_where(
    sql: &mut Sql,
    dialect: Dialect,
    workspace_id: &str,
    documents: Option<&Value>,
    types: Option<&Value>,
    schemas: Option<&Value>,
) -> Result<String, FilterError> {
    let mut documents = given(documents).cloned().unwrap_or_else(|| json!({}));
    if let Value::Object(m) = &mut documents {
        m.entry("is_anonymous").or_insert_with(|| json!({"eq_": false}));
    }
    block_documents_where_exactly(sql, dialect, workspace_id, &documents, types, schemas)
}

/// Like [`block_documents_where`], with the document filter taken as it is
/// (the by-id and by-name reads apply no anonymous default).
pub fn block_documents_where_exactly(
    sql: &mut Sql,
    dialect: Dialect,
    workspace_id: &str,
    documents: &Value,
    types: Option<&Value>,
    schemas: Option<&Value>,
) -> Result<String, FilterError> {
    let mut ctx = Ctx::new(sql, dialect);
    let ws = ctx.bind(workspace_id);
    let mut parts = vec![format!("t.workspace_id = {ws}")];
    parts.push(compile(&mut ctx, documents, BLOCK_DOCUMENT_FILTER, "t", &["body", "block_documents"])?);
    if let Some(types) = given(types) {
        parts.push(exists(&mut ctx, "block_type", "t.block_type_id", types, BLOCK_TYPE_FILTER, &["body", "block_types"])?);
    }
    if let Some(schemas) = given(schemas) {
        parts.push(exists(&mut ctx, "block_schema", "t.block_schema_id", schemas, BLOCK_SCHEMA_FILTER, &["body", "block_schemas"])?);
    }
    Ok(parts.join(" AND "))
}
