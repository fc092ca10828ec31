//! `/automations` routes (Prefect's `automations` router) and
//! `/templates/validate` (its `templates` router). Commands live in
//! `commands::automations`; the triggers service acts on what is stored.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::error::{ApiResult, AppError};
use super::json::{parse_body, path_id};
use super::AppState;
use crate::automations::schema::AutomationSpec;
use crate::commands::automations as cmd;
use crate::time::parse_ts;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/automations/", post(create))
        .route("/automations/filter", post(filter))
        .route("/automations/count", post(count))
        .route("/automations/related-to/{resource_id}", get(related_to))
        .route("/automations/owned-by/{resource_id}", delete(delete_owned))
        .route("/automations/templates/validate", post(validate_template))
        .route("/templates/validate", post(validate_template))
        .route("/automations/{id}", get(read).put(replace).patch(patch).delete(remove))
}

/// Checks that each `run-deployment` action's job variables fit its
/// deployment's work pool (Prefect's `validate_job_variables_for_run_deployment_action`):
/// 422 "Error creating automation: ..." when they do not.
async fn check_job_variables(state: &AppState, spec: &AutomationSpec, skip_empty: bool) -> ApiResult<()> {
    for action in &spec.actions {
        let crate::automations::schema::Action::RunDeployment { deployment_id: Some(id), job_variables: Some(vars), .. } = action else { continue };
        if skip_empty && vars.is_empty() {
            continue;
        }
        let mut conn = state.db.reader().acquire().await?;
        let dialect = state.db.dialect;
        let Some(deployment) = crate::commands::deployments::deployment_by_id(&mut conn, dialect, *id).await? else { continue };
        crate::commands::deployments::check_run_job_variables(&mut conn, dialect, &deployment, vars, "creating automation").await?;
    }
    Ok(())
}

async fn read_json(state: &AppState, id: Uuid) -> ApiResult<Value> {
    let mut conn = state.db.reader().acquire().await?;
    cmd::by_id(&mut conn, state.db.dialect, id).await?.map(cmd::response).ok_or_else(cmd::not_found)
}

async fn create(State(state): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let body: Value = parse_body(&body)?;
    let spec = AutomationSpec::parse(&body, true)?;
    check_job_variables(&state, &spec, true).await?;
    let id = cmd::create(&state.db, spec).await?;
    Ok((StatusCode::CREATED, Json(read_json(&state, id).await?)).into_response())
}

async fn read(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(read_json(&state, path_id(&id)?).await?))
}

