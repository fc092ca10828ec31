//! Work pools, queues, workers and deployments through the HTTP API: the
//! shapes and status codes Prefect answers, bad input, the worker's polling
//! path, and replay of everything they wrote.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::TestApp;

impl TestApp {
    async fn patch(&self, path: &str, body: Value) -> u16 {
        self.client.patch(self.url(path)).json(&body).send().await.unwrap().status().as_u16()
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        let resp = self.client.delete(self.url(path)).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

fn process_template() -> Value {
    json!({
        "job_configuration": {"command": "{{ command }}", "env": "{{ env }}"},
        "variables": {"type": "object", "properties": {"command": {"type": "string"}, "env": {"type": "object"}}}
    })
}

both_backends!(work_pools_answer_like_prefect, |app: TestApp| async move {
    let (status, pool) = app.post("/work_pools/", json!({"name": "pool-a", "type": "process", "base_job_template": process_template()})).await;
    assert_eq!(status, 201, "{pool}");
    assert_eq!(pool["status"], "NOT_READY");
    assert_eq!(pool["active_slots"], Value::Null);
    let (_, default_queue) = app.get("/work_pools/pool-a/queues/default").await;
    assert_eq!(pool["default_queue_id"], default_queue["id"]);
    assert_eq!((default_queue["priority"].clone(), default_queue["work_pool_name"].clone()), (json!(1), json!("pool-a")));

    // Prefect's error answers.
    let (status, body) = app.post("/work_pools/", json!({"name": "pool-a", "type": "process"})).await;
    assert_eq!((status, body["detail"].clone()), (409, json!("A work pool with this name already exists.")));
    let (status, body) = app.post("/work_pools/", json!({"name": "Prefect-pool"})).await;
    assert_eq!((status, body["detail"].clone()), (403, json!("Work pools starting with 'Prefect' are reserved for internal use.")));
    let (status, body) = app.post("/work_pools/", json!({"name": "bad/name"})).await;
    assert_eq!((status, body["exception_detail"][0]["loc"].clone()), (422, json!(["body", "name"])), "{body}");
    let bad_template = json!({"job_configuration": {"command": "{{ nope }}"}, "variables": {"properties": {}}});
    let (status, body) = app.post("/work_pools/", json!({"name": "pool-b", "base_job_template": bad_template})).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("undeclared variable(s): nope"), "{body}");
    let (status, body) = app.get("/work_pools/missing").await;
    assert_eq!((status, body["detail"].clone()), (404, json!("Work pool \"missing\" not found.")));

    // Queues: priorities fill gaps; names are unique per pool.
    let (status, q2) = app.post("/work_pools/pool-a/queues", json!({"name": "high", "priority": 1})).await;
    assert_eq!(status, 201, "{q2}");
    let (_, queues) = app.post("/work_pools/pool-a/queues/filter", json!({})).await;
    let order: Vec<(String, i64)> = queues.as_array().unwrap().iter().map(|q| (q["name"].as_str().unwrap().to_owned(), q["priority"].as_i64().unwrap())).collect();
    assert_eq!(order, vec![("high".to_owned(), 1), ("default".to_owned(), 2)]);
    let (status, _) = app.post("/work_pools/pool-a/queues", json!({"name": "high"})).await;
    assert_eq!(status, 409);
    let (status, _) = app.delete(&format!("/work_queues/{}", default_queue["id"].as_str().unwrap())).await;
    assert_eq!(status, 400, "a pool's default queue cannot be deleted");

    // Pausing and filtering.
    assert_eq!(app.patch("/work_pools/pool-a", json!({"is_paused": true})).await, 204);
    let (_, paused) = app.get("/work_pools/pool-a").await;
    assert_eq!((paused["is_paused"].clone(), paused["status"].clone()), (json!(true), json!("PAUSED")));
    let (_, found) = app.post("/work_pools/filter", json!({"work_pools": {"type": {"any_": ["process"]}}})).await;
    assert_eq!(found.as_array().unwrap().len(), 1);
    let (status, body) = app.post("/work_pools/filter", json!({"work_pools": {"colour": {"any_": ["x"]}}})).await;
    assert_eq!(status, 422, "{body}");
    let (_, n) = app.post("/work_pools/count", json!({})).await;
    assert_eq!(n, 1);
});

both_backends!(a_deployment_run_reaches_a_polling_worker, |app: TestApp| async move {
    let flow_id = app.create_flow("deployed-flow").await;
    app.post("/work_pools/", json!({"name": "pool", "type": "process", "base_job_template": process_template()})).await;
    let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}, "who": {"type": "string"}}, "required": ["n"]});
    let body = json!({
        "name": "dep", "flow_id": flow_id, "work_pool_name": "pool", "parameters": {"who": "world"},
        "parameter_openapi_schema": schema, "tags": ["t1"], "job_variables": {"env": {"A": "1"}},
    });
    let (status, dep) = app.post("/deployments/", body.clone()).await;
    assert_eq!(status, 201, "{dep}");
    let id = dep["id"].as_str().unwrap().to_owned();
    assert_eq!((dep["work_pool_name"].clone(), dep["work_queue_name"].clone()), (json!("pool"), json!("default")));
    assert_eq!((dep["status"].clone(), dep["schedules"].clone()), (json!("NOT_READY"), json!([])));
    // Upsert: same flow and name → the same deployment, 200.
    let (status, again) = app.post("/deployments/", body).await;
    assert_eq!((status, again["id"].clone()), (200, json!(id)));
    let (status, by_name) = app.get("/deployments/name/deployed-flow/dep").await;
    assert_eq!((status, by_name["id"].clone()), (200, json!(id)));

    // Parameters are merged and checked against the schema.
    let (status, body) = app.post(&format!("/deployments/{id}/create_flow_run"), json!({"parameters": {"n": "x"}})).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("'n'"), "{body}");
    let (status, run) = app.post(&format!("/deployments/{id}/create_flow_run"), json!({"parameters": {"n": 3}, "tags": ["t2"]})).await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["state_type"], "SCHEDULED");
    assert_eq!(run["parameters"], json!({"who": "world", "n": 3}));
    assert_eq!(run["tags"], json!(["t1", "t2"]));
    // A run keeps only its own job variables; the worker layers them over
    // the deployment's, as with Prefect.
    assert_eq!(run["job_variables"], json!({}));
    assert_eq!((run["deployment_id"].clone(), run["work_pool_name"].clone(), run["work_queue_name"].clone()), (json!(id), json!("pool"), json!("default")));
    assert_eq!(run["work_queue_id"], dep["work_queue_id"]);

    // A worker heartbeats and polls: it gets the run, and the pool, queue and
    // deployment become READY.
    let (status, _) = app.post("/work_pools/pool/workers/heartbeat", json!({"name": "w1", "heartbeat_interval_seconds": 30})).await;
    assert_eq!(status, 204);
    let (status, polled) = app.post("/work_pools/pool/get_scheduled_flow_runs", json!({"scheduled_before": "2100-01-01T00:00:00Z"})).await;
    assert_eq!(status, 200, "{polled}");
    let polled = polled.as_array().unwrap();
    assert_eq!(polled.len(), 1);
    assert_eq!((polled[0]["flow_run"]["id"].clone(), polled[0]["work_queue_id"].clone()), (run["id"].clone(), dep["work_queue_id"].clone()));
    let (_, pool) = app.get("/work_pools/pool").await;
    assert_eq!(pool["status"], "READY");
    let (_, workers) = app.post("/work_pools/pool/workers/filter", json!({})).await;
    assert_eq!((workers[0]["name"].clone(), workers[0]["status"].clone()), (json!("w1"), json!("ONLINE")));
    let (_, dep_now) = app.get(&format!("/deployments/{id}")).await;
    assert_eq!(dep_now["status"], "READY");
    assert!(dep_now["last_polled"].is_string());
    let (status, none) = app.post("/work_pools/pool/get_scheduled_flow_runs", json!({"work_queue_names": ["nope"]})).await;
    assert_eq!(status, 404, "{none}");

    // Flow-run filters across deployments and pools.
    let (_, by_pool) = app.post("/flow_runs/filter", json!({"work_pools": {"name": {"any_": ["pool"]}}, "deployments": {"tags": {"all_": ["t1"]}}})).await;
    assert_eq!(by_pool.as_array().unwrap().len(), 1, "{by_pool}");
    let (_, deployments) = app.post("/deployments/filter", json!({"work_pools": {"name": {"any_": ["pool"]}}})).await;
    assert_eq!(deployments.as_array().unwrap().len(), 1);

    // Deleting the deployment removes its scheduled run.
    let (status, _) = app.delete(&format!("/deployments/{id}")).await;
    assert_eq!(status, 204);
    let (status, _) = app.get(&format!("/flow_runs/{}", run["id"].as_str().unwrap())).await;
    assert_eq!(status, 404);
    let (status, body) = app.get(&format!("/deployments/{id}")).await;
    assert_eq!((status, body["detail"].clone()), (404, json!("Deployment not found")));

    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
});

