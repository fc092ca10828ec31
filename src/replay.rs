//! Rebuilding a read model from the event log.
//!
//! `prefect-server replay server` empties the server model and re-applies
//! every event in log order, in one transaction, then compares a fingerprint
//! of every table with the one taken before: a mismatch means the live model
//! had drifted from the log (or a projection is not deterministic).
//! `--verify` does the same and rolls back, leaving the live model untouched.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::process::ExitCode;

use sqlx::postgres::PgConnection;
use sqlx::{AnyConnection, ColumnIndex, Connection, Database, Decode, Executor, IntoArguments, Row, Transaction, Type};

use crate::db::{Db, Dialect};
use crate::eventlog::{decode_all_unparsed, decode_pg_unparsed, read_pg_rows_in_order, read_rows_in_order, RecordedEvent};
use crate::projections::server::rebuild::{Decoded, Rebuild};
use crate::projections::server::{self, TABLES};

/// Row count and content hash of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFingerprint {
    pub table: String,
    pub rows: i64,
    pub hash: u64,
    /// Each row's text, kept so that a mismatch can name the rows that differ.
    pub row_texts: Vec<String>,
}

impl TableFingerprint {
    /// Rows present in one fingerprint and not the other (at most `max`).
    /// Empty when either side kept only a summary ([`Detail::Summary`]).
    pub fn differing_rows(&self, other: &TableFingerprint, max: usize) -> Vec<String> {
        if (self.row_texts.is_empty() && self.rows > 0) || (other.row_texts.is_empty() && other.rows > 0) {
            return Vec::new();
        }
        let mine: std::collections::HashSet<&String> = self.row_texts.iter().collect();
        let theirs: std::collections::HashSet<&String> = other.row_texts.iter().collect();
        let mut out: Vec<String> = mine.difference(&theirs).map(|r| format!("live:    {r}")).collect();
        out.extend(theirs.difference(&mine).map(|r| format!("rebuilt: {r}")));
        out.sort();
        out.truncate(max);
        out
    }
}

/// What a replay did.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    pub events: i64,
    pub before: Vec<TableFingerprint>,
    pub after: Vec<TableFingerprint>,
}

impl ReplayReport {
    pub fn matches(&self) -> bool {
        self.before == self.after
    }
}

/// How much a fingerprint keeps of each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Only the row count and a hash: on Postgres computed by the database
    /// (the sum of `hashtextextended` of each row's text, so no row crosses
    /// the wire and no order is needed; about 4× cheaper than fetching them).
    Summary,
    /// Every row's text, so that a mismatch can name the rows that differ.
    Rows,
}

/// Fingerprints every server table. SQLite has no hash function, so its
/// rows are always fetched as text (as with [`Detail::Rows`]). Generic over
/// the connection because the COPY rebuild runs on a native Postgres one.
pub async fn fingerprint<C>(conn: &mut C, dialect: Dialect, detail: Detail) -> Result<Vec<TableFingerprint>, sqlx::Error>
where
    C: Connection,
    for<'c> &'c mut C: Executor<'c, Database = C::Database>,
    for<'q> <C::Database as Database>::Arguments<'q>: IntoArguments<'q, C::Database>,
    i64: Type<C::Database> + for<'r> Decode<'r, C::Database>,
    String: Type<C::Database> + for<'r> Decode<'r, C::Database>,
    usize: ColumnIndex<<C::Database as Database>::Row>,
{
    let mut out = Vec::new();
    for table in TABLES {
        if dialect == Dialect::Postgres && detail == Detail::Summary {
            let sql = format!("SELECT CAST(COUNT(*) AS BIGINT), CAST(COALESCE(SUM(hashtextextended(t::text, 0)), 0) AS TEXT) FROM {table} t");
            let row = sqlx::query(&sql).fetch_one(&mut *conn).await?;
            let mut hasher = DefaultHasher::new();
            row.try_get::<String, _>(1)?.hash(&mut hasher);
            out.push(TableFingerprint { table: (*table).to_owned(), rows: row.try_get(0)?, hash: hasher.finish(), row_texts: Vec::new() });
            continue;
        }
        let order = if *table == "task_run_state_cache" { "task_run_state_id, cache_key" } else { "id" };
        let row_texts = row_texts(conn, dialect, table, order).await?;
        let mut hasher = DefaultHasher::new();
        for text in &row_texts {
            text.hash(&mut hasher);
        }
        out.push(TableFingerprint { table: (*table).to_owned(), rows: row_texts.len() as i64, hash: hasher.finish(), row_texts });
    }
    Ok(out)
}

