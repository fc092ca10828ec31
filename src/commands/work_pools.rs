//! Work pool, work queue and worker commands (Prefect's `workers` and
//! `work_queues` routers). A pool is created with its `default` queue in the
//! same transaction; pool and queue names are unique (per workspace / per
//! pool), enforced under a name lock.

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
use crate::server_model::documents::{WORKER, WORK_POOL, WORK_QUEUE};
use crate::server_model::feed_events as feed;
use super::names::{validate_name, validate_non_emptyish_name};

/// `WorkPoolCreate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkPoolCreate {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(rename = "type", default = "default_pool_type")]
    pub pool_type: String,
    #[serde(default, deserialize_with = "super::null_as_default")]
    pub base_job_template: Map<String, Value>,
    #[serde(default)]
    pub is_paused: bool,
    #[serde(default)]
    pub concurrency_limit: Option<i64>,
    #[serde(default)]
    pub storage_configuration: Option<StorageConfiguration>,
}

fn default_pool_type() -> String {
    "prefect-agent".into()
}

/// `WorkPoolStorageConfiguration` (extra keys forbidden).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfiguration {
    #[serde(default)]
    pub bundle_upload_step: Option<Map<String, Value>>,
    #[serde(default)]
    pub bundle_execution_step: Option<Map<String, Value>>,
    #[serde(default)]
    pub default_result_storage_block_id: Option<Uuid>,
}

/// `WorkPoolUpdate`: only the fields that were sent change.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkPoolUpdate {
    #[serde(default, deserialize_with = "some")]
    pub description: Option<Option<String>>,
    #[serde(default)]
    pub is_paused: Option<bool>,
    #[serde(default)]
    pub base_job_template: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "some")]
    pub concurrency_limit: Option<Option<i64>>,
    #[serde(default)]
    pub storage_configuration: Option<StorageConfiguration>,
}

/// `WorkQueueCreate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkQueueCreate {
    pub name: String,
    #[serde(default = "empty_description")]
    pub description: Option<String>,
    #[serde(default)]
    pub is_paused: bool,
    #[serde(default)]
    pub concurrency_limit: Option<i64>,
    #[serde(default)]
    pub priority: Option<i64>,
    #[serde(default)]
    pub filter: Option<Value>,
}

fn empty_description() -> Option<String> {
    Some(String::new())
}

/// `WorkQueueUpdate`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkQueueUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "some")]
    pub description: Option<Option<String>>,
    #[serde(default)]
    pub is_paused: Option<bool>,
    #[serde(default, deserialize_with = "some")]
    pub concurrency_limit: Option<Option<i64>>,
    #[serde(default)]
    pub priority: Option<i64>,
    #[serde(default)]
    pub last_polled: Option<String>,
    #[serde(default)]
    pub filter: Option<Value>,
}

/// Distinguishes "sent as null" (`Some(None)`) from "not sent" (`None`).
fn some<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Prefect's legacy pool for queues created without one.
pub const DEFAULT_AGENT_POOL: &str = "default-agent-pool";


fn non_negative(field: &str, v: Option<i64>) -> ApiResult<()> {
    match v {
        Some(n) if n < 0 => Err(AppError::invalid(&["body", field], "Input should be greater than or equal to 0", json!(n))),
        _ => Ok(()),
    }
}

fn positive(field: &str, v: Option<i64>) -> ApiResult<()> {
    match v {
        Some(n) if n < 1 => Err(AppError::invalid(&["body", field], "Input should be greater than 0", json!(n))),
        _ => Ok(()),
    }
}

/// Prefect's `validate_job_variable_defaults_for_work_pool`, run when a pool
/// is created (and when a worker's hello fills an empty template): the
/// template's defaults must fit its own `variables` schema.
pub fn validate_pool_defaults(t: &Map<String, Value>) -> ApiResult<()> {
    use crate::orchestration::job_variables::{pool_defaults, Refusal};
    pool_defaults(t).map_err(|refusal| match refusal {
        Refusal::Invalid(msg) => AppError::Detail(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            format!("Validation failed for work pool's job variable defaults: {msg}"),
        ),
        Refusal::BlockNotFound => AppError::Detail(axum::http::StatusCode::NOT_FOUND, "Block not found.".into()),
    })
}