both_backends!(schedules_are_validated_and_produce_idempotent_runs, |app: TestApp| async move {
    let flow_id = app.create_flow("scheduled-flow").await;
    let bad = json!({"name": "d", "flow_id": flow_id, "schedules": [{"schedule": {"cron": "not a cron"}}]});
    let (status, body) = app.post("/deployments/", bad).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(app.post("/deployments/filter", json!({})).await.1, json!([]), "a rejected deployment writes nothing");

    let schedule = json!({"interval": 3600.0, "anchor_date": "2026-01-01T00:00:00Z", "timezone": "UTC"});
    let body = json!({"name": "d", "flow_id": flow_id, "schedules": [{"schedule": schedule, "parameters": {"x": 1}, "slug": "hourly"}]});
    let (status, dep) = app.post("/deployments/", body).await;
    assert_eq!(status, 201, "{dep}");
    let id = dep["id"].as_str().unwrap().to_owned();
    assert_eq!(dep["schedules"][0]["slug"], "hourly");
    for _ in 0..2 {
        let (status, _) = app.post(&format!("/deployments/{id}/schedule"), json!({})).await;
        assert_eq!(status, 200);
    }
    let (_, runs) = app.post("/flow_runs/filter", json!({"deployments": {"id": {"any_": [id]}}})).await;
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 3, "{runs:?}");
    for r in runs {
        assert_eq!(r["created_by"]["type"], "SCHEDULE");
        assert_eq!(r["created_by"]["display_value"], "hourly");
        assert_eq!(r["parameters"], json!({"x": 1}));
        assert_eq!(r["state_name"], "Scheduled");
        assert!(r["expected_start_time"].as_str().unwrap().ends_with(":00:00Z") || r["expected_start_time"].as_str().unwrap().contains(":00:00"));
    }
    let (status, schedules) = app.get(&format!("/deployments/{id}/schedules")).await;
    assert_eq!((status, schedules.as_array().unwrap().len()), (200, 1));
    let sid = schedules[0]["id"].as_str().unwrap();
    assert_eq!(app.patch(&format!("/deployments/{id}/schedules/{sid}"), json!({"active": false})).await, 204);
    let (_, runs) = app.post("/flow_runs/filter", json!({"deployments": {"id": {"any_": [id]}}})).await;
    assert_eq!(runs, json!([]), "deactivating a schedule drops its future runs");

    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
});

