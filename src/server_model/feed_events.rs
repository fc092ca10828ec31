//! The Prefect events the feed shows when a deployment, work queue or work
//! pool changes (`prefect/server/models/events.py`): `created`, `updated`
//! (with `updated_fields` / `updates`), `deleted` and the status events
//! (`prefect.deployment.ready`, `prefect.work-queue.not-ready`, ...).
//!
//! They are built inside the command's write transaction, from the document
//! as it is after the change, and travel in the document's log event (see
//! `server_events::DocumentUpdated::event`), so the feed is rebuilt from the
//! log like everything else.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::db::Dialect;

/// Deployment fields whose change Prefect reports in `prefect.deployment.updated`
/// (`DEPLOYMENT_EVENT_FIELDS`), as `(our JSON name, Prefect's reported name)`.
/// Prefect reports the ORM column names: `job_variables` is stored as
/// `infra_overrides`. Our deployments count their concurrency limit rather
/// than own a v2 limit object, so the limit itself is reported.
pub const DEPLOYMENT_FIELDS: &[(&str, &str)] = &[
    ("description", "description"),
    ("tags", "tags"),
    ("parameters", "parameters"),
    ("parameter_openapi_schema", "parameter_openapi_schema"),
    ("enforce_parameter_schema", "enforce_parameter_schema"),
    ("entrypoint", "entrypoint"),
    ("path", "path"),
    ("pull_steps", "pull_steps"),
    ("work_queue_id", "work_queue_id"),
    ("job_variables", "infra_overrides"),
    ("paused", "paused"),
    ("labels", "labels"),
    ("version", "version"),
    ("concurrency_limit", "concurrency_limit"),
    ("concurrency_options", "concurrency_options"),
];

/// `WORK_QUEUE_EVENT_FIELDS` (`is_paused` is reported through status).
pub const WORK_QUEUE_FIELDS: &[(&str, &str)] =
    &[("name", "name"), ("description", "description"), ("concurrency_limit", "concurrency_limit"), ("priority", "priority")];

/// `WORK_POOL_EVENT_FIELDS` (`is_paused` is reported through status).
pub const WORK_POOL_FIELDS: &[(&str, &str)] = &[
    ("description", "description"),
    ("base_job_template", "base_job_template"),
    ("concurrency_limit", "concurrency_limit"),
    ("storage_configuration", "storage_configuration"),
];

/// `{field: {"from": old, "to": new}}` for the watched fields that `changes`
/// really changes (a value sent unchanged is not a change).
pub fn changed_fields(before: &Map<String, Value>, changes: &Map<String, Value>, watched: &[(&str, &str)]) -> Map<String, Value> {
    let mut out = Map::new();
    for (ours, reported) in watched {
        let Some(new) = changes.get(*ours) else { continue };
        let old = before.get(*ours).unwrap_or(&Value::Null);
        if old != new {
            out.insert((*reported).to_owned(), json!({"from": old, "to": new}));
        }
    }
    out
}

/// The payload of an `updated` event.
pub fn updated_payload(changed: Map<String, Value>) -> Value {
    let fields: Vec<Value> = changed.keys().map(|k| json!(k)).collect();
    json!({"updated_fields": fields, "updates": changed})
}

/// `READY` → `ready`, `NOT_READY` → `not-ready` (Prefect's `in_kebab_case`).
pub fn kebab_status(status: &str) -> String {
    status.to_lowercase().replace('_', "-")
}

fn event(name: &str, resource: Value, related: Vec<Value>, payload: Value, occurred: DateTime<Utc>) -> Value {
    json!({
        "id": Uuid::now_v7(),
        "occurred": crate::time::fmt_ts(occurred),
        "event": name,
        "resource": resource,
        "related": related,
        "payload": payload,
    })
}

fn text(doc: &Map<String, Value>, key: &str) -> Option<String> {
    doc.get(key).and_then(Value::as_str).map(str::to_owned)
}

async fn name_of(conn: &mut AnyConnection, dialect: Dialect, table: &str, id: &str) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query(&dialect.rewrite(&format!("SELECT name FROM {table} WHERE id = $1"))).bind(id.to_owned()).fetch_optional(&mut *conn).await?;
    Ok(row.and_then(|r| r.try_get::<String, _>(0).ok()))
}

