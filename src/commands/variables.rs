//! Variable commands (Prefect's `variables` router): create, update and
//! delete, each one document event on the variable's own stream carrying
//! Prefect's `prefect.variable.{created,updated,deleted}` feed event. Names
//! are unique per workspace, enforced under a name lock.

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
use crate::server_model::documents::VARIABLE;

/// Prefect's `MAX_VARIABLE_NAME_LENGTH`.
pub const MAX_NAME_LENGTH: usize = 255;
/// Prefect's `MAX_VARIABLE_VALUE_LENGTH` (of the value as compact JSON).
pub const MAX_VALUE_LENGTH: usize = 5000;

/// `VariableCreate`. `value` is required but may be `null`: `None` here
/// means it was not sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableCreate {
    pub name: String,
    #[serde(default, deserialize_with = "present")]
    pub value: Option<Value>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// `VariableUpdate`: only the fields that were sent change (`Some(None)` is
/// an explicit `null`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableUpdate {
    #[serde(default, deserialize_with = "present")]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub value: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub tags: Option<Option<Vec<String>>>,
}



/// Prefect's `VariableName`: at most 255 characters, then only lowercase
/// letters, digits, dashes and underscores.
pub fn validate_name(name: &str) -> ApiResult<()> {
    if name.chars().count() > MAX_NAME_LENGTH {
        return Err(AppError::Validation {
            detail: vec![json!({
                "type": "string_too_long",
                "loc": ["body", "name"],
                "msg": format!("String should have at most {MAX_NAME_LENGTH} characters"),
                "input": name,
                "ctx": {"max_length": MAX_NAME_LENGTH},
            })],
            body: Value::Null,
        });
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
        return Err(AppError::invalid(
            &["body", "name"],
            "Value error, Variable name must only contain lowercase letters, numbers, and dashes or underscores.",
            json!(name),
        ));
    }
    Ok(())
}

/// Prefect's `StrictVariableValue` size check: the value as compact JSON
/// must not be longer than 5000 characters (`null` always passes).
pub fn validate_value(value: &Value) -> ApiResult<()> {
    if !value.is_null() && value.to_string().len() > MAX_VALUE_LENGTH {
        return Err(AppError::invalid(
            &["body", "value"],
            format!("Value error, Variable value must be less than {MAX_VALUE_LENGTH} characters"),
            value.clone(),
        ));
    }
    Ok(())
}

fn not_found() -> AppError {
    AppError::Detail(StatusCode::NOT_FOUND, "Variable not found.".into())
}

// ------------------------------------------------------------ lookups ---

pub async fn variable_by_id(conn: &mut AnyConnection, dialect: Dialect, id: Uuid) -> ApiResult<Option<Map<String, Value>>> {
    find(conn, dialect, &VARIABLE, "t.workspace_id = $1 AND t.id = $2", &[Bind::Text(ws()), Bind::Text(id.to_string())]).await
}

pub async fn variable_by_name(conn: &mut AnyConnection, dialect: Dialect, name: &str) -> ApiResult<Option<Map<String, Value>>> {
    find(conn, dialect, &VARIABLE, "t.workspace_id = $1 AND t.name = $2", &[Bind::Text(ws()), Bind::Text(name.to_owned())]).await
}

/// Every variable's value by name: the workspace variables hydration reads.
pub async fn values_by_name(conn: &mut AnyConnection, dialect: Dialect) -> ApiResult<Map<String, Value>> {
    use sqlx::Row;
    let rows = sqlx::query(&dialect.rewrite("SELECT name, value FROM variable WHERE workspace_id = $1"))
        .bind(ws())
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Map::new();
    for row in rows {
        let name: String = row.try_get("name")?;
        out.insert(name, crate::server_model::json_col(&row, "value"));
    }
    Ok(out)
}

/// Which variable a route addresses.
#[derive(Debug, Clone)]
pub enum VariableRef {
    Id(Uuid),
    Name(String),
}

async fn lookup(conn: &mut AnyConnection, dialect: Dialect, which: &VariableRef) -> ApiResult<Option<Map<String, Value>>> {
    match which {
        VariableRef::Id(id) => variable_by_id(conn, dialect, *id).await,
        VariableRef::Name(name) => variable_by_name(conn, dialect, name).await,
    }
}

/// Prefect's `prefect.variable.<action>` lifecycle event: the variable as
/// resource, its name, value and tags as payload.
fn variable_event(action: &str, id: Uuid, variable: &Map<String, Value>, occurred: DateTime<Utc>) -> Value {
    let name = variable.get("name").cloned().unwrap_or(Value::Null);
    json!({
        "id": Uuid::now_v7(),
        "occurred": crate::time::fmt_ts(occurred),
        "event": format!("prefect.variable.{action}"),
        "resource": {"prefect.resource.id": format!("prefect.variable.{id}"), "prefect.resource.name": name},
        "related": [],
        "payload": {
            "name": name,
            "value": variable.get("value").cloned().unwrap_or(Value::Null),
            "tags": variable.get("tags").cloned().unwrap_or_else(|| json!([])),
        },
    })
}

