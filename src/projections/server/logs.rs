//! Log rows: one event carries a whole `POST /logs/` batch.

use sqlx::AnyConnection;

use super::{exec, opt_uuid, payload, ProjectionError};
use crate::db::{Bind, Dialect};
use crate::eventlog::RecordedEvent;
use crate::server_events::LogsCreated;
use crate::time::fmt_ts;

pub(super) async fn apply(conn: &mut AnyConnection, dialect: Dialect, event: &RecordedEvent) -> Result<(), ProjectionError> {
    let LogsCreated { created, logs } = payload(event)?;
    let created = fmt_ts(created);
    let ws = event.workspace_id.to_string();
    // Multi-row inserts keep a big batch to a few statements.
    for chunk in logs.chunks(100) {
        let mut sql = String::from(
            "INSERT INTO log (id, workspace_id, created, name, level, flow_run_id, task_run_id, message, timestamp) VALUES ",
        );
        let mut binds = Vec::with_capacity(chunk.len() * 9);
        for (i, log) in chunk.iter().enumerate() {
            let base = i * 9;
            if i > 0 {
                sql.push_str(", ");
            }
            let phs: Vec<String> = (1..=9).map(|k| format!("${}", base + k)).collect();
            sql.push('(');
            sql.push_str(&phs.join(", "));
            sql.push(')');
            binds.extend([
                Bind::Text(log.id.to_string()),
                Bind::Text(ws.clone()),
                Bind::Text(created.clone()),
                Bind::Text(log.name.clone()),
                Bind::Int(log.level),
                opt_uuid(log.flow_run_id),
                opt_uuid(log.task_run_id),
                Bind::Text(log.message.clone()),
                Bind::Text(fmt_ts(log.timestamp)),
            ]);
        }
        sql.push_str(" ON CONFLICT DO NOTHING");
        exec(conn, dialect, &sql, &binds).await?;
    }
    Ok(())
}
