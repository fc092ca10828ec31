//! Handing deferred (background) task runs to task workers: Prefect's
//! `EnqueueScheduledTasks` rule and its in-memory `TaskQueue`, made durable
//! and shared by every API process.
//!
//! A task run that enters SCHEDULED with `state_details.deferred` waits in
//! the read model until a subscriber for its task key claims it. A claim is
//! a `task_run_delivery` document whose id is the SCHEDULED state's id:
//! the stream is created once, so each scheduling goes to one worker even
//! with several API processes polling, and a run scheduled again (a retry)
//! has a new state and is delivered again. A worker that goes away before
//! acknowledging releases its claim, which puts the run back, as Prefect's
//! retry queue does. Runs scheduled while no worker listens are delivered
//! when one subscribes, across restarts.

use chrono::Utc;
use serde_json::{json, Map, Value};
use sqlx::Row;
use uuid::Uuid;

use super::documents::{self as doc, find};
use super::write;
use crate::api::error::ApiResult;
use crate::db::{Bind, Db};
use crate::eventlog::{lock_stream, StreamRef, StreamType, DEFAULT_WORKSPACE};
use crate::server_model::documents::TASK_RUN_DELIVERY;
use crate::server_model::task_runs::read_task_run;

/// How many waiting runs one poll looks at.
const CANDIDATES: usize = 50;

/// A claim not acknowledged for this long, on a run still in the state it
/// was claimed in, was sent by a process that died before reading the ack
/// (the client acks as soon as it receives a run): it may be claimed again.
const UNACKNOWLEDGED_FOR: chrono::Duration = chrono::Duration::seconds(60);

/// May a run be claimed, given its claim so far (if any)? Free when there
/// is none, when it was released, or when it went unacknowledged since
/// before `stale_before` (stored timestamp text, which sorts by time).
fn claimable(claim: Option<&Map<String, Value>>, stale_before: &str) -> bool {
    let Some(claim) = claim else { return true };
    let flag = |k: &str| claim.get(k) == Some(&Value::Bool(true));
    flag("released") || (!flag("acked") && claim.get("updated").and_then(Value::as_str).is_some_and(|t| t < stale_before))
}

fn stale_before() -> String {
    crate::time::fmt_ts(Utc::now() - UNACKNOWLEDGED_FOR)
}

/// A claimed delivery: the claim's id (the SCHEDULED state's id) and the
/// task run as Prefect's `TaskRun` JSON.
#[derive(Debug)]
pub struct Delivery {
    pub id: Uuid,
    pub task_run: Value,
}

/// A waiting run: SCHEDULED, deferred, one of the keys, not held by a claim.
struct Candidate {
    task_run_id: String,
    state_id: Uuid,
    task_key: String,
}

/// Deferred SCHEDULED runs with one of `keys` that no live claim holds,
/// oldest scheduling first.
async fn candidates(db: &Db, keys: &[String]) -> ApiResult<Vec<Candidate>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let list = crate::db::sql::placeholders(2, keys.len());
    let sql = format!(
        "SELECT tr.id, tr.state_id, tr.task_key, s.state_details FROM task_run tr \
         JOIN task_run_state s ON s.id = tr.state_id \
         LEFT JOIN task_run_delivery d ON d.id = tr.state_id \
         WHERE tr.state_type = 'SCHEDULED' AND tr.workspace_id = $1 AND tr.task_key IN ({list}) \
           AND s.state_details LIKE '%\"deferred\":true%' \
           AND (d.id IS NULL OR d.released = 1 OR (d.acked = 0 AND d.updated < ${stale})) \
         ORDER BY tr.state_timestamp, tr.id LIMIT {CANDIDATES}",
        stale = keys.len() + 2
    );
    // state_details is stored as compact JSON (serde_json), so the LIKE
    // narrows to deferred runs in SQL; the parsed check below is exact.
    let mut binds = vec![Bind::Text(DEFAULT_WORKSPACE.to_string())];
    binds.extend(keys.iter().map(|k| Bind::Text(k.clone())));
    binds.push(Bind::Text(stale_before()));
    let rows = crate::db::bind_all(sqlx::query(&db.q(&sql)), &binds).fetch_all(db.reader()).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let details: String = row.try_get("state_details")?;
        let deferred = serde_json::from_str::<Value>(&details).ok().and_then(|d| d.get("deferred")?.as_bool()).unwrap_or(false);
        let state_id = row.try_get::<Option<String>, _>("state_id")?.and_then(|s| Uuid::parse_str(&s).ok());
        if let (true, Some(state_id)) = (deferred, state_id) {
            out.push(Candidate { task_run_id: row.try_get("id")?, state_id, task_key: row.try_get("task_key")? });
        }
    }
    Ok(out)
}

