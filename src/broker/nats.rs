//! The NATS JetStream broker (`PREFECT_MESSAGING_BROKER=nats`): live events
//! cross process boundaries, so every API process behind a load balancer sees
//! every event.
//!
//! - **Stream.** One JetStream stream (default `PREFECT_EVENTS`), file storage,
//!   subjects `<prefix>.>`, duplicate window 2 minutes, `max_age` 7 days,
//!   discard old. The log stays the source of truth; the stream only has to
//!   hold what live subscribers and the relay's restart need.
//! - **Subjects.** `<prefix>.<sanitized event name>`, prefix `prefect.events`
//!   by default, see [`subject_for`] and `docs/architecture.md` ("Broker").
//! - **Publish.** Payload = the event JSON; headers `Nats-Msg-Id: <event id>`
//!   (JetStream drops a repeat within the duplicate window),
//!   `Prefect-Log-Tx` and `Prefect-Log-Position` (the cursor).
//! - **Subscribe.** One background task per broker (per process) follows the
//!   stream with an ephemeral, ordered pull consumer that starts after the last
//!   message present at connect time, and forwards each message into a local
//!   broadcast channel. The task recreates the consumer from the next stream
//!   sequence after a gap, a missed heartbeat or a lost connection (the client
//!   reconnects by itself), and drops anything whose cursor is not after the
//!   last one it forwarded, so local subscribers never see a duplicate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use async_nats::jetstream::{self, consumer, message::PublishMessage, stream};
use async_nats::HeaderMap;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{Broker, LiveEvent};
use crate::eventlog::Cursor;

/// The default subject prefix: events go to `prefect.events.<event name>`.
pub const DEFAULT_SUBJECT_PREFIX: &str = "prefect.events";
/// Header carrying the cursor's transaction id.
pub const HEADER_TX: &str = "Prefect-Log-Tx";
/// Header carrying the cursor's log position.
pub const HEADER_POSITION: &str = "Prefect-Log-Position";
/// JetStream's deduplication header (the event id).
const HEADER_MSG_ID: &str = "Nats-Msg-Id";

/// How long `connect` keeps trying before it gives up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// JetStream drops a repeated `Nats-Msg-Id` within this window.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Messages older than this are discarded by the server (the log keeps them).
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Publishes sent before their acks are awaited.
const MAX_IN_FLIGHT: usize = 256;
/// Local broadcast capacity; see `memory::CHANNEL_CAPACITY` for lag handling.
const CHANNEL_CAPACITY: usize = super::memory::CHANNEL_CAPACITY;
/// Idle heartbeat asked of the server by the live consumer; two missed ones
/// make the task recreate its consumer.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// A [`Broker`] over a NATS JetStream stream.
pub struct NatsBroker {
    js: jetstream::Context,
    stream_name: String,
    prefix: String,
    tx: broadcast::Sender<LiveEvent>,
    forwarder: JoinHandle<()>,
}

impl NatsBroker {
    /// Connects with the default subject prefix (`prefect.events`).
    pub async fn connect(url: &str, stream_name: &str) -> anyhow::Result<NatsBroker> {
        Self::connect_with_prefix(url, stream_name, DEFAULT_SUBJECT_PREFIX).await
    }

