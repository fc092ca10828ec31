//! `prefect-load`: bounded load scenarios against a Prefect-compatible server on loopback.
//!
//! Every scenario is bounded by a count and by `--max-seconds`, refuses any URL whose host is
//! not 127.0.0.1 / localhost / ::1, prints human-readable figures and ends with one JSON line
//! (the last line of stdout) for scripts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{SecondsFormat, Utc};
use clap::{Args, Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

mod dashboard;
mod seed_sql;
mod workers;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Parser)]
#[command(name = "prefect-load", about = "Bounded load scenarios for a Prefect-compatible server on loopback")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    /// API base URL (loopback only), e.g. http://127.0.0.1:4200/api
    #[arg(long, default_value = "http://127.0.0.1:4200/api")]
    url: String,
    /// Hard wall-clock bound for the whole scenario, including the wait until stored.
    #[arg(long, default_value_t = 120)]
    max_seconds: u64,
    /// Free-form label copied into the JSON line.
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// N events over several /events/in sockets, then wait until all are visible via /events/filter.
    Ingest {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 8)]
        sockets: usize,
        #[arg(long, default_value_t = 10_000)]
        events: usize,
    },
    /// Bulk-load N events spread over the last hour (mixed names and resources).
    SeedEvents {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 4)]
        sockets: usize,
        #[arg(long, default_value_t = 10_000)]
        events: usize,
    },
    /// Bulk-load N events straight into a server's events read model (its `events` and
    /// `event_resources` tables) over the last D days: for filter benchmarks at 1M events.
    /// Measures the query side only; the tables must exist (start the server once first).
    SeedEventsSql {
        /// Whose table layout to write: prefect-server's read model or Prefect 3.8.8's ORM tables.
        #[arg(long, value_enum)]
        server: seed_sql::Server,
        /// postgresql://127.0.0.1:5432/<db> or sqlite://<path> (loopback Postgres only).
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// `occurred` is spread uniformly over the last D days (the last hour holds ~1/(24 D)).
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Seed of the deterministic generator (same seed, same rows for both servers).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Events per INSERT statement (and transaction).
        #[arg(long, default_value_t = 2000)]
        batch: usize,
        #[arg(long, default_value_t = 1800)]
        max_seconds: u64,
        #[arg(long, default_value = "")]
        label: String,
    },
    /// R x POST /events/filter for the last hour of flow-run events, C at a time.
    Filter {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 200)]
        requests: usize,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// F flow-run lifecycles over REST (+ task-run events over /events/in), C at a time.
    Lifecycle {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 100)]
        flows: usize,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Task runs per flow run (3 events each: Pending, Running, Completed).
        #[arg(long, default_value_t = 10)]
        tasks: usize,
    },
    /// W workers each polling one of P pools' get_scheduled_flow_runs every second, with R
    /// scheduled runs in the pools (created first, through deployments).
    Workers {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 10)]
        pools: usize,
        #[arg(long, default_value_t = 10_000)]
        runs: usize,
        #[arg(long, default_value_t = 100)]
        workers: usize,
        /// How long the workers poll.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// D deployments with an hourly schedule; time until the server has scheduled N runs for each.
    Scheduler {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1000)]
        deployments: usize,
        #[arg(long, default_value_t = 3)]
        runs_each: usize,
    },
    /// The V2 dashboard under load: F flow runs (spread over the last day, mixed states) with T
    /// task runs each, then C clients each repeat R rounds of the dashboard's queries
    /// (/ui/flow_runs/history, /flow_runs/count per state group, /task_runs/count, /task_runs/history)
    /// for at most S seconds.
    Dashboard {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 500)]
        flows: usize,
        #[arg(long, default_value_t = 5)]
        tasks: usize,
        #[arg(long, default_value_t = 8)]
        clients: usize,
        #[arg(long, default_value_t = 25)]
        rounds: usize,
        /// Bound of the query phase.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Delete a NATS JetStream stream (cleanup after a run with PREFECT_MESSAGING_BROKER=nats).
    NatsDeleteStream {
        #[arg(long, default_value = "nats://127.0.0.1:4222")]
        nats_url: String,
        #[arg(long)]
        stream: String,
    },
}

