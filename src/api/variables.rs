//! `/variables` routes (Prefect's `variables` router): workspace variables,
//! documents on their own event streams (`commands::variables`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{ApiResult, AppError};
use super::json::{path_id, AppJson};
use super::work_pools::{count, doc_where};
use super::AppState;
use crate::commands::variables::{self as cmd, VariableCreate, VariableRef, VariableUpdate};
use crate::db::Bind;
use crate::server_model::documents::VARIABLE;
use crate::server_model::filters::documents::VARIABLE_FILTER;
use crate::server_model::filters::page;
use crate::server_model::sorts::VariableSort;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/variables/", post(create))
        .route("/variables/filter", post(filter))
        .route("/variables/count", post(count_variables))
        .route("/variables/name/{name}", get(read_by_name).patch(update_by_name).delete(delete_by_name))
        .route("/variables/{id}", get(read).patch(update).delete(delete))
}

fn not_found() -> AppError {
    AppError::Detail(StatusCode::NOT_FOUND, "Variable not found.".into())
}

/// The API shape: `id`, `created`, `updated`, `name`, `value`, `tags`.
fn variable_json(doc: Map<String, Value>) -> Value {
    Value::Object(doc)
}

async fn create(State(state): State<AppState>, AppJson(body): AppJson<VariableCreate>) -> ApiResult<Response> {
    let id = cmd::create_variable(&state.db, body).await?;
    let mut conn = state.db.reader().acquire().await?;
    let doc = cmd::variable_by_id(&mut conn, state.db.dialect, id).await?.ok_or_else(not_found)?;
    Ok((StatusCode::CREATED, Json(variable_json(doc))).into_response())
}

async fn read(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = path_id(&id)?;
    let mut conn = state.db.reader().acquire().await?;
    let doc = cmd::variable_by_id(&mut conn, state.db.dialect, id).await?.ok_or_else(not_found)?;
    Ok(Json(variable_json(doc)))
}

async fn read_by_name(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let mut conn = state.db.reader().acquire().await?;
    let doc = cmd::variable_by_name(&mut conn, state.db.dialect, &name).await?.ok_or_else(not_found)?;
    Ok(Json(variable_json(doc)))
}

async fn update(State(state): State<AppState>, Path(id): Path<String>, AppJson(body): AppJson<VariableUpdate>) -> ApiResult<StatusCode> {
    cmd::update_variable(&state.db, VariableRef::Id(path_id(&id)?), body).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn update_by_name(State(state): State<AppState>, Path(name): Path<String>, AppJson(body): AppJson<VariableUpdate>) -> ApiResult<StatusCode> {
    cmd::update_variable(&state.db, VariableRef::Name(name), body).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    cmd::delete_variable(&state.db, VariableRef::Id(path_id(&id)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_by_name(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    cmd::delete_variable(&state.db, VariableRef::Name(name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `/variables/filter` and `/variables/count` bodies (other keys are
/// ignored, as FastAPI does for body parameters).
#[derive(Debug, Default, Deserialize)]
struct FilterBody {
    #[serde(default)]
    variables: Option<Value>,
    #[serde(default)]
    sort: Option<Value>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

fn filter_where(state: &AppState, variables: Option<&Value>) -> ApiResult<(String, Vec<Bind>)> {
    doc_where(state.db.dialect, variables, VARIABLE_FILTER, &["body", "variables"], "t.workspace_id = $1", vec![Bind::Text(super::workspace())])
}

async fn filter(State(state): State<AppState>, AppJson(body): AppJson<Option<FilterBody>>) -> ApiResult<Json<Vec<Value>>> {
    let body = body.unwrap_or_default();
    let (limit, offset) = page(body.limit, body.offset).map_err(super::filter_error)?;
    let (cond, mut binds) = filter_where(&state, body.variables.as_ref())?;
    binds.push(Bind::Int(limit));
    binds.push(Bind::Int(offset));
    let order = parse_sort(body.sort)?.order_by("t");
    let sql = format!(
        "SELECT {} FROM variable t WHERE {cond} ORDER BY {order} LIMIT ${} OFFSET ${}",
        VARIABLE.select_list("t"),
        binds.len() - 1,
        binds.len()
    );
    let sql = state.db.q(&sql);
    let rows = crate::db::bind_all(sqlx::query(&sql), &binds).fetch_all(state.db.reader()).await?;
    Ok(Json(rows.iter().map(|r| variable_json(VARIABLE.row_json(r))).collect()))
}

/// `VariableSort` (default `NAME_ASC`); anything else is pydantic's enum error.
fn parse_sort(sort: Option<Value>) -> ApiResult<VariableSort> {
    match &sort {
        None | Some(Value::Null) => Ok(VariableSort::default()),
        Some(Value::String(s)) if VariableSort::parse(s).is_ok() => Ok(VariableSort::parse(s).unwrap_or_default()),
        Some(other) => {
            let expected = VariableSort::ALL.iter().map(|v| format!("'{}'", v.as_str())).collect::<Vec<_>>();
            let (last, rest) = expected.split_last().expect("VariableSort has options");
            let expected = format!("{} or {last}", rest.join(", "));
            Err(AppError::Validation {
                detail: vec![serde_json::json!({
                    "type": "enum", "loc": ["body", "sort"], "msg": format!("Input should be {expected}"),
                    "input": other, "ctx": {"expected": expected},
                })],
                body: Value::Null,
            })
        }
    }
}

async fn count_variables(State(state): State<AppState>, AppJson(body): AppJson<Option<FilterBody>>) -> ApiResult<Json<i64>> {
    let body = body.unwrap_or_default();
    let (cond, binds) = filter_where(&state, body.variables.as_ref())?;
    Ok(Json(count(&state, "variable", &cond, &binds).await?))
}
