//! `AppError`: every failure the API reports, rendered in Prefect's exact
//! error bodies. Internal causes are logged, never sent to the client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// An `HTTPException`: `{"detail": ...}` with this status.
    #[error("{1}")]
    Detail(StatusCode, String),
    /// Request validation failed: 422 with Prefect's `exception_detail` list.
    #[error("invalid request")]
    Validation { detail: Vec<Value>, body: Value },
    /// A unique or foreign-key constraint was violated.
    #[error("integrity conflict")]
    Conflict,
    /// A transient database failure the client may retry.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// Anything else.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type ApiResult<T> = Result<T, AppError>;

impl AppError {
    pub fn not_found(what: &str) -> Self {
        AppError::Detail(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    /// The error in one line for a client (a bulk answer's ABORT reason):
    /// the detail of an HTTP error; an internal cause is logged, not sent.
    pub fn reason(&self) -> String {
        match self {
            AppError::Detail(_, detail) => detail.clone(),
            AppError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                "Internal Server Error".into()
            }
            other => other.to_string(),
        }
    }

    /// A 422 for one field, shaped like a pydantic `value_error` (whose
    /// `ctx.error`, the exception, FastAPI encodes as `{}`).
    pub fn invalid(loc: &[&str], msg: impl Into<String>, input: Value) -> Self {
        AppError::Validation {
            detail: vec![json!({"type": "value_error", "loc": loc, "msg": msg.into(), "input": input, "ctx": {"error": {}}})],
            body: Value::Null,
        }
    }

    /// A validation error that names no request body yet gets `body` as
    /// its `request_body`, as FastAPI reports it.
    pub fn with_body(self, body: &Value) -> Self {
        match self {
            AppError::Validation { detail, body: Value::Null } => AppError::Validation { detail, body: body.clone() },
            other => other,
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        if crate::db::is_unique_violation(&err) {
            tracing::warn!(error = %err, "integrity conflict");
            AppError::Conflict
        } else if crate::db::is_retryable(&err) {
            AppError::Unavailable(err.to_string())
        } else {
            AppError::Internal(err.into())
        }
    }
}

impl From<crate::eventlog::AppendError> for AppError {
    fn from(err: crate::eventlog::AppendError) -> Self {
        match err {
            crate::eventlog::AppendError::Db(e) => e.into(),
            other @ crate::eventlog::AppendError::WrongExpectedVersion { .. } => {
                AppError::Detail(StatusCode::CONFLICT, other.to_string())
            }
        }
    }
}

impl From<crate::projections::server::ProjectionError> for AppError {
    fn from(err: crate::projections::server::ProjectionError) -> Self {
        match err {
            crate::projections::server::ProjectionError::Db(e) => e.into(),
            other => AppError::Internal(other.into()),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            AppError::Detail(status, detail) => (*status, json!({"detail": detail})),
            AppError::Validation { detail, body } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"exception_message": "Invalid request received.", "exception_detail": detail, "request_body": body}),
            ),
            AppError::Conflict => (
                StatusCode::CONFLICT,
                json!({"detail": "Data integrity conflict. This usually means a unique or foreign key constraint was violated. See server logs for details."}),
            ),
            AppError::Unavailable(cause) => {
                tracing::warn!(cause = %cause, "transient database error");
                (StatusCode::SERVICE_UNAVAILABLE, json!({"exception_message": "Service Unavailable"}))
            }
            AppError::Internal(err) => {
                tracing::error!(error.message = %err, error.cause_chain = ?err, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, json!({"exception_message": "Internal Server Error"}))
            }
        };
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert("Retry-After", axum::http::HeaderValue::from_static("1"));
        }
        resp
    }
}