    /// Connects to NATS at `url` (failing after [`CONNECT_TIMEOUT`] if it is
    /// unreachable), creates the stream `stream_name` over `<prefix>.>` or
    /// reuses it, and starts following it from its current end.
    pub async fn connect_with_prefix(url: &str, stream_name: &str, prefix: &str) -> anyhow::Result<NatsBroker> {
        validate_prefix(prefix)?;
        let (client, reconnects) = connect_client(url).await?;
        let js = jetstream::new(client);

        let subjects = format!("{prefix}.>");
        let config = stream::Config {
            name: stream_name.to_owned(),
            description: Some("prefect-server live events (the event log is the source of truth)".into()),
            subjects: vec![subjects.clone()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            duplicate_window: DUPLICATE_WINDOW,
            max_age: MAX_AGE,
            allow_direct: true,
            num_replicas: 1,
            ..Default::default()
        };
        let mut stream = js
            .get_or_create_stream(config)
            .await
            .with_context(|| format!("cannot create or open JetStream stream {stream_name:?} at {url}"))?;
        let info = stream
            .info()
            .await
            .with_context(|| format!("cannot read JetStream stream {stream_name:?}"))?;
        if !info.config.subjects.contains(&subjects) {
            bail!(
                "JetStream stream {stream_name:?} exists with subjects {:?}, not {subjects:?}; \
                 set PREFECT_NATS_STREAM or PREFECT_NATS_SUBJECT_PREFIX to match",
                info.config.subjects
            );
        }

        // Live from here: start after the last message present now, and never
        // forward anything at or before its cursor (a consumer recreated later
        // may go back further than that; see `forward`).
        let (last_seq, messages) = (info.state.last_sequence, info.state.messages);
        let floor = if messages == 0 {
            None
        } else {
            match cursor_at(&stream, stream_name, last_seq).await {
                Ok(cursor) => Some(cursor),
                Err(e) => {
                    tracing::warn!(stream = stream_name, error = %format!("{e:#}"), "cannot read the cursor of the last message");
                    None
                }
            }
        };
        let next_seq = last_seq + 1;
        let first = open_consumer(&js, stream_name, next_seq)
            .await
            .with_context(|| format!("cannot consume JetStream stream {stream_name:?}"))?;

        let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
        let forwarder = tokio::spawn(forward(
            js.clone(),
            stream_name.to_owned(),
            tx.clone(),
            reconnects,
            first,
            next_seq,
            floor,
        ));
        tracing::info!(
            url,
            stream = stream_name,
            subjects,
            from_sequence = next_seq,
            "NATS broker connected"
        );
        Ok(NatsBroker {
            js,
            stream_name: stream_name.to_owned(),
            prefix: prefix.to_owned(),
            tx,
            forwarder,
        })
    }

    /// The stream this broker publishes to and follows.
    pub fn stream_name(&self) -> &str {
        &self.stream_name
    }

    /// The subject an event of this name is published on.
    pub fn subject(&self, event_name: &str) -> String {
        subject_for(&self.prefix, event_name)
    }

    /// The JetStream context (tests and admin tools).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }
}

impl Drop for NatsBroker {
    fn drop(&mut self) {
        self.forwarder.abort();
    }
}

#[async_trait::async_trait]
impl Broker for NatsBroker {
    /// Publishes the batch pipelined (up to [`MAX_IN_FLIGHT`] sends, then
    /// their acks in order). Any failure fails the whole call; the caller
    /// retries the batch and JetStream drops the repeats by `Nats-Msg-Id`.
    async fn publish(&self, batch: &[LiveEvent]) -> anyhow::Result<()> {
        for chunk in batch.chunks(MAX_IN_FLIGHT) {
            let mut acks = Vec::with_capacity(chunk.len());
            for event in chunk {
                let name = event.event.get("event").and_then(Value::as_str).unwrap_or_default();
                let payload = serde_json::to_vec(&*event.event)?;
                let message = PublishMessage::build()
                    .payload(payload.into())
                    .message_id(event.event_id.to_string())
                    .header(HEADER_TX, event.cursor.tx_id.to_string().as_str())
                    .header(HEADER_POSITION, event.cursor.position.to_string().as_str());
                let ack = self
                    .js
                    .send_publish(self.subject(name), message)
                    .await
                    .with_context(|| format!("cannot publish event {} to NATS", event.event_id))?;
                acks.push(ack);
            }
            for (ack, event) in acks.into_iter().zip(chunk) {
                ack.await
                    .with_context(|| format!("JetStream did not acknowledge event {}", event.event_id))?;
            }
        }
        Ok(())
    }

    async fn last_published(&self) -> anyhow::Result<Option<Cursor>> {
        Ok(last_message(&self.js, &self.stream_name).await?.1)
    }

    fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.tx.subscribe()
    }

    fn name(&self) -> &'static str {
        "nats"
    }
}

/// `<prefix>.<event name>`, each dot-separated token of the name keeping
/// ASCII letters, digits, `-` and `_`, any other character (space, `*`, `>`,
/// `$`, non-ASCII...) becoming `_`, and an empty token becoming `_`. So
/// `prefect.flow-run.Running` goes to `prefect.events.prefect.flow-run.Running`
/// and subscribers can filter with `prefect.events.prefect.flow-run.>`.
pub fn subject_for(prefix: &str, event_name: &str) -> String {
    let mut subject = String::with_capacity(prefix.len() + 1 + event_name.len());
    subject.push_str(prefix);
    for token in event_name.split('.') {
        subject.push('.');
        if token.is_empty() {
            subject.push('_');
            continue;
        }
        subject.extend(token.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        }));
    }
    subject
}

fn validate_prefix(prefix: &str) -> anyhow::Result<()> {
    let ok = !prefix.is_empty()
        && prefix
            .split('.')
            .all(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_graphic() && c != '*' && c != '>'));
    if ok {
        Ok(())
    } else {
        Err(anyhow!(
            "NATS subject prefix {prefix:?} is not a valid subject (dot-separated tokens, no spaces, `*` or `>`)"
        ))
    }
}

