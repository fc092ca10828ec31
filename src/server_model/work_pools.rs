//! Work pools, work queues and workers as Prefect returns them
//! (`WorkPoolResponse`, `WorkQueueResponse`, `WorkerResponse`), and the
//! scheduled-run query workers poll.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use sqlx::{AnyConnection, Row};

use super::documents::{WORKER, WORK_POOL, WORK_QUEUE};
use crate::db::{bind_all, Bind, Dialect};

/// Prefect's defaults for a worker's liveness.
pub const DEFAULT_HEARTBEAT_INTERVAL_SECONDS: i64 = 30;
pub const INACTIVITY_HEARTBEAT_MULTIPLE: i64 = 3;

/// Flow-run states that hold a pool or queue slot.
const SLOT_STATES: &str = "('RUNNING', 'PENDING', 'CANCELLING')";

async fn count(conn: &mut AnyConnection, dialect: Dialect, sql: &str, id: &str) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(&dialect.rewrite(sql)).bind(id.to_owned()).fetch_one(&mut *conn).await?;
    row.try_get::<i64, _>(0)
}

/// `WorkPoolResponse`: the row plus `active_slots` (runs holding a slot,
/// only when the pool has a limit).
pub async fn pool_json(conn: &mut AnyConnection, dialect: Dialect, mut pool: Map<String, Value>) -> Result<Value, sqlx::Error> {
    let active = if pool.get("concurrency_limit").is_some_and(|v| !v.is_null()) {
        let id = pool.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let sql = format!("SELECT COUNT(*) FROM flow_run WHERE work_pool_id = $1 AND state_type IN {SLOT_STATES}");
        json!(count(conn, dialect, &sql, &id).await?)
    } else {
        Value::Null
    };
    pool.insert("active_slots".into(), active);
    Ok(Value::Object(pool))
}

