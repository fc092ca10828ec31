//! Variables through the HTTP API (Prefect's `variables` router), and
//! parameter hydration on deployment runs and updates (json, jinja and
//! workspace variables), with replay of everything they wrote.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::TestApp;

fn names(list: &Value) -> Vec<&str> {
    list.as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect()
}

both_backends!(variables_answer_like_prefect, |app: TestApp| async move {
    // Create: 201 with Prefect's shape; any JSON value.
    let (status, a) = app.post("/variables/", json!({"name": "alpha", "value": {"k": [1, "two"]}, "tags": ["x", "y"]})).await;
    assert_eq!(status, 201, "{a}");
    let keys: Vec<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["id", "created", "updated", "name", "value", "tags"]);
    assert_eq!((a["name"].clone(), a["value"].clone(), a["tags"].clone()), (json!("alpha"), json!({"k": [1, "two"]}), json!(["x", "y"])));
    let (status, b) = app.post("/variables/", json!({"name": "beta", "value": "plain", "tags": ["x"]})).await;
    assert_eq!(status, 201, "{b}");
    let (status, c) = app.post("/variables/", json!({"name": "gamma_1", "value": null})).await;
    assert_eq!(status, 201, "{c}");
    assert_eq!((c["value"].clone(), c["tags"].clone()), (Value::Null, json!([])));

    // 409 on a taken name, with Prefect's message.
    let (status, body) = app.post("/variables/", json!({"name": "alpha", "value": 1})).await;
    assert_eq!((status, body["detail"].clone()), (409, json!("A variable with the name 'alpha' already exists.")));

    // 422: name rules, missing value, value size, unknown fields.
    let (status, body) = app.post("/variables/", json!({"name": "Bad Name", "value": 1})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["exception_detail"][0]["loc"], json!(["body", "name"]));
    assert_eq!(
        body["exception_detail"][0]["msg"],
        json!("Value error, Variable name must only contain lowercase letters, numbers, and dashes or underscores.")
    );
    let (status, body) = app.post("/variables/", json!({"name": "a".repeat(256), "value": 1})).await;
    assert_eq!((status, body["exception_detail"][0]["msg"].clone()), (422, json!("String should have at most 255 characters")));
    let (status, body) = app.post("/variables/", json!({"name": "novalue"})).await;
    assert_eq!((status, body["exception_detail"][0]["loc"].clone()), (422, json!(["body", "value"])), "{body}");
    let (status, body) = app.post("/variables/", json!({"name": "big", "value": "x".repeat(5000)})).await;
    assert_eq!((status, body["exception_detail"][0]["msg"].clone()), (422, json!("Value error, Variable value must be less than 5000 characters")));
    let (status, _) = app.post("/variables/", json!({"name": "extra", "value": 1, "colour": "red"})).await;
    assert_eq!(status, 422);

    // Reads by id and by name; 404s.
    let a_id = a["id"].as_str().unwrap().to_owned();
    let (status, got) = app.get(&format!("/variables/{a_id}")).await;
    assert_eq!((status, got.clone()), (200, a.clone()));
    let (status, got) = app.get("/variables/name/beta").await;
    assert_eq!((status, got["value"].clone()), (200, json!("plain")));
    let (status, body) = app.get("/variables/name/missing").await;
    assert_eq!((status, body), (404, json!({"detail": "Variable not found."})));
    let (status, body) = app.get(&format!("/variables/{}", uuid::Uuid::new_v4())).await;
    assert_eq!((status, body), (404, json!({"detail": "Variable not found."})));

    // Filter, sort, paging, count.
    let (_, all) = app.post("/variables/filter", json!({})).await;
    assert_eq!(names(&all), ["alpha", "beta", "gamma_1"]);
    let (_, desc) = app.post("/variables/filter", json!({"sort": "NAME_DESC", "limit": 2})).await;
    assert_eq!(names(&desc), ["gamma_1", "beta"]);
    let (_, newest) = app.post("/variables/filter", json!({"sort": "CREATED_DESC", "offset": 1})).await;
    assert_eq!(names(&newest), ["beta", "alpha"]);
    let (_, tagged) = app.post("/variables/filter", json!({"variables": {"tags": {"all_": ["x", "y"]}}})).await;
    assert_eq!(names(&tagged), ["alpha"]);
    let (_, untagged) = app.post("/variables/filter", json!({"variables": {"tags": {"is_null_": true}}})).await;
    assert_eq!(names(&untagged), ["gamma_1"]);
    let (_, like) = app.post("/variables/filter", json!({"variables": {"name": {"like_": "ET"}}})).await;
    assert_eq!(names(&like), ["beta"]);
    let (_, by_id) = app.post("/variables/filter", json!({"variables": {"id": {"any_": [a_id]}, "name": {"any_": ["alpha", "beta"]}}})).await;
    assert_eq!(names(&by_id), ["alpha"]);
    let (_, either) = app.post("/variables/filter", json!({"variables": {"operator": "or_", "name": {"any_": ["beta"]}, "tags": {"is_null_": true}}})).await;
    assert_eq!(names(&either), ["beta", "gamma_1"]);
    let (status, body) = app.post("/variables/filter", json!({"sort": "SIDEWAYS"})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["exception_detail"][0]["msg"], json!("Input should be 'CREATED_DESC', 'UPDATED_DESC', 'NAME_DESC' or 'NAME_ASC'"));
    let (status, _) = app.post("/variables/filter", json!({"variables": {"colour": {"any_": ["x"]}}})).await;
    assert_eq!(status, 422);
    let (_, n) = app.post("/variables/count", json!({"variables": {"tags": {"all_": ["x"]}}})).await;
    assert_eq!(n, 2);
    let (_, n) = app.post("/variables/count", json!({})).await;
    assert_eq!(n, 3);

    // Updates by id and by name (204); only sent fields change.
    let (status, _) = app.call(reqwest::Method::PATCH, &format!("/variables/{a_id}"), Some(json!({"value": [1, 2, 3]}))).await;
    assert_eq!(status, 204);
    let (_, got) = app.get(&format!("/variables/{a_id}")).await;
    assert_eq!((got["value"].clone(), got["tags"].clone()), (json!([1, 2, 3]), json!(["x", "y"])));
    let (status, _) = app.call(reqwest::Method::PATCH, "/variables/name/beta", Some(json!({"name": "beta2", "tags": []}))).await;
    assert_eq!(status, 204);
    let (_, got) = app.get("/variables/name/beta2").await;
    assert_eq!((got["value"].clone(), got["tags"].clone()), (json!("plain"), json!([])));
    let (status, body) = app.call(reqwest::Method::PATCH, "/variables/name/beta2", Some(json!({"name": "alpha"}))).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = app.call(reqwest::Method::PATCH, "/variables/name/nope", Some(json!({"value": 1}))).await;
    assert_eq!((status, body), (404, json!({"detail": "Variable not found."})));
    let (status, _) = app.call(reqwest::Method::PATCH, "/variables/name/beta2", Some(json!({"name": "UPPER"}))).await;
    assert_eq!(status, 422);

    // Deletes by id and by name (204), then 404.
    let (status, _) = app.call(reqwest::Method::DELETE, "/variables/name/beta2", None).await;
    assert_eq!(status, 204);
    let (status, body) = app.call(reqwest::Method::DELETE, "/variables/name/beta2", None).await;
    assert_eq!((status, body), (404, json!({"detail": "Variable not found."})));
    let (status, _) = app.call(reqwest::Method::DELETE, &format!("/variables/{a_id}"), None).await;
    assert_eq!(status, 204);
    let (_, left) = app.post("/variables/filter", json!({})).await;
    assert_eq!(names(&left), ["gamma_1"]);

    // Prefect's lifecycle events reach the feed.
    let rid = format!("prefect.variable.{a_id}");
    let events = app
        .wait_for("variable events in the feed", || async {
            let (_, page) = app.post("/events/filter", json!({"filter": {"any_resource": {"id": [rid.as_str()]}}, "limit": 10})).await;
            let evs: Vec<String> = page["events"].as_array().into_iter().flatten().filter_map(|e| e["event"].as_str().map(str::to_owned)).collect();
            (evs.len() == 3).then_some(evs)
        })
        .await;
    let mut events = events;
    events.sort();
    assert_eq!(events, ["prefect.variable.created", "prefect.variable.deleted", "prefect.variable.updated"]);

    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
});