both_backends!(deployment_concurrency_limits_who_may_start, |app: TestApp| async move {
    let flow_id = app.create_flow("limited").await;
    let body = json!({"name": "one-at-a-time", "flow_id": flow_id, "concurrency_limit": 1, "enforce_parameter_schema": false});
    let (status, dep) = app.post("/deployments/", body).await;
    assert_eq!(status, 201, "{dep}");
    assert_eq!(dep["global_concurrency_limit"]["limit"], 1);
    let id = dep["id"].as_str().unwrap();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let (_, run) = app.post(&format!("/deployments/{id}/create_flow_run"), json!({})).await;
        runs.push(run["id"].as_str().unwrap().to_owned());
    }
    let (status, first) = app.set_state(&runs[0], "PENDING", false).await;
    assert_eq!((status, first["status"].clone()), (201, json!("ACCEPT")), "{first}");
    let (_, second) = app.set_state(&runs[1], "PENDING", false).await;
    assert_eq!(second["status"], "REJECT", "{second}");
    assert_eq!(second["state"]["name"], "AwaitingConcurrencySlot");
    // Finishing the first frees the slot.
    app.set_state(&runs[0], "RUNNING", false).await;
    app.set_state(&runs[0], "COMPLETED", false).await;
    let (_, retry) = app.set_state(&runs[1], "PENDING", false).await;
    assert_eq!(retry["status"], "ACCEPT", "{retry}");
});

