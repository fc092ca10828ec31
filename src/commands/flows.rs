//! Flow commands: create (upsert by name), update, delete.

use chrono::Utc;
use serde::Deserialize;
use serde_json::{Map, Value};
use sqlx::Row;
use uuid::Uuid;

use super::{record, write};
use crate::api::error::{ApiResult, AppError};
use crate::db::Db;
use crate::eventlog::{lock_key, ExpectedVersion, NewEvent, StreamRef, StreamType, DEFAULT_WORKSPACE};
use crate::server_events::{FlowCreated, FlowRecord, RowUpdated, FLOW_CREATED, FLOW_DELETED, FLOW_UPDATED};

/// `FlowCreate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowCreate {
    pub name: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub labels: Option<Map<String, Value>>,
}

/// `FlowUpdate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowUpdate {
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub labels: Option<Map<String, Value>>,
}

/// Creates the flow unless one with this name exists. Returns its id and
/// whether it was created.
pub async fn create_flow(db: &Db, body: FlowCreate) -> ApiResult<(Uuid, bool)> {
    if body.name.is_empty() {
        return Err(AppError::invalid(&["body", "name"], "String should have at least 1 character", Value::from("")));
    }
    let dialect = db.dialect;
    write(db, move |conn| {
        let body = body.clone();
        Box::pin(async move {
            lock_key(conn, dialect, &format!("flow-name:{}", body.name)).await?;
            let existing = sqlx::query(&dialect.rewrite("SELECT id FROM flow WHERE workspace_id = $1 AND name = $2"))
                .bind(DEFAULT_WORKSPACE.to_string())
                .bind(&body.name)
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(row) = existing {
                let id: String = row.try_get(0)?;
                return Ok((Uuid::parse_str(&id).map_err(anyhow::Error::from)?, false));
            }
            let id = Uuid::now_v7();
            let now = crate::time::micros(Utc::now());
            let payload = FlowCreated {
                flow: FlowRecord {
                    id,
                    name: body.name,
                    tags: Value::from(body.tags),
                    labels: Value::Object(body.labels.unwrap_or_default()),
                    created: now,
                },
            };
            let event = NewEvent::new(Uuid::now_v7(), FLOW_CREATED, now, serde_json::to_value(payload).map_err(anyhow::Error::from)?);
            record(conn, dialect, StreamRef::new(StreamType::Flow, id), ExpectedVersion::NoStream, vec![event]).await?;
            Ok((id, true))
        })
    })
    .await
}

async fn flow_exists(conn: &mut sqlx::AnyConnection, dialect: crate::db::Dialect, id: Uuid) -> ApiResult<bool> {
    Ok(sqlx::query(&dialect.rewrite("SELECT 1 FROM flow WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .is_some())
}

pub async fn update_flow(db: &Db, id: Uuid, body: FlowUpdate) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let body = body.clone();
        Box::pin(async move {
            let stream = StreamRef::new(StreamType::Flow, id);
            crate::eventlog::lock_stream(conn, dialect, &stream).await?;
            if !flow_exists(conn, dialect, id).await? {
                return Err(AppError::not_found("Flow"));
            }
            let mut changes = Map::new();
            if let Some(tags) = body.tags {
                changes.insert("tags".into(), Value::from(tags));
            }
            if let Some(labels) = body.labels {
                changes.insert("labels".into(), Value::Object(labels));
            }
            let now = crate::time::micros(Utc::now());
            let payload = serde_json::to_value(RowUpdated { changes, updated: now }).map_err(anyhow::Error::from)?;
            record(conn, dialect, stream, ExpectedVersion::Any, vec![NewEvent::new(Uuid::now_v7(), FLOW_UPDATED, now, payload)]).await?;
            Ok(())
        })
    })
    .await
}

pub async fn delete_flow(db: &Db, id: Uuid) -> ApiResult<()> {
    match delete_flows(db, vec![id]).await?.is_empty() {
        true => Err(AppError::not_found("Flow")),
        false => Ok(()),
    }
}

/// Deletes whichever of `ids` still exist, in one transaction (each under
/// its flow's lock); returns those it deleted. The projection removes each
/// flow's runs and deployments with it.
pub async fn delete_flows(db: &Db, ids: Vec<Uuid>) -> ApiResult<Vec<Uuid>> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let ids = ids.clone();
        Box::pin(async move {
            let now = crate::time::micros(Utc::now());
            let mut deleted = Vec::with_capacity(ids.len());
            for id in ids {
                let stream = StreamRef::new(StreamType::Flow, id);
                crate::eventlog::lock_stream(conn, dialect, &stream).await?;
                if flow_exists(conn, dialect, id).await? {
                    record(conn, dialect, stream, ExpectedVersion::Any, vec![NewEvent::new(Uuid::now_v7(), FLOW_DELETED, now, Value::Object(Map::new()))]).await?;
                    deleted.push(id);
                }
            }
            Ok(deleted)
        })
    })
    .await
}
