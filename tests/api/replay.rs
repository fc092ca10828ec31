//! `replay server` rebuilds the same model from the log.

use serde_json::{json, Value};

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

impl TestApp {
    async fn patch_json(&self, path: &str, body: Value) -> u16 {
        self.client.patch(self.url(path)).json(&body).send().await.unwrap().status().as_u16()
    }

    async fn delete_path(&self, path: &str) -> u16 {
        self.client.delete(self.url(path)).send().await.unwrap().status().as_u16()
    }
}

/// A client task-run event (`/events`), as the Prefect client sends it.
fn task_event(task_run_id: &str, flow_run_id: &str, task_key: &str, state_type: &str, occurred: &str) -> Value {
    json!({
        "occurred": occurred,
        "event": format!("prefect.task-run.{state_type}"),
        "resource": {"prefect.resource.id": format!("prefect.task-run.{task_run_id}"), "prefect.orchestration": "client"},
        "related": [{"prefect.resource.id": format!("prefect.flow-run.{flow_run_id}"), "prefect.resource.role": "flow-run"}],
        "payload": {
            "validated_state": {"type": state_type, "name": state_type.to_lowercase(), "message": "", "state_details": {}, "data": null},
            "task_run": {"name": format!("task-{task_key}"), "task_key": task_key, "dynamic_key": "0", "tags": ["x"], "labels": {},
                         "run_count": 1, "total_run_time": 0.5, "start_time": occurred}
        },
        "id": uuid::Uuid::now_v7().to_string()
    })
}

