//! `/work_pools/{name}/workers/connect`: setup, heartbeats, pushed
//! snapshots, refusals, and replay of what the channel wrote.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::both_backends;
use crate::helpers::{diff_report, Socket, TestApp};

async fn connect(app: &TestApp, pool: &str) -> Socket {
    app.prefect_socket(&format!("/work_pools/{pool}/workers/connect")).await
}

fn frame(kind: &str, payload: Value) -> Message {
    Message::text(json!({"type": kind, "id": Uuid::now_v7(), "sent_at": "2026-11-23T20:00:00.000000Z", "payload": payload}).to_string())
}

fn hello(consumer: Uuid, extra: Value) -> Message {
    let mut payload = json!({
        "consumer_id": consumer,
        "worker_name": "w1",
        "worker_type": "process",
        "heartbeat_interval_seconds": 15,
        "supported_channel_versions": ["work_pool_worker_channel.v1"],
        "requested_capabilities": ["worker_heartbeat.v1", "work_pool_snapshot.v1"],
    });
    payload.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    frame("worker.hello.v1", payload)
}

async fn next_json(ws: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(20), ws.next()).await.expect("a frame in time").unwrap().unwrap();
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
        assert!(!msg.is_close(), "closed: {msg:?}");
    }
}

/// Reads until the server's close frame; returns its code and reason.
async fn close_of(ws: &mut Socket) -> (u16, String) {
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(20), ws.next()).await.expect("a close in time");
        match msg {
            Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), f.reason.to_string()),
            Some(Ok(_)) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    }
}

async fn patch(app: &TestApp, path: &str, body: Value) -> u16 {
    app.client.patch(app.url(path)).json(&body).send().await.unwrap().status().as_u16()
}

