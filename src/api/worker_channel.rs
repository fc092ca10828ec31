//! `/work_pools/{name}/workers/connect`: the worker channel's socket.
//!
//! Setup: the `prefect` subprotocol is required (without it the upgrade is
//! refused with 403, as Starlette refuses a socket closed before accept),
//! then `auth` / `auth_success`, then the worker's `worker.hello.v1`
//! answered by `worker.ready.v1` with the first pool snapshot. After that the
//! worker sends heartbeats, and the server pushes a numbered snapshot when
//! the pool changes (coalescing bursts) or when a heartbeat finds the pool
//! moved since the last one. Every failure closes with Prefect's reason and
//! code (see `worker_channel::decide::CloseReason`).

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::AppState;
use crate::worker_channel::decide::{pool_change, CloseReason, PoolChange};
use crate::worker_channel::frames::{self, parse_worker_frame, FrameError, WorkerFrame};
use crate::worker_channel::session::{self, PoolView};

/// How long a client has for `auth` and then `worker.hello.v1`.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Changes within this window go out as one snapshot (Prefect's 50 ms).
const COALESCE: Duration = Duration::from_millis(50);
/// The largest frame read: a hello carries the worker's base job template.
const MAX_FRAME_BYTES: usize = 1 << 20;

pub async fn connect(State(state): State<AppState>, Path(pool_name): Path<String>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    let offers_prefect = headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "prefect");
    if !offers_prefect {
        return StatusCode::FORBIDDEN.into_response();
    }
    ws.protocols(["prefect"]).max_message_size(MAX_FRAME_BYTES).max_frame_size(MAX_FRAME_BYTES).on_upgrade(move |socket| async move {
        match serve(socket, &state, &pool_name).await {
            Ok(()) => tracing::debug!(pool = %pool_name, "worker channel closed by the worker"),
            Err((reason, detail)) => tracing::debug!(pool = %pool_name, reason = reason.as_str(), detail, "worker channel closed"),
        }
    })
}

type Closed = (CloseReason, &'static str);

async fn close(socket: &mut WebSocket, reason: CloseReason) {
    let frame = CloseFrame { code: reason.code(), reason: reason.as_str().into() };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

async fn send(socket: &mut WebSocket, frame: &Value) -> Result<(), Closed> {
    socket.send(Message::Text(frame.to_string().into())).await.map_err(|_| (CloseReason::TransientServerError, "send_failed"))
}

/// The next text frame, skipping pings; `None` when the worker went away.
async fn next_text(socket: &mut WebSocket) -> Option<Result<String, Closed>> {
    loop {
        match socket.recv().await? {
            Ok(Message::Text(t)) => return Some(Ok(t.to_string())),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Binary(_)) => return Some(Err((CloseReason::ProtocolError, "binary_frame"))),
            Ok(Message::Close(_)) | Err(_) => return None,
        }
    }
}

/// Runs one connection; `Err` carries the reason it was closed with.
async fn serve(mut socket: WebSocket, state: &AppState, pool_name: &str) -> Result<(), Closed> {
    let setup = tokio::time::timeout(SETUP_TIMEOUT, async {
        super::events::handshake(&mut socket).await.map_err(|_| (CloseReason::AuthenticationFailed, "no_auth_message"))?;
        let text = match next_text(&mut socket).await {
            Some(text) => text?,
            None => return Ok(None),
        };
        match parse_worker_frame(&text) {
            Ok(WorkerFrame::Hello { hello, .. }) => Ok(Some(hello)),
            Ok(_) => Err((CloseReason::ProtocolError, "expected worker.hello.v1")),
            Err(FrameError::InvalidJson) => Err((CloseReason::ProtocolError, "invalid JSON during setup")),
            Err(FrameError::Malformed(_)) => Err((CloseReason::ProtocolError, "malformed hello frame")),
        }
    })
    .await
    .unwrap_or(Err((CloseReason::ProtocolError, "setup_timeout")));
    let hello = match setup {
        Ok(Some(hello)) => hello,
        Ok(None) => return Ok(()),
        Err(closed) => return closing(&mut socket, closed).await,
    };
    // Subscribe before reading the pool, so no change falls in between.
    let mut live = state.broker.subscribe();
    let ready = match session::open(&state.db, pool_name, &hello).await {
        Ok(ready) => ready,
        Err(closed) => return closing(&mut socket, closed).await,
    };
    send(&mut socket, &ready.frame).await?;
    let mut connection = Connection { pool: ready.pool, next_sequence: 2, pending: None };
    loop {
        let due = connection.pending.map(|(_, at)| at);
        let step = tokio::select! {
            text = next_text(&mut socket) => match text {
                None => return Ok(()),
                Some(Err(closed)) => Err(closed),
                Some(Ok(text)) => connection.on_frame(state, pool_name, &hello, &text, &mut socket).await,
            },
            event = live.recv() => connection.on_live(event),
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                connection.send_snapshot(state, pool_name, &mut socket).await
            }
        };
        if let Err(closed) = step {
            return closing(&mut socket, closed).await;
        }
    }
}