/// Prefect's `validate_base_job_template`: empty, or a `job_configuration`
/// whose `{{ placeholders }}` are all declared in `variables.properties`.
pub fn validate_base_job_template(t: &Map<String, Value>) -> ApiResult<()> {
    if t.is_empty() {
        return Ok(());
    }
    let bad = |msg: String| AppError::invalid(&["body", "base_job_template"], format!("Value error, {msg}"), Value::Object(t.clone()));
    let job = t.get("job_configuration").filter(|v| !is_falsy(v));
    let vars = t.get("variables").filter(|v| !is_falsy(v));
    let (Some(job), Some(vars)) = (job, vars) else {
        return Err(bad("The `base_job_template` must contain both a `job_configuration` key and a `variables` key.".into()));
    };
    let declared: Vec<&str> = vars.get("properties").and_then(Value::as_object).map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
    let mut missing = Vec::new();
    for template in job.as_object().map(|m| m.values().collect::<Vec<_>>()).unwrap_or_default() {
        for name in placeholders(&template.to_string()) {
            if !declared.contains(&name.as_str()) && !missing.contains(&name) {
                missing.push(name);
            }
        }
    }
    if !missing.is_empty() {
        return Err(bad(format!(
            "The variables specified in the job configuration template must be present as properties in the variables schema. Your job configuration uses the following undeclared variable(s): {}.",
            missing.join(" ,")
        )));
    }
    Ok(())
}

fn is_falsy(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
    }
}

/// The standard `{{ name }}` placeholders in a template (block and variable
/// references, `prefect.*`, are resolved elsewhere and not declared).
pub fn placeholders(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if !name.is_empty() && !name.starts_with("prefect.") && name.chars().all(|c| c.is_alphanumeric() || "_.-[]$".contains(c)) {
            out.push(name.to_owned());
        }
        rest = &after[end + 2..];
    }
    out
}

// ------------------------------------------------------------ lookups ---

pub async fn pool_by_name(conn: &mut AnyConnection, dialect: Dialect, name: &str) -> ApiResult<Option<Map<String, Value>>> {
    find(conn, dialect, &WORK_POOL, "t.workspace_id = $1 AND t.name = $2", &[Bind::Text(ws()), Bind::Text(name.into())]).await
}

pub async fn require_pool(conn: &mut AnyConnection, dialect: Dialect, name: &str) -> ApiResult<Map<String, Value>> {
    pool_by_name(conn, dialect, name)
        .await?
        .ok_or_else(|| AppError::Detail(axum::http::StatusCode::NOT_FOUND, format!("Work pool \"{name}\" not found.")))
}

pub async fn queue_in_pool(conn: &mut AnyConnection, dialect: Dialect, pool_id: &str, name: &str) -> ApiResult<Option<Map<String, Value>>> {
    find(conn, dialect, &WORK_QUEUE, "t.work_pool_id = $1 AND t.name = $2", &[Bind::Text(pool_id.into()), Bind::Text(name.into())]).await
}

pub async fn queue_by_id(conn: &mut AnyConnection, dialect: Dialect, id: Uuid) -> ApiResult<Option<Map<String, Value>>> {
    find(conn, dialect, &WORK_QUEUE, "t.id = $1", &[Bind::Text(id.to_string())]).await
}

/// The name of the pool with this id (routes address pools by name).
pub async fn pool_name_by_id(db: &Db, id: Uuid) -> ApiResult<Option<String>> {
    let sql = db.q("SELECT name FROM work_pool WHERE workspace_id = $1 AND id = $2");
    Ok(sqlx::query_scalar(&sql).bind(ws()).bind(id.to_string()).fetch_optional(db.reader()).await?)
}

