//! Tag (v1) concurrency limits (Prefect's `concurrency_limits` router): as
//! in Prefect 3, each is the v2 limit named `tag:<tag>`, and each task run
//! holding a slot holds a lease of one slot for it. V1 clients cannot renew
//! leases, so theirs last Prefect's `V1_LEASE_TTL` (about 100 years) and end
//! with `/decrement` or a reset.

use axum::http::StatusCode;
use serde_json::{json, Map, Value};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::concurrency_limits::{create_lease, end_holder_leases, insert_limit, limit_event, lock_name, now, revoke_leases_of, LimitCreate};
use super::documents as doc;
use super::write;
use crate::api::error::{ApiResult, AppError};
use crate::db::{Db, Dialect};
use crate::eventlog::{lock_stream, StreamRef, StreamType, DEFAULT_WORKSPACE};
use crate::orchestration::concurrency_limits::WaitSettings;
use crate::server_model::concurrency_limits::{limit_row, limit_state, limits_for_tags, row_id, LimitRef};

/// Prefect's `V1_LEASE_TTL`.
pub const V1_LEASE_SECONDS: f64 = 100.0 * 365.0 * 86400.0;

pub fn tag_name(tag: &str) -> String {
    format!("tag:{tag}")
}

pub fn not_found() -> AppError {
    AppError::Detail(StatusCode::NOT_FOUND, "Concurrency limit not found".into())
}

/// The task runs holding live leases on a limit (`active_slots` of a v1 limit).
pub async fn holders(conn: &mut AnyConnection, dialect: Dialect, limit_id: Uuid) -> ApiResult<Vec<Value>> {
    let sql = dialect.rewrite("SELECT holder FROM concurrency_lease WHERE workspace_id = $1 AND expiration > $2 AND resource_ids LIKE $3 ORDER BY created, id");
    let rows = sqlx::query(&sql)
        .bind(DEFAULT_WORKSPACE.to_string())
        .bind(crate::time::fmt_ts(now()))
        .bind(format!("%{limit_id}%"))
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.try_get::<Option<String>, _>(0).ok().flatten())
        .filter_map(|h| serde_json::from_str::<Value>(&h).ok())
        .filter(|h| h["type"] == "task_run")
        .map(|h| h["id"].clone())
        .collect())
}

/// Prefect's core `ConcurrencyLimit` for a `tag:*` v2 row.
pub async fn v1_json(conn: &mut AnyConnection, dialect: Dialect, row: &Map<String, Value>) -> ApiResult<Value> {
    let tag = row.get("name").and_then(Value::as_str).unwrap_or_default().trim_start_matches("tag:").to_owned();
    let active = holders(conn, dialect, row_id(row)).await?;
    Ok(json!({
        "id": row.get("id"),
        "created": row.get("created"),
        "updated": row.get("updated"),
        "tag": tag,
        "concurrency_limit": row.get("limit"),
        "active_slots": active,
    }))
}

/// Creates or updates the `tag:<tag>` limit; `true` when it was created.
pub async fn upsert(db: &Db, tag: String, limit: i64) -> ApiResult<(Uuid, bool)> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let tag = tag.clone();
        Box::pin(async move {
            let name = tag_name(&tag);
            lock_name(conn, dialect, &name).await?;
            let at = now();
            match limit_row(conn, dialect, &LimitRef::Name(name.clone())).await? {
                Some(current) => {
                    let id = row_id(&current);
                    lock_stream(conn, dialect, &StreamRef::new(StreamType::ConcurrencyLimit, id)).await?;
                    let changes = Map::from_iter([("limit".to_owned(), json!(limit))]);
                    let event = limit_event("updated", id, &crate::server_model::feed_events::merged(&current, &changes), at);
                    doc::update(conn, dialect, StreamType::ConcurrencyLimit, id, changes, at, Some(event)).await?;
                    Ok((id, false))
                }
                None => Ok((insert_limit(conn, dialect, &LimitCreate::named(name, limit), at, true).await?, true)),
            }
        })
    })
    .await
}

/// The `tag:*` limit a v1 route addresses by id (a limit of another kind is
/// not a v1 limit).
pub async fn tag_limit(conn: &mut AnyConnection, dialect: Dialect, which: &LimitRef) -> ApiResult<Option<Map<String, Value>>> {
    let row = limit_row(conn, dialect, which).await?;
    Ok(row.filter(|r| r.get("name").and_then(Value::as_str).is_some_and(|n| n.starts_with("tag:"))))
}

pub fn by_tag(tag: &str) -> LimitRef {
    LimitRef::Name(tag_name(tag))
}

