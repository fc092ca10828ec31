//! Client events: the `/events/in` WebSocket and `POST /events`.
//!
//! `/events/in` speaks Prefect's protocol: subprotocol `prefect`, an `auth`
//! message answered with `auth_success`, then one Event JSON per text frame
//! with no acknowledgements (the client resends unconfirmed events after a
//! reconnect, so duplicates are expected and ignored). Frames that are
//! already waiting are appended together in one transaction.

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;
use futures_util::FutureExt;
use serde_json::Value;

use super::error::ApiResult;
use super::json::AppJson;
use super::AppState;
use crate::commands::client_events::{ingest, ClientEvent};

/// Close code for a protocol or policy violation.
const POLICY_VIOLATION: u16 = 1008;
/// The most frames appended in one transaction.
const MAX_BATCH: usize = 500;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/events/in", any(events_in))
        .route("/events/out", any(super::events_out::events_out))
        .route("/events", post(create_events))
        .route("/events/filter", post(super::events_feed::read_events))
        .route("/events/filter/next", get(super::events_feed::read_next_page))
        .route("/events/count-by/{countable}", post(super::events_feed::count_by))
}

async fn create_events(State(state): State<AppState>, AppJson(events): AppJson<Vec<ClientEvent>>) -> ApiResult<StatusCode> {
    for ev in &events {
        ev.validate().map_err(|msg| super::error::AppError::invalid(&["body"], msg, Value::Null))?;
    }
    ingest(&state.db, &events).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn events_in(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    let max = state.settings.max_event_bytes;
    ws.protocols(["prefect"])
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            let negotiated = socket.protocol().is_some_and(|p| p == "prefect");
            if let Err(reason) = serve_events_in(socket, state, negotiated).await {
                tracing::debug!(reason, "events/in closed");
            }
        })
}

async fn close(socket: &mut WebSocket, reason: &str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame { code: POLICY_VIOLATION, reason: reason.to_owned().into() })))
        .await;
}

/// Waits for the `auth` message (no auth is configured on this server, so
/// any token is accepted).
pub(super) async fn handshake(socket: &mut WebSocket) -> Result<(), &'static str> {
    loop {
        match socket.recv().await {
            Some(Ok(Message::Text(text))) => {
                let msg: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if msg.get("type").and_then(Value::as_str) != Some("auth") {
                    close(socket, "Expected 'auth' message").await;
                    return Err("no auth message");
                }
                socket
                    .send(Message::Text(r#"{"type":"auth_success"}"#.into()))
                    .await
                    .map_err(|_| "send failed")?;
                return Ok(());
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return Err("closed before auth"),
        }
    }
}

/// Waits until `appended` fires (a write in this process), `poll` passes
/// (for other processes' writes) or the client closes the socket; `false`
/// once it is closed. For sockets that follow the log (`/logs/out`, task
/// run subscriptions) between reads.
pub(super) async fn idle(socket: &mut WebSocket, appended: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>, poll: std::time::Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(poll) => true,
        _ = appended => true,
        msg = socket.recv() => !matches!(msg, Some(Ok(Message::Close(_))) | None | Some(Err(_))),
    }
}

/// The close code for a subscriber that breaks the protocol.
pub(super) const PROTOCOL_ERROR: u16 = 1002;

/// Closes a subscriber's socket with 1002 and `reason`.
pub(super) async fn close_protocol_error(socket: &mut WebSocket, reason: String) {
    let _ = socket.send(Message::Close(Some(CloseFrame { code: PROTOCOL_ERROR, reason: reason.into() }))).await;
}

/// Reads a subscriber's first message after `auth`, which must be
/// `{"type": "filter", ...}` (`/events/out`, `/logs/out`); anything else
/// closes the socket with Prefect's reason.
pub(super) async fn filter_message(socket: &mut WebSocket) -> Result<Value, &'static str> {
    let text = loop {
        match socket.recv().await {
            Some(Ok(Message::Text(t))) => break t,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return Err("closed before filter"),
        }
    };
    let msg: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if msg.get("type").and_then(Value::as_str) != Some("filter") {
        close_protocol_error(socket, "Expected 'filter' message".into()).await;
        return Err("no filter message");
    }
    Ok(msg)
}

fn parse_event(text: &str) -> Result<ClientEvent, String> {
    let ev: ClientEvent = serde_json::from_str(text).map_err(|e| e.to_string())?;
    ev.validate()?;
    Ok(ev)
}

async fn serve_events_in(mut socket: WebSocket, state: AppState, prefect_protocol: bool) -> Result<(), &'static str> {
    if prefect_protocol {
        handshake(&mut socket).await?;
    }
    loop {
        let first = match socket.recv().await {
            Some(Ok(msg)) => msg,
            _ => return Ok(()),
        };
        let mut frames = vec![first];
        // Take whatever else has already arrived, without waiting.
        while frames.len() < MAX_BATCH {
            match socket.recv().now_or_never() {
                Some(Some(Ok(msg))) => frames.push(msg),
                _ => break,
            }
        }
        let mut batch = Vec::with_capacity(frames.len());
        let mut violation = None;
        let mut closed = false;
        for frame in frames {
            match frame {
                Message::Text(text) => match parse_event(&text) {
                    Ok(ev) => batch.push(ev),
                    Err(e) => {
                        violation = Some(e);
                        break;
                    }
                },
                Message::Binary(_) => {
                    violation = Some("binary frames are not events".into());
                    break;
                }
                Message::Close(_) => {
                    closed = true;
                    break;
                }
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
        // Events accepted before a bad frame are kept.
        if let Err(e) = state.ingest.ingest(batch).await {
            tracing::error!(error = %e, "failed to append client events");
            let _ = socket
                .send(Message::Close(Some(CloseFrame { code: 1011, reason: "internal error".into() })))
                .await;
            return Err("append failed");
        }
        if let Some(reason) = violation {
            tracing::debug!(reason, "invalid frame on events/in");
            close(&mut socket, "Invalid event").await;
            return Err("invalid event");
        }
        if closed {
            return Ok(());
        }
    }
}
