//! Folds one event into the in-memory [`Model`], with exactly the effect
//! [`super::super::apply`] has on the tables: the same row builders, the
//! same "an UPDATE of a missing row does nothing", the same ON CONFLICT DO
//! NOTHING skips and the same cascades on delete.

use std::collections::HashSet;

use super::super::{
    changed_columns, documents, flow_runs, flows, logs, payload, state_row, task_run_recorder, task_runs, Cols, ProjectionError,
};
use super::model::Model;
use crate::db::Bind;
use crate::eventlog::{RecordedEvent, StreamType};
use crate::server_events::{
    DocumentCreated, DocumentUpdated, FlowCreated, FlowRunCreated, RowUpdated, StateSet, TaskRunCreated, FLOW_CREATED, FLOW_DELETED,
    FLOW_RUN_CREATED, FLOW_RUN_DELETED, FLOW_RUN_UPDATED, FLOW_UPDATED, TASK_RUN_CREATED, TASK_RUN_DELETED, TASK_RUN_UPDATED,
};
use crate::server_model::documents::Table;
use crate::time::fmt_ts;

/// Applies `event` to `model` as [`super::super::apply`] applies it to the
/// tables; `rows` are its [`recorder_rows`] if they were built ahead.
pub fn fold(model: &mut Model, event: &RecordedEvent, rows: Option<RecorderRows>) -> Result<(), ProjectionError> {
    match event.stream.stream_type {
        StreamType::Flow => flow(model, event),
        StreamType::FlowRun => flow_run(model, event),
        StreamType::TaskRun => task_run(model, event, rows),
        StreamType::LogBatch => {
            for row in logs::rows(event, payload(event)?) {
                insert_or_skip(model, "log", row);
            }
            Ok(())
        }
        StreamType::ClientEvent => Ok(()),
        other => match documents::table_of(other) {
            Some(table) => document(model, table, event),
            None => Ok(()),
        },
    }
}

/// The text value of a row's `id` column.
fn id_of(cols: &Cols) -> String {
    super::model::text(cols, "id").unwrap_or_default().to_owned()
}

/// `INSERT ... ON CONFLICT DO NOTHING`: skipped when the id or another
/// unique key is taken.
fn insert_or_skip(model: &mut Model, table: &'static str, cols: Cols) {
    let id = id_of(&cols);
    if model.contains(table, &id) || model.conflicts(table, &cols) {
        return;
    }
    model.insert(table, id, cols);
}

/// A plain INSERT. A duplicate would have failed the append that wrote the
/// event, so it cannot be in the log; if the model already holds the id the
/// later row replaces it, and the write of the rebuilt tables will not be
/// the one to notice.
fn insert(model: &mut Model, table: &'static str, cols: Cols) {
    let id = id_of(&cols);
    model.delete(table, &id);
    model.insert(table, id, cols);
}

fn one(id: &str) -> HashSet<String> {
    HashSet::from([id.to_owned()])
}

fn flow(model: &mut Model, event: &RecordedEvent) -> Result<(), ProjectionError> {
    let id = event.stream.id.to_string();
    match event.event_type.as_str() {
        FLOW_CREATED => {
            let FlowCreated { flow } = payload(event)?;
            insert(model, "flow", flows::created_row(event, flow));
        }
        FLOW_UPDATED => {
            let RowUpdated { changes, updated } = payload(event)?;
            model.update("flow", &id, changed_columns(&changes, flows::UPDATABLE, fmt_ts(updated), event.stream_version));
        }
        FLOW_DELETED => {
            // As flows::apply: the flow's runs (with their task runs and
            // states), then its deployments (with their schedules).
            let runs = model.ids_where("flow_run", "flow_id", &one(&id));
            delete_runs(model, &runs);
            let deployments = model.ids_where("deployment", "flow_id", &one(&id));
            model.delete_where("deployment_schedule", "deployment_id", &deployments);
            for d in &deployments {
                model.delete("deployment", d);
            }
            model.delete("flow", &id);
        }
        _ => {}
    }
    Ok(())
}