both_backends!(deployment_parameters_are_hydrated, |app: TestApp| async move {
    let flow_id = app.create_flow("hydrated-flow").await;
    let (status, _) = app.post("/variables/", json!({"name": "region", "value": {"zone": "eu-1"}})).await;
    assert_eq!(status, 201);
    let schema = json!({"type": "object", "properties": {"cfg": {"type": "object"}, "zone": {"type": "object"}, "label": {"type": "string"}, "n": {"type": "integer"}}});
    let body = json!({
        "name": "dep", "flow_id": flow_id, "parameter_openapi_schema": schema, "enforce_parameter_schema": true,
        "parameters": {"n": 1},
    });
    let (status, dep) = app.post("/deployments/", body).await;
    assert_eq!(status, 201, "{dep}");
    let id = dep["id"].as_str().unwrap().to_owned();

    // A run whose parameters use json, jinja and workspace_variable kinds.
    let run_params = json!({
        "cfg": {"__prefect_kind": "json", "value": "{\"retries\": 3}"},
        "label": {"__prefect_kind": "jinja", "template": "run-{{ 20 + 22 }}"},
        "zone": {"__prefect_kind": "workspace_variable", "variable_name": "region"},
        "dropped": {"__prefect_kind": "json"},
    });
    let (status, run) = app.post(&format!("/deployments/{id}/create_flow_run"), json!({"parameters": run_params})).await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["parameters"], json!({"n": 1, "cfg": {"retries": 3}, "label": "run-42", "zone": {"zone": "eu-1"}}));

    // Hydration runs before the schema check: a json string becomes an integer.
    let (status, run) = app.post(&format!("/deployments/{id}/create_flow_run"), json!({"parameters": {"n": {"__prefect_kind": "json", "value": "7"}}})).await;
    assert_eq!((status, run["parameters"]["n"].clone()), (201, json!(7)), "{run}");

    // The 400s, with Prefect's messages.
    let cases = [
        (json!({"zone": {"__prefect_kind": "workspace_variable", "variable_name": "nope"}}), "Error hydrating flow run parameters: Variable 'nope' not found in workspace."),
        (json!({"cfg": {"__prefect_kind": "json", "value": "{bad"}}), "Error hydrating flow run parameters: Invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        (json!({"label": {"__prefect_kind": "jinja"}}), "Error hydrating flow run parameters: Missing 'template' key in __prefect object"),
        (json!({"label": {"__prefect_kind": "none"}}), "Error hydrating flow run parameters: Missing 'value' key in __prefect object"),
    ];
    for (params, detail) in cases {
        let (status, body) = app.post(&format!("/deployments/{id}/create_flow_run"), json!({"parameters": params})).await;
        assert_eq!((status, body), (400, json!({"detail": detail})));
    }
    let (status, body) = app.post(&format!("/deployments/{id}/create_flow_run"), json!({"parameters": {"label": {"__prefect_kind": "jinja", "template": "{{ oops"}}})).await;
    assert_eq!(status, 400);
    assert!(body["detail"].as_str().unwrap().starts_with("Error hydrating flow run parameters: Invalid jinja: "), "{body}");

    // PATCH hydrates the default parameters and stores the result.
    let patch = json!({"parameters": {"n": 2, "zone": {"__prefect_kind": "workspace_variable", "variable_name": "region"}}});
    let resp = app.client.patch(app.url(&format!("/deployments/{id}"))).json(&patch).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let (_, dep) = app.get(&format!("/deployments/{id}")).await;
    assert_eq!(dep["parameters"], json!({"n": 2, "zone": {"zone": "eu-1"}}));
    let bad = json!({"parameters": {"zone": {"__prefect_kind": "workspace_variable", "variable_name": "gone"}}});
    let resp = app.client.patch(app.url(&format!("/deployments/{id}"))).json(&bad).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"detail": "Error hydrating deployment parameters: Variable 'gone' not found in workspace."}));

    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
});
