//! The foreman (Prefect's `monitor_worker_health`): workers that stopped
//! heartbeating go OFFLINE, pools left without an online worker go
//! NOT_READY, and deployments and work queues nobody polled lately go
//! NOT_READY. Every change is an event in the log.

use chrono::Utc;
use serde_json::{json, Map, Value};
use sqlx::Row;
use uuid::Uuid;

use crate::api::error::ApiResult;
use crate::commands::{documents as doc, write};
use crate::config::Settings;
use crate::db::{Bind, Db};
use crate::server_model::documents::{Table, DEPLOYMENT, WORKER, WORK_POOL, WORK_QUEUE};
use crate::server_model::feed_events as feed;
use crate::eventlog::{lock_stream, StreamRef, StreamType};
use crate::services::settings::ServiceSettings;

async fn ids(db: &Db, sql: &str, cutoff: Option<String>) -> ApiResult<Vec<Uuid>> {
    let q = db.q(sql);
    let mut query = sqlx::query(&q);
    if let Some(c) = cutoff {
        query = query.bind(c);
    }
    let rows = query.fetch_all(db.reader()).await?;
    Ok(rows.iter().filter_map(|r| r.try_get::<String, _>(0).ok()).filter_map(|s| Uuid::parse_str(&s).ok()).collect())
}

/// Sets `status` on each document whose current status is still `from`,
/// with Prefect's status event where it emits one
/// (`prefect.work-pool.not-ready`, `prefect.deployment.not-ready`,
/// `prefect.work-queue.not-ready`; workers have none).
async fn set_status(db: &Db, stream_type: StreamType, table: &'static Table, targets: Vec<Uuid>, from: &'static str, to: &'static str) -> ApiResult<usize> {
    if targets.is_empty() {
        return Ok(0);
    }
    let dialect = db.dialect;
    write(db, move |conn| {
        let targets = targets.clone();
        Box::pin(async move {
            let now = crate::time::micros(Utc::now());
            let mut changed = 0;
            for id in targets {
                lock_stream(conn, dialect, &StreamRef::new(stream_type, id)).await?;
                let Some(current) = doc::find(conn, dialect, table, "t.id = $1", &[Bind::Text(id.to_string())]).await? else { continue };
                if current.get("status").and_then(Value::as_str) != Some(from) {
                    continue;
                }
                let changes = Map::from_iter([("status".into(), json!(to))]);
                let after = feed::merged(&current, &changes);
                let event = match stream_type {
                    StreamType::WorkPool => Some(feed::work_pool_event(&feed::status_event_name("work-pool", to), id, &after, json!({}), now)),
                    StreamType::Deployment => Some(feed::deployment_event(conn, dialect, &feed::status_event_name("deployment", to), id, &after, json!({}), now).await?),
                    StreamType::WorkQueue => Some(feed::work_queue_event(conn, dialect, &feed::status_event_name("work-queue", to), id, &after, json!({}), now).await?),
                    _ => None,
                };
                doc::update(conn, dialect, stream_type, id, changes, now, event).await?;
                changed += 1;
            }
            Ok(changed)
        })
    })
    .await
}

/// One foreman pass; returns how many statuses changed.
pub async fn run_once(db: &Db, s: &ServiceSettings) -> ApiResult<usize> {
    let now = Utc::now();
    let mut changed = 0;
    // Workers: offline after `multiple` missed heartbeats of their own interval.
    let rows = sqlx::query(&db.q("SELECT id, last_heartbeat_time, heartbeat_interval_seconds FROM worker WHERE status = 'ONLINE'"))
        .fetch_all(db.reader())
        .await?;
    let fallback = s.foreman_fallback_heartbeat.as_secs() as i64;
    let offline: Vec<Uuid> = rows
        .iter()
        .filter(|r| {
            let interval = r.try_get::<Option<i64>, _>(2).ok().flatten().unwrap_or(fallback);
            let last = r.try_get::<Option<String>, _>(1).ok().flatten().and_then(|t| crate::time::parse_ts(&t));
            last.is_none_or(|t| t < now - chrono::Duration::seconds(interval * s.foreman_heartbeat_multiple))
        })
        .filter_map(|r| r.try_get::<String, _>(0).ok())
        .filter_map(|s| Uuid::parse_str(&s).ok())
        .collect();
    changed += set_status(db, StreamType::Worker, &WORKER, offline, "ONLINE", "OFFLINE").await?;
    // Pools without any online worker.
    let pools = ids(db, "SELECT p.id FROM work_pool p WHERE p.status = 'READY' AND NOT EXISTS (SELECT 1 FROM worker w WHERE w.work_pool_id = p.id AND w.status = 'ONLINE')", None).await?;
    changed += set_status(db, StreamType::WorkPool, &WORK_POOL, pools, "READY", "NOT_READY").await?;
    let cutoff = |d: std::time::Duration| crate::time::fmt_ts(now - chrono::Duration::from_std(d).unwrap_or_default());
    let deployments = ids(db, "SELECT id FROM deployment WHERE status = 'READY' AND (last_polled IS NULL OR last_polled < $1)", Some(cutoff(s.foreman_deployment_timeout))).await?;
    changed += set_status(db, StreamType::Deployment, &DEPLOYMENT, deployments, "READY", "NOT_READY").await?;
    let queues = ids(db, "SELECT id FROM work_queue WHERE status = 'READY' AND (last_polled IS NULL OR last_polled < $1)", Some(cutoff(s.foreman_queue_timeout))).await?;
    changed += set_status(db, StreamType::WorkQueue, &WORK_QUEUE, queues, "READY", "NOT_READY").await?;
    Ok(changed)
}

pub async fn run(db: Db, settings: Settings) {
    let s = settings.services.clone();
    let mut tick = tokio::time::interval(s.foreman_loop);
    loop {
        tick.tick().await;
        match run_once(&db, &s).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(changes = n, "foreman updated statuses"),
            Err(e) => tracing::warn!(error = %e, "foreman pass failed"),
        }
    }
}