/// Each row's text, in `order`, formatted by the database itself (fetching
/// and formatting every cell here was a fifth of a replay's CPU): on
/// Postgres the row's own text form, on SQLite `column=quote(value)` pairs.
async fn row_texts<C>(conn: &mut C, dialect: Dialect, table: &str, order: &str) -> Result<Vec<String>, sqlx::Error>
where
    C: Connection,
    for<'c> &'c mut C: Executor<'c, Database = C::Database>,
    for<'q> <C::Database as Database>::Arguments<'q>: IntoArguments<'q, C::Database>,
    String: Type<C::Database> + for<'r> Decode<'r, C::Database>,
    usize: ColumnIndex<<C::Database as Database>::Row>,
{
    let text = match dialect {
        Dialect::Postgres => "t::text".to_owned(),
        Dialect::Sqlite => {
            let columns = sqlx::query(&format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid")).fetch_all(&mut *conn).await?;
            let mut parts = Vec::with_capacity(columns.len());
            for column in &columns {
                let name: String = column.try_get(0)?;
                parts.push(format!("'{name}=' || quote(\"{name}\")"));
            }
            parts.join(" || ' ' || ")
        }
    };
    let rows = sqlx::query(&format!("SELECT {text} FROM {table} t ORDER BY {order}")).fetch_all(&mut *conn).await?;
    rows.iter().map(|row| row.try_get::<String, _>(0)).collect()
}

/// Rows the set-based rebuild holds in memory (roughly 1 kB each) before
/// it writes them out and applies the rest of the log per event.
pub const MAX_ROWS_IN_MEMORY: usize = 1_000_000;

/// Empties the server model and re-applies the whole log, committing unless
/// `verify` is set.
pub async fn rebuild_server(db: &Db, verify: bool) -> anyhow::Result<ReplayReport> {
    rebuild_server_with(db, verify, MAX_ROWS_IN_MEMORY).await
}

/// [`rebuild_server`], holding at most about `max_rows` rows in memory.
///
/// The tables start empty inside one transaction, so the events are folded
/// into an in-memory model ([`server::rebuild::Rebuild`]) and the tables are
/// written at the end, instead of running the live path's statements for
/// every event: on Postgres with COPY, which only a native connection can
/// run, so that connection holds the transaction; otherwise with multi-row
/// INSERTs. If the model grows past `max_rows`, the INSERT rebuild writes
/// it out there and the rest of the log goes through the per-event path
/// ([`server::apply`], on the `Any` driver), which continues from the rows
/// it left; the COPY rebuild then rolls back and leaves the log to it.
///
/// The live model is fingerprinted and emptied while the log is folded:
/// the fold reads the log on its own connection and never touches the
/// tables, so the database's fingerprint work overlaps the fold's CPU.
pub async fn rebuild_server_with(db: &Db, verify: bool, max_rows: usize) -> anyhow::Result<ReplayReport> {
    if let Some(mut conn) = db.connect_postgres().await? {
        let report = rebuild_with_copy(db, &mut conn, verify, max_rows).await?;
        conn.close().await?;
        if let Some(report) = report {
            return Ok(report);
        }
        tracing::info!(max_rows, "replay: the model outgrew memory; replaying again, per event past that point");
    }
    rebuild_with_inserts(db, verify, max_rows).await
}

/// The rebuild on a native Postgres connection, writing with COPY; `None`
/// (and nothing changed) if the model outgrew `max_rows`.
async fn rebuild_with_copy(db: &Db, conn: &mut PgConnection, verify: bool, max_rows: usize) -> anyhow::Result<Option<ReplayReport>> {
    let mut tx = conn.begin().await?;
    let mut batches = read_ahead(db.clone());
    let (before, folded) = tokio::join!(fingerprint_and_empty(&mut *tx, Dialect::Postgres), fold_log(&mut batches, max_rows));
    let (before, folded) = (before?, folded?);
    if folded.rest.is_some() {
        tx.rollback().await?;
        return Ok(None);
    }
    let started = std::time::Instant::now();
    let rows = folded.rebuild.copy(&mut tx).await?;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), rows, "replay: wrote the rebuilt model");
    let (before, after) = finish(tx, db, before, verify).await?;
    Ok(Some(ReplayReport { events: folded.events, before, after }))
}