/// Deletes flow runs with their states, their task runs and those task
/// runs' states.
fn delete_runs(model: &mut Model, runs: &HashSet<String>) {
    model.delete_where("flow_run_input", "flow_run_id", runs);
    model.delete_where("flow_run_state", "flow_run_id", runs);
    let tasks = model.ids_where("task_run", "flow_run_id", runs);
    model.delete_where("task_run_state", "task_run_id", &tasks);
    for t in &tasks {
        model.delete("task_run", t);
    }
    for r in runs {
        model.delete("flow_run", r);
    }
}

fn flow_run(model: &mut Model, event: &RecordedEvent) -> Result<(), ProjectionError> {
    let id = event.stream.id.to_string();
    match event.event_type.as_str() {
        FLOW_RUN_CREATED => {
            let FlowRunCreated { flow_run } = payload(event)?;
            insert(model, "flow_run", flow_runs::created_row(event, flow_run));
        }
        FLOW_RUN_UPDATED => {
            let RowUpdated { changes, updated } = payload(event)?;
            model.update("flow_run", &id, changed_columns(&changes, flow_runs::UPDATABLE, fmt_ts(updated), event.stream_version));
        }
        FLOW_RUN_DELETED => delete_runs(model, &one(&id)),
        _ => {
            let set: StateSet = payload(event)?;
            insert_or_skip(model, "flow_run_state", state_row("flow_run_id", id.clone(), &set.state, fmt_ts(event.occurred)));
            model.update("flow_run", &id, flow_runs::state_columns(event, &set));
        }
    }
    Ok(())
}

fn task_run(model: &mut Model, event: &RecordedEvent, rows: Option<RecorderRows>) -> Result<(), ProjectionError> {
    let id = event.stream.id.to_string();
    match event.event_type.as_str() {
        TASK_RUN_CREATED => {
            let TaskRunCreated { task_run } = payload(event)?;
            insert(model, "task_run", task_runs::created_row(event, task_run));
        }
        TASK_RUN_UPDATED => {
            let RowUpdated { changes, updated } = payload(event)?;
            model.update("task_run", &id, changed_columns(&changes, task_runs::UPDATABLE, fmt_ts(updated), event.stream_version));
        }
        TASK_RUN_DELETED => {
            model.delete_where("task_run_state", "task_run_id", &one(&id));
            model.delete("task_run", &id);
        }
        _ if event.payload.get("run").is_some() => {
            let set: StateSet = payload(event)?;
            insert_or_skip(model, "task_run_state", state_row("task_run_id", id.clone(), &set.state, fmt_ts(event.occurred)));
            model.update("task_run", &id, task_runs::state_columns(event, &set));
            if let Some(row) = task_runs::cache_row(event, &set.state) {
                model.push_cache(row);
            }
        }
        _ => record_client_event(model, event, rows),
    }
    Ok(())
}

/// A client task-run event's rows, built from its payload before the fold
/// (on the thread that decodes the log), so that the fold, which must run
/// in log order on one thread, only looks the run up and applies them.
#[derive(Debug, PartialEq)]
pub struct RecorderRows {
    /// The task run id the event names.
    id: String,
    /// Its natural key, when the row it would create has one.
    key: Option<(String, String, String)>,
    /// The new state's timestamp (stored text form).
    state_ts: String,
    /// When the event was recorded in the log (stored text form).
    received: String,
    /// The task_run columns the event sets (`row_columns`).
    cols: Cols,
    /// The `task_run_state` row, for the task run `id`.
    state: Cols,
}

/// Does `fold` hand this event to the task-run recorder?
fn is_client_event(event: &RecordedEvent) -> bool {
    may_be_client_event(event) && event.payload.get("run").is_none()
}

/// [`is_client_event`] as far as it can tell without the payload.
pub fn may_be_client_event(event: &RecordedEvent) -> bool {
    event.stream.stream_type == StreamType::TaskRun
        && ![TASK_RUN_CREATED, TASK_RUN_UPDATED, TASK_RUN_DELETED].contains(&event.event_type.as_str())
}

