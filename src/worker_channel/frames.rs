//! The worker channel's wire frames (`work_pool_worker_channel.v1`), read
//! as strictly as Prefect's pydantic models read them: unknown keys, a
//! missing required field or a wrong type make the frame malformed, which
//! ends the connection with a protocol error.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// The one channel version there is.
pub const CHANNEL_VERSION: &str = "work_pool_worker_channel.v1";
pub const WORKER_HEARTBEAT: &str = "worker_heartbeat.v1";
pub const WORK_POOL_SNAPSHOT: &str = "work_pool_snapshot.v1";
pub const CLEANUP_DELIVERY: &str = "cleanup_delivery.v1";
/// The capabilities every worker must request and every server accepts.
pub const REQUIRED_CAPABILITIES: [&str; 2] = [WORKER_HEARTBEAT, WORK_POOL_SNAPSHOT];
const CLEANUP_KINDS: [&str; 2] = ["cancelling_timeout_teardown.v1", "pending_claim_teardown.v1"];

/// The envelope every application frame shares.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<P> {
    #[serde(rename = "type")]
    _type: String,
    id: Uuid,
    #[serde(rename = "sent_at", deserialize_with = "timestamp")]
    _sent_at: DateTime<Utc>,
    payload: P,
}

/// `WorkerHelloPayload`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    pub consumer_id: Uuid,
    pub worker_name: String,
    pub worker_type: String,
    pub heartbeat_interval_seconds: i64,
    pub supported_channel_versions: Vec<String>,
    pub requested_capabilities: Vec<String>,
    #[serde(default)]
    pub work_queue_names: Vec<String>,
    #[serde(default)]
    pub handled_cleanup_kinds: Vec<String>,
    #[serde(default)]
    pub max_cleanup_concurrency: Option<i64>,
    #[serde(default)]
    pub create_pool_if_not_found: bool,
    #[serde(default)]
    pub default_base_job_template: Map<String, Value>,
    #[serde(default)]
    pub worker_metadata: Option<Map<String, Value>>,
}

impl Hello {
    /// Prefect's validators: non-empty names, a positive interval, at least
    /// one version and capability, both required capabilities, known cleanup
    /// kinds, and cleanup settings only together with `cleanup_delivery.v1`.
    fn validate(&self) -> Result<(), String> {
        if self.worker_name.is_empty() || self.worker_type.is_empty() {
            return Err("worker_name and worker_type must not be empty".into());
        }
        if self.heartbeat_interval_seconds <= 0 {
            return Err("heartbeat_interval_seconds must be positive".into());
        }
        let lists = [&self.supported_channel_versions, &self.requested_capabilities];
        if lists.iter().any(|l| l.is_empty() || l.iter().any(String::is_empty)) {
            return Err("supported_channel_versions and requested_capabilities need non-empty entries".into());
        }
        if self.work_queue_names.iter().any(String::is_empty) {
            return Err("work_queue_names entries must not be empty".into());
        }
        if let Some(kind) = self.handled_cleanup_kinds.iter().find(|k| !CLEANUP_KINDS.contains(&k.as_str())) {
            return Err(format!("unknown cleanup kind {kind:?}"));
        }
        if self.max_cleanup_concurrency.is_some_and(|n| n < 0) {
            return Err("max_cleanup_concurrency must not be negative".into());
        }
        if let Some(missing) = REQUIRED_CAPABILITIES.iter().find(|c| !self.requested(c)) {
            return Err(format!("Missing required channel capabilities: [{missing:?}]"));
        }
        if !self.requested(CLEANUP_DELIVERY) && (!self.handled_cleanup_kinds.is_empty() || self.max_cleanup_concurrency.unwrap_or(0) > 0) {
            return Err("cleanup settings require `cleanup_delivery.v1`".into());
        }
        Ok(())
    }

    pub fn requested(&self, capability: &str) -> bool {
        self.requested_capabilities.iter().any(|c| c == capability)
    }
}

/// `WorkerHeartbeatPayload`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub consumer_id: Uuid,
    pub worker_name: String,
    pub heartbeat_interval_seconds: i64,
}

