//! `/v2/concurrency_limits` (Prefect's `concurrency_limits_v2` router):
//! global concurrency limits, slot increments and decrements, and leases
//! (`commands::concurrency_limits`).

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use uuid::Uuid;

use super::body::{limit_offset, Fields};
use super::error::{ApiResult, AppError};
use super::json::{path_id, AppJson};
use super::AppState;
use crate::commands::concurrency_limits::{self as cmd, Increment, Incremented, LimitCreate, LimitRef, LimitUpdate};
use crate::server_model::concurrency_limits::{core_limit, limit_response, limit_row, list};
use crate::orchestration::concurrency_limits::{Mode, WaitSettings};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/concurrency_limits/", post(create))
        .route("/v2/concurrency_limits/filter", post(filter))
        .route("/v2/concurrency_limits/increment", post(increment))
        .route("/v2/concurrency_limits/increment-with-lease", post(increment_with_lease))
        .route("/v2/concurrency_limits/decrement", post(decrement))
        .route("/v2/concurrency_limits/decrement-with-lease", post(decrement_with_lease))
        .route("/v2/concurrency_limits/leases/{lease_id}/renew", post(renew))
        .route("/v2/concurrency_limits/{id_or_name}", get(read).patch(update).delete(delete))
}

fn waits(state: &AppState) -> WaitSettings {
    state.settings.services.concurrency_waits()
}

async fn create(State(state): State<AppState>, AppJson(body): AppJson<LimitCreate>) -> ApiResult<(StatusCode, Json<Value>)> {
    let row = cmd::create(&state.db, body).await?;
    Ok((StatusCode::CREATED, Json(core_limit(&row))))
}

async fn read(State(state): State<AppState>, Path(id_or_name): Path<String>) -> ApiResult<Json<Value>> {
    let mut conn = state.db.reader().acquire().await?;
    let row = limit_row(&mut conn, state.db.dialect, &LimitRef::parse(&id_or_name)).await?;
    let row = row.ok_or_else(|| AppError::Detail(StatusCode::NOT_FOUND, "Concurrency Limit not found".into()))?;
    Ok(Json(limit_response(&mut conn, state.db.dialect, &row).await?))
}

/// `limit` (up to the server's default) and `offset`, by name.
async fn filter(State(state): State<AppState>, body: axum::body::Bytes) -> ApiResult<Json<Vec<Value>>> {
    let (limit, offset) = limit_offset(&body, state.settings.default_limit)?;
    let mut conn = state.db.reader().acquire().await?;
    let rows = list(&mut conn, state.db.dialect, false, limit, offset).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(limit_response(&mut conn, state.db.dialect, row).await?);
    }
    Ok(Json(out))
}