fn check_loopback(url: &str) -> Result<reqwest::Url> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("bad URL {url}"))?;
    match parsed.host_str() {
        Some("127.0.0.1") | Some("localhost") | Some("[::1]") | Some("::1") => Ok(parsed),
        other => bail!("refusing non-loopback target {url} (host {other:?})"),
    }
}

fn now_iso() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let _ = h.record((d.as_micros() as u64).max(1));
}

fn pct(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return f64::NAN;
    }
    (h.value_at_quantile(q) as f64 / 1000.0 * 100.0).round() / 100.0
}

fn pcts(h: &Histogram<u64>) -> Value {
    json!({"p50_ms": num(pct(h, 0.50)), "p95_ms": num(pct(h, 0.95)), "p99_ms": num(pct(h, 0.99)), "max_ms": num(if h.is_empty() { f64::NAN } else { h.max() as f64 / 1000.0 }), "n": h.len()})
}

fn num(x: f64) -> Value {
    if x.is_finite() {
        json!((x * 100.0).round() / 100.0)
    } else {
        Value::Null
    }
}

fn print_pcts(what: &str, h: &Histogram<u64>) {
    println!(
        "  {what}: p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (n={})",
        pct(h, 0.5),
        pct(h, 0.95),
        pct(h, 0.99),
        if h.is_empty() { f64::NAN } else { h.max() as f64 / 1000.0 },
        h.len()
    );
}

/// A UUID whose first 8 hex digits are `tag`, so that `prefect.flow-run.<tag>` is a unique
/// resource-id prefix for one run of the load generator.
fn tagged_uuid(tag: &str) -> String {
    let u = Uuid::new_v4().to_string();
    format!("{tag}{}", &u[8..])
}

fn rand_u64() -> u64 {
    (Uuid::new_v4().as_u128() >> 64) as u64
}

#[derive(Default)]
struct Errors(Mutex<BTreeMap<String, u64>>);

impl Errors {
    fn add(&self, what: impl Into<String>) {
        let mut m = self.0.lock().unwrap();
        let mut k: String = what.into();
        k.truncate(160);
        *m.entry(k).or_default() += 1;
    }
    fn total(&self) -> u64 {
        self.0.lock().unwrap().values().sum()
    }
    fn json(&self) -> Value {
        json!(self.0.lock().unwrap().clone())
    }
}

fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()?)
}

async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> Result<Value> {
    let resp = client.post(url).json(body).send().await.map_err(|e| anyhow!("transport: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        bail!("HTTP {} {}", status.as_u16(), text.chars().take(80).collect::<String>());
    }
    let text = resp.text().await?;
    if text.is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn open_events_in(base: &str) -> Result<Ws> {
    let ws_url = format!("{}/events/in", base.trim_end_matches('/')).replacen("http", "ws", 1);
    let mut req = ws_url.as_str().into_client_request()?;
    req.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("prefect"));
    let (mut ws, _) = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(req))
        .await
        .context("websocket connect timed out")??;
    ws.send(Message::Text(json!({"type": "auth", "token": null}).to_string().into())).await?;
    let reply = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .context("no auth reply within 10 s")?
        .ok_or_else(|| anyhow!("socket closed before auth reply"))??;
    match reply {
        Message::Text(t) if serde_json::from_str::<Value>(t.as_str()).ok().and_then(|v| v.get("type").cloned()) == Some(json!("auth_success")) => Ok(ws),
        other => bail!("unexpected auth reply: {other:?}"),
    }
}