both_backends!(bulk_routes_and_concurrency_status, |app: TestApp| async move {
    let flow_id = app.create_flow("bulk-flow").await;
    app.post("/work_pools/", json!({"name": "bulk-pool", "type": "process", "concurrency_limit": 5})).await;
    let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}}});
    let body = json!({"name": "bulk", "flow_id": flow_id, "work_pool_name": "bulk-pool", "parameter_openapi_schema": schema});
    let (_, dep) = app.post("/deployments/", body).await;
    let id = dep["id"].as_str().unwrap().to_owned();

    // Bulk create: one bad run does not stop the others.
    let (status, created) = app.post(&format!("/deployments/{id}/create_flow_run/bulk"), json!([{"parameters": {"n": 1}}, {"parameters": {"n": "x"}}, {}])).await;
    assert_eq!(status, 200, "{created}");
    let outcomes: Vec<&str> = created["results"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["CREATED", "FAILED", "CREATED"]);
    let too_many: Vec<Value> = (0..101).map(|_| json!({})).collect();
    assert_eq!(app.post(&format!("/deployments/{id}/create_flow_run/bulk"), json!(too_many)).await.0, 400);

    // One run claims a slot: the pool and its queue report it.
    let run_id = created["results"][0]["flow_run_id"].as_str().unwrap().to_owned();
    assert_eq!(app.set_state(&run_id, "PENDING", false).await.0, 201);
    let (status, pool_status) = app.post("/work_pools/bulk-pool/concurrency_status", json!({})).await;
    assert_eq!(status, 200, "{pool_status}");
    assert_eq!((pool_status["active_slots"].clone(), pool_status["concurrency_limit"].clone(), pool_status["count"].clone()), (json!(1), json!(5), json!(1)));
    assert_eq!(pool_status["queues"][0]["flow_runs"][0]["id"], json!(run_id));
    let queue_id = dep["work_queue_id"].as_str().unwrap();
    let (_, queue_status) = app.post(&format!("/work_queues/{queue_id}/concurrency_status"), json!({"page": 1, "limit": 10})).await;
    assert_eq!((queue_status["active_slots"].clone(), queue_status["pages"].clone()), (json!(1), json!(1)));
    assert_eq!(app.post("/work_pools/nope/concurrency_status", json!({})).await.0, 404);

    // Bulk delete by filter, capped at 50.
    assert_eq!(app.post("/deployments/bulk_delete", json!({"limit": 51})).await.0, 422);
    let (status, deleted) = app.post("/deployments/bulk_delete", json!({"deployments": {"name": {"any_": ["bulk"]}}})).await;
    assert_eq!((status, deleted["deleted"].clone()), (200, json!([id])));
    assert_eq!(app.get(&format!("/deployments/{id}")).await.0, 404);
});

/// The feed's events about `resource_id` (as resource or related), oldest
/// first, once `n` of them have it as their resource.
async fn feed_of(app: &TestApp, resource_id: &str, n: usize) -> Vec<Value> {
    app.wait_for(&format!("{n} events of {resource_id}"), || async {
        let (_, page) = app.post("/events/filter", json!({"filter": {"any_resource": {"id": [resource_id]}, "order": "ASC"}, "limit": 50})).await;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        (names(&events, resource_id).len() >= n).then_some(events)
    })
    .await
}

fn names(events: &[Value], resource_id: &str) -> Vec<String> {
    events.iter().filter(|e| e["resource"]["prefect.resource.id"] == resource_id).map(|e| e["event"].as_str().unwrap().to_owned()).collect()
}

