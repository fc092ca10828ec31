//! The set-based rebuild used by `prefect-server replay server`.
//!
//! Replay starts from empty tables inside one transaction, so it need not
//! run the per-event SQL (several statements per event, ~2,500 events/s):
//! it folds the events into an in-memory copy of the model ([`fold`], pure,
//! with the same row builders and the same semantics as
//! [`super::apply`]) and then writes each table: on Postgres with COPY
//! ([`copy`]), on SQLite with multi-row INSERTs ([`write`]). The live
//! projector keeps using the per-event path.
//!
//! Memory grows with the model: the caller watches [`Rebuild::rows_held`],
//! and past its limit writes what it holds and applies the rest of the log
//! per event (on Postgres, through INSERTs: see `crate::replay`).

mod copy;
mod fold;
mod model;
pub(super) mod prune;
mod write;

use sqlx::postgres::PgConnection;
use sqlx::AnyConnection;

use super::ProjectionError;
use crate::db::Dialect;
use crate::eventlog::RecordedEvent;

/// A log entry decoded for the fold, with the rows the fold would build
/// from its payload built ahead where that is pure (client task-run
/// events, most of a busy log), so that the decoding thread does that work
/// and the fold's thread, the replay's bottleneck, does less.
#[derive(Debug)]
pub struct Decoded {
    event: RecordedEvent,
    rows: Option<fold::RecorderRows>,
    /// The payload's JSON text, when `event.payload` holds only the parts
    /// the fold reads (see [`Decoded::new`]).
    unparsed: Option<String>,
}

impl Decoded {
    /// Decodes `event`'s payload from `payload` (its JSON text). A client
    /// task-run event is parsed only as far as the recorder reads it
    /// ([`prune`]), which is most of the decoding's cost saved; anything
    /// else, or a client event the recorder would not record, is parsed
    /// whole.
    pub fn new(mut event: RecordedEvent, payload: String) -> Result<Decoded, serde_json::Error> {
        if fold::may_be_client_event(&event) {
            event.payload = prune::parse(&payload, &super::task_run_recorder::READ_PARTS)?;
            if let Some(rows) = fold::recorder_rows(&event) {
                return Ok(Decoded { event, rows: Some(rows), unparsed: Some(payload) });
            }
        }
        event.payload = serde_json::from_str(&payload)?;
        let rows = fold::recorder_rows(&event);
        Ok(Decoded { event, rows, unparsed: None })
    }

    /// The event with its whole payload, for the per-event path.
    pub fn into_event(self) -> Result<RecordedEvent, serde_json::Error> {
        let mut event = self.event;
        if let Some(payload) = self.unparsed {
            event.payload = serde_json::from_str(&payload)?;
        }
        Ok(event)
    }
}

/// The server model being rebuilt in memory.
#[derive(Debug, Default)]
pub struct Rebuild {
    model: model::Model,
}

impl Rebuild {
    /// Applies one event (in log order) to the model.
    pub fn fold(&mut self, decoded: &mut Decoded) -> Result<(), ProjectionError> {
        fold::fold(&mut self.model, &decoded.event, decoded.rows.take())
    }

    /// Rows inserted into the model so far (deleted ones included): a
    /// bound on the memory it holds.
    pub fn rows_held(&self) -> usize {
        self.model.inserted()
    }

    /// Writes the model into the server tables, which must be empty.
    /// Returns the rows written.
    pub async fn write(self, conn: &mut AnyConnection, dialect: Dialect) -> Result<u64, sqlx::Error> {
        write::write(conn, dialect, self.model).await
    }