/// `PATCH /work_queues/{id}`: applies `body` to the queue with this id,
/// read under the write transaction (404 "Work queue not found").
pub async fn update_queue(db: &Db, id: Uuid, body: WorkQueueUpdate) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let body = body.clone();
        Box::pin(async move {
            let queue = queue_by_id(conn, dialect, id).await?.ok_or_else(|| AppError::not_found("Work queue"))?;
            update_queue_in(conn, dialect, queue, body).await
        })
    })
    .await
}

pub fn id_of(doc: &Map<String, Value>) -> ApiResult<Uuid> {
    doc.get("id").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok()).ok_or_else(|| AppError::Internal(anyhow::anyhow!("document without an id")))
}

// -------------------------------------------------------------- pools ---

/// Creates a pool and its default queue; returns the pool id.
pub async fn create_pool(db: &Db, body: WorkPoolCreate) -> ApiResult<Uuid> {
    validate_non_emptyish_name(&["body", "name"], &body.name)?;
    non_negative("concurrency_limit", body.concurrency_limit)?;
    validate_base_job_template(&body.base_job_template)?;
    if body.name.to_lowercase().starts_with("prefect") {
        return Err(AppError::Detail(axum::http::StatusCode::FORBIDDEN, "Work pools starting with 'Prefect' are reserved for internal use.".into()));
    }
    validate_pool_defaults(&body.base_job_template)?;
    let dialect = db.dialect;
    write(db, move |conn| {
        let body = body.clone();
        Box::pin(async move {
            lock_key(conn, dialect, &format!("work-pool-name:{}", body.name)).await?;
            if pool_by_name(conn, dialect, &body.name).await?.is_some() {
                return Err(AppError::Detail(axum::http::StatusCode::CONFLICT, "A work pool with this name already exists.".into()));
            }
            let now = crate::time::micros(Utc::now());
            let id = insert_pool(conn, dialect, body, now).await?;
            // The route (not the model) then announces the new pool's status.
            if let Some(pool) = find(conn, dialect, &WORK_POOL, "t.id = $1", &[Bind::Text(id.to_string())]).await? {
                if let Some(status) = pool.get("status").and_then(Value::as_str) {
                    let event = feed::work_pool_event(&feed::status_event_name("work-pool", status), id, &pool, json!({}), now);
                    doc::update(conn, dialect, StreamType::WorkPool, id, Map::new(), now, Some(event)).await?;
                }
            }
            Ok(id)
        })
    })
    .await
}

/// Inserts a pool and its default queue (the caller holds the name lock and
/// checked the name is free).
pub async fn insert_pool(conn: &mut AnyConnection, dialect: Dialect, body: WorkPoolCreate, now: DateTime<Utc>) -> ApiResult<Uuid> {
    let now = crate::time::micros(now);
    let id = Uuid::now_v7();
    let queue_id = Uuid::now_v7();
    let status = match (body.pool_type.as_str(), body.is_paused) {
        ("prefect-agent", _) => Value::Null,
        (_, true) => json!("PAUSED"),
        (_, false) => json!("NOT_READY"),
    };
    let storage = serde_json::to_value(body.storage_configuration.unwrap_or_default()).map_err(anyhow::Error::from)?;
    let record = Map::from_iter([
        ("name".into(), json!(body.name)),
        ("description".into(), json!(body.description)),
        ("type".into(), json!(body.pool_type)),
        ("base_job_template".into(), Value::Object(body.base_job_template)),
        ("is_paused".into(), json!(body.is_paused)),
        ("concurrency_limit".into(), json!(body.concurrency_limit)),
        ("status".into(), status.clone()),
        ("default_queue_id".into(), json!(queue_id)),
        ("storage_configuration".into(), storage),
    ]);
    let event = feed::work_pool_event("prefect.work-pool.created", id, &record, json!({}), now);
    doc::create(conn, dialect, StreamType::WorkPool, id, record, now, Some(event)).await?;
    let queue = WorkQueueCreate {
        name: "default".into(),
        description: Some("The work pool's default queue.".into()),
        is_paused: false,
        concurrency_limit: None,
        priority: Some(1),
        filter: None,
    };
    insert_queue(conn, dialect, id, queue_id, queue, 1, now).await?;
    Ok(id)
}

