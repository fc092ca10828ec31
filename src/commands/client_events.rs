//! Events sent by clients over `/events/in`: validated, stamped with
//! `received`, and appended. `prefect.task-run.*` events go to their task
//! run's stream, where the server model records the task run from them;
//! every other event gets a stream of its own. A resent event id is a no-op.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::write;
use crate::api::error::ApiResult;
use crate::db::Db;
use crate::eventlog::{append_many, BatchItem, ExpectedVersion, NewEvent, StreamRef, StreamType};
use crate::server_events::ClientEventReceived;
use crate::time::{fmt_ts, micros};

/// Prefect's `Event` (what clients send).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEvent {
    pub occurred: DateTime<Utc>,
    pub event: String,
    pub resource: Map<String, Value>,
    #[serde(default)]
    pub related: Vec<Map<String, Value>>,
    #[serde(default)]
    pub payload: Map<String, Value>,
    pub id: Uuid,
    #[serde(default)]
    pub follows: Option<Uuid>,
}

impl ClientEvent {
    /// Prefect's validation rules for an event; `Err` names the first broken one.
    pub fn validate(&self) -> Result<(), String> {
        if self.event.is_empty() || self.event.len() > 1024 {
            return Err("event name must have 1 to 1024 characters".into());
        }
        let labels_ok = |r: &Map<String, Value>| r.values().all(Value::is_string);
        match self.resource.get("prefect.resource.id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => {}
            _ => return Err("resource must have a non-empty prefect.resource.id".into()),
        }
        if self.resource.len() > 500 || !labels_ok(&self.resource) {
            return Err("resource must have at most 500 string labels".into());
        }
        if self.related.len() > 100 {
            return Err("at most 100 related resources are allowed".into());
        }
        for r in &self.related {
            let has = |k: &str| r.get(k).and_then(Value::as_str).is_some_and(|v| !v.is_empty());
            if !has("prefect.resource.id") || !has("prefect.resource.role") || !labels_ok(r) {
                return Err("related resources need a prefect.resource.id and a prefect.resource.role".into());
            }
        }
        Ok(())
    }

    /// The stream the event belongs to.
    fn stream(&self) -> (StreamRef, ExpectedVersion) {
        if self.event.starts_with("prefect.task-run.") {
            let task_run = self
                .resource
                .get("prefect.resource.id")
                .and_then(Value::as_str)
                .and_then(|s| s.strip_prefix("prefect.task-run."))
                .and_then(|s| Uuid::parse_str(s).ok());
            if let Some(id) = task_run {
                return (StreamRef::new(StreamType::TaskRun, id), ExpectedVersion::Any);
            }
        }
        (StreamRef::new(StreamType::ClientEvent, self.id), ExpectedVersion::Any)
    }

    /// The `ReceivedEvent` JSON. Built field by field: `json!` would copy
    /// each map through serde's serializer, slower than a clone on this path
    /// (every event sent to `/events/in`).
    pub fn received(&self, received: DateTime<Utc>) -> Value {
        let mut event = Map::with_capacity(8);
        event.insert("occurred".into(), Value::String(fmt_ts(self.occurred)));
        event.insert("event".into(), Value::String(self.event.clone()));
        event.insert("resource".into(), Value::Object(self.resource.clone()));
        event.insert("related".into(), Value::Array(self.related.iter().cloned().map(Value::Object).collect()));
        event.insert("payload".into(), Value::Object(self.payload.clone()));
        event.insert("id".into(), Value::String(self.id.to_string()));
        event.insert("follows".into(), self.follows.map_or(Value::Null, |f| Value::String(f.to_string())));
        event.insert("received".into(), Value::String(fmt_ts(received)));
        Value::Object(event)
    }
}

/// Appends a batch of client events in one transaction (see
/// `eventlog::append_many`: a few statements for the whole batch) and
/// applies them to the server model in log order. Returns how many were new.
pub async fn ingest(db: &Db, events: &[ClientEvent]) -> ApiResult<usize> {
    if events.is_empty() {
        return Ok(0);
    }
    let dialect = db.dialect;
    let received = micros(Utc::now());
    // The batch is built inside the attempt, from the borrowed events: a
    // built batch moves into the append, so keeping one for a retry would
    // copy every event once more, and retries are rare.
    write(db, move |conn| {
        let batch: Vec<BatchItem> = events.iter().map(|ev| batch_item(ev, received)).collect();
        Box::pin(async move {
            let recorded = append_many(conn, dialect, batch).await?;
            crate::projections::server::apply_client_batch(conn, dialect, &recorded).await?;
            Ok(recorded.len())
        })
    })
    .await
}

/// The log entry for a client event received at `received`.
fn batch_item(ev: &ClientEvent, received: DateTime<Utc>) -> BatchItem {
    let (stream, _) = ev.stream();
    BatchItem {
        stream,
        singleton: stream.stream_type == StreamType::ClientEvent,
        event: NewEvent {
            event_id: ev.id,
            event_type: ev.event.clone(),
            occurred: micros(ev.occurred),
            payload: ClientEventReceived { event: ev.received(received) }.into_payload(),
            correlation_id: None,
            causation_id: ev.follows,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn given_a_client_event_when_received_then_it_is_prefects_received_event_in_field_order() {
        let ev: ClientEvent = serde_json::from_value(json!({
            "occurred": "2026-12-07T10:00:00.123456Z", "event": "prefect.task-run.Running",
            "resource": {"prefect.resource.id": "prefect.task-run.1", "z": "last", "a": "first"},
            "related": [{"prefect.resource.id": "prefect.flow-run.2", "prefect.resource.role": "flow-run"}],
            "payload": {"intended": {"from": "PENDING", "to": "RUNNING"}},
            "id": "0193a5a0-0000-7000-8000-000000000001", "follows": "0193a5a0-0000-7000-8000-000000000000"
        }))
        .unwrap();
        let received = "2026-12-07T10:00:01Z".parse().unwrap();
        let expected = json!({
            "occurred": "2026-12-07T10:00:00.123456Z", "event": "prefect.task-run.Running",
            "resource": {"prefect.resource.id": "prefect.task-run.1", "z": "last", "a": "first"},
            "related": [{"prefect.resource.id": "prefect.flow-run.2", "prefect.resource.role": "flow-run"}],
            "payload": {"intended": {"from": "PENDING", "to": "RUNNING"}},
            "id": "0193a5a0-0000-7000-8000-000000000001", "follows": "0193a5a0-0000-7000-8000-000000000000",
            "received": "2026-12-07T10:00:01.000000Z"
        });
        let got = ev.received(received);
        // Same text, so the same key order (the log stores the text).
        assert_eq!(got.to_string(), expected.to_string());
        let as_struct = serde_json::to_value(ClientEventReceived { event: got.clone() }).unwrap();
        assert_eq!(ClientEventReceived { event: got }.into_payload(), as_struct);
    }
}