/// Deletes a `tag:*` limit and its leases (404 when there is none).
pub async fn delete(db: &Db, which: LimitRef) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let which = which.clone();
        Box::pin(async move {
            let current = tag_limit(conn, dialect, &which).await?.ok_or_else(not_found)?;
            let id = row_id(&current);
            lock_stream(conn, dialect, &StreamRef::new(StreamType::ConcurrencyLimit, id)).await?;
            let at = now();
            revoke_leases_of(conn, dialect, id, at).await?;
            let event = limit_event("deleted", id, &current, at);
            doc::delete(conn, dialect, StreamType::ConcurrencyLimit, id, at, Some(event)).await
        })
    })
    .await
}

/// Revokes a tag limit's leases, then gives each task run in
/// `slot_override` a slot (404 when there is no such limit).
pub async fn reset(db: &Db, tag: String, slot_override: Vec<Uuid>) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let (tag, slot_override) = (tag.clone(), slot_override.clone());
        Box::pin(async move {
            let current = limit_row(conn, dialect, &by_tag(&tag)).await?.ok_or_else(not_found)?;
            let id = row_id(&current);
            lock_stream(conn, dialect, &StreamRef::new(StreamType::ConcurrencyLimit, id)).await?;
            let at = now();
            revoke_leases_of(conn, dialect, id, at).await?;
            for run in slot_override {
                create_lease(conn, dialect, vec![id.to_string()], 1, json!({"type": "task_run", "id": run}), V1_LEASE_SECONDS, at).await?;
            }
            Ok(())
        })
    })
    .await
}

/// Why a v1 increment was refused (423 with this detail; `retry` asks the
/// client to wait).
#[derive(Debug)]
pub struct Refused {
    pub detail: String,
    pub retry: bool,
}

/// Takes one slot of each active tag limit for `task_run_id`, under one
/// lease; answers `MinimalConcurrencyLimitResponse`s named by tag.
pub async fn increment(db: &Db, tags: Vec<String>, task_run_id: Uuid) -> ApiResult<Result<Vec<Value>, Refused>> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let tags = tags.clone();
        Box::pin(async move {
            let rows = limits_for_tags(conn, dialect, &tags).await?;
            for row in &rows {
                lock_stream(conn, dialect, &StreamRef::new(StreamType::ConcurrencyLimit, row_id(row))).await?;
            }
            // Read again, once, under the locks: the counters may have moved.
            let locked: std::collections::HashMap<String, Map<String, Value>> = limits_for_tags(conn, dialect, &tags)
                .await?
                .into_iter()
                .map(|row| (row.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(), row))
                .collect();
            let at = now();
            let mut states = Vec::with_capacity(tags.len());
            for tag in &tags {
                if let Some(row) = locked.get(&tag_name(tag)) {
                    states.push((tag, limit_state(conn, dialect, row, at, None).await?));
                }
            }
            // As Prefect: every zero limit is checked before any availability.
            if let Some((tag, _)) = states.iter().find(|(_, state)| state.limit == 0) {
                let detail = format!("The concurrency limit on tag \"{tag}\" is 0 and will deadlock if the task tries to run again.");
                return Ok(Err(Refused { detail, retry: false }));
            }
            let mut taken = Vec::new();
            let mut results = Vec::new();
            for (tag, state) in states {
                if !state.active {
                    continue;
                }
                if state.occupied(at) + 1 > state.limit {
                    return Ok(Err(Refused { detail: format!("Concurrency limit for the {tag} tag has been reached"), retry: true }));
                }
                taken.push(state.id.to_string());
                results.push(json!({"id": state.id, "name": tag, "limit": state.limit}));
            }
            if !taken.is_empty() {
                create_lease(conn, dialect, taken, 1, json!({"type": "task_run", "id": task_run_id}), V1_LEASE_SECONDS, at).await?;
            }
            Ok(Ok(results))
        })
    })
    .await
}

/// Ends `task_run_id`'s leases on the tags' limits; answers every limit
/// found (named `tag:<tag>`, as Prefect does here).
pub async fn decrement(db: &Db, tags: Vec<String>, task_run_id: Uuid, waits: WaitSettings) -> ApiResult<Vec<Value>> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let tags = tags.clone();
        Box::pin(async move {
            let rows = limits_for_tags(conn, dialect, &tags).await?;
            let limit_ids: Vec<Uuid> = rows.iter().map(row_id).collect();
            end_holder_leases(conn, dialect, &limit_ids, task_run_id, now(), waits).await?;
            Ok(rows.iter().map(crate::server_model::concurrency_limits::minimal).collect())
        })
    })
    .await
}
