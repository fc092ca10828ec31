//! Appending a batch of events that belong to many streams in a handful of
//! statements, for `/events/in` and `POST /events`: clients send events one
//! frame each, and appending them one by one cost three round trips per
//! event (lock, version, insert) before any projection ran.
//!
//! The guarantees are [`super::append`]'s with `ExpectedVersion::Any`: each
//! stream is locked (all of them in one statement, in key order, so batches
//! cannot deadlock), versions stay gapless and in the order given, and an
//! event id already in the log (a resend) is skipped. Single-event streams
//! (a client event keyed by its own id) need neither lock nor version.

use std::collections::{HashMap, HashSet};

use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::{AppendError, NewEvent, RecordedEvent, StreamRef, DEFAULT_WORKSPACE};
use crate::db::{bind_all, bind_chunk, Bind, Dialect};
use crate::time::fmt_ts;

/// Rows per multi-row INSERT (10 binds each).
const EVENTS_PER_INSERT: usize = 100;

/// One event to append: its stream and whether that stream only ever holds
/// this one event.
pub struct BatchItem {
    pub stream: StreamRef,
    pub singleton: bool,
    pub event: NewEvent,
}

/// Appends `items` (in the given order within each stream) in the caller's
/// transaction. Returns the events appended, in log order; resends are left out.
pub async fn append_many(conn: &mut AnyConnection, dialect: Dialect, items: Vec<BatchItem>) -> Result<Vec<RecordedEvent>, AppendError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let mut seen = HashSet::new();
    let items: Vec<BatchItem> = items.into_iter().filter(|i| seen.insert(i.event.event_id)).collect();
    let mut streams: Vec<StreamRef> = items.iter().filter(|i| !i.singleton).map(|i| i.stream).collect();
    streams.sort_by_cached_key(StreamRef::lock_key);
    streams.dedup();
    lock_all(conn, dialect, &streams).await?;
    let resent = already_in_log(conn, dialect, &items).await?;
    let mut versions = current_versions(conn, dialect, &streams).await?;
    let mut rows: Vec<(BatchItem, i64)> = Vec::with_capacity(items.len());
    for item in items {
        if resent.contains(&item.event.event_id) {
            continue;
        }
        let version = if item.singleton {
            1
        } else {
            let v = versions.entry(item.stream).or_insert(0);
            *v += 1;
            *v
        };
        rows.push((item, version));
    }
    let mut recorded = Vec::with_capacity(rows.len());
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<(BatchItem, i64)> = rows.by_ref().take(EVENTS_PER_INSERT).collect();
        recorded.extend(insert_chunk(conn, dialect, chunk).await?);
    }
    recorded.sort_by_key(|e| e.position);
    Ok(recorded)
}

/// Locks every stream, in the order given (sorted by key by the caller).
async fn lock_all(conn: &mut AnyConnection, dialect: Dialect, streams: &[StreamRef]) -> Result<(), sqlx::Error> {
    if dialect != Dialect::Postgres || streams.is_empty() {
        return Ok(());
    }
    // The inner ORDER BY with OFFSET 0 is kept as a subquery, so the locks
    // are taken row by row in key order.
    let values: Vec<String> = (1..=streams.len()).map(|i| format!("(${i})")).collect();
    let sql = format!(
        "SELECT COUNT(pg_advisory_xact_lock(hashtextextended(k, 0))) FROM (SELECT k FROM (VALUES {}) AS v(k) ORDER BY k OFFSET 0) AS s",
        values.join(", ")
    );
    let binds: Vec<Bind> = streams.iter().map(|s| Bind::Text(s.lock_key())).collect();
    bind_all(sqlx::query(&sql), &binds).fetch_one(&mut *conn).await?;
    Ok(())
}

async fn already_in_log(conn: &mut AnyConnection, dialect: Dialect, items: &[BatchItem]) -> Result<HashSet<Uuid>, sqlx::Error> {
    let mut found = HashSet::new();
    for chunk in items.chunks(500) {
        let cast = if dialect == Dialect::Postgres { "::uuid" } else { "" };
        let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}{cast}")).collect();
        let sql = format!("SELECT event_id{} FROM es_events WHERE event_id IN ({})", if dialect == Dialect::Postgres { "::text" } else { "" }, list.join(", "));
        let binds: Vec<Bind> = chunk.iter().map(|i| Bind::Text(i.event.event_id.to_string())).collect();
        for row in bind_all(sqlx::query(&dialect.rewrite(&sql)), &binds).fetch_all(&mut *conn).await? {
            if let Ok(id) = Uuid::parse_str(&row.try_get::<String, _>(0)?) {
                found.insert(id);
            }
        }
    }
    Ok(found)
}

