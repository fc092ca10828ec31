//! The dashboard's read-only routes: run history buckets, lateness and the
//! `/ui/*` helpers, over runs created through the API with known states and
//! expected start times. Runs are scheduled in 2099 (not late, never
//! running by themselves) unless a test needs lateness, so every figure
//! asserted is fixed once the runs are written.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::TestApp;

/// A flow run SCHEDULED for `at`.
async fn scheduled_run(app: &TestApp, flow_id: &str, at: &str) -> String {
    let body = json!({"flow_id": flow_id, "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": at}}});
    let (status, run) = app.post("/flow_runs/", body).await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["expected_start_time"].as_str().map(|s| s.replace(".000000", "")), Some(at.to_owned()), "{run}");
    run["id"].as_str().unwrap().to_owned()
}

/// Forces a flow run through RUNNING into `terminal`; returns the run as read back.
async fn finish_flow_run(app: &TestApp, run_id: &str, terminal: &str) -> Value {
    for state in ["RUNNING", terminal] {
        let (status, r) = app.set_state(run_id, state, true).await;
        assert_eq!((status, r["status"].as_str()), (201, Some("ACCEPT")), "{r}");
    }
    app.get(&format!("/flow_runs/{run_id}")).await.1
}

/// A task run of `flow_run_id` in `state` (SCHEDULED for `at`).
async fn scheduled_task_run(app: &TestApp, flow_run_id: Option<&str>, key: &str, at: &str) -> String {
    let body = json!({"flow_run_id": flow_run_id, "task_key": key, "dynamic_key": "0",
                      "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": at}}});
    let (status, run) = app.post("/task_runs/", body).await;
    assert_eq!(status, 201, "{run}");
    run["id"].as_str().unwrap().to_owned()
}

async fn set_task_state(app: &TestApp, id: &str, state: &str) {
    let (status, r) = app.post(&format!("/task_runs/{id}/set_state"), json!({"state": {"type": state}, "force": true})).await;
    assert_eq!((status, r["status"].as_str()), (201, Some("ACCEPT")), "{r}");
}

/// A task run started now and left in `terminal` (or RUNNING).
async fn started_task_run(app: &TestApp, flow_run_id: &str, key: &str, end: Option<&str>) -> String {
    let body = json!({"flow_run_id": flow_run_id, "task_key": key, "dynamic_key": "0"});
    let (status, run) = app.post("/task_runs/", body).await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    set_task_state(app, &id, "RUNNING").await;
    if let Some(end) = end {
        set_task_state(app, &id, end).await;
    }
    id
}

/// `(state_type, count_runs)` of one history interval.
fn counts(interval: &Value) -> Vec<(String, i64)> {
    interval["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["state_type"].as_str().unwrap().to_owned(), s["count_runs"].as_i64().unwrap()))
        .collect()
}

fn pairs(v: &[(&str, i64)]) -> Vec<(String, i64)> {
    v.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
}

both_backends!(flow_run_history_buckets_runs_by_expected_start_time, |app: TestApp| async move {
    // Given runs of one flow expected inside, on the edges of, and outside
    // a 30-minute window cut into 10-minute intervals, and one run of another flow.
    let flow = app.create_flow("hist").await;
    let other = app.create_flow("other").await;
    scheduled_run(&app, &flow, "2099-01-01T00:05:00Z").await;
    scheduled_run(&app, &flow, "2099-01-01T00:10:00Z").await; // first instant of interval 1
    scheduled_run(&app, &flow, "2099-01-01T00:19:59.999999Z").await; // last instant of interval 1
    let done = scheduled_run(&app, &flow, "2099-01-01T00:12:00Z").await;
    let done = finish_flow_run(&app, &done, "COMPLETED").await;
    scheduled_run(&app, &flow, "2099-01-01T00:30:00Z").await; // the window's end is exclusive
    scheduled_run(&app, &flow, "2098-12-31T23:59:59.999999Z").await; // before the window
    scheduled_run(&app, &other, "2099-01-01T00:05:00Z").await;

    // When the history is asked for, unfiltered and for the one flow
    let window = json!({"history_start": "2099-01-01T00:00:00Z", "history_end": "2099-01-01T00:30:00Z", "history_interval_seconds": 600});
    let (status, all) = app.post("/flow_runs/history", window.clone()).await;
    assert_eq!(status, 200, "{all}");
    let mut filtered = window.clone();
    filtered["flows"] = json!({"name": {"any_": ["hist"]}});
    let (_, one) = app.post("/flow_runs/history", filtered).await;

    // Then every interval is listed, each run counted once in the interval it
    // is expected in, grouped by state, with the finished run's run time.
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0]["interval_start"], "2099-01-01T00:00:00Z");
    assert_eq!(all[0]["interval_end"], "2099-01-01T00:10:00Z");
    assert_eq!(all[2]["interval_end"], "2099-01-01T00:30:00Z");
    assert_eq!(counts(&all[0]), pairs(&[("SCHEDULED", 2)]));
    assert_eq!(counts(&all[1]), pairs(&[("COMPLETED", 1), ("SCHEDULED", 2)]));
    assert_eq!(counts(&all[2]), pairs(&[]));
    let completed = &all[1]["states"][0];
    assert_eq!(completed["state_name"], "Completed");
    assert_eq!(completed["sum_estimated_run_time"].as_f64(), done["total_run_time"].as_f64());
    assert_eq!(completed["sum_estimated_lateness"], json!(0.0));
    assert_eq!(all[0]["states"][0], json!({"state_type": "SCHEDULED", "state_name": "Scheduled", "count_runs": 2, "sum_estimated_run_time": 0.0, "sum_estimated_lateness": 0.0}));
    assert_eq!(counts(&one.as_array().unwrap()[0]), pairs(&[("SCHEDULED", 1)]));
});

