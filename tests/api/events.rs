//! The events feed: the projector stores the server's and the clients'
//! events; /events/filter, paging and count-by read them; /events/out
//! backfills then streams live, without duplicates at the seam.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::both_backends;
use crate::helpers::TestApp;

async fn page_for(app: &TestApp, rid: &str) -> Value {
    app.post("/events/filter", json!({"filter": {"resource": {"id": [rid]}, "order": "ASC"}, "limit": 50})).await.1
}

async fn emit(app: &TestApp, rid: &str, name: &str, n: usize) -> Vec<String> {
    let now = chrono::Utc::now();
    let events: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "occurred": (now + chrono::Duration::milliseconds(i as i64)).to_rfc3339(),
                "event": name,
                "resource": {"prefect.resource.id": rid},
                "related": [{"prefect.resource.id": "prefect.tag.t1", "prefect.resource.role": "tag"}],
                "payload": {"i": i},
                "id": uuid::Uuid::now_v7(),
            })
        })
        .collect();
    let ids = events.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    let (status, body) = app.post("/events", Value::Array(events)).await;
    assert_eq!(status, 204, "{body}");
    ids
}

both_backends!(flow_run_transitions_reach_the_feed, |app: TestApp| async move {
    let flow_id = app.create_flow("fed").await;
    let run = app.create_flow_run(&flow_id).await;
    let id = run["id"].as_str().unwrap().to_owned();
    app.set_state(&id, "RUNNING", false).await;
    app.set_state(&id, "COMPLETED", false).await;
    let rid = format!("prefect.flow-run.{id}");
    let page = app
        .wait_for("three flow-run events", || async {
            let page = page_for(&app, &rid).await;
            (page["total"] == 3).then_some(page)
        })
        .await;
    let names: Vec<&str> = page["events"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names, ["prefect.flow-run.Pending", "prefect.flow-run.Running", "prefect.flow-run.Completed"]);
    let completed = &page["events"][2];
    assert_eq!(completed["resource"]["prefect.state-type"], "COMPLETED");
    assert_eq!(completed["payload"]["intended"], json!({"from": "RUNNING", "to": "COMPLETED"}));
    assert_eq!(completed["related"][0]["prefect.resource.role"], "flow");
    assert_eq!(completed["follows"], page["events"][1]["id"]);
});

both_backends!(filter_pages_and_counts_client_events, |app: TestApp| async move {
    let rid = format!("test.thing.{}", uuid::Uuid::new_v4());
    let ids = emit(&app, &rid, "test.happened", 55).await;
    // Resending is harmless.
    let (status, _) = app
        .post("/events", json!([{"occurred": chrono::Utc::now().to_rfc3339(), "event": "test.happened", "resource": {"prefect.resource.id": rid}, "id": ids[0]}]))
        .await;
    assert_eq!(status, 204);
    let page = app
        .wait_for("55 events", || async {
            let page = page_for(&app, &rid).await;
            (page["total"] == 55).then_some(page)
        })
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 50);
    let next = page["next_page"].as_str().expect("a next page").to_owned();
    let second: Value = app.client.get(&next).send().await.unwrap().json().await.unwrap();
    assert_eq!(second["events"].as_array().unwrap().len(), 5);
    assert!(second["next_page"].is_null());
    let mut seen: Vec<String> = page["events"].as_array().unwrap().iter().chain(second["events"].as_array().unwrap()).map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    seen.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(seen, want);

    let (status, counts) = app.post("/events/count-by/event", json!({"filter": {"resource": {"id": [rid]}}})).await;
    assert_eq!(status, 200, "{counts}");
    assert_eq!(counts[0]["value"], "test.happened");
    assert_eq!(counts[0]["count"], 55);
    let (status, _) = app.post("/events/filter", json!({"limit": 51})).await;
    assert_eq!(status, 422);
    let resp = app.client.get(app.url("/events/filter/next?page-token=garbage")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
});

both_backends!(events_out_backfills_then_streams_without_duplicates, |app: TestApp| async move {
    let rid = format!("test.streamed.{}", uuid::Uuid::new_v4());
    let before = emit(&app, &rid, "test.streamed", 3).await;
    app.wait_for("backfill candidates stored", || async { (page_for(&app, &rid).await["total"] == 3).then_some(()) }).await;

    let mut ws = app.prefect_socket("/events/out").await;
    let filter = json!({"type": "filter", "filter": {"resource": {"id": [rid]}, "order": "DESC"}});
    ws.send(Message::text(filter.to_string())).await.unwrap();

    let mut got = Vec::new();
    let mut after = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while got.len() < 6 {
        let msg = tokio::time::timeout_at(deadline, ws.next()).await.expect("events in time").unwrap().unwrap();
        let v: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        assert_eq!(v["type"], "event");
        got.push(v["event"]["id"].as_str().unwrap().to_owned());
        if got.len() == 3 {
            after = emit(&app, &rid, "test.streamed", 3).await;
        }
    }
    // Backfill in ascending order first, then the live ones, each once.
    assert_eq!(&got[..3], &before[..]);
    assert_eq!(&got[3..], &after[..]);
});

both_backends!(logs_out_streams_matching_logs_from_connection_on, |app: TestApp| async move {
    let flow_id = app.create_flow("logs-out").await;
    let run = app.create_flow_run(&flow_id).await;
    let run_id = run["id"].as_str().unwrap().to_owned();
    let log = |msg: &str, level: i64| json!({"name": "n", "level": level, "message": msg, "timestamp": "2026-01-01T00:00:00Z", "flow_run_id": run_id});
    // Written before the socket: not streamed (no backfill, as Prefect).
    assert_eq!(app.post("/logs/", json!([log("before", 20)])).await.0, 201);

    let mut ws = app.prefect_socket("/logs/out").await;
    let filter = json!({"type": "filter", "filter": {"flow_run_id": {"any_": [run_id]}, "level": {"ge_": 20}}});
    ws.send(Message::text(filter.to_string())).await.unwrap();
    // The socket follows the log once one of these pings comes through.
    for _ in 0..500 {
        assert_eq!(app.post("/logs/", json!([log("ping", 20)])).await.0, 201);
        if tokio::time::timeout(std::time::Duration::from_millis(100), ws.next()).await.is_ok() {
            break;
        }
    }
    assert_eq!(app.post("/logs/", json!([log("quiet", 10), log("one", 20)])).await.0, 201);
    assert_eq!(app.post("/logs/", json!([{"name": "n", "level": 40, "message": "other run", "timestamp": "2026-01-01T00:00:00Z"}, log("two", 30)])).await.0, 201);
    let mut got = Vec::new();
    while got.len() < 2 {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(20), ws.next()).await.expect("logs in time").unwrap().unwrap();
        let v: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        assert_eq!(v["type"], "log");
        let keys: Vec<&str> = v["log"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["id", "created", "updated", "name", "level", "message", "timestamp", "flow_run_id", "task_run_id"]);
        let message = v["log"]["message"].as_str().unwrap().to_owned();
        if message != "ping" {
            got.push(message);
        }
    }
    assert_eq!(got, ["one", "two"]);

    // Anything but a filter first is a protocol error.
    let mut bad = app.prefect_socket("/logs/out").await;
    bad.send(Message::text(r#"{"type":"nope"}"#)).await.unwrap();
    let Some(Ok(Message::Close(Some(frame)))) = bad.next().await else { panic!("expected a close frame") };
    assert_eq!((u16::from(frame.code), frame.reason.as_str()), (1002, "Expected 'filter' message"));
});
