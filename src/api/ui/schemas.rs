//! `POST /ui/schemas/validate`: the UI checks form values (a deployment's
//! custom run, automation actions) against a JSON schema before it submits
//! them. Values are hydrated as Prefect does here (workspace variables
//! resolved, jinja templates left unrendered) and every failure comes back
//! as Prefect's error tree (`orchestration::parameters::error_tree`).

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::api::error::{ApiResult, AppError};
use crate::api::AppState;
use crate::orchestration::hydration::{hydrate_for_validation, HydrationContext};
use crate::orchestration::parameters::{all_failures, error_tree};

pub fn router() -> Router<AppState> {
    Router::new().route("/ui/schemas/validate", post(validate))
}

/// `{"schema": {...}, "values": {...}}`, both required objects.
fn object_field(body: &Value, key: &str) -> Result<serde_json::Map<String, Value>, Value> {
    match body.get(key) {
        Some(Value::Object(m)) => Ok(m.clone()),
        None => Err(json!({"type": "missing", "loc": ["body", key], "msg": "Field required", "input": null})),
        Some(other) => Err(json!({"type": "dict_type", "loc": ["body", key], "msg": "Input should be a valid dictionary", "input": other})),
    }
}

async fn validate(State(state): State<AppState>, body: axum::body::Bytes) -> ApiResult<Json<Value>> {
    let body: Value = crate::api::json::parse_body(&body)?;
    let (schema, values) = (object_field(&body, "schema"), object_field(&body, "values"));
    let errors: Vec<Value> = [&schema, &values].into_iter().filter_map(|r| r.as_ref().err().cloned()).collect();
    let (Ok(schema), Ok(values)) = (schema, values) else {
        return Err(AppError::Validation { detail: errors, body });
    };
    let schema = crate::orchestration::job_variables::preprocessed(&Value::Object(schema), false);
    let ctx = if crate::orchestration::hydration::needs_hydration(&Value::Object(values.clone())) {
        let mut conn = state.db.reader().acquire().await?;
        HydrationContext { workspace_variables: crate::commands::variables::values_by_name(&mut conn, state.db.dialect).await?, ..Default::default() }
    } else {
        HydrationContext::default()
    };
    let (hydrated, placeholders) = hydrate_for_validation(&values, &ctx);
    Ok(Json(error_tree(&all_failures(&hydrated, &schema), &placeholders)))
}
