//! A flow run's lifecycle over REST, as the Prefect engine drives it.

use serde_json::json;

use crate::both_backends;
use crate::helpers::TestApp;

both_backends!(flow_upsert_returns_201_then_200, |app: TestApp| async move {
    let (s1, a) = app.post("/flows/", json!({"name": "etl"})).await;
    let (s2, b) = app.post("/flows/", json!({"name": "etl"})).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(a["id"], b["id"]);
    let (status, by_name) = app.get("/flows/name/etl").await;
    assert_eq!(status, 200);
    assert_eq!(by_name["id"], a["id"]);
});

both_backends!(flow_run_lifecycle_reads_back, |app: TestApp| async move {
    let flow_id = app.create_flow("lifecycle").await;
    let run = app.create_flow_run(&flow_id).await;
    let run_id = run["id"].as_str().unwrap();
    assert_eq!(run["state"]["type"], "PENDING");
    assert_eq!(run["labels"]["prefect.flow.id"], flow_id.as_str());

    let (status, result) = app.set_state(run_id, "RUNNING", false).await;
    assert_eq!(status, 201, "{result}");
    assert_eq!(result["status"], "ACCEPT");
    assert_eq!(result["details"]["type"], "accept_details");
    assert_eq!(result["state"]["state_details"]["flow_run_id"], run_id);

    let (_, running) = app.get(&format!("/flow_runs/{run_id}")).await;
    assert_eq!(running["state_type"], "RUNNING");
    assert_eq!(running["run_count"], 1);
    assert!(running["start_time"].is_string());

    let (status, done) = app.set_state(run_id, "COMPLETED", false).await;
    assert_eq!((status, done["status"].as_str()), (201, Some("ACCEPT")));
    let (_, completed) = app.get(&format!("/flow_runs/{run_id}")).await;
    assert_eq!(completed["state"]["type"], "COMPLETED");
    assert!(completed["end_time"].is_string());

    let (_, states) = app.get(&format!("/flow_run_states/?flow_run_id={run_id}")).await;
    let types: Vec<&str> = states.as_array().unwrap().iter().map(|s| s["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["PENDING", "RUNNING", "COMPLETED"]);

    // A terminal run cannot be made to run again without force.
    let (status, abort) = app.set_state(run_id, "CRASHED", false).await;
    assert_eq!(status, 200);
    assert_eq!(abort["status"], "ABORT");
});

both_backends!(idempotency_key_returns_the_same_run, |app: TestApp| async move {
    let flow_id = app.create_flow("idem").await;
    let body = json!({"flow_id": flow_id, "idempotency_key": "k1"});
    let (s1, a) = app.post("/flow_runs/", body.clone()).await;
    let (s2, b) = app.post("/flow_runs/", body).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(a["id"], b["id"]);
});

both_backends!(flow_retries_are_rescheduled_by_the_server, |app: TestApp| async move {
    let flow_id = app.create_flow("retrying").await;
    let (_, run) = app
        .post("/flow_runs/", json!({"flow_id": flow_id, "empirical_policy": {"retries": 1, "retry_delay": 0}}))
        .await;
    let run_id = run["id"].as_str().unwrap();
    app.set_state(run_id, "RUNNING", false).await;
    let (status, rejected) = app.set_state(run_id, "FAILED", false).await;
    assert_eq!(status, 201);
    assert_eq!(rejected["status"], "REJECT");
    assert_eq!(rejected["state"]["type"], "SCHEDULED");
    assert_eq!(rejected["state"]["name"], "AwaitingRetry");
    let (_, rerun) = app.set_state(run_id, "RUNNING", false).await;
    assert_eq!(rerun["status"], "ACCEPT");
    let (_, failed) = app.set_state(run_id, "FAILED", false).await;
    assert_eq!(failed["status"], "ACCEPT");
    let (_, read) = app.get(&format!("/flow_runs/{run_id}")).await;
    assert_eq!(read["run_count"], 2);
    assert_eq!(read["state_type"], "FAILED");
});

both_backends!(task_runs_and_logs_over_rest, |app: TestApp| async move {
    let flow_id = app.create_flow("with-tasks").await;
    let run = app.create_flow_run(&flow_id).await;
    let run_id = run["id"].as_str().unwrap();
    let body = json!({"flow_run_id": run_id, "task_key": "t-1", "dynamic_key": "0", "name": "t-0"});
    let (s1, tr) = app.post("/task_runs/", body.clone()).await;
    let (s2, again) = app.post("/task_runs/", body).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(tr["id"], again["id"]);
    assert_eq!(tr["state"]["type"], "PENDING");

    let logs = json!([
        {"name": "prefect.flow_runs", "level": 20, "message": "hello", "timestamp": "2026-11-23T07:58:33.347872Z", "flow_run_id": run_id, "task_run_id": null},
        {"name": "prefect.flow_runs", "level": 40, "message": "oops", "timestamp": "2026-11-23T07:58:34.000000Z", "flow_run_id": run_id, "task_run_id": null}
    ]);
    assert_eq!(app.post("/logs/", logs).await.0, 201);
    let (status, read) = app.post("/logs/filter", json!({"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC"})).await;
    assert_eq!(status, 200, "{read}");
    let messages: Vec<&str> = read.as_array().unwrap().iter().map(|l| l["message"].as_str().unwrap()).collect();
    assert_eq!(messages, ["hello", "oops"]);
});

both_backends!(a_rejected_resume_still_marks_the_run_resuming, |app: TestApp| async move {
    let flow_id = app.create_flow("paused").await;
    let run = app.create_flow_run(&flow_id).await;
    let id = run["id"].as_str().unwrap();
    app.set_state(id, "RUNNING", false).await;
    let (_, paused) = app.set_state(id, "PAUSED", false).await;
    assert_eq!(paused["status"], "ACCEPT", "{paused}");
    let (_, resumed) = app.set_state(id, "PENDING", false).await;
    assert_eq!(resumed["status"], "REJECT", "{resumed}");
    let (_, read) = app.get(&format!("/flow_runs/{id}")).await;
    assert_eq!(read["state_type"], "PAUSED");
    assert_eq!(read["empirical_policy"]["resuming"], true);
    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
});

both_backends!(resume_moves_a_paused_run_on_once, |app: TestApp| async move {
    let flow_id = app.create_flow("pausing").await;
    let run = app.create_flow_run(&flow_id).await;
    let id = run["id"].as_str().unwrap().to_owned();
    // An unknown run is a 404; a run that is not paused is an ABORT.
    let (status, body) = app.post(&format!("/flow_runs/{}/resume", uuid::Uuid::new_v4()), json!({})).await;
    assert_eq!((status, body["detail"].clone()), (404, json!("Flow run not found")));
    let (status, body) = app.post(&format!("/flow_runs/{id}/resume"), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"state": null, "status": "ABORT", "details": {"type": "abort_details", "reason": "Cannot resume a flow run that is not paused."}}));
    // Given a running run that pauses
    assert_eq!(app.set_state(&id, "RUNNING", false).await.0, 201);
    let (status, body) = app.post(&format!("/flow_runs/{id}/set_state"), json!({"state": {"type": "PAUSED", "name": "Paused", "state_details": {"pause_key": "k1"}}})).await;
    assert_eq!((status, body["status"].clone()), (201, json!("ACCEPT")), "{body}");
    // When it is resumed, it runs again, and a second resume finds it not paused
    let (status, body) = app.post(&format!("/flow_runs/{id}/resume"), json!({"run_input": null})).await;
    assert_eq!((status, body["status"].clone(), body["state"]["type"].clone()), (201, json!("ACCEPT"), json!("RUNNING")), "{body}");
    let (_, body) = app.post(&format!("/flow_runs/{id}/resume"), json!({})).await;
    assert_eq!(body["status"], "ABORT");
    // A run paused while waiting for input whose schema was never stored as
    // one of its inputs is refused, and stays paused
    let (status, body) = app
        .post(&format!("/flow_runs/{id}/set_state"), json!({"state": {"type": "PAUSED", "state_details": {"pause_key": "k2", "run_input_keyset": {"schema": "s", "response": "r", "description": "d"}}}}))
        .await;
    assert_eq!((status, body["status"].clone()), (201, json!("ACCEPT")), "{body}");
    let (status, body) = app.post(&format!("/flow_runs/{id}/resume"), json!({"run_input": {"a": 1}})).await;
    assert_eq!((status, body["status"].clone(), body["details"].clone()), (200, json!("REJECT"), json!({"type": "abort_details", "reason": "Run input schema not found."})));
    assert_eq!(body["state"]["type"], "PAUSED");
    let (_, run) = app.get(&format!("/flow_runs/{id}")).await;
    assert_eq!(run["state"]["type"], "PAUSED");
    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
});