pub async fn update_pool(db: &Db, name: String, body: WorkPoolUpdate) -> ApiResult<()> {
    if let Some(Some(n)) = body.concurrency_limit {
        non_negative("concurrency_limit", Some(n))?;
    }
    if let Some(t) = &body.base_job_template {
        validate_base_job_template(t)?;
    }
    let dialect = db.dialect;
    write(db, move |conn| {
        let body = body.clone();
        let name = name.clone();
        Box::pin(async move {
            let pool = require_pool(conn, dialect, &name).await?;
            let id = id_of(&pool)?;
            lock_stream(conn, dialect, &StreamRef::new(StreamType::WorkPool, id)).await?;
            let mut changes = Map::new();
            if let Some(d) = body.description {
                changes.insert("description".into(), json!(d));
            }
            if let Some(t) = body.base_job_template {
                changes.insert("base_job_template".into(), Value::Object(t));
            }
            if let Some(c) = body.concurrency_limit {
                changes.insert("concurrency_limit".into(), json!(c));
            }
            if let Some(s) = body.storage_configuration {
                changes.insert("storage_configuration".into(), serde_json::to_value(s).map_err(anyhow::Error::from)?);
            }
            let pool_type = pool.get("type").and_then(Value::as_str).unwrap_or_default();
            if let Some(paused) = body.is_paused {
                changes.insert("is_paused".into(), json!(paused));
                if pool_type != "prefect-agent" {
                    let status = if paused {
                        "PAUSED"
                    } else if has_online_workers(conn, dialect, &id.to_string()).await? {
                        "READY"
                    } else {
                        "NOT_READY"
                    };
                    changes.insert("status".into(), json!(status));
                }
            }
            let now = crate::time::micros(Utc::now());
            let after = feed::merged(&pool, &changes);
            let changed = feed::changed_fields(&pool, &changes, feed::WORK_POOL_FIELDS);
            let updated = (!changed.is_empty()).then(|| feed::work_pool_event("prefect.work-pool.updated", id, &after, feed::updated_payload(changed), now));
            let status = status_change_event(&pool, &changes, id, now);
            doc::update_with_status(conn, dialect, StreamType::WorkPool, id, changes, now, updated, status).await
        })
    })
    .await
}

/// `prefect.work-pool.<status>` when an update changes the pool's status.
fn status_change_event(pool: &Map<String, Value>, changes: &Map<String, Value>, id: Uuid, now: DateTime<Utc>) -> Option<Value> {
    let new = changes.get("status")?.as_str()?;
    if pool.get("status").and_then(Value::as_str) == Some(new) {
        return None;
    }
    let name = feed::status_event_name("work-pool", new);
    Some(feed::work_pool_event(&name, id, &feed::merged(pool, changes), json!({}), now))
}

async fn has_online_workers(conn: &mut AnyConnection, dialect: Dialect, pool_id: &str) -> ApiResult<bool> {
    Ok(sqlx::query(&dialect.rewrite("SELECT 1 FROM worker WHERE work_pool_id = $1 AND status = 'ONLINE' LIMIT 1"))
        .bind(pool_id.to_owned())
        .fetch_optional(&mut *conn)
        .await?
        .is_some())
}