/// Polls `POST /events/filter` (limit 1) for events whose resource id starts with one of
/// `prefixes` until `total >= want` or the deadline passes. Returns the last total seen.
async fn wait_visible(client: &reqwest::Client, base: &str, prefixes: &[String], want: usize, deadline: Instant) -> (usize, bool, Errors) {
    let errors = Errors::default();
    let url = format!("{base}/events/filter");
    // A wide window: seeded events occur up to an hour ago, and the servers' default windows differ.
    let body = json!({
        "filter": {
            "occurred": {"since": (Utc::now() - chrono::Duration::hours(2)).to_rfc3339(), "until": (Utc::now() + chrono::Duration::hours(1)).to_rfc3339()},
            "resource": {"id_prefix": prefixes}
        },
        "limit": 1
    });
    let mut last = 0usize;
    loop {
        match post_json(client, &url, &body).await {
            Ok(v) => {
                last = v.get("total").and_then(Value::as_u64).unwrap_or(0) as usize;
                if last >= want {
                    return (last, true, errors);
                }
            }
            Err(e) => errors.add(format!("filter: {e}")),
        }
        if Instant::now() + Duration::from_millis(100) > deadline {
            return (last, false, errors);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn heartbeat_event(flow_run_id: &str, flow_id: &str, i: usize) -> Value {
    json!({
        "occurred": now_iso(),
        "event": "prefect.flow-run.heartbeat",
        "resource": {
            "prefect.resource.id": format!("prefect.flow-run.{flow_run_id}"),
            "prefect.resource.name": format!("load-run-{}", i / 100),
            "prefect.version": "3.8.8"
        },
        "related": [{
            "prefect.resource.id": format!("prefect.flow.{flow_id}"),
            "prefect.resource.role": "flow",
            "prefect.resource.name": "load-ingest"
        }],
        "payload": {},
        "id": Uuid::now_v7().to_string(),
        "follows": null
    })
}

/// Sends `events` (built lazily by `make`) over `sockets` sockets. `flush_every` = 1 sends and
/// flushes each frame (what the real client does); larger values pipeline frames.
async fn send_events<F>(base: &str, sockets: usize, events: usize, deadline: Instant, flush_every: usize, make: F) -> (usize, Histogram<u64>, Errors)
where
    F: Fn(usize) -> Value + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let errors = Arc::new(Errors::default());
    let mut handles = Vec::new();
    let sockets = sockets.max(1);
    for s in 0..sockets {
        let share = events / sockets + usize::from(s < events % sockets);
        let base = base.to_string();
        let make = make.clone();
        let errors = errors.clone();
        handles.push(tokio::spawn(async move {
            let mut hist = new_hist();
            let mut sent = 0usize;
            let mut ws = match open_events_in(&base).await {
                Ok(ws) => ws,
                Err(e) => {
                    errors.add(format!("events/in open: {e}"));
                    return (sent, hist);
                }
            };
            let mut pending = 0usize;
            let mut batch_start = Instant::now();
            for k in 0..share {
                if Instant::now() > deadline {
                    errors.add("deadline reached while sending");
                    break;
                }
                let i = k * sockets + s;
                let frame = Message::Text(make(i).to_string().into());
                let t = Instant::now();
                let res = if flush_every <= 1 {
                    ws.send(frame).await
                } else {
                    if pending == 0 {
                        batch_start = t;
                    }
                    pending += 1;
                    let r = ws.feed(frame).await;
                    if r.is_ok() && pending >= flush_every {
                        pending = 0;
                        ws.flush().await
                    } else {
                        r
                    }
                };
                if let Err(e) = res {
                    errors.add(format!("events/in send: {e}"));
                    break;
                }
                sent += 1;
                if flush_every <= 1 {
                    record(&mut hist, t.elapsed());
                } else if pending == 0 {
                    record(&mut hist, batch_start.elapsed());
                }
            }
            if pending > 0 {
                match ws.flush().await {
                    Ok(()) => record(&mut hist, batch_start.elapsed()),
                    Err(e) => errors.add(format!("events/in flush: {e}")),
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), ws.close(None)).await;
            (sent, hist)
        }));
    }
    let mut total = 0;
    let mut hist = new_hist();
    for h in handles {
        if let Ok((sent, hs)) = h.await {
            total += sent;
            let _ = hist.add(&hs);
        }
    }
    let errors = Arc::try_unwrap(errors).unwrap_or_default();
    (total, hist, errors)
}

fn merge_errors(a: &Errors, b: Errors) {
    for (k, v) in b.0.into_inner().unwrap() {
        for _ in 0..v {
            a.add(k.clone());
        }
    }
}

fn emit(v: Value) {
    println!("{v}");
}

async fn ingest(c: Common, sockets: usize, events: usize) -> Result<()> {
    let base = check_loopback(&c.url)?.to_string().trim_end_matches('/').to_string();
    let client = http_client()?;
    let tag = Uuid::new_v4().simple().to_string()[..8].to_string();
    let flow_id = Uuid::new_v4().to_string();
    let runs: Arc<Vec<String>> = Arc::new((0..events.div_ceil(100).max(1)).map(|_| tagged_uuid(&tag)).collect());
    let start = Instant::now();
    let deadline = start + Duration::from_secs(c.max_seconds);
    println!("ingest: {events} events over {sockets} sockets to {base} (resource prefix prefect.flow-run.{tag})");
    let r2 = runs.clone();
    let (sent, hist, errors) = send_events(&base, sockets, events, deadline, 1, move |i| heartbeat_event(&r2[i / 100], &flow_id, i)).await;
    let send_secs = start.elapsed().as_secs_f64();
    let (stored, complete, werr) = wait_visible(&client, &base, &[format!("prefect.flow-run.{tag}")], sent.max(1), deadline).await;
    let e2e_secs = start.elapsed().as_secs_f64();
    merge_errors(&errors, werr);
    let send_rate = sent as f64 / send_secs;
    let e2e_rate = if complete && sent == events { stored as f64 / e2e_secs } else { f64::NAN };
    println!("  sent {sent}/{events} in {send_secs:.2} s ({send_rate:.0} events/s send side)");
    println!("  stored {stored} visible after {e2e_secs:.2} s ({e2e_rate:.0} events/s end to end){}", if complete { "" } else { "  INCOMPLETE" });
    print_pcts("frame send", &hist);
    println!("  errors: {}", errors.total());
    emit(json!({
        "scenario": "ingest", "label": c.label, "events": events, "sockets": sockets, "sent": sent, "stored": stored,
        "complete": complete && sent == events, "send_seconds": num(send_secs), "send_rate": num(send_rate),
        "e2e_seconds": num(e2e_secs), "e2e_rate": num(e2e_rate), "frame_send": pcts(&hist),
        "errors": errors.total(), "error_kinds": errors.json()
    }));
    Ok(())
}

const SEED_NAMES: [&str; 8] = [
    "prefect.flow-run.Pending",
    "prefect.flow-run.Running",
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.heartbeat",
    "prefect.task-run.Running",
    "prefect.task-run.Completed",
    "load.custom.ping",
];

fn seed_event(tag: &str, runs: &[String], flows: &[String], i: usize) -> Value {
    let name = SEED_NAMES[i % SEED_NAMES.len()];
    let ago_ms = (rand_u64() % 3_540_000) as i64 + 30_000; // 30 s .. 1 h ago
    let occurred = (Utc::now() - chrono::Duration::milliseconds(ago_ms)).to_rfc3339_opts(SecondsFormat::Micros, true);
    let run = &runs[(rand_u64() as usize) % runs.len()];
    let flow = &flows[(rand_u64() as usize) % flows.len()];
    let (resource, related) = if name.starts_with("prefect.flow-run.") {
        let state = name.rsplit('.').next().unwrap();
        let mut r = json!({"prefect.resource.id": format!("prefect.flow-run.{run}"), "prefect.resource.name": format!("seed-{}", &run[9..13])});
        if state != "heartbeat" {
            r["prefect.state-name"] = json!(state);
            r["prefect.state-type"] = json!(state.to_uppercase());
        }
        (r, json!([{"prefect.resource.id": format!("prefect.flow.{flow}"), "prefect.resource.role": "flow", "prefect.resource.name": "seed-flow"}]))
    } else if name.starts_with("prefect.task-run.") {
        // No "prefect.orchestration" label: stored as plain events, not recorded as task runs.
        let state = name.rsplit('.').next().unwrap();
        (
            json!({"prefect.resource.id": format!("prefect.task-run.{}", tagged_uuid(tag)), "prefect.resource.name": "seed-task", "prefect.state-name": state, "prefect.state-type": state.to_uppercase()}),
            json!([{"prefect.resource.id": format!("prefect.flow-run.{run}"), "prefect.resource.role": "flow-run"}, {"prefect.resource.id": format!("prefect.flow.{flow}"), "prefect.resource.role": "flow"}]),
        )
    } else {
        (json!({"prefect.resource.id": format!("load.resource.{tag}.{}", i % 50)}), json!([]))
    };
    json!({"occurred": occurred, "event": name, "resource": resource, "related": related, "payload": {"i": i}, "id": Uuid::now_v7().to_string(), "follows": null})
}

async fn seed_events(c: Common, sockets: usize, events: usize) -> Result<()> {
    let base = check_loopback(&c.url)?.to_string().trim_end_matches('/').to_string();
    let client = http_client()?;
    let tag = Uuid::new_v4().simple().to_string()[..8].to_string();
    let runs: Vec<String> = (0..200).map(|_| tagged_uuid(&tag)).collect();
    let flows: Vec<String> = (0..10).map(|_| Uuid::new_v4().to_string()).collect();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(c.max_seconds);
    println!("seed-events: {events} events over {sockets} sockets to {base}");
    let t2 = tag.clone();
    let (sent, hist, errors) = send_events(&base, sockets, events, deadline, 500, move |i| seed_event(&t2, &runs, &flows, i)).await;
    let send_secs = start.elapsed().as_secs_f64();
    let prefixes = vec![format!("prefect.flow-run.{tag}"), format!("prefect.task-run.{tag}"), format!("load.resource.{tag}.")];
    let (stored, complete, werr) = wait_visible(&client, &base, &prefixes, sent.max(1), deadline).await;
    let e2e_secs = start.elapsed().as_secs_f64();
    merge_errors(&errors, werr);
    let e2e_rate = if complete && sent == events { stored as f64 / e2e_secs } else { f64::NAN };
    println!("  sent {sent}/{events} in {send_secs:.2} s; {stored} visible after {e2e_secs:.2} s ({e2e_rate:.0} events/s){}", if complete { "" } else { "  INCOMPLETE" });
    print_pcts("500-frame batch send", &hist);
    emit(json!({
        "scenario": "seed-events", "label": c.label, "events": events, "sent": sent, "stored": stored,
        "complete": complete && sent == events, "send_seconds": num(send_secs), "send_rate": num(sent as f64 / send_secs),
        "e2e_seconds": num(e2e_secs), "e2e_rate": num(e2e_rate), "batch_send": pcts(&hist),
        "errors": errors.total(), "error_kinds": errors.json()
    }));
    Ok(())
}

async fn filter(c: Common, requests: usize, concurrency: usize) -> Result<()> {
    let base = check_loopback(&c.url)?.to_string().trim_end_matches('/').to_string();
    let client = http_client()?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(c.max_seconds);
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Errors::default());
    let totals = Arc::new(Mutex::new(Vec::<u64>::new()));
    let url = format!("{base}/events/filter");
    println!("filter: {requests} requests, concurrency {concurrency}, to {url}");
    let mut handles = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, next, errors, totals, url) = (client.clone(), next.clone(), errors.clone(), totals.clone(), url.clone());
        handles.push(tokio::spawn(async move {
            let mut hist = new_hist();
            while next.fetch_add(1, Ordering::Relaxed) < requests && Instant::now() < deadline {
                let now = Utc::now();
                let body = json!({
                    "filter": {
                        "occurred": {"since": (now - chrono::Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Micros, true), "until": now.to_rfc3339_opts(SecondsFormat::Micros, true)},
                        "event": {"prefix": ["prefect.flow-run."]}
                    },
                    "limit": 50
                });
                let t = Instant::now();
                match post_json(&client, &url, &body).await {
                    Ok(v) => {
                        record(&mut hist, t.elapsed());
                        let n = v.get("events").and_then(Value::as_array).map(|a| a.len()).unwrap_or(0);
                        if n == 0 {
                            errors.add("filter returned no events");
                        }
                        totals.lock().unwrap().push(v.get("total").and_then(Value::as_u64).unwrap_or(0));
                    }
                    Err(e) => errors.add(format!("filter: {e}")),
                }
            }
            hist
        }));
    }
    let mut hist = new_hist();
    for h in handles {
        if let Ok(hs) = h.await {
            let _ = hist.add(&hs);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let ok = hist.len();
    let last_total = totals.lock().unwrap().last().copied().unwrap_or(0);
    println!("  {ok}/{requests} ok in {secs:.2} s ({:.1} req/s); total matched (last) {last_total}", ok as f64 / secs);
    print_pcts("filter latency", &hist);
    println!("  errors: {}", errors.total());
    emit(json!({
        "scenario": "filter", "label": c.label, "requests": requests, "concurrency": concurrency, "ok": ok,
        "complete": ok as usize == requests, "seconds": num(secs), "rate": num(ok as f64 / secs), "matched_total": last_total,
        "latency": pcts(&hist), "errors": errors.total(), "error_kinds": errors.json()
    }));
    Ok(())
}

struct TaskRunSim {
    id: String,
    name: String,
    task_key: String,
    dynamic_key: String,
    expected_start: String,
    start: Option<String>,
    last_event: Option<String>,
    last_state: Option<(String, String)>,
}

impl TaskRunSim {
    fn event(&mut self, flow_run_id: &str, run_name: &str, flow_id: &str, flow_name: &str, ty: &str, name: &str, run_count: u32) -> Value {
        let ts = Utc::now();
        let ts_z = ts.to_rfc3339_opts(SecondsFormat::Micros, true);
        let ts_off = ts.to_rfc3339_opts(SecondsFormat::Micros, false);
        if ty == "RUNNING" && self.start.is_none() {
            self.start = Some(ts_z.clone());
        }
        let id = Uuid::now_v7().to_string();
        let mut task_run = json!({
            "name": self.name, "task_key": self.task_key, "dynamic_key": self.dynamic_key,
            "empirical_policy": {"max_retries": 0, "retry_delay_seconds": 0.0, "retries": 0, "retry_delay": 0},
            "tags": [], "labels": {}, "task_inputs": {}, "run_count": run_count, "flow_run_run_count": 1,
            "expected_start_time": self.expected_start, "total_run_time": 0.0
        });
        if let Some(s) = &self.start {
            task_run["start_time"] = json!(s);
        }
        if ty == "COMPLETED" {
            task_run["end_time"] = json!(ts_z);
            task_run["total_run_time"] = json!(0.001);
        }
        let initial = self.last_state.as_ref().map(|(t, n)| json!({"type": t, "name": n, "message": "", "state_details": {}}));
        let ev = json!({
            "occurred": ts_z,
            "event": format!("prefect.task-run.{name}"),
            "resource": {
                "prefect.resource.id": format!("prefect.task-run.{}", self.id),
                "prefect.resource.name": self.name,
                "prefect.run-count": run_count.to_string(),
                "prefect.state-message": "",
                "prefect.state-name": name,
                "prefect.state-timestamp": ts_off,
                "prefect.state-type": ty,
                "prefect.orchestration": "client"
            },
            "related": [
                {"prefect.resource.id": format!("prefect.flow-run.{flow_run_id}"), "prefect.resource.role": "flow-run", "prefect.resource.name": run_name},
                {"prefect.resource.id": format!("prefect.flow.{flow_id}"), "prefect.resource.role": "flow", "prefect.resource.name": flow_name}
            ],
            "payload": {
                "intended": {"from": self.last_state.as_ref().map(|(t, _)| t.clone()), "to": ty},
                "initial_state": initial,
                "validated_state": {"type": ty, "name": name, "message": "", "state_details": {}, "data": null},
                "task_run": task_run
            },
            "id": id,
            "follows": self.last_event
        });
        self.last_event = Some(id);
        self.last_state = Some((ty.to_string(), name.to_string()));
        ev
    }
}

async fn lifecycle(c: Common, flows: usize, concurrency: usize, tasks: usize) -> Result<()> {
    let base = check_loopback(&c.url)?.to_string().trim_end_matches('/').to_string();
    let client = http_client()?;
    let tag = Uuid::new_v4().simple().to_string()[..8].to_string();
    let flow_name = format!("load-lifecycle-{tag}");
    let start = Instant::now();
    let deadline = start + Duration::from_secs(c.max_seconds);
    println!("lifecycle: {flows} flow runs x {tasks} task runs, concurrency {concurrency}, to {base}");
    let flow = post_json(&client, &format!("{base}/flows/"), &json!({"name": flow_name, "tags": [], "labels": {}})).await.context("POST /flows/")?;
    let flow_id = flow.get("id").and_then(Value::as_str).ok_or_else(|| anyhow!("no flow id in {flow}"))?.to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Errors::default());
    let done = Arc::new(AtomicUsize::new(0));
    let rejects = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, next, errors, done, rejects) = (client.clone(), next.clone(), errors.clone(), done.clone(), rejects.clone());
        let (base, flow_id, flow_name, tag) = (base.clone(), flow_id.clone(), flow_name.clone(), tag.clone());
        handles.push(tokio::spawn(async move {
            let (mut h_create, mut h_set) = (new_hist(), new_hist());
            let mut ws = match open_events_in(&base).await {
                Ok(ws) => Some(ws),
                Err(e) => {
                    errors.add(format!("events/in open: {e}"));
                    None
                }
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= flows || Instant::now() >= deadline {
                    break;
                }
                let run_name = format!("load-{tag}-{i}");
                let t = Instant::now();
                let run = match post_json(&client, &format!("{base}/flow_runs/"), &json!({
                    "flow_id": flow_id, "name": run_name, "parameters": {}, "tags": [],
                    "state": {"type": "PENDING", "name": "Pending", "message": "", "state_details": {}}
                })).await {
                    Ok(v) => v,
                    Err(e) => {
                        errors.add(format!("create flow run: {e}"));
                        continue;
                    }
                };
                record(&mut h_create, t.elapsed());
                let Some(run_id) = run.get("id").and_then(Value::as_str).map(str::to_string) else {
                    errors.add("create flow run: no id");
                    continue;
                };
                let set_state = |ty: &'static str, name: &'static str| {
                    let (client, url) = (client.clone(), format!("{base}/flow_runs/{run_id}/set_state"));
                    async move {
                        let t = Instant::now();
                        let r = post_json(&client, &url, &json!({"state": {"type": ty, "name": name, "message": "", "state_details": {}}, "force": false})).await;
                        (t.elapsed(), r)
                    }
                };
                let (d, r) = set_state("RUNNING", "Running").await;
                match r {
                    Ok(v) if v.get("status") == Some(&json!("ACCEPT")) => record(&mut h_set, d),
                    Ok(v) => {
                        record(&mut h_set, d);
                        rejects.fetch_add(1, Ordering::Relaxed);
                        errors.add(format!("set_state RUNNING: {}", v.get("status").cloned().unwrap_or_default()));
                        continue;
                    }
                    Err(e) => {
                        errors.add(format!("set_state RUNNING: {e}"));
                        continue;
                    }
                }
                if let Some(sock) = ws.as_mut() {
                    let mut failed = false;
                    for k in 0..tasks {
                        let mut tr = TaskRunSim {
                            id: Uuid::now_v7().to_string(),
                            name: format!("work-{k}"),
                            task_key: "work-0a1b2c3d".into(),
                            dynamic_key: k.to_string(),
                            expected_start: now_iso(),
                            start: None,
                            last_event: None,
                            last_state: None,
                        };
                        for (ty, name, rc) in [("PENDING", "Pending", 0), ("RUNNING", "Running", 1), ("COMPLETED", "Completed", 1)] {
                            let ev = tr.event(&run_id, &run_name, &flow_id, &flow_name, ty, name, rc);
                            if let Err(e) = sock.send(Message::Text(ev.to_string().into())).await {
                                errors.add(format!("events/in send: {e}"));
                                failed = true;
                                break;
                            }
                        }
                        if failed {
                            break;
                        }
                    }
                    if failed {
                        ws = None;
                    }
                }
                let (d, r) = set_state("COMPLETED", "Completed").await;
                match r {
                    Ok(v) if v.get("status") == Some(&json!("ACCEPT")) => {
                        record(&mut h_set, d);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(v) => {
                        record(&mut h_set, d);
                        rejects.fetch_add(1, Ordering::Relaxed);
                        errors.add(format!("set_state COMPLETED: {}", v.get("status").cloned().unwrap_or_default()));
                    }
                    Err(e) => errors.add(format!("set_state COMPLETED: {e}")),
                }
            }
            if let Some(mut sock) = ws {
                let _ = tokio::time::timeout(Duration::from_secs(5), sock.close(None)).await;
            }
            (h_create, h_set)
        }));
    }
    let (mut h_create, mut h_set) = (new_hist(), new_hist());
    for h in handles {
        if let Ok((a, b)) = h.await {
            let _ = h_create.add(&a);
            let _ = h_set.add(&b);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let completed = done.load(Ordering::Relaxed);
    // Task runs are recorded from the events asynchronously on both servers: wait (bounded).
    let want_tasks = completed * tasks;
    let count_body = json!({"flows": {"id": {"any_": [flow_id]}}});
    let mut recorded = 0u64;
    loop {
        match post_json(&client, &format!("{base}/task_runs/count"), &count_body).await {
            Ok(v) => recorded = v.as_u64().unwrap_or(0),
            Err(e) => errors.add(format!("task_runs/count: {e}")),
        }
        if recorded as usize >= want_tasks || Instant::now() + Duration::from_millis(200) > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let tasks_secs = start.elapsed().as_secs_f64();
    let rate = completed as f64 / secs;
    println!("  {completed}/{flows} flow runs COMPLETED in {secs:.2} s ({rate:.1} flow runs/s); {} rejected", rejects.load(Ordering::Relaxed));
    println!("  task runs recorded {recorded}/{want_tasks} after {tasks_secs:.2} s");
    print_pcts("create flow run", &h_create);
    print_pcts("set_state", &h_set);
    println!("  errors: {}", errors.total());
    emit(json!({
        "scenario": "lifecycle", "label": c.label, "flows": flows, "tasks_per_flow": tasks, "concurrency": concurrency,
        "completed": completed, "complete": completed == flows && recorded as usize >= flows * tasks,
        "seconds": num(secs), "rate": num(rate), "task_runs_recorded": recorded, "task_runs_seconds": num(tasks_secs),
        "create": pcts(&h_create), "set_state": pcts(&h_set), "errors": errors.total(), "error_kinds": errors.json()
    }));
    Ok(())
}

async fn nats_delete_stream(nats_url: &str, stream: &str) -> Result<()> {
    check_loopback(nats_url)?;
    let client = tokio::time::timeout(Duration::from_secs(5), async_nats::connect(nats_url)).await.context("NATS connect timed out")??;
    let js = async_nats::jetstream::new(client);
    match js.delete_stream(stream).await {
        Ok(_) => println!("deleted stream {stream}"),
        Err(e) => println!("could not delete stream {stream}: {e}"),
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Ingest { common, sockets, events } => ingest(common, sockets, events).await,
        Cmd::SeedEvents { common, sockets, events } => seed_events(common, sockets, events).await,
        Cmd::SeedEventsSql { server, database_url, events, days, seed, batch, max_seconds, label } => {
            seed_sql::seed_events_sql(server, &database_url, events, days, seed, batch, max_seconds, &label).await
        }
        Cmd::Filter { common, requests, concurrency } => filter(common, requests, concurrency).await,
        Cmd::Lifecycle { common, flows, concurrency, tasks } => lifecycle(common, flows, concurrency, tasks).await,
        Cmd::Workers { common, pools, runs, workers: w, seconds } => workers::workers(common, pools, runs, w, seconds).await,
        Cmd::Scheduler { common, deployments, runs_each } => workers::scheduler(common, deployments, runs_each).await,
        Cmd::Dashboard { common, flows, tasks, clients, rounds, seconds } => dashboard::dashboard(common, flows, tasks, clients, rounds, seconds).await,
        Cmd::NatsDeleteStream { nats_url, stream } => nats_delete_stream(&nats_url, &stream).await,
    }
}