/// The rebuild on the `Any` driver, writing with INSERTs and going on per
/// event past `max_rows`.
async fn rebuild_with_inserts(db: &Db, verify: bool, max_rows: usize) -> anyhow::Result<ReplayReport> {
    let dialect = db.dialect;
    let mut tx = db.begin_write().await?;
    let mut batches = read_ahead(db.clone());
    let (before, folded) = tokio::join!(fingerprint_and_empty(&mut *tx, dialect), fold_log(&mut batches, max_rows));
    let (before, folded) = (before?, folded?);
    let mut events = folded.events;
    let started = std::time::Instant::now();
    let rows = folded.rebuild.write(&mut tx, dialect).await?;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), rows, "replay: wrote the rebuilt model");
    if let Some(rest) = folded.rest {
        events += apply_all(&mut tx, dialect, rest).await?;
        while let Some(batch) = batches.recv().await {
            events += apply_all(&mut tx, dialect, batch?.into_iter().map(Decoded::into_event).collect::<Result<_, _>>()?).await?;
        }
    }
    let (before, after) = finish(tx, db, before, verify).await?;
    Ok(ReplayReport { events, before, after })
}

/// Fingerprints the live model, then empties its tables.
async fn fingerprint_and_empty<C>(conn: &mut C, dialect: Dialect) -> Result<Vec<TableFingerprint>, sqlx::Error>
where
    C: Connection,
    for<'c> &'c mut C: Executor<'c, Database = C::Database>,
    for<'q> <C::Database as Database>::Arguments<'q>: IntoArguments<'q, C::Database>,
    i64: Type<C::Database> + for<'r> Decode<'r, C::Database>,
    String: Type<C::Database> + for<'r> Decode<'r, C::Database>,
    usize: ColumnIndex<<C::Database as Database>::Row>,
{
    let started = std::time::Instant::now();
    let before = fingerprint(conn, dialect, Detail::Summary).await?;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "replay: fingerprinted the live model");
    for table in TABLES {
        let sql = match dialect {
            Dialect::Postgres => format!("TRUNCATE {table}"),
            Dialect::Sqlite => format!("DELETE FROM {table}"),
        };
        sqlx::query(&sql).execute(&mut *conn).await?;
    }
    Ok(before)
}

/// What [`fold_log`] left.
struct Folded {
    rebuild: Rebuild,
    /// Events folded.
    events: i64,
    /// When the model reached its limit: the events of the batch at hand
    /// that were not folded (the later batches are still to be received).
    rest: Option<Vec<RecordedEvent>>,
}

/// Folds the log into a new model until the log ends or the model holds
/// `max_rows` rows.
async fn fold_log(batches: &mut Batches, max_rows: usize) -> anyhow::Result<Folded> {
    let started = std::time::Instant::now();
    let mut rebuild = Rebuild::default();
    let mut events = 0i64;
    let mut rest = None;
    let mut folding = std::time::Duration::ZERO;
    while let Some(batch) = batches.recv().await {
        let mut batch = batch?;
        let fold_started = std::time::Instant::now();
        tracing::debug!(model = "server", events = batch.len(), "replay batch");
        let mut full_after = None;
        for (i, event) in batch.iter_mut().enumerate() {
            rebuild.fold(event)?;
            if rebuild.rows_held() >= max_rows {
                full_after = Some(i + 1);
                break;
            }
        }
        events += full_after.unwrap_or(batch.len()) as i64;
        rest = full_after.map(|i| batch.split_off(i).into_iter().map(Decoded::into_event).collect::<Result<_, _>>()).transpose()?;
        drop_in_background(batch);
        folding += fold_started.elapsed();
        if rest.is_some() {
            break;
        }
    }
    tracing::info!(seconds = folding.as_secs_f64(), "replay: of which folding");
    tracing::info!(seconds = started.elapsed().as_secs_f64(), events, "replay: read and folded the log");
    Ok(Folded { rebuild, events, rest })
}

/// Applies each event through the per-event path; returns how many.
async fn apply_all(conn: &mut AnyConnection, dialect: Dialect, batch: Vec<RecordedEvent>) -> anyhow::Result<i64> {
    for event in &batch {
        server::apply(conn, dialect, event).await?;
    }
    let events = batch.len() as i64;
    drop_in_background(batch);
    Ok(events)
}

/// Frees a batch on a blocking thread: freeing a batch's JSON trees took a
/// tenth of the replay's CPU, on the fold's thread.
fn drop_in_background<T: Send + 'static>(batch: Vec<T>) {
    tokio::task::spawn_blocking(move || drop(batch));
}

