//! The worker channel's decisions, as pure functions: which version and
//! capabilities a hello gets, which queues it resolves to, how a connection
//! is closed, and which live events call for a fresh work-pool snapshot.

use serde_json::{json, Value};
use uuid::Uuid;

use super::frames::{Hello, CHANNEL_VERSION, REQUIRED_CAPABILITIES};

/// Prefect's `WorkerChannelCloseReason`, with the close code its policy
/// table gives each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    AuthenticationFailed,
    AuthorizationFailed,
    UnsupportedVersion,
    ProtocolError,
    HeartbeatPersistenceFailed,
    TransientServerError,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::AuthenticationFailed => "authentication_failed",
            CloseReason::AuthorizationFailed => "authorization_failed",
            CloseReason::UnsupportedVersion => "unsupported_version",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::HeartbeatPersistenceFailed => "heartbeat_persistence_failed",
            CloseReason::TransientServerError => "transient_server_error",
        }
    }

    /// 1008 for the terminal refusals, 1002 for protocol errors, 1011 for
    /// the retryable server-side failures.
    pub fn code(self) -> u16 {
        match self {
            CloseReason::AuthenticationFailed | CloseReason::AuthorizationFailed | CloseReason::UnsupportedVersion => 1008,
            CloseReason::ProtocolError => 1002,
            CloseReason::HeartbeatPersistenceFailed | CloseReason::TransientServerError => 1011,
        }
    }
}

/// The one version both sides speak, or `unsupported_version`.
pub fn select_version(supported: &[String]) -> Result<&'static str, CloseReason> {
    if supported.iter().any(|v| v == CHANNEL_VERSION) {
        Ok(CHANNEL_VERSION)
    } else {
        Err(CloseReason::UnsupportedVersion)
    }
}

/// Accepted and rejected capabilities. This server accepts the two
/// required ones and rejects the rest, `cleanup_delivery.v1` included: it
/// keeps no cleanup queue, which is how Prefect answers when its own queue
/// is unavailable, and workers then clean up without it.
pub fn capabilities(hello: &Hello) -> (Vec<&'static str>, Vec<String>) {
    let accepted = REQUIRED_CAPABILITIES.to_vec();
    let mut rejected: Vec<String> = Vec::new();
    for c in &hello.requested_capabilities {
        if !accepted.contains(&c.as_str()) && !rejected.contains(c) {
            rejected.push(c.clone());
        }
    }
    (accepted, rejected)
}

/// A queue of the pool: `(id, name)`, in the pool's priority order.
pub type QueueRef = (Uuid, String);

/// The queues a hello names (each once, in the order named), or every queue
/// of the pool when it names none; an unknown name is
/// `authorization_failed` (`work_queue_not_found`).
pub fn resolve_queues(named: &[String], pool_queues: &[QueueRef]) -> Result<Vec<QueueRef>, (CloseReason, &'static str)> {
    if named.is_empty() {
        return Ok(pool_queues.to_vec());
    }
    let mut out: Vec<QueueRef> = Vec::new();
    for name in named {
        if out.iter().any(|(_, n)| n == name) {
            continue;
        }
        let queue = pool_queues.iter().find(|(_, n)| n == name).ok_or((CloseReason::AuthorizationFailed, "work_queue_not_found"))?;
        out.push(queue.clone());
    }
    Ok(out)
}

/// Whether a hello for a missing pool may create it.
pub fn may_create_pool(hello: &Hello, pool_name: &str) -> Result<(), (CloseReason, &'static str)> {
    if !hello.create_pool_if_not_found {
        return Err((CloseReason::AuthorizationFailed, "work_pool_not_found"));
    }
    if pool_name.to_lowercase().starts_with("prefect") {
        return Err((CloseReason::AuthorizationFailed, "work_pool_creation_unauthorized"));
    }
    Ok(())
}

/// `worker.ready.v1`'s payload. `worker_id` is null, as in Prefect's
/// server (the worker learns it from a REST heartbeat if it needs it).
pub fn ready_payload(hello: &Hello, version: &str, queues: &[QueueRef], initial_snapshot: Value) -> Value {
    let (accepted, rejected) = capabilities(hello);
    json!({
        "consumer_id": hello.consumer_id,
        "worker_id": null,
        "selected_channel_version": version,
        "effective_heartbeat_interval_seconds": hello.heartbeat_interval_seconds,
        "accepted_capabilities": accepted,
        "rejected_capabilities": rejected,
        "effective_max_cleanup_concurrency": 0,
        "resolved_work_queues": queues.iter().map(|(id, name)| json!({"id": id, "name": name})).collect::<Vec<_>>(),
        "initial_snapshot": initial_snapshot,
    })
}

/// What a live event means for a connection on `pool_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolChange {
    /// Send a fresh snapshot, with this reason.
    Snapshot(&'static str),
    /// The pool is gone: close with `authorization_failed`.
    Deleted,
}

/// The pool fields whose change Prefect pushes to connected workers.
const SNAPSHOT_FIELDS: [&str; 4] = ["base_job_template", "concurrency_limit", "is_paused", "storage_configuration"];