/// The payload of `cleanup.ack.v1` / `cleanup.renew.v1` (and, with a
/// reason, `cleanup.release.v1`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupOperation {
    pub message_id: Uuid,
    pub reservation_token: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A frame a worker may send.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerFrame {
    Hello { id: Uuid, hello: Box<Hello> },
    Heartbeat { id: Uuid, heartbeat: Heartbeat },
    /// `operation` is `ack`, `release` or `renew`.
    Cleanup { id: Uuid, operation: &'static str, payload: CleanupOperation },
}

/// Why a frame could not be read; every case is Prefect's `protocol_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Not JSON at all.
    InvalidJson,
    /// JSON, but not a valid frame a worker may send.
    Malformed(String),
}

/// Reads one text frame from a worker.
pub fn parse_worker_frame(text: &str) -> Result<WorkerFrame, FrameError> {
    let value: Value = serde_json::from_str(text).map_err(|_| FrameError::InvalidJson)?;
    let kind = value.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
    let malformed = |e: serde_json::Error| FrameError::Malformed(e.to_string());
    match kind.as_str() {
        "worker.hello.v1" => {
            let frame: Envelope<Hello> = serde_json::from_value(value).map_err(malformed)?;
            frame.payload.validate().map_err(FrameError::Malformed)?;
            Ok(WorkerFrame::Hello { id: frame.id, hello: Box::new(frame.payload) })
        }
        "worker.heartbeat.v1" => {
            let frame: Envelope<Heartbeat> = serde_json::from_value(value).map_err(malformed)?;
            let p = &frame.payload;
            if p.worker_name.is_empty() || p.heartbeat_interval_seconds <= 0 {
                return Err(FrameError::Malformed("invalid heartbeat payload".into()));
            }
            Ok(WorkerFrame::Heartbeat { id: frame.id, heartbeat: frame.payload })
        }
        "cleanup.ack.v1" | "cleanup.release.v1" | "cleanup.renew.v1" => {
            let operation = match kind.as_str() {
                "cleanup.ack.v1" => "ack",
                "cleanup.release.v1" => "release",
                _ => "renew",
            };
            let frame: Envelope<CleanupOperation> = serde_json::from_value(value).map_err(malformed)?;
            let p = &frame.payload;
            let reason_ok = match operation {
                "release" => p.reason.as_deref().is_some_and(|r| !r.is_empty()),
                _ => p.reason.is_none(),
            };
            if p.reservation_token.is_empty() || !reason_ok {
                return Err(FrameError::Malformed(format!("invalid {kind} payload")));
            }
            Ok(WorkerFrame::Cleanup { id: frame.id, operation, payload: frame.payload })
        }
        other => Err(FrameError::Malformed(format!("a worker does not send {other:?} frames"))),
    }
}

fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let s = String::deserialize(d)?;
    crate::time::parse_lax_datetime(&s).ok_or_else(|| serde::de::Error::custom(format!("invalid datetime {s:?}")))
}

/// A server frame: `{type, id, sent_at, payload}` with a fresh id.
pub fn server_frame(kind: &str, payload: Value) -> Value {
    json!({
        "type": kind,
        "id": Uuid::now_v7(),
        "sent_at": crate::time::fmt_ts(Utc::now()),
        "payload": payload,
    })
}

/// `WorkPoolSnapshotPayload`.
pub fn snapshot_payload(sequence: u64, reason: &str, work_pool: Value) -> Value {
    json!({"snapshot_sequence": sequence, "reason": reason, "work_pool": work_pool})
}