both_backends!(flow_run_history_rounds_the_interval_count_up_and_checks_its_input, |app: TestApp| async move {
    // Given one run in the last, partial interval
    let flow = app.create_flow("partial").await;
    scheduled_run(&app, &flow, "2099-01-01T00:20:00.500000Z").await;
    // When 20 min 1 s are cut into 10-minute intervals
    let (_, h) = app
        .post("/flow_runs/history", json!({"history_start": "2099-01-01T00:00:00Z", "history_end": "2099-01-01T00:20:01Z", "history_interval_seconds": "600"}))
        .await;
    // Then there are three, the last ending past the requested end and holding the run
    let h = h.as_array().unwrap().clone();
    assert_eq!(h.len(), 3);
    assert_eq!(h[2]["interval_end"], "2099-01-01T00:30:00Z");
    assert_eq!(counts(&h[2]), pairs(&[("SCHEDULED", 1)]));

    // An end before the start has no intervals; a long range stops at 500.
    let (_, empty) = app
        .post("/flow_runs/history", json!({"history_start": "2099-01-01T00:00:00Z", "history_end": "2098-01-01T00:00:00Z", "history_interval_seconds": 60}))
        .await;
    assert_eq!(empty, json!([]));
    let (_, long) = app
        .post("/flow_runs/history", json!({"history_start": "2099-01-01T00:00:00Z", "history_end": "2100-01-01T00:00:00Z", "history_interval_seconds": 60}))
        .await;
    assert_eq!(long.as_array().unwrap().len(), 500);

    // Intervals under a second, and missing or malformed fields, are 422s.
    let (status, body) = app
        .post("/flow_runs/history", json!({"history_start": "2099-01-01T00:00:00Z", "history_end": "2099-01-01T00:30:00Z", "history_interval_seconds": 0.5}))
        .await;
    assert_eq!((status, body), (422, json!({"detail": "History interval must not be less than 1 second."})));
    let (status, _) = app
        .post("/flow_runs/history", json!({"history_start": "2099-01-01T00:00:00Z", "history_end": "2099-01-01T00:30:00Z", "history_interval_seconds": 1e15}))
        .await;
    assert_eq!(status, 422);
    let (status, body) = app.post("/task_runs/history", json!({"history_start": "nope"})).await;
    assert_eq!(status, 422);
    let locs: Vec<&Value> = body["exception_detail"].as_array().unwrap().iter().map(|d| &d["loc"]).collect();
    assert_eq!(locs, [&json!(["body", "history_start"]), &json!(["body", "history_end"]), &json!(["body", "history_interval_seconds"])]);
    assert_eq!(body["exception_detail"][0]["msg"], "Value error, Unable to parse string [nope]");
    assert_eq!(body["exception_detail"][1]["type"], "missing");
});