/// The work pool a queue belongs to, as a related resource.
async fn pool_related(conn: &mut AnyConnection, dialect: Dialect, pool_id: &str) -> Result<Option<Value>, sqlx::Error> {
    let row = sqlx::query(&dialect.rewrite("SELECT name, type FROM work_pool WHERE id = $1")).bind(pool_id.to_owned()).fetch_optional(&mut *conn).await?;
    Ok(row.map(|r| {
        json!({
            "prefect.resource.id": format!("prefect.work-pool.{pool_id}"),
            "prefect.resource.name": r.try_get::<String, _>(0).unwrap_or_default(),
            "prefect.work-pool.type": r.try_get::<String, _>(1).unwrap_or_default(),
            "prefect.resource.role": "work-pool",
        })
    }))
}

/// A deployment's flow, work queue and work pool, plus its block documents.
async fn deployment_related(conn: &mut AnyConnection, dialect: Dialect, dep: &Map<String, Value>) -> Result<Vec<Value>, sqlx::Error> {
    let mut related = Vec::new();
    if let Some(flow_id) = text(dep, "flow_id") {
        if let Some(name) = name_of(conn, dialect, "flow", &flow_id).await? {
            related.push(json!({"prefect.resource.id": format!("prefect.flow.{flow_id}"), "prefect.resource.name": name, "prefect.resource.role": "flow"}));
        }
    }
    if let Some(queue_id) = text(dep, "work_queue_id") {
        let row = sqlx::query(&dialect.rewrite("SELECT name, work_pool_id FROM work_queue WHERE id = $1")).bind(queue_id.clone()).fetch_optional(&mut *conn).await?;
        if let Some(row) = row {
            related.push(json!({
                "prefect.resource.id": format!("prefect.work-queue.{queue_id}"),
                "prefect.resource.name": row.try_get::<String, _>(0).unwrap_or_default(),
                "prefect.resource.role": "work-queue",
            }));
            if let Some(pool_id) = row.try_get::<Option<String>, _>(1).ok().flatten() {
                related.extend(pool_related(conn, dialect, &pool_id).await?);
            }
        }
    }
    for (key, role) in [("storage_document_id", "storage"), ("infrastructure_document_id", "infrastructure")] {
        if let Some(id) = text(dep, key) {
            related.push(json!({"prefect.resource.id": format!("prefect.block-document.{id}"), "prefect.resource.role": role}));
        }
    }
    Ok(related)
}

/// A `prefect.deployment.*` event for the deployment `dep` (as it is after the change).
pub async fn deployment_event(
    conn: &mut AnyConnection,
    dialect: Dialect,
    name: &str,
    id: Uuid,
    dep: &Map<String, Value>,
    payload: Value,
    occurred: DateTime<Utc>,
) -> Result<Value, sqlx::Error> {
    let resource = json!({"prefect.resource.id": format!("prefect.deployment.{id}"), "prefect.resource.name": dep.get("name").cloned().unwrap_or(Value::Null)});
    let related = deployment_related(conn, dialect, dep).await?;
    Ok(event(name, resource, related, payload, occurred))
}

/// A `prefect.work-queue.*` event for the queue `queue` (as it is after the change).
pub async fn work_queue_event(
    conn: &mut AnyConnection,
    dialect: Dialect,
    name: &str,
    id: Uuid,
    queue: &Map<String, Value>,
    payload: Value,
    occurred: DateTime<Utc>,
) -> Result<Value, sqlx::Error> {
    let resource = json!({
        "prefect.resource.id": format!("prefect.work-queue.{id}"),
        "prefect.resource.name": queue.get("name").cloned().unwrap_or(Value::Null),
        "prefect.resource.role": "work-queue",
    });
    let related = match text(queue, "work_pool_id") {
        Some(pool_id) => pool_related(conn, dialect, &pool_id).await?.into_iter().collect(),
        None => Vec::new(),
    };
    Ok(event(name, resource, related, payload, occurred))
}

