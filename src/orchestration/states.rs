//! Prefect's state model: state types, state details, and the run policies the
//! orchestration rules read and rewrite. Field names and JSON shapes follow
//! `prefect.server.schemas.states` / `core` exactly, because these values are
//! returned to the Prefect client as they are.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// `StateType` in Prefect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StateType {
    Scheduled,
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
    Crashed,
    Paused,
    Cancelling,
}

impl StateType {
    pub const ALL: [StateType; 9] = [
        StateType::Scheduled,
        StateType::Pending,
        StateType::Running,
        StateType::Completed,
        StateType::Failed,
        StateType::Cancelled,
        StateType::Crashed,
        StateType::Paused,
        StateType::Cancelling,
    ];

    /// COMPLETED, FAILED, CANCELLED and CRASHED end a run.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            StateType::Completed | StateType::Failed | StateType::Cancelled | StateType::Crashed
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StateType::Scheduled => "SCHEDULED",
            StateType::Pending => "PENDING",
            StateType::Running => "RUNNING",
            StateType::Completed => "COMPLETED",
            StateType::Failed => "FAILED",
            StateType::Cancelled => "CANCELLED",
            StateType::Crashed => "CRASHED",
            StateType::Paused => "PAUSED",
            StateType::Cancelling => "CANCELLING",
        }
    }

    pub fn parse(s: &str) -> Option<StateType> {
        StateType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The name Prefect gives a state of this type when none is proposed.
    pub fn default_name(self) -> &'static str {
        match self {
            StateType::Scheduled => "Scheduled",
            StateType::Pending => "Pending",
            StateType::Running => "Running",
            StateType::Completed => "Completed",
            StateType::Failed => "Failed",
            StateType::Cancelled => "Cancelled",
            StateType::Crashed => "Crashed",
            StateType::Paused => "Paused",
            StateType::Cancelling => "Cancelling",
        }
    }
}

/// `StateDetails` in Prefect. Every field is always serialized (nulls included),
/// as Prefect does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StateDetails {
    pub flow_run_id: Option<Uuid>,
    pub task_run_id: Option<Uuid>,
    pub child_flow_run_id: Option<Uuid>,
    pub scheduled_time: Option<DateTime<Utc>>,
    pub cache_key: Option<String>,
    pub cache_expiration: Option<DateTime<Utc>>,
    pub deferred: Option<bool>,
    pub untrackable_result: bool,
    pub pause_timeout: Option<DateTime<Utc>>,
    pub pause_reschedule: bool,
    pub pause_key: Option<String>,
    pub run_input_keyset: Option<serde_json::Map<String, Value>>,
    pub refresh_cache: Option<bool>,
    pub retriable: Option<bool>,
    pub transition_id: Option<Uuid>,
    pub task_parameters_id: Option<Uuid>,
    pub traceparent: Option<String>,
    pub deployment_concurrency_lease_id: Option<Uuid>,
}

/// A validated state as stored and returned (`State` in Prefect).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub state_type: StateType,
    pub name: String,
    pub timestamp: DateTime<Utc>,
    pub message: Option<String>,
    pub data: Option<Value>,
    pub state_details: StateDetails,
}

impl State {
    /// Prefect treats `data` that is a dict whose `type` is not `"unpersisted"`
    /// as a persisted result record.
    pub fn has_persisted_result(&self) -> bool {
        match &self.data {
            Some(Value::Object(map)) => {
                map.get("type").and_then(Value::as_str) != Some("unpersisted")
            }
            _ => false,
        }
    }
}

/// `FlowRunPolicy` (`empirical_policy` on a flow run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FlowRunPolicy {
    pub max_retries: i64,
    pub retry_delay_seconds: f64,
    pub retries: Option<i64>,
    pub retry_delay: Option<i64>,
    pub pause_keys: Option<Vec<String>>,
    pub resuming: Option<bool>,
    pub retry_type: Option<String>,
}

impl Default for FlowRunPolicy {
    fn default() -> Self {
        FlowRunPolicy {
            max_retries: 0,
            retry_delay_seconds: 0.0,
            retries: None,
            retry_delay: None,
            pause_keys: Some(Vec::new()),
            resuming: Some(false),
            retry_type: None,
        }
    }
}

/// `TaskRunPolicy` (`empirical_policy` on a task run). `retry_delay` may be a
/// number or a list of numbers, so it is kept as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskRunPolicy {
    pub max_retries: i64,
    pub retry_delay_seconds: f64,
    pub retries: Option<i64>,
    pub retry_delay: Option<Value>,
    pub retry_jitter_factor: Option<f64>,
}

impl Default for TaskRunPolicy {
    fn default() -> Self {
        TaskRunPolicy {
            max_retries: 0,
            retry_delay_seconds: 0.0,
            retries: None,
            retry_delay: None,
            retry_jitter_factor: None,
        }
    }
}