both_backends!(changes_reach_the_feed_and_schedules_patch_by_slug, |app: TestApp| async move {
    let flow_id = app.create_flow("fed-flow").await;
    let (_, pool) = app.post("/work_pools/", json!({"name": "fed-pool", "type": "process"})).await;
    let pool_rid = format!("prefect.work-pool.{}", pool["id"].as_str().unwrap());
    let queue_rid = format!("prefect.work-queue.{}", pool["default_queue_id"].as_str().unwrap());
    let hourly = json!({"interval": 3600.0, "anchor_date": "2026-01-01T00:00:00Z", "timezone": "UTC"});
    let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
    let body = json!({
        "name": "fed", "flow_id": flow_id, "work_pool_name": "fed-pool", "tags": ["a"],
        "parameter_openapi_schema": schema, "enforce_parameter_schema": true,
        "schedules": [{"schedule": hourly, "slug": "a"}, {"schedule": hourly, "slug": "b"}],
    });
    let (status, dep) = app.post("/deployments/", body).await;
    assert_eq!(status, 201, "{dep}");
    let id = dep["id"].as_str().unwrap().to_owned();
    let dep_rid = format!("prefect.deployment.{id}");
    let slug_ids = |schedules: &Value| -> Vec<(String, String, bool)> {
        let mut v: Vec<_> = schedules.as_array().unwrap().iter().map(|s| (s["slug"].as_str().unwrap().to_owned(), s["id"].as_str().unwrap().to_owned(), s["active"].as_bool().unwrap())).collect();
        v.sort();
        v
    };
    let before = slug_ids(&dep["schedules"]);

    // Slugged schedules are patched in place; new slugs are created; the rest stay.
    let patch = json!({"description": "now described", "schedules": [{"slug": "b", "active": false}, {"slug": "c", "schedule": hourly}]});
    assert_eq!(app.patch(&format!("/deployments/{id}"), patch).await, 204);
    let after = slug_ids(&app.get(&format!("/deployments/{id}/schedules")).await.1);
    assert_eq!(after.len(), 3, "{after:?}");
    assert_eq!((after[0].clone(), after[1].0.clone(), after[1].1.clone(), after[1].2), (before[0].clone(), "b".to_owned(), before[1].1.clone(), false));
    assert_eq!(after[2].0, "c");
    // Renaming with `replaces` keeps the schedule's id.
    assert_eq!(app.patch(&format!("/deployments/{id}"), json!({"schedules": [{"slug": "a2", "replaces": "a"}]})).await, 204);
    let renamed = slug_ids(&app.get(&format!("/deployments/{id}/schedules")).await.1);
    assert_eq!((renamed[0].0.as_str(), renamed[0].1.as_str()), ("a2", before[0].1.as_str()));
    // Prefect's refusals: no slug, or a schedule-less new slug (422); parameters off the schema (409).
    let resp = app.client.patch(app.url(&format!("/deployments/{id}"))).json(&json!({"schedules": [{"schedule": hourly}]})).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    assert!(resp.text().await.unwrap().contains("Please provide a slug"));
    assert_eq!(app.patch(&format!("/deployments/{id}"), json!({"schedules": [{"slug": "new", "active": true}]})).await, 422);
    assert_eq!(app.patch(&format!("/deployments/{id}"), json!({"parameters": {"n": "x"}})).await, 409);
    assert_eq!(app.patch(&format!("/deployments/{id}"), json!({"parameters": {}})).await, 204, "defaults may leave required parameters to the run");
    assert_eq!(app.get(&format!("/deployments/{id}/schedules")).await.1.as_array().unwrap().len(), 3, "refused patches change nothing");

    // The deprecated work_queue_check lists the queues that would take the deployment.
    let (status, queues) = app.get(&format!("/deployments/{id}/work_queue_check")).await;
    assert_eq!(status, 200, "{queues}");
    assert!(queues.as_array().unwrap().iter().any(|q| q["id"] == dep["work_queue_id"] && q.get("status").is_none()), "{queues}");
    assert_eq!(app.get("/deployments/00000000-0000-0000-0000-000000000000/work_queue_check").await.0, 404);

    // A worker polls: pool, queue and deployment announce READY; the foreman,
    // with every poll judged too old, announces NOT_READY.
    app.post("/work_pools/fed-pool/workers/heartbeat", json!({"name": "w"})).await;
    assert_eq!(app.post("/work_pools/fed-pool/get_scheduled_flow_runs", json!({})).await.0, 200);
    let mut services = app.settings.services.clone();
    services.foreman_deployment_timeout = std::time::Duration::ZERO;
    services.foreman_queue_timeout = std::time::Duration::ZERO;
    services.foreman_heartbeat_multiple = 0;
    prefect_server::services::foreman::run_once(&app.db, &services).await.unwrap();

    let events = feed_of(&app, &dep_rid, 4).await;
    assert_eq!(names(&events, &dep_rid), ["prefect.deployment.created", "prefect.deployment.updated", "prefect.deployment.ready", "prefect.deployment.not-ready"]);
    let created = events.iter().find(|e| e["event"] == "prefect.deployment.created").unwrap();
    let roles: Vec<&str> = created["related"].as_array().unwrap().iter().map(|r| r["prefect.resource.role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["flow", "work-queue", "work-pool"]);
    let updated = events.iter().find(|e| e["event"] == "prefect.deployment.updated").unwrap();
    assert_eq!(updated["payload"]["updated_fields"], json!(["description"]));
    assert_eq!(updated["payload"]["updates"]["description"], json!({"from": null, "to": "now described"}));
    let queue_events = feed_of(&app, &queue_rid, 3).await;
    assert_eq!(names(&queue_events, &queue_rid), ["prefect.work-queue.created", "prefect.work-queue.ready", "prefect.work-queue.not-ready"]);
    let queue_created = queue_events.iter().find(|e| e["event"] == "prefect.work-queue.created").unwrap();
    assert_eq!(queue_created["related"][0]["prefect.resource.id"], json!(pool_rid));

    // Deleting the pool reports its queues deleted, then the pool.
    assert_eq!(app.delete("/work_pools/fed-pool").await.0, 204);
    let pool_events = feed_of(&app, &pool_rid, 5).await;
    assert_eq!(
        names(&pool_events, &pool_rid),
        ["prefect.work-pool.created", "prefect.work-pool.not-ready", "prefect.work-pool.ready", "prefect.work-pool.not-ready", "prefect.work-pool.deleted"]
    );
    assert_eq!(names(&feed_of(&app, &queue_rid, 4).await, &queue_rid).last().unwrap(), "prefect.work-queue.deleted");

    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
});