/// `cleanup.operation_result.v1` refusing an operation: this server never
/// accepts `cleanup_delivery.v1`, so there is no reservation to act on.
pub fn cleanup_refused(request_frame_id: Uuid, operation: &str, message_id: Uuid) -> Value {
    server_frame(
        "cleanup.operation_result.v1",
        json!({
            "request_frame_id": request_frame_id,
            "message_id": message_id,
            "operation": operation,
            "status": "unauthorized",
            "lease_expires_at": null,
            "reason": "cleanup_delivery_not_accepted",
            "detail": null,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(payload: Value) -> String {
        json!({"type": "worker.hello.v1", "id": Uuid::now_v7(), "sent_at": "2026-11-23T20:00:00.123456Z", "payload": payload}).to_string()
    }

    fn base_payload() -> Value {
        json!({
            "consumer_id": Uuid::now_v7(),
            "worker_name": "w1",
            "worker_type": "process",
            "heartbeat_interval_seconds": 30,
            "supported_channel_versions": [CHANNEL_VERSION],
            "requested_capabilities": REQUIRED_CAPABILITIES,
            "work_queue_names": [],
            "handled_cleanup_kinds": [],
            "max_cleanup_concurrency": 0,
            "create_pool_if_not_found": true,
            "default_base_job_template": {},
            "worker_metadata": null,
        })
    }

    #[test]
    fn the_hello_the_real_worker_sends_is_read() {
        let Ok(WorkerFrame::Hello { hello, .. }) = parse_worker_frame(&hello(base_payload())) else { panic!("not a hello") };
        assert_eq!(hello.worker_name, "w1");
        assert!(hello.create_pool_if_not_found);
    }

    #[test]
    fn a_hello_without_a_required_capability_is_malformed() {
        let mut p = base_payload();
        p["requested_capabilities"] = json!([WORKER_HEARTBEAT]);
        assert!(matches!(parse_worker_frame(&hello(p)), Err(FrameError::Malformed(m)) if m.contains("work_pool_snapshot.v1")));
    }

    #[test]
    fn unknown_keys_and_cleanup_settings_without_the_capability_are_malformed() {
        let mut p = base_payload();
        p["surprise"] = json!(1);
        assert!(matches!(parse_worker_frame(&hello(p)), Err(FrameError::Malformed(_))));
        let mut p = base_payload();
        p["handled_cleanup_kinds"] = json!(["pending_claim_teardown.v1"]);
        assert!(matches!(parse_worker_frame(&hello(p)), Err(FrameError::Malformed(_))));
        let mut p = base_payload();
        p["heartbeat_interval_seconds"] = json!(0);
        assert!(matches!(parse_worker_frame(&hello(p)), Err(FrameError::Malformed(_))));
    }

    #[test]
    fn text_that_is_not_json_is_told_apart() {
        assert_eq!(parse_worker_frame("{nope"), Err(FrameError::InvalidJson));
    }

    #[test]
    fn server_frames_sent_by_a_worker_are_malformed() {
        let frame = json!({"type": "worker.ready.v1", "id": Uuid::now_v7(), "sent_at": "2026-11-23T20:00:00Z", "payload": {}});
        assert!(matches!(parse_worker_frame(&frame.to_string()), Err(FrameError::Malformed(_))));
    }

    #[test]
    fn heartbeats_and_cleanup_operations_are_read() {
        let consumer = Uuid::now_v7();
        let hb = json!({"type": "worker.heartbeat.v1", "id": Uuid::now_v7(), "sent_at": "2026-11-23T20:00:00Z",
            "payload": {"consumer_id": consumer, "worker_name": "w1", "heartbeat_interval_seconds": 30}});
        assert!(matches!(parse_worker_frame(&hb.to_string()), Ok(WorkerFrame::Heartbeat { heartbeat, .. }) if heartbeat.consumer_id == consumer));
        let msg = Uuid::now_v7();
        let release = json!({"type": "cleanup.release.v1", "id": Uuid::now_v7(), "sent_at": "2026-11-23T20:00:00Z",
            "payload": {"message_id": msg, "reservation_token": "t", "reason": "busy"}});
        assert!(matches!(parse_worker_frame(&release.to_string()), Ok(WorkerFrame::Cleanup { operation: "release", .. })));
        let ack_with_reason = json!({"type": "cleanup.ack.v1", "id": Uuid::now_v7(), "sent_at": "2026-11-23T20:00:00Z",
            "payload": {"message_id": msg, "reservation_token": "t", "reason": "x"}});
        assert!(matches!(parse_worker_frame(&ack_with_reason.to_string()), Err(FrameError::Malformed(_))));
    }
}
