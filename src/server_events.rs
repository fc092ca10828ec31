//! The vocabulary of the server streams: the payloads appended to the log for
//! flows, flow runs, task runs and logs. Commands build them; the server
//! projection applies them. Each carries all the data its projection needs,
//! so replaying the log needs no clock and no fresh ids.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::orchestration::states::State;

pub const FLOW_CREATED: &str = "prefect.flow.created";
pub const FLOW_UPDATED: &str = "prefect.flow.updated";
pub const FLOW_DELETED: &str = "prefect.flow.deleted";
pub const FLOW_RUN_CREATED: &str = "prefect-server.flow-run.created";
pub const FLOW_RUN_UPDATED: &str = "prefect-server.flow-run.updated";
pub const FLOW_RUN_DELETED: &str = "prefect-server.flow-run.deleted";
pub const TASK_RUN_CREATED: &str = "prefect-server.task-run.created";
pub const TASK_RUN_UPDATED: &str = "prefect-server.task-run.updated";
pub const TASK_RUN_DELETED: &str = "prefect-server.task-run.deleted";
pub const LOGS_CREATED: &str = "prefect-server.logs.created";

/// The event type of an accepted flow-run transition, as Prefect names it.
pub fn flow_run_state_event_type(state_name: &str) -> String {
    format!("prefect.flow-run.{state_name}")
}

pub fn task_run_state_event_type(state_name: &str) -> String {
    format!("prefect.task-run.{state_name}")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowRecord {
    pub id: Uuid,
    pub name: String,
    pub tags: Value,
    pub labels: Value,
    pub created: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowCreated {
    pub flow: FlowRecord,
}

/// A partial update: column name to new JSON value, plus the update time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowUpdated {
    pub changes: Map<String, Value>,
    pub updated: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowRunRecord {
    pub id: Uuid,
    pub created: DateTime<Utc>,
    pub name: String,
    pub flow_id: Uuid,
    pub flow_version: Option<String>,
    pub deployment_id: Option<Uuid>,
    pub deployment_version: Option<String>,
    pub work_queue_id: Option<Uuid>,
    pub work_queue_name: Option<String>,
    pub work_pool_id: Option<Uuid>,
    pub work_pool_name: Option<String>,
    pub parameters: Value,
    pub idempotency_key: Option<String>,
    pub context: Value,
    pub empirical_policy: Value,
    pub tags: Value,
    pub labels: Value,
    pub parent_task_run_id: Option<Uuid>,
    pub auto_scheduled: bool,
    pub infrastructure_document_id: Option<Uuid>,
    pub created_by: Value,
    pub job_variables: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowRunCreated {
    pub flow_run: FlowRunRecord,
}

/// The run fields a state transition (re)computes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunBookkeeping {
    pub run_count: i64,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub total_run_time: f64,
    pub expected_start_time: Option<DateTime<Utc>>,
    pub next_scheduled_start_time: Option<DateTime<Utc>>,
    pub empirical_policy: Value,
    /// Task runs only: the flow run's run count when the task last ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_run_run_count: Option<i64>,
}

/// A server-orchestrated state transition of a flow run or task run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateSet {
    pub state: State,
    pub run: RunBookkeeping,
    /// The Prefect event (resource, related, payload, follows) the events feed shows.
    pub event: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRunRecord {
    pub id: Uuid,
    pub created: DateTime<Utc>,
    pub name: String,
    pub flow_run_id: Option<Uuid>,
    pub task_key: String,
    pub dynamic_key: String,
    pub cache_key: Option<String>,
    pub cache_expiration: Option<DateTime<Utc>>,
    pub task_version: Option<String>,
    pub empirical_policy: Value,
    pub tags: Value,
    pub labels: Value,
    pub task_inputs: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRunCreated {
    pub task_run: TaskRunRecord,
}

/// A Prefect event received from a client (`/events/in`), with `received` set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientEventReceived {
    pub event: Value,
}

impl ClientEventReceived {
    /// The log payload, `{"event": ...}`, with the event moved in: a
    /// `to_value` of the struct would copy the whole event once more, on a
    /// path every event sent to `/events/in` takes.
    pub fn into_payload(self) -> Value {
        let mut payload = serde_json::Map::with_capacity(1);
        payload.insert("event".into(), self.event);
        Value::Object(payload)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogRecord {
    pub id: Uuid,
    pub name: String,
    pub level: i64,
    pub message: String,
    pub timestamp: DateTime<Utc>,
    pub flow_run_id: Option<Uuid>,
    pub task_run_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogsCreated {
    pub created: DateTime<Utc>,
    pub logs: Vec<LogRecord>,
}

/// A document (work pool, work queue, worker, deployment, deployment
/// schedule) was created: its fields by Prefect JSON name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DocumentCreated {
    pub record: Map<String, Value>,
    pub created: DateTime<Utc>,
    /// The Prefect event the feed shows for this change, if Prefect emits one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Value>,
}

/// Some fields of a document changed (by Prefect JSON name).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DocumentUpdated {
    pub changes: Map<String, Value>,
    pub updated: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Value>,
}

/// A document was deleted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DocumentDeleted {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Value>,
}

/// The log event type of a document change, e.g.
/// `prefect-server.work-pool.created`.
pub fn document_event_type(kind: &str, action: &str) -> String {
    format!("prefect-server.{kind}.{action}")
}
