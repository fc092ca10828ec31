//! Automation commands (Prefect's `automations` router): create, replace,
//! enable/disable and delete, each one document event on the automation's
//! own stream carrying Prefect's `prefect.automation.{created,updated,deleted}`
//! feed event (the automation itself as payload). The triggers service
//! reads the automations from the read model, so a change takes effect at
//! its next look.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::AnyConnection;
use uuid::Uuid;

use super::documents::{self as doc, find};
use super::{write, ws};
use crate::api::error::{ApiResult, AppError};
use crate::automations::schema::AutomationSpec;
use crate::db::{Bind, Db, Dialect};
use crate::eventlog::{lock_stream, StreamRef, StreamType};
use crate::server_model::documents::AUTOMATION;
use crate::server_model::feed_events::lifecycle_event;

pub fn not_found() -> AppError {
    AppError::Detail(StatusCode::NOT_FOUND, "Automation not found".into())
}

pub async fn by_id(conn: &mut AnyConnection, dialect: Dialect, id: Uuid) -> ApiResult<Option<Map<String, Value>>> {
    find(conn, dialect, &AUTOMATION, "t.workspace_id = $1 AND t.id = $2", &[Bind::Text(ws()), Bind::Text(id.to_string())]).await
}

/// Every automation of the workspace, by id (they are few: each is a rule a
/// person wrote). The routes filter them, the triggers service loads them.
pub async fn all(db: &Db) -> Result<Vec<Map<String, Value>>, sqlx::Error> {
    let sql = db.q(&format!("SELECT {} FROM automation t WHERE t.workspace_id = $1 ORDER BY t.id", AUTOMATION.select_list("t")));
    let rows = sqlx::query(&sql).bind(ws()).fetch_all(db.reader()).await?;
    Ok(rows.iter().map(|r| AUTOMATION.row_json(r)).collect())
}

/// Prefect's `Automation` JSON of a stored row: the row without the owner,
/// which Prefect keeps in another table.
pub fn response(mut row: Map<String, Value>) -> Value {
    row.remove("owner_resource");
    Value::Object(row)
}

fn automation_event(action: &str, id: Uuid, automation: &Map<String, Value>, occurred: DateTime<Utc>) -> Value {
    let name = automation.get("name").and_then(Value::as_str);
    lifecycle_event("automation", action, &id.to_string(), name, vec![], response(automation.clone()), occurred)
}

/// Creates an automation with fresh trigger ids; returns its id.
pub async fn create(db: &Db, mut spec: AutomationSpec) -> ApiResult<Uuid> {
    spec.trigger.reset_ids();
    let dialect = db.dialect;
    write(db, move |conn| {
        let spec = spec.clone();
        Box::pin(async move {
            let now = crate::time::micros(Utc::now());
            let id = Uuid::now_v7();
            let mut record = spec.record();
            if let Some(owner) = &spec.owner_resource {
                record.insert("owner_resource".into(), Value::String(owner.clone()));
            }
            let mut shown = record.clone();
            shown.insert("id".into(), Value::String(id.to_string()));
            shown.insert("created".into(), Value::String(crate::time::fmt_ts(now)));
            shown.insert("updated".into(), Value::String(crate::time::fmt_ts(now)));
            let event = automation_event("created", id, &shown, now);
            doc::create(conn, dialect, StreamType::Automation, id, record, now, Some(event)).await?;
            Ok(id)
        })
    })
    .await
}

/// Applies `changes` to the automation (404 when there is none), with the
/// `updated` feed event of the result.
async fn change(conn: &mut AnyConnection, dialect: Dialect, id: Uuid, changes: Map<String, Value>) -> ApiResult<()> {
    lock_stream(conn, dialect, &StreamRef::new(StreamType::Automation, id)).await?;
    let current = by_id(conn, dialect, id).await?.ok_or_else(not_found)?;
    let now = crate::time::micros(Utc::now());
    let mut after = crate::server_model::feed_events::merged(&current, &changes);
    after.insert("updated".into(), Value::String(crate::time::fmt_ts(now)));
    let event = automation_event("updated", id, &after, now);
    doc::update(conn, dialect, StreamType::Automation, id, changes, now, Some(event)).await
}

/// `PUT`: replaces everything but the owner, with fresh trigger ids.
pub async fn replace(db: &Db, id: Uuid, mut spec: AutomationSpec) -> ApiResult<()> {
    spec.trigger.reset_ids();
    let dialect = db.dialect;
    write(db, move |conn| {
        let record = spec.record();
        Box::pin(async move { change(conn, dialect, id, record).await })
    })
    .await
}

/// `PATCH`: turns the automation on or off. Turning one on checks it again
/// as Prefect does (an automation that would loop may only stay disabled).
pub async fn set_enabled(db: &Db, id: Uuid, enabled: bool) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        Box::pin(async move {
            let current = by_id(conn, dialect, id).await?.ok_or_else(not_found)?;
            if let Some(mut spec) = AutomationSpec::from_record(&current) {
                spec.enabled = enabled;
                spec.prevent_run_deployment_loops().map_err(|m| AppError::invalid(&["body"], m, Value::Null))?;
            }
            change(conn, dialect, id, Map::from_iter([("enabled".to_owned(), Value::Bool(enabled))])).await
        })
    })
    .await
}

pub async fn delete(db: &Db, id: Uuid) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        Box::pin(async move {
            lock_stream(conn, dialect, &StreamRef::new(StreamType::Automation, id)).await?;
            let current = by_id(conn, dialect, id).await?.ok_or_else(not_found)?;
            let now = crate::time::micros(Utc::now());
            let event = automation_event("deleted", id, &current, now);
            doc::delete(conn, dialect, StreamType::Automation, id, now, Some(event)).await
        })
    })
    .await
}

/// Deletes the automations `resource_id` owns (created before now), as
/// `prefect deploy` does before it re-creates a deployment's triggers.
/// Prefect emits no feed event for these; neither do we.
pub async fn delete_owned_by(db: &Db, resource_id: String) -> ApiResult<usize> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let resource_id = resource_id.clone();
        Box::pin(async move {
            let sql = dialect.rewrite("SELECT id FROM automation WHERE workspace_id = $1 AND owner_resource = $2 ORDER BY id");
            let ids: Vec<String> = sqlx::query_scalar(&sql).bind(ws()).bind(&resource_id).fetch_all(&mut *conn).await?;
            let now = crate::time::micros(Utc::now());
            for id in &ids {
                let id = Uuid::parse_str(id).map_err(|e| AppError::Internal(e.into()))?;
                lock_stream(conn, dialect, &StreamRef::new(StreamType::Automation, id)).await?;
                doc::delete(conn, dialect, StreamType::Automation, id, now, None).await?;
            }
            Ok(ids.len())
        })
    })
    .await
}