pub async fn delete_pool(db: &Db, name: String) -> ApiResult<()> {
    if name.to_lowercase().starts_with("prefect") {
        return Err(AppError::Detail(axum::http::StatusCode::FORBIDDEN, "Worker pools starting with 'Prefect' are reserved for internal use and can not be deleted.".into()));
    }
    let dialect = db.dialect;
    write(db, move |conn| {
        let name = name.clone();
        Box::pin(async move {
            let pool = require_pool(conn, dialect, &name).await?;
            let id = id_of(&pool)?;
            lock_stream(conn, dialect, &StreamRef::new(StreamType::WorkPool, id)).await?;
            let now = crate::time::micros(Utc::now());
            // Prefect reports each of the pool's queues as deleted first.
            let queues = crate::server_model::work_pools::queues(conn, dialect, "t.work_pool_id = $1", &[Bind::Text(id.to_string())]).await?;
            for queue in queues {
                let qid = id_of(&queue)?;
                lock_stream(conn, dialect, &StreamRef::new(StreamType::WorkQueue, qid)).await?;
                let event = feed::work_queue_event(conn, dialect, "prefect.work-queue.deleted", qid, &queue, json!({}), now).await?;
                doc::delete(conn, dialect, StreamType::WorkQueue, qid, now, Some(event)).await?;
            }
            let event = feed::work_pool_event("prefect.work-pool.deleted", id, &pool, json!({}), now);
            doc::delete(conn, dialect, StreamType::WorkPool, id, now, Some(event)).await
        })
    })
    .await
}

// ------------------------------------------------------------- queues ---

/// The first free priority in a pool (Prefect fills gaps first).
async fn next_priority(conn: &mut AnyConnection, dialect: Dialect, pool_id: &str) -> ApiResult<i64> {
    use sqlx::Row;
    let rows = sqlx::query(&dialect.rewrite("SELECT priority FROM work_queue WHERE work_pool_id = $1 ORDER BY priority"))
        .bind(pool_id.to_owned())
        .fetch_all(&mut *conn)
        .await?;
    let taken: Vec<i64> = rows.iter().filter_map(|r| r.try_get::<i64, _>(0).ok()).collect();
    for (i, p) in taken.iter().enumerate() {
        if (i as i64) + 1 != *p {
            return Ok(i as i64 + 1);
        }
    }
    Ok(taken.iter().max().copied().unwrap_or(0) + 1)
}

pub fn validate_queue_create(body: &WorkQueueCreate) -> ApiResult<()> {
    validate_name(&["body", "name"], &body.name)?;
    non_negative("concurrency_limit", body.concurrency_limit)?;
    positive("priority", body.priority)
}

/// Creates a queue in the pool named `pool_name`; returns its id.
pub async fn create_queue(db: &Db, pool_name: String, body: WorkQueueCreate) -> ApiResult<Uuid> {
    validate_queue_create(&body)?;
    let dialect = db.dialect;
    write(db, move |conn| {
        let body = body.clone();
        let pool_name = pool_name.clone();
        Box::pin(async move {
            let pool = require_pool(conn, dialect, &pool_name).await?;
            let pool_id = id_of(&pool)?;
            create_queue_in(conn, dialect, pool_id, body).await
        })
    })
    .await
}

/// Creates a queue in a pool inside the caller's transaction (409 when the
/// name is taken).
pub async fn create_queue_in(conn: &mut AnyConnection, dialect: Dialect, pool_id: Uuid, body: WorkQueueCreate) -> ApiResult<Uuid> {
    lock_stream(conn, dialect, &StreamRef::new(StreamType::WorkPool, pool_id)).await?;
    if queue_in_pool(conn, dialect, &pool_id.to_string(), &body.name).await?.is_some() {
        return Err(AppError::Detail(
            axum::http::StatusCode::CONFLICT,
            format!("A work queue with the name \"{}\" already exists in work pool with id {pool_id}.", body.name),
        ));
    }
    let id = Uuid::now_v7();
    let now = crate::time::micros(Utc::now());
    let requested = body.priority;
    let priority = match requested {
        Some(p) => p,
        None => next_priority(conn, dialect, &pool_id.to_string()).await?,
    };
    insert_queue(conn, dialect, pool_id, id, body, priority, now).await?;
    if let Some(p) = requested {
        shift_priorities(conn, dialect, pool_id, id, p, now).await?;
    }
    Ok(id)
}