/// Connects, retrying with a short backoff until [`CONNECT_TIMEOUT`]. Once
/// connected, the client reconnects by itself for as long as the process runs.
///
/// The returned watch counts reconnections (a `Connected` after a
/// `Disconnected`), so the live consumer can be recreated at once instead of
/// waiting for missed heartbeats.
async fn connect_client(url: &str) -> anyhow::Result<(async_nats::Client, watch::Receiver<u64>)> {
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let mut delay = Duration::from_millis(100);
    let (reconnects_tx, reconnects) = watch::channel(0u64);
    let reconnects_tx = Arc::new(reconnects_tx);
    let was_disconnected = Arc::new(AtomicBool::new(false));
    loop {
        let (reconnects_tx, was_disconnected) = (reconnects_tx.clone(), was_disconnected.clone());
        let options = async_nats::ConnectOptions::new()
            .name("prefect-server")
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(|attempts| backoff(u32::try_from(attempts).unwrap_or(u32::MAX)))
            .event_callback(move |event| {
                match event {
                    async_nats::Event::Disconnected => was_disconnected.store(true, Ordering::SeqCst),
                    async_nats::Event::Connected if was_disconnected.swap(false, Ordering::SeqCst) => {
                        reconnects_tx.send_modify(|n| *n += 1);
                    }
                    _ => {}
                }
                std::future::ready(())
            });
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let err = match tokio::time::timeout(remaining, options.connect(url)).await {
            Ok(Ok(client)) => return Ok((client, reconnects)),
            Ok(Err(e)) => anyhow::Error::new(e),
            Err(_) => anyhow!("no answer"),
        };
        if tokio::time::Instant::now() + delay >= deadline {
            return Err(err.context(format!(
                "cannot connect to NATS at {url} (gave up after {}s; is nats-server running with JetStream, -js?)",
                CONNECT_TIMEOUT.as_secs()
            )));
        }
        tracing::debug!(url, error = %err, "NATS not reachable yet, retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

/// The stream's last sequence number and the cursor of its last message
/// (`None` when the stream holds no message).
async fn last_message(js: &jetstream::Context, stream_name: &str) -> anyhow::Result<(u64, Option<Cursor>)> {
    let stream = js
        .get_stream(stream_name)
        .await
        .with_context(|| format!("cannot read JetStream stream {stream_name:?}"))?;
    let state = &stream.cached_info().state;
    let last_seq = state.last_sequence;
    if state.messages == 0 {
        return Ok((last_seq, None));
    }
    Ok((last_seq, Some(cursor_at(&stream, stream_name, last_seq).await?)))
}

/// The cursor in the headers of message `seq`.
async fn cursor_at(stream: &jetstream::stream::Stream, stream_name: &str, seq: u64) -> anyhow::Result<Cursor> {
    let message = stream
        .get_raw_message(seq)
        .await
        .with_context(|| format!("cannot read message {seq} of JetStream stream {stream_name:?}"))?;
    cursor_from(Some(&message.headers)).with_context(|| {
        format!(
            "message {seq} of JetStream stream {stream_name:?} (subject {})",
            message.subject
        )
    })
}

fn header<'a>(headers: Option<&'a HeaderMap>, name: &str) -> anyhow::Result<&'a str> {
    headers
        .and_then(|h| h.get(name))
        .map(|v| v.as_str())
        .ok_or_else(|| anyhow!("no {name} header"))
}

fn cursor_from(headers: Option<&HeaderMap>) -> anyhow::Result<Cursor> {
    let parse = |name| -> anyhow::Result<i64> {
        let raw = header(headers, name)?;
        raw.trim()
            .parse()
            .map_err(|_| anyhow!("{name} header {raw:?} is not an integer"))
    };
    Ok(Cursor {
        tx_id: parse(HEADER_TX)?,
        position: parse(HEADER_POSITION)?,
    })
}

fn decode(message: &async_nats::Message) -> anyhow::Result<LiveEvent> {
    let headers = message.headers.as_ref();
    let cursor = cursor_from(headers)?;
    let raw_id = header(headers, HEADER_MSG_ID)?;
    let event_id = Uuid::parse_str(raw_id).map_err(|_| anyhow!("{HEADER_MSG_ID} {raw_id:?} is not a UUID"))?;
    let event: Value = serde_json::from_slice(&message.payload).context("payload is not JSON")?;
    Ok(LiveEvent {
        cursor,
        event_id,
        event: event.into(),
    })
}

type Messages = consumer::pull::Stream;

/// Creates an ephemeral pull consumer delivering from `start_seq` on, without
/// acks (ordering is checked by the caller with the consumer sequence).
async fn open_consumer(js: &jetstream::Context, stream_name: &str, start_seq: u64) -> anyhow::Result<Messages> {
    let config = consumer::pull::Config {
        deliver_policy: consumer::DeliverPolicy::ByStartSequence {
            start_sequence: start_seq,
        },
        ack_policy: consumer::AckPolicy::None,
        replay_policy: consumer::ReplayPolicy::Instant,
        max_deliver: 1,
        inactive_threshold: Duration::from_secs(30),
        memory_storage: true,
        num_replicas: 1,
        ..Default::default()
    };
    let consumer = js.create_consumer_on_stream(config, stream_name).await?;
    let messages = consumer
        .stream()
        .max_messages_per_batch(500)
        .expires(Duration::from_secs(30))
        .heartbeat(HEARTBEAT)
        .messages()
        .await?;
    Ok(messages)
}

/// 100 ms doubling up to 2 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(5)).min(2_000))
}