/// The recorder's rows for `event`, when `fold` records it as a client
/// task-run event and it parses; pure, so it can run ahead of the fold.
pub fn recorder_rows(event: &RecordedEvent) -> Option<RecorderRows> {
    if !is_client_event(event) {
        return None;
    }
    let ev = task_run_recorder::parse(event.payload.get("event")?, event.event_id)?;
    let received = fmt_ts(event.occurred);
    let id = ev.task_run_id.to_string();
    Some(RecorderRows {
        key: task_run_recorder::natural_key(&ev),
        state_ts: fmt_ts(ev.state.timestamp),
        cols: task_run_recorder::row_columns(&ev, event.stream_version),
        state: state_row("task_run_id", id.clone(), &ev.state, received.clone()),
        received,
        id,
    })
}

/// The recorder's per-event logic (`task_run_recorder::apply`): find the
/// task run by id, else by natural key; overwrite it only with a newer
/// state, or create it; record the state either way. `rows` are the
/// event's [`recorder_rows`], when they were built ahead.
fn record_client_event(model: &mut Model, event: &RecordedEvent, rows: Option<RecorderRows>) {
    let Some(RecorderRows { id, key, state_ts, received, mut cols, mut state }) = rows.or_else(|| recorder_rows(event)) else { return };
    let existing = if model.contains("task_run", &id) { Some(id.clone()) } else { key.and_then(|k| model.task_run_by_key(&k).map(str::to_owned)) };
    let run_id = match existing {
        Some(existing) => {
            let newer = model
                .get("task_run", &existing)
                .is_some_and(|row| row.text("state_timestamp").is_none_or(|t| t < state_ts.as_str()));
            if newer {
                cols.push(("updated", Bind::Text(received.clone())));
                model.update("task_run", &existing, cols);
            }
            existing
        }
        None => {
            let mut row: Cols = vec![("updated", Bind::Text(received.clone()))];
            row.extend(cols);
            let row = task_run_recorder::new_row(&id, &event.workspace_id.to_string(), received, row);
            insert_or_skip(model, "task_run", row);
            id
        }
    };
    if let Some(slot) = state.iter_mut().find(|(c, _)| *c == "task_run_id") {
        slot.1 = Bind::Text(run_id);
    }
    insert_or_skip(model, "task_run_state", state);
}

fn document(model: &mut Model, table: &'static Table, event: &RecordedEvent) -> Result<(), ProjectionError> {
    let id = event.stream.id.to_string();
    match event.event_type.rsplit('.').next().unwrap_or_default() {
        "created" => {
            let DocumentCreated { record, created, .. } = payload(event)?;
            insert(model, table.name, documents::created_row(table, event, &record, created));
        }
        "updated" => {
            let DocumentUpdated { changes, updated, .. } = payload(event)?;
            model.update(table.name, &id, documents::updated_columns(table, event, &changes, updated));
        }
        "deleted" => {
            cascade(model, table.name, &id);
            model.delete(table.name, &id);
        }
        _ => {}
    }
    Ok(())
}

