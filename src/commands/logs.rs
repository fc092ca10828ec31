//! `POST /logs/`: one batch of logs becomes one event in the log.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::{record, write};
use crate::api::error::ApiResult;
use crate::db::Db;
use crate::eventlog::{ExpectedVersion, NewEvent, StreamRef, StreamType};
use crate::server_events::{LogRecord, LogsCreated, LOGS_CREATED};
use crate::time::micros;

/// `LogCreate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogCreate {
    pub name: String,
    pub level: i64,
    pub message: String,
    pub timestamp: DateTime<Utc>,
    #[serde(default)]
    pub flow_run_id: Option<Uuid>,
    #[serde(default)]
    pub task_run_id: Option<Uuid>,
}

pub async fn create_logs(db: &Db, logs: Vec<LogCreate>) -> ApiResult<()> {
    if logs.is_empty() {
        return Ok(());
    }
    let dialect = db.dialect;
    let batch_id = Uuid::now_v7();
    let now = micros(Utc::now());
    let payload = LogsCreated {
        created: now,
        logs: logs
            .into_iter()
            .map(|l| LogRecord {
                id: Uuid::now_v7(),
                name: l.name,
                level: l.level,
                message: l.message,
                timestamp: micros(l.timestamp),
                flow_run_id: l.flow_run_id,
                task_run_id: l.task_run_id,
            })
            .collect(),
    };
    let payload = serde_json::to_value(payload).map_err(anyhow::Error::from)?;
    write(db, move |conn| {
        let event = NewEvent::new(batch_id, LOGS_CREATED, now, payload.clone());
        Box::pin(async move {
            record(conn, dialect, StreamRef::new(StreamType::LogBatch, batch_id), ExpectedVersion::Any, vec![event]).await?;
            Ok(())
        })
    })
    .await
}
