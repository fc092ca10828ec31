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
    serde_json::from_value::<T>(value.clone()).map_err(|e| {
        let msg = e.to_string();
        let kind = if msg.starts_with("unknown field") {
            "extra_forbidden"
        } else if msg.starts_with("missing field") {
            "missing"
        } else {
            "value_error"
        };
        AppError::Validation {
            detail: vec![json!({"type": kind, "loc": ["body"], "msg": msg, "input": value.clone()})],
            body: value,
        }
    })
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
