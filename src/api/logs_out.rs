//! `/logs/out`: a filtered live stream of logs, as Prefect serves it
//! (`prefect flow-run watch`, `prefect deployment run --watch` and other
//! `FlowRunSubscriber` users follow a run's logs with it). After `auth`,
//! the client sends `{"type": "filter", "filter": LogFilter}` and then gets
//! `{"type": "log", "log": Log}` for each matching log written from then
//! on; like Prefect, there is no backfill.
//!
//! The socket follows the event log itself, where every `POST /logs/` batch
//! is one entry, from the tail it saw at connection: so it sees logs written
//! through any API process, in log order, none twice.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use serde_json::json;

use super::events::{close_protocol_error, filter_message, handshake, idle};
use super::AppState;
use crate::eventlog::{read_after, tail_cursor, Cursor, RecordedEvent};
use crate::server_events::{LogsCreated, LOGS_CREATED};
use crate::server_model::filters::{LiveLog, LogFilter};
use crate::time::fmt_ts;

/// How often the log is polled for other processes' writes.
const POLL: Duration = Duration::from_millis(250);
const BATCH: i64 = 500;

pub async fn logs_out(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.protocols(["prefect"]).max_message_size(1 << 20).on_upgrade(move |socket| async move {
        let negotiated = socket.protocol().is_some_and(|p| p == "prefect");
        if let Err(reason) = serve(socket, state, negotiated).await {
            tracing::debug!(reason, "logs/out closed");
        }
    })
}

/// Reads the `filter` message; closes with Prefect's reasons otherwise.
async fn read_filter(socket: &mut WebSocket) -> Result<LogFilter, &'static str> {
    let msg = filter_message(socket).await?;
    let filter = msg.get("filter").cloned().filter(|f| !f.is_null()).unwrap_or_else(|| json!({}));
    match serde_json::from_value::<LogFilter>(filter) {
        Ok(f) if f.validate(&["filter"]).is_ok() => Ok(f),
        Ok(_) => {
            close_protocol_error(socket, "Invalid filter: text query is too long".into()).await;
            Err("invalid filter")
        }
        Err(e) => {
            close_protocol_error(socket, format!("Invalid filter: {e}")).await;
            Err("invalid filter")
        }
    }
}

/// The matching logs of one log entry, as `{"type": "log", "log": Log}` frames.
fn frames(event: &RecordedEvent, filter: &LogFilter) -> Vec<String> {
    if event.event_type != LOGS_CREATED {
        return Vec::new();
    }
    let Ok(batch) = serde_json::from_value::<LogsCreated>(event.payload.clone()) else { return Vec::new() };
    let created = fmt_ts(batch.created);
    batch
        .logs
        .iter()
        .filter(|l| {
            filter.matches(&LiveLog {
                name: &l.name,
                level: l.level,
                message: &l.message,
                timestamp: l.timestamp,
                flow_run_id: l.flow_run_id,
                task_run_id: l.task_run_id,
            })
        })
        .map(|l| {
            json!({"type": "log", "log": {
                "id": l.id, "created": created, "updated": created, "name": l.name, "level": l.level,
                "message": l.message, "timestamp": fmt_ts(l.timestamp), "flow_run_id": l.flow_run_id, "task_run_id": l.task_run_id,
            }})
            .to_string()
        })
        .collect()
}

async fn serve(mut socket: WebSocket, state: AppState, prefect_protocol: bool) -> Result<(), &'static str> {
    if prefect_protocol {
        handshake(&mut socket).await?;
    }
    let filter = read_filter(&mut socket).await?;
    let db = &state.db;
    let mut cursor = {
        let mut conn = db.reader().acquire().await.map_err(|_| "no connection")?;
        tail_cursor(&mut conn, db.dialect).await.map_err(|_| "cannot read the log")?
    };
    loop {
        let appended = db.appended.notified();
        tokio::pin!(appended);
        appended.as_mut().enable();
        let batch = {
            let mut conn = db.reader().acquire().await.map_err(|_| "no connection")?;
            read_after(&mut conn, db.dialect, cursor, BATCH).await.map_err(|_| "cannot read the log")?
        };
        if let Some(last) = batch.last() {
            cursor = Cursor { tx_id: last.tx_id, position: last.position };
            for frame in batch.iter().flat_map(|e| frames(e, &filter)) {
                socket.send(Message::Text(frame.into())).await.map_err(|_| "client gone")?;
            }
            continue;
        }
        if !idle(&mut socket, appended.as_mut(), POLL).await {
            return Ok(());
        }
    }
}