// ---------------------------------------------------------- commands ---

/// Creates a variable; returns its id. A taken name is a 409 with
/// Prefect's message.
pub async fn create_variable(db: &Db, body: VariableCreate) -> ApiResult<Uuid> {
    validate_name(&body.name)?;
    let Some(value) = body.value.clone() else {
        return Err(AppError::Validation {
            detail: vec![json!({"type": "missing", "loc": ["body", "value"], "msg": "Field required", "input": {"name": body.name, "tags": body.tags}})],
            body: Value::Null,
        });
    };
    validate_value(&value)?;
    let dialect = db.dialect;
    write(db, move |conn| {
        let body = body.clone();
        let value = value.clone();
        Box::pin(async move {
            lock_key(conn, dialect, &format!("variable-name:{}", body.name)).await?;
            if variable_by_name(conn, dialect, &body.name).await?.is_some() {
                return Err(AppError::Detail(StatusCode::CONFLICT, format!("A variable with the name {} already exists.", crate::py_repr::str_repr(&body.name))));
            }
            let now = crate::time::micros(Utc::now());
            let id = Uuid::now_v7();
            let record = Map::from_iter([("name".into(), json!(body.name)), ("value".into(), value), ("tags".into(), json!(body.tags))]);
            let event = variable_event("created", id, &record, now);
            doc::create(conn, dialect, StreamType::Variable, id, record, now, Some(event)).await?;
            Ok(id)
        })
    })
    .await
}

/// Applies a `VariableUpdate` to the variable `which` addresses (404 when
/// there is none). A name taken by another variable, or a `null` name or
/// tags, is the integrity conflict Prefect's database reports (409).
pub async fn update_variable(db: &Db, which: VariableRef, body: VariableUpdate) -> ApiResult<()> {
    if let Some(Some(name)) = &body.name {
        validate_name(name)?;
    }
    if let Some(v) = &body.value {
        validate_value(v)?;
    }
    let dialect = db.dialect;
    write(db, move |conn| {
        let body = body.clone();
        let which = which.clone();
        Box::pin(async move {
            let current = lookup(conn, dialect, &which).await?.ok_or_else(not_found)?;
            let id = super::work_pools::id_of(&current)?;
            lock_stream(conn, dialect, &StreamRef::new(StreamType::Variable, id)).await?;
            let mut changes = Map::new();
            match &body.name {
                None => {}
                Some(None) => return Err(AppError::Conflict),
                Some(Some(name)) => {
                    if current.get("name").and_then(Value::as_str) != Some(name.as_str()) {
                        lock_key(conn, dialect, &format!("variable-name:{name}")).await?;
                        if variable_by_name(conn, dialect, name).await?.is_some() {
                            return Err(AppError::Conflict);
                        }
                    }
                    changes.insert("name".into(), json!(name));
                }
            }
            if let Some(v) = &body.value {
                changes.insert("value".into(), v.clone());
            }
            match &body.tags {
                None => {}
                Some(None) => return Err(AppError::Conflict),
                Some(Some(tags)) => {
                    changes.insert("tags".into(), json!(tags));
                }
            }
            let now = crate::time::micros(Utc::now());
            let event = variable_event("updated", id, &crate::server_model::feed_events::merged(&current, &changes), now);
            doc::update(conn, dialect, StreamType::Variable, id, changes, now, Some(event)).await
        })
    })
    .await
}

/// Deletes the variable `which` addresses (404 when there is none).
pub async fn delete_variable(db: &Db, which: VariableRef) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let which = which.clone();
        Box::pin(async move {
            let current = lookup(conn, dialect, &which).await?.ok_or_else(not_found)?;
            let id = super::work_pools::id_of(&current)?;
            lock_stream(conn, dialect, &StreamRef::new(StreamType::Variable, id)).await?;
            let now = crate::time::micros(Utc::now());
            let event = variable_event("deleted", id, &current, now);
            doc::delete(conn, dialect, StreamType::Variable, id, now, Some(event)).await
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prefects_variable_name_rules() {
        assert!(validate_name("my_var-1").is_ok());
        assert!(validate_name("").is_ok(), "Prefect's regex allows the empty name");
        assert!(validate_name("MyVar").is_err());
        assert!(validate_name("a.b").is_err());
        assert!(validate_name(&"a".repeat(255)).is_ok());
        assert!(validate_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn values_are_limited_to_5000_json_characters() {
        assert!(validate_value(&json!("x".repeat(4998))).is_ok());
        assert!(validate_value(&json!("x".repeat(4999))).is_err());
        assert!(validate_value(&Value::Null).is_ok());
    }

}
