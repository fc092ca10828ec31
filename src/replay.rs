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

use sqlx::{AnyConnection, Column, Row};

use crate::db::{Db, Dialect};
use crate::eventlog::read_all_in_order;
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
    pub fn differing_rows(&self, other: &TableFingerprint, max: usize) -> Vec<String> {
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

fn cell_text(row: &sqlx::any::AnyRow, i: usize) -> String {
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return format!("{v:?}");
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return format!("{v:?}");
    }
    if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
        return format!("{v:?}");
    }
    "?".into()
}

/// Hashes every row of every server table, in a stable order.
pub async fn fingerprint(conn: &mut AnyConnection) -> Result<Vec<TableFingerprint>, sqlx::Error> {
    let mut out = Vec::new();
    for table in TABLES {
        let order = if *table == "task_run_state_cache" { "task_run_state_id, cache_key" } else { "id" };
        let rows = sqlx::query(&format!("SELECT * FROM {table} ORDER BY {order}")).fetch_all(&mut *conn).await?;
        let mut hasher = DefaultHasher::new();
        let mut row_texts = Vec::with_capacity(rows.len());
        for row in &rows {
            let text = row
                .columns()
                .iter()
                .enumerate()
                .map(|(i, col)| format!("{}={}", col.name(), cell_text(row, i)))
                .collect::<Vec<_>>()
                .join(" ");
            text.hash(&mut hasher);
            row_texts.push(text);
        }
        out.push(TableFingerprint { table: (*table).to_owned(), rows: rows.len() as i64, hash: hasher.finish(), row_texts });
    }
    Ok(out)
}

/// Empties the server model and re-applies the whole log, committing unless
/// `verify` is set.
pub async fn rebuild_server(db: &Db, verify: bool) -> anyhow::Result<ReplayReport> {
    let mut tx = db.begin_write().await?;
    let dialect = db.dialect;
    let before = fingerprint(&mut tx).await?;
    for table in TABLES {
        let sql = match dialect {
            Dialect::Postgres => format!("TRUNCATE {table}"),
            Dialect::Sqlite => format!("DELETE FROM {table}"),
        };
        sqlx::query(&sql).execute(&mut *tx).await?;
    }
    let mut after_position = 0;
    let mut events = 0i64;
    loop {
        let batch = read_all_in_order(&mut tx, dialect, after_position, 2000).await?;
        let Some(last) = batch.last() else { break };
        after_position = last.position;
        tracing::debug!(model = "server", events = batch.len(), to = after_position, "replay batch");
        for event in &batch {
            server::apply(&mut tx, dialect, event).await?;
        }
        events += batch.len() as i64;
    }
    let after = fingerprint(&mut tx).await?;
    if verify {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(ReplayReport { events, before, after })
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
        for line in b.differing_rows(a, 6) {
            println!("      {line}");
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
