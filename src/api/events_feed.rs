//! Reading the events feed: `POST /events/filter`, `GET /events/filter/next`
//! and `POST /events/count-by/{countable}`, as Prefect serves them.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiResult, AppError};
use super::AppState;
use crate::events_model::count_by::{count_sql, event_counts, CountByBody, CountRow, Countable};
use crate::events_model::event_row::event_json;
use crate::events_model::filter::{count_events, select_events, EventFilter, EventFilterError, ReadEventsBody};
use crate::events_model::page_token::{decode_page_token, next_page_url, to_page_token};

fn filter_error(err: EventFilterError) -> AppError {
    match err {
        EventFilterError::Invalid { .. } => AppError::Validation {
            detail: err.detail().as_array().cloned().unwrap_or_default(),
            body: Value::Null,
        },
        EventFilterError::InvalidCountParameters(msg) => AppError::Detail(StatusCode::UNPROCESSABLE_ENTITY, msg),
    }
}

/// `request.base_url` as Starlette gives it: the server root with a slash.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1:4200");
    format!("http://{host}/")
}

/// One page of events plus Prefect's `EventPage` fields.
async fn page(state: &AppState, headers: &HeaderMap, filter: &EventFilter, page_size: i64, offset: i64, known_total: Option<i64>) -> ApiResult<Value> {
    let now = Utc::now();
    let ws = super::workspace();
    let sql = select_events(filter, state.db.dialect, &ws, now, page_size, offset).map_err(filter_error)?;
    // The total (Prefect's COUNT over the whole filter) and the page are
    // independent reads: run them side by side on two pooled connections.
    let (total, rows) = match known_total {
        Some(t) => (t, super::fetch(&state.db, &sql).await?),
        None => {
            let count = count_events(filter, state.db.dialect, &ws, now).map_err(filter_error)?;
            tokio::try_join!(super::fetch_count(&state.db, &count), super::fetch(&state.db, &sql))?
        }
    };
    let next = to_page_token(filter, total, page_size, offset, now).map(|t| next_page_url(&base_url(headers), &t));
    Ok(json!({"events": rows.iter().map(event_json).collect::<Vec<_>>(), "total": total, "next_page": next}))
}

pub async fn read_events(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<Json<Value>> {
    let body = ReadEventsBody::from_json(&body).map_err(filter_error)?;
    Ok(Json(page(&state, &headers, &body.filter, body.limit, 0, None).await?))
}

#[derive(Deserialize)]
pub struct NextPage {
    #[serde(rename = "page-token")]
    page_token: Option<String>,
}

pub async fn read_next_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<NextPage>) -> ApiResult<Json<Value>> {
    let forbidden = || AppError::Detail(StatusCode::FORBIDDEN, "Forbidden".into());
    let token = decode_page_token(q.page_token.as_deref().ok_or_else(forbidden)?).map_err(|_| forbidden())?;
    Ok(Json(page(&state, &headers, &token.filter, token.page_size, token.offset, Some(token.count)).await?))
}

pub async fn count_by(State(state): State<AppState>, Path(countable): Path<String>, body: Bytes) -> ApiResult<Json<Value>> {
    let countable = Countable::parse(&countable).map_err(filter_error)?;
    let body = CountByBody::from_json(&body).map_err(filter_error)?;
    let now = Utc::now();
    let sql = count_sql(countable, &body, state.db.dialect, &super::workspace(), now).map_err(filter_error)?;
    let rows = super::fetch(&state.db, &sql).await?;
    let rows = rows.iter().map(CountRow::from_row).collect::<Result<Vec<_>, _>>()?;
    let counts = event_counts(countable, &body, now, rows).map_err(filter_error)?;
    Ok(Json(serde_json::to_value(counts).map_err(anyhow::Error::from)?))
}