/// Fingerprints the rebuilt model and commits it, or rolls it back under
/// `verify`. Returns the fingerprints before and after.
///
/// When `verify` finds a difference, it names the rows that differ: the
/// rebuilt ones before the rollback, the live ones once it has brought them
/// back. (A committed rebuild replaces the live rows, so without `--verify`
/// only the tables that differ are reported.)
async fn finish<DB>(
    mut tx: Transaction<'_, DB>,
    db: &Db,
    before: Vec<TableFingerprint>,
    verify: bool,
) -> Result<(Vec<TableFingerprint>, Vec<TableFingerprint>), sqlx::Error>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: Type<DB> + for<'r> Decode<'r, DB>,
    String: Type<DB> + for<'r> Decode<'r, DB>,
    usize: ColumnIndex<DB::Row>,
{
    let started = std::time::Instant::now();
    let mut after = fingerprint(&mut *tx, db.dialect, Detail::Summary).await?;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "replay: fingerprinted the rebuilt model");
    let mut before = before;
    let summarised = before.iter().any(|t| t.row_texts.is_empty() && t.rows > 0);
    if verify && before != after && summarised {
        after = fingerprint(&mut *tx, db.dialect, Detail::Rows).await?;
        tx.rollback().await?;
        let mut conn = db.reader().acquire().await?;
        before = fingerprint::<AnyConnection>(&mut conn, db.dialect, Detail::Rows).await?;
    } else if verify {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok((before, after))
}

/// Decoded batches of the log, in order, from [`read_ahead`].
type Batches = tokio::sync::mpsc::Receiver<Result<Vec<Decoded>, sqlx::Error>>;

/// Events read from the log per query.
const REPLAY_BATCH: i64 = 5000;

/// Reads the whole log in order on a connection of its own, ahead of the
/// fold: a batch is fetched while the one before is decoded (on a blocking
/// thread) and the one before that is folded, so the three use both cores.
/// Fetching and decoding were two thirds of a replay's CPU. The log is
/// append-only and the replay transaction only touches the read model, so
/// reading outside it sees the same events; on SQLite the replay holds the
/// only writer, so nothing is appended meanwhile.
fn read_ahead(db: Db) -> Batches {
    let (sender, receiver) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        if let Err(e) = feed(&db, &sender).await {
            let _ = sender.send(Err(e)).await;
        }
    });
    receiver
}

/// [`read_ahead`]'s task: fetches batches and hands each to a decoder,
/// sending the decoded batches in order.
async fn feed(db: &Db, sender: &tokio::sync::mpsc::Sender<Result<Vec<Decoded>, sqlx::Error>>) -> Result<(), sqlx::Error> {
    let mut reader = LogReader::open(db).await?;
    let mut after_position = 0;
    let mut decoding: Option<tokio::task::JoinHandle<Result<Vec<Decoded>, sqlx::Error>>> = None;
    loop {
        let (rows, last) = reader.read(after_position).await?;
        if let Some(previous) = decoding.take() {
            let batch = previous.await.map_err(|e| sqlx::Error::Protocol(format!("decoding the log failed: {e}")))?;
            if sender.send(batch).await.is_err() {
                return Ok(());
            }
        }
        let Some(last) = last else { return reader.close().await };
        after_position = last;
        decoding = Some(tokio::spawn(decode_in_halves(rows)));
    }
}

/// The connection [`feed`] reads the log on: a native one on Postgres,
/// whose binary column formats spare both sides the uuid and timestamp
/// text conversions ([`read_pg_rows_in_order`]), else the `Any` pool's.
enum LogReader {
    Postgres(PgConnection),
    Any(sqlx::pool::PoolConnection<sqlx::Any>, Dialect),
}

/// A fetched batch of log rows, not yet decoded.
enum LogRows {
    Postgres(Vec<sqlx::postgres::PgRow>),
    Any(Vec<sqlx::any::AnyRow>),
}

impl LogReader {
    async fn open(db: &Db) -> Result<LogReader, sqlx::Error> {
        Ok(match db.connect_postgres().await? {
            Some(conn) => LogReader::Postgres(conn),
            None => LogReader::Any(db.reader().acquire().await?, db.dialect),
        })
    }

    async fn read(&mut self, after_position: i64) -> Result<(LogRows, Option<i64>), sqlx::Error> {
        Ok(match self {
            LogReader::Postgres(conn) => {
                let (rows, last) = read_pg_rows_in_order(conn, after_position, REPLAY_BATCH).await?;
                (LogRows::Postgres(rows), last)
            }
            LogReader::Any(conn, dialect) => {
                let (rows, last) = read_rows_in_order(conn, *dialect, after_position, REPLAY_BATCH).await?;
                (LogRows::Any(rows), last)
            }
        })
    }

