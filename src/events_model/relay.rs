//! The relay: hands committed Prefect events to the broker, in log order,
//! never ahead of the events projector (so a subscriber that backfills from
//! the events table and then reads live events misses nothing at the seam).
//!
//! With NATS the relay's position is a checkpoint (`relay:nats`), reconciled
//! at start with the last message in the stream, so a crash on either side
//! neither loses nor (beyond JetStream's dedupe window) repeats events; NATS
//! being down only delays live delivery, never a write.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;

use crate::broker::{Broker, LiveEvent};
use crate::db::Db;
use crate::eventlog::{read_after, Cursor};

use super::handoff::RecentBatches;
use super::projector::{load_checkpoint, prefect_event, save_checkpoint, CHECKPOINT};

fn relay_checkpoint(broker: &dyn Broker) -> String {
    format!("relay:{}", broker.name())
}

/// The projector's committed position: the relay never goes past it. A
/// plain read: it must not wait for a projector batch in flight (that batch
/// then reaches the relay from memory), nor take SQLite's writer.
async fn projected_up_to(db: &Db) -> Result<Cursor, sqlx::Error> {
    let sql = db.q("SELECT CAST(tx_id AS BIGINT) AS tx_id, CAST(position AS BIGINT) AS position FROM es_checkpoints WHERE name = $1");
    let row = sqlx::query(&sql).bind(CHECKPOINT).fetch_optional(db.reader()).await?;
    Ok(match row {
        Some(row) => Cursor { tx_id: row.try_get("tx_id")?, position: row.try_get("position")? },
        None => Cursor::default(),
    })
}

/// Where to start: the in-process broker only serves live subscribers, so it
/// starts at the projector's position; NATS resumes from its checkpoint or
/// from what the stream already holds, whichever is further.
pub async fn starting_cursor(db: &Db, broker: &dyn Broker) -> anyhow::Result<Cursor> {
    if broker.name() == "memory" {
        return Ok(projected_up_to(db).await?);
    }
    let mut tx = db.begin_write().await?;
    let saved = load_checkpoint(&mut tx, db.dialect, &relay_checkpoint(broker)).await?;
    tx.commit().await?;
    let in_stream = broker.last_published().await?.unwrap_or_default();
    Ok(saved.max(in_stream))
}

/// Relays the next batch after `cursor`; returns the new cursor and how many
/// log entries it covered. A batch this process's projector just committed
/// is taken from `recent` rather than read from the log again.
pub async fn relay_batch(db: &Db, broker: &dyn Broker, cursor: Cursor, limit: i64, recent: Option<&RecentBatches>) -> anyhow::Result<(Cursor, usize)> {
    if let Some(batch) = recent.and_then(|r| r.take_after(cursor)) {
        let live: Vec<LiveEvent> = batch.events.into_iter().filter(|e| fits_live_delivery(broker, e)).collect();
        publish(db, broker, &live, batch.last).await?;
        return Ok((batch.last, batch.covered));
    }
    let ceiling = projected_up_to(db).await?;
    if ceiling <= cursor {
        return Ok((cursor, 0));
    }
    let mut conn = db.reader().acquire().await?;
    let batch = read_after(&mut conn, db.dialect, cursor, limit).await?;
    drop(conn);
    let batch: Vec<_> = batch.into_iter().filter(|e| Cursor { tx_id: e.tx_id, position: e.position } <= ceiling).collect();
    let Some(last) = batch.last() else { return Ok((cursor, 0)) };
    let next = Cursor { tx_id: last.tx_id, position: last.position };
    let live: Vec<LiveEvent> = batch
        .iter()
        .filter_map(|e| {
            prefect_event(e).map(|json| LiveEvent {
                cursor: Cursor { tx_id: e.tx_id, position: e.position },
                event_id: e.event_id,
                event: Arc::new(json),
            })
        })
        .filter(|e| fits_live_delivery(broker, e))
        .collect();
    publish(db, broker, &live, next).await?;
    Ok((next, batch.len()))
}

/// Publishes a batch and, for a broker that outlives this process, moves the
/// relay's checkpoint to `next`.
async fn publish(db: &Db, broker: &dyn Broker, live: &[LiveEvent], next: Cursor) -> anyhow::Result<()> {
    if !live.is_empty() {
        broker.publish(live).await?;
    }
    if broker.name() != "memory" {
        let mut tx = db.begin_write().await?;
        load_checkpoint(&mut tx, db.dialect, &relay_checkpoint(broker)).await?;
        save_checkpoint(&mut tx, db.dialect, &relay_checkpoint(broker), next).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// NATS refuses messages over its `max_payload` (1 MiB by default) while
/// Prefect accepts events up to 1.5 MB. Such an event stays in the log and
/// the events feed, but is not streamed live: retrying it forever would stall
/// every live subscriber behind it.
const MAX_LIVE_EVENT_BYTES: usize = 1_000_000;

fn fits_live_delivery(broker: &dyn Broker, event: &LiveEvent) -> bool {
    if broker.name() == "memory" {
        return true;
    }
    let size = event.event.to_string().len();
    if size > MAX_LIVE_EVENT_BYTES {
        tracing::warn!(event_id = %event.event_id, size, "event too large for live delivery over NATS; it stays queryable");
        return false;
    }
    true
}

/// Backoff after a failed relay attempt (NATS down, database busy).
pub const RETRY_AFTER: Duration = Duration::from_millis(500);