async fn replace(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let body: Value = parse_body(&body)?;
    let spec = AutomationSpec::parse(&body, false)?;
    check_job_variables(&state, &spec, false).await?;
    cmd::replace(&state.db, id, spec).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `AutomationPartialUpdate`: only `enabled` (default true), nothing else.
async fn patch(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let body: Value = parse_body(&body)?;
    let Some(o) = body.as_object() else {
        return Err(AppError::invalid(&["body"], "Input should be a valid dictionary or object to extract fields from", body));
    };
    if let Some(key) = o.keys().find(|k| *k != "enabled") {
        return Err(AppError::invalid(&["body", key], "Extra inputs are not permitted", o[key].clone()));
    }
    let enabled = crate::automations::schema::enabled_field(o)?;
    cmd::set_enabled(&state.db, id, enabled).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    cmd::delete(&state.db, path_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_owned(State(state): State<AppState>, Path(resource_id): Path<String>) -> ApiResult<StatusCode> {
    cmd::delete_owned_by(&state.db, resource_id).await?;
    Ok(StatusCode::ACCEPTED)
}

async fn all(state: &AppState) -> ApiResult<Vec<Map<String, Value>>> {
    Ok(cmd::all(&state.db).await?)
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
}

/// Prefect's `AutomationFilter`: `id.any_`, `name.any_`, `created.before_`,
/// `tags.{all_,any_,is_null_}`, combined by `operator` (`and_` or `or_`).
fn filter_matches(filter: &Value, a: &Map<String, Value>) -> bool {
    let mut checks: Vec<bool> = vec![];
    if let Some(ids) = strings(filter.pointer("/id/any_")) {
        let id = a.get("id").and_then(Value::as_str).unwrap_or_default();
        checks.push(ids.iter().any(|i| Uuid::parse_str(i).map(|u| u.to_string()).as_deref() == Ok(id)));
    }
    if let Some(names) = strings(filter.pointer("/name/any_")) {
        checks.push(names.iter().any(|n| Some(n.as_str()) == a.get("name").and_then(Value::as_str)));
    }
    if let Some(before) = filter.pointer("/created/before_").and_then(Value::as_str).and_then(parse_ts) {
        let created = a.get("created").and_then(Value::as_str).and_then(parse_ts);
        checks.push(created.is_some_and(|c| c <= before));
    }
    let tags = strings(a.get("tags")).unwrap_or_default();
    if let Some(all) = strings(filter.pointer("/tags/all_")) {
        checks.push(all.iter().all(|t| tags.contains(t)));
    }
    if let Some(any) = strings(filter.pointer("/tags/any_")) {
        checks.push(any.iter().any(|t| tags.contains(t)));
    }
    if let Some(is_null) = filter.pointer("/tags/is_null_").and_then(Value::as_bool) {
        checks.push(tags.is_empty() == is_null);
    }
    if checks.is_empty() {
        return true;
    }
    match filter.get("operator").and_then(Value::as_str) {
        Some("or_") => checks.iter().any(|c| *c),
        _ => checks.iter().all(|c| *c),
    }
}

fn filtered(rows: Vec<Map<String, Value>>, filter: Option<&Value>) -> Vec<Map<String, Value>> {
    match filter {
        Some(f) if f.is_object() => rows.into_iter().filter(|a| filter_matches(f, a)).collect(),
        _ => rows,
    }
}

async fn filter(State(state): State<AppState>, body: Bytes) -> ApiResult<Json<Vec<Value>>> {
    let (limit, offset) = super::body::limit_offset(&body, state.settings.default_limit)?;
    let parsed: Value = if body.is_empty() { json!({}) } else { parse_body(&body)? };
    let sort = match parsed.get("sort") {
        None | Some(Value::Null) => "NAME_ASC",
        Some(Value::String(s)) if ["CREATED_DESC", "UPDATED_DESC", "NAME_ASC", "NAME_DESC"].contains(&s.as_str()) => s.as_str(),
        Some(other) => return Err(AppError::invalid(&["body", "sort"], "Input should be 'CREATED_DESC', 'UPDATED_DESC', 'NAME_ASC' or 'NAME_DESC'", other.clone())),
    };
    let mut rows = filtered(all(&state).await?, parsed.get("automations"));
    let text = |a: &Map<String, Value>, k: &str| a.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    match sort {
        "CREATED_DESC" => rows.sort_by_key(|a| std::cmp::Reverse(text(a, "created"))),
        "UPDATED_DESC" => rows.sort_by_key(|a| std::cmp::Reverse(text(a, "updated"))),
        "NAME_DESC" => rows.sort_by_key(|a| std::cmp::Reverse(text(a, "name"))),
        _ => rows.sort_by_key(|a| text(a, "name")),
    }
    Ok(Json(rows.into_iter().skip(offset as usize).take(limit as usize).map(cmd::response).collect()))
}

async fn count(State(state): State<AppState>, body: Bytes) -> ApiResult<Json<usize>> {
    let parsed: Value = if body.is_empty() { json!({}) } else { parse_body(&body)? };
    Ok(Json(filtered(all(&state).await?, parsed.get("automations")).len()))
}

/// The automations a resource owns, or whose `run-deployment` actions
/// select it (`prefect.deployment.<id>`).
async fn related_to(State(state): State<AppState>, Path(resource_id): Path<String>) -> ApiResult<Json<Vec<Value>>> {
    let deployment = resource_id.strip_prefix("prefect.deployment.").and_then(|id| Uuid::parse_str(id).ok());
    let related = all(&state).await?.into_iter().filter(|a| {
        if a.get("owner_resource").and_then(Value::as_str) == Some(resource_id.as_str()) {
            return true;
        }
        let spec = deployment.and_then(|_| AutomationSpec::from_record(a));
        spec.is_some_and(|s| s.selected_deployments().iter().any(|d| Some(*d) == deployment))
    });
    Ok(Json(related.map(cmd::response).collect()))
}

/// 204 when the Jinja template parses and keeps to Prefect's loop limits;
/// otherwise 422 with `{"error": {line, message, source}}`.
async fn validate_template(body: Bytes) -> Response {
    let template = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::String(s)) => s,
        _ if body.is_empty() => String::new(),
        Ok(other) => return AppError::invalid(&["body"], "Input should be a valid string", other).into_response(),
        Err(_) => return AppError::invalid(&["body"], "JSON decode error", Value::Null).into_response(),
    };
    match crate::orchestration::hydration::template_error(&template) {
        None => StatusCode::NO_CONTENT.into_response(),
        Some((line, message)) => (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": {"line": line, "message": message, "source": template}}))).into_response(),
    }
}
