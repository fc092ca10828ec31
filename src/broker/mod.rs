//! The broker: how committed Prefect events reach live subscribers
//! (`/events/out`, and later automations) in this process and in every other
//! API process.
//!
//! The log stays the source of truth. A relay (see `events_model::relay`)
//! follows the log behind the events projector and hands each batch to
//! [`Broker::publish`]; every process reads live events from
//! [`Broker::subscribe`]. Two implementations: in-process (embedded default)
//! and NATS JetStream (`PREFECT_MESSAGING_BROKER=nats`).

pub mod memory;
pub mod nats;

use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use crate::config::{BrokerKind, Settings};
use crate::eventlog::Cursor;

pub use memory::MemoryBroker;
pub use nats::NatsBroker;

/// The broker the settings ask for: in-process by default, or NATS JetStream
/// (`PREFECT_MESSAGING_BROKER=nats`, connecting to `PREFECT_NATS_URL`; fails if
/// NATS cannot be reached within a few seconds).
pub async fn from_settings(settings: &Settings) -> anyhow::Result<Arc<dyn Broker>> {
    Ok(match settings.broker {
        BrokerKind::Memory => Arc::new(MemoryBroker::new()),
        BrokerKind::Nats => Arc::new(
            NatsBroker::connect_with_prefix(&settings.nats_url, &settings.nats_stream, &settings.nats_subject_prefix)
                .await?,
        ),
    })
}

/// A Prefect event as delivered live: the `ReceivedEvent` JSON and its place
/// in the log.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    pub cursor: Cursor,
    pub event_id: Uuid,
    pub event: Arc<Value>,
}

/// A fan-out channel for committed events.
#[async_trait::async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Publishes a batch, in order. Returns once the broker holds them (NATS:
    /// every JetStream ack received). Publishing an event id twice must not
    /// deliver it twice (NATS: `Nats-Msg-Id`).
    async fn publish(&self, batch: &[LiveEvent]) -> anyhow::Result<()>;

    /// The cursor of the last event the broker holds, if it can tell (NATS:
    /// read from the last message in the stream); `None` when empty or unknown.
    /// The relay uses it to resume without republishing after a restart.
    async fn last_published(&self) -> anyhow::Result<Option<Cursor>>;

    /// Live events published from now on, by any process, in publish order.
    /// A receiver that falls more than 4096 events behind gets
    /// `RecvError::Lagged(n)`: it has lost `n` events and must re-read the log
    /// from the last cursor it saw before going on.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<LiveEvent>;

    /// A short name for logs and checkpoints (`memory`, `nats`).
    fn name(&self) -> &'static str;
}