    async fn close(self) -> Result<(), sqlx::Error> {
        match self {
            LogReader::Postgres(conn) => conn.close().await,
            LogReader::Any(..) => Ok(()),
        }
    }
}

impl LogRows {
    fn split_off(&mut self, at: usize) -> LogRows {
        match self {
            LogRows::Postgres(rows) => LogRows::Postgres(rows.split_off(at)),
            LogRows::Any(rows) => LogRows::Any(rows.split_off(at)),
        }
    }

    fn len(&self) -> usize {
        match self {
            LogRows::Postgres(rows) => rows.len(),
            LogRows::Any(rows) => rows.len(),
        }
    }

    fn decode(&self) -> Result<Vec<Decoded>, sqlx::Error> {
        let unparsed = match self {
            LogRows::Postgres(rows) => decode_pg_unparsed(rows)?,
            LogRows::Any(rows) => decode_all_unparsed(rows)?,
        };
        unparsed
            .into_iter()
            .map(|(event, payload)| Decoded::new(event, payload).map_err(|e| sqlx::Error::Decode(Box::new(e))))
            .collect()
    }
}

/// Decodes a fetched batch on two blocking threads, a half each: decoding
/// (JSON parsing and the rows built ahead for the fold) costs more than the
/// fold itself, so one decoding thread would hold the fold back.
async fn decode_in_halves(mut rows: LogRows) -> Result<Vec<Decoded>, sqlx::Error> {
    let second = rows.split_off(rows.len() / 2);
    let decode = |rows: LogRows| tokio::task::spawn_blocking(move || rows.decode());
    let (first, second) = tokio::join!(decode(rows), decode(second));
    let failed = |e: tokio::task::JoinError| sqlx::Error::Protocol(format!("decoding the log failed: {e}"));
    let mut first = first.map_err(failed)??;
    first.extend(second.map_err(failed)??);
    Ok(first)
}

/// Rebuilds the events model: empties it, rewinds the projector's
/// checkpoint and projects the whole log again. Returns the events stored.
pub async fn rebuild_events(db: &Db) -> anyhow::Result<i64> {
    use crate::events_model::projector;
    let mut tx = db.begin_write().await?;
    projector::load_checkpoint(&mut tx, db.dialect, projector::CHECKPOINT).await?;
    for table in projector::TABLES {
        sqlx::query(&format!("DELETE FROM {table}")).execute(&mut *tx).await?;
    }
    projector::save_checkpoint(&mut tx, db.dialect, projector::CHECKPOINT, Default::default()).await?;
    tx.commit().await?;
    while projector::project_batch(db, 5000).await? > 0 {}
    let row = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM events").fetch_one(db.reader()).await?;
    Ok(row.try_get::<i64, _>(0)?)
}

/// `prefect-server replay <model>`.
pub async fn run_cli(db: &Db, model: &str, verify: bool) -> anyhow::Result<ExitCode> {
    if model == "events" {
        if verify {
            anyhow::bail!("--verify is only available for the server model");
        }
        let started = std::time::Instant::now();
        let n = rebuild_events(db).await?;
        println!("rebuilt the events model from the log: {n} events in {:.2}s", started.elapsed().as_secs_f64());
        return Ok(ExitCode::SUCCESS);
    }
    if model != "server" {
        anyhow::bail!("unknown read model {model:?}: the models that can be replayed are: server, events");
    }
    let started = std::time::Instant::now();
    let report = rebuild_server(db, verify).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replayed {} events into the server model in {:.2}s ({:.0} events/s){}",
        report.events,
        secs,
        report.events as f64 / secs.max(1e-9),
        if verify { " (verify: rolled back)" } else { "" }
    );
    for (b, a) in report.before.iter().zip(&report.after) {
        let mark = if b == a { "same" } else { "DIFFERENT" };
        println!("  {:<22} live {:>8} rows  rebuilt {:>8} rows  {mark}", a.table, b.rows, a.rows);
        if b != a {
            for line in b.differing_rows(a, 6) {
                println!("      {line}");
            }
        }
    }
    if report.matches() {
        println!("rebuilt model matches the live model");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("rebuilt model DIFFERS from the live model");
        Ok(ExitCode::from(3))
    }
}