async fn closing(socket: &mut WebSocket, closed: Closed) -> Result<(), Closed> {
    close(socket, closed.0).await;
    Err(closed)
}

/// A connection after setup.
struct Connection {
    /// The pool as last sent.
    pool: PoolView,
    next_sequence: u64,
    /// A snapshot owed to the worker: its reason, and when to send it.
    pending: Option<(&'static str, Instant)>,
}

impl Connection {
    fn owe_snapshot(&mut self, reason: &'static str) {
        if self.pending.is_none() {
            self.pending = Some((reason, Instant::now() + COALESCE));
        }
    }

    async fn on_frame(&mut self, state: &AppState, pool_name: &str, hello: &frames::Hello, text: &str, socket: &mut WebSocket) -> Result<(), Closed> {
        match parse_worker_frame(text) {
            Ok(WorkerFrame::Heartbeat { heartbeat, .. }) => {
                if heartbeat.consumer_id != hello.consumer_id || heartbeat.worker_name != hello.worker_name {
                    return Err((CloseReason::ProtocolError, "heartbeat from another consumer"));
                }
                let updated = session::heartbeat(&state.db, pool_name, &heartbeat.worker_name, heartbeat.heartbeat_interval_seconds).await?;
                if updated != self.pool.updated {
                    self.owe_snapshot("heartbeat_reconciliation");
                }
                Ok(())
            }
            Ok(WorkerFrame::Cleanup { id, operation, payload }) => send(socket, &frames::cleanup_refused(id, operation, payload.message_id)).await,
            Ok(WorkerFrame::Hello { .. }) | Err(_) => Err((CloseReason::ProtocolError, "unexpected or malformed frame")),
        }
    }

    fn on_live(&mut self, event: Result<crate::broker::LiveEvent, RecvError>) -> Result<(), Closed> {
        match event {
            Ok(live) => match pool_change(&live.event, self.pool.id, self.pool.paused) {
                Some(PoolChange::Deleted) => Err((CloseReason::AuthorizationFailed, "work_pool_deleted")),
                Some(PoolChange::Snapshot(reason)) => {
                    self.owe_snapshot(reason);
                    Ok(())
                }
                None => Ok(()),
            },
            // Events were missed: the pool may have changed, so resend it.
            Err(RecvError::Lagged(_)) => {
                self.owe_snapshot("work_pool_updated");
                Ok(())
            }
            Err(RecvError::Closed) => Err((CloseReason::TransientServerError, "broker_closed")),
        }
    }

    async fn send_snapshot(&mut self, state: &AppState, pool_name: &str, socket: &mut WebSocket) -> Result<(), Closed> {
        let Some((reason, _)) = self.pending.take() else { return Ok(()) };
        let pool = session::pool_view(&state.db, pool_name).await?.ok_or((CloseReason::AuthorizationFailed, "work_pool_deleted"))?;
        let payload = frames::snapshot_payload(self.next_sequence, reason, pool.json.clone());
        send(socket, &frames::server_frame("work_pool.snapshot.v1", payload)).await?;
        self.next_sequence += 1;
        self.pool = pool;
        Ok(())
    }
}
