//! Background loops for the events model: the projector and the relay, each
//! woken by commits in this process and polling for other processes' writes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::handoff::RecentBatches;
use super::{projector, relay};
use crate::broker::Broker;
use crate::db::Db;

/// How often followers look for writes made by other processes.
const POLL: Duration = Duration::from_millis(250);
const BATCH: i64 = 1000;

/// Runs the projector until the task is dropped; signals `projected` after
/// every batch.
pub async fn run_projector(db: Db, projected: Arc<Notify>, recent: Arc<RecentBatches>) {
    let mut ahead = None;
    loop {
        // Registered before the batch, so a commit during it is not missed.
        let notified = db.appended.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match projector::project_batch_ahead(&db, BATCH, Some(&recent), &mut ahead).await {
            Ok(n) if n > 0 => {
                projected.notify_waiters();
                if n as i64 == BATCH {
                    continue;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "events projector batch failed; retrying");
                tokio::time::sleep(relay::RETRY_AFTER).await;
                continue;
            }
        }
        let _ = tokio::time::timeout(POLL, notified).await;
    }
}

/// Runs the relay until the task is dropped.
pub async fn run_relay(db: Db, broker: Arc<dyn Broker>, projected: Arc<Notify>, recent: Arc<RecentBatches>) {
    let mut cursor = loop {
        match relay::starting_cursor(&db, broker.as_ref()).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, broker = broker.name(), "relay cannot start yet; retrying");
                tokio::time::sleep(relay::RETRY_AFTER).await;
            }
        }
    };
    loop {
        let notified = projected.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match relay::relay_batch(&db, broker.as_ref(), cursor, BATCH, Some(&recent)).await {
            Ok((next, n)) => {
                cursor = next;
                if n > 0 {
                    continue;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, broker = broker.name(), "relay batch failed; retrying");
                tokio::time::sleep(relay::RETRY_AFTER).await;
                continue;
            }
        }
        let _ = tokio::time::timeout(POLL, notified).await;
    }
}
