//! `/events/out`: a filtered live stream of events, after a backfill of the
//! recent matching ones, as Prefect serves it. The live subscription starts
//! before the backfill query, and live events already sent by the backfill
//! are skipped, so nothing is lost or repeated at the seam. (The relay only
//! publishes events the projector has stored, so an event is either in the
//! backfill or arrives live.)

use std::collections::HashSet;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use chrono::{Duration, Utc};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::events::{close_protocol_error, filter_message, handshake};
use super::AppState;
use crate::events_model::filter::{select_events, EventFilter};
use crate::events_model::{event_row::event_json, matcher};
use crate::time::{fmt_ts, parse_ts};

/// Prefect's `PREFECT_EVENTS_MAXIMUM_WEBSOCKET_BACKFILL`.
const MAX_BACKFILL: Duration = Duration::minutes(15);
/// Prefect's `PREFECT_EVENTS_WEBSOCKET_BACKFILL_PAGE_SIZE`.
const BACKFILL_PAGE: i64 = 250;

pub async fn events_out(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.protocols(["prefect"]).max_message_size(1 << 20).on_upgrade(move |socket| async move {
        let negotiated = socket.protocol().is_some_and(|p| p == "prefect");
        if let Err(reason) = serve(socket, state, negotiated).await {
            tracing::debug!(reason, "events/out closed");
        }
    })
}

async fn close(socket: &mut WebSocket, code: u16, reason: String) {
    let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
}

/// Reads the `filter` message and normalises the filter as Prefect does:
/// `since` no earlier than 15 minutes ago, ascending order.
async fn read_filter(socket: &mut WebSocket) -> Result<(Value, bool), &'static str> {
    let msg = filter_message(socket).await?;
    let backfill = msg.get("backfill").and_then(Value::as_bool).unwrap_or(true);
    let mut filter = msg.get("filter").cloned().unwrap_or(json!({}));
    if filter.is_null() {
        filter = json!({});
    }
    if let Err(e) = serde_json::from_value::<EventFilter>(filter.clone()) {
        close_protocol_error(socket, format!("Invalid filter: {e}")).await;
        return Err("invalid filter");
    }
    let now = Utc::now();
    let floor = now - MAX_BACKFILL;
    let occurred = filter.get("occurred").cloned().unwrap_or(json!({}));
    let since = occurred.get("since").and_then(Value::as_str).and_then(parse_ts).map_or(floor, |s| s.max(floor));
    let mut occurred = if occurred.is_object() { occurred } else { json!({}) };
    occurred["since"] = json!(fmt_ts(since));
    if occurred.get("until").is_none_or(Value::is_null) {
        occurred["until"] = json!(fmt_ts(now + Duration::days(365)));
    }
    filter["occurred"] = occurred;
    filter["order"] = json!("ASC");
    Ok((filter, backfill))
}

async fn send_event(socket: &mut WebSocket, event: &Value) -> Result<(), &'static str> {
    let frame = json!({"type": "event", "event": event}).to_string();
    socket.send(Message::Text(frame.into())).await.map_err(|_| "send failed")
}

async fn serve(mut socket: WebSocket, state: AppState, prefect_protocol: bool) -> Result<(), &'static str> {
    if prefect_protocol {
        handshake(&mut socket).await?;
    }
    let (filter_json, wants_backfill) = read_filter(&mut socket).await?;
    // Subscribe first, then backfill.
    let mut live = state.broker.subscribe();
    let mut sent = HashSet::new();
    if wants_backfill {
        let filter: EventFilter = serde_json::from_value(filter_json.clone()).map_err(|_| "filter")?;
        let mut offset = 0;
        loop {
            let sql = select_events(&filter, state.db.dialect, &super::workspace(), Utc::now(), BACKFILL_PAGE, offset)
                .map_err(|_| "backfill query")?;
            let rows = super::fetch(&state.db, &sql).await.map_err(|_| "backfill query")?;
            for row in &rows {
                let event = event_json(row);
                if let Some(id) = event.get("id").and_then(Value::as_str) {
                    sent.insert(id.to_owned());
                }
                send_event(&mut socket, &event).await?;
            }
            if (rows.len() as i64) < BACKFILL_PAGE {
                break;
            }
            offset += BACKFILL_PAGE;
        }
    }
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(()),
                Some(Ok(_)) => {}
            },
            received = live.recv() => match received {
                Ok(ev) => {
                    if sent.remove(&ev.event_id.to_string()) {
                        continue;
                    }
                    if matcher::matches(&filter_json, &ev.event) {
                        send_event(&mut socket, &ev.event).await?;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    // Too slow a reader: rather than skip events silently, end
                    // the stream; the client reconnects and backfills.
                    tracing::warn!(skipped = n, "events/out subscriber lagged; closing");
                    close(&mut socket, 1011, "subscriber fell behind".into()).await;
                    return Err("lagged");
                }
                Err(RecvError::Closed) => return Ok(()),
            },
        }
    }
}