/// Reads a live feed event for the pool a worker is connected to. Prefect
/// pushes a snapshot when an update touches a field in `SNAPSHOT_FIELDS`; in
/// the feed a pause shows as `prefect.work-pool.paused` and an unpause as
/// the pool's next status event while the last snapshot said paused.
pub fn pool_change(event: &Value, pool_id: Uuid, last_sent_paused: bool) -> Option<PoolChange> {
    let resource = event.get("resource")?.get("prefect.resource.id")?.as_str()?;
    if resource != format!("prefect.work-pool.{pool_id}") {
        return None;
    }
    match event.get("event")?.as_str()? {
        "prefect.work-pool.deleted" => Some(PoolChange::Deleted),
        "prefect.work-pool.updated" => {
            let fields = event.get("payload")?.get("updated_fields")?.as_array()?;
            fields
                .iter()
                .any(|f| f.as_str().is_some_and(|f| SNAPSHOT_FIELDS.contains(&f)))
                .then_some(PoolChange::Snapshot("work_pool_updated"))
        }
        "prefect.work-pool.paused" => Some(PoolChange::Snapshot("work_pool_updated")),
        "prefect.work-pool.ready" | "prefect.work-pool.not-ready" if last_sent_paused => Some(PoolChange::Snapshot("work_pool_updated")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker_channel::frames::{CLEANUP_DELIVERY, WORKER_HEARTBEAT};

    fn hello(requested: &[&str]) -> Hello {
        Hello {
            consumer_id: Uuid::now_v7(),
            worker_name: "w".into(),
            worker_type: "process".into(),
            heartbeat_interval_seconds: 30,
            supported_channel_versions: vec![CHANNEL_VERSION.into()],
            requested_capabilities: requested.iter().map(|s| s.to_string()).collect(),
            work_queue_names: vec![],
            handled_cleanup_kinds: vec![],
            max_cleanup_concurrency: None,
            create_pool_if_not_found: false,
            default_base_job_template: Default::default(),
            worker_metadata: None,
        }
    }

    #[test]
    fn given_cleanup_requested_when_deciding_then_it_is_rejected_once_and_the_required_ones_accepted() {
        let h = hello(&[WORKER_HEARTBEAT, "work_pool_snapshot.v1", CLEANUP_DELIVERY, CLEANUP_DELIVERY]);
        let (accepted, rejected) = capabilities(&h);
        assert_eq!(accepted, vec![WORKER_HEARTBEAT, "work_pool_snapshot.v1"]);
        assert_eq!(rejected, vec![CLEANUP_DELIVERY.to_owned()]);
        let ready = ready_payload(&h, CHANNEL_VERSION, &[], json!({}));
        assert_eq!(ready["effective_max_cleanup_concurrency"], 0);
        assert_eq!(ready["worker_id"], Value::Null);
    }

    #[test]
    fn given_only_other_versions_when_selecting_then_unsupported_version_closes_with_1008() {
        assert_eq!(select_version(&["work_pool_worker_channel.v2".into()]), Err(CloseReason::UnsupportedVersion));
        assert_eq!(CloseReason::UnsupportedVersion.code(), 1008);
        assert_eq!(select_version(&["x".into(), CHANNEL_VERSION.into()]), Ok(CHANNEL_VERSION));
    }

    #[test]
    fn given_named_queues_when_resolving_then_order_is_kept_duplicates_dropped_and_unknown_names_refused() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let pool = vec![(a, "default".to_owned()), (b, "high".to_owned())];
        assert_eq!(resolve_queues(&[], &pool).unwrap(), pool);
        let named = vec!["high".to_owned(), "default".to_owned(), "high".to_owned()];
        assert_eq!(resolve_queues(&named, &pool).unwrap(), vec![(b, "high".to_owned()), (a, "default".to_owned())]);
        assert_eq!(resolve_queues(&["nope".into()], &pool), Err((CloseReason::AuthorizationFailed, "work_queue_not_found")));
    }

    #[test]
    fn given_a_missing_pool_when_creation_is_not_allowed_or_reserved_then_authorization_fails() {
        let mut h = hello(&[]);
        assert_eq!(may_create_pool(&h, "p"), Err((CloseReason::AuthorizationFailed, "work_pool_not_found")));
        h.create_pool_if_not_found = true;
        assert_eq!(may_create_pool(&h, "Prefect-managed"), Err((CloseReason::AuthorizationFailed, "work_pool_creation_unauthorized")));
        assert_eq!(may_create_pool(&h, "mine"), Ok(()));
    }

    #[test]
    fn given_feed_events_when_reading_them_then_only_snapshot_fields_pauses_and_deletion_matter() {
        let pool = Uuid::now_v7();
        let ev = |name: &str, fields: Value| {
            json!({"event": name, "resource": {"prefect.resource.id": format!("prefect.work-pool.{pool}")}, "payload": {"updated_fields": fields}})
        };
        assert_eq!(pool_change(&ev("prefect.work-pool.updated", json!(["base_job_template"])), pool, false), Some(PoolChange::Snapshot("work_pool_updated")));
        assert_eq!(pool_change(&ev("prefect.work-pool.updated", json!(["description"])), pool, false), None);
        assert_eq!(pool_change(&ev("prefect.work-pool.paused", json!(null)), pool, false), Some(PoolChange::Snapshot("work_pool_updated")));
        assert_eq!(pool_change(&ev("prefect.work-pool.ready", json!(null)), pool, false), None);
        assert_eq!(pool_change(&ev("prefect.work-pool.not-ready", json!(null)), pool, true), Some(PoolChange::Snapshot("work_pool_updated")));
        assert_eq!(pool_change(&ev("prefect.work-pool.deleted", json!(null)), pool, false), Some(PoolChange::Deleted));
        assert_eq!(pool_change(&ev("prefect.work-pool.deleted", json!(null)), Uuid::now_v7(), false), None);
    }
}
