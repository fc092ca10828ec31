//! `spawn_app()`: starts the server in-process on 127.0.0.1:0 against a fresh
//! database, and gives tests a client for it.

use std::time::Duration;

use prefect_server::config::{DatabaseUrl, Settings};
use prefect_server::db::Db;
use prefect_server::startup::Application;
use serde_json::{json, Value};
use uuid::Uuid;

/// The backends every test runs against.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the test Postgres lives (a server with trust auth, as on CI).
pub fn postgres_admin_url() -> String {
    std::env::var("PREFECT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".into())
}

/// A client WebSocket to the test server.
pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub db: Db,
    pub settings: Settings,
    cleanup: Option<(String, String)>,
    _dir: Option<tempdir::TempDir>,
}

mod tempdir {
    /// A directory removed on drop.
    pub struct TempDir(pub std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// [`spawn_app`] with `customise` applied to the settings last.
pub async fn spawn_app_with(backend: Backend, customise: impl FnOnce(&mut Settings)) -> TestApp {
    // The server's warnings (a projector batch that failed and is retried,
    // say) go to the test's captured output: a failing test shows them.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    let name = format!("prefect_test_{}", Uuid::new_v4().simple());
    let (database, cleanup, dir) = match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join(&name);
            std::fs::create_dir_all(&dir).unwrap();
            (DatabaseUrl::Sqlite(dir.join("test.db")), None, Some(tempdir::TempDir(dir)))
        }
        Backend::Postgres => {
            let admin = postgres_admin_url();
            let admin_db = Db::connect(&DatabaseUrl::parse(&admin).unwrap(), 2).await.expect("postgres reachable");
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(admin_db.reader()).await.unwrap();
            admin_db.close().await;
            let base = admin.rsplit_once('/').unwrap().0.to_owned();
            (DatabaseUrl::parse(&format!("{base}/{name}")).unwrap(), Some((admin, name.clone())), None)
        }
    };
    let mut settings = Settings::from_lookup(|_| None).unwrap();
    settings.port = 0;
    settings.database = database;
    settings.max_body_bytes = 1024 * 1024;
    settings.max_event_bytes = 64 * 1024;
    // The orchestration loops act on their own clock; tests call them directly
    // instead, so what they do is deterministic.
    let services = &mut settings.services;
    services.scheduler_enabled = false;
    services.late_runs_enabled = false;
    services.foreman_enabled = false;
    services.pause_expirations_enabled = false;
    services.cancellation_cleanup_enabled = false;
    services.zombie_runs_enabled = false;
    customise(&mut settings);
    let app = Application::build(settings.clone(), true).await.expect("server builds");
    let base = format!("http://{}/api", app.local_addr());
    let db = app.db().clone();
    tokio::spawn(app.run_until_stopped());
    TestApp { base, client: reqwest::Client::new(), db, settings, cleanup, _dir: dir }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self.client.post(self.url(path)).json(&body).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Any method, with an optional JSON body; the status and the JSON
    /// answer (`null` when there is none).
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.client.get(self.url(path)).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn create_flow(&self, name: &str) -> String {
        let (status, body) = self.post("/flows/", json!({"name": name})).await;
        assert!(status == 201 || status == 200, "{status} {body}");
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn create_flow_run(&self, flow_id: &str) -> Value {
        let (status, body) = self.post("/flow_runs/", json!({"flow_id": flow_id, "state": {"type": "PENDING"}})).await;
        assert_eq!(status, 201, "{body}");
        body
    }

    pub async fn set_state(&self, run_id: &str, state_type: &str, force: bool) -> (u16, Value) {
        self.post(&format!("/flow_runs/{run_id}/set_state"), json!({"state": {"type": state_type}, "force": force})).await
    }

    /// Number of events in the log.
    pub async fn log_len(&self) -> i64 {
        use sqlx::Row;
        let row = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM es_events").fetch_one(self.db.reader()).await.unwrap();
        row.try_get::<i64, _>(0).unwrap()
    }

    /// Opens a WebSocket on `path` the way Prefect's client does: subprotocol
    /// `prefect` (which the server must select), then `auth` answered by
    /// `auth_success`.
    pub async fn prefect_socket(&self, path: &str) -> Socket {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::Message;
        let mut req = self.url(path).replacen("http://", "ws://", 1).into_client_request().unwrap();
        req.headers_mut().insert("Sec-WebSocket-Protocol", "prefect".parse().unwrap());
        let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
        assert_eq!(resp.headers().get("sec-websocket-protocol").unwrap(), "prefect");
        ws.send(Message::text(r#"{"type":"auth","token":null}"#)).await.unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        assert_eq!(reply.into_text().unwrap().as_str(), r#"{"type":"auth_success"}"#);
        ws
    }

    /// Polls `check` until it returns `Some`, for effects that are not
    /// synchronous with the request that caused them.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.cleanup.take() {
            // Drop the per-test database from a separate thread and runtime:
            // Drop cannot await on the test's runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    if let Ok(db) = Db::connect(&DatabaseUrl::parse(&admin).unwrap(), 2).await {
                        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(db.reader()).await;
                        db.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// Declares one async test per backend: `both_backends!(name, |app| async move { ... })`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await;
                ($body)(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let app = $crate::helpers::spawn_app($crate::helpers::Backend::Postgres).await;
                ($body)(app).await;
            }
        }
    };
}

/// The rows that differ between a live and a rebuilt model, for assertions.
pub fn diff_report(report: &prefect_server::replay::ReplayReport) -> String {
    report
        .before
        .iter()
        .zip(&report.after)
        .filter(|(b, a)| b != a)
        .map(|(b, a)| format!("{}: {:?}", a.table, b.differing_rows(a, 4)))
        .collect::<Vec<_>>()
        .join("\n")
}
