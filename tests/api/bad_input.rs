//! Bad input gets a Prefect-shaped 4xx and writes nothing.

use serde_json::json;

use crate::both_backends;
use crate::helpers::TestApp;

both_backends!(bad_bodies_are_rejected_without_writing, |app: TestApp| async move {
    let flow_id = app.create_flow("strict").await;
    let before = app.log_len().await;

    let resp = app
        .client
        .post(app.url("/flows/"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["exception_message"], "Invalid request received.");
    assert!(body["exception_detail"].is_array());

    let (status, body) = app.post("/flows/", json!({"name": "x", "colour": "red"})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["exception_detail"][0]["type"], "extra_forbidden");

    let (status, _) = app.post("/flow_runs/", json!({"flow_id": flow_id, "state": {"type": "SLEEPING"}})).await;
    assert_eq!(status, 422);

    let (status, _) = app.get("/flow_runs/not-a-uuid").await;
    assert_eq!(status, 404);

    let (status, body) = app.post("/flow_runs/filter", json!({"limit": 201})).await;
    assert_eq!(status, 422, "{body}");

    let big = "x".repeat(app.settings.max_body_bytes + 1);
    let (status, _) = app.post("/flows/", json!({"name": big})).await;
    assert_eq!(status, 413);

    let (status, body) = app.get(&format!("/flow_runs/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(status, 404);
    assert_eq!(body["detail"], "Flow run not found");

    let (status, _) = app
        .post(&format!("/flow_runs/{}/set_state", uuid::Uuid::new_v4()), json!({"state": {"type": "RUNNING"}}))
        .await;
    assert_eq!(status, 404);

    assert_eq!(app.log_len().await, before, "rejected requests must not append events");
});