async fn insert_queue(
    conn: &mut AnyConnection,
    dialect: Dialect,
    pool_id: Uuid,
    id: Uuid,
    body: WorkQueueCreate,
    priority: i64,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let status = if body.is_paused { "PAUSED" } else { "NOT_READY" };
    let record = Map::from_iter([
        ("name".into(), json!(body.name)),
        ("description".into(), json!(body.description)),
        ("is_paused".into(), json!(body.is_paused)),
        ("concurrency_limit".into(), json!(body.concurrency_limit)),
        ("priority".into(), json!(priority)),
        ("work_pool_id".into(), json!(pool_id)),
        ("filter".into(), body.filter.unwrap_or(Value::Null)),
        ("last_polled".into(), Value::Null),
        ("status".into(), json!(status)),
    ]);
    let event = feed::work_queue_event(conn, dialect, "prefect.work-queue.created", id, &record, json!({}), now).await?;
    doc::create(conn, dialect, StreamType::WorkQueue, id, record, now, Some(event)).await
}

/// Prefect's `bulk_update_work_queue_priorities`: a queue given an explicit
/// priority takes it and the queues at or below it move down by one when
/// they would collide.
async fn shift_priorities(conn: &mut AnyConnection, dialect: Dialect, pool_id: Uuid, moved: Uuid, priority: i64, now: DateTime<Utc>) -> ApiResult<()> {
    use sqlx::Row;
    let rows = sqlx::query(&dialect.rewrite("SELECT id, priority FROM work_queue WHERE work_pool_id = $1 AND id <> $2 ORDER BY priority"))
        .bind(pool_id.to_string())
        .bind(moved.to_string())
        .fetch_all(&mut *conn)
        .await?;
    let mut next = priority;
    for row in rows {
        let (id, p): (String, i64) = (row.try_get(0)?, row.try_get(1)?);
        if p < priority {
            continue;
        }
        if p > next {
            break;
        }
        next = p + 1;
        let id = Uuid::parse_str(&id).map_err(anyhow::Error::from)?;
        doc::update(conn, dialect, StreamType::WorkQueue, id, Map::from_iter([("priority".into(), json!(p + 1))]), now, None).await?;
    }
    Ok(())
}

/// Applies a `WorkQueueUpdate` to the queue `queue`.
pub async fn update_queue_in(conn: &mut AnyConnection, dialect: Dialect, queue: Map<String, Value>, body: WorkQueueUpdate) -> ApiResult<()> {
    if let Some(name) = &body.name {
        validate_name(&["body", "name"], name)?;
    }
    if let Some(Some(n)) = body.concurrency_limit {
        non_negative("concurrency_limit", Some(n))?;
    }
    positive("priority", body.priority)?;
    let id = id_of(&queue)?;
    let pool_id = queue.get("work_pool_id").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok());
    lock_stream(conn, dialect, &StreamRef::new(StreamType::WorkQueue, id)).await?;
    let now = crate::time::micros(Utc::now());
    let mut changes = Map::new();
    if let Some(name) = body.name {
        if queue.get("name").and_then(Value::as_str) != Some(name.as_str()) {
            if let Some(pool_id) = pool_id {
                if queue_in_pool(conn, dialect, &pool_id.to_string(), &name).await?.is_some() {
                    return Err(AppError::Conflict);
                }
            }
            changes.insert("name".into(), json!(name));
        }
    }
    if let Some(d) = body.description {
        changes.insert("description".into(), json!(d));
    }
    if let Some(c) = body.concurrency_limit {
        changes.insert("concurrency_limit".into(), json!(c));
    }
    if let Some(f) = body.filter {
        changes.insert("filter".into(), f);
    }
    if let Some(lp) = &body.last_polled {
        let ts = crate::time::parse_lax_datetime(lp).ok_or_else(|| AppError::invalid(&["body", "last_polled"], "Input should be a valid datetime", json!(lp)))?;
        changes.insert("last_polled".into(), json!(crate::time::fmt_ts(ts)));
    }
    // Prefect's WorkQueueUpdate defaults is_paused to false, so an update that
    // omits it unpauses the queue.
    let paused = body.is_paused.unwrap_or(false);
    let status = queue.get("status").and_then(Value::as_str).unwrap_or("NOT_READY");
    changes.insert("is_paused".into(), json!(paused));
    if paused && status != "PAUSED" {
        changes.insert("status".into(), json!("PAUSED"));
    } else if !paused && status == "PAUSED" {
        changes.insert("status".into(), json!("NOT_READY"));
    }
    if let (Some(p), Some(_)) = (body.priority, pool_id) {
        changes.insert("priority".into(), json!(p));
    }
    let after = feed::merged(&queue, &changes);
    let changed = feed::changed_fields(&queue, &changes, feed::WORK_QUEUE_FIELDS);
    let updated = match changed.is_empty() {
        true => None,
        false => Some(feed::work_queue_event(conn, dialect, "prefect.work-queue.updated", id, &after, feed::updated_payload(changed), now).await?),
    };
    let status = match changes.get("status").and_then(Value::as_str) {
        Some(new) => Some(feed::work_queue_event(conn, dialect, &feed::status_event_name("work-queue", new), id, &after, json!({}), now).await?),
        None => None,
    };
    doc::update_with_status(conn, dialect, StreamType::WorkQueue, id, changes, now, updated, status).await?;
    if let (Some(p), Some(pool_id)) = (body.priority, pool_id) {
        shift_priorities(conn, dialect, pool_id, id, p, now).await?;
    }
    Ok(())
}

