//! The run monitors end runs nobody will finish: zombies (heartbeats
//! stopped), expired pauses and runs stuck CANCELLING, and leave the rest.

use chrono::{Duration, Utc};
use serde_json::json;

use crate::both_backends;
use crate::helpers::TestApp;
use prefect_server::services::run_monitors;

async fn state_of(app: &TestApp, id: &str) -> (String, String) {
    let (_, run) = app.get(&format!("/flow_runs/{id}")).await;
    (run["state_type"].as_str().unwrap().to_owned(), run["state"]["message"].as_str().unwrap_or_default().to_owned())
}

async fn heartbeat(app: &TestApp, run_id: &str, ago: Duration) {
    let event = json!([{
        "occurred": (Utc::now() - ago).to_rfc3339(), "event": "prefect.flow-run.heartbeat",
        "resource": {"prefect.resource.id": format!("prefect.flow-run.{run_id}")}, "id": uuid::Uuid::now_v7(),
    }]);
    let (status, body) = app.post("/events", event).await;
    assert!(status < 300, "{status} {body}");
}

async fn running_run(app: &TestApp, flow_id: &str) -> String {
    let id = app.create_flow_run(flow_id).await["id"].as_str().unwrap().to_owned();
    assert_eq!(app.set_state(&id, "RUNNING", false).await.0, 201);
    id
}

both_backends!(monitors_end_abandoned_runs_only, |app: TestApp| async move {
    let flow_id = app.create_flow("monitored").await;
    let zombie = running_run(&app, &flow_id).await;
    let alive = running_run(&app, &flow_id).await;
    let silent = running_run(&app, &flow_id).await;
    heartbeat(&app, &zombie, Duration::minutes(10)).await;
    heartbeat(&app, &alive, Duration::seconds(5)).await;
    app.wait_for("heartbeats in the events model", || async {
        let (_, page) = app.post("/events/filter", json!({"filter": {"event": {"name": ["prefect.flow-run.heartbeat"]}}})).await;
        (page["total"] == 2).then_some(())
    })
    .await;
    assert_eq!(run_monitors::crash_zombies(&app.db, Utc::now() - Duration::seconds(90)).await.unwrap(), 1);
    assert_eq!(state_of(&app, &zombie).await.0, "CRASHED");
    assert_eq!(state_of(&app, &alive).await.0, "RUNNING");
    assert_eq!(state_of(&app, &silent).await.0, "RUNNING", "a run that never sent heartbeats is not judged by them");

    let stuck = running_run(&app, &flow_id).await;
    assert_eq!(app.set_state(&stuck, "CANCELLING", false).await.0, 201);
    assert_eq!(run_monitors::clean_up_cancellations(&app.db, Utc::now() - Duration::minutes(5)).await.unwrap(), 0, "not stuck long enough yet");
    assert_eq!(run_monitors::clean_up_cancellations(&app.db, Utc::now() + Duration::seconds(1)).await.unwrap(), 1);
    assert_eq!(state_of(&app, &stuck).await.0, "CANCELLED");

    let paused = running_run(&app, &flow_id).await;
    let timeout = (Utc::now() + Duration::seconds(1)).to_rfc3339();
    let (status, body) = app
        .post(&format!("/flow_runs/{paused}/set_state"), json!({"state": {"type": "PAUSED", "name": "Paused", "state_details": {"pause_timeout": timeout, "pause_key": "k"}}}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(run_monitors::expire_pauses(&app.db, Utc::now()).await.unwrap(), 0);
    assert_eq!(run_monitors::expire_pauses(&app.db, Utc::now() + Duration::seconds(5)).await.unwrap(), 1);
    assert_eq!(state_of(&app, &paused).await, ("FAILED".to_owned(), "The flow was paused and never resumed.".to_owned()));

    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
});