/// Claims the oldest waiting run with one of `keys` for `client_id`, if any.
pub async fn claim_next(db: &Db, keys: &[String], client_id: &str) -> ApiResult<Option<Delivery>> {
    for candidate in candidates(db, keys).await? {
        if let Some(delivery) = claim(db, &candidate, client_id).await? {
            return Ok(Some(delivery));
        }
    }
    Ok(None)
}

/// Claims one candidate: `None` when another subscriber was first or the
/// run has moved on since it was read (then nothing is written).
async fn claim(db: &Db, candidate: &Candidate, client_id: &str) -> ApiResult<Option<Delivery>> {
    let dialect = db.dialect;
    let (id, run_id, key, client) = (candidate.state_id, candidate.task_run_id.clone(), candidate.task_key.clone(), client_id.to_owned());
    write(db, move |conn| {
        let (run_id, key, client) = (run_id.clone(), key.clone(), client.clone());
        Box::pin(async move {
            lock_stream(conn, dialect, &StreamRef::new(StreamType::TaskRunDelivery, id)).await?;
            let Some(task_run) = read_task_run(conn, dialect, &run_id, Utc::now()).await? else { return Ok(None) };
            let waiting = task_run.get("state_id").and_then(Value::as_str) == Some(id.to_string().as_str())
                && task_run.get("state_type").and_then(Value::as_str) == Some("SCHEDULED");
            if !waiting {
                return Ok(None);
            }
            let now = crate::time::micros(Utc::now());
            let existing = find(conn, dialect, &TASK_RUN_DELIVERY, "t.id = $1", &[Bind::Text(id.to_string())]).await?;
            if !claimable(existing.as_ref(), &stale_before()) {
                return Ok(None);
            }
            match existing {
                Some(_) => {
                    let changes = Map::from_iter([("released".into(), json!(false)), ("acked".into(), json!(false)), ("client_id".into(), json!(client))]);
                    doc::update(conn, dialect, StreamType::TaskRunDelivery, id, changes, now, None).await?;
                }
                None => {
                    let record = Map::from_iter([
                        ("task_run_id".into(), json!(run_id)),
                        ("task_key".into(), json!(key)),
                        ("client_id".into(), json!(client)),
                        ("released".into(), json!(false)),
                        ("acked".into(), json!(false)),
                    ]);
                    doc::create(conn, dialect, StreamType::TaskRunDelivery, id, record, now, None).await?;
                }
            }
            Ok(Some(Delivery { id, task_run }))
        })
    })
    .await
}

/// Records a worker's ack of a delivered run.
pub async fn acknowledge(db: &Db, id: Uuid) -> ApiResult<()> {
    set_flags(db, id, [("acked", true)]).await
}

async fn set_flags<const N: usize>(db: &Db, id: Uuid, flags: [(&'static str, bool); N]) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        Box::pin(async move {
            lock_stream(conn, dialect, &StreamRef::new(StreamType::TaskRunDelivery, id)).await?;
            let changes: Map<String, Value> = flags.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
            doc::update(conn, dialect, StreamType::TaskRunDelivery, id, changes, crate::time::micros(Utc::now()), None).await
        })
    })
    .await
}

/// Puts a claimed run back for another worker (its worker left before
/// acknowledging it).
pub async fn release(db: &Db, id: Uuid) -> ApiResult<()> {
    set_flags(db, id, [("released", true)]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(released: bool, acked: bool, updated: &str) -> Map<String, Value> {
        Map::from_iter([("released".into(), json!(released)), ("acked".into(), json!(acked)), ("updated".into(), json!(updated))])
    }

    #[test]
    fn a_run_is_claimable_when_unclaimed_released_or_left_unacknowledged_too_long() {
        let stale_before = "2026-01-01T00:01:00.000000Z";
        assert!(claimable(None, stale_before));
        assert!(claimable(Some(&claim(true, false, "2026-01-01T00:05:00.000000Z")), stale_before), "released");
        assert!(claimable(Some(&claim(false, false, "2026-01-01T00:00:00.000000Z")), stale_before), "unacknowledged since before the cutoff");
        assert!(!claimable(Some(&claim(false, false, "2026-01-01T00:02:00.000000Z")), stale_before), "a fresh claim waits for its ack");
        assert!(!claimable(Some(&claim(false, true, "2026-01-01T00:00:00.000000Z")), stale_before), "an acknowledged claim holds");
    }
}
