//! `/artifacts`: artifacts and the latest artifact of each key, their feed
//! events, and their replay.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{diff_report, TestApp};

impl TestApp {
    async fn send_patch(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self.client.patch(self.url(path)).json(&body).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn delete_status(&self, path: &str) -> u16 {
        self.client.delete(self.url(path)).send().await.unwrap().status().as_u16()
    }
}

async fn create(app: &TestApp, body: Value) -> Value {
    let (status, artifact) = app.post("/artifacts/", body).await;
    assert_eq!(status, 201, "{artifact}");
    artifact
}

async fn latest(app: &TestApp, key: &str) -> Vec<Value> {
    let (status, found) = app.post("/artifacts/latest/filter", json!({"artifacts": {"key": {"any_": [key]}}})).await;
    assert_eq!(status, 200, "{found}");
    found.as_array().cloned().unwrap_or_default()
}

both_backends!(a_keys_latest_artifact_follows_creates_updates_and_deletes, |app: TestApp| async move {
    // Given two artifacts of one key
    let first = create(&app, json!({"key": "report", "type": "markdown", "data": "one", "description": "v1"})).await;
    let second = create(&app, json!({"key": "report", "type": "markdown", "data": "two"})).await;
    // Then the key's latest is the second, in Prefect's shapes
    let found = latest(&app, "report").await;
    assert_eq!(found.len(), 1);
    assert_eq!((found[0]["latest_id"].clone(), found[0]["data"].clone()), (second["id"].clone(), json!("two")));
    let (_, by_key) = app.get("/artifacts/report/latest").await;
    assert!(by_key.get("latest_id").is_none(), "{by_key}");
    assert_eq!(by_key["id"], found[0]["id"]);
    // When the latest is updated, so is the key's copy; an older one is not copied
    let (status, _) = app.send_patch(&format!("/artifacts/{}", second["id"].as_str().unwrap()), json!({"data": "two!"})).await;
    assert_eq!(status, 204);
    app.send_patch(&format!("/artifacts/{}", first["id"].as_str().unwrap()), json!({"description": "old"})).await;
    assert_eq!(latest(&app, "report").await[0]["data"], "two!");
    // When the latest is deleted, the key goes back to the first
    assert_eq!(app.delete_status(&format!("/artifacts/{}", second["id"].as_str().unwrap())).await, 204);
    let found = latest(&app, "report").await;
    assert_eq!((found[0]["latest_id"].clone(), found[0]["description"].clone()), (first["id"].clone(), json!("old")));
    // And the feed has the collection's lifecycle
    let events = app
        .wait_for("the collection's feed events", || async {
            let (_, page) = app.post("/events/filter", json!({"filter": {"event": {"prefix": ["prefect.artifact-collection."]}, "order": "ASC"}})).await;
            let names: Vec<String> = page["events"].as_array()?.iter().filter_map(|e| e["event"].as_str().map(str::to_owned)).collect();
            (names.len() >= 4).then_some(names)
        })
        .await;
    // created, the second artifact, the latest's update, the hand-back (the
    // older artifact's update did not touch the collection)
    let action = |n: &str| n.rsplit('.').next().unwrap_or_default().to_owned();
    assert_eq!(events.iter().map(|n| action(n)).collect::<Vec<_>>(), ["created", "updated", "updated", "updated"]);
    // When the last one goes, so does the key
    assert_eq!(app.delete_status(&format!("/artifacts/{}", first["id"].as_str().unwrap())).await, 204);
    assert!(latest(&app, "report").await.is_empty());
    let (status, gone) = app.get("/artifacts/report/latest").await;
    assert_eq!((status, gone), (404, json!({"detail": "Artifact not found."})));
    // And everything is rebuilt from the log as it is
    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", diff_report(&report));
});

both_backends!(artifact_filters_counts_and_bad_input, |app: TestApp| async move {
    let flow_id = app.create_flow("with-artifacts").await;
    let run = app.create_flow_run(&flow_id).await;
    let run_id = run["id"].as_str().unwrap();
    let mine = create(&app, json!({"key": "k-1", "type": "table", "data": [1], "flow_run_id": run_id, "metadata_": {"m": "x".repeat(600)}})).await;
    assert_eq!(mine["metadata_"]["m"].as_str().map(str::len), Some(503), "cut to 500 plus ...");
    let loose = create(&app, json!({"type": "markdown", "data": "free"})).await;
    // By the flow run, through its flow, and by key presence
    let (_, by_run) = app.post("/artifacts/filter", json!({"flow_runs": {"id": {"any_": [run_id]}}})).await;
    assert_eq!(by_run.as_array().unwrap().iter().map(|a| a["id"].clone()).collect::<Vec<_>>(), vec![mine["id"].clone()]);
    let (_, by_flow) = app.post("/artifacts/count", json!({"flows": {"name": {"any_": ["with-artifacts"]}}})).await;
    assert_eq!(by_flow, 1);
    let (_, keyless) = app.post("/artifacts/filter", json!({"artifacts": {"key": {"exists_": false}}})).await;
    assert_eq!(keyless.as_array().unwrap().iter().map(|a| a["id"].clone()).collect::<Vec<_>>(), vec![loose["id"].clone()]);
    let (_, sorted) = app.post("/artifacts/filter", json!({"sort": "KEY_ASC"})).await;
    assert_eq!(sorted.as_array().map(Vec::len), Some(2));
    let (_, n) = app.post("/artifacts/latest/count", Value::Null).await;
    assert_eq!(n, 1);
    // Bad input is a 422 in Prefect's shape, never stored
    let before = app.log_len().await;
    for body in [json!({"key": "Not_Valid"}), json!({"data": 1, "extra": 2}), json!({"metadata_": {"n": 1}})] {
        let (status, err) = app.post("/artifacts/", body.clone()).await;
        assert_eq!(status, 422, "{body}: {err}");
        assert_eq!(err["exception_message"], "Invalid request received.");
    }
    let (status, _) = app.post("/artifacts/filter", json!({"sort": "NAME_ASC"})).await;
    assert_eq!(status, 422);
    let (status, _) = app.post("/artifacts/filter", json!({"artifacts": {"nope": {}}})).await;
    assert_eq!(status, 422);
    assert_eq!(app.log_len().await, before);
    // Unknown ids are 404s
    let (status, _) = app.get(&format!("/artifacts/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(status, 404);
    let (status, _) = app.send_patch(&format!("/artifacts/{}", uuid::Uuid::new_v4()), json!({"data": 1})).await;
    assert_eq!(status, 404);
});