both_backends!(task_run_history_buckets_task_runs_and_applies_flow_run_filters, |app: TestApp| async move {
    // Given task runs of one flow run expected at known times, one of them
    // finished, and a task run of another flow run
    let flow = app.create_flow("tasks").await;
    let fr = app.create_flow_run(&flow).await["id"].as_str().unwrap().to_owned();
    let fr2 = app.create_flow_run(&flow).await["id"].as_str().unwrap().to_owned();
    scheduled_task_run(&app, Some(&fr), "a", "2099-01-01T00:05:00Z").await;
    scheduled_task_run(&app, Some(&fr), "b", "2099-01-01T00:25:00Z").await;
    let c = scheduled_task_run(&app, Some(&fr), "c", "2099-01-01T00:07:00Z").await;
    set_task_state(&app, &c, "RUNNING").await;
    set_task_state(&app, &c, "FAILED").await;
    scheduled_task_run(&app, Some(&fr2), "d", "2099-01-01T00:05:00Z").await;
    let (_, c_run) = app.get(&format!("/task_runs/{c}")).await;

    // When the task-run history of the first flow run is asked for
    let body = json!({"history_start": "2099-01-01T00:00:00Z", "history_end": "2099-01-01T00:30:00Z", "history_interval_seconds": 900,
                      "flow_runs": {"id": {"any_": [fr]}}});
    let (status, h) = app.post("/task_runs/history", body).await;

    // Then its task runs fall in their 15-minute intervals by state
    assert_eq!(status, 200, "{h}");
    let h = h.as_array().unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(counts(&h[0]), pairs(&[("FAILED", 1), ("SCHEDULED", 1)]));
    assert_eq!(counts(&h[1]), pairs(&[("SCHEDULED", 1)]));
    assert_eq!(h[0]["states"][0]["sum_estimated_run_time"].as_f64(), c_run["total_run_time"].as_f64());
});

both_backends!(ui_flow_run_history_lists_simple_runs_sorted_and_paged, |app: TestApp| async move {
    // Given three scheduled runs and a finished one
    let flow = app.create_flow("simple").await;
    let first = scheduled_run(&app, &flow, "2099-01-01T00:01:00Z").await;
    let second = scheduled_run(&app, &flow, "2099-01-01T00:02:00.250000Z").await;
    let last = scheduled_run(&app, &flow, "2099-01-01T00:04:00Z").await;
    let done = scheduled_run(&app, &flow, "2099-01-01T00:03:00Z").await;
    let done = finish_flow_run(&app, &done, "COMPLETED").await;

    // When the scatter plot's query runs with its defaults, and paged ascending
    let (status, all) = app.post("/ui/flow_runs/history", json!({})).await;
    let (_, page) = app.post("/ui/flow_runs/history", json!({"sort": "EXPECTED_START_TIME_ASC", "limit": 1, "offset": 1})).await;

    // Then the runs come newest expected first, each as a SimpleFlowRun
    assert_eq!(status, 200, "{all}");
    let ids: Vec<&str> = all.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [last.as_str(), done["id"].as_str().unwrap(), second.as_str(), first.as_str()]);
    assert_eq!(all[2], json!({"id": second, "state_type": "SCHEDULED", "timestamp": "2099-01-01T00:02:00.250000Z", "duration": 0.0, "lateness": 0.0}));
    // A run that started is placed at its start time, with its run time.
    assert_eq!(all[1]["timestamp"].as_str().map(|s| s.replace(".000000", "")), done["start_time"].as_str().map(|s| s.replace(".000000", "")));
    assert_eq!(all[1]["duration"].as_f64(), done["total_run_time"].as_f64());
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["id"], second.as_str());

    // Limits above 1000 and negative offsets are 422s, as are unknown sorts.
    let (status, body) = app.post("/ui/flow_runs/history", json!({"limit": 1001})).await;
    assert_eq!(status, 422);
    assert_eq!(body["exception_detail"][0], json!({"type": "less_than_equal", "loc": ["body", "limit"], "msg": "Input should be less than or equal to 1000", "input": 1001, "ctx": {"le": 1000}}));
    let (status, _) = app.post("/ui/flow_runs/history", json!({"offset": -1})).await;
    assert_eq!(status, 422);
    let (status, _) = app.post("/ui/flow_runs/history", json!({"sort": "BOGUS"})).await;
    assert_eq!(status, 422);
});

