//! The event log: the append-only source of truth.
//!
//! Every state change is appended here, in the same transaction as the inline
//! projections that the API reads back. Streams (one flow run, one task run,
//! one flow...) carry a gapless per-stream version checked on append
//! (optimistic concurrency); the log as a whole is followed by
//! `(tx_id, position)` (see `docs/architecture.md`).

mod batch;
mod pg_read;
mod store;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

pub use batch::{append_many, BatchItem};
pub use pg_read::{decode_pg_unparsed, read_pg_rows_in_order};
pub use store::{append, append_singleton, head, tail_cursor, lock_key, lock_stream, read_after, read_all_in_order, read_rows_in_order, decode_all_unparsed, stream_version, Cursor};

/// The tenant of single-tenant (OSS) mode.
pub const DEFAULT_WORKSPACE: Uuid = Uuid::nil();

/// The kinds of stream in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamType {
    Flow,
    FlowRun,
    TaskRun,
    LogBatch,
    ClientEvent,
    WorkPool,
    WorkQueue,
    Worker,
    Deployment,
    DeploymentSchedule,
    Variable,
    FlowRunInput,
    SavedSearch,
    ConcurrencyLimit,
    ConcurrencyLease,
    /// A deferred task run's delivery to a task worker (one per SCHEDULED state).
    TaskRunDelivery,
    Artifact,
    /// The latest artifact of a key (Prefect's `artifact_collection`).
    ArtifactCollection,
    BlockType,
    BlockSchema,
    BlockDocument,
    /// A server configuration entry (Prefect's `configuration` table).
    Configuration,
    Automation,
}

impl StreamType {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamType::Flow => "flow",
            StreamType::FlowRun => "flow_run",
            StreamType::TaskRun => "task_run",
            StreamType::LogBatch => "log_batch",
            StreamType::ClientEvent => "event",
            StreamType::WorkPool => "work_pool",
            StreamType::WorkQueue => "work_queue",
            StreamType::Worker => "worker",
            StreamType::Deployment => "deployment",
            StreamType::DeploymentSchedule => "deployment_schedule",
            StreamType::Variable => "variable",
            StreamType::FlowRunInput => "flow_run_input",
            StreamType::SavedSearch => "saved_search",
            StreamType::ConcurrencyLimit => "concurrency_limit",
            StreamType::ConcurrencyLease => "concurrency_lease",
            StreamType::TaskRunDelivery => "task_run_delivery",
            StreamType::Artifact => "artifact",
            StreamType::ArtifactCollection => "artifact_collection",
            StreamType::BlockType => "block_type",
            StreamType::BlockSchema => "block_schema",
            StreamType::BlockDocument => "block_document",
            StreamType::Configuration => "configuration",
            StreamType::Automation => "automation",
        }
    }

    pub fn parse(s: &str) -> Option<StreamType> {
        [
            StreamType::Flow,
            StreamType::FlowRun,
            StreamType::TaskRun,
            StreamType::LogBatch,
            StreamType::ClientEvent,
            StreamType::WorkPool,
            StreamType::WorkQueue,
            StreamType::Worker,
            StreamType::Deployment,
            StreamType::DeploymentSchedule,
            StreamType::Variable,
            StreamType::FlowRunInput,
            StreamType::SavedSearch,
            StreamType::ConcurrencyLimit,
            StreamType::ConcurrencyLease,
            StreamType::TaskRunDelivery,
            StreamType::Artifact,
            StreamType::ArtifactCollection,
            StreamType::BlockType,
            StreamType::BlockSchema,
            StreamType::BlockDocument,
            StreamType::Configuration,
            StreamType::Automation,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// A stream: a type plus an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamRef {
    pub stream_type: StreamType,
    pub id: Uuid,
}

impl StreamRef {
    pub fn new(stream_type: StreamType, id: Uuid) -> Self {
        StreamRef { stream_type, id }
    }

    /// The key hashed into the Postgres advisory lock for this stream.
    pub fn lock_key(&self) -> String {
        format!("{}:{}", self.stream_type.as_str(), self.id)
    }
}

/// What the appender expects the stream's current version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the version is.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be at exactly this version.
    Exact(i64),
    /// The stream is at this version, read by the caller while already
    /// holding the stream's lock in this transaction (`lock_stream`): the
    /// append does not take the lock again. The version is still checked.
    Locked(i64),
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub occurred: DateTime<Utc>,
    pub payload: Value,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
}

impl NewEvent {
    pub fn new(event_id: Uuid, event_type: impl Into<String>, occurred: DateTime<Utc>, payload: Value) -> Self {
        NewEvent {
            event_id,
            event_type: event_type.into(),
            occurred,
            payload,
            correlation_id: None,
            causation_id: None,
        }
    }
}

/// An event as stored in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub position: i64,
    pub tx_id: i64,
    pub event_id: Uuid,
    pub stream: StreamRef,
    pub stream_version: i64,
    pub event_type: String,
    pub schema_version: i64,
    pub workspace_id: Uuid,
    pub occurred: DateTime<Utc>,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    pub payload: Value,
}

impl RecordedEvent {
    /// `ev` as the log stored it: at `version` of `stream`, at `position` in transaction `tx_id`.
    pub(crate) fn appended(ev: NewEvent, stream: StreamRef, version: i64, position: i64, tx_id: i64) -> RecordedEvent {
        RecordedEvent {
            position,
            tx_id,
            event_id: ev.event_id,
            stream,
            stream_version: version,
            event_type: ev.event_type,
            schema_version: 1,
            workspace_id: DEFAULT_WORKSPACE,
            occurred: ev.occurred,
            correlation_id: ev.correlation_id,
            causation_id: ev.causation_id,
            payload: ev.payload,
        }
    }
}

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("stream {stream} is at version {actual}, expected {expected:?}")]
    WrongExpectedVersion { stream: String, expected: ExpectedVersion, actual: i64 },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}
