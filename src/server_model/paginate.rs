//! `/…/paginate` bodies and responses: `{page, limit, …filters}` in,
//! `{results, count, limit, pages, page}` out.

use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use crate::api::error::AppError;
use crate::api::json::parse_body;

/// Splits `page` off a paginate body and turns it into `offset`, then parses
/// the rest as the route's filter body. Returns (filter, page, limit).
pub fn prepare<T: DeserializeOwned>(mut body: Map<String, Value>, default_limit: i64) -> Result<(T, i64, i64), AppError> {
    let page = match body.remove("page") {
        None | Some(Value::Null) => 1,
        Some(v) => v
            .as_i64()
            .filter(|p| *p >= 1)
            .ok_or_else(|| AppError::invalid(&["body", "page"], "Input should be greater than or equal to 1", v.clone()))?,
    };
    let limit = match body.get("limit") {
        None | Some(Value::Null) => default_limit,
        Some(v) => v.as_i64().unwrap_or(default_limit),
    };
    body.insert("limit".into(), json!(limit));
    body.insert("offset".into(), json!((page - 1) * limit));
    let filter = parse_body(Value::Object(body).to_string().as_bytes())?;
    Ok((filter, page, limit))
}

pub fn page(results: Vec<Value>, count: i64, limit: i64, page: i64) -> Value {
    let pages = if limit > 0 { (count + limit - 1) / limit } else { 0 };
    json!({"results": results, "count": count, "limit": limit, "pages": pages, "page": page})
}