/// Every kind of event the server model projects, updates and deletes
/// (with their cascades) included: the set-based rebuild must give the
/// same tables as the live, per-event path, whether it holds the whole log
/// in memory or writes it out early and goes on per event.
async fn varied_log(app: &TestApp) {
    let kept = app.create_flow("kept").await;
    let doomed = app.create_flow("doomed").await;
    assert_eq!(app.patch_json(&format!("/flows/{kept}"), json!({"tags": ["a", "b"]})).await, 204);

    // A pool with a second queue and a worker, deployments on it (one of the
    // doomed flow), a schedule.
    assert_eq!(app.post("/work_pools/", json!({"name": "rp", "type": "process"})).await.0, 201);
    assert_eq!(app.post("/work_pools/", json!({"name": "gone", "type": "process"})).await.0, 201);
    let (_, q2) = app.post("/work_pools/rp/queues", json!({"name": "q2", "priority": 2})).await;
    let q2 = q2["id"].as_str().unwrap().to_owned();
    app.post("/work_pools/rp/workers/heartbeat", json!({"name": "w1", "heartbeat_interval_seconds": 30})).await;
    app.post("/work_pools/gone/workers/heartbeat", json!({"name": "w2"})).await;
    let mut deployments = Vec::new();
    for (name, flow, pool, queue) in [("d1", &kept, "rp", "q2"), ("d2", &doomed, "rp", "default"), ("d3", &kept, "gone", "default")] {
        let body = json!({"name": name, "flow_id": flow, "work_pool_name": pool, "work_queue_name": queue, "tags": ["t"], "enforce_parameter_schema": false,
                          "schedules": [{"schedule": {"interval": 3600.0}, "active": true}]});
        let (status, dep) = app.post("/deployments/", body).await;
        assert_eq!(status, 201, "{dep}");
        deployments.push(dep["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(app.patch_json("/work_pools/rp", json!({"is_paused": true, "description": "paused"})).await, 204);

    // Runs: from deployments and plain, with states, task runs (REST and
    // client events, one out of order, one found by natural key), cached
    // completions, updates and logs.
    let mut runs = Vec::new();
    for dep in &deployments {
        let (status, run) = app.post(&format!("/deployments/{dep}/create_flow_run"), json!({})).await;
        assert_eq!(status, 201, "{run}");
        runs.push(run["id"].as_str().unwrap().to_owned());
    }
    for _ in 0..3 {
        runs.push(app.create_flow_run(&kept).await["id"].as_str().unwrap().to_owned());
    }
    runs.push(app.create_flow_run(&doomed).await["id"].as_str().unwrap().to_owned());
    for (i, run) in runs.iter().enumerate() {
        app.set_state(run, "RUNNING", false).await;
        let (status, tr) = app.post("/task_runs/", json!({"flow_run_id": run, "task_key": "rest", "dynamic_key": i.to_string()})).await;
        assert_eq!(status, 201, "{tr}");
        let tr = tr["id"].as_str().unwrap().to_owned();
        for state in ["RUNNING", "COMPLETED"] {
            let body = json!({"state": {"type": state, "state_details": {"cache_key": format!("ck-{i}")}}});
            assert_eq!(app.post(&format!("/task_runs/{tr}/set_state"), body).await.0, 201);
        }
        assert_eq!(app.patch_json(&format!("/task_runs/{tr}"), json!({"name": format!("renamed-{i}")})).await, 204);
        let client_tr = uuid::Uuid::now_v7().to_string();
        let events = json!([
            task_event(&client_tr, run, "client", "PENDING", "2026-11-23T07:58:30.000000Z"),
            task_event(&client_tr, run, "client", "COMPLETED", "2026-11-23T07:58:32.000000Z"),
            // Late: older than the row's state, so recorded but not applied.
            task_event(&client_tr, run, "client", "RUNNING", "2026-11-23T07:58:31.000000Z"),
            // Another id with the same natural key as the REST task run.
            task_event(&uuid::Uuid::now_v7().to_string(), run, "rest", "FAILED", &format!("2026-11-23T07:59:0{i}.000000Z")),
        ]);
        assert_eq!(app.post("/events", events).await.0, 204);
        let logs = json!([{"name": "n", "level": 20, "message": format!("m{i}"), "timestamp": "2026-01-01T00:00:00Z", "flow_run_id": run, "task_run_id": tr}]);
        assert_eq!(app.post("/logs/", logs).await.0, 201);
        app.set_state(run, "COMPLETED", false).await;
        assert_eq!(app.patch_json(&format!("/flow_runs/{run}"), json!({"tags": ["done"], "infrastructure_pid": "42"})).await, 204);
    }
    app.post("/logs/", json!([{"name": "n", "level": 40, "message": "no run", "timestamp": "2026-01-01T00:00:01Z"}])).await;
    // Text that COPY's text format must escape, and text that looks like its NULL.
    let escaped = json!([{"name": "n", "level": 30, "message": "tab\there\nline\r\\ \\N\\.", "timestamp": "2026-01-01T00:00:02Z"},
                         {"name": "\\N", "level": 30, "message": "", "timestamp": "2026-01-01T00:00:03Z"}]);
    assert_eq!(app.post("/logs/", escaped).await.0, 201);
    // Flow-run inputs: on every run (the deleted run and flow take theirs
    // with them), one of them deleted on its own.
    for run in &runs {
        for key in ["a", "b"] {
            assert_eq!(app.post(&format!("/flow_runs/{run}/input"), json!({"key": key, "value": format!("{{\"run\": \"{run}\"}}")})).await.0, 201);
        }
    }
    assert_eq!(app.delete_path(&format!("/flow_runs/{}/input/b", runs[0])).await, 204);
    // Saved searches: one replaced by name, one deleted.
    for (name, value) in [("kept", json!(1)), ("kept", json!(null)), ("dropped", json!("x"))] {
        let body = json!({"name": name, "filters": [{"object": "flow_run", "property": "state", "type": "state", "operation": "or", "value": value}]});
        let status = app.client.put(app.url("/saved_searches/")).json(&body).send().await.unwrap().status().as_u16();
        assert!(status == 200 || status == 201, "{status}");
    }
    let (_, searches) = app.post("/saved_searches/filter", json!({})).await;
    let dropped = searches.as_array().unwrap().iter().find(|s| s["name"] == "dropped").unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(app.delete_path(&format!("/saved_searches/{dropped}")).await, 204);

    // Concurrency limits: a tag limit upserted, leases taken, renewed and
    // ended, a deployment's own limit changed, one limit deleted.
    assert_eq!(app.post("/concurrency_limits/", json!({"tag": "io", "concurrency_limit": 3})).await.0, 201);
    assert_eq!(app.post("/concurrency_limits/", json!({"tag": "io", "concurrency_limit": 2})).await.0, 200);
    let (_, v1) = app.post("/concurrency_limits/increment", json!({"names": ["io"], "task_run_id": uuid::Uuid::now_v7()})).await;
    assert_eq!(v1[0]["name"], "io", "{v1}");
    let (_, leased) = app.post("/v2/concurrency_limits/increment-with-lease", json!({"names": ["tag:io"], "slots": 1})).await;
    let lease = leased["lease_id"].as_str().unwrap().to_owned();
    assert_eq!(app.post(&format!("/v2/concurrency_limits/leases/{lease}/renew"), json!({"lease_duration": 90})).await.0, 204);
    assert_eq!(app.post("/v2/concurrency_limits/decrement-with-lease", json!({"lease_id": lease})).await.0, 204);
    app.post("/v2/concurrency_limits/", json!({"name": "rl", "limit": 9, "slot_decay_per_second": 0.5})).await;
    assert_eq!(app.post("/v2/concurrency_limits/increment", json!({"names": ["rl"], "slots": 2, "mode": "rate_limit"})).await.0, 200);
    app.post("/v2/concurrency_limits/", json!({"name": "doomed", "limit": 1})).await;
    assert_eq!(app.delete_path("/v2/concurrency_limits/doomed").await, 204);
    assert_eq!(app.patch_json(&format!("/deployments/{}", deployments[1]), json!({"concurrency_limit": 4})).await, 204);

    // Deletes and their cascades: a task run, a flow run, a queue, a
    // deployment, a pool, a flow.
    let (_, trs) = app.post("/task_runs/filter", json!({"flow_runs": {"id": {"any_": [runs[3]]}}})).await;
    let tr = trs[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(app.delete_path(&format!("/task_runs/{tr}")).await, 204);
    assert_eq!(app.delete_path(&format!("/flow_runs/{}", runs[4])).await, 204);
    assert_eq!(app.delete_path(&format!("/work_queues/{q2}")).await, 204);
    assert_eq!(app.delete_path(&format!("/deployments/{}", deployments[0])).await, 204);
    assert_eq!(app.delete_path("/work_pools/gone").await, 204);
    assert_eq!(app.delete_path(&format!("/flows/{doomed}")).await, 204);
    // And life after them: a new run on the kept flow.
    let late = app.create_flow_run(&kept).await;
    app.set_state(late["id"].as_str().unwrap(), "RUNNING", false).await;
}

both_backends!(the_set_based_rebuild_matches_the_live_model, |app: TestApp| async move {
    varied_log(&app).await;
    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.events > 100, "{}", report.events);
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
    for table in ["flow_run_state", "task_run_state", "task_run_state_cache", "log", "deployment_schedule", "worker", "flow_run_input", "saved_search", "concurrency_limit_v2", "concurrency_lease"] {
        let t = report.after.iter().find(|t| t.table == table).unwrap();
        assert!(t.rows > 0, "{table} is empty: the log does not exercise it");
    }
    // Writing the model out early (every few rows) and going on per event
    // gives the same tables too.
    for max_rows in [1, 7, 50] {
        let report = prefect_server::replay::rebuild_server_with(&app.db, true, max_rows).await.unwrap();
        assert!(report.matches(), "max_rows {max_rows}: {}", crate::helpers::diff_report(&report));
    }
    let report = prefect_server::replay::rebuild_server(&app.db, false).await.unwrap();
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
});

both_backends!(a_drifted_live_model_is_reported_and_repaired, |app: TestApp| async move {
    let flow_id = app.create_flow("drifting").await;
    let run = app.create_flow_run(&flow_id).await;
    let id = run["id"].as_str().unwrap().to_owned();
    // Given a live row that no longer says what the log says
    let mut conn = app.db.begin_write().await.unwrap();
    sqlx::query(&app.db.q("UPDATE flow_run SET name = 'tampered' WHERE id = $1")).bind(&id).execute(&mut *conn).await.unwrap();
    conn.commit().await.unwrap();
    // When the rebuild is verified, it names the row on both sides and
    // leaves the live model as it was
    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(!report.matches());
    let (live, rebuilt) = report.before.iter().zip(&report.after).find(|(b, _)| b.table == "flow_run").unwrap();
    assert_ne!(live, rebuilt);
    let diff = live.differing_rows(rebuilt, 4);
    assert_eq!(diff.len(), 2, "{diff:?}");
    assert!(diff.iter().all(|line| line.contains(&id)), "{diff:?}");
    assert!(diff.iter().any(|line| line.starts_with("live:") && line.contains("tampered")), "{diff:?}");
    let others = report.before.iter().zip(&report.after).filter(|(b, a)| b != a).count();
    assert_eq!(others, 1, "only flow_run differs: {}", crate::helpers::diff_report(&report));
    let (_, body) = app.get(&format!("/flow_runs/{id}")).await;
    assert_eq!(body["name"], "tampered");
    // And a committed rebuild reports the table and restores the row
    let report = prefect_server::replay::rebuild_server(&app.db, false).await.unwrap();
    assert!(!report.matches());
    let (_, body) = app.get(&format!("/flow_runs/{id}")).await;
    assert_eq!(body["name"], run["name"]);
    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
});
