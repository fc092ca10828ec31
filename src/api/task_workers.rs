//! `/task_workers/filter`: the task workers subscribed to this process's
//! `/task_runs/subscriptions/scheduled`, as Prefect's in-memory tracker
//! reports them (`TaskWorkerResponse`). Like Prefect's, the tracker is
//! per process: with several API processes each knows its own sockets.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiResult;
use super::json::AppJson;
use super::AppState;
use crate::time::fmt_ts;

/// One connected worker: the task keys it serves and when it was last seen.
type Seen = (BTreeSet<String>, DateTime<Utc>);

/// Connected task workers, by client id.
#[derive(Debug, Default)]
pub struct TaskWorkers {
    workers: Mutex<HashMap<String, Seen>>,
}

impl TaskWorkers {
    /// Records that `worker` is connected and serves `keys` (added to the
    /// keys it served before).
    pub fn observe(&self, worker: &str, keys: &[String]) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let entry = workers.entry(worker.to_owned()).or_insert_with(|| (BTreeSet::new(), Utc::now()));
        entry.0.extend(keys.iter().cloned());
        entry.1 = Utc::now();
    }

    pub fn forget(&self, worker: &str) {
        self.workers.lock().unwrap_or_else(|p| p.into_inner()).remove(worker);
    }

    /// `TaskWorkerResponse`s of the workers serving any of `keys` (all
    /// workers when `keys` is empty).
    pub fn list(&self, keys: &[String]) -> Vec<Value> {
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<Value> = workers
            .iter()
            .filter(|(_, (served, _))| keys.is_empty() || keys.iter().any(|k| served.contains(k)))
            .map(|(id, (served, seen))| json!({"identifier": id, "task_keys": served, "timestamp": fmt_ts(*seen)}))
            .collect();
        out.sort_by(|a, b| a["identifier"].as_str().cmp(&b["identifier"].as_str()));
        out
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/task_workers/filter", post(filter))
}

/// `{"task_worker_filter": {"task_keys": [...]}}`, both optional.
#[derive(Debug, Default, Deserialize)]
struct FilterBody {
    #[serde(default)]
    task_worker_filter: Option<TaskWorkerFilter>,
}

#[derive(Debug, Deserialize)]
struct TaskWorkerFilter {
    task_keys: Vec<String>,
}

async fn filter(State(state): State<AppState>, AppJson(body): AppJson<Option<FilterBody>>) -> ApiResult<Json<Vec<Value>>> {
    let keys = body.and_then(|b| b.task_worker_filter).map(|f| f.task_keys).unwrap_or_default();
    Ok(Json(state.task_workers.list(&keys)))
}