both_backends!(ui_counts_task_runs_per_flow_run_without_subflow_tasks, |app: TestApp| async move {
    // Given a flow run with three task runs, one of which stands for a subflow run
    let flow = app.create_flow("parent").await;
    let fr = app.create_flow_run(&flow).await["id"].as_str().unwrap().to_owned();
    let empty = app.create_flow_run(&flow).await["id"].as_str().unwrap().to_owned();
    scheduled_task_run(&app, Some(&fr), "a", "2099-01-01T00:00:00Z").await;
    scheduled_task_run(&app, Some(&fr), "b", "2099-01-01T00:00:00Z").await;
    let parent_task = scheduled_task_run(&app, Some(&fr), "sub", "2099-01-01T00:00:00Z").await;
    let (status, sub) = app.post("/flow_runs/", json!({"flow_id": flow, "parent_task_run_id": parent_task})).await;
    assert_eq!(status, 201, "{sub}");

    // When the counts are asked for (in an order of the caller's choosing)
    let unknown = uuid::Uuid::new_v4().to_string();
    let (status, body) = app.post("/ui/flow_runs/count-task-runs", json!({"flow_run_ids": [empty, fr, unknown]})).await;

    // Then each id is answered, in request order, zero where there are none
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.to_string(), format!(r#"{{"{empty}":0,"{fr}":2,"{unknown}":0}}"#));

    let (status, body) = app.post("/ui/flow_runs/count-task-runs", json!({"flow_run_ids": ["x"]})).await;
    assert_eq!((status, body["exception_detail"][0]["type"].as_str()), (422, Some("uuid_parsing")));
    let (status, body) = app.post("/ui/flow_runs/count-task-runs", json!({})).await;
    assert_eq!(status, 422);
    assert_eq!(body["exception_detail"][0], json!({"type": "missing", "loc": ["body", "flow_run_ids"], "msg": "Field required", "input": null}));
});

both_backends!(ui_counts_deployments_and_finds_next_runs_per_flow, |app: TestApp| async move {
    // Given a flow with two deployments and scheduled runs, and a flow with neither
    let flow = app.create_flow("deployed").await;
    let bare = app.create_flow("bare").await;
    for name in ["one", "two"] {
        let (status, d) = app.post("/deployments/", json!({"name": name, "flow_id": flow})).await;
        assert_eq!(status, 201, "{d}");
    }
    scheduled_run(&app, &flow, "2099-01-02T00:00:00Z").await;
    let next = scheduled_run(&app, &flow, "2099-01-01T00:00:00Z").await;
    app.create_flow_run(&bare).await; // PENDING: not a next run

    // When the flows page asks for both
    let (status, deployments) = app.post("/ui/flows/count-deployments", json!({"flow_ids": [flow, bare]})).await;
    let (_, next_runs) = app.post("/ui/flows/next-runs", json!({"flow_ids": [bare, flow]})).await;

    // Then the counts and each flow's first scheduled run come back by flow id
    assert_eq!(status, 200, "{deployments}");
    assert_eq!(deployments.to_string(), format!(r#"{{"{flow}":2,"{bare}":0}}"#));
    assert_eq!(next_runs[&bare], Value::Null);
    let run = &next_runs[&flow];
    let keys: Vec<&String> = run.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id", "flow_id", "name", "state_name", "state_type", "next_scheduled_start_time"]);
    assert_eq!(run["id"], next.as_str());
    assert_eq!((run["state_type"].as_str(), run["state_name"].as_str()), (Some("SCHEDULED"), Some("Scheduled")));
    assert_eq!(run["next_scheduled_start_time"], "2099-01-01T00:00:00Z");
});

both_backends!(ui_task_run_counts_by_state_and_with_flow_run_name, |app: TestApp| async move {
    // Given task runs in several states, one without a flow run
    let flow = app.create_flow("counted").await;
    let run = app.create_flow_run(&flow).await;
    let fr = run["id"].as_str().unwrap().to_owned();
    let a = started_task_run(&app, &fr, "a", Some("COMPLETED")).await;
    started_task_run(&app, &fr, "b", Some("COMPLETED")).await;
    started_task_run(&app, &fr, "c", None).await;
    let orphan = scheduled_task_run(&app, None, "d", "2099-01-01T00:00:00Z").await;

    // When they are counted by state, all and for the flow run
    let (status, all) = app.post("/ui/task_runs/count", json!({})).await;
    let (_, of_run) = app.post("/ui/task_runs/count", json!({"flow_runs": {"id": {"any_": [fr]}}, "limit": "ignored"})).await;

    // Then every state type is present, in Prefect's order
    assert_eq!(status, 200, "{all}");
    assert_eq!(all.to_string(), r#"{"COMPLETED":2,"PENDING":0,"RUNNING":1,"FAILED":0,"CANCELLED":0,"CRASHED":0,"PAUSED":0,"CANCELLING":0,"SCHEDULED":1}"#);
    assert_eq!(of_run["SCHEDULED"], 0);
    assert_eq!(of_run["COMPLETED"], 2);

    // And a task run reads back with its flow run's name (null without one).
    let (status, with_name) = app.get(&format!("/ui/task_runs/{a}")).await;
    assert_eq!(status, 200);
    assert_eq!(with_name["flow_run_name"], run["name"]);
    let (_, plain) = app.get(&format!("/task_runs/{a}")).await;
    let mut expected = plain.as_object().unwrap().clone();
    expected.insert("flow_run_name".into(), run["name"].clone());
    assert_eq!(with_name.as_object().unwrap().keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    let (_, orphan) = app.get(&format!("/ui/task_runs/{orphan}")).await;
    assert_eq!(orphan["flow_run_name"], Value::Null);
    let (status, body) = app.get(&format!("/ui/task_runs/{}", uuid::Uuid::new_v4())).await;
    assert_eq!((status, body), (404, json!({"detail": "Task not found"})));
});

both_backends!(ui_dashboard_counts_finished_task_runs_from_a_start_time, |app: TestApp| async move {
    // Given a task run finished before the window, then finished, failed,
    // crashed and still running task runs
    let flow = app.create_flow("dash").await;
    let fr = app.create_flow_run(&flow).await["id"].as_str().unwrap().to_owned();
    let early = started_task_run(&app, &fr, "early", Some("COMPLETED")).await;
    let (_, early) = app.get(&format!("/task_runs/{early}")).await;
    let after = chrono::DateTime::parse_from_rfc3339(early["start_time"].as_str().unwrap()).unwrap() + chrono::Duration::microseconds(1);
    for (key, end) in [("ok1", Some("COMPLETED")), ("ok2", Some("CANCELLED")), ("bad1", Some("FAILED")), ("bad2", Some("CRASHED")), ("live", None)] {
        started_task_run(&app, &fr, key, end).await;
    }

    // When the dashboard counts from just after the first run's start, over
    // a window of about 20 hours (buckets of about an hour)
    let before = after + chrono::Duration::hours(19);
    let fmt = |t: chrono::DateTime<chrono::FixedOffset>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let body = json!({"task_runs": {"start_time": {"after_": fmt(after), "before_": fmt(before)}, "state": {"type": {"any_": ["RUNNING"]}}}});
    let (status, buckets) = app.post("/ui/task_runs/dashboard/counts", body).await;

    // Then the runs that finished after it are in the first of 20 buckets,
    // whatever state filter was sent
    assert_eq!(status, 200, "{buckets}");
    let buckets = buckets.as_array().unwrap();
    assert_eq!(buckets.len(), 20);
    assert_eq!(buckets[0], json!({"completed": 2, "failed": 2}));
    assert!(buckets[1..].iter().all(|b| *b == json!({"completed": 0, "failed": 0})), "{buckets:?}");

    // Without a start time there is nothing to count from.
    let (status, body) = app.post("/ui/task_runs/dashboard/counts", json!({"task_runs": {}})).await;
    assert_eq!((status, body), (422, json!({"detail": "task_runs.start_time.after_ is required"})));
    let (status, body) = app.post("/ui/task_runs/dashboard/counts", json!({})).await;
    assert_eq!((status, body["exception_detail"][0]["type"].as_str()), (422, Some("missing")));
});

both_backends!(flow_run_lateness_averages_start_delays, |app: TestApp| async move {
    // Given no runs, the average is null
    let (status, none) = app.post("/flow_runs/lateness", json!({})).await;
    assert_eq!((status, none), (200, Value::Null));

    // Given a run that started after its scheduled time and finished, and one not yet due
    let late_flow = app.create_flow("late").await;
    let late = scheduled_run(&app, &late_flow, "2024-01-01T00:00:00Z").await;
    let late = finish_flow_run(&app, &late, "COMPLETED").await;
    let due_flow = app.create_flow("due").await;
    scheduled_run(&app, &due_flow, "2099-01-01T00:00:00Z").await;

    // When the average lateness is asked for per flow and for both
    let (_, of_late) = app.post("/flow_runs/lateness", json!({"flows": {"name": {"any_": ["late"]}}})).await;
    let (_, of_due) = app.post("/flow_runs/lateness", json!({"flows": {"name": {"any_": ["due"]}}})).await;
    let (_, of_both) = app.post("/flow_runs/lateness", json!({})).await;

    // Then it is the started run's start delay, zero for the other, and their mean
    let delay = late["estimated_start_time_delta"].as_f64().unwrap();
    assert!(delay > 0.0);
    assert!((of_late.as_f64().unwrap() - delay).abs() < 1e-6, "{of_late} vs {delay}");
    assert_eq!(of_due.as_f64(), Some(0.0));
    assert!((of_both.as_f64().unwrap() - delay / 2.0).abs() < 1e-6, "{of_both} vs {delay}");
});
