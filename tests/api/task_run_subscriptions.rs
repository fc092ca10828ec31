//! `/task_runs/subscriptions/scheduled` and `/task_workers/filter`: deferred
//! task runs go to one subscribed task worker each, come back when a worker
//! leaves without acknowledging, and the deliveries replay.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::both_backends;
use crate::helpers::{diff_report, Socket, TestApp};

const PATH: &str = "/task_runs/subscriptions/scheduled";

async fn subscribe(app: &TestApp, keys: &[&str], client_id: &str) -> Socket {
    let mut ws = app.prefect_socket(PATH).await;
    ws.send(Message::text(json!({"type": "subscribe", "keys": keys, "client_id": client_id}).to_string())).await.unwrap();
    ws
}

/// Creates a task run in SCHEDULED, deferred (as `task.delay()` does) or not.
async fn scheduled_task_run(app: &TestApp, key: &str, deferred: bool) -> String {
    let body = json!({
        "name": format!("{key}-run"), "task_key": key, "dynamic_key": uuid::Uuid::new_v4().to_string(),
        "state": {"type": "SCHEDULED", "state_details": {"deferred": deferred}},
    });
    let (status, run) = app.post("/task_runs/", body).await;
    assert_eq!(status, 201, "{run}");
    run["id"].as_str().unwrap().to_owned()
}

/// The next text frame as JSON.
async fn next_run(ws: &mut Socket) -> Value {
    loop {
        match ws.next().await.expect("socket open").expect("frame") {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a task run, got {other:?}"),
        }
    }
}

async fn ack(ws: &mut Socket) {
    ws.send(Message::text(r#"{"type":"ack"}"#)).await.unwrap();
}

async fn close_reason(ws: &mut Socket) -> (CloseCode, String) {
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(Some(frame)))) => return (frame.code, frame.reason.to_string()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

both_backends!(a_subscription_that_breaks_the_protocol_is_closed_with_prefects_reasons, |app: TestApp| async move {
    for (message, reason) in [
        (json!({"type": "filter"}), "Protocol violation: expected 'subscribe' message"),
        (json!({"type": "subscribe", "keys": [], "client_id": "w"}), "Protocol violation: expected 'keys' in subscribe message"),
        (json!({"type": "subscribe", "keys": ["k"]}), "Protocol violation: expected 'client_id' in subscribe message"),
    ] {
        let mut ws = app.prefect_socket(PATH).await;
        ws.send(Message::text(message.to_string())).await.unwrap();
        assert_eq!(close_reason(&mut ws).await, (CloseCode::Library(4001), reason.to_owned()));
    }
});

/// `(client_id, released)` of each delivery recorded for `run`.
async fn deliveries(app: &TestApp, run: &str) -> Vec<(String, i64)> {
    let sql = app.db.q("SELECT client_id, CAST(released AS BIGINT) FROM task_run_delivery WHERE task_run_id = $1 ORDER BY created");
    sqlx::query_as(&sql).bind(run).fetch_all(app.db.reader()).await.unwrap()
}

/// Waits until the server has recorded the ack of `run`'s delivery (it
/// does so after reading the ack, not before the test goes on).
async fn acknowledged(app: &TestApp, run: &str) {
    let sql = app.db.q("SELECT CAST(COUNT(*) AS BIGINT) FROM task_run_delivery WHERE task_run_id = $1 AND acked = 1");
    app.wait_for("the ack recorded", || async {
        let (n,): (i64,) = sqlx::query_as(&sql).bind(run).fetch_one(app.db.reader()).await.unwrap();
        (n == 1).then_some(())
    })
    .await;
}

/// The next run on either socket, with the one that got it (0 or 1).
async fn next_run_on_either(first: &mut Socket, second: &mut Socket) -> (Value, usize) {
    let wait = async {
        tokio::select! {
            run = next_run(first) => (run, 0),
            run = next_run(second) => (run, 1),
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), wait).await.expect("a delivery")
}

both_backends!(a_deferred_run_goes_to_one_worker_and_non_deferred_runs_to_none, |app: TestApp| async move {
    // Given a scheduled run that is not deferred, then a deferred one
    let plain = scheduled_task_run(&app, "add-1", false).await;
    let deferred = scheduled_task_run(&app, "add-1", true).await;
    // When two workers subscribe to its key
    let mut a = subscribe(&app, &["add-1"], "worker-a").await;
    let mut b = subscribe(&app, &["add-1", "other"], "worker-b").await;
    // Then one of them gets the deferred run, in Prefect's TaskRun shape; the
    // older plain one is never offered
    let (run, _) = next_run_on_either(&mut a, &mut b).await;
    assert_eq!(run["id"], json!(deferred), "not {plain}");
    assert_eq!((run["state"]["type"].clone(), run["state"]["state_details"]["deferred"].clone()), (json!("SCHEDULED"), json!(true)));
    assert_eq!(run["task_key"], "add-1");
    // And it is claimed once, whichever socket took it
    assert_eq!(deliveries(&app, &deferred).await.len(), 1);
    assert!(deliveries(&app, &plain).await.is_empty());
    // And the workers are listed with their keys (a socket is listed once
    // its subscription is registered, which may follow the other's delivery)
    app.wait_for("both task workers listed", || async {
        let (_, all) = app.post("/task_workers/filter", Value::Null).await;
        (all.as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await;
    let (status, workers) = app.post("/task_workers/filter", json!({"task_worker_filter": {"task_keys": ["other"]}})).await;
    assert_eq!(status, 200);
    assert_eq!(workers.as_array().map(|w| w.iter().map(|w| w["identifier"].clone()).collect::<Vec<_>>()), Some(vec![json!("worker-b")]));
    assert_eq!(workers[0]["task_keys"], json!(["add-1", "other"]));
    let (_, all) = app.post("/task_workers/filter", Value::Null).await;
    assert_eq!(all.as_array().map(Vec::len), Some(2), "{all}");
});

both_backends!(a_run_left_unacknowledged_goes_to_the_next_worker_and_replays, |app: TestApp| async move {
    // Given a worker that receives a deferred run
    let run_id = scheduled_task_run(&app, "shout-1", true).await;
    let mut leaving = subscribe(&app, &["shout-1"], "worker-a").await;
    assert_eq!(next_run(&mut leaving).await["id"], json!(run_id));
    // When it goes away without acknowledging
    leaving.close(None).await.unwrap();
    drop(leaving);
    // Then the run is released and the next worker gets it
    let mut next = subscribe(&app, &["shout-1"], "worker-b").await;
    let run = tokio::time::timeout(std::time::Duration::from_secs(20), next_run(&mut next)).await.expect("redelivered");
    assert_eq!(run["id"], json!(run_id));
    ack(&mut next).await;
    assert_eq!(deliveries(&app, &run_id).await, vec![("worker-b".to_owned(), 0)]);
    acknowledged(&app, &run_id).await;
    // And an acknowledged run is not offered again: a second one comes next
    let second = scheduled_task_run(&app, "shout-1", true).await;
    let run = tokio::time::timeout(std::time::Duration::from_secs(20), next_run(&mut next)).await.expect("second run");
    assert_eq!(run["id"], json!(second));
    ack(&mut next).await;
    acknowledged(&app, &second).await;
    // And the deliveries are rebuilt from the log as they are
    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", diff_report(&report));
});
