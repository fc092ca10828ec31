//! The brokers: in-process, and NATS JetStream against the real nats-server on
//! 127.0.0.1:4222 (override with `PREFECT_TEST_NATS_URL`). Each NATS test uses
//! its own stream and subject prefix and deletes the stream at the end; the
//! restart test runs its own nats-server on a free loopback port.

mod support;
use support::nats::{free_port, OwnNats};

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use prefect_server::broker::{Broker, LiveEvent, MemoryBroker, NatsBroker};
use prefect_server::eventlog::Cursor;
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

fn nats_url() -> String {
    std::env::var("PREFECT_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn event(position: i64, name: &str) -> LiveEvent {
    let id = Uuid::new_v4();
    LiveEvent {
        cursor: Cursor { tx_id: 7, position },
        event_id: id,
        event: Arc::new(json!({
            "id": id,
            "event": name,
            "occurred": "2026-01-01T00:00:00Z",
            "resource": {"prefect.resource.id": format!("prefect.flow-run.{id}")},
            "related": [],
            "payload": {"position": position},
        })),
    }
}

fn events(positions: std::ops::RangeInclusive<i64>) -> Vec<LiveEvent> {
    positions.map(|p| event(p, "prefect.flow-run.Running")).collect()
}

async fn recv(rx: &mut broadcast::Receiver<LiveEvent>) -> LiveEvent {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no event within the timeout")
        .expect("receiver closed or lagged")
}

async fn recv_n(rx: &mut broadcast::Receiver<LiveEvent>, n: usize) -> Vec<LiveEvent> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        got.push(recv(rx).await);
    }
    got
}

fn assert_same(got: &[LiveEvent], want: &[LiveEvent]) {
    let ids = |v: &[LiveEvent]| v.iter().map(|e| (e.event_id, e.cursor)).collect::<Vec<_>>();
    assert_eq!(ids(got), ids(want));
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.event, w.event);
    }
}

/// A unique stream and subject prefix for one test.
struct Names {
    stream: String,
    prefix: String,
}