/// A `prefect.work-pool.*` event. As in Prefect, the status events name
/// the pool without a role and relate nothing; `created`, `updated` and
/// `deleted` give it the `work-pool` role, and `created` / `deleted` relate
/// its default queue and result-storage block.
pub fn work_pool_event(name: &str, id: Uuid, pool: &Map<String, Value>, payload: Value, occurred: DateTime<Utc>) -> Value {
    let action = name.rsplit('.').next().unwrap_or_default();
    let mut resource = json!({
        "prefect.resource.id": format!("prefect.work-pool.{id}"),
        "prefect.resource.name": pool.get("name").cloned().unwrap_or(Value::Null),
        "prefect.work-pool.type": pool.get("type").cloned().unwrap_or(Value::Null),
    });
    let mut related = Vec::new();
    if matches!(action, "created" | "updated" | "deleted") {
        resource["prefect.resource.role"] = json!("work-pool");
    }
    if matches!(action, "created" | "deleted") {
        if let Some(q) = text(pool, "default_queue_id") {
            related.push(json!({"prefect.resource.id": format!("prefect.work-queue.{q}"), "prefect.resource.role": "default-queue"}));
        }
        let block = pool.get("storage_configuration").and_then(|c| c.get("default_result_storage_block_id")).and_then(Value::as_str);
        if let Some(b) = block {
            related.push(json!({"prefect.resource.id": format!("prefect.block-document.{b}"), "prefect.resource.role": "result-storage"}));
        }
    }
    event(name, resource, related, payload, occurred)
}

/// The status event for a document whose status became `status`
/// (`prefect.<kind>.<status in kebab case>`).
pub fn status_event_name(kind: &str, status: &str) -> String {
    format!("prefect.{kind}.{}", kebab_status(status))
}

/// `document` with `changes` applied: what an event describing the change shows.
/// Prefect's `_lifecycle_event` (`events/schemas/lifecycle.py`): the
/// `prefect.<kind>.<action>` event of an object, named when it has a name.
pub fn lifecycle_event(kind: &str, action: &str, id: &str, name: Option<&str>, related: Vec<Value>, payload: Value, occurred: DateTime<Utc>) -> Value {
    let mut resource = serde_json::Map::new();
    resource.insert("prefect.resource.id".into(), Value::String(format!("prefect.{kind}.{id}")));
    if let Some(name) = name {
        resource.insert("prefect.resource.name".into(), Value::String(name.to_owned()));
    }
    event(&format!("prefect.{kind}.{action}"), Value::Object(resource), related, payload, occurred)
}

pub fn merged(document: &Map<String, Value>, changes: &Map<String, Value>) -> Map<String, Value> {
    let mut after = document.clone();
    after.extend(changes.clone());
    after
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn only_watched_fields_that_really_change_are_reported() {
        let before = map(json!({"description": "a", "tags": ["x"], "paused": false, "status": "READY"}));
        let changes = map(json!({"description": "b", "tags": ["x"], "status": "NOT_READY", "job_variables": {"cpu": 1}}));
        let changed = changed_fields(&before, &changes, DEPLOYMENT_FIELDS);
        assert_eq!(Value::Object(changed.clone()), json!({"description": {"from": "a", "to": "b"}, "infra_overrides": {"from": null, "to": {"cpu": 1}}}));
        let payload = updated_payload(changed);
        assert_eq!(payload["updated_fields"], json!(["description", "infra_overrides"]));
    }

    #[test]
    fn statuses_are_kebab_cased() {
        assert_eq!(kebab_status("NOT_READY"), "not-ready");
        assert_eq!(kebab_status("PAUSED"), "paused");
    }

    #[test]
    fn the_pool_updated_event_names_the_pool_role() {
        let pool = map(json!({"name": "p", "type": "process"}));
        let id = Uuid::now_v7();
        let e = work_pool_event("prefect.work-pool.updated", id, &pool, json!({}), Utc::now());
        assert_eq!(e["resource"]["prefect.resource.role"], "work-pool");
        let e = work_pool_event("prefect.work-pool.ready", id, &pool, json!({}), Utc::now());
        assert!(e["resource"].get("prefect.resource.role").is_none());
        assert_eq!(e["related"], json!([]));
        let q = Uuid::now_v7();
        let pool = map(json!({"name": "p", "type": "process", "default_queue_id": q, "storage_configuration": {"default_result_storage_block_id": null}}));
        let e = work_pool_event("prefect.work-pool.created", id, &pool, json!({}), Utc::now());
        assert_eq!(e["related"], json!([{"prefect.resource.id": format!("prefect.work-queue.{q}"), "prefect.resource.role": "default-queue"}]));
    }
}
