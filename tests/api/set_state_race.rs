//! Many clients racing conflicting transitions on one run: only legal
//! transitions win, the stream stays gapless, and the model matches the log.

use serde_json::json;
use sqlx::Row;

use crate::both_backends;
use crate::helpers::TestApp;

both_backends!(fifty_racing_clients_keep_the_stream_consistent, |app: TestApp| async move {
    let flow_id = app.create_flow("race").await;
    let run = app.create_flow_run(&flow_id).await;
    let run_id = run["id"].as_str().unwrap().to_owned();

    let proposals = ["RUNNING", "COMPLETED", "FAILED", "PENDING", "CANCELLING", "CANCELLED"];
    let mut tasks = Vec::new();
    for i in 0..50 {
        let client = app.client.clone();
        let url = app.url(&format!("/flow_runs/{run_id}/set_state"));
        let proposal = proposals[i % proposals.len()];
        tasks.push(tokio::spawn(async move {
            let resp = client.post(url).json(&json!({"state": {"type": proposal}})).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert!(status == 200 || status == 201, "{status} {body}");
        if body["status"] == "ACCEPT" {
            accepted += 1;
        }
    }
    assert!(accepted >= 1);

    // The stream's versions are 1..=n with no gap or duplicate.
    let sql = app.db.q("SELECT stream_version FROM es_events WHERE stream_type = 'flow_run' AND CAST(stream_id AS TEXT) = $1 ORDER BY stream_version");
    let versions: Vec<i64> = sqlx::query(&sql)
        .bind(run_id.clone())
        .fetch_all(app.db.reader())
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<i64, _>(0).unwrap())
        .collect();
    assert_eq!(versions, (1..=versions.len() as i64).collect::<Vec<_>>());
    // One created event, one initial state, plus one event per accepted or
    // rule-replaced transition.
    let (_, states) = app.get(&format!("/flow_run_states/?flow_run_id={run_id}")).await;
    assert_eq!(states.as_array().unwrap().len() as i64, versions.len() as i64 - 1);

    // Every recorded transition is one Prefect's rules allow.
    let types: Vec<&str> = states.as_array().unwrap().iter().map(|s| s["type"].as_str().unwrap()).collect();
    let terminal = ["COMPLETED", "FAILED", "CANCELLED", "CRASHED"];
    for pair in types.windows(2) {
        let (from, to) = (pair[0], pair[1]);
        if from == "CANCELLING" {
            assert_eq!(to, "CANCELLED", "only Cancelled may follow Cancelling: {types:?}");
        }
        if to == "PENDING" {
            assert!(!["PENDING", "RUNNING", "CANCELLING", "CANCELLED"].contains(&from), "{from} -> PENDING: {types:?}");
        }
        if terminal.contains(&from) {
            assert!(!["CANCELLING", "PAUSED", "CRASHED"].contains(&to), "{from} -> {to}: {types:?}");
        }
    }

    // The read model is what the log rebuilds.
    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
});
