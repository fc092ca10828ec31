//! Global (v2) concurrency limits: CRUD, slots with and without leases,
//! lease expiry, deployment limits, and a rebuild from the log.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::TestApp;

impl TestApp {
    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value, Option<String>) {
        let resp = self.client.request(method, self.url(path)).json(&body).send().await.unwrap();
        let status = resp.status().as_u16();
        let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null), retry)
    }

    async fn limit(&self, name: &str) -> Value {
        let (status, limit) = self.get(&format!("/v2/concurrency_limits/{name}")).await;
        assert_eq!(status, 200, "{limit}");
        limit
    }
}

both_backends!(limits_crud_by_id_and_name, |app: TestApp| async move {
    let (status, created) = app.post("/v2/concurrency_limits/", json!({"name": "db", "limit": 2})).await;
    assert_eq!(status, 201, "{created}");
    let keys: Vec<&str> = created.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["id", "created", "updated", "active", "name", "limit", "active_slots", "denied_slots", "slot_decay_per_second", "avg_slot_occupancy_seconds"]);
    assert_eq!((created["active"].clone(), created["avg_slot_occupancy_seconds"].clone()), (json!(true), json!(2.0)));
    let id = created["id"].as_str().unwrap().to_owned();

    let (status, dup) = app.post("/v2/concurrency_limits/", json!({"name": "db", "limit": 5})).await;
    assert_eq!(status, 409, "{dup}");
    let (status, bad) = app.post("/v2/concurrency_limits/", json!({"name": "neg", "limit": -1})).await;
    assert_eq!((status, bad["exception_detail"][0]["type"].clone()), (422, json!("greater_than_equal")), "{bad}");
    let (status, bad) = app.post("/v2/concurrency_limits/", json!({"name": "a/b", "limit": 1})).await;
    assert_eq!(status, 422, "{bad}");

    let by_id = app.limit(&id).await;
    assert_eq!(by_id, app.limit("db").await);
    let keys: Vec<&str> = by_id.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["id", "created", "updated", "active", "name", "limit", "active_slots", "slot_decay_per_second"]);

    let (status, _, _) = app.send(reqwest::Method::PATCH, "/v2/concurrency_limits/db", json!({"limit": 3, "active": false})).await;
    assert_eq!(status, 204);
    let after = app.limit(&id).await;
    assert_eq!((after["limit"].clone(), after["active"].clone()), (json!(3), json!(false)));
    let (status, _, _) = app.send(reqwest::Method::PATCH, "/v2/concurrency_limits/nope", json!({"limit": 3})).await;
    assert_eq!(status, 404);

    app.post("/v2/concurrency_limits/", json!({"name": "api", "limit": 1})).await;
    let (_, all) = app.post("/v2/concurrency_limits/filter", json!({})).await;
    let names: Vec<&str> = all.as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["api", "db"]);

    let (status, _, _) = app.send(reqwest::Method::DELETE, &format!("/v2/concurrency_limits/{id}"), json!(null)).await;
    assert_eq!(status, 204);
    let (status, gone) = app.get("/v2/concurrency_limits/db").await;
    assert_eq!((status, gone), (404, json!({"detail": "Concurrency Limit not found"})));
    let kinds = app
        .wait_for("the limit's feed events", || async {
            let (_, feed) = app.post("/events/filter", json!({"filter": {"event": {"prefix": ["prefect.concurrency-limit."]}, "order": "ASC"}})).await;
            let kinds: Vec<String> = feed["events"].as_array()?.iter().filter_map(|e| e["event"].as_str().map(str::to_owned)).collect();
            (kinds.len() == 4).then_some(kinds)
        })
        .await;
    let expected = ["created", "updated", "created", "deleted"].map(|a| format!("prefect.concurrency-limit.{a}"));
    assert_eq!(kinds, expected);
});