/// The per-process task: stream messages → local broadcast channel.
async fn forward(
    js: jetstream::Context,
    stream_name: String,
    tx: broadcast::Sender<LiveEvent>,
    mut reconnects: watch::Receiver<u64>,
    first: Messages,
    mut next_seq: u64,
    mut last_forwarded: Option<Cursor>,
) {
    let mut current = Some(first);
    // Consecutive failures without a message in between, for the backoff.
    let mut failures: u32 = 0;
    loop {
        let mut messages = match current.take() {
            Some(m) => m,
            None => {
                if failures > 0 {
                    tokio::time::sleep(backoff(failures)).await;
                }
                // The stream may have been deleted and recreated (its
                // sequences restart): follow its new end.
                if let Ok((last_seq, _)) = last_message(&js, &stream_name).await {
                    if last_seq + 1 < next_seq {
                        tracing::warn!(
                            stream = stream_name,
                            last_seq,
                            next_seq,
                            "stream is behind the consumer; following its end"
                        );
                        next_seq = last_seq + 1;
                    }
                }
                match open_consumer(&js, &stream_name, next_seq).await {
                    Ok(m) => {
                        tracing::info!(
                            stream = stream_name,
                            from_sequence = next_seq,
                            "NATS live consumer resumed"
                        );
                        m
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(stream = stream_name, error = %e, "cannot recreate NATS live consumer; retrying");
                        continue;
                    }
                }
            }
        };
        failures = failures.saturating_add(1);
        let mut expected = 1u64;
        loop {
            let item = tokio::select! {
                item = messages.next() => item,
                changed = reconnects.changed() => {
                    if changed.is_err() {
                        return; // the client is gone
                    }
                    // The server may have restarted and lost the consumer.
                    tracing::info!(stream = stream_name, "NATS reconnected; recreating the live consumer");
                    failures = 0;
                    break;
                }
            };
            let message = match item {
                None => break,
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    tracing::warn!(stream = stream_name, error = %e, "NATS live consumer interrupted; recreating it");
                    break;
                }
            };
            let Ok(info) = message.info() else {
                tracing::warn!(stream = stream_name, subject = %message.subject, "message without JetStream info; recreating consumer");
                break;
            };
            if info.consumer_sequence != expected {
                tracing::debug!(
                    stream = stream_name,
                    expected,
                    got = info.consumer_sequence,
                    "consumer sequence gap; recreating consumer"
                );
                break;
            }
            failures = 0;
            expected += 1;
            next_seq = info.stream_sequence + 1;
            match decode(&message) {
                Ok(event) => {
                    if last_forwarded.is_some_and(|last| event.cursor <= last) {
                        continue;
                    }
                    last_forwarded = Some(event.cursor);
                    // No local subscriber is not an error.
                    let _ = tx.send(event);
                }
                Err(e) => {
                    tracing::warn!(stream = stream_name, subject = %message.subject, error = %e, "skipping a message that is not a prefect-server event");
                }
            }
        }
        // Dropping `messages` stops its pull task; the server removes the
        // ephemeral consumer after its inactivity threshold.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_keep_dots_and_dashes_and_replace_the_rest() {
        assert_eq!(
            subject_for("prefect.events", "prefect.flow-run.Running"),
            "prefect.events.prefect.flow-run.Running"
        );
        assert_eq!(subject_for("p", "my event*>.x"), "p.my_event__.x");
        assert_eq!(subject_for("p", ".a..b."), "p._.a._.b._");
        assert_eq!(subject_for("p", ""), "p._");
        assert_eq!(subject_for("p", "café.$sys\tx"), "p.caf_._sys_x");
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(validate_prefix("prefect.events").is_ok());
        for bad in ["", "a..b", "a.*", "a.>", "a b", ".a"] {
            assert!(validate_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
