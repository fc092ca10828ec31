//! Flow-run inputs (Prefect's `flow_run_input`): key/value texts attached
//! to a run, which `pause_flow_run(wait_for_input=...)`, `send_input` and
//! `receive_input` exchange. Each is a document on its own stream; a key is
//! unique per run, enforced under a lock on the pair.

use axum::http::StatusCode;
use chrono::Utc;
use serde_json::{json, Map, Value};
use sqlx::AnyConnection;
use uuid::Uuid;

use super::documents::{self as doc, find};
use super::write;
use crate::api::error::{ApiResult, AppError};
use crate::db::{Bind, Db, Dialect};
use crate::eventlog::{lock_key, lock_stream, StreamRef, StreamType};
use crate::server_model::documents::FLOW_RUN_INPUT;
use crate::server_model::flow_runs::read_flow_run_row;

/// A new input.
#[derive(Debug, Clone)]
pub struct NewInput {
    pub key: String,
    pub value: String,
    pub sender: Option<String>,
}

/// The input `key` of run `flow_run_id`, as its row's JSON.
pub async fn input_by_key(conn: &mut AnyConnection, dialect: Dialect, flow_run_id: Uuid, key: &str) -> ApiResult<Option<Map<String, Value>>> {
    find(conn, dialect, &FLOW_RUN_INPUT, "t.flow_run_id = $1 AND t.key = $2", &[Bind::Text(flow_run_id.to_string()), Bind::Text(key.to_owned())]).await
}

fn not_found() -> AppError {
    AppError::Detail(StatusCode::NOT_FOUND, "Flow run input not found".into())
}

/// Creates an input inside the caller's transaction: 404 without the run,
/// 409 when the run already has the key (Prefect's messages).
pub async fn create_in_tx(conn: &mut AnyConnection, dialect: Dialect, flow_run_id: Uuid, input: NewInput) -> ApiResult<Uuid> {
    lock_key(conn, dialect, &format!("flow-run-input:{flow_run_id}:{}", input.key)).await?;
    if read_flow_run_row(conn, dialect, &flow_run_id.to_string()).await?.is_none() {
        return Err(AppError::Detail(StatusCode::NOT_FOUND, "Flow run not found".into()));
    }
    if input_by_key(conn, dialect, flow_run_id, &input.key).await?.is_some() {
        return Err(AppError::Detail(StatusCode::CONFLICT, "A flow run input with this key already exists.".into()));
    }
    let id = Uuid::now_v7();
    let record = Map::from_iter([
        ("flow_run_id".into(), json!(flow_run_id)),
        ("key".into(), json!(input.key)),
        ("value".into(), json!(input.value)),
        ("sender".into(), json!(input.sender)),
    ]);
    doc::create(conn, dialect, StreamType::FlowRunInput, id, record, crate::time::micros(Utc::now()), None).await?;
    Ok(id)
}

/// `POST /flow_runs/{id}/input`.
pub async fn create_input(db: &Db, flow_run_id: Uuid, input: NewInput) -> ApiResult<Uuid> {
    // Prefect validates the key with the rule's default field name.
    super::names::validate_dashed(&["body", "key"], "value", &input.key)?;
    let dialect = db.dialect;
    write(db, move |conn| {
        let input = input.clone();
        Box::pin(async move { create_in_tx(conn, dialect, flow_run_id, input).await })
    })
    .await
}

/// `DELETE /flow_runs/{id}/input/{key}` (404 when there is none).
pub async fn delete_input(db: &Db, flow_run_id: Uuid, key: String) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let key = key.clone();
        Box::pin(async move {
            lock_key(conn, dialect, &format!("flow-run-input:{flow_run_id}:{key}")).await?;
            let current = input_by_key(conn, dialect, flow_run_id, &key).await?.ok_or_else(not_found)?;
            let id = super::work_pools::id_of(&current)?;
            lock_stream(conn, dialect, &StreamRef::new(StreamType::FlowRunInput, id)).await?;
            doc::delete(conn, dialect, StreamType::FlowRunInput, id, crate::time::micros(Utc::now()), None).await
        })
    })
    .await
}