async fn current_versions(conn: &mut AnyConnection, dialect: Dialect, streams: &[StreamRef]) -> Result<HashMap<StreamRef, i64>, sqlx::Error> {
    let mut versions = HashMap::new();
    for chunk in streams.chunks(500) {
        let cast = if dialect == Dialect::Postgres { "::uuid" } else { "" };
        let pairs: Vec<String> = (0..chunk.len()).map(|i| format!("(${}, ${}{cast})", 2 * i + 1, 2 * i + 2)).collect();
        let id_text = if dialect == Dialect::Postgres { "stream_id::text" } else { "stream_id" };
        let sql = format!(
            "SELECT stream_type, {id_text}, CAST(MAX(stream_version) AS BIGINT) FROM es_events WHERE (stream_type, stream_id) IN (VALUES {}) GROUP BY stream_type, stream_id",
            pairs.join(", ")
        );
        let binds: Vec<Bind> = chunk.iter().flat_map(|s| [Bind::Text(s.stream_type.as_str().to_owned()), Bind::Text(s.id.to_string())]).collect();
        for row in bind_all(sqlx::query(&dialect.rewrite(&sql)), &binds).fetch_all(&mut *conn).await? {
            let (stream_type, id, version): (String, String, i64) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            if let Some(s) = chunk.iter().find(|s| s.stream_type.as_str() == stream_type && s.id.to_string() == id) {
                versions.insert(*s, version);
            }
        }
    }
    Ok(versions)
}

/// Inserts one chunk and returns its events as recorded; the events move
/// into the records (their payloads are not copied).
async fn insert_chunk(conn: &mut AnyConnection, dialect: Dialect, chunk: Vec<(BatchItem, i64)>) -> Result<Vec<RecordedEvent>, AppendError> {
    // Postgres needs the column types spelled out; SQLite stores the text as is.
    const PG_CASTS: [&str; 10] = ["::uuid", "", "::uuid", "", "", "::uuid", "::timestamptz", "::uuid", "::uuid", "::json"];
    let row_sql = |i: usize| {
        let cols: Vec<String> = (0..10)
            .map(|c| format!("${}{}", i * 10 + c + 1, if dialect == Dialect::Postgres { PG_CASTS[c] } else { "" }))
            .collect();
        format!("({})", cols.join(", "))
    };
    let values: Vec<String> = (0..chunk.len()).map(row_sql).collect();
    let returning = match dialect {
        Dialect::Postgres => "event_id::text AS event_id, position, tx_id::text::bigint AS tx_id",
        Dialect::Sqlite => "event_id, position, tx_id",
    };
    let sql = format!(
        "INSERT INTO es_events (event_id, stream_type, stream_id, stream_version, event_type, workspace_id, occurred, correlation_id, causation_id, payload) \
         VALUES {} ON CONFLICT DO NOTHING RETURNING {returning}",
        values.join(", ")
    );
    let mut binds = Vec::with_capacity(chunk.len() * 10);
    for (item, version) in &chunk {
        let ev = &item.event;
        binds.extend([
            Bind::Text(ev.event_id.to_string()),
            Bind::Text(item.stream.stream_type.as_str().to_owned()),
            Bind::Text(item.stream.id.to_string()),
            Bind::Int(*version),
            Bind::Text(ev.event_type.clone()),
            Bind::Text(DEFAULT_WORKSPACE.to_string()),
            Bind::Text(fmt_ts(ev.occurred)),
            ev.correlation_id.map(|u| u.to_string()).into(),
            ev.causation_id.map(|u| u.to_string()).into(),
            Bind::Text(ev.payload.to_string()),
        ]);
    }
    let full = chunk.len() == EVENTS_PER_INSERT;
    let rows = bind_chunk(sqlx::query(&dialect.rewrite(&sql)), &binds, full).fetch_all(&mut *conn).await?;
    let mut at: HashMap<String, (i64, i64)> = HashMap::with_capacity(rows.len());
    for row in &rows {
        at.insert(row.try_get::<String, _>("event_id")?, (row.try_get("position")?, row.try_get("tx_id")?));
    }
    let mut recorded = Vec::with_capacity(chunk.len());
    for (item, version) in chunk {
        let Some(&(position, tx_id)) = at.get(&item.event.event_id.to_string()) else {
            if item.singleton {
                continue; // sent twice at once by two clients: the other one stored it
            }
            // Under the stream lock, after the resend check, nothing else can
            // take this version: refuse rather than leave a gap.
            return Err(AppendError::WrongExpectedVersion { stream: item.stream.lock_key(), expected: super::ExpectedVersion::Any, actual: version });
        };
        recorded.push(RecordedEvent::appended(item.event, item.stream, version, position, tx_id));
    }
    Ok(recorded)
}
