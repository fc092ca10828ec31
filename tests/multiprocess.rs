//! Scale-out on Postgres + NATS, with the real binary: two API-only
//! processes (`--no-services`) and one `services` process. A subscriber on
//! process A receives, in order and once, the events of a flow run driven
//! through process B, and keeps receiving them after NATS restarts; a worker
//! channel on A is pushed the pool changes made through B.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::nats::{free_port, OwnNats};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A `prefect-server` child process, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str], port: u16, env: &[(String, String)]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prefect-server"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PREFECT_SERVER_API_PORT", port.to_string())
        .env("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Server(cmd.spawn().expect("start prefect-server"))
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/health")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "{base} never became healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> Value {
    let resp = client.post(url).json(&body).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.json().await.unwrap()
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket the way Prefect's client does: subprotocol `prefect`,
/// then `auth` / `auth_success`.
async fn prefect_socket(url: String) -> Ws {
    let mut req = url.replacen("http://", "ws://", 1).into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "prefect".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text(r#"{"type":"auth","token":null}"#)).await.unwrap();
    ws.next().await.unwrap().unwrap();
    ws
}

async fn subscribe(base: &str, flow_id: &str) -> Ws {
    let mut ws = prefect_socket(format!("{base}/events/out")).await;
    let filter = json!({"type": "filter", "filter": {
        "event": {"prefix": ["prefect.flow-run."]},
        "related": {"id": [format!("prefect.flow.{flow_id}")]}
    }});
    ws.send(Message::text(filter.to_string())).await.unwrap();
    ws
}

/// Reads events until `n` have arrived (bounded by a deadline).
async fn read_events(ws: &mut Ws, n: usize) -> Vec<(String, String)> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.len() < n {
        let msg = tokio::time::timeout_at(deadline, ws.next()).await.expect("events in time").unwrap().unwrap();
        let Ok(text) = msg.to_text() else { continue };
        let v: Value = serde_json::from_str(text).unwrap();
        let e = &v["event"];
        got.push((e["resource"]["prefect.resource.id"].as_str().unwrap().to_owned(), e["event"].as_str().unwrap().to_owned()));
    }
    got
}

/// Opens a worker channel on `pool` and reads past `worker.ready.v1`.
async fn worker_channel(base: &str, pool: &str) -> Ws {
    let mut ws = prefect_socket(format!("{base}/work_pools/{pool}/workers/connect")).await;
    let hello = json!({"type": "worker.hello.v1", "id": uuid::Uuid::now_v7(), "sent_at": "2026-11-23T20:00:00Z", "payload": {
        "consumer_id": uuid::Uuid::now_v7(), "worker_name": "mp-worker", "worker_type": "process", "heartbeat_interval_seconds": 30,
        "supported_channel_versions": ["work_pool_worker_channel.v1"],
        "requested_capabilities": ["worker_heartbeat.v1", "work_pool_snapshot.v1"]}});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    assert_eq!(next_text_json(&mut ws).await["type"], "worker.ready.v1");
    ws
}

/// The next text frame as JSON (bounded by a deadline).
async fn next_text_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next()).await.expect("a frame in time").unwrap().unwrap();
        if let Ok(text) = msg.to_text() {
            if !text.is_empty() {
                return serde_json::from_str(text).unwrap();
            }
        }
    }
}

