//! Task-run rows created or orchestrated through the REST API.

use sqlx::AnyConnection;

use super::{exec, insert_state, json_text, opt_ts, opt_uuid, payload, task_run_recorder, update_columns, ProjectionError};
use crate::db::{Bind, Dialect};
use crate::eventlog::RecordedEvent;
use crate::server_events::{StateSet, TaskRunCreated, RowUpdated, TASK_RUN_CREATED, TASK_RUN_DELETED, TASK_RUN_UPDATED};
use crate::time::fmt_ts;

pub(super) async fn apply(conn: &mut AnyConnection, dialect: Dialect, event: &RecordedEvent) -> Result<(), ProjectionError> {
    let id = event.stream.id.to_string();
    match event.event_type.as_str() {
        TASK_RUN_CREATED => {
            let TaskRunCreated { task_run: r } = payload(event)?;
            let created = fmt_ts(r.created);
            exec(
                conn,
                dialect,
                "INSERT INTO task_run (id, workspace_id, created, updated, name, flow_run_id, task_key, dynamic_key, cache_key, \
                 cache_expiration, task_version, empirical_policy, tags, labels, task_inputs, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                &[
                    Bind::Text(id),
                    Bind::Text(event.workspace_id.to_string()),
                    Bind::Text(created.clone()),
                    Bind::Text(created),
                    Bind::Text(r.name),
                    opt_uuid(r.flow_run_id),
                    Bind::Text(r.task_key),
                    Bind::Text(r.dynamic_key),
                    r.cache_key.into(),
                    opt_ts(r.cache_expiration),
                    r.task_version.into(),
                    json_text(&r.empirical_policy),
                    json_text(&r.tags),
                    json_text(&r.labels),
                    json_text(&r.task_inputs),
                    Bind::Int(event.stream_version),
                ],
            )
            .await?;
        }
        TASK_RUN_UPDATED => {
            let RowUpdated { changes, updated } = payload(event)?;
            update_columns(conn, dialect, "task_run", &id, &changes, &["name"], fmt_ts(updated), event.stream_version).await?;
        }
        TASK_RUN_DELETED => {
            exec(conn, dialect, "DELETE FROM task_run_state WHERE task_run_id = $1", &[Bind::Text(id.clone())]).await?;
            exec(conn, dialect, "DELETE FROM task_run WHERE id = $1", &[Bind::Text(id)]).await?;
        }
        _ if event.payload.get("run").is_some() => {
            let set: StateSet = payload(event)?;
            apply_state(conn, dialect, event, &id, &set).await?;
        }
        _ => task_run_recorder::apply(conn, dialect, event).await?,
    }
    Ok(())
}

async fn apply_state(conn: &mut AnyConnection, dialect: Dialect, event: &RecordedEvent, id: &str, set: &StateSet) -> Result<(), sqlx::Error> {
    let state = &set.state;
    let run = &set.run;
    let when = fmt_ts(event.occurred);
    insert_state(conn, dialect, "task_run_state", "task_run_id", id, state, when.clone()).await?;
    exec(
        conn,
        dialect,
        "UPDATE task_run SET state_id = $1, state_type = $2, state_name = $3, state_timestamp = $4, run_count = $5, \
         start_time = $6, end_time = $7, total_run_time = $8, expected_start_time = $9, next_scheduled_start_time = $10, \
         empirical_policy = $11, flow_run_run_count = COALESCE(CAST($12 AS BIGINT), flow_run_run_count), updated = $13, version = $14, \
         cache_key = COALESCE($15, cache_key), cache_expiration = COALESCE($16, cache_expiration) WHERE id = $17",
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
            match run.flow_run_run_count {
                Some(n) => Bind::Int(n),
                None => Bind::Null,
            },
            Bind::Text(when),
            Bind::Int(event.stream_version),
            state.state_details.cache_key.clone().into(),
            opt_ts(state.state_details.cache_expiration),
            Bind::Text(id.to_owned()),
        ],
    )
    .await?;
    // CacheInsertion: a COMPLETED state with a cache key becomes cacheable.
    if state.state_type == crate::orchestration::states::StateType::Completed {
        if let Some(key) = &state.state_details.cache_key {
            exec(
                conn,
                dialect,
                "INSERT INTO task_run_state_cache (cache_key, cache_expiration, task_run_state_id, created) VALUES ($1, $2, $3, $4)",
                &[
                    Bind::Text(key.clone()),
                    opt_ts(state.state_details.cache_expiration),
                    Bind::Text(state.id.to_string()),
                    Bind::Text(fmt_ts(event.occurred)),
                ],
            )
            .await?;
        }
    }
    Ok(())
}
