//! The in-process broker (the embedded default): a `tokio::sync::broadcast`
//! channel. Live events reach subscribers in this process only.

use std::sync::Mutex;

use tokio::sync::broadcast;

use super::{Broker, LiveEvent};
use crate::eventlog::Cursor;

/// How many events a subscriber may fall behind before it lags.
pub const CHANNEL_CAPACITY: usize = 4096;

/// Fans committed events out to the subscribers of this process.
///
/// Delivery is best effort per subscriber: a receiver that falls more than
/// [`CHANNEL_CAPACITY`] events behind gets `RecvError::Lagged(n)` and has lost
/// those `n` events. A subscriber seeing `Lagged` must re-read the log from its
/// last seen cursor (the log is the source of truth) before going on with the
/// live feed.
pub struct MemoryBroker {
    tx: broadcast::Sender<LiveEvent>,
    last: Mutex<Option<Cursor>>,
}

impl MemoryBroker {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
        MemoryBroker {
            tx,
            last: Mutex::new(None),
        }
    }
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl Broker for MemoryBroker {
    /// Sends each event to the current subscribers. An event whose cursor is
    /// not after the last published one is dropped: the relay publishes in log
    /// order, so that is a republished event (a retried batch) and must not be
    /// delivered twice.
    async fn publish(&self, batch: &[LiveEvent]) -> anyhow::Result<()> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        for event in batch {
            if last.is_some_and(|l| event.cursor <= l) {
                continue;
            }
            *last = Some(event.cursor);
            // No receivers is not an error: nobody is listening right now.
            let _ = self.tx.send(event.clone());
        }
        Ok(())
    }

    async fn last_published(&self) -> anyhow::Result<Option<Cursor>> {
        Ok(*self.last.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.tx.subscribe()
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}