async fn update(State(state): State<AppState>, Path(id_or_name): Path<String>, AppJson(body): AppJson<LimitUpdate>) -> ApiResult<StatusCode> {
    cmd::update(&state.db, LimitRef::parse(&id_or_name), body).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete(State(state): State<AppState>, Path(id_or_name): Path<String>) -> ApiResult<StatusCode> {
    cmd::delete(&state.db, LimitRef::parse(&id_or_name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------- slots ---

/// The body fields of the slot routes, with pydantic's error shapes.
struct SlotBody {
    fields: Fields,
    errors: Vec<Value>,
}

impl SlotBody {
    fn parse(bytes: &[u8]) -> ApiResult<SlotBody> {
        Ok(SlotBody { fields: Fields::parse(bytes)?, errors: Vec::new() })
    }

    fn get(&self, key: &str) -> Option<Value> {
        self.fields.map.get(key).cloned()
    }

    fn missing(&mut self, key: &str) {
        self.errors.push(json!({"type": "missing", "loc": ["body", key], "msg": "Field required", "input": null}));
    }

    /// `slots: int = Body(..., gt=0)`.
    fn slots(&mut self) -> i64 {
        let Some(v) = self.get("slots") else {
            self.missing("slots");
            return 0;
        };
        match v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())) {
            Some(n) if n > 0 => n,
            Some(_) => {
                self.errors.push(json!({"type": "greater_than", "loc": ["body", "slots"], "msg": "Input should be greater than 0", "input": v, "ctx": {"gt": 0}}));
                0
            }
            None => {
                self.errors.push(json!({"type": "int_parsing", "loc": ["body", "slots"], "msg": "Input should be a valid integer, unable to parse string as an integer", "input": v}));
                0
            }
        }
    }

    /// `names: List[str] = Body(..., min_items=1)`.
    fn names(&mut self) -> Vec<String> {
        let Some(v) = self.get("names") else {
            self.missing("names");
            return Vec::new();
        };
        let Some(items) = v.as_array() else {
            self.errors.push(json!({"type": "list_type", "loc": ["body", "names"], "msg": "Input should be a valid list", "input": v}));
            return Vec::new();
        };
        if items.is_empty() {
            self.errors.push(json!({"type": "too_short", "loc": ["body", "names"], "msg": "List should have at least 1 item after validation, not 0", "input": v, "ctx": {"field_type": "List", "min_length": 1, "actual_length": 0}}));
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) => out.push(s.to_owned()),
                None => self.errors.push(json!({"type": "string_type", "loc": ["body", "names", i], "msg": "Input should be a valid string", "input": item})),
            }
        }
        out
    }

    /// `mode: Literal["concurrency", "rate_limit"] = "concurrency"`.
    fn mode(&mut self) -> Mode {
        match self.get("mode") {
            None => Mode::Concurrency,
            Some(Value::String(s)) if s == "concurrency" => Mode::Concurrency,
            Some(Value::String(s)) if s == "rate_limit" => Mode::RateLimit,
            Some(v) => {
                self.errors.push(json!({"type": "literal_error", "loc": ["body", "mode"], "msg": "Input should be 'concurrency' or 'rate_limit'", "input": v, "ctx": {"expected": "'concurrency' or 'rate_limit'"}}));
                Mode::Concurrency
            }
        }
    }

    /// `lease_duration: float = Body(300, ge=60, le=86400)`.
    fn lease_duration(&mut self) -> f64 {
        let Some(v) = self.get("lease_duration") else { return 300.0 };
        let Some(n) = v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())) else {
            self.errors.push(json!({"type": "float_parsing", "loc": ["body", "lease_duration"], "msg": "Input should be a valid number, unable to parse string as a number", "input": v}));
            return 300.0;
        };
        if n < 60.0 {
            self.errors.push(json!({"type": "greater_than_equal", "loc": ["body", "lease_duration"], "msg": "Input should be greater than or equal to 60", "input": v, "ctx": {"ge": 60}}));
        } else if n > 86400.0 {
            self.errors.push(json!({"type": "less_than_equal", "loc": ["body", "lease_duration"], "msg": "Input should be less than or equal to 86400", "input": v, "ctx": {"le": 86400}}));
        }
        n
    }

    /// `holder: Optional[ConcurrencyLeaseHolder]`: `{type, id}`.
    fn holder(&mut self) -> Value {
        let Some(v) = self.get("holder").filter(|v| !v.is_null()) else { return Value::Null };
        let kind = v.get("type").and_then(Value::as_str);
        let id = v.get("id").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok());
        match (kind, id) {
            (Some(k @ ("flow_run" | "task_run" | "deployment")), Some(id)) => json!({"type": k, "id": id}),
            _ => {
                self.errors.push(json!({"type": "model_type", "loc": ["body", "holder"], "msg": "Input should be a valid ConcurrencyLeaseHolder: {type: 'flow_run' | 'task_run' | 'deployment', id: UUID}", "input": v}));
                Value::Null
            }
        }
    }

    /// `occupancy_seconds: Optional[float] = Body(None, gt=0.0)`.
    fn occupancy_seconds(&mut self) -> Option<f64> {
        let v = self.get("occupancy_seconds").filter(|v| !v.is_null())?;
        match v.as_f64() {
            Some(n) if n > 0.0 => Some(n),
            Some(_) => {
                self.errors.push(json!({"type": "greater_than", "loc": ["body", "occupancy_seconds"], "msg": "Input should be greater than 0", "input": v, "ctx": {"gt": 0.0}}));
                None
            }
            None => {
                self.errors.push(json!({"type": "float_type", "loc": ["body", "occupancy_seconds"], "msg": "Input should be a valid number", "input": v}));
                None
            }
        }
    }

    fn check(&mut self) -> ApiResult<()> {
        if self.errors.is_empty() {
            return Ok(());
        }
        Err(AppError::Validation { detail: std::mem::take(&mut self.errors), body: Value::Object(self.fields.map.clone()) })
    }
}

