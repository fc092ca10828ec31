//! Global (v2) concurrency limits as Prefect returns them, and the slots a
//! limit has taken right now: its stored counter (decayed) plus its live
//! leases and, for a deployment's `deployment:{id}` limit, the deployment's
//! runs holding a slot (see `orchestration::concurrency_limits`).

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::documents::CONCURRENCY_LIMIT;
use super::work_pools::select_docs;
use crate::db::{Bind, Dialect};
use crate::eventlog::DEFAULT_WORKSPACE;
use crate::orchestration::concurrency_limits::LimitState;

/// The name of a deployment's own limit.
pub fn deployment_limit_name(deployment_id: Uuid) -> String {
    format!("deployment:{deployment_id}")
}

fn ws() -> String {
    DEFAULT_WORKSPACE.to_string()
}

/// How a route names a limit: `{id_or_name}` is an id when it parses as one.
#[derive(Debug, Clone)]
pub enum LimitRef {
    Id(Uuid),
    Name(String),
}

impl LimitRef {
    pub fn parse(raw: &str) -> LimitRef {
        Uuid::parse_str(raw).map(LimitRef::Id).unwrap_or_else(|_| LimitRef::Name(raw.to_owned()))
    }
}

pub async fn limit_row(conn: &mut AnyConnection, dialect: Dialect, which: &LimitRef) -> Result<Option<Map<String, Value>>, sqlx::Error> {
    let (cond, key) = match which {
        LimitRef::Id(id) => ("t.workspace_id = $1 AND t.id = $2", id.to_string()),
        LimitRef::Name(name) => ("t.workspace_id = $1 AND t.name = $2", name.clone()),
    };
    Ok(select_docs(conn, dialect, &CONCURRENCY_LIMIT, cond, "t.id", &[Bind::Text(ws()), Bind::Text(key)]).await?.into_iter().next())
}

/// Limits by name, in id order (the order their locks are taken in).
pub async fn limits_named(conn: &mut AnyConnection, dialect: Dialect, names: &[String]) -> Result<Vec<Map<String, Value>>, sqlx::Error> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (0..names.len()).map(|i| format!("${}", i + 2)).collect();
    let cond = format!("t.workspace_id = $1 AND t.name IN ({})", marks.join(", "));
    let mut binds = vec![Bind::Text(ws())];
    binds.extend(names.iter().map(|n| Bind::Text(n.clone())));
    select_docs(conn, dialect, &CONCURRENCY_LIMIT, &cond, "t.id", &binds).await
}

/// The `tag:<tag>` limits of these tags, in id order.
pub async fn limits_for_tags(conn: &mut AnyConnection, dialect: Dialect, tags: &[String]) -> Result<Vec<Map<String, Value>>, sqlx::Error> {
    let names: Vec<String> = tags.iter().map(|t| format!("tag:{t}")).collect();
    limits_named(conn, dialect, &names).await
}

/// One page of limits by name; only the `tag:*` ones when `tags_only`.
pub async fn list(conn: &mut AnyConnection, dialect: Dialect, tags_only: bool, limit: i64, offset: i64) -> Result<Vec<Map<String, Value>>, sqlx::Error> {
    let only = if tags_only { " AND t.name LIKE 'tag:%'" } else { "" };
    let sql = dialect.rewrite(&format!(
        "SELECT {} FROM concurrency_limit_v2 t WHERE t.workspace_id = $1{only} ORDER BY t.name LIMIT $2 OFFSET $3",
        CONCURRENCY_LIMIT.select_list("t")
    ));
    let rows = sqlx::query(&sql).bind(ws()).bind(limit).bind(offset).fetch_all(&mut *conn).await?;
    Ok(rows.iter().map(|r| CONCURRENCY_LIMIT.row_json(r)).collect())
}

/// A row's id (rows come from the table, so it is always a uuid).
pub fn row_id(row: &Map<String, Value>) -> Uuid {
    row.get("id").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok()).unwrap_or_default()
}

/// Slots of `limit_id` held by leases live at `at`.
async fn lease_slots(conn: &mut AnyConnection, dialect: Dialect, limit_id: Uuid, at: DateTime<Utc>) -> Result<i64, sqlx::Error> {
    let sql = dialect.rewrite(
        "SELECT CAST(COALESCE(SUM(slots), 0) AS BIGINT) FROM concurrency_lease WHERE workspace_id = $1 AND expiration > $2 AND resource_ids LIKE $3",
    );
    let row = sqlx::query(&sql).bind(ws()).bind(crate::time::fmt_ts(at)).bind(format!("%{limit_id}%")).fetch_one(&mut *conn).await?;
    row.try_get::<i64, _>(0)
}