async fn run_flow(client: &reqwest::Client, base: &str, flow_id: &str) -> String {
    let run = post(client, format!("{base}/flow_runs/"), json!({"flow_id": flow_id})).await;
    let id = run["id"].as_str().unwrap().to_owned();
    for state in ["RUNNING", "COMPLETED"] {
        post(client, format!("{base}/flow_runs/{id}/set_state"), json!({"state": {"type": state}})).await;
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_one_process_sees_runs_driven_through_another() {
    let admin = std::env::var("PREFECT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".into());
    let db_name = format!("prefect_mp_{}", uuid::Uuid::new_v4().simple());
    let admin_db = prefect_server::db::Db::connect(&prefect_server::config::DatabaseUrl::parse(&admin).unwrap(), 2).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {db_name}")).execute(admin_db.reader()).await.unwrap();
    let db_url = format!("{}/{db_name}", admin.rsplit_once('/').unwrap().0);

    let store = std::env::temp_dir().join(format!("mp-nats-{}", uuid::Uuid::new_v4().simple()));
    let mut nats = OwnNats::start(free_port(), &store);
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let env = vec![
        ("PREFECT_API_DATABASE_CONNECTION_URL".to_owned(), db_url),
        ("PREFECT_MESSAGING_BROKER".to_owned(), "nats".to_owned()),
        ("PREFECT_NATS_URL".to_owned(), nats.url()),
        ("PREFECT_NATS_STREAM".to_owned(), format!("MP_{tag}")),
        ("PREFECT_NATS_SUBJECT_PREFIX".to_owned(), format!("mp{tag}")),
    ];
    let (port_a, port_b) = (free_port(), free_port());
    let client = reqwest::Client::new();
    let (a, b) = (format!("http://127.0.0.1:{port_a}/api"), format!("http://127.0.0.1:{port_b}/api"));
    // Migrate once first so the three processes do not race to create the schema.
    let status = Command::new(env!("CARGO_BIN_EXE_prefect-server")).arg("migrate").envs(env.iter().cloned()).stdout(Stdio::null()).status().unwrap();
    assert!(status.success());
    let _services = start(&["services"], free_port(), &env);
    let _api_a = start(&["--no-services"], port_a, &env);
    let _api_b = start(&["--no-services"], port_b, &env);
    wait_healthy(&client, &a).await;
    wait_healthy(&client, &b).await;

    let flow = post(&client, format!("{b}/flows/"), json!({"name": format!("mp-{tag}")})).await;
    let flow_id = flow["id"].as_str().unwrap().to_owned();
    let mut ws = subscribe(&a, &flow_id).await;

    let first = run_flow(&client, &b, &flow_id).await;
    let got = read_events(&mut ws, 3).await;
    let want: Vec<(String, String)> = ["Pending", "Running", "Completed"]
        .iter()
        .map(|s| (format!("prefect.flow-run.{first}"), format!("prefect.flow-run.{s}")))
        .collect();
    assert_eq!(got, want);

    // A worker channel on A is pushed a pool change made through B.
    let pool = format!("mp-pool-{tag}");
    post(&client, format!("{b}/work_pools/"), json!({"name": pool, "type": "process"})).await;
    let mut channel = worker_channel(&a, &pool).await;
    let resp = client.patch(format!("{b}/work_pools/{pool}")).json(&json!({"concurrency_limit": 4})).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let snapshot = next_text_json(&mut channel).await;
    assert_eq!((snapshot["type"].as_str(), snapshot["payload"]["work_pool"]["concurrency_limit"].as_i64()), (Some("work_pool.snapshot.v1"), Some(4)));

    // NATS goes away: writes still succeed (the log is the source of truth)...
    nats.kill();
    let second = run_flow(&client, &b, &flow_id).await;
    // ...and once it is back, the relay catches up and A's subscriber resumes.
    nats.spawn();
    let got = read_events(&mut ws, 3).await;
    let want: Vec<(String, String)> = ["Pending", "Running", "Completed"]
        .iter()
        .map(|s| (format!("prefect.flow-run.{second}"), format!("prefect.flow-run.{s}")))
        .collect();
    assert_eq!(got, want, "after the NATS restart");

    // Nothing more arrives: no duplicates of either run.
    let extra = tokio::time::timeout(Duration::from_millis(1500), ws.next()).await;
    assert!(extra.is_err(), "unexpected extra frame: {extra:?}");

    drop((_api_a, _api_b, _services));
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")).execute(admin_db.reader()).await;
    admin_db.close().await;
}

/// Number of advisory locks held in the test database (the services leader lock).
async fn advisory_locks(db: &prefect_server::db::Db) -> i64 {
    use sqlx::Row;
    let row = sqlx::query(
        "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(db.reader())
    .await
    .unwrap();
    row.try_get::<i64, _>(0).unwrap()
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn emit_and_wait(client: &reqwest::Client, api: &str, rid: &str) {
    let event = json!([{"occurred": chrono::Utc::now().to_rfc3339(), "event": "test.leader", "resource": {"prefect.resource.id": rid}, "id": uuid::Uuid::now_v7()}]);
    assert!(client.post(format!("{api}/events")).json(&event).send().await.unwrap().status().is_success());
    wait_until(&format!("{rid} to be projected"), || async {
        let page = post(client, format!("{api}/events/filter"), json!({"filter": {"resource": {"id": [rid]}}})).await;
        page["total"] == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_services_process_waits_and_takes_over() {
    let admin = std::env::var("PREFECT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".into());
    let db_name = format!("prefect_leader_{}", uuid::Uuid::new_v4().simple());
    let admin_db = prefect_server::db::Db::connect(&prefect_server::config::DatabaseUrl::parse(&admin).unwrap(), 2).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {db_name}")).execute(admin_db.reader()).await.unwrap();
    let db_url = format!("{}/{db_name}", admin.rsplit_once('/').unwrap().0);
    let db = prefect_server::db::Db::connect(&prefect_server::config::DatabaseUrl::parse(&db_url).unwrap(), 2).await.unwrap();
    let env = vec![("PREFECT_API_DATABASE_CONNECTION_URL".to_owned(), db_url)];
    let status = Command::new(env!("CARGO_BIN_EXE_prefect-server")).arg("migrate").envs(env.iter().cloned()).stdout(Stdio::null()).status().unwrap();
    assert!(status.success());

    let port = free_port();
    let api = format!("http://127.0.0.1:{port}/api");
    let client = reqwest::Client::new();
    let _api = start(&["--no-services"], port, &env);
    wait_healthy(&client, &api).await;

    let first = start(&["services"], free_port(), &env);
    wait_until("the first services process to lead", || async { advisory_locks(&db).await == 1 }).await;
    let _second = start(&["services"], free_port(), &env);
    emit_and_wait(&client, &api, "test.leader.one").await;
    // Still one leader with two services processes running.
    assert_eq!(advisory_locks(&db).await, 1);

    drop(first); // killed: its lock connection closes
    emit_and_wait(&client, &api, "test.leader.two").await;
    assert_eq!(advisory_locks(&db).await, 1, "the second process now holds the lock");

    drop((_api, _second));
    db.close().await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")).execute(admin_db.reader()).await;
    admin_db.close().await;
}

async fn deployment_runs(client: &reqwest::Client, api: &str, deployment_id: &str) -> Vec<Value> {
    let body = json!({"deployments": {"id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_ASC"});
    post(client, format!("{api}/flow_runs/filter"), body).await.as_array().cloned().unwrap_or_default()
}

async fn hourly_deployment(client: &reqwest::Client, api: &str, flow_id: &str, name: &str) -> String {
    let body = json!({
        "name": name, "flow_id": flow_id, "enforce_parameter_schema": false,
        "schedules": [{"schedule": {"interval": 3600.0, "anchor_date": "2026-01-01T00:00:00Z", "timezone": "UTC"}}]
    });
    post(client, format!("{api}/deployments/"), body).await["id"].as_str().unwrap().to_owned()
}

/// The issue's failover case: kill the active services process while a
/// second one waits; the second takes over and keeps scheduling, and
/// re-scheduling what the first already scheduled duplicates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduling_continues_after_the_leader_dies_without_duplicates() {
    let admin = std::env::var("PREFECT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".into());
    let db_name = format!("prefect_sched_{}", uuid::Uuid::new_v4().simple());
    let admin_db = prefect_server::db::Db::connect(&prefect_server::config::DatabaseUrl::parse(&admin).unwrap(), 2).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {db_name}")).execute(admin_db.reader()).await.unwrap();
    let db_url = format!("{}/{db_name}", admin.rsplit_once('/').unwrap().0);
    let db = prefect_server::db::Db::connect(&prefect_server::config::DatabaseUrl::parse(&db_url).unwrap(), 2).await.unwrap();
    let env = vec![
        ("PREFECT_API_DATABASE_CONNECTION_URL".to_owned(), db_url),
        ("PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS".to_owned(), "1".to_owned()),
    ];
    let status = Command::new(env!("CARGO_BIN_EXE_prefect-server")).arg("migrate").envs(env.iter().cloned()).stdout(Stdio::null()).status().unwrap();
    assert!(status.success());

    let port = free_port();
    let api = format!("http://127.0.0.1:{port}/api");
    let client = reqwest::Client::new();
    let _api = start(&["--no-services"], port, &env);
    wait_healthy(&client, &api).await;
    let flow_id = post(&client, format!("{api}/flows/"), json!({"name": "failover-flow"})).await["id"].as_str().unwrap().to_owned();

    let first = start(&["services"], free_port(), &env);
    wait_until("the first services process to lead", || async { advisory_locks(&db).await == 1 }).await;
    let _second = start(&["services"], free_port(), &env);
    let before = hourly_deployment(&client, &api, &flow_id, "before-failover").await;
    wait_until("the leader to schedule the first deployment", || async { deployment_runs(&client, &api, &before).await.len() >= 3 }).await;

    drop(first);
    let after = hourly_deployment(&client, &api, &flow_id, "after-failover").await;
    wait_until("the new leader to schedule the second deployment", || async { deployment_runs(&client, &api, &after).await.len() >= 3 }).await;

    // The new leader's full pass re-scheduled the first deployment too: still
    // exactly three runs, one per scheduled time.
    for id in [&before, &after] {
        let runs = deployment_runs(&client, &api, id).await;
        let mut times: Vec<String> = runs.iter().map(|r| r["expected_start_time"].as_str().unwrap().to_owned()).collect();
        times.dedup();
        assert_eq!((runs.len(), times.len()), (3, 3), "{runs:?}");
        assert!(runs.iter().all(|r| r["auto_scheduled"] == true && r["state_type"] == "SCHEDULED"));
    }

    drop((_api, _second));
    db.close().await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")).execute(admin_db.reader()).await;
    admin_db.close().await;
}
