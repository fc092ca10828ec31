//! The dashboard scenario: many browsers on the V2 dashboard at once. Seeds
//! flow runs (spread over the last day, in mixed states) with task runs
//! through the API, then C clients repeat the dashboard's query mix.

use super::*;

/// The state-type groups the V2 dashboard counts flow runs by.
const FLOW_RUN_GROUPS: &[(&str, &[&str])] = &[
    ("failed", &["FAILED", "CRASHED"]),
    ("running", &["RUNNING", "PENDING", "CANCELLING", "PAUSED"]),
    ("completed", &["COMPLETED"]),
    ("scheduled", &["SCHEDULED"]),
];

/// The task-run counts it shows (total, completed, failed, running).
const TASK_RUN_GROUPS: &[(&str, Option<&[&str]>)] =
    &[("total", None), ("completed", Some(&["COMPLETED"])), ("failed", Some(&["FAILED", "CRASHED"])), ("running", Some(&["RUNNING"]))];

fn iso(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Seeds flow run `i`: SCHEDULED some time in the last day, then (two in
/// three) run and finished, completed or failed; then `tasks` task runs
/// created directly in a final or running state.
async fn seed_one(client: &reqwest::Client, base: &str, flow_id: &str, i: usize, tasks: usize) -> Result<()> {
    let ago = chrono::Duration::seconds(((rand_u64() % 86_000) + 60) as i64);
    let state = json!({"type": "SCHEDULED", "state_details": {"scheduled_time": iso(Utc::now() - ago)}});
    let run = post_json(client, &format!("{base}/flow_runs/"), &json!({"flow_id": flow_id, "name": format!("dash-{i}"), "state": state})).await?;
    let id = run["id"].as_str().ok_or_else(|| anyhow!("flow run without id"))?.to_owned();
    let end = match i % 3 {
        0 => None,
        1 => Some("COMPLETED"),
        _ => Some(if i.is_multiple_of(2) { "FAILED" } else { "COMPLETED" }),
    };
    if let Some(end) = end {
        for s in ["RUNNING", end] {
            post_json(client, &format!("{base}/flow_runs/{id}/set_state"), &json!({"state": {"type": s}, "force": true})).await?;
        }
    }
    for k in 0..tasks {
        let state = match k % 5 {
            0 => "FAILED",
            1 => "RUNNING",
            _ => "COMPLETED",
        };
        let body = json!({"flow_run_id": id, "task_key": format!("task-{k}"), "dynamic_key": "0", "state": {"type": state}});
        post_json(client, &format!("{base}/task_runs/"), &body).await?;
    }
    Ok(())
}

/// One round of the dashboard's queries: `(endpoint, path, body)`.
fn query_mix() -> Vec<(&'static str, &'static str, Value)> {
    let now = Utc::now();
    let day_ago = now - chrono::Duration::days(1);
    let window = json!({"after_": iso(day_ago), "before_": iso(now)});
    let mut out = vec![(
        "ui_flow_runs_history",
        "/ui/flow_runs/history",
        json!({"sort": "EXPECTED_START_TIME_DESC", "limit": 1000, "offset": 0, "flow_runs": {"expected_start_time": window}}),
    )];
    for (_, types) in FLOW_RUN_GROUPS {
        out.push((
            "flow_runs_count",
            "/flow_runs/count",
            json!({"flow_runs": {"expected_start_time": window, "state": {"type": {"any_": types}}}}),
        ));
    }
    for (_, types) in TASK_RUN_GROUPS {
        let mut filter = json!({"expected_start_time": {"after_": iso(day_ago)}});
        if let Some(types) = types {
            filter["state"] = json!({"type": {"any_": types}});
        }
        out.push(("task_runs_count", "/task_runs/count", json!({"task_runs": filter})));
    }
    out.push((
        "task_runs_history",
        "/task_runs/history",
        json!({"history_start": iso(day_ago), "history_end": iso(now), "history_interval_seconds": 3600.0,
               "task_runs": {"expected_start_time": {"after_": iso(day_ago)}}}),
    ));
    out
}

/// Seeds `flows` flow runs with `tasks` task runs each (8 at a time, until
/// `--max-seconds`), then `clients` clients each run up to `rounds` rounds of
/// [`query_mix`] for at most `seconds` (a bound of its own, so a slow setup
/// still gets measured).
pub(crate) async fn dashboard(common: Common, flows: usize, tasks: usize, clients: usize, rounds: usize, seconds: u64) -> Result<()> {
    let base = check_loopback(&common.url)?.to_string().trim_end_matches('/').to_owned();
    let deadline = Instant::now() + Duration::from_secs(common.max_seconds);
    let client = http_client()?;
    let tag = &Uuid::new_v4().simple().to_string()[..8];
    let flow = post_json(&client, &format!("{base}/flows/"), &json!({"name": format!("load-dashboard-{tag}")})).await?;
    let flow_id = flow["id"].as_str().ok_or_else(|| anyhow!("flow without id"))?.to_owned();

    let setup_start = Instant::now();
    let errors = Arc::new(Errors::default());
    let next = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..8 {
        let (client, base, flow_id, next, errors) = (client.clone(), base.clone(), flow_id.clone(), next.clone(), errors.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= flows || Instant::now() > deadline {
                    break;
                }
                if let Err(e) = seed_one(&client, &base, &flow_id, i, tasks).await {
                    errors.add(format!("seed: {e}"));
                }
            }
        }));
    }
    for h in handles {
        h.await?;
    }
    let setup_s = setup_start.elapsed().as_secs_f64();
    let seeded = post_json(&client, &format!("{base}/flow_runs/count"), &json!({"flows": {"id": {"any_": [flow_id]}}})).await?.as_i64().unwrap_or(0);
    // What one round sees, so the figures can be told apart from empty answers.
    let mix = query_mix();
    let listed = post_json(&client, &format!("{base}{}", mix[0].1), &mix[0].2).await?.as_array().map_or(0, Vec::len);
    let task_total = post_json(&client, &format!("{base}{}", mix[5].1), &mix[5].2).await?.as_i64().unwrap_or(0);
    println!("setup: {seeded}/{flows} flow runs with {tasks} task runs each in {setup_s:.1} s; the dashboard lists {listed} runs, {task_total} task runs");

    let hists: Arc<Mutex<BTreeMap<&'static str, Histogram<u64>>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let started = Instant::now();
    let stop = started + Duration::from_secs(seconds);
    let mut handles = Vec::new();
    for _ in 0..clients.max(1) {
        let (client, base, hists, errors) = (client.clone(), base.clone(), hists.clone(), errors.clone());
        handles.push(tokio::spawn(async move {
            let mut done_rounds = 0usize;
            for _ in 0..rounds {
                if Instant::now() > stop {
                    errors.add("query phase ended (--seconds) before all rounds");
                    break;
                }
                for (name, path, body) in query_mix() {
                    let t = Instant::now();
                    match post_json(&client, &format!("{base}{path}"), &body).await {
                        Ok(v) if v.is_array() || v.is_number() => {
                            let mut hs = hists.lock().unwrap();
                            record(hs.entry(name).or_insert_with(new_hist), t.elapsed());
                            record(hs.entry("all").or_insert_with(new_hist), t.elapsed());
                        }
                        Ok(v) => errors.add(format!("{name}: unexpected answer {}", v.to_string().chars().take(60).collect::<String>())),
                        Err(e) => errors.add(format!("{name}: {e}")),
                    }
                }
                done_rounds += 1;
            }
            done_rounds
        }));
    }
    let mut total_rounds = 0;
    for h in handles {
        total_rounds += h.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let hs = hists.lock().unwrap().clone();
    let all = hs.get("all").cloned().unwrap_or_else(new_hist);
    let rate = all.len() as f64 / secs.max(1e-9);
    println!("{clients} clients, {total_rounds} rounds ({} requests) in {secs:.1} s: {rate:.1} req/s", all.len());
    for (name, h) in &hs {
        print_pcts(name, h);
    }
    println!("  errors: {}", errors.total());
    let per: serde_json::Map<String, Value> = hs.iter().filter(|(k, _)| **k != "all").map(|(k, h)| ((*k).to_owned(), pcts(h))).collect();
    println!(
        "{}",
        json!({"scenario": "dashboard", "label": common.label, "flows": flows, "flows_seeded": seeded, "tasks_per_flow": tasks,
               "runs_listed": listed, "task_runs_counted": task_total,
               "clients": clients, "rounds": rounds, "rounds_done": total_rounds, "setup_s": num(setup_s), "seconds": num(secs),
               "requests": all.len(), "rate": num(rate), "latency": pcts(&all), "endpoints": per,
               "complete": total_rounds == clients.max(1) * rounds,
               "errors": errors.total(), "error_kinds": errors.json()})
    );
    Ok(())
}
