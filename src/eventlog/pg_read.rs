//! Reading the whole log on a native Postgres connection, for replay.
//!
//! The `Any` driver only carries text and numbers, so [`super::read_rows_in_order`]
//! has Postgres format every uuid and timestamp as text and the reader parse
//! them back, and it copies each row into an `AnyRow` first. Here the columns
//! arrive in Postgres's binary format (a uuid is 16 bytes, a timestamp an
//! integer) and are decoded from the row itself: less work on both sides of
//! the connection for the largest read the server ever does.

use sqlx::postgres::{PgConnection, PgRow};
use sqlx::Row;

use super::{RecordedEvent, StreamRef, StreamType};

const SELECT: &str = "SELECT position, tx_id::text::bigint AS tx_id, event_id, stream_type, stream_id, stream_version, \
     event_type, schema_version::bigint AS schema_version, workspace_id, occurred, correlation_id, causation_id, \
     payload::text AS payload \
     FROM es_events WHERE position > $1 ORDER BY position LIMIT $2";

/// Reads up to `limit` rows of the log after `after_position`, in position
/// order, without decoding them. Returns the rows and the last position read.
pub async fn read_pg_rows_in_order(
    conn: &mut PgConnection,
    after_position: i64,
    limit: i64,
) -> Result<(Vec<PgRow>, Option<i64>), sqlx::Error> {
    let rows = sqlx::query(SELECT).bind(after_position).bind(limit).fetch_all(&mut *conn).await?;
    let last = match rows.last() {
        Some(row) => Some(row.try_get::<i64, _>("position")?),
        None => None,
    };
    Ok((rows, last))
}

/// Decodes rows read by [`read_pg_rows_in_order`], leaving each payload as
/// JSON text (the events' `payload` is null) for the caller to parse.
pub fn decode_pg_unparsed(rows: &[PgRow]) -> Result<Vec<(RecordedEvent, String)>, sqlx::Error> {
    rows.iter().map(decode_unparsed).collect()
}

fn decode_unparsed(row: &PgRow) -> Result<(RecordedEvent, String), sqlx::Error> {
    let stream_type: &str = row.try_get("stream_type")?;
    let stream_type = StreamType::parse(stream_type)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown stream type {stream_type}").into()))?;
    let event = RecordedEvent {
        position: row.try_get("position")?,
        tx_id: row.try_get("tx_id")?,
        event_id: row.try_get("event_id")?,
        stream: StreamRef::new(stream_type, row.try_get("stream_id")?),
        stream_version: row.try_get("stream_version")?,
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get("schema_version")?,
        workspace_id: row.try_get("workspace_id")?,
        occurred: row.try_get("occurred")?,
        correlation_id: row.try_get("correlation_id")?,
        causation_id: row.try_get("causation_id")?,
        payload: serde_json::Value::Null,
    };
    Ok((event, row.try_get("payload")?))
}
