//! `replay server` rebuilds the same model from the log.

use serde_json::json;

use crate::both_backends;
use crate::helpers::TestApp;

both_backends!(replay_rebuilds_an_identical_model, |app: TestApp| async move {
    let flow_id = app.create_flow("replayed").await;
    for _ in 0..3 {
        let run = app.create_flow_run(&flow_id).await;
        let id = run["id"].as_str().unwrap();
        app.set_state(id, "RUNNING", false).await;
        app.post("/task_runs/", json!({"flow_run_id": id, "task_key": "k", "dynamic_key": "0"})).await;
        app.post("/logs/", json!([{"name": "n", "level": 20, "message": "m", "timestamp": "2026-01-01T00:00:00Z", "flow_run_id": id}])).await;
        app.set_state(id, "COMPLETED", false).await;
    }
    let report = prefect_server::replay::rebuild_server(&app.db, false).await.unwrap();
    assert!(report.events >= 15, "{}", report.events);
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
    let flow_runs = report.after.iter().find(|t| t.table == "flow_run").unwrap();
    assert_eq!(flow_runs.rows, 3);
    // And the API still serves the rebuilt rows.
    let (status, runs) = app.post("/flow_runs/filter", json!({"flows": {"id": {"any_": [flow_id]}}})).await;
    assert_eq!(status, 200, "{runs}");
    assert_eq!(runs.as_array().unwrap().len(), 3);
});
