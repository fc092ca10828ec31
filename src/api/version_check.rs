//! `X-PREFECT-API-VERSION`: a malformed value or one older than 0.8.0 is
//! refused with 400, as Prefect's `EnforceMinimumAPIVersion` does; a missing
//! header is accepted.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

pub const SERVER_API_VERSION: &str = "0.8.4";
const MINIMUM: (u32, u32, u32) = (0, 8, 0);

/// Parses `x.y.z`.
pub fn parse_api_version(raw: &str) -> Option<(u32, u32, u32)> {
    let mut parts = raw.trim().split('.');
    let v = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    parts.next().is_none().then_some(v)
}

/// The client's API version from the request headers (default: ours).
pub fn client_api_version(headers: &axum::http::HeaderMap) -> (u32, u32, u32) {
    headers
        .get("x-prefect-api-version")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_api_version)
        .unwrap_or((0, 8, 4))
}

pub async fn enforce_minimum_api_version(req: Request, next: Next) -> Response {
    if let Some(raw) = req.headers().get("x-prefect-api-version") {
        let raw = raw.to_str().unwrap_or_default().to_owned();
        match parse_api_version(&raw) {
            None => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"detail": format!("Invalid X-PREFECT-API-VERSION header format.Expected header in format 'x.y.z' but received {raw}")})),
                )
                    .into_response()
            }
            Some(v) if v < MINIMUM => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"detail": format!("The request specified API version {raw} but this server requires version 0.8.0 or higher.")})),
                )
                    .into_response()
            }
            Some(_) => {}
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(parse_api_version("0.8.4"), Some((0, 8, 4)));
        assert_eq!(parse_api_version("0.8"), None);
        assert_eq!(parse_api_version("a.b.c"), None);
        assert!(parse_api_version("0.7.9").unwrap() < MINIMUM);
    }
}
