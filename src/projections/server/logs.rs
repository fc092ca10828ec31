//! Log rows: one event carries a whole `POST /logs/` batch.

use sqlx::AnyConnection;

use super::{exec, opt_uuid, payload, Cols, ProjectionError};
use crate::db::{Bind, Dialect};
use crate::eventlog::RecordedEvent;
use crate::server_events::LogsCreated;
use crate::time::fmt_ts;

/// The log rows a `logs.created` event inserts (a log id already present is
/// left alone).
pub(super) fn rows(event: &RecordedEvent, batch: LogsCreated) -> impl Iterator<Item = Cols> {
    let created = fmt_ts(batch.created);
    let ws = event.workspace_id.to_string();
    batch.logs.into_iter().map(move |log| {
        vec![
            ("id", Bind::Text(log.id.to_string())),
            ("workspace_id", Bind::Text(ws.clone())),
            ("created", Bind::Text(created.clone())),
            ("name", Bind::Text(log.name)),
            ("level", Bind::Int(log.level)),
            ("flow_run_id", opt_uuid(log.flow_run_id)),
            ("task_run_id", opt_uuid(log.task_run_id)),
            ("message", Bind::Text(log.message)),
            ("timestamp", Bind::Text(fmt_ts(log.timestamp))),
        ]
    })
}

pub(super) async fn apply(conn: &mut AnyConnection, dialect: Dialect, event: &RecordedEvent) -> Result<(), ProjectionError> {
    let batch: LogsCreated = payload(event)?;
    let rows: Vec<Cols> = rows(event, batch).collect();
    // Multi-row inserts keep a big batch to a few statements.
    for chunk in rows.chunks(100) {
        let values: Vec<String> = (0..chunk.len()).map(|i| format!("({})", crate::db::sql::placeholders(i * 9 + 1, 9))).collect();
        let sql = format!(
            "INSERT INTO log (id, workspace_id, created, name, level, flow_run_id, task_run_id, message, timestamp) VALUES {} ON CONFLICT DO NOTHING",
            values.join(", ")
        );
        let binds: Vec<Bind> = chunk.iter().flat_map(|row| row.iter().map(|(_, b)| b.clone())).collect();
        exec(conn, dialect, &sql, &binds).await?;
    }
    Ok(())
}
