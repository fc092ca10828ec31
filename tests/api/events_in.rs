//! `/events/in`: the client's task-run events become task runs.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::both_backends;
use crate::helpers::TestApp;

fn task_event(id: &str, task_run_id: &str, flow_run_id: &str, state_type: &str, name: &str, occurred: &str) -> Value {
    json!({
        "occurred": occurred,
        "event": format!("prefect.task-run.{name}"),
        "resource": {
            "prefect.resource.id": format!("prefect.task-run.{task_run_id}"),
            "prefect.resource.name": "my-task-abc",
            "prefect.state-name": name,
            "prefect.state-type": state_type,
            "prefect.orchestration": "client"
        },
        "related": [{"prefect.resource.id": format!("prefect.flow-run.{flow_run_id}"), "prefect.resource.role": "flow-run"}],
        "payload": {
            "intended": {"from": null, "to": state_type},
            "initial_state": null,
            "validated_state": {"type": state_type, "name": name, "message": "", "state_details": {}, "data": null},
            "task_run": {"name": "my-task-abc", "task_key": "my-task-1234", "dynamic_key": "abc", "empirical_policy": {"retries": 0},
                         "tags": [], "labels": {}, "task_inputs": {}, "run_count": if state_type == "PENDING" { 0 } else { 1 },
                         "flow_run_run_count": 1, "expected_start_time": "2026-11-23T07:58:33.380691Z", "total_run_time": 0.0}
        },
        "id": id,
        "follows": null
    })
}

async fn connect(app: &TestApp) -> crate::helpers::Socket {
    app.prefect_socket("/events/in").await
}

both_backends!(task_run_events_record_task_runs_newest_state_wins, |app: TestApp| async move {
    let flow_id = app.create_flow("evented").await;
    let run = app.create_flow_run(&flow_id).await;
    let fr = run["id"].as_str().unwrap().to_owned();
    let tr = uuid::Uuid::now_v7().to_string();
    let e1 = uuid::Uuid::now_v7().to_string();
    let e2 = uuid::Uuid::now_v7().to_string();
    let e3 = uuid::Uuid::now_v7().to_string();
    let mut ws = connect(&app).await;
    // Completed arrives before Running; Running is older and must not win.
    for ev in [
        task_event(&e1, &tr, &fr, "PENDING", "Pending", "2026-11-23T07:58:33.000000Z"),
        task_event(&e3, &tr, &fr, "COMPLETED", "Completed", "2026-11-23T07:58:35.000000Z"),
        task_event(&e2, &tr, &fr, "RUNNING", "Running", "2026-11-23T07:58:34.000000Z"),
        task_event(&e3, &tr, &fr, "COMPLETED", "Completed", "2026-11-23T07:58:35.000000Z"),
    ] {
        ws.send(Message::text(ev.to_string())).await.unwrap();
    }
    ws.close(None).await.unwrap();

    let task_run = app
        .wait_for("the task run's three states", || async {
            let (status, states) = app.get(&format!("/task_run_states/?task_run_id={tr}")).await;
            (status == 200 && states.as_array().map(Vec::len) == Some(3)).then_some(())?;
            let (_, task_run) = app.get(&format!("/task_runs/{tr}")).await;
            Some(task_run)
        })
        .await;
    assert_eq!(task_run["state"]["type"], "COMPLETED");
    assert_eq!(task_run["state"]["id"], e3.as_str());
    assert_eq!(task_run["flow_run_id"], fr.as_str());
    assert_eq!(task_run["task_key"], "my-task-1234");
    let (_, runs) = app.post("/task_runs/filter", json!({"flow_runs": {"id": {"any_": [fr]}}})).await;
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
});