/// `WorkQueueResponse`: the row plus `work_pool_name`, and `active_slots`
/// when the queue has a limit.
pub async fn queue_json(conn: &mut AnyConnection, dialect: Dialect, mut queue: Map<String, Value>) -> Result<Value, sqlx::Error> {
    let id = queue.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let pool_id = queue.get("work_pool_id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let pool_name = sqlx::query(&dialect.rewrite("SELECT name FROM work_pool WHERE id = $1"))
        .bind(pool_id)
        .fetch_optional(&mut *conn)
        .await?
        .and_then(|r| r.try_get::<String, _>(0).ok());
    queue.insert("work_pool_name".into(), json!(pool_name));
    let status = queue.remove("status").unwrap_or(Value::Null);
    queue.insert("status".into(), status);
    let active = if queue.get("concurrency_limit").is_some_and(|v| !v.is_null()) {
        let sql = format!("SELECT COUNT(*) FROM flow_run WHERE work_queue_id = $1 AND state_type IN {SLOT_STATES}");
        json!(count(conn, dialect, &sql, &id).await?)
    } else {
        Value::Null
    };
    queue.insert("active_slots".into(), active);
    Ok(Value::Object(queue))
}

/// `WorkerResponse`: status is ONLINE while the last heartbeat is within
/// three heartbeat intervals, as Prefect computes it on read.
pub fn worker_json(mut worker: Map<String, Value>, now: DateTime<Utc>) -> Value {
    let interval = worker.get("heartbeat_interval_seconds").and_then(Value::as_i64).unwrap_or(DEFAULT_HEARTBEAT_INTERVAL_SECONDS);
    let horizon = now - chrono::Duration::seconds(interval * INACTIVITY_HEARTBEAT_MULTIPLE);
    let last = worker.get("last_heartbeat_time").and_then(Value::as_str).and_then(crate::time::parse_ts);
    let online = last.is_some_and(|t| t > horizon);
    worker.insert("status".into(), json!(if online { "ONLINE" } else { "OFFLINE" }));
    Value::Object(worker)
}

/// Reads document rows with a `WHERE` over `$n` binds, ordered.
pub async fn select_docs(
    conn: &mut AnyConnection,
    dialect: Dialect,
    table: &super::documents::Table,
    cond: &str,
    order: &str,
    binds: &[Bind],
) -> Result<Vec<Map<String, Value>>, sqlx::Error> {
    let sql = format!("SELECT {} FROM {} t WHERE {cond} ORDER BY {order}", table.select_list("t"), table.name);
    let sql = dialect.rewrite(&sql);
    let rows = bind_all(sqlx::query(&sql), binds).fetch_all(&mut *conn).await?;
    Ok(rows.iter().map(|r| table.row_json(r)).collect())
}

pub async fn pools(conn: &mut AnyConnection, dialect: Dialect, cond: &str, binds: &[Bind]) -> Result<Vec<Map<String, Value>>, sqlx::Error> {
    select_docs(conn, dialect, &WORK_POOL, cond, "t.name", binds).await
}

pub async fn queues(conn: &mut AnyConnection, dialect: Dialect, cond: &str, binds: &[Bind]) -> Result<Vec<Map<String, Value>>, sqlx::Error> {
    select_docs(conn, dialect, &WORK_QUEUE, cond, "t.priority, t.name", binds).await
}

pub async fn workers(conn: &mut AnyConnection, dialect: Dialect, cond: &str, binds: &[Bind]) -> Result<Vec<Map<String, Value>>, sqlx::Error> {
    select_docs(conn, dialect, &WORKER, cond, "t.last_heartbeat_time DESC", binds).await
}

/// What a worker asks for in `get_scheduled_flow_runs`.
pub struct ScheduledQuery {
    pub pool_id: String,
    pub pool_paused: bool,
    pub pool_limit: Option<i64>,
    /// The queues to draw from (already restricted to the requested names).
    pub queues: Vec<Map<String, Value>>,
    pub scheduled_before: Option<DateTime<Utc>>,
    pub scheduled_after: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// Prefect's `get-runs-from-worker-queues` query: SCHEDULED runs (not
/// in-process retries) of unpaused queues, each queue limited by its free
/// slots and the pool by its free slots, queues in priority order then by
/// next scheduled start. Returns `(queue id, flow run id)` pairs.
pub async fn scheduled_runs(conn: &mut AnyConnection, dialect: Dialect, q: &ScheduledQuery) -> Result<Vec<(String, String)>, sqlx::Error> {
    if q.pool_paused {
        return Ok(Vec::new());
    }
    let mut pool_free = match q.pool_limit {
        Some(limit) => {
            let sql = "SELECT COUNT(*) FROM flow_run WHERE work_pool_id = $1 AND state_type IN ('RUNNING', 'PENDING')";
            (limit - count(conn, dialect, sql, &q.pool_id).await?).max(0)
        }
        None => i64::MAX,
    };
    let mut picked: Vec<(i64, String, String, String)> = Vec::new();
    for queue in &q.queues {
        if queue.get("is_paused").and_then(Value::as_bool).unwrap_or(false) {
            continue;
        }
        let qid = queue.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let priority = queue.get("priority").and_then(Value::as_i64).unwrap_or(1);
        let mut take = q.limit;
        if let Some(limit) = queue.get("concurrency_limit").and_then(Value::as_i64) {
            let sql = "SELECT COUNT(*) FROM flow_run WHERE work_queue_id = $1 AND state_type IN ('RUNNING', 'PENDING')";
            take = take.min((limit - count(conn, dialect, sql, &qid).await?).max(0));
        }
        if take == 0 {
            continue;
        }
        let mut binds = vec![Bind::Text(qid.clone())];
        let mut sql = "SELECT id, next_scheduled_start_time FROM flow_run WHERE work_queue_id = $1 AND state_type = 'SCHEDULED' \
                       AND empirical_policy NOT LIKE '%\"retry_type\":\"in_process\"%'"
            .to_owned();
        if let Some(after) = q.scheduled_after {
            binds.push(Bind::Text(crate::time::fmt_ts(after)));
            sql.push_str(&format!(" AND next_scheduled_start_time >= ${}", binds.len()));
        }
        if let Some(before) = q.scheduled_before {
            binds.push(Bind::Text(crate::time::fmt_ts(before)));
            sql.push_str(&format!(" AND next_scheduled_start_time <= ${}", binds.len()));
        }
        binds.push(Bind::Int(take));
        sql.push_str(&format!(" ORDER BY next_scheduled_start_time, id LIMIT ${}", binds.len()));
        let rows = bind_all(sqlx::query(&dialect.rewrite(&sql)), &binds).fetch_all(&mut *conn).await?;
        for row in rows {
            let id: String = row.try_get(0)?;
            let next: Option<String> = row.try_get(1)?;
            picked.push((priority, next.unwrap_or_default(), id, qid.clone()));
        }
    }
    picked.sort();
    let mut out = Vec::new();
    for (_, _, run_id, qid) in picked {
        if out.len() as i64 >= q.limit || pool_free == 0 {
            break;
        }
        pool_free -= 1;
        out.push((qid, run_id));
    }
    Ok(out)
}

/// Runs holding a slot in a pool or queue (`column` = `work_pool_id` or
/// `work_queue_id`): how many, and a page of `FlowRunSlotSummary`s, oldest
/// claim first.
pub async fn slot_holders(
    conn: &mut AnyConnection,
    dialect: Dialect,
    column: &str,
    id: &str,
    limit: i64,
    offset: i64,
    now: DateTime<Utc>,
) -> Result<(i64, Vec<Value>), sqlx::Error> {
    let total = count(conn, dialect, &format!("SELECT COUNT(*) FROM flow_run WHERE {column} = $1 AND state_type IN {SLOT_STATES}"), id).await?;
    let sql = format!(
        "SELECT id, name, state_type, state_name, start_time, state_timestamp FROM flow_run \
         WHERE {column} = $1 AND state_type IN {SLOT_STATES} ORDER BY state_timestamp, id LIMIT $2 OFFSET $3"
    );
    let rows = sqlx::query(&dialect.rewrite(&sql)).bind(id.to_owned()).bind(limit).bind(offset).fetch_all(&mut *conn).await?;
    let text = |r: &sqlx::any::AnyRow, c: &str| r.try_get::<Option<String>, _>(c).ok().flatten();
    let summaries = rows
        .iter()
        .map(|r| {
            let state_ts = text(r, "state_timestamp");
            let in_state = state_ts.as_deref().and_then(crate::time::parse_ts).map(|t| (now - t).num_microseconds().unwrap_or(0) as f64 / 1e6);
            json!({
                "id": text(r, "id"), "name": text(r, "name"), "state_type": text(r, "state_type"), "state_name": text(r, "state_name"),
                "start_time": text(r, "start_time"), "state_timestamp": state_ts, "time_in_current_state": in_state,
            })
        })
        .collect();
    Ok((total, summaries))
}

/// Prefect's page count for `count` items at `limit` per page.
pub fn pages(count: i64, limit: i64) -> i64 {
    if limit > 0 {
        (count + limit - 1) / limit
    } else {
        0
    }
}