both_backends!(slots_are_taken_refused_and_released, |app: TestApp| async move {
    app.post("/v2/concurrency_limits/", json!({"name": "tag:db", "limit": 2})).await;
    let inc = |slots: i64| json!({"names": ["tag:db", "tag:unknown"], "slots": slots, "mode": "concurrency"});

    let (status, taken, _) = app.send(reqwest::Method::POST, "/v2/concurrency_limits/increment", inc(1)).await;
    assert_eq!(status, 200, "{taken}");
    assert_eq!(taken.as_array().unwrap().len(), 1);
    assert_eq!(taken[0]["name"], "tag:db");

    let holder = json!({"type": "task_run", "id": uuid::Uuid::now_v7()});
    let (status, leased, _) = app
        .send(reqwest::Method::POST, "/v2/concurrency_limits/increment-with-lease", json!({"names": ["tag:db"], "slots": 1, "lease_duration": 60, "holder": holder}))
        .await;
    assert_eq!(status, 200, "{leased}");
    let lease_id = leased["lease_id"].as_str().unwrap().to_owned();
    assert_eq!(app.limit("tag:db").await["active_slots"], 2);

    let (status, body, retry) = app.send(reqwest::Method::POST, "/v2/concurrency_limits/increment", inc(1)).await;
    assert_eq!(status, 423, "{body}");
    let wait: f64 = retry.expect("Retry-After").parse().unwrap();
    assert!(wait > 0.0 && wait <= 13.0, "{wait}");
    let (status, body, _) = app.send(reqwest::Method::POST, "/v2/concurrency_limits/increment", inc(3)).await;
    assert_eq!((status, body), (422, json!({"detail": "Slots requested is greater than the limit"})));
    let (status, body, _) = app.send(reqwest::Method::POST, "/v2/concurrency_limits/increment", json!({"names": ["tag:db"], "slots": 1, "mode": "rate_limit"})).await;
    assert_eq!(status, 422, "{body}");
    let (status, body, _) = app.send(reqwest::Method::POST, "/v2/concurrency_limits/increment", json!({"names": [], "slots": 0})).await;
    let types: Vec<&str> = body["exception_detail"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!((status, types), (422, vec!["greater_than", "too_short"]));

    // Renew, release, and a second release is a no-op; a released lease
    // cannot be renewed.
    let renew = format!("/v2/concurrency_limits/leases/{lease_id}/renew");
    assert_eq!(app.send(reqwest::Method::POST, &renew, json!({"lease_duration": 120})).await.0, 204);
    let release = json!({"lease_id": lease_id});
    assert_eq!(app.send(reqwest::Method::POST, "/v2/concurrency_limits/decrement-with-lease", release.clone()).await.0, 204);
    assert_eq!(app.send(reqwest::Method::POST, "/v2/concurrency_limits/decrement-with-lease", release).await.0, 204);
    let (status, gone, _) = app.send(reqwest::Method::POST, &renew, json!({"lease_duration": 120})).await;
    assert_eq!((status, gone), (410, json!({"detail": "Lease not found - it may have expired or been revoked"})));
    assert_eq!(app.limit("tag:db").await["active_slots"], 1);

    let (status, body, _) = app.send(reqwest::Method::POST, "/v2/concurrency_limits/decrement", json!({"names": ["tag:db"], "slots": 1, "occupancy_seconds": 4.0})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.limit("tag:db").await["active_slots"], 0);

    // No limit by those names: a lease id, no limits, nothing stored.
    let (status, none, _) = app.send(reqwest::Method::POST, "/v2/concurrency_limits/increment-with-lease", json!({"names": ["tag:none"], "slots": 1})).await;
    assert_eq!((status, none["limits"].clone()), (200, json!([])), "{none}");

    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
});

both_backends!(an_expired_lease_frees_its_slots_and_the_repossessor_ends_it, |app: TestApp| async move {
    use prefect_server::commands::concurrency_limits::{increment, revoke_expired, Increment, Incremented};
    use prefect_server::orchestration::concurrency_limits::{Mode, WaitSettings};
    app.post("/v2/concurrency_limits/", json!({"name": "one", "limit": 1})).await;
    // A holder that stops renewing: a lease of a few milliseconds.
    let req = Increment { names: vec!["one".into()], slots: 1, mode: Mode::Concurrency, lease: Some((0.005, Value::Null)) };
    let Incremented::Granted { lease_id: Some(lease_id), .. } = increment(&app.db, req, WaitSettings::default()).await.unwrap() else { panic!("not granted") };
    app.wait_for("the lease to lapse", || async { (app.limit("one").await["active_slots"] == 0).then_some(()) }).await;
    let (status, taken, _) = app.send(reqwest::Method::POST, "/v2/concurrency_limits/increment-with-lease", json!({"names": ["one"], "slots": 1})).await;
    assert_eq!(status, 200, "the expired lease no longer holds the slot: {taken}");

    // The app's own repossessor may end the lease first; either way it ends once.
    revoke_expired(&app.db, 100, WaitSettings::default()).await.unwrap();
    use sqlx::Row;
    let sql = app.db.q("SELECT COUNT(*) FROM es_events WHERE stream_type = 'concurrency_lease' AND CAST(stream_id AS TEXT) = $1 AND event_type LIKE '%.deleted'");
    let ended: i64 = sqlx::query(&sql).bind(lease_id.to_string()).fetch_one(app.db.reader()).await.unwrap().try_get(0).unwrap();
    assert_eq!(ended, 1, "the lease's end is in the log, once");
    let renew = format!("/v2/concurrency_limits/leases/{lease_id}/renew");
    assert_eq!(app.send(reqwest::Method::POST, &renew, json!({})).await.0, 410);
    assert_eq!(revoke_expired(&app.db, 100, WaitSettings::default()).await.unwrap(), 0, "the live lease stays");
    assert_eq!(app.limit("one").await["active_slots"], 1);

    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
});

both_backends!(a_deployment_limit_follows_its_runs_and_its_deployment, |app: TestApp| async move {
    let flow_id = app.create_flow("gcl").await;
    let body = json!({"name": "limited", "flow_id": flow_id, "concurrency_limit": 2, "enforce_parameter_schema": false});
    let (_, dep) = app.post("/deployments/", body).await;
    let id = dep["id"].as_str().unwrap().to_owned();
    let gcl = &dep["global_concurrency_limit"];
    assert_eq!((dep["concurrency_limit"].clone(), gcl["name"].clone(), gcl["limit"].clone(), gcl["active_slots"].clone()), (Value::Null, json!(format!("deployment:{id}")), json!(2), json!(0)), "{dep}");

    let (_, run) = app.post(&format!("/deployments/{id}/create_flow_run"), json!({})).await;
    let run = run["id"].as_str().unwrap().to_owned();
    app.set_state(&run, "PENDING", false).await;
    assert_eq!(app.limit(&format!("deployment:{id}")).await["active_slots"], 1);
    // A slot taken through the v2 routes counts against the deployment too.
    let (status, _, _) = app.send(reqwest::Method::POST, "/v2/concurrency_limits/increment", json!({"names": [format!("deployment:{id}")], "slots": 1})).await;
    assert_eq!(status, 200);
    let (_, second) = app.post(&format!("/deployments/{id}/create_flow_run"), json!({})).await;
    let (_, refused) = app.set_state(second["id"].as_str().unwrap(), "PENDING", false).await;
    assert_eq!((refused["status"].clone(), refused["state"]["name"].clone()), (json!("REJECT"), json!("AwaitingConcurrencySlot")), "{refused}");

    assert_eq!(app.send(reqwest::Method::PATCH, &format!("/deployments/{id}"), json!({"concurrency_limit": 5})).await.0, 204);
    let (_, dep) = app.get(&format!("/deployments/{id}")).await;
    assert_eq!((dep["global_concurrency_limit"]["limit"].clone(), dep["global_concurrency_limit"]["active_slots"].clone()), (json!(5), json!(2)));
    assert_eq!(app.send(reqwest::Method::PATCH, &format!("/deployments/{id}"), json!({"concurrency_limit": null})).await.0, 204);
    let (_, dep) = app.get(&format!("/deployments/{id}")).await;
    assert_eq!(dep["global_concurrency_limit"], Value::Null);
    assert_eq!(app.get(&format!("/v2/concurrency_limits/deployment:{id}")).await.0, 404);

    assert_eq!(app.send(reqwest::Method::PATCH, &format!("/deployments/{id}"), json!({"concurrency_limit": 1})).await.0, 204);
    assert_eq!(app.send(reqwest::Method::DELETE, &format!("/deployments/{id}"), json!(null)).await.0, 204);
    assert_eq!(app.get(&format!("/v2/concurrency_limits/deployment:{id}")).await.0, 404, "the limit goes with its deployment");

    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
});

both_backends!(task_runs_take_tag_slots_through_set_state, |app: TestApp| async move {
    app.post("/concurrency_limits/", json!({"tag": "gpu", "concurrency_limit": 1})).await;
    let flow_id = app.create_flow("tagged").await;
    let run = app.create_flow_run(&flow_id).await;
    let run_id = run["id"].as_str().unwrap();
    app.set_state(run_id, "RUNNING", false).await;
    let mut tasks = Vec::new();
    for key in ["a", "b"] {
        let (_, tr) = app.post("/task_runs/", json!({"flow_run_id": run_id, "task_key": key, "dynamic_key": "0", "tags": ["gpu", "other"]})).await;
        tasks.push(tr["id"].as_str().unwrap().to_owned());
    }
    let propose = |state: &str| json!({"state": {"type": state}});
    let (_, first) = app.post(&format!("/task_runs/{}/set_state", tasks[0]), propose("RUNNING")).await;
    assert_eq!(first["status"], "ACCEPT", "{first}");
    let (_, v1) = app.get("/concurrency_limits/tag/gpu").await;
    assert_eq!(v1["active_slots"], json!([tasks[0]]));

    let (_, second) = app.post(&format!("/task_runs/{}/set_state", tasks[1]), propose("RUNNING")).await;
    assert_eq!((second["status"].clone(), second["details"]["reason"].clone()), (json!("WAIT"), json!("Concurrency limit reached for tags: gpu")), "{second}");
    let (_, waiting) = app.get(&format!("/task_runs/{}", tasks[1])).await;
    assert_ne!(waiting["state_type"], "RUNNING", "a WAIT writes nothing: {waiting}");

    let (_, done) = app.post(&format!("/task_runs/{}/set_state", tasks[0]), propose("COMPLETED")).await;
    assert_eq!(done["status"], "ACCEPT");
    assert_eq!(app.limit("tag:gpu").await["active_slots"], 0, "leaving RUNNING releases the slot");
    let (_, retried) = app.post(&format!("/task_runs/{}/set_state", tasks[1]), propose("RUNNING")).await;
    assert_eq!(retried["status"], "ACCEPT", "{retried}");

    app.post("/concurrency_limits/", json!({"tag": "other", "concurrency_limit": 0})).await;
    let (_, tr) = app.post("/task_runs/", json!({"flow_run_id": run_id, "task_key": "c", "dynamic_key": "0", "tags": ["other"]})).await;
    let (_, aborted) = app.post(&format!("/task_runs/{}/set_state", tr["id"].as_str().unwrap()), propose("RUNNING")).await;
    assert_eq!(aborted["status"], "ABORT", "{aborted}");
    assert_eq!(aborted["details"]["reason"], "The concurrency limit on tag \"other\" is 0 and will deadlock if the task tries to run again.");

    // The v1 route checks every zero limit before any availability, as
    // Prefect does: `gpu` is full, but the answer names `other`'s 0.
    let body = json!({"names": ["gpu", "other"], "task_run_id": uuid::Uuid::new_v4()});
    let (status, refused, retry) = app.send(reqwest::Method::POST, "/concurrency_limits/increment", body).await;
    assert_eq!(status, 423, "{refused}");
    assert_eq!(refused["detail"], "The concurrency limit on tag \"other\" is 0 and will deadlock if the task tries to run again.");
    assert!(retry.is_none(), "a zero limit is not worth retrying: {retry:?}");

    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
});