    /// Writes the model into the server tables, which must be empty, with
    /// Postgres's COPY. Returns the rows written.
    pub async fn copy(self, conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
        copy::write(conn, self.model).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use uuid::Uuid;

    use super::*;
    use crate::eventlog::{StreamRef, StreamType};

    fn entry(stream_type: StreamType, event_type: &str) -> RecordedEvent {
        RecordedEvent {
            position: 1,
            tx_id: 1,
            event_id: Uuid::now_v7(),
            stream: StreamRef::new(stream_type, Uuid::now_v7()),
            stream_version: 3,
            event_type: event_type.to_owned(),
            schema_version: 1,
            workspace_id: Uuid::nil(),
            occurred: crate::time::parse_ts("2026-01-01T00:00:05.000000Z").unwrap(),
            correlation_id: None,
            causation_id: None,
            payload: Value::Null,
        }
    }

    /// A client event as the Prefect client sends it, with every field the
    /// recorder reads and many it does not.
    fn client_event_payload(task_run: Uuid, flow_run: Uuid) -> Value {
        json!({"event": {
            "id": Uuid::now_v7(), "event": "prefect.task-run.Completed", "occurred": "2026-01-01T00:00:04.123456Z",
            "resource": {"prefect.resource.id": format!("prefect.task-run.{task_run}"), "prefect.resource.name": "t-0",
                         "prefect.state-type": "COMPLETED", "prefect.orchestration": "client", "prefect.run-count": "1"},
            "related": [
                {"prefect.resource.id": "prefect.tag.a", "prefect.resource.role": "tag"},
                {"prefect.resource.id": format!("prefect.flow-run.{flow_run}"), "prefect.resource.role": "flow-run", "prefect.resource.name": "f"},
                {"prefect.resource.id": format!("prefect.flow.{}", Uuid::now_v7()), "prefect.resource.role": "flow"}
            ],
            "payload": {
                "intended": {"from": "RUNNING", "to": "COMPLETED"},
                "initial_state": {"type": "RUNNING", "name": "Running", "message": "", "state_details": {}},
                "validated_state": {"type": "COMPLETED", "name": "Completed", "message": "done \t with\nescapes é",
                                    "data": {"type": "unpersisted", "storage_key": null},
                                    "state_details": {"flow_run_id": flow_run, "cache_key": "ck", "retriable": false, "untrackable_result": true}},
                "task_run": {"id": task_run, "name": "t-0", "flow_run_id": flow_run, "task_key": "t-abc", "dynamic_key": "0",
                             "cache_key": null, "cache_expiration": null, "task_version": "1.0", "empirical_policy": {"retries": 2, "retry_delay": [1, 2.5]},
                             "tags": ["a", "b"], "labels": {"prefect.flow.id": "x"}, "task_inputs": {"x": [{"input_type": "task_run", "id": Uuid::nil()}]},
                             "state_type": "COMPLETED", "run_count": 1, "flow_run_run_count": 1, "expected_start_time": "2026-01-01T00:00:01Z",
                             "start_time": "2026-01-01T00:00:02.5+00:00", "end_time": "2026-01-01T00:00:04.123456Z", "total_run_time": 1.623456,
                             "estimated_run_time": 1.6, "state": {"type": "COMPLETED", "name": "Completed"}}
            },
            "follows": null, "received": "2026-01-01T00:00:04.2Z"
        }})
    }

    #[test]
    fn a_client_event_parsed_in_part_gives_the_rows_of_a_whole_parse() {
        // Given a client task-run event as the log stores it (jsonb's text form has spaces)
        let full = client_event_payload(Uuid::now_v7(), Uuid::now_v7());
        let text = serde_json::to_string_pretty(&full).unwrap();
        let meta = entry(StreamType::TaskRun, "prefect.task-run.client");
        // When it is decoded for the fold
        let decoded = Decoded::new(meta.clone(), text).unwrap();
        // Then its rows are those the whole event gives, and nothing unread was kept
        let whole = RecordedEvent { payload: full.clone(), ..meta };
        assert!(decoded.rows.is_some());
        assert_eq!(decoded.rows, fold::recorder_rows(&whole));
        assert!(decoded.event.payload["event"].get("follows").is_none());
        assert!(decoded.event.payload["event"]["payload"].get("initial_state").is_none());
        // And the per-event path still gets the whole payload back
        assert_eq!(decoded.into_event().unwrap().payload, full);
    }

    #[test]
    fn a_task_run_state_set_by_the_server_is_parsed_whole() {
        let payload = json!({"state": {"id": Uuid::now_v7(), "type": "RUNNING"}, "run": {"run_count": 1}, "event": {}});
        let decoded = Decoded::new(entry(StreamType::TaskRun, "prefect.set-state"), payload.to_string()).unwrap();
        assert!(decoded.rows.is_none());
        assert_eq!(decoded.event.payload, payload);
    }

    #[test]
    fn a_client_event_the_recorder_skips_is_parsed_whole() {
        let mut payload = client_event_payload(Uuid::now_v7(), Uuid::now_v7());
        payload["event"]["resource"]["prefect.orchestration"] = json!("server");
        let decoded = Decoded::new(entry(StreamType::TaskRun, "prefect.task-run.client"), payload.to_string()).unwrap();
        assert!(decoded.rows.is_none());
        assert_eq!(decoded.event.payload, payload);
    }

    #[test]
    fn a_payload_that_is_not_json_is_an_error() {
        assert!(Decoded::new(entry(StreamType::TaskRun, "prefect.task-run.client"), "{\"event\": ".to_owned()).is_err());
        assert!(Decoded::new(entry(StreamType::Flow, "prefect.flow.created"), "nope".to_owned()).is_err());
    }
}
