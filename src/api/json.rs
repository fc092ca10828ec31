//! `AppJson`: a JSON body extractor whose failures are Prefect-shaped 422s
//! (malformed JSON, wrong types, unknown fields), plus path-id parsing.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use bytes_ext::body_bytes;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use uuid::Uuid;

use super::error::AppError;

/// A JSON request body deserialised into `T`.
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        parse_body(&bytes).map(AppJson)
    }
}

/// Parses a body as `T`, turning every failure into a 422. An empty body is
/// read as `{}` would not be: Prefect requires the body, so it is `null`.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(bytes).map_err(|e| AppError::Validation {
            detail: vec![json!({
                "type": "json_invalid",
                "loc": ["body", e.column()],
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": e.to_string()},
            })],
            body: Value::String(String::from_utf8_lossy(bytes).into_owned()),
        })?
    };
    from_value(value)
}

/// Deserialises an already parsed body as `T`, with [`parse_body`]'s 422s
/// (for routes that check the raw body first, as a pydantic "before"
/// validator does).
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, AppError> {
    serde_path_to_error::deserialize::<_, T>(value.clone()).map_err(|e| {
        let path: Vec<Value> = e
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Seq { index } => Some(json!(index)),
                serde_path_to_error::Segment::Map { key } => Some(json!(key)),
                serde_path_to_error::Segment::Enum { variant } => Some(json!(variant)),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        AppError::Validation { detail: vec![pydantic_error(&e.inner().to_string(), path, &value)], body: value }
    })
}

/// Shapes a serde error like the pydantic error Prefect reports: unknown and
/// missing fields name the field in `loc`.
fn pydantic_error(msg: &str, path: Vec<Value>, input: &Value) -> Value {
    let mut loc = vec![json!("body")];
    loc.extend(path);
    let field = msg.split('`').nth(1).unwrap_or_default();
    if msg.starts_with("unknown field") {
        // serde's path stops at the object holding the unknown key.
        if loc.last() != Some(&json!(field)) {
            loc.push(json!(field));
        }
        json!({"type": "extra_forbidden", "loc": loc, "msg": "Extra inputs are not permitted", "input": null})
    } else if msg.starts_with("missing field") {
        loc.push(json!(field));
        json!({"type": "missing", "loc": loc, "msg": "Field required", "input": input})
    } else {
        json!({"type": "value_error", "loc": loc, "msg": msg, "input": null})
    }
}

/// Parses a `{id:uuid}` path segment. Prefect's router does not match a
/// non-UUID there, so the answer is a plain 404.
pub fn path_id(raw: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(raw).map_err(|_| AppError::Detail(StatusCode::NOT_FOUND, "Not Found".into()))
}

mod bytes_ext {
    use axum::body::Bytes;
    use axum::extract::{FromRequest, Request};
    use axum::http::StatusCode;

    use super::AppError;

    pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, AppError> {
        Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::Detail(status, "Request body is too large.".into())
            } else {
                AppError::Detail(status, rejection.body_text())
            }
        })
    }
}