pub async fn delete_queue_in(conn: &mut AnyConnection, dialect: Dialect, pool: Option<&Map<String, Value>>, queue: Map<String, Value>) -> ApiResult<()> {
    let id = id_of(&queue)?;
    if let Some(pool) = pool {
        if pool.get("default_queue_id").and_then(Value::as_str) == Some(id.to_string().as_str()) {
            return Err(AppError::Detail(axum::http::StatusCode::BAD_REQUEST, "Can't delete a pool's default queue.".into()));
        }
    }
    lock_stream(conn, dialect, &StreamRef::new(StreamType::WorkQueue, id)).await?;
    let now = crate::time::micros(Utc::now());
    let event = feed::work_queue_event(conn, dialect, "prefect.work-queue.deleted", id, &queue, json!({}), now).await?;
    doc::delete(conn, dialect, StreamType::WorkQueue, id, now, Some(event)).await
}

// ------------------------------------------------------------ workers ---

/// A worker heartbeat: upserts the worker ONLINE and makes a NOT_READY pool
/// READY.
pub async fn worker_heartbeat(db: &Db, pool_name: String, name: String, interval: Option<i64>) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let pool_name = pool_name.clone();
        let name = name.clone();
        Box::pin(async move {
            let pool = require_pool(conn, dialect, &pool_name).await?;
            let pool_id = id_of(&pool)?;
            lock_key(conn, dialect, &format!("worker:{pool_id}:{name}")).await?;
            let now = crate::time::micros(Utc::now());
            let existing = find(conn, dialect, &WORKER, "t.work_pool_id = $1 AND t.name = $2", &[Bind::Text(pool_id.to_string()), Bind::Text(name.clone())]).await?;
            let mut fields = Map::from_iter([
                ("last_heartbeat_time".into(), json!(crate::time::fmt_ts(now))),
                ("status".into(), json!("ONLINE")),
            ]);
            if let Some(i) = interval {
                fields.insert("heartbeat_interval_seconds".into(), json!(i));
            }
            match existing {
                Some(w) => doc::update(conn, dialect, StreamType::Worker, id_of(&w)?, fields, now, None).await?,
                None => {
                    fields.insert("name".into(), json!(name));
                    fields.insert("work_pool_id".into(), json!(pool_id));
                    doc::create(conn, dialect, StreamType::Worker, Uuid::now_v7(), fields, now, None).await?
                }
            }
            if pool.get("status").and_then(Value::as_str) == Some("NOT_READY") {
                lock_stream(conn, dialect, &StreamRef::new(StreamType::WorkPool, pool_id)).await?;
                let changes = Map::from_iter([("status".into(), json!("READY"))]);
                let event = status_change_event(&pool, &changes, pool_id, now);
                doc::update(conn, dialect, StreamType::WorkPool, pool_id, changes, now, event).await?;
            }
            Ok(())
        })
    })
    .await
}

