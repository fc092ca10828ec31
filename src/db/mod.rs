//! Database access for both backends through sqlx's `Any` driver.
//!
//! The log and the read models are written with portable SQL (`$n`
//! placeholders, rewritten for SQLite). Writes go through [`Db::write_tx`]:
//! on SQLite a single-connection pool queues writers instead of letting them
//! fail with "database is locked"; on Postgres writers run concurrently and
//! serialise per stream with advisory locks (see `eventlog`).

pub mod sealed;
pub mod sql;
pub mod text_search;
pub mod timestamp;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Any, AnyPool, ConnectOptions, Executor, Transaction};
use tokio::sync::Notify;

use crate::config::DatabaseUrl;
pub use sql::{Bind, Dialect, Sql};

/// The server read model's DDL (portable between both backends).
pub const SERVER_PROJECTION_DDL: &str = include_str!("../../projections/server/schema.sql");

/// The events read model's DDL.
pub const EVENTS_PROJECTION_DDL: &str = include_str!("../../projections/events/schema.sql");

/// Postgres-only settings of the events read model. `events` is append-only,
/// so by default autovacuum visits it only after 20% of its size has been
/// inserted (200,000 rows at 1M), and until then the pages of the latest
/// events are not all-visible: the feed's `total` (an index-only COUNT over
/// the time window, see schema.sql) must then check each of those rows in the
/// heap (last hour at 1M events: 1.5 ms vacuumed, ~10 ms not). Vacuuming after
/// every 1,000 inserted rows keeps the recent window index-only; a vacuum of
/// an insert-only table only reads the pages added since the last one.
///
/// Set only when not set yet, so that a restart takes no lock on the table.
pub const EVENTS_PROJECTION_PG_TUNING: &str = "DO $$ BEGIN \
    IF NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = 'events'::regclass \
        AND reloptions @> ARRAY['autovacuum_vacuum_insert_threshold=1000', 'autovacuum_vacuum_insert_scale_factor=0']) THEN \
        ALTER TABLE events SET (autovacuum_vacuum_insert_threshold = 1000, autovacuum_vacuum_insert_scale_factor = 0); \
    END IF; END $$";

/// Run on every Postgres connection: timestamps are read and written in UTC.
const PG_SESSION_SETUP: &str = "SET TIME ZONE 'UTC'";

/// Connection pools for one database.
#[derive(Clone, Debug)]
pub struct Db {
    pub dialect: Dialect,
    read: AnyPool,
    write: AnyPool,
    /// Signalled after every commit that appended to the log, so followers
    /// in this process wake at once (they also poll, for other processes).
    pub appended: Arc<Notify>,
    /// On Postgres, how to open a native connection ([`Db::connect_postgres`]).
    postgres: Option<PgConnectOptions>,
    /// The key block document data is sealed with, loaded by [`Db::migrate`].
    block_key: Arc<std::sync::OnceLock<Arc<sealed::DataKey>>>,
}