/// 423 with Prefect's `Retry-After` (seconds, as Python prints a float).
fn locked(retry_after: f64) -> Response {
    (StatusCode::LOCKED, [(header::RETRY_AFTER, format!("{retry_after:?}"))], Json(json!({"detail": "Locked"}))).into_response()
}

async fn increment(State(state): State<AppState>, body: axum::body::Bytes) -> ApiResult<Response> {
    let mut b = SlotBody::parse(&body)?;
    let (slots, names, mode) = (b.slots(), b.names(), b.mode());
    b.check()?;
    match cmd::increment(&state.db, Increment { names, slots, mode, lease: None }, waits(&state)).await? {
        Incremented::Granted { limits, .. } => Ok(Json(limits).into_response()),
        Incremented::Locked { retry_after } => Ok(locked(retry_after)),
    }
}

async fn increment_with_lease(State(state): State<AppState>, body: axum::body::Bytes) -> ApiResult<Response> {
    let mut b = SlotBody::parse(&body)?;
    let (slots, names, mode, duration, holder) = (b.slots(), b.names(), b.mode(), b.lease_duration(), b.holder());
    b.check()?;
    match cmd::increment(&state.db, Increment { names, slots, mode, lease: Some((duration, holder)) }, waits(&state)).await? {
        // No limit exists: Prefect still answers a lease id, which the
        // client never renews or releases as no limit came back.
        Incremented::Granted { limits, lease_id } => Ok(Json(json!({"lease_id": lease_id.unwrap_or_else(Uuid::now_v7), "limits": limits})).into_response()),
        Incremented::Locked { retry_after } => Ok(locked(retry_after)),
    }
}

async fn decrement(State(state): State<AppState>, body: axum::body::Bytes) -> ApiResult<Json<Vec<Value>>> {
    let mut b = SlotBody::parse(&body)?;
    let (slots, names, occupancy) = (b.slots(), b.names(), b.occupancy_seconds());
    b.check()?;
    Ok(Json(cmd::decrement(&state.db, names, slots, occupancy, waits(&state)).await?))
}

/// `{"lease_id": ...}` (`Body(..., embed=True)`).
fn lease_id_of(body: &[u8]) -> ApiResult<Uuid> {
    let mut fields = Fields::parse(body)?;
    let id = fields.uuids_one("lease_id");
    fields.check()?;
    id.ok_or_else(|| AppError::invalid(&["body", "lease_id"], "Field required", Value::Null))
}

async fn decrement_with_lease(State(state): State<AppState>, body: axum::body::Bytes) -> ApiResult<StatusCode> {
    let lease_id = lease_id_of(&body)?;
    cmd::release_lease(&state.db, lease_id, waits(&state)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn renew(State(state): State<AppState>, Path(lease_id): Path<String>, body: axum::body::Bytes) -> ApiResult<StatusCode> {
    let lease_id = path_id(&lease_id)?;
    let mut b = SlotBody::parse(&body)?;
    let duration = b.lease_duration();
    b.check()?;
    if cmd::renew_lease(&state.db, lease_id, duration).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::Detail(StatusCode::GONE, "Lease not found - it may have expired or been revoked".into()))
    }
}