both_backends!(a_bad_frame_closes_the_socket_but_keeps_earlier_events, |app: TestApp| async move {
    let flow_id = app.create_flow("evented-bad").await;
    let run = app.create_flow_run(&flow_id).await;
    let fr = run["id"].as_str().unwrap().to_owned();
    let tr = uuid::Uuid::now_v7().to_string();
    let mut ws = connect(&app).await;
    let good = task_event(&uuid::Uuid::now_v7().to_string(), &tr, &fr, "PENDING", "Pending", "2026-11-23T07:58:33.000000Z");
    ws.send(Message::text(good.to_string())).await.unwrap();
    ws.send(Message::text(r#"{"this": "is not an event"}"#)).await.unwrap();
    let close = loop {
        match ws.next().await {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.unwrap().code), 1008);
    let (status, task_run) = app.get(&format!("/task_runs/{tr}")).await;
    assert_eq!(status, 200, "{task_run}");
    assert_eq!(task_run["state"]["type"], "PENDING");
});

both_backends!(one_batch_over_many_streams_keeps_each_stream_gapless, |app: TestApp| async move {
    let flow_id = app.create_flow("batched").await;
    let (fr_a, fr_b) = (app.create_flow_run(&flow_id).await, app.create_flow_run(&flow_id).await);
    let (fr_a, fr_b) = (fr_a["id"].as_str().unwrap().to_owned(), fr_b["id"].as_str().unwrap().to_owned());
    let (tr_a, tr_b) = (uuid::Uuid::now_v7().to_string(), uuid::Uuid::now_v7().to_string());
    let id = || uuid::Uuid::now_v7().to_string();
    let states = [("PENDING", "Pending", "33"), ("RUNNING", "Running", "34"), ("COMPLETED", "Completed", "35")];
    // Two task runs' events interleaved, a custom event, and one event twice.
    let mut batch = Vec::new();
    for (ty, name, sec) in states {
        let at = format!("2026-11-23T07:58:{sec}.000000Z");
        batch.push(task_event(&id(), &tr_a, &fr_a, ty, name, &at));
        batch.push(task_event(&id(), &tr_b, &fr_b, ty, name, &at));
    }
    batch.push(json!({"occurred": "2026-11-23T07:58:36Z", "event": "custom.thing", "resource": {"prefect.resource.id": "custom.1"}, "id": id()}));
    batch.push(batch[0].clone());
    let before = app.log_len().await;
    let (status, body) = app.post("/events", Value::Array(batch.clone())).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(app.log_len().await - before, 7, "six task-run events and one custom event, the repeat skipped");
    // The whole batch again: every event is a resend.
    assert_eq!(app.post("/events", Value::Array(batch)).await.0, 204);
    assert_eq!(app.log_len().await - before, 7);

    use sqlx::Row;
    for tr in [&tr_a, &tr_b] {
        let sql = app.db.q("SELECT stream_version FROM es_events WHERE stream_type = 'task_run' AND CAST(stream_id AS TEXT) = $1 ORDER BY position");
        let rows = sqlx::query(&sql).bind(tr.clone()).fetch_all(app.db.reader()).await.unwrap();
        let versions: Vec<i64> = rows.iter().map(|r| r.try_get::<i64, _>(0).unwrap()).collect();
        assert_eq!(versions, [1, 2, 3], "task run {tr}");
        let (_, task_run) = app.get(&format!("/task_runs/{tr}")).await;
        assert_eq!(task_run["state"]["type"], "COMPLETED");
    }
    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
});

both_backends!(the_projector_stores_every_event_of_concurrent_writers_once, |app: TestApp| async move {
    // Several writers commit in parallel while the projector reads ahead
    // of its own writes: every event must still be stored, exactly once.
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let (writers, batches, per_batch) = (6, 5, 400);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (client, url, tag) = (app.client.clone(), app.url("/events"), tag.clone());
        tasks.push(tokio::spawn(async move {
            for b in 0..batches {
                let batch: Vec<Value> = (0..per_batch)
                    .map(|i| json!({"occurred": "2026-11-23T07:58:36Z", "event": format!("load.{tag}"), "resource": {"prefect.resource.id": format!("load.{w}.{b}.{i}")}, "id": uuid::Uuid::now_v7()}))
                    .collect();
                let status = client.post(&url).json(&batch).send().await.unwrap().status();
                assert_eq!(status.as_u16(), 204);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let want = (writers * batches * per_batch) as i64;
    use sqlx::Row;
    let sql = app.db.q("SELECT COUNT(*), COUNT(DISTINCT resource_id) FROM events WHERE event = $1");
    let (rows, distinct) = app
        .wait_for("every event to be projected", || async {
            let row = sqlx::query(&sql).bind(format!("load.{tag}")).fetch_one(app.db.reader()).await.unwrap();
            let counts: (i64, i64) = (row.try_get(0).unwrap(), row.try_get(1).unwrap());
            (counts.0 >= want).then_some(counts)
        })
        .await;
    assert_eq!((rows, distinct), (want, want));
});

both_backends!(concurrent_sockets_grouped_into_one_transaction_keep_every_event_once, |app: TestApp| async move {
    // Sixteen sockets send at once, so their batches are appended in
    // groups; every socket also resends one shared event, so groups hold
    // the same event id more than once. Each task run must end with its
    // three states in order, and the log with each event once.
    let flow_id = app.create_flow("grouped").await;
    let fr = app.create_flow_run(&flow_id).await["id"].as_str().unwrap().to_owned();
    let shared_task_run = uuid::Uuid::now_v7().to_string();
    let shared = task_event(&uuid::Uuid::now_v7().to_string(), &shared_task_run, &fr, "PENDING", "Pending", "2026-11-23T07:58:32.000000Z");
    let (sockets, task_runs_each) = (16, 5);
    let before = app.log_len().await;
    let mut tasks = Vec::new();
    let mut all_task_runs = Vec::new();
    for _ in 0..sockets {
        let task_runs: Vec<String> = (0..task_runs_each).map(|_| uuid::Uuid::now_v7().to_string()).collect();
        all_task_runs.extend(task_runs.clone());
        let mut ws = connect(&app).await;
        let (fr, shared) = (fr.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            ws.send(Message::text(shared.to_string())).await.unwrap();
            for (ty, name, sec) in [("PENDING", "Pending", "33"), ("RUNNING", "Running", "34"), ("COMPLETED", "Completed", "35")] {
                for tr in &task_runs {
                    let mut ev = task_event(&uuid::Uuid::now_v7().to_string(), tr, &fr, ty, name, &format!("2026-11-23T07:58:{sec}.000000Z"));
                    // A task run of its own, not one found by the shared natural key.
                    ev["payload"]["task_run"]["dynamic_key"] = json!(tr);
                    ws.send(Message::text(ev.to_string())).await.unwrap();
                }
            }
            ws.close(None).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let want = (sockets * task_runs_each * 3 + 1) as i64;
    app.wait_for("every event in the log", || async { (app.log_len().await - before >= want).then_some(()) }).await;
    assert_eq!(app.log_len().await - before, want, "each event once, the shared one included");
    for tr in &all_task_runs {
        let (_, states) = app.get(&format!("/task_run_states/?task_run_id={tr}")).await;
        let types: Vec<&str> = states.as_array().unwrap().iter().map(|s| s["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["PENDING", "RUNNING", "COMPLETED"], "task run {tr}");
        let (_, task_run) = app.get(&format!("/task_runs/{tr}")).await;
        assert_eq!(task_run["state"]["type"], "COMPLETED");
    }
    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
});
