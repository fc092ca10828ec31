//! Flow-run rows and their states.

use sqlx::AnyConnection;

use super::{exec, insert_state, json_text, opt_ts, opt_uuid, payload, update_columns, ProjectionError};
use crate::db::{Bind, Dialect};
use crate::eventlog::RecordedEvent;
use crate::server_events::{FlowRunCreated, RowUpdated, StateSet, FLOW_RUN_CREATED, FLOW_RUN_DELETED, FLOW_RUN_UPDATED};
use crate::time::fmt_ts;

/// Columns a `flow-run.updated` event may change.
pub(crate) const UPDATABLE: &[&str] = &[
    "name",
    "flow_version",
    "parameters",
    "empirical_policy",
    "tags",
    "labels",
    "infrastructure_pid",
    "job_variables",
];

pub(super) async fn apply(conn: &mut AnyConnection, dialect: Dialect, event: &RecordedEvent) -> Result<(), ProjectionError> {
    let id = event.stream.id.to_string();
    match event.event_type.as_str() {
        FLOW_RUN_CREATED => {
            let FlowRunCreated { flow_run: r } = payload(event)?;
            let created = fmt_ts(r.created);
            exec(
                conn,
                dialect,
                "INSERT INTO flow_run (id, workspace_id, created, updated, name, flow_id, deployment_id, deployment_version, \
                 work_queue_id, work_queue_name, work_pool_id, work_pool_name, flow_version, parameters, idempotency_key, \
                 context, empirical_policy, tags, labels, parent_task_run_id, auto_scheduled, infrastructure_document_id, \
                 created_by, job_variables, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)",
                &[
                    Bind::Text(id),
                    Bind::Text(event.workspace_id.to_string()),
                    Bind::Text(created.clone()),
                    Bind::Text(created),
                    Bind::Text(r.name),
                    Bind::Text(r.flow_id.to_string()),
                    opt_uuid(r.deployment_id),
                    r.deployment_version.into(),
                    opt_uuid(r.work_queue_id),
                    r.work_queue_name.into(),
                    opt_uuid(r.work_pool_id),
                    r.work_pool_name.into(),
                    r.flow_version.into(),
                    json_text(&r.parameters),
                    r.idempotency_key.into(),
                    json_text(&r.context),
                    json_text(&r.empirical_policy),
                    json_text(&r.tags),
                    json_text(&r.labels),
                    opt_uuid(r.parent_task_run_id),
                    Bind::Int(r.auto_scheduled as i64),
                    opt_uuid(r.infrastructure_document_id),
                    if r.created_by.is_null() { Bind::Null } else { json_text(&r.created_by) },
                    json_text(&r.job_variables),
                    Bind::Int(event.stream_version),
                ],
            )
            .await?;
        }
        FLOW_RUN_UPDATED => {
            let RowUpdated { changes, updated } = payload(event)?;
            update_columns(conn, dialect, "flow_run", &id, &changes, UPDATABLE, fmt_ts(updated), event.stream_version).await?;
        }
        FLOW_RUN_DELETED => {
            for sql in [
                "DELETE FROM flow_run_state WHERE flow_run_id = $1",
                "DELETE FROM task_run_state WHERE task_run_id IN (SELECT id FROM task_run WHERE flow_run_id = $1)",
                "DELETE FROM task_run WHERE flow_run_id = $1",
                "DELETE FROM flow_run WHERE id = $1",
            ] {
                exec(conn, dialect, sql, &[Bind::Text(id.clone())]).await?;
            }
        }
        _ => {
            let set: StateSet = payload(event)?;
            apply_state(conn, dialect, event, &id, &set).await?;
        }
    }
    Ok(())
}

async fn apply_state(conn: &mut AnyConnection, dialect: Dialect, event: &RecordedEvent, id: &str, set: &StateSet) -> Result<(), sqlx::Error> {
    let state = &set.state;
    let run = &set.run;
    let when = fmt_ts(event.occurred);
    insert_state(conn, dialect, "flow_run_state", "flow_run_id", id, state, when.clone()).await?;
    exec(
        conn,
        dialect,
        "UPDATE flow_run SET state_id = $1, state_type = $2, state_name = $3, state_timestamp = $4, run_count = $5, \
         start_time = $6, end_time = $7, total_run_time = $8, expected_start_time = $9, next_scheduled_start_time = $10, \
         empirical_policy = $11, updated = $12, version = $13 WHERE id = $14",
        &[
            Bind::Text(state.id.to_string()),
            Bind::Text(state.state_type.as_str().to_owned()),
            Bind::Text(state.name.clone()),
            Bind::Text(fmt_ts(state.timestamp)),
            Bind::Int(run.run_count),
            opt_ts(run.start_time),
            opt_ts(run.end_time),
            Bind::Float(run.total_run_time),
            opt_ts(run.expected_start_time),
            opt_ts(run.next_scheduled_start_time),
            json_text(&run.empirical_policy),
            Bind::Text(when),
            Bind::Int(event.stream_version),
            Bind::Text(id.to_owned()),
        ],
    )
    .await?;
    Ok(())
}
