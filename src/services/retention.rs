//! Events retention: drops events older than the retention period from the
//! events read model, in bounded batches, once an hour (and at start). The
//! log is never trimmed here: a replay restores what retention removed.

use std::time::Duration;

use chrono::Utc;

use crate::db::Db;
use crate::time::fmt_ts;

const EVERY: Duration = Duration::from_secs(3600);
const BATCH: i64 = 10_000;

/// Deletes expired events; returns how many were removed.
pub async fn trim(db: &Db, retention: Duration) -> Result<u64, sqlx::Error> {
    let cutoff = fmt_ts(Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(7)));
    let mut removed = 0;
    loop {
        let mut tx = db.begin_write().await?;
        sqlx::query(&db.q(
            "DELETE FROM event_resources WHERE event_id IN (SELECT id FROM events WHERE occurred < $1 LIMIT $2)",
        ))
        .bind(cutoff.clone())
        .bind(BATCH)
        .execute(&mut *tx)
        .await?;
        let n = sqlx::query(&db.q("DELETE FROM events WHERE id IN (SELECT id FROM events WHERE occurred < $1 LIMIT $2)"))
            .bind(cutoff.clone())
            .bind(BATCH)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        removed += n;
        if (n as i64) < BATCH {
            return Ok(removed);
        }
    }
}

pub async fn run(db: Db, retention: Duration) {
    loop {
        match trim(&db, retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "events retention"),
            Err(e) => tracing::warn!(error = %e, "events retention failed"),
        }
        tokio::time::sleep(EVERY).await;
    }
}
