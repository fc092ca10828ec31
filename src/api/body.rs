//! Bodies of routes whose parameters are several `Body(...)` fields
//! (history, lateness and the `/ui/*` helpers): the fields read one by one
//! with pydantic's lax rules and error shapes, and the filter objects
//! gathered into a [`RunFilterBody`].

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::error::AppError;
use super::json::parse_body;
use crate::db::timestamp::Timestamp;
use crate::server_model::filters::RunFilterBody;

/// A request body as its top-level fields (`null` or empty: none).
pub struct Fields {
    pub map: Map<String, Value>,
    raw: Value,
    errors: Vec<Value>,
}

impl Fields {
    pub fn parse(bytes: &[u8]) -> Result<Fields, AppError> {
        let raw: Value = parse_body(bytes)?;
        let map = match &raw {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        Ok(Fields { map, raw, errors: Vec::new() })
    }

    fn present(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    fn error(&mut self, detail: Value) {
        self.errors.push(detail);
    }

    fn missing(&mut self, key: &str) {
        self.error(json!({"type": "missing", "loc": ["body", key], "msg": "Field required", "input": null}));
    }

    /// A required `datetime` field.
    pub fn datetime(&mut self, key: &str) -> Option<Timestamp> {
        let Some(v) = self.present(key).cloned() else {
            self.missing(key);
            return None;
        };
        match serde_json::from_value::<Timestamp>(v.clone()) {
            Ok(ts) => Some(ts),
            Err(_) => {
                let shown = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                self.error(json!({"type": "value_error", "loc": ["body", key], "msg": format!("Value error, Unable to parse string [{shown}]"), "input": v, "ctx": {"error": {}}}));
                None
            }
        }
    }

    /// A required `float` field (numbers, numeric strings and booleans, as
    /// pydantic's lax mode takes them).
    pub fn float(&mut self, key: &str) -> Option<f64> {
        let Some(v) = self.present(key).cloned() else {
            self.missing(key);
            return None;
        };
        match &v {
            Value::Number(n) => n.as_f64(),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Value::String(s) => match s.trim().parse::<f64>() {
                Ok(f) => Some(f),
                Err(_) => {
                    self.error(json!({"type": "float_parsing", "loc": ["body", key], "msg": "Input should be a valid number, unable to parse string as a number", "input": v}));
                    None
                }
            },
            _ => {
                self.error(json!({"type": "float_type", "loc": ["body", key], "msg": "Input should be a valid number", "input": v}));
                None
            }
        }
    }

    /// An optional `int` field with a default and pydantic's `ge`/`le` bounds.
    pub fn int(&mut self, key: &str, default: i64, ge: Option<i64>, le: Option<i64>) -> Option<i64> {
        let v = match self.present(key) {
            None => return Some(default),
            Some(v) => v.clone(),
        };
        let n = match &v {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64)),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        let Some(n) = n else {
            self.error(json!({"type": "int_parsing", "loc": ["body", key], "msg": "Input should be a valid integer, unable to parse string as an integer", "input": v}));
            return None;
        };
        if let Some(ge) = ge.filter(|ge| n < *ge) {
            self.error(json!({"type": "greater_than_equal", "loc": ["body", key], "msg": format!("Input should be greater than or equal to {ge}"), "input": v, "ctx": {"ge": ge}}));
            return None;
        }
        if let Some(le) = le.filter(|le| n > *le) {
            self.error(json!({"type": "less_than_equal", "loc": ["body", key], "msg": format!("Input should be less than or equal to {le}"), "input": v, "ctx": {"le": le}}));
            return None;
        }
        Some(n)
    }

    /// A required `UUID` field (`Body(..., embed=True)`).
    pub fn uuids_one(&mut self, key: &str) -> Option<Uuid> {
        let Some(v) = self.present(key).cloned() else {
            self.missing(key);
            return None;
        };
        match v.as_str().map(Uuid::parse_str) {
            Some(Ok(id)) => Some(id),
            Some(Err(e)) => {
                self.error(json!({"type": "uuid_parsing", "loc": ["body", key], "msg": format!("Input should be a valid UUID, {e}"), "input": v, "ctx": {"error": e.to_string()}}));
                None
            }
            None => {
                self.error(json!({"type": "uuid_type", "loc": ["body", key], "msg": "UUID input should be a string, bytes or UUID object", "input": v}));
                None
            }
        }
    }

    /// A required `list[UUID]` field (`Body(..., embed=True)`).
    pub fn uuids(&mut self, key: &str) -> Option<Vec<Uuid>> {
        let Some(v) = self.present(key).cloned() else {
            self.missing(key);
            return None;
        };
        let Some(items) = v.as_array() else {
            self.error(json!({"type": "list_type", "loc": ["body", key], "msg": "Input should be a valid list", "input": v}));
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match item.as_str().map(Uuid::parse_str) {
                Some(Ok(id)) => out.push(id),
                Some(Err(e)) => {
                    ok = false;
                    self.error(json!({"type": "uuid_parsing", "loc": ["body", key, i], "msg": format!("Input should be a valid UUID, {e}"), "input": item, "ctx": {"error": e.to_string()}}));
                }
                None => {
                    ok = false;
                    self.error(json!({"type": "uuid_type", "loc": ["body", key, i], "msg": "UUID input should be a string, bytes or UUID object", "input": item}));
                }
            }
        }
        ok.then_some(out)
    }

    /// The 422 for every field error so far, if any.
    pub fn check(&mut self) -> Result<(), AppError> {
        if self.errors.is_empty() {
            return Ok(());
        }
        Err(AppError::Validation { detail: std::mem::take(&mut self.errors), body: self.raw.clone() })
    }

    /// The route's filter parameters, `(body key, RunFilterBody key)`;
    /// every other key is ignored, as FastAPI does.
    pub fn filters(&self, keys: &[(&str, &str)]) -> Result<RunFilterBody, AppError> {
        let mut picked = Map::new();
        for (from, to) in keys {
            if let Some(v) = self.map.get(*from) {
                picked.insert((*to).to_owned(), v.clone());
            }
        }
        parse_body(Value::Object(picked).to_string().as_bytes())
    }
}

/// The `limit` (0..=`max`, default `max`) and `offset` (default 0) body
/// fields of the simple `/filter` routes.
pub fn limit_offset(bytes: &[u8], max: i64) -> Result<(i64, i64), AppError> {
    let mut fields = Fields::parse(bytes)?;
    let limit = fields.int("limit", max, Some(0), Some(max)).unwrap_or(max);
    let offset = fields.int("offset", 0, Some(0), None).unwrap_or(0);
    fields.check()?;
    Ok((limit, offset))
}

/// Prefect's `BULK_OPERATION_LIMIT` (flows and flow runs).
pub const BULK_OPERATION_LIMIT: i64 = 50;

/// The body of a `bulk_delete` route: the filter under `key` (none matches
/// everything, as in Prefect) and `limit` (1..=50, default 50) as the
/// filter's limit.
pub fn bulk_filter(bytes: &[u8], key: &str) -> Result<RunFilterBody, AppError> {
    let mut fields = Fields::parse(bytes)?;
    let limit = fields.int("limit", BULK_OPERATION_LIMIT, Some(1), Some(BULK_OPERATION_LIMIT));
    fields.check()?;
    let mut filter = fields.filters(&[(key, key)])?;
    filter.limit = limit;
    Ok(filter)
}

/// The filter parameters most run routes take (`flows`, `flow_runs`,
/// `task_runs`, `deployments`).
pub const RUN_FILTERS: &[(&str, &str)] =
    &[("flows", "flows"), ("flow_runs", "flow_runs"), ("task_runs", "task_runs"), ("deployments", "deployments")];

/// [`RUN_FILTERS`] plus `work_pools` and `work_queues` (a work-queue filter
/// under Prefect's body name), as the history and dashboard routes take them.
pub const RUN_AND_POOL_FILTERS: &[(&str, &str)] = &[
    ("flows", "flows"),
    ("flow_runs", "flow_runs"),
    ("task_runs", "task_runs"),
    ("deployments", "deployments"),
    ("work_pools", "work_pools"),
    ("work_queues", "work_pool_queues"),
];
