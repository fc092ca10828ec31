//! SQL for appending to and reading the log, per backend.

use serde_json::Value;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::{AppendError, ExpectedVersion, NewEvent, RecordedEvent, StreamRef, StreamType, DEFAULT_WORKSPACE};
use crate::db::Dialect;
use crate::time::{fmt_ts, parse_ts};

/// A follower's place in the log: `(tx_id, position)`. On SQLite `tx_id` is
/// always 0 and positions are commit-ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub tx_id: i64,
    pub position: i64,
}

/// Takes the per-stream lock (Postgres) for the rest of the transaction.
///
/// Advisory locks assign no transaction id, so a writer that waits here gets
/// its xid only after the previous writer of the stream committed: per-stream
/// order and `(tx_id, position)` order agree.
pub async fn lock_stream(conn: &mut AnyConnection, dialect: Dialect, stream: &StreamRef) -> Result<(), sqlx::Error> {
    lock_key(conn, dialect, &stream.lock_key()).await
}

/// Takes a transaction-scoped lock on an arbitrary key (Postgres; SQLite's
/// single writer already serialises every write transaction). Used for
/// uniqueness decisions such as "one flow per name".
pub async fn lock_key(conn: &mut AnyConnection, dialect: Dialect, key: &str) -> Result<(), sqlx::Error> {
    if dialect == Dialect::Postgres {
        sqlx::query("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(hashtextextended($1, 0))) AS l")
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The stream's current version (0 when it has no events).
pub async fn stream_version(conn: &mut AnyConnection, dialect: Dialect, stream: &StreamRef) -> Result<i64, sqlx::Error> {
    let sql = match dialect {
        Dialect::Postgres => "SELECT COALESCE(MAX(stream_version), 0)::BIGINT FROM es_events WHERE stream_type = $1 AND stream_id = $2::uuid",
        Dialect::Sqlite => "SELECT COALESCE(MAX(stream_version), 0) FROM es_events WHERE stream_type = ?1 AND stream_id = ?2",
    };
    let row = sqlx::query(sql)
        .bind(stream.stream_type.as_str())
        .bind(stream.id.to_string())
        .fetch_one(&mut *conn)
        .await?;
    row.try_get::<i64, _>(0)
}

async fn already_appended(conn: &mut AnyConnection, dialect: Dialect, event_id: Uuid) -> Result<bool, sqlx::Error> {
    let sql = match dialect {
        Dialect::Postgres => "SELECT 1 FROM es_events WHERE event_id = $1::uuid",
        Dialect::Sqlite => "SELECT 1 FROM es_events WHERE event_id = ?1",
    };
    Ok(sqlx::query(sql).bind(event_id.to_string()).fetch_optional(&mut *conn).await?.is_some())
}

/// Appends `events` to `stream` inside the caller's transaction, after taking
/// the stream lock (unless the caller holds it: [`ExpectedVersion::Locked`])
/// and checking `expected`. Events whose id is already in the log are
/// skipped (clients resend); the appended ones are returned.
pub async fn append(
    conn: &mut AnyConnection,
    dialect: Dialect,
    stream: StreamRef,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> Result<Vec<RecordedEvent>, AppendError> {
    if !matches!(expected, ExpectedVersion::Locked(_)) {
        lock_stream(conn, dialect, &stream).await?;
    }
    // The version the next event must get, when `expected` fixes it.
    let mut required = match expected {
        ExpectedVersion::Any => None,
        ExpectedVersion::NoStream => Some(1),
        ExpectedVersion::Exact(n) | ExpectedVersion::Locked(n) => Some(n + 1),
    };
    let mut recorded = Vec::with_capacity(events.len());
    for ev in events {
        let event_id = ev.event_id;
        // One round trip in the common case: the INSERT computes the next
        // version itself and checks it against `required`. Nothing is
        // inserted when the event id is already in the log (a resend,
        // skipped) or the stream is not at the expected version.
        match insert(conn, dialect, stream, required, ev).await? {
            Some(event) => {
                required = Some(event.stream_version + 1);
                recorded.push(event);
            }
            None if already_appended(conn, dialect, event_id).await? => continue,
            None => {
                let actual = stream_version(conn, dialect, &stream).await?;
                return Err(AppendError::WrongExpectedVersion { stream: stream.lock_key(), expected, actual });
            }
        }
    }
    Ok(recorded)
}

/// Appends the one event of a single-event stream (a client event keyed by
/// its own id): no lock is needed, since the stream can only ever hold this
/// event; a resend is absorbed by the unique indexes. Returns `None` when
/// the event was already in the log.
pub async fn append_singleton(
    conn: &mut AnyConnection,
    dialect: Dialect,
    stream: StreamRef,
    event: NewEvent,
) -> Result<Option<RecordedEvent>, AppendError> {
    Ok(insert(conn, dialect, stream, Some(1), event).await?)
}

/// Inserts one event at the stream's next version, which the statement reads
/// itself (under the stream lock, or guarded by the unique index); with
/// `required`, only if that next version is `required`. An event id or
/// version already present, or another version than `required`, leaves the
/// log unchanged and returns `None`.
async fn insert(
    conn: &mut AnyConnection,
    dialect: Dialect,
    stream: StreamRef,
    required: Option<i64>,
    ev: NewEvent,
) -> Result<Option<RecordedEvent>, sqlx::Error> {
    let sql = match dialect {
        Dialect::Postgres => "INSERT INTO es_events (event_id, stream_type, stream_id, stream_version, event_type, workspace_id, occurred, correlation_id, causation_id, payload) \
             SELECT $1::uuid, $2, $3::uuid, v.next, $5, $6::uuid, $7::timestamptz, $8::uuid, $9::uuid, $10::json \
             FROM (SELECT COALESCE(MAX(stream_version), 0) + 1 AS next FROM es_events WHERE stream_type = $2 AND stream_id = $3::uuid) v \
             WHERE $4::bigint < 0 OR v.next = $4::bigint \
             ON CONFLICT DO NOTHING RETURNING position, tx_id::text::bigint AS tx_id, stream_version",
        Dialect::Sqlite => "INSERT INTO es_events (event_id, stream_type, stream_id, stream_version, event_type, workspace_id, occurred, correlation_id, causation_id, payload) \
             SELECT ?1, ?2, ?3, v.next, ?5, ?6, ?7, ?8, ?9, ?10 \
             FROM (SELECT COALESCE(MAX(stream_version), 0) + 1 AS next FROM es_events WHERE stream_type = ?2 AND stream_id = ?3) v \
             WHERE ?4 < 0 OR v.next = ?4 \
             ON CONFLICT DO NOTHING RETURNING position, tx_id, stream_version",
    };
    let row = sqlx::query(sql)
        .bind(ev.event_id.to_string())
        .bind(stream.stream_type.as_str())
        .bind(stream.id.to_string())
        .bind(required.unwrap_or(-1))
        .bind(ev.event_type.as_str())
        .bind(DEFAULT_WORKSPACE.to_string())
        .bind(fmt_ts(ev.occurred))
        .bind(ev.correlation_id.map(|u| u.to_string()))
        .bind(ev.causation_id.map(|u| u.to_string()))
        .bind(ev.payload.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let version = row.try_get("stream_version")?;
    Ok(Some(RecordedEvent::appended(ev, stream, version, row.try_get("position")?, row.try_get("tx_id")?)))
}

fn select_columns(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => "position, tx_id::text::bigint AS tx_id, event_id::text AS event_id, stream_type, stream_id::text AS stream_id, \
            stream_version, event_type, schema_version::bigint AS schema_version, workspace_id::text AS workspace_id, \
            to_char(occurred AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS occurred, \
            correlation_id::text AS correlation_id, causation_id::text AS causation_id, payload::text AS payload",
        Dialect::Sqlite => "position, tx_id, event_id, stream_type, stream_id, stream_version, event_type, schema_version, \
            workspace_id, occurred, correlation_id, causation_id, payload",
    }
}

fn decode(row: &sqlx::any::AnyRow) -> Result<RecordedEvent, sqlx::Error> {
    let (mut event, payload) = decode_unparsed(row)?;
    event.payload = serde_json::from_str::<Value>(&payload).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(event)
}

/// A row as an event whose payload is left as JSON text (the event's
/// `payload` is null), for a caller that parses only the part it needs.
fn decode_unparsed(row: &sqlx::any::AnyRow) -> Result<(RecordedEvent, String), sqlx::Error> {
    let uuid = |s: String| Uuid::parse_str(&s).map_err(|e| sqlx::Error::Decode(Box::new(e)));
    let opt_uuid = |s: Option<String>| s.map(uuid).transpose();
    let stream_type: String = row.try_get("stream_type")?;
    let stream_type = StreamType::parse(&stream_type)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown stream type {stream_type}").into()))?;
    let occurred: String = row.try_get("occurred")?;
    let payload: String = row.try_get("payload")?;
    let event = RecordedEvent {
        position: row.try_get("position")?,
        tx_id: row.try_get("tx_id")?,
        event_id: uuid(row.try_get("event_id")?)?,
        stream: StreamRef::new(stream_type, uuid(row.try_get("stream_id")?)?),
        stream_version: row.try_get("stream_version")?,
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get("schema_version")?,
        workspace_id: uuid(row.try_get("workspace_id")?)?,
        occurred: parse_ts(&occurred)
            .ok_or_else(|| sqlx::Error::Decode(format!("bad timestamp {occurred}").into()))?,
        correlation_id: opt_uuid(row.try_get("correlation_id")?)?,
        causation_id: opt_uuid(row.try_get("causation_id")?)?,
        payload: Value::Null,
    };
    Ok((event, payload))
}

/// Where a Postgres follower may read up to: the oldest transaction *of this
/// database* that may still be appending, seen through two moments so that
/// none is missed.
///
/// `pg_snapshot_xmin` alone would do, but it is cluster-wide: a long
/// transaction in any other database of the server (another application, a
/// migration, a replay into a scratch database) would stall every follower
/// here for as long as it lasts. So the probe, taken first, records the
/// next transaction id to be assigned and the ids this database's backends
/// hold; the read, taken after, then waits only for the in-flight ids that
/// are either in that list or newer than the probe. A transaction of this
/// database that is in flight at the read and began before the probe was in
/// flight at the probe too, so it is in the list: nothing that can still
/// commit is ever passed. A foreign transaction that began after the probe
/// holds the read back only until the next probe. The two moments need two
/// snapshots: the connection must be at READ COMMITTED, as every one here is.
#[derive(Debug, Clone)]
struct Horizon {
    /// `pg_snapshot_xmax` at the probe: every id from here on counts.
    next_xid: i64,
    /// The 32-bit ids (`backend_xid`) held by this database's backends at the
    /// probe, comma-separated. Autovacuum workers are left out: their ANALYZE
    /// takes an id, can run for a while, and never writes the log.
    own_in_flight: String,
}

async fn probe_horizon(conn: &mut AnyConnection) -> Result<Horizon, sqlx::Error> {
    // Backend states are cached for the rest of a transaction once read; a
    // stale list could miss an appender, so the cache is dropped first.
    sqlx::query("SELECT 1 AS cleared FROM (SELECT pg_stat_clear_snapshot()) AS c").fetch_one(&mut *conn).await?;
    let row = sqlx::query(
        "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_xid, \
                COALESCE((SELECT string_agg(backend_xid::text, ',') FROM pg_stat_activity \
                          WHERE datname = current_database() AND backend_xid IS NOT NULL \
                            AND backend_type <> 'autovacuum worker'), '') AS own_in_flight",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Horizon { next_xid: row.try_get("next_xid")?, own_in_flight: row.try_get("own_in_flight")? })
}

/// SQL for the horizon of a statement whose `$h1` is [`Horizon::next_xid`]
/// and `$h2` [`Horizon::own_in_flight`]: the oldest counted in-flight id of
/// the statement's snapshot, else its `xmax`.
fn horizon_sql(h1: &str, h2: &str) -> String {
    format!(
        "(SELECT LEAST(pg_snapshot_xmax(s.snap)::text::bigint, \
                 (SELECT MIN(x::text::bigint) FROM pg_snapshot_xip(s.snap) AS x \
                  WHERE x::text::bigint >= {h1}::bigint \
                     OR x::text::bigint % 4294967296 = ANY(string_to_array({h2}::text, ',')::bigint[])))::text::xid8 \
          FROM (SELECT pg_current_snapshot() AS snap) AS s)"
    )
}

/// Reads up to `limit` committed events after `cursor`, in follow order.
///
/// On Postgres only events of transactions older than every transaction of
/// this database still in flight are returned ([`Horizon`]), so an event that
/// commits late can never fall behind a cursor that has already passed it.
pub async fn read_after(
    conn: &mut AnyConnection,
    dialect: Dialect,
    cursor: Cursor,
    limit: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    let rows = match dialect {
        Dialect::Postgres => {
            let horizon = probe_horizon(conn).await?;
            let sql = format!(
                "SELECT {} FROM es_events \
                 WHERE (tx_id, position) > ($1::text::xid8, $2) AND tx_id < {} \
                 ORDER BY tx_id, position LIMIT $3",
                select_columns(dialect),
                horizon_sql("$4", "$5")
            );
            sqlx::query(&sql)
                .bind(cursor.tx_id.to_string())
                .bind(cursor.position)
                .bind(limit)
                .bind(horizon.next_xid)
                .bind(horizon.own_in_flight)
                .fetch_all(&mut *conn)
                .await?
        }
        Dialect::Sqlite => {
            let sql = format!("SELECT {} FROM es_events WHERE position > ?1 ORDER BY position LIMIT ?2", select_columns(dialect));
            sqlx::query(&sql).bind(cursor.position).bind(limit).fetch_all(&mut *conn).await?
        }
    };
    rows.iter().map(decode).collect()
}

/// The newest entry a follower can read now ([`read_after`]'s ceiling): a
/// follower starting here sees exactly what is appended from now on.
pub async fn tail_cursor(conn: &mut AnyConnection, dialect: Dialect) -> Result<Cursor, sqlx::Error> {
    let row = match dialect {
        Dialect::Postgres => {
            let horizon = probe_horizon(conn).await?;
            let sql = format!(
                "SELECT tx_id::text::bigint AS tx_id, position FROM es_events \
                 WHERE tx_id < {} ORDER BY tx_id DESC, position DESC LIMIT 1",
                horizon_sql("$1", "$2")
            );
            sqlx::query(&sql).bind(horizon.next_xid).bind(horizon.own_in_flight).fetch_optional(&mut *conn).await?
        }
        Dialect::Sqlite => {
            sqlx::query("SELECT 0 AS tx_id, position FROM es_events ORDER BY position DESC LIMIT 1")
                .fetch_optional(&mut *conn)
                .await?
        }
    };
    match row {
        Some(r) => Ok(Cursor { tx_id: r.try_get("tx_id")?, position: r.try_get("position")? }),
        None => Ok(Cursor::default()),
    }
}

/// Reads a page of the whole log in replay order (by position), for
/// rebuilding read models when no writer is running.
pub async fn read_all_in_order(
    conn: &mut AnyConnection,
    dialect: Dialect,
    after_position: i64,
    limit: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    let (rows, _) = read_rows_in_order(conn, dialect, after_position, limit).await?;
    rows.iter().map(decode).collect()
}

/// [`read_all_in_order`] without the decoding, for a caller that decodes
/// on another thread ([`decode_all_unparsed`]). Returns the rows and the last
/// position read.
pub async fn read_rows_in_order(
    conn: &mut AnyConnection,
    dialect: Dialect,
    after_position: i64,
    limit: i64,
) -> Result<(Vec<sqlx::any::AnyRow>, Option<i64>), sqlx::Error> {
    let sql = format!(
        "SELECT {} FROM es_events WHERE position > $1 ORDER BY position LIMIT $2",
        select_columns(dialect)
    );
    let rows = sqlx::query(&dialect.rewrite(&sql))
        .bind(after_position)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    let last = match rows.last() {
        Some(row) => Some(row.try_get::<i64, _>("position")?),
        None => None,
    };
    Ok((rows, last))
}

/// Decodes rows read by [`read_rows_in_order`], leaving each payload as
/// JSON text (the events' `payload` is null) for the caller to parse.
pub fn decode_all_unparsed(rows: &[sqlx::any::AnyRow]) -> Result<Vec<(RecordedEvent, String)>, sqlx::Error> {
    rows.iter().map(decode_unparsed).collect()
}

/// The highest position in the log (0 when empty).
pub async fn head(conn: &mut AnyConnection) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("SELECT CAST(COALESCE(MAX(position), 0) AS BIGINT) FROM es_events")
        .fetch_one(&mut *conn)
        .await?;
    row.try_get::<i64, _>(0)
}
