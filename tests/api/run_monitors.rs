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

both_backends!(a_run_whose_worker_died_crashes, |app: TestApp| async move {
    let flow_id = app.create_flow("worker-run").await;
    app.post("/work_pools/", json!({"name": "wp", "type": "process"})).await;
    let (_, dep) = app.post("/deployments/", json!({"name": "d", "flow_id": flow_id, "work_pool_name": "wp", "enforce_parameter_schema": false})).await;
    let (_, run) = app.post(&format!("/deployments/{}/create_flow_run", dep["id"].as_str().unwrap()), json!({})).await;
    let run_id = run["id"].as_str().unwrap().to_owned();
    let (_, other) = app.post(&format!("/deployments/{}/create_flow_run", dep["id"].as_str().unwrap()), json!({})).await;
    let other_id = other["id"].as_str().unwrap().to_owned();
    for id in [&run_id, &other_id] {
        assert_eq!(app.set_state(id, "RUNNING", false).await.0, 201);
    }
    assert_eq!(app.post("/work_pools/wp/workers/heartbeat", json!({"name": "w1", "heartbeat_interval_seconds": 30})).await.0, 204);
    // Only the first run was submitted by w1 (as its worker reports in an event).
    let submitted = json!([{
        "occurred": Utc::now().to_rfc3339(), "event": "prefect.worker.submitted-flow-run", "id": uuid::Uuid::now_v7(),
        "resource": {"prefect.resource.id": "prefect.worker.process.w1", "prefect.resource.name": "w1"},
        "related": [{"prefect.resource.id": format!("prefect.flow-run.{run_id}"), "prefect.resource.role": "flow-run"}],
    }]);
    assert!(app.post("/events", submitted).await.0 < 300);
    app.wait_for("the submission in the events model", || async {
        let (_, page) = app.post("/events/filter", json!({"filter": {"event": {"name": ["prefect.worker.submitted-flow-run"]}}})).await;
        (page["total"] == 1).then_some(())
    })
    .await;
    assert_eq!(run_monitors::crash_runs_of_dead_workers(&app.db).await.unwrap(), 0, "w1 is online");

    // The foreman, judging every heartbeat as missed, marks w1 offline.
    let mut services = app.settings.services.clone();
    services.foreman_heartbeat_multiple = 0;
    assert!(prefect_server::services::foreman::run_once(&app.db, &services).await.unwrap() >= 1);
    let (_, workers) = app.post("/work_pools/wp/workers/filter", json!({})).await;
    assert_eq!(workers[0]["status"], "ONLINE", "the response recomputes liveness from the heartbeat itself");
    assert_eq!(run_monitors::crash_runs_of_dead_workers(&app.db).await.unwrap(), 1);
    let (_, crashed) = app.get(&format!("/flow_runs/{run_id}")).await;
    assert_eq!((crashed["state_type"].clone(), crashed["state"]["message"].clone()), (json!("CRASHED"), json!("The worker running this flow run stopped sending heartbeats.")));
    assert_eq!(state_of(&app, &other_id).await.0, "RUNNING", "a run no dead worker submitted is left alone");
});
