//! Automations through the HTTP API (Prefect's `automations` and
//! `templates` routers) and the triggers service acting on them: CRUD with
//! Prefect's defaults and refusals, filters, ownership, feed events, replay,
//! and triggers that fire on what the server records and take their actions.

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::TestApp;

fn reactive_on(expect: &str) -> Value {
    json!({"type": "event", "posture": "Reactive", "expect": [expect], "match": {"prefect.resource.id": "prefect.flow-run.*"}})
}

async fn feed_events(app: &TestApp, prefix: &str) -> Vec<Value> {
    let (_, page) = app.post("/events/filter", json!({"filter": {"event": {"prefix": [prefix]}}, "limit": 50})).await;
    page["events"].as_array().cloned().unwrap_or_default()
}

async fn wait_for_event(app: &TestApp, name: &str, count: usize) -> Vec<Value> {
    app.wait_for(name, || async {
        let events: Vec<Value> = feed_events(app, name).await.into_iter().filter(|e| e["event"] == name).collect();
        (events.len() >= count).then_some(events)
    })
    .await
}

both_backends!(automations_are_created_read_replaced_and_deleted_like_prefect, |app: TestApp| async move {
    let sent_id = "00000000-0000-0000-0000-00000000000a";
    let mut trigger = reactive_on("prefect.flow-run.Failed");
    trigger["id"] = json!(sent_id);
    let (status, a) = app.post("/automations/", json!({"name": "on-failure", "tags": ["ops"], "trigger": trigger, "actions": [{"type": "do-nothing"}]})).await;
    assert_eq!(status, 201, "{a}");
    let keys: Vec<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["id", "created", "updated", "name", "description", "enabled", "tags", "trigger", "actions", "actions_on_trigger", "actions_on_resolve"]);
    assert_ne!(a["trigger"]["id"], json!(sent_id), "trigger ids are reset on create");
    assert_eq!(
        (a["description"].clone(), a["enabled"].clone(), a["trigger"]["threshold"].clone(), a["trigger"]["within"].clone(), a["trigger"]["after"].clone()),
        (json!(""), json!(true), json!(1), json!(0.0), json!([]))
    );
    let id = a["id"].as_str().unwrap().to_owned();
    let (status, read) = app.get(&format!("/automations/{id}")).await;
    assert_eq!((status, &read), (200, &a));

    // Refusals: 422 in FastAPI's shape, 404 for what is not there.
    let (status, body) = app.post("/automations/", json!({"name": "x", "actions": []})).await;
    assert_eq!((status, body["exception_detail"][0]["loc"].clone()), (422, json!(["body", "trigger"])));
    let (status, _) = app.post("/automations/", json!({"name": "x", "trigger": {"posture": "Metric"}, "actions": []})).await;
    assert_eq!(status, 422);
    let (status, body) = app.post("/automations/", json!({"name": "x", "trigger": {"posture": "Reactive"}, "actions": [], "colour": "red"})).await;
    assert_eq!((status, body["exception_detail"][0]["msg"].clone()), (422, json!("Extra inputs are not permitted")));
    let looping = json!({"name": "x", "trigger": {"posture": "Reactive", "expect": ["prefect.flow-run.Running"]}, "actions": [{"type": "run-deployment", "source": "inferred"}]});
    let (status, body) = app.post("/automations/", looping).await;
    assert_eq!(status, 422);
    assert!(body["exception_detail"][0]["msg"].as_str().unwrap().contains("infinite loop"), "{body}");
    let (status, _) = app.get("/automations/00000000-0000-0000-0000-000000000001").await;
    assert_eq!(status, 404);
    let (status, _) = app.get("/automations/not-a-uuid").await;
    assert_eq!(status, 404);

    // PUT replaces (new trigger ids), PATCH only toggles `enabled`.
    let (status, _) = app
        .call(Method::PUT, &format!("/automations/{id}"), Some(json!({"name": "renamed", "trigger": reactive_on("prefect.flow-run.Crashed"), "actions": [{"type": "do-nothing"}]})))
        .await;
    assert_eq!(status, 204);
    let (_, replaced) = app.get(&format!("/automations/{id}")).await;
    assert_eq!((replaced["name"].clone(), replaced["trigger"]["expect"].clone(), replaced["tags"].clone()), (json!("renamed"), json!(["prefect.flow-run.Crashed"]), json!([])));
    assert_ne!(replaced["trigger"]["id"], a["trigger"]["id"]);
    let (status, _) = app.call(Method::PATCH, &format!("/automations/{id}"), Some(json!({"enabled": false}))).await;
    assert_eq!(status, 204);
    let (status, _) = app.call(Method::PATCH, &format!("/automations/{id}"), Some(json!({"name": "nope"}))).await;
    assert_eq!(status, 422);
    let (_, patched) = app.get(&format!("/automations/{id}")).await;
    assert_eq!((patched["enabled"].clone(), patched["name"].clone()), (json!(false), json!("renamed")));
    let (status, _) = app.call(Method::PATCH, "/automations/00000000-0000-0000-0000-000000000001", Some(json!({"enabled": true}))).await;
    assert_eq!(status, 404);

    // Filters, sorts and counts.
    for (name, tags) in [("b-second", json!(["ops", "nightly"])), ("a-first", json!([]))] {
        let (status, _) = app.post("/automations/", json!({"name": name, "tags": tags, "trigger": {"posture": "Reactive"}, "actions": []})).await;
        assert_eq!(status, 201);
    }
    let names = |list: &Value| list.as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    let (_, all) = app.post("/automations/filter", json!({})).await;
    assert_eq!(names(&all), ["a-first", "b-second", "renamed"]);
    let (_, desc) = app.post("/automations/filter", json!({"sort": "NAME_DESC", "limit": 2})).await;
    assert_eq!(names(&desc), ["renamed", "b-second"]);
    let (_, tagged) = app.post("/automations/filter", json!({"automations": {"tags": {"all_": ["ops", "nightly"]}}})).await;
    assert_eq!(names(&tagged), ["b-second"]);
    let (_, named) = app.post("/automations/filter", json!({"automations": {"name": {"any_": ["renamed"]}}})).await;
    assert_eq!(names(&named), ["renamed"]);
    let (_, count) = app.post("/automations/count", json!({"automations": {"tags": {"is_null_": true}}})).await;
    assert_eq!(count, json!(2));
    let (status, _) = app.post("/automations/filter", json!({"sort": "SIDEWAYS"})).await;
    assert_eq!(status, 422);

    // Ownership and relations: an owner's automations go with it.
    let deployment = "prefect.deployment.00000000-0000-0000-0000-0000000000d1";
    let (status, owned) = app.post("/automations/", json!({"name": "owned", "owner_resource": deployment, "trigger": {"posture": "Reactive"}, "actions": []})).await;
    assert_eq!(status, 201);
    assert!(owned.get("owner_resource").is_none(), "Prefect's Automation has no owner field");
    let run_it = json!({"type": "run-deployment", "deployment_id": "00000000-0000-0000-0000-0000000000d1"});
    let (_, selects) = app.post("/automations/", json!({"name": "selects", "trigger": {"posture": "Reactive", "expect": ["x"]}, "actions": [run_it]})).await;
    let (_, related) = app.get(&format!("/automations/related-to/{deployment}")).await;
    assert_eq!(names(&related).len(), 2, "{related}");
    let (status, _) = app.call(Method::DELETE, &format!("/automations/owned-by/{deployment}"), None).await;
    assert_eq!(status, 202);
    let (_, related) = app.get(&format!("/automations/related-to/{deployment}")).await;
    assert_eq!(names(&related), ["selects"]);
    let (status, _) = app.get(&format!("/automations/{}", owned["id"].as_str().unwrap())).await;
    assert_eq!(status, 404);
    let _ = selects;

    // Delete: 204, then 404.
    let (status, _) = app.call(Method::DELETE, &format!("/automations/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, _) = app.call(Method::DELETE, &format!("/automations/{id}"), None).await;
    assert_eq!(status, 404);

    // Lifecycle events reach the feed, with the automation as payload.
    let created = wait_for_event(&app, "prefect.automation.created", 5).await;
    let first = created.iter().find(|e| e["resource"]["prefect.resource.id"] == json!(format!("prefect.automation.{id}"))).expect("created event");
    assert_eq!((first["resource"]["prefect.resource.name"].clone(), first["payload"]["name"].clone()), (json!("on-failure"), json!("on-failure")));
    wait_for_event(&app, "prefect.automation.updated", 2).await;
    wait_for_event(&app, "prefect.automation.deleted", 1).await;

    // The read model is rebuilt from the log to the same state.
    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
});

both_backends!(templates_are_validated_like_prefect, |app: TestApp| async move {
    for path in ["/templates/validate", "/automations/templates/validate"] {
        let (status, _) = app.post(path, json!("Hello {{ flow_run.name }}")).await;
        assert_eq!(status, 204);
        let (status, body) = app.post(path, json!("line one\n{{ broken ")).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!((body["error"]["line"].clone(), body["error"]["source"].clone()), (json!(2), json!("line one\n{{ broken ")));
        assert!(body["error"]["message"].is_string());
    }
});

/// A work pool, a queue-less deployment of a flow, and a flow run of it.
async fn pool_and_deployment(app: &TestApp) -> (String, String, String) {
    let (status, pool) = app.post("/work_pools/", json!({"name": "auto-pool", "type": "process"})).await;
    assert_eq!(status, 201, "{pool}");
    let flow_id = app.create_flow("auto-flow").await;
    let (status, deployment) = app.post("/deployments/", json!({"name": "auto-dep", "flow_id": flow_id, "work_pool_name": "auto-pool", "parameter_openapi_schema": {"type": "object", "properties": {}}})).await;
    assert!(status == 200 || status == 201, "{deployment}");
    (pool["id"].as_str().unwrap().to_owned(), deployment["id"].as_str().unwrap().to_owned(), flow_id)
}

both_backends!(a_reactive_automation_acts_when_a_run_fails, |app: TestApp| async move {
    let (pool_id, deployment_id, flow_id) = pool_and_deployment(&app).await;
    let automation = json!({
        "name": "recover",
        "trigger": reactive_on("prefect.flow-run.Failed"),
        "actions": [
            {"type": "pause-work-pool", "work_pool_id": pool_id},
            {"type": "run-deployment", "deployment_id": deployment_id, "parameters": {"failed": "{{ flow_run.name }}", "resource": "{{ event.resource.id }}", "n": "{{ labels | length }}"}},
            {"type": "send-notification", "block_document_id": "00000000-0000-0000-0000-0000000000b1", "body": "failed"},
        ],
    });
    let (status, a) = app.post("/automations/", automation).await;
    assert_eq!(status, 201, "{a}");
    let automation_id = a["id"].as_str().unwrap().to_owned();

    // A run that completes does not fire it; one that fails does.
    let ok_run = app.create_flow_run(&flow_id).await;
    app.set_state(ok_run["id"].as_str().unwrap(), "COMPLETED", true).await;
    let failing = app.create_flow_run(&flow_id).await;
    let failing_id = failing["id"].as_str().unwrap().to_owned();
    let (status, _) = app.set_state(&failing_id, "FAILED", true).await;
    assert_eq!(status, 201);

    let triggered = wait_for_event(&app, "prefect.automation.triggered", 1).await;
    assert_eq!(triggered.len(), 1, "only the failed run fires it");
    assert_eq!(triggered[0]["resource"]["prefect.resource.id"], json!(format!("prefect.automation.{automation_id}")));
    assert_eq!(triggered[0]["payload"]["triggering_event"]["resource"]["prefect.resource.id"], json!(format!("prefect.flow-run.{failing_id}")));

    let executed = wait_for_event(&app, "prefect.automation.action.executed", 2).await;
    let mut kinds: Vec<&str> = executed.iter().map(|e| e["payload"]["action_type"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(kinds, ["pause-work-pool", "run-deployment"]);
    let failed = wait_for_event(&app, "prefect.automation.action.failed", 1).await;
    assert_eq!(failed[0]["payload"]["action_type"], json!("send-notification"));
    assert!(failed[0]["payload"]["reason"].as_str().unwrap().contains("notifications"));

    // The actions' effects are real changes, made through the log.
    let (_, pool) = app.get("/work_pools/auto-pool").await;
    assert_eq!(pool["is_paused"], json!(true));
    let (_, runs) = app.post("/flow_runs/filter", json!({"flow_runs": {"deployment_id": {"any_": [deployment_id]}}})).await;
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["state"]["type"], json!("SCHEDULED"));
    assert!(runs[0]["idempotency_key"].as_str().unwrap().starts_with(&format!("automation {automation_id}, action 1, invocation ")));
    assert_eq!(runs[0]["created_by"], json!({"id": automation_id, "type": "AUTOMATION", "display_value": "recover"}));
    // Its state events relate it to its deployment, queue, pool and flow,
    // and to the automation as its creator (Prefect's related resources).
    let run_id = runs[0]["id"].as_str().unwrap().to_owned();
    let (_, page) = app.post("/events/filter", json!({"filter": {"resource": {"id": [format!("prefect.flow-run.{run_id}")]}}})).await;
    let related = page["events"][0]["related"].as_array().cloned().unwrap_or_default();
    let roles: Vec<&str> = related.iter().map(|r| r["prefect.resource.role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["flow", "deployment", "work-queue", "work-pool", "creator"], "{related:?}");
    assert_eq!(related[3]["prefect.work-pool.type"], json!("process"));
    assert_eq!(related[4]["prefect.resource.id"], json!(format!("prefect.automation.{automation_id}")));
    // Its parameters were rendered with the triggering event and its run.
    assert_eq!(runs[0]["parameters"], json!({"failed": failing["name"], "resource": format!("prefect.flow-run.{failing_id}"), "n": 0}));

    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
});

both_backends!(a_threshold_counts_events_per_bucketing_label, |app: TestApp| async move {
    let flow_id = app.create_flow("counted").await;
    let (status, _) = app
        .post("/automations/", json!({
            "name": "twice-per-run",
            "trigger": {"posture": "Reactive", "expect": ["prefect.flow-run.Running", "prefect.flow-run.Completed"], "match": {"prefect.resource.id": "prefect.flow-run.*"},
                        "for_each": ["prefect.resource.id"], "threshold": 2, "within": 3600},
            "actions": [{"type": "do-nothing"}],
        }))
        .await;
    assert_eq!(status, 201);
    // Two runs that start: no bucket reaches two...
    let a = app.create_flow_run(&flow_id).await;
    let b = app.create_flow_run(&flow_id).await;
    let (a, b) = (a["id"].as_str().unwrap().to_owned(), b["id"].as_str().unwrap().to_owned());
    app.set_state(&a, "RUNNING", true).await;
    app.set_state(&b, "RUNNING", true).await;
    // ...until one of them completes.
    app.set_state(&a, "COMPLETED", true).await;
    let triggered = wait_for_event(&app, "prefect.automation.triggered", 1).await;
    assert_eq!(triggered[0]["payload"]["triggering_labels"], json!({"prefect.resource.id": format!("prefect.flow-run.{a}")}));
    // The action's events come after the triggered one: once they are in
    // the feed, the service has evaluated every earlier event too.
    wait_for_event(&app, "prefect.automation.action.executed", 1).await;
    assert_eq!(feed_events(&app, "prefect.automation.triggered").await.len(), 1);
});

both_backends!(a_proactive_automation_fires_when_an_event_does_not_come, |app: TestApp| async move {
    let (pool_id, _, _) = pool_and_deployment(&app).await;
    let (status, a) = app
        .post("/automations/", json!({
            "name": "silence",
            "trigger": {"posture": "Proactive", "expect": ["never.happens"], "within": 10},
            "actions": [{"type": "pause-work-pool", "work_pool_id": pool_id}],
        }))
        .await;
    assert_eq!(status, 201);
    assert_eq!(a["trigger"]["within"], json!(10.0));
    let triggered = wait_for_event(&app, "prefect.automation.triggered", 1).await;
    assert_eq!(triggered[0]["resource"]["prefect.posture"], json!("Proactive"));
    app.wait_for("the pool to be paused", || async {
        let (_, pool) = app.get("/work_pools/auto-pool").await;
        (pool["is_paused"] == json!(true)).then_some(())
    })
    .await;
});