impl Db {
    /// Connects, creating the SQLite file (and its directory) if needed.
    pub async fn connect(url: &DatabaseUrl, pool_size: u32) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        match url {
            DatabaseUrl::Postgres(url) => {
                let opts = AnyConnectOptions::from_str(url)?.disable_statement_logging();
                let postgres = Some(PgConnectOptions::from_str(url)?.disable_statement_logging());
                let pool = AnyPoolOptions::new()
                    .max_connections(pool_size.max(2))
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(PG_SESSION_SETUP).await?;
                            Ok(())
                        })
                    })
                    .connect_with(opts)
                    .await?;
                Ok(Db { dialect: Dialect::Postgres, read: pool.clone(), write: pool, appended: Arc::new(Notify::new()), postgres, block_key: Default::default() })
            }
            DatabaseUrl::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                let url = format!("sqlite://{}?mode=rwc", path.display());
                let opts = AnyConnectOptions::from_str(&url)?.disable_statement_logging();
                // One writer: writes queue on the pool (up to the acquire
                // timeout) rather than racing for SQLite's lock.
                let write = AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(300))
                    .after_connect(sqlite_pragmas)
                    .connect_with(opts.clone())
                    .await?;
                let read = AnyPoolOptions::new()
                    .max_connections(pool_size.max(2))
                    .acquire_timeout(Duration::from_secs(60))
                    .after_connect(sqlite_pragmas)
                    .connect_with(opts)
                    .await?;
                Ok(Db { dialect: Dialect::Sqlite, read, write, appended: Arc::new(Notify::new()), postgres: None, block_key: Default::default() })
            }
        }
    }

    /// Applies the log migrations and creates the read-model tables.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self.dialect {
            Dialect::Postgres => sqlx::migrate!("./migrations/postgres").run(&self.write).await?,
            Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&self.write).await?,
        }
        self.write.execute(SERVER_PROJECTION_DDL).await?;
        self.write.execute(EVENTS_PROJECTION_DDL).await?;
        if self.dialect == Dialect::Postgres {
            self.write.execute(EVENTS_PROJECTION_PG_TUNING).await?;
        }
        self.load_block_key().await
    }

    /// Reads the block data key, making it on the first start only (later
    /// starts just read it). Concurrent first starts agree: only one insert
    /// wins and both read it back.
    async fn load_block_key(&self) -> anyhow::Result<()> {
        if self.block_key.get().is_some() {
            return Ok(());
        }
        let select = self.dialect.rewrite("SELECT value FROM server_secret WHERE name = $1");
        let stored: Option<String> = sqlx::query_scalar(&select).bind(sealed::KEY_NAME).fetch_optional(&self.write).await?;
        let text = match stored {
            Some(text) => text,
            None => {
                let insert = self.dialect.rewrite("INSERT INTO server_secret (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING");
                sqlx::query(&insert).bind(sealed::KEY_NAME).bind(sealed::DataKey::generate()?).execute(&self.write).await?;
                sqlx::query_scalar(&select).bind(sealed::KEY_NAME).fetch_one(&self.write).await?
            }
        };
        let _ = self.block_key.set(Arc::new(sealed::DataKey::from_stored(&text)?));
        Ok(())
    }

    /// The key block document data is sealed with.
    pub fn block_key(&self) -> Result<Arc<sealed::DataKey>, anyhow::Error> {
        self.block_key.get().cloned().ok_or_else(|| anyhow::anyhow!("the block data key is loaded by Db::migrate, which has not run"))
    }

    /// The pool for queries that only read.
    pub fn reader(&self) -> &AnyPool {
        &self.read
    }

    /// Starts a write transaction.
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        self.write.begin().await
    }

    /// A native Postgres connection to the same database, outside the pools
    /// and set up as theirs are, for what the `Any` driver cannot do (COPY).
    /// `None` on SQLite.
    pub async fn connect_postgres(&self) -> Result<Option<PgConnection>, sqlx::Error> {
        let Some(options) = &self.postgres else { return Ok(None) };
        let mut conn = options.connect().await?;
        conn.execute(PG_SESSION_SETUP).await?;
        Ok(Some(conn))
    }

    /// Rewrites a `$n` query for this backend.
    pub fn q(&self, sql: &str) -> String {
        self.dialect.rewrite(sql)
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// Per-connection SQLite settings: WAL (readers never block the writer),
/// full fsync on commit (an acknowledged write survives power loss), and a
/// busy timeout as a last resort behind the single-writer pool.
fn sqlite_pragmas(
    conn: &mut sqlx::AnyConnection,
    _meta: sqlx::pool::PoolConnectionMetadata,
) -> futures_util::future::BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 30000; PRAGMA foreign_keys = OFF;")
            .await?;
        Ok(())
    })
}

/// Statements with more parameters than this are not kept prepared.
///
/// Batched writes build multi-row statements whose size follows the batch
/// (1 to 1,000 rows), so almost every one is new text. Kept prepared, each
/// would sit in the connection's statement cache (100 per connection) and
/// in its Postgres backend as a cached plan: grouped `/events/in` appends
/// doubled the server's RSS that way (96 -> 208 MB after 1,500 lifecycle
/// runs). The small statements that do repeat stay prepared.
const MAX_PREPARED_PARAMS: usize = 64;

/// Binds a list of [`Bind`] values onto an `Any` query.
pub fn bind_all<'q>(
    query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    binds: &'q [Bind],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    bind_chunk(query, binds, false)
}

/// [`bind_all`] for one chunk of a chunked multi-row write. A full chunk
/// (every chunk but the last has the same size) has the same text every
/// time, so it stays prepared however many parameters it has: re-planning
/// the events projector's full chunks cost ingestion about a sixth.
pub fn bind_chunk<'q>(
    mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    binds: &'q [Bind],
    full_chunk: bool,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    if binds.len() > MAX_PREPARED_PARAMS && !full_chunk {
        query = query.persistent(false);
    }
    for b in binds {
        query = match b {
            Bind::Text(s) => query.bind(s.as_str()),
            Bind::Int(v) => query.bind(*v),
            Bind::Float(v) => query.bind(*v),
            Bind::Null => query.bind(Option::<String>::None),
            Bind::NullInt => query.bind(Option::<i64>::None),
        };
    }
    query
}

/// Is this error one a retry can cure (deadlock, serialization failure, a
/// busy SQLite file)?
pub fn is_retryable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            matches!(code.as_str(), "40P01" | "40001" | "5" | "6" | "261" | "517")
                || db.message().contains("database is locked")
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => true,
        _ => false,
    }
}

/// Is this error a unique-constraint violation?
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || matches!(db.code().as_deref(), Some("23505") | Some("2067") | Some("1555"))
        }
        _ => false,
    }
}