/// Runs of a deployment holding one of its slots, other than `except`.
async fn deployment_run_slots(conn: &mut AnyConnection, dialect: Dialect, deployment_id: Uuid, except: Option<Uuid>) -> Result<i64, sqlx::Error> {
    let sql = dialect.rewrite("SELECT COUNT(*) FROM flow_run WHERE deployment_id = $1 AND id <> $2 AND state_type IN ('PENDING', 'RUNNING', 'CANCELLING')");
    let row = sqlx::query(&sql)
        .bind(deployment_id.to_string())
        .bind(except.map(|u| u.to_string()).unwrap_or_default())
        .fetch_one(&mut *conn)
        .await?;
    row.try_get::<i64, _>(0)
}

fn int(row: &Map<String, Value>, key: &str) -> i64 {
    row.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// A limit row as a decision sees it, with what its leases (and, for a
/// deployment limit, its runs other than `except_run`) hold at `at`.
pub async fn limit_state(conn: &mut AnyConnection, dialect: Dialect, row: &Map<String, Value>, at: DateTime<Utc>, except_run: Option<Uuid>) -> Result<LimitState, sqlx::Error> {
    let id = row_id(row);
    let name = row.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut held = lease_slots(conn, dialect, id, at).await?;
    if let Some(deployment_id) = name.strip_prefix("deployment:").and_then(|s| Uuid::parse_str(s).ok()) {
        held += deployment_run_slots(conn, dialect, deployment_id, except_run).await?;
    }
    Ok(LimitState {
        id,
        name,
        limit: int(row, "limit"),
        active: row.get("active").and_then(Value::as_bool).unwrap_or(true),
        active_slots: int(row, "active_slots"),
        denied_slots: int(row, "denied_slots"),
        slot_decay_per_second: row.get("slot_decay_per_second").and_then(Value::as_f64).unwrap_or(0.0),
        avg_slot_occupancy_seconds: row.get("avg_slot_occupancy_seconds").and_then(Value::as_f64).unwrap_or(2.0),
        updated: row.get("updated").and_then(Value::as_str).and_then(crate::time::parse_ts).unwrap_or(at),
        held,
    })
}

/// `GlobalConcurrencyLimitResponse` for a row, `active_slots` being what
/// is taken now.
pub async fn limit_response(conn: &mut AnyConnection, dialect: Dialect, row: &Map<String, Value>) -> Result<Value, sqlx::Error> {
    let at = crate::time::micros(Utc::now());
    let state = limit_state(conn, dialect, row, at, None).await?;
    let mut out = Map::new();
    for key in ["id", "created", "updated", "active", "name", "limit"] {
        out.insert(key.into(), row.get(key).cloned().unwrap_or(Value::Null));
    }
    out.insert("active_slots".into(), json!(state.occupied(at)));
    out.insert("slot_decay_per_second".into(), json!(state.slot_decay_per_second));
    Ok(Value::Object(out))
}

/// A deployment's own limit as `GlobalConcurrencyLimitResponse`, or null.
pub async fn deployment_limit_response(conn: &mut AnyConnection, dialect: Dialect, deployment_id: Uuid) -> Result<Value, sqlx::Error> {
    match limit_row(conn, dialect, &LimitRef::Name(deployment_limit_name(deployment_id))).await? {
        Some(row) => limit_response(conn, dialect, &row).await,
        None => Ok(Value::Null),
    }
}

/// Prefect's core `ConcurrencyLimitV2` (the create answer).
pub fn core_limit(row: &Map<String, Value>) -> Value {
    let keys = ["id", "created", "updated", "active", "name", "limit", "active_slots", "denied_slots", "slot_decay_per_second", "avg_slot_occupancy_seconds"];
    Value::Object(keys.iter().map(|k| ((*k).to_owned(), row.get(*k).cloned().unwrap_or(Value::Null))).collect())
}

/// `MinimalConcurrencyLimitResponse`.
pub fn minimal(row: &Map<String, Value>) -> Value {
    json!({"id": row.get("id"), "name": row.get("name"), "limit": row.get("limit")})
}