both_backends!(a_connected_worker_heartbeats_and_gets_pool_snapshots, |app: TestApp| async move {
    let (status, _) = app.post("/work_pools/", json!({"name": "wc", "type": "process"})).await;
    assert_eq!(status, 201);
    let consumer = Uuid::now_v7();
    let mut ws = connect(&app, "wc").await;
    let template = json!({"job_configuration": {"command": "{{ command }}"}, "variables": {"properties": {"command": {"type": "string"}}}});
    ws.send(hello(consumer, json!({
        "work_queue_names": ["default"],
        "requested_capabilities": ["worker_heartbeat.v1", "work_pool_snapshot.v1", "cleanup_delivery.v1"],
        "handled_cleanup_kinds": ["cancelling_timeout_teardown.v1"],
        "default_base_job_template": template,
    }))).await.unwrap();

    let ready = next_json(&mut ws).await;
    assert_eq!(ready["type"], "worker.ready.v1");
    let p = &ready["payload"];
    assert_eq!(p["consumer_id"], json!(consumer));
    assert_eq!(p["accepted_capabilities"], json!(["worker_heartbeat.v1", "work_pool_snapshot.v1"]));
    assert_eq!(p["rejected_capabilities"], json!(["cleanup_delivery.v1"]));
    assert_eq!(p["effective_max_cleanup_concurrency"], 0);
    assert_eq!(p["effective_heartbeat_interval_seconds"], 15);
    assert_eq!(p["resolved_work_queues"][0]["name"], "default");
    assert_eq!((p["initial_snapshot"]["snapshot_sequence"].clone(), p["initial_snapshot"]["reason"].clone()), (json!(1), json!("initial")));
    // The snapshot is the pool as REST returns it: the worker's default
    // template filled the empty one, and the hello's heartbeat made it READY.
    let (_, pool) = app.get("/work_pools/wc").await;
    assert_eq!(p["initial_snapshot"]["work_pool"], pool);
    assert_eq!(pool["base_job_template"], template);
    assert_eq!(pool["status"], "READY");
    // Filling the template was a pool update: as in Prefect, it is pushed
    // as the next snapshot.
    let snapshot = next_json(&mut ws).await;
    assert_eq!((snapshot["type"].clone(), snapshot["payload"]["snapshot_sequence"].clone(), snapshot["payload"]["reason"].clone()), (json!("work_pool.snapshot.v1"), json!(2), json!("work_pool_updated")));
    assert_eq!(snapshot["payload"]["work_pool"]["base_job_template"], template);
    let (_, workers) = app.post("/work_pools/wc/workers/filter", json!({})).await;
    assert_eq!((workers[0]["name"].clone(), workers[0]["status"].clone(), workers[0]["heartbeat_interval_seconds"].clone()), (json!("w1"), json!("ONLINE"), json!(15)));

    // A heartbeat moves the worker's time.
    let before = workers[0]["last_heartbeat_time"].as_str().unwrap().to_owned();
    ws.send(frame("worker.heartbeat.v1", json!({"consumer_id": consumer, "worker_name": "w1", "heartbeat_interval_seconds": 15}))).await.unwrap();
    app.wait_for("the heartbeat to be recorded", || async {
        let (_, workers) = app.post("/work_pools/wc/workers/filter", json!({})).await;
        (workers[0]["last_heartbeat_time"].as_str().unwrap() > before.as_str()).then_some(())
    })
    .await;

    // Cleanup operations are refused: cleanup delivery was not accepted.
    let message_id = Uuid::now_v7();
    ws.send(frame("cleanup.ack.v1", json!({"message_id": message_id, "reservation_token": "t"}))).await.unwrap();
    let result = next_json(&mut ws).await;
    assert_eq!(result["type"], "cleanup.operation_result.v1");
    assert_eq!((result["payload"]["status"].clone(), result["payload"]["reason"].clone()), (json!("unauthorized"), json!("cleanup_delivery_not_accepted")));
    assert_eq!(result["payload"]["message_id"], json!(message_id));

    // An unwatched change is not pushed by itself; the next heartbeat finds
    // the pool moved and sends it ("heartbeat_reconciliation").
    assert_eq!(patch(&app, "/work_pools/wc", json!({"description": "seen at the next heartbeat"})).await, 204);
    ws.send(frame("worker.heartbeat.v1", json!({"consumer_id": consumer, "worker_name": "w1", "heartbeat_interval_seconds": 15}))).await.unwrap();
    let snapshot = next_json(&mut ws).await;
    assert_eq!(snapshot["type"], "work_pool.snapshot.v1");
    assert_eq!((snapshot["payload"]["snapshot_sequence"].clone(), snapshot["payload"]["reason"].clone()), (json!(3), json!("heartbeat_reconciliation")));
    assert_eq!(snapshot["payload"]["work_pool"]["description"], "seen at the next heartbeat");

    // A watched change is pushed as it happens.
    assert_eq!(patch(&app, "/work_pools/wc", json!({"concurrency_limit": 3})).await, 204);
    let snapshot = next_json(&mut ws).await;
    assert_eq!((snapshot["payload"]["snapshot_sequence"].clone(), snapshot["payload"]["reason"].clone()), (json!(4), json!("work_pool_updated")));
    assert_eq!(snapshot["payload"]["work_pool"]["concurrency_limit"], 3);
    assert_eq!(snapshot["payload"]["work_pool"]["active_slots"], 0);

    // Everything the channel wrote is in the log.
    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", diff_report(&report));

    // Deleting the pool ends the connection.
    let resp = app.client.delete(app.url("/work_pools/wc")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(close_of(&mut ws).await, (1008, "authorization_failed".to_owned()));
});

both_backends!(the_channel_creates_pools_and_refuses_bad_frames, |app: TestApp| async move {
    // Without create_pool_if_not_found a missing pool is refused ...
    let mut ws = connect(&app, "made-by-channel").await;
    ws.send(hello(Uuid::now_v7(), json!({}))).await.unwrap();
    assert_eq!(close_of(&mut ws).await, (1008, "authorization_failed".to_owned()));
    let (status, _) = app.get("/work_pools/made-by-channel").await;
    assert_eq!(status, 404);

    // ... with it, the pool is created with the worker's type.
    let consumer = Uuid::now_v7();
    let mut ws = connect(&app, "made-by-channel").await;
    ws.send(hello(consumer, json!({"create_pool_if_not_found": true}))).await.unwrap();
    let ready = next_json(&mut ws).await;
    assert_eq!(ready["payload"]["initial_snapshot"]["work_pool"]["type"], "process");
    let (status, pool) = app.get("/work_pools/made-by-channel").await;
    assert_eq!((status, pool["type"].clone()), (200, json!("process")));

    // A heartbeat naming another consumer is a protocol error.
    ws.send(frame("worker.heartbeat.v1", json!({"consumer_id": Uuid::now_v7(), "worker_name": "w1", "heartbeat_interval_seconds": 15}))).await.unwrap();
    assert_eq!(close_of(&mut ws).await, (1002, "protocol_error".to_owned()));

    // Text that is not JSON during setup, too.
    let mut ws = connect(&app, "made-by-channel").await;
    ws.send(Message::text("{not json")).await.unwrap();
    assert_eq!(close_of(&mut ws).await, (1002, "protocol_error".to_owned()));

    // Without the `prefect` subprotocol the upgrade is refused.
    let url = app.url("/work_pools/made-by-channel/workers/connect").replacen("http://", "ws://", 1);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 403),
        other => panic!("expected a 403, got {other:?}"),
    }
});
