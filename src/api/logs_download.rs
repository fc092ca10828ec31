//! `GET /flow_runs/{id}/logs/download`: a run's logs as CSV, the file the
//! UI's download button saves, written as Python's `csv.writer` writes it
//! (`QUOTE_MINIMAL`, `\r\n`) with Python's `str()` of each value.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sqlx::Row;

use super::error::{ApiResult, AppError};
use super::json::path_id;
use super::AppState;
use crate::server_model::flow_runs::read_flow_run_row;

pub fn router() -> Router<AppState> {
    Router::new().route("/flow_runs/{id}/logs/download", get(download))
}

/// Logs read per query.
const PAGE: i64 = 1000;

async fn download(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let mut conn = state.db.reader().acquire().await?;
    let run = read_flow_run_row(&mut conn, state.db.dialect, &id.to_string()).await?.ok_or_else(|| AppError::not_found("Flow run"))?;
    let name: String = run.try_get("name")?;
    let mut csv = String::from("timestamp,level,flow_run_id,task_run_id,message\r\n");
    let sql = state.db.q("SELECT timestamp, level, flow_run_id, task_run_id, message FROM log WHERE flow_run_id = $1 ORDER BY timestamp, id LIMIT $2 OFFSET $3");
    let mut offset = 0;
    loop {
        let rows = sqlx::query(&sql).bind(id.to_string()).bind(PAGE).bind(offset).fetch_all(&mut *conn).await?;
        for row in &rows {
            let timestamp: String = row.try_get(0)?;
            let fields = [
                python_timestamp(&timestamp),
                row.try_get::<i64, _>(1)?.to_string(),
                row.try_get::<Option<String>, _>(2)?.unwrap_or_default(),
                row.try_get::<Option<String>, _>(3)?.unwrap_or_default(),
                row.try_get::<String, _>(4)?,
            ];
            let cells: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            csv.push_str(&cells.join(","));
            csv.push_str("\r\n");
        }
        if (rows.len() as i64) < PAGE {
            break;
        }
        offset += PAGE;
    }
    let disposition = format!("attachment; filename=\"flow-run-logs.csv\"; filename*=UTF-8''{}", url_quote(&format!("{name}-logs.csv")));
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)], csv).into_response())
}

/// Python's `str()` of an aware UTC datetime, from the stored
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`: a space for the `T`, `+00:00` for the
/// `Z`, and no fraction when it is zero.
fn python_timestamp(stored: &str) -> String {
    let body = stored.trim_end_matches('Z').replacen('T', " ", 1);
    let body = match body.split_once('.') {
        Some((seconds, fraction)) if fraction.bytes().all(|b| b == b'0') => seconds.to_owned(),
        _ => body,
    };
    format!("{body}+00:00")
}

/// A `csv.writer` field (`QUOTE_MINIMAL`): quoted, with quotes doubled,
/// when it holds a comma, a quote or a line break.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// `urllib.parse.quote(text, safe="")`: every byte but letters, digits and
/// `_.-~` percent-encoded.
fn url_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_python_prints_aware_datetimes() {
        assert_eq!(python_timestamp("2026-01-01T00:00:00.250000Z"), "2026-01-01 00:00:00.250000+00:00");
        assert_eq!(python_timestamp("2026-01-01T00:00:01.000000Z"), "2026-01-01 00:00:01+00:00");
    }

    #[test]
    fn fields_are_quoted_only_when_they_must_be() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\"\nbye"), "\"say \"\"hi\"\"\nbye\"");
        assert_eq!(csv_field(""), "");
    }

    #[test]
    fn names_are_percent_encoded_like_urllib_quote() {
        assert_eq!(url_quote("run é 1-logs.csv"), "run%20%C3%A9%201-logs.csv");
        assert_eq!(url_quote("a/b~c"), "a%2Fb~c");
    }
}