pub async fn delete_worker(db: &Db, pool_name: String, name: String) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let pool_name = pool_name.clone();
        let name = name.clone();
        Box::pin(async move {
            let pool = require_pool(conn, dialect, &pool_name).await?;
            let pool_id = id_of(&pool)?;
            let worker = find(conn, dialect, &WORKER, "t.work_pool_id = $1 AND t.name = $2", &[Bind::Text(pool_id.to_string()), Bind::Text(name)])
                .await?
                .ok_or_else(|| AppError::Detail(axum::http::StatusCode::NOT_FOUND, "Worker not found.".into()))?;
            doc::delete(conn, dialect, StreamType::Worker, id_of(&worker)?, crate::time::micros(Utc::now()), None).await
        })
    })
    .await
}

/// Records that workers polled these queues (and the deployments on them):
/// `last_polled` moves and NOT_READY becomes READY (with Prefect's
/// `prefect.work-queue.ready` / `prefect.deployment.ready` events). To keep
/// polling from flooding the log, `last_polled` is only re-recorded once it
/// is `min_interval` old; the foreman's 60 s readiness timeout is far
/// coarser. Most polls have nothing to record, and they find that out on a
/// read connection without taking the write transaction (on SQLite, the
/// single writer).
pub async fn mark_polled(db: &Db, queue_ids: Vec<Uuid>, min_interval: chrono::Duration) -> ApiResult<()> {
    let stale = crate::time::fmt_ts(crate::time::micros(Utc::now()) - min_interval);
    if queue_ids.is_empty() || !poll_has_news(db, &queue_ids, &stale).await? {
        return Ok(());
    }
    let dialect = db.dialect;
    write(db, move |conn| {
        let queue_ids = queue_ids.clone();
        Box::pin(async move {
            let now = crate::time::micros(Utc::now());
            let stale = crate::time::fmt_ts(now - min_interval);
            for qid in queue_ids {
                let Some(queue) = queue_by_id(conn, dialect, qid).await? else { continue };
                let status = queue.get("status").and_then(Value::as_str).unwrap_or_default().to_owned();
                let last = queue.get("last_polled").and_then(Value::as_str).unwrap_or_default().to_owned();
                let mut changes = Map::new();
                if last.as_str() < stale.as_str() {
                    changes.insert("last_polled".into(), json!(crate::time::fmt_ts(now)));
                }
                let mut status_event = None;
                if status == "NOT_READY" {
                    changes.insert("status".into(), json!("READY"));
                    let after = feed::merged(&queue, &changes);
                    status_event = Some(feed::work_queue_event(conn, dialect, "prefect.work-queue.ready", qid, &after, json!({}), now).await?);
                }
                if !changes.is_empty() {
                    lock_stream(conn, dialect, &StreamRef::new(StreamType::WorkQueue, qid)).await?;
                    doc::update_with_status(conn, dialect, StreamType::WorkQueue, qid, changes, now, None, status_event).await?;
                }
                super::deployments::mark_deployments_polled(conn, dialect, qid, now, &stale).await?;
            }
            Ok(())
        })
    })
    .await
}

/// Whether polling these queues changes anything: a queue or a deployment
/// on them that is not READY or whose `last_polled` is older than `stale`.
async fn poll_has_news(db: &Db, queue_ids: &[Uuid], stale: &str) -> ApiResult<bool> {
    let list = crate::db::sql::placeholders(2, queue_ids.len());
    let sql = format!(
        "SELECT 1 FROM work_queue WHERE id IN ({list}) AND (status = 'NOT_READY' OR last_polled IS NULL OR last_polled < $1) \
         UNION ALL SELECT 1 FROM deployment WHERE work_queue_id IN ({list}) AND (status <> 'READY' OR last_polled IS NULL OR last_polled < $1)"
    );
    let sql = db.q(&sql);
    let mut query = sqlx::query(&sql).bind(stale.to_owned());
    for id in queue_ids {
        query = query.bind(id.to_string());
    }
    Ok(query.fetch_optional(db.reader()).await?.is_some())
}
