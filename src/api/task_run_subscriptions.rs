//! `/task_runs/subscriptions/scheduled`: task workers (`prefect task serve`,
//! `TaskWorker`) subscribe here to the deferred task runs of their task
//! keys (`task.delay()`, `task.apply_async()`), as in Prefect: after
//! `auth`, the worker sends `{"type": "subscribe", "keys": [...],
//! "client_id": "..."}`, then gets each run as `TaskRun` JSON and answers
//! `{"type": "ack"}` (or `{"type": "quit"}`).
//!
//! Runs are claimed through the event log
//! ([`crate::commands::task_run_delivery`]), so each is delivered once
//! whichever API process its worker is connected to; a worker that leaves
//! before its ack puts the run back for another.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use super::events::{handshake, idle};
use super::AppState;
use crate::commands::task_run_delivery::{acknowledge, claim_next, release};

/// How often waiting runs are looked for when nothing was appended here.
const POLL: Duration = Duration::from_millis(250);
/// Prefect's close code for a subscriber that breaks the protocol.
const PROTOCOL_VIOLATION: u16 = 4001;

pub fn router() -> Router<AppState> {
    Router::new().route("/task_runs/subscriptions/scheduled", get(subscribe))
}

async fn subscribe(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.protocols(["prefect"]).max_message_size(1 << 20).on_upgrade(move |socket| async move {
        let negotiated = socket.protocol().is_some_and(|p| p == "prefect");
        if let Err(reason) = serve(socket, state, negotiated).await {
            tracing::debug!(reason, "task run subscription closed");
        }
    })
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.to_owned().into() }))).await;
}

/// The next text message as JSON (`None` once the socket is closed).
async fn next_json(socket: &mut WebSocket) -> Option<Value> {
    loop {
        match socket.recv().await? {
            Ok(Message::Text(text)) => return Some(serde_json::from_str(&text).unwrap_or(Value::Null)),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            _ => return None,
        }
    }
}

/// The subscription: `(task keys, client id)`, or the close Prefect sends.
async fn read_subscription(socket: &mut WebSocket) -> Result<(Vec<String>, String), &'static str> {
    let msg = next_json(socket).await.ok_or("closed before subscribing")?;
    if msg.get("type").and_then(Value::as_str) != Some("subscribe") {
        close(socket, PROTOCOL_VIOLATION, "Protocol violation: expected 'subscribe' message").await;
        return Err("no subscribe message");
    }
    let keys: Vec<String> = msg
        .get("keys")
        .and_then(Value::as_array)
        .map(|keys| keys.iter().filter_map(|k| k.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    if keys.is_empty() {
        close(socket, PROTOCOL_VIOLATION, "Protocol violation: expected 'keys' in subscribe message").await;
        return Err("no keys");
    }
    let Some(client_id) = msg.get("client_id").and_then(Value::as_str).filter(|c| !c.is_empty()) else {
        close(socket, PROTOCOL_VIOLATION, "Protocol violation: expected 'client_id' in subscribe message").await;
        return Err("no client id");
    };
    Ok((keys, client_id.to_owned()))
}

async fn serve(mut socket: WebSocket, state: AppState, prefect_protocol: bool) -> Result<(), &'static str> {
    if prefect_protocol {
        handshake(&mut socket).await?;
    }
    let (keys, client_id) = read_subscription(&mut socket).await?;
    tracing::info!(client_id, ?keys, "task worker subscribed");
    let result = deliver(&mut socket, &state, &keys, &client_id).await;
    state.task_workers.forget(&client_id);
    result
}

/// Hands the worker each run claimed for it, one at a time, each after the
/// previous one's ack.
async fn deliver(socket: &mut WebSocket, state: &AppState, keys: &[String], client_id: &str) -> Result<(), &'static str> {
    let db = &state.db;
    loop {
        state.task_workers.observe(client_id, keys);
        let appended = db.appended.notified();
        tokio::pin!(appended);
        appended.as_mut().enable();
        let claimed = claim_next(db, keys, client_id).await.map_err(|_| "cannot claim task runs")?;
        let Some(delivery) = claimed else {
            if !idle(socket, appended.as_mut(), POLL).await {
                return Ok(());
            }
            continue;
        };
        let sent = socket.send(Message::Text(delivery.task_run.to_string().into())).await;
        let answer = match sent {
            Ok(()) => next_json(socket).await,
            Err(_) => None,
        };
        match answer.as_ref().and_then(|a| a.get("type")).and_then(Value::as_str) {
            Some("ack") => {
                if let Err(e) = acknowledge(db, delivery.id).await {
                    tracing::warn!(error = %e, delivery = %delivery.id, "could not record a task run's ack");
                }
                let key = delivery.task_run.get("task_key").and_then(Value::as_str).unwrap_or_default().to_owned();
                state.task_workers.observe(client_id, &[key]);
            }
            Some("quit") => {
                close(socket, 1000, "").await;
                return Ok(());
            }
            other => {
                // Gone or confused before acknowledging: the run goes back.
                if let Err(e) = release(db, delivery.id).await {
                    tracing::warn!(error = %e, delivery = %delivery.id, "could not put an unacknowledged task run back");
                }
                if answer.is_some() {
                    close(socket, PROTOCOL_VIOLATION, "Protocol violation: expected 'ack' message").await;
                }
                tracing::debug!(?other, "task run not acknowledged; released");
                return Ok(());
            }
        }
    }
}