/// `documents::cascade`, in memory: what Prefect's foreign keys do when a
/// row of `table` goes.
fn cascade(model: &mut Model, table: &str, id: &str) {
    const RUN_POOL: &[&str] = &["work_queue_id", "work_pool_id", "work_pool_name"];
    let this = one(id);
    match table {
        "work_pool" => {
            let queues = model.ids_where("work_queue", "work_pool_id", &this);
            model.null_where("deployment", "work_queue_id", &queues, &["work_queue_id"]);
            model.null_where("flow_run", "work_pool_id", &this, RUN_POOL);
            model.delete_where("worker", "work_pool_id", &this);
            model.delete_where("work_queue", "work_pool_id", &this);
        }
        "work_queue" => {
            model.null_where("deployment", "work_queue_id", &this, &["work_queue_id"]);
            model.null_where("flow_run", "work_queue_id", &this, RUN_POOL);
        }
        "deployment" => {
            model.delete_where("deployment_schedule", "deployment_id", &this);
            model.null_where("flow_run", "deployment_id", &this, &["deployment_id"]);
        }
        "block_type" => {
            model.delete_where("block_document", "block_type_id", &this);
            model.delete_where("block_schema", "block_type_id", &this);
        }
        "block_schema" => model.delete_where("block_document", "block_schema_id", &this),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use uuid::Uuid;

    use super::*;
    use crate::eventlog::StreamRef;
    use crate::server_events::LOGS_CREATED;

    const T0: &str = "2026-01-01T00:00:00.000000Z";

    fn event(stream_type: StreamType, id: Uuid, version: i64, event_type: &str, occurred: &str, payload: Value) -> RecordedEvent {
        RecordedEvent {
            position: 0,
            tx_id: 0,
            event_id: Uuid::now_v7(),
            stream: StreamRef::new(stream_type, id),
            stream_version: version,
            event_type: event_type.to_owned(),
            schema_version: 1,
            workspace_id: Uuid::nil(),
            occurred: crate::time::parse_ts(occurred).unwrap(),
            correlation_id: None,
            causation_id: None,
            payload,
        }
    }

    fn flow_run_created(run: Uuid, flow: Uuid, pool: Option<Uuid>) -> RecordedEvent {
        let record = json!({
            "id": run, "created": T0, "name": "r", "flow_id": flow, "work_pool_id": pool, "work_pool_name": pool.map(|_| "p"),
            "parameters": {}, "context": {}, "empirical_policy": {}, "tags": [], "labels": {}, "auto_scheduled": false,
            "created_by": null, "job_variables": {}
        });
        event(StreamType::FlowRun, run, 1, FLOW_RUN_CREATED, T0, json!({ "flow_run": record }))
    }

    fn state_set(stream_type: StreamType, run: Uuid, version: i64, state_type: &str, timestamp: &str, details: Value) -> RecordedEvent {
        let payload = json!({
            "state": {"id": Uuid::now_v7(), "type": state_type, "name": state_type, "timestamp": timestamp, "message": null, "data": null, "state_details": details},
            "run": {"run_count": 1, "start_time": null, "end_time": null, "total_run_time": 0.0, "expected_start_time": null,
                    "next_scheduled_start_time": null, "empirical_policy": {}},
            "event": {}
        });
        event(stream_type, run, version, "prefect.set-state", timestamp, payload)
    }

    fn client_event(task_run: Uuid, flow_run: Uuid, task_key: &str, state_type: &str, occurred: &str) -> RecordedEvent {
        let payload = json!({"event": {
            "occurred": occurred,
            "resource": {"prefect.resource.id": format!("prefect.task-run.{task_run}"), "prefect.orchestration": "client"},
            "related": [{"prefect.resource.id": format!("prefect.flow-run.{flow_run}"), "prefect.resource.role": "flow-run"}],
            "payload": {"validated_state": {"type": state_type, "name": state_type}, "task_run": {"task_key": task_key, "dynamic_key": "0"}}
        }});
        event(StreamType::TaskRun, task_run, 1, "prefect.task-run.client", occurred, payload)
    }

    fn folded(events: &[RecordedEvent]) -> Model {
        let mut model = Model::default();
        for e in events {
            fold(&mut model, e, None).unwrap();
        }
        model
    }

    fn text(model: &Model, table: &str, id: &Uuid, col: &str) -> Option<String> {
        model.get(table, &id.to_string()).and_then(|r| r.text(col)).map(str::to_owned)
    }

    fn count(model: Model, table: &str) -> usize {
        model.into_tables().into_iter().find(|(t, _)| *t == table).map_or(0, |(_, rows)| rows.len())
    }

    #[test]
    fn a_second_flow_run_state_at_the_same_timestamp_is_not_stored_but_still_moves_the_run() {
        // Given a flow run and two states at the same timestamp
        let (run, flow) = (Uuid::now_v7(), Uuid::now_v7());
        let first = state_set(StreamType::FlowRun, run, 2, "RUNNING", "2026-01-01T00:00:01.000000Z", json!({}));
        let second = state_set(StreamType::FlowRun, run, 3, "COMPLETED", "2026-01-01T00:00:01.000000Z", json!({}));
        // When they are folded
        let model = folded(&[flow_run_created(run, flow, None), first, second.clone()]);
        // Then the run has the second state (the UPDATE is unconditional), the
        // table only the first (ON CONFLICT on (flow_run_id, timestamp))
        assert_eq!(text(&model, "flow_run", &run, "state_type").as_deref(), Some("COMPLETED"));
        assert_eq!(model.get("flow_run", &run.to_string()).unwrap().get("version"), Some(&Bind::Int(3)));
        assert_eq!(count(model, "flow_run_state"), 1);
    }

    #[test]
    fn a_state_for_a_missing_run_is_stored_without_a_run() {
        let run = Uuid::now_v7();
        let model = folded(&[state_set(StreamType::TaskRun, run, 1, "RUNNING", T0, json!({}))]);
        assert!(!model.contains("task_run", &run.to_string()));
        assert_eq!(count(model, "task_run_state"), 1);
    }

    #[test]
    fn a_completed_task_run_state_with_a_cache_key_is_cached_and_sets_the_key() {
        let run = Uuid::now_v7();
        let created = json!({"task_run": {"id": run, "created": T0, "name": "t", "flow_run_id": null, "task_key": "k", "dynamic_key": "0",
                                          "empirical_policy": {}, "tags": [], "labels": {}, "task_inputs": {}}});
        let model = folded(&[
            event(StreamType::TaskRun, run, 1, TASK_RUN_CREATED, T0, created),
            state_set(StreamType::TaskRun, run, 2, "COMPLETED", "2026-01-01T00:00:02.000000Z", json!({"cache_key": "ck"})),
        ]);
        assert_eq!(text(&model, "task_run", &run, "cache_key").as_deref(), Some("ck"));
        assert_eq!(count(model, "task_run_state_cache"), 1);
    }

    #[test]
    fn the_recorder_ignores_an_older_state_and_finds_a_run_by_natural_key() {
        // Given a client task run completed, then a late RUNNING event, then
        // an event with another id but the same natural key
        let (tr, fr, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let model = folded(&[
            client_event(tr, fr, "k", "COMPLETED", "2026-01-01T00:00:02.000000Z"),
            client_event(tr, fr, "k", "RUNNING", "2026-01-01T00:00:01.000000Z"),
            client_event(other, fr, "k", "FAILED", "2026-01-01T00:00:03.000000Z"),
        ]);
        // Then one task run, in the newest state, and every state recorded
        assert_eq!(text(&model, "task_run", &tr, "state_type").as_deref(), Some("FAILED"));
        assert!(!model.contains("task_run", &other.to_string()));
        assert_eq!(text(&model, "task_run", &tr, "created").as_deref(), Some("2026-01-01T00:00:02.000000Z"));
        assert_eq!(count(model, "task_run_state"), 3);
    }

    #[test]
    fn rows_built_ahead_fold_to_the_same_model_as_rows_built_in_the_fold() {
        // Given client events that create, update, and find a run by natural key
        let (tr, fr, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let events = [
            client_event(tr, fr, "k", "RUNNING", "2026-01-01T00:00:01.000000Z"),
            client_event(tr, fr, "k", "COMPLETED", "2026-01-01T00:00:02.000000Z"),
            client_event(other, fr, "k", "FAILED", "2026-01-01T00:00:03.000000Z"),
        ];
        // When they are folded with their recorder rows built ahead
        let mut ahead = Model::default();
        for e in &events {
            let rows = recorder_rows(e);
            assert!(rows.is_some());
            fold(&mut ahead, e, rows).unwrap();
        }
        // Then the model is the one the fold builds by itself
        let mut tables = ahead.into_tables();
        let mut inline = folded(&events).into_tables();
        for rows in tables.iter_mut().chain(inline.iter_mut()) {
            rows.1.sort_by_key(|r| r.text("id").map(str::to_owned));
        }
        assert_eq!(tables, inline);
    }

    #[test]
    fn only_client_task_run_events_get_recorder_rows() {
        let run = Uuid::now_v7();
        assert!(recorder_rows(&state_set(StreamType::TaskRun, run, 2, "RUNNING", T0, json!({}))).is_none());
        assert!(recorder_rows(&flow_run_created(run, Uuid::now_v7(), None)).is_none());
    }

    #[test]
    fn deleting_a_flow_deletes_its_runs_task_runs_states_and_deployments_only() {
        // Given two flows with a run each, a task run with a state, and a
        // deployment with a schedule on the doomed one
        let (doomed, kept, run, other_run, tr, dep, sched) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let created = json!({"task_run": {"id": tr, "created": T0, "name": "t", "flow_run_id": run, "task_key": "k", "dynamic_key": "0",
                                          "empirical_policy": {}, "tags": [], "labels": {}, "task_inputs": {}}});
        let doc = |record: Value| json!({"record": record, "created": T0});
        let model = folded(&[
            flow_run_created(run, doomed, None),
            flow_run_created(other_run, kept, None),
            state_set(StreamType::FlowRun, run, 2, "RUNNING", T0, json!({})),
            event(StreamType::TaskRun, tr, 1, TASK_RUN_CREATED, T0, created),
            state_set(StreamType::TaskRun, tr, 2, "RUNNING", T0, json!({})),
            event(StreamType::Deployment, dep, 1, "prefect.deployment.created", T0, doc(json!({"name": "d", "flow_id": doomed}))),
            event(StreamType::DeploymentSchedule, sched, 1, "prefect.deployment-schedule.created", T0, doc(json!({"deployment_id": dep, "schedule": {}}))),
            // When the flow is deleted
            event(StreamType::Flow, doomed, 2, FLOW_DELETED, T0, json!({})),
        ]);
        // Then only the other flow's run is left
        assert!(model.contains("flow_run", &other_run.to_string()));
        for (table, id) in [("flow_run", run), ("task_run", tr), ("deployment", dep), ("deployment_schedule", sched)] {
            assert!(!model.contains(table, &id.to_string()), "{table}");
        }
        let tables = model.into_tables();
        for table in ["flow_run_state", "task_run_state"] {
            assert!(tables.iter().find(|(t, _)| *t == table).is_none_or(|(_, rows)| rows.is_empty()), "{table}");
        }
    }

    #[test]
    fn deleting_a_work_pool_detaches_runs_and_deployments_and_deletes_queues_and_workers() {
        let (pool, queue, worker, dep, run) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let doc = |record: Value| json!({"record": record, "created": T0});
        let model = folded(&[
            event(StreamType::WorkPool, pool, 1, "prefect.work-pool.created", T0, doc(json!({"name": "p", "type": "process"}))),
            event(StreamType::WorkQueue, queue, 1, "prefect.work-queue.created", T0, doc(json!({"name": "q", "work_pool_id": pool}))),
            event(StreamType::Worker, worker, 1, "prefect.worker.created", T0, doc(json!({"name": "w", "work_pool_id": pool}))),
            event(StreamType::Deployment, dep, 1, "prefect.deployment.created", T0, doc(json!({"name": "d", "flow_id": Uuid::nil(), "work_queue_id": queue}))),
            flow_run_created(run, Uuid::nil(), Some(pool)),
            event(StreamType::WorkPool, pool, 2, "prefect.work-pool.deleted", T0, json!({})),
        ]);
        assert!(!model.contains("work_queue", &queue.to_string()));
        assert!(!model.contains("worker", &worker.to_string()));
        assert!(!model.contains("work_pool", &pool.to_string()));
        assert_eq!(model.get("deployment", &dep.to_string()).unwrap().get("work_queue_id"), Some(&Bind::Null));
        let run = model.get("flow_run", &run.to_string()).unwrap();
        assert_eq!((run.get("work_pool_id"), run.get("work_pool_name")), (Some(&Bind::Null), Some(&Bind::Null)));
    }

    #[test]
    fn a_log_id_seen_before_is_skipped() {
        let log = |message: &str| json!({"id": Uuid::nil(), "name": "n", "level": 20, "message": message, "timestamp": T0, "flow_run_id": null, "task_run_id": null});
        let batch = |message: &str| event(StreamType::LogBatch, Uuid::now_v7(), 1, LOGS_CREATED, T0, json!({"created": T0, "logs": [log(message)]}));
        let model = folded(&[batch("first"), batch("second")]);
        assert_eq!(text(&model, "log", &Uuid::nil(), "message").as_deref(), Some("first"));
    }

    #[test]
    fn a_malformed_payload_is_an_error_not_a_panic() {
        let mut model = Model::default();
        let bad = event(StreamType::Flow, Uuid::now_v7(), 1, FLOW_CREATED, T0, json!({"flow": 3}));
        assert!(matches!(fold(&mut model, &bad, None), Err(ProjectionError::Payload(..))));
    }
}
