//! Flow rows and Prefect's `Flow` JSON.

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use super::{json_col, object, text_col};
use crate::db::Dialect;
use crate::eventlog::DEFAULT_WORKSPACE;

pub const FLOW_COLUMNS: &str = "flow.id, flow.created, flow.updated, flow.name, flow.tags, flow.labels";

pub fn flow_json(row: &AnyRow) -> Value {
    object(vec![
        ("id", text_col(row, "id")),
        ("created", text_col(row, "created")),
        ("updated", text_col(row, "updated")),
        ("name", text_col(row, "name")),
        ("tags", json_col(row, "tags")),
        ("labels", json_col(row, "labels")),
    ])
}

pub async fn read_flow(conn: &mut AnyConnection, dialect: Dialect, id: &str) -> Result<Option<Value>, sqlx::Error> {
    let sql = format!("SELECT {FLOW_COLUMNS} FROM flow WHERE flow.id = $1 AND flow.workspace_id = $2");
    let row = sqlx::query(&dialect.rewrite(&sql))
        .bind(id)
        .bind(DEFAULT_WORKSPACE.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.as_ref().map(flow_json))
}

pub async fn read_flow_by_name(conn: &mut AnyConnection, dialect: Dialect, name: &str) -> Result<Option<Value>, sqlx::Error> {
    let sql = format!("SELECT {FLOW_COLUMNS} FROM flow WHERE flow.name = $1 AND flow.workspace_id = $2");
    let row = sqlx::query(&dialect.rewrite(&sql))
        .bind(name)
        .bind(DEFAULT_WORKSPACE.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.as_ref().map(flow_json))
}
