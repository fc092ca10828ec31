//! Document rows (work pools, work queues, workers, deployments, deployment
//! schedules, variables): one generic insert / update / delete driven by the table
//! descriptors in `server_model::documents`, plus the cascades Prefect's
//! foreign keys perform when a document is deleted.

use sqlx::AnyConnection;

use super::{exec, payload, ProjectionError};
use crate::db::{Bind, Dialect};
use crate::eventlog::{RecordedEvent, StreamType};
use crate::server_events::{DocumentCreated, DocumentUpdated};
use crate::server_model::documents::{bind, Table, DEPLOYMENT, DEPLOYMENT_SCHEDULE, VARIABLE, WORKER, WORK_POOL, WORK_QUEUE};
use crate::time::fmt_ts;

pub(super) fn table_of(stream_type: StreamType) -> Option<&'static Table> {
    Some(match stream_type {
        StreamType::WorkPool => &WORK_POOL,
        StreamType::WorkQueue => &WORK_QUEUE,
        StreamType::Worker => &WORKER,
        StreamType::Deployment => &DEPLOYMENT,
        StreamType::DeploymentSchedule => &DEPLOYMENT_SCHEDULE,
        StreamType::Variable => &VARIABLE,
        _ => return None,
    })
}

pub(super) async fn apply(conn: &mut AnyConnection, dialect: Dialect, table: &Table, event: &RecordedEvent) -> Result<(), ProjectionError> {
    let id = event.stream.id.to_string();
    let action = event.event_type.rsplit('.').next().unwrap_or_default();
    match action {
        "created" => {
            let DocumentCreated { record, created, .. } = payload(event)?;
            let created = fmt_ts(created);
            let mut cols = vec!["id", "workspace_id", "created", "updated", "version"];
            let mut binds = vec![
                Bind::Text(id),
                Bind::Text(event.workspace_id.to_string()),
                Bind::Text(created.clone()),
                Bind::Text(created),
                Bind::Int(event.stream_version),
            ];
            for field in table.fields {
                if let Some(v) = record.get(field.json) {
                    cols.push(field.column);
                    binds.push(bind(field.kind, v));
                }
            }
            let placeholders: Vec<String> = (1..=binds.len()).map(|i| format!("${i}")).collect();
            let sql = format!("INSERT INTO {} ({}) VALUES ({})", table.name, cols.join(", "), placeholders.join(", "));
            exec(conn, dialect, &sql, &binds).await?;
        }
        "updated" => {
            let DocumentUpdated { changes, updated, .. } = payload(event)?;
            let mut sets = vec!["updated = $1".to_owned(), "version = $2".to_owned()];
            let mut binds = vec![Bind::Text(fmt_ts(updated)), Bind::Int(event.stream_version)];
            for (key, value) in &changes {
                let Some(field) = table.field(key) else { continue };
                binds.push(bind(field.kind, value));
                sets.push(format!("{} = ${}", field.column, binds.len()));
            }
            binds.push(Bind::Text(id));
            let sql = format!("UPDATE {} SET {} WHERE id = ${}", table.name, sets.join(", "), binds.len());
            exec(conn, dialect, &sql, &binds).await?;
        }
        "deleted" => {
            for sql in cascade(table) {
                exec(conn, dialect, sql, &[Bind::Text(id.clone())]).await?;
            }
            exec(conn, dialect, &format!("DELETE FROM {} WHERE id = $1", table.name), &[Bind::Text(id)]).await?;
        }
        other => tracing::warn!(event_type = %event.event_type, action = other, "document event with no projection"),
    }
    Ok(())
}

/// What Prefect's foreign keys do when a row of `table` (id = `$1`) goes.
fn cascade(table: &Table) -> &'static [&'static str] {
    match table.name {
        "work_pool" => &[
            "UPDATE deployment SET work_queue_id = NULL WHERE work_queue_id IN (SELECT id FROM work_queue WHERE work_pool_id = $1)",
            "UPDATE flow_run SET work_queue_id = NULL, work_pool_id = NULL, work_pool_name = NULL WHERE work_pool_id = $1",
            "DELETE FROM worker WHERE work_pool_id = $1",
            "DELETE FROM work_queue WHERE work_pool_id = $1",
        ],
        "work_queue" => &[
            "UPDATE deployment SET work_queue_id = NULL WHERE work_queue_id = $1",
            "UPDATE flow_run SET work_queue_id = NULL, work_pool_id = NULL, work_pool_name = NULL WHERE work_queue_id = $1",
        ],
        "deployment" => &[
            "DELETE FROM deployment_schedule WHERE deployment_id = $1",
            "UPDATE flow_run SET deployment_id = NULL WHERE deployment_id = $1",
        ],
        _ => &[],
    }
}
