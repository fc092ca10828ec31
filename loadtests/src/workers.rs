//! Scenarios for the deployments side: many workers polling their pools, and
//! the scheduler filling many deployments' schedules.

use super::*;

/// POST returning JSON, with the status checked.
async fn post_json(client: &reqwest::Client, url: String, body: Value) -> Result<Value> {
    let resp = client.post(&url).json(&body).send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("{url}: {status} {}", &text[..text.len().min(200)]);
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn create_flow(client: &reqwest::Client, base: &str, name: &str) -> Result<String> {
    let flow = post_json(client, format!("{base}/flows/"), json!({"name": name})).await?;
    flow["id"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("flow without id"))
}

/// Setup: `pools` pools, one deployment each, `runs` SCHEDULED runs spread
/// over the next hours (so polls scan real rows but claim nothing), bounded
/// by `--max-seconds`; then `workers` workers each poll one pool every second
/// for `seconds` (a bound of its own, so a slow setup still gets measured).
pub(crate) async fn workers(common: Common, pools: usize, runs: usize, workers: usize, seconds: u64) -> Result<()> {
    let base = check_loopback(&common.url)?.to_string().trim_end_matches('/').to_owned();
    let deadline = Instant::now() + Duration::from_secs(common.max_seconds);
    let client = http_client()?;
    let tag = &Uuid::new_v4().simple().to_string()[..8];
    let flow_id = create_flow(&client, &base, &format!("load-workers-{tag}")).await?;
    let mut pool_names = Vec::new();
    let mut deployment_ids = Vec::new();
    for p in 0..pools {
        let name = format!("load-pool-{tag}-{p}");
        post_json(&client, format!("{base}/work_pools/"), json!({"name": name, "type": "load-test"})).await?;
        let dep = post_json(
            &client,
            format!("{base}/deployments/"),
            json!({"name": format!("dep-{p}"), "flow_id": flow_id, "work_pool_name": name, "enforce_parameter_schema": false}),
        )
        .await?;
        deployment_ids.push(dep["id"].as_str().unwrap_or_default().to_owned());
        pool_names.push(name);
    }
    let setup_start = Instant::now();
    let errors = Arc::new(Errors::default());
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, base, deps, next, errors) = (client.clone(), base.clone(), deployment_ids.clone(), next.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= runs || Instant::now() > deadline {
                    break;
                }
                let at = Utc::now() + chrono::Duration::hours(1) + chrono::Duration::seconds((i * 3) as i64);
                let state = json!({"type": "SCHEDULED", "name": "Scheduled", "state_details": {"scheduled_time": at.to_rfc3339_opts(SecondsFormat::Micros, true)}});
                let url = format!("{base}/deployments/{}/create_flow_run", deps[i % deps.len()]);
                if let Err(e) = post_json(&client, url, json!({"state": state})).await {
                    errors.add(format!("create_flow_run: {e}"));
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let setup_secs = setup_start.elapsed().as_secs_f64();
    let created = post_json(&client, format!("{base}/flow_runs/count"), json!({"flows": {"id": {"any_": [flow_id]}}})).await?.as_i64().unwrap_or(0);
    println!("setup: {pools} pools, {created}/{runs} scheduled runs created in {setup_secs:.1} s");

    let hist = Arc::new(Mutex::new(new_hist()));
    let stop = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (client, base, pool, hist, errors) = (client.clone(), base.clone(), pool_names[w % pool_names.len()].clone(), hist.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            // Spread the workers over the first second, as real ones are.
            tokio::time::sleep(Duration::from_millis((w as u64 * 1000) / workers.max(1) as u64)).await;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while Instant::now() < stop {
                tick.tick().await;
                let before = (Utc::now() + chrono::Duration::seconds(10)).to_rfc3339_opts(SecondsFormat::Micros, true);
                let started = Instant::now();
                let url = format!("{base}/work_pools/{pool}/get_scheduled_flow_runs");
                match post_json(&client, url, json!({"scheduled_before": before})).await {
                    Ok(_) => record(&mut hist.lock().unwrap(), started.elapsed()),
                    Err(e) => errors.add(format!("get_scheduled_flow_runs: {e}")),
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let h = hist.lock().unwrap().clone();
    print_pcts("get_scheduled_flow_runs", &h);
    let polls_per_s = h.len() as f64 / seconds as f64;
    println!("  {polls_per_s:.1} polls/s, errors: {}", errors.total());
    println!(
        "{}",
        json!({"scenario": "workers", "label": common.label, "pools": pools, "runs": runs, "runs_created": created, "workers": workers, "seconds": seconds,
               "setup_s": num(setup_secs), "polls_per_s": num(polls_per_s), "poll": pcts(&h), "errors": errors.total(), "error_kinds": errors.json()})
    );
    Ok(())
}

/// Creates `deployments` deployments with an hourly schedule and measures how
/// long until the server has scheduled `runs_each` runs for every one.
pub(crate) async fn scheduler(common: Common, deployments: usize, runs_each: usize) -> Result<()> {
    let base = check_loopback(&common.url)?.to_string().trim_end_matches('/').to_owned();
    let deadline = Instant::now() + Duration::from_secs(common.max_seconds);
    let client = http_client()?;
    let tag = &Uuid::new_v4().simple().to_string()[..8];
    let flow_id = create_flow(&client, &base, &format!("load-scheduler-{tag}")).await?;
    let started = Instant::now();
    let errors = Arc::new(Errors::default());
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, base, flow_id, next, errors) = (client.clone(), base.clone(), flow_id.clone(), next.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= deployments || Instant::now() > deadline {
                    break;
                }
                let body = json!({
                    "name": format!("sched-{i}"), "flow_id": flow_id, "enforce_parameter_schema": false,
                    "schedules": [{"schedule": {"interval": 3600.0, "anchor_date": "2026-01-01T00:00:00Z", "timezone": "UTC"}, "active": true}],
                });
                if let Err(e) = post_json(&client, format!("{base}/deployments/"), body).await {
                    errors.add(format!("create deployment: {e}"));
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let created_s = started.elapsed().as_secs_f64();
    let target = (deployments * runs_each) as i64;
    let mut count = 0i64;
    while Instant::now() < deadline {
        match post_json(&client, format!("{base}/flow_runs/count"), json!({"flows": {"id": {"any_": [flow_id]}}})).await {
            Ok(v) => count = v.as_i64().unwrap_or(0),
            Err(e) => errors.add(format!("count: {e}")),
        }
        if count >= target {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let all_s = started.elapsed().as_secs_f64();
    println!("created {deployments} deployments in {created_s:.1} s; {count}/{target} runs scheduled after {all_s:.1} s");
    println!(
        "{}",
        json!({"scenario": "scheduler", "label": common.label, "deployments": deployments, "runs_target": target, "runs": count,
               "create_s": num(created_s), "all_scheduled_s": if count >= target { num(all_s) } else { Value::Null },
               "errors": errors.total(), "error_kinds": errors.json()})
    );
    Ok(())
}