/// Runs `body` with fresh names, then deletes the stream, even if `body` panicked.
async fn with_stream<F, Fut>(body: F)
where
    F: FnOnce(Names) -> Fut,
    Fut: Future<Output = ()>,
{
    let id = Uuid::new_v4().simple().to_string();
    let stream = format!("TEST_BROKER_{id}");
    let names = Names {
        stream: stream.clone(),
        prefix: format!("test.{id}.events"),
    };
    let outcome = AssertUnwindSafe(body(names)).catch_unwind().await;
    let client = async_nats::connect(nats_url())
        .await
        .expect("connect to NATS for cleanup");
    let _ = async_nats::jetstream::new(client).delete_stream(&stream).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn connect(names: &Names) -> NatsBroker {
    NatsBroker::connect_with_prefix(&nats_url(), &names.stream, &names.prefix)
        .await
        .expect("connect to NATS")
}

async fn stream_messages(broker: &NatsBroker) -> u64 {
    let stream = broker.jetstream().get_stream(broker.stream_name()).await.unwrap();
    stream.cached_info().state.messages
}

// ---------------------------------------------------------------- memory --

#[tokio::test]
async fn memory_broker_fans_out_in_order() {
    let broker = MemoryBroker::new();
    assert_eq!(broker.name(), "memory");
    assert_eq!(broker.last_published().await.unwrap(), None);
    // Publishing with nobody listening is fine.
    broker.publish(&events(1..=2)).await.unwrap();

    let (mut a, mut b) = (broker.subscribe(), broker.subscribe());
    let batch = events(3..=12);
    broker.publish(&batch).await.unwrap();
    assert_same(&recv_n(&mut a, 10).await, &batch);
    assert_same(&recv_n(&mut b, 10).await, &batch);
    assert_eq!(
        broker.last_published().await.unwrap(),
        Some(Cursor { tx_id: 7, position: 12 })
    );

    // A retried batch is not delivered twice.
    broker.publish(&batch).await.unwrap();
    let next = events(13..=13);
    broker.publish(&next).await.unwrap();
    assert_same(&recv_n(&mut a, 1).await, &next);
}

#[tokio::test]
async fn memory_broker_subscriber_that_falls_behind_lags() {
    let broker = MemoryBroker::new();
    let mut rx = broker.subscribe();
    let n = prefect_server::broker::memory::CHANNEL_CAPACITY as i64 + 10;
    broker.publish(&events(1..=n)).await.unwrap();
    assert!(matches!(rx.recv().await, Err(RecvError::Lagged(10))));
    assert_eq!(rx.recv().await.unwrap().cursor.position, 11);
}

// ------------------------------------------------------------------ nats --

#[tokio::test]
async fn nats_every_process_receives_every_event_in_order() {
    with_stream(|names| async move {
        let one = connect(&names).await;
        assert_eq!(one.name(), "nats");
        let mut rx_one = one.subscribe();

        // Published before the second process started: not live for it.
        let early = events(1..=1);
        one.publish(&early).await.unwrap();
        assert_same(&recv_n(&mut rx_one, 1).await, &early);

        let two = connect(&names).await;
        let mut rx_two = two.subscribe();
        let mut rx_two_b = two.subscribe();

        let mut batch = events(2..=300);
        batch.push(event(301, "my custom event with spaces*>"));
        batch.push(event(302, ".weird..name."));
        one.publish(&batch).await.unwrap();

        assert_same(&recv_n(&mut rx_one, batch.len()).await, &batch);
        assert_same(&recv_n(&mut rx_two, batch.len()).await, &batch);
        assert_same(&recv_n(&mut rx_two_b, batch.len()).await, &batch);

        // The second process publishes too; both see it.
        let more = events(303..=305);
        two.publish(&more).await.unwrap();
        assert_same(&recv_n(&mut rx_one, 3).await, &more);
        assert_same(&recv_n(&mut rx_two, 3).await, &more);

        // Subjects follow the scheme.
        let stream = one.jetstream().get_stream(&names.stream).await.unwrap();
        let msg = stream.get_raw_message(2).await.unwrap();
        assert_eq!(
            msg.subject.as_str(),
            format!("{}.prefect.flow-run.Running", names.prefix)
        );
        let msg = stream.get_raw_message(301).await.unwrap();
        assert_eq!(
            msg.subject.as_str(),
            format!("{}.my_custom_event_with_spaces__", names.prefix)
        );
        assert_eq!(
            msg.headers.get("Nats-Msg-Id").unwrap().as_str(),
            batch[299].event_id.to_string()
        );
    })
    .await;
}

#[tokio::test]
async fn nats_publishing_a_batch_twice_delivers_it_once() {
    with_stream(|names| async move {
        let broker = connect(&names).await;
        let other = connect(&names).await;
        let (mut rx, mut rx_other) = (broker.subscribe(), other.subscribe());

        let batch = events(1..=50);
        broker.publish(&batch).await.unwrap();
        broker.publish(&batch).await.unwrap(); // the relay retrying
        assert_eq!(
            stream_messages(&broker).await,
            50,
            "JetStream dropped the repeats by Nats-Msg-Id"
        );

        // An old event republished under a new id (after the dedup window)
        // reaches the stream but not the subscribers: its cursor is behind.
        let mut stale = event(10, "prefect.flow-run.Running");
        stale.event_id = Uuid::new_v4();
        broker.publish(&[stale]).await.unwrap();
        assert_eq!(stream_messages(&broker).await, 51);

        let next = events(51..=51);
        broker.publish(&next).await.unwrap();
        let mut want = batch.clone();
        want.extend(next);
        assert_same(&recv_n(&mut rx, 51).await, &want);
        assert_same(&recv_n(&mut rx_other, 51).await, &want);
        assert!(rx.try_recv().is_err(), "nothing after the last event");
    })
    .await;
}

#[tokio::test]
async fn nats_last_published_is_the_cursor_of_the_last_message() {
    with_stream(|names| async move {
        let broker = connect(&names).await;
        assert_eq!(broker.last_published().await.unwrap(), None);
        let mut batch = events(1..=5);
        batch[4].cursor = Cursor {
            tx_id: 1234567890123,
            position: 99,
        };
        broker.publish(&batch).await.unwrap();
        let want = Some(Cursor {
            tx_id: 1234567890123,
            position: 99,
        });
        assert_eq!(broker.last_published().await.unwrap(), want);

        // A new process (a restarted relay) reads the same.
        drop(broker);
        let again = connect(&names).await;
        assert_eq!(again.last_published().await.unwrap(), want);
    })
    .await;
}

#[tokio::test]
async fn nats_connect_fails_fast_when_nats_is_unreachable() {
    let port = free_port();
    let started = std::time::Instant::now();
    let err = NatsBroker::connect(&format!("nats://127.0.0.1:{port}"), "UNUSED")
        .await
        .err()
        .expect("connect must fail");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let msg = format!("{err:#}");
    assert!(msg.contains("cannot connect to NATS at nats://127.0.0.1:"), "{msg}");
}

#[tokio::test]
async fn nats_a_bad_stream_config_is_a_clear_error() {
    with_stream(|names| async move {
        let _first = connect(&names).await;
        // Same stream name, another prefix: the stream does not cover it.
        let err = NatsBroker::connect_with_prefix(&nats_url(), &names.stream, "other.prefix")
            .await
            .err()
            .expect("must refuse");
        assert!(format!("{err:#}").contains("exists with subjects"), "{err:#}");
    })
    .await;
}

#[tokio::test]
async fn nats_foreign_messages_are_skipped() {
    with_stream(|names| async move {
        let one = connect(&names).await;
        let mut rx = one.subscribe();
        // Someone publishes by hand on our subjects: no cursor headers.
        let ack = one
            .jetstream()
            .publish(format!("{}.hand.made", names.prefix), "hello".into())
            .await
            .unwrap();
        ack.await.unwrap();
        assert!(one.last_published().await.is_err(), "the last message has no cursor");

        // A process starting now is not stopped by it.
        let two = connect(&names).await;
        let mut rx_two = two.subscribe();
        let batch = events(1..=3);
        one.publish(&batch).await.unwrap();
        assert_same(&recv_n(&mut rx, 3).await, &batch);
        assert_same(&recv_n(&mut rx_two, 3).await, &batch);
        assert_eq!(one.last_published().await.unwrap(), Some(batch[2].cursor));
    })
    .await;
}

// --------------------------------------------------- nats server restart --

/// Retries `publish` until the broker holds the batch (the client is
/// reconnecting in the meantime).
async fn publish_eventually(broker: &NatsBroker, batch: &[LiveEvent]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match broker.publish(batch).await {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("publish not accepted yet: {e:#}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("publish never accepted: {e:#}"),
        }
    }
}

#[tokio::test]
async fn nats_subscribers_survive_a_nats_restart() {
    if !std::path::Path::new("/usr/sbin/nats-server").exists() {
        eprintln!("skipped: no /usr/sbin/nats-server");
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let store = std::env::temp_dir().join(format!("prefect-broker-test-{}", Uuid::new_v4().simple()));
    let mut nats = OwnNats::start(free_port(), &store);
    // `connect` retries for a few seconds while the server starts.
    let publisher = NatsBroker::connect(&nats.url(), "PREFECT_EVENTS")
        .await
        .expect("connect to own NATS");
    let subscriber = NatsBroker::connect(&nats.url(), "PREFECT_EVENTS").await.unwrap();
    let mut rx = subscriber.subscribe();

    let before = events(1..=3);
    publisher.publish(&before).await.unwrap();
    assert_same(&recv_n(&mut rx, 3).await, &before);

    nats.kill();
    assert!(publisher.publish(&events(4..=4)).await.is_err(), "NATS is down");
    nats.spawn();

    // The relay retries the batch that failed, then goes on.
    let after = events(4..=10);
    publish_eventually(&publisher, &after[..1]).await;
    publish_eventually(&publisher, &after[1..]).await;
    assert_same(&recv_n(&mut rx, after.len()).await, &after);
    assert_eq!(
        publisher.last_published().await.unwrap(),
        Some(after.last().unwrap().cursor)
    );
    assert!(rx.try_recv().is_err(), "no duplicates");
}
