//! `/flow_runs/{id}/input` routes (Prefect's flow-run inputs): the texts a
//! paused run waits for and `send_input` / `receive_input` exchange, stored
//! as documents (`commands::flow_run_inputs`).

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::error::{ApiResult, AppError};
use super::json::{path_id, AppJson};
use super::AppState;
use crate::commands::flow_run_inputs::{self as cmd, NewInput};
use crate::db::Bind;
use crate::server_model::documents::FLOW_RUN_INPUT;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/flow_runs/{id}/input", post(create))
        .route("/flow_runs/{id}/input/filter", post(filter))
        .route("/flow_runs/{id}/input/{key}", get(read).delete(delete))
}

/// `key`, `value` (any text; the client sends JSON) and `sender`.
#[derive(Deserialize)]
struct InputCreate {
    key: String,
    value: String,
    #[serde(default)]
    sender: Option<String>,
}

/// 201 with an empty (`null`) body, as Prefect answers.
async fn create(State(state): State<AppState>, Path(id): Path<String>, AppJson(body): AppJson<InputCreate>) -> ApiResult<Response> {
    let input = NewInput { key: body.key, value: body.value, sender: body.sender };
    cmd::create_input(&state.db, path_id(&id)?, input).await?;
    Ok((StatusCode::CREATED, Json(Value::Null)).into_response())
}

fn one() -> i64 {
    1
}

/// `prefix` (required), `limit` (1 by default), `exclude_keys`.
#[derive(Deserialize)]
struct InputFilter {
    prefix: String,
    #[serde(default = "one")]
    limit: i64,
    #[serde(default)]
    exclude_keys: Vec<String>,
}

/// The run's inputs whose key starts with `prefix` (a `LIKE 'prefix%'`, as
/// Prefect matches it), minus `exclude_keys`, oldest first.
async fn filter(State(state): State<AppState>, Path(id): Path<String>, AppJson(body): AppJson<InputFilter>) -> ApiResult<Json<Vec<Value>>> {
    let id = path_id(&id)?;
    let mut binds = vec![Bind::Text(id.to_string()), Bind::Text(format!("{}%", body.prefix))];
    let mut sql = format!("SELECT {} FROM flow_run_input t WHERE t.flow_run_id = $1 AND t.key LIKE $2", FLOW_RUN_INPUT.select_list("t"));
    if !body.exclude_keys.is_empty() {
        let first = binds.len() + 1;
        sql.push_str(&format!(" AND t.key NOT IN ({})", crate::db::sql::placeholders(first, body.exclude_keys.len())));
        binds.extend(body.exclude_keys.iter().cloned().map(Bind::Text));
    }
    sql.push_str(&format!(" ORDER BY t.created, t.id LIMIT {}", body.limit.max(0)));
    let text = state.db.q(&sql);
    let rows = crate::db::bind_all(sqlx::query(&text), &binds).fetch_all(state.db.reader()).await?;
    Ok(Json(rows.iter().map(|r| Value::Object(FLOW_RUN_INPUT.row_json(r))).collect()))
}

/// The input's value as plain text.
async fn read(State(state): State<AppState>, Path((id, key)): Path<(String, String)>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let mut conn = state.db.reader().acquire().await?;
    let input = cmd::input_by_key(&mut conn, state.db.dialect, id, &key).await?;
    let value = input.as_ref().and_then(|i| i.get("value")).and_then(Value::as_str).map(str::to_owned);
    let value = value.ok_or_else(|| AppError::Detail(StatusCode::NOT_FOUND, "Flow run input not found".into()))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], value).into_response())
}

async fn delete(State(state): State<AppState>, Path((id, key)): Path<(String, String)>) -> ApiResult<StatusCode> {
    cmd::delete_input(&state.db, path_id(&id)?, key).await?;
    Ok(StatusCode::NO_CONTENT)
}
