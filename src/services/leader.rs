//! One active services process: leader election with a Postgres session
//! advisory lock held on a dedicated connection. A second `services` process
//! waits; if the leader dies its connection closes, the lock is released and
//! the waiting process takes over within one poll. SQLite is single-host and
//! single-writer, so there is nothing to elect.

use std::time::Duration;

use sqlx::any::AnyConnectOptions;
use sqlx::{ConnectOptions, Connection, Row};

use crate::config::{DatabaseUrl, Settings};

/// The advisory lock key of the services leader (an arbitrary constant).
pub const LEADER_LOCK_KEY: i64 = 0x5052_4546_4543_5401; // "PREFECT" + 1
/// How often a waiting process retries, and the leader checks its lock.
pub const POLL: Duration = Duration::from_secs(1);

/// Holds leadership for as long as it lives (Postgres), or trivially (SQLite).
pub struct Leadership {
    conn: Option<sqlx::AnyConnection>,
}

impl Leadership {
    /// Waits until this process is the services leader.
    pub async fn acquire(settings: &Settings) -> anyhow::Result<Leadership> {
        let DatabaseUrl::Postgres(url) = &settings.database else {
            return Ok(Leadership { conn: None });
        };
        let mut announced = false;
        loop {
            match try_acquire(url).await {
                Ok(Some(conn)) => {
                    tracing::info!("this process is the services leader");
                    return Ok(Leadership { conn: Some(conn) });
                }
                Ok(None) if !announced => {
                    tracing::info!("another services process is active; waiting to take over");
                    announced = true;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "leader election failed; retrying"),
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Resolves when leadership is lost (the lock connection failed).
    pub async fn lost(mut self) {
        let Some(conn) = self.conn.as_mut() else { return std::future::pending().await };
        loop {
            tokio::time::sleep(POLL).await;
            if sqlx::query("SELECT 1").execute(&mut *conn).await.is_err() {
                tracing::warn!("lost the services leader lock connection");
                return;
            }
        }
    }
}

async fn try_acquire(url: &str) -> anyhow::Result<Option<sqlx::AnyConnection>> {
    sqlx::any::install_default_drivers();
    let opts: AnyConnectOptions = url.parse::<AnyConnectOptions>()?.disable_statement_logging();
    let mut conn = opts.connect().await?;
    let row = sqlx::query("SELECT CASE WHEN pg_try_advisory_lock($1) THEN 1 ELSE 0 END AS got")
        .bind(LEADER_LOCK_KEY)
        .fetch_one(&mut conn)
        .await?;
    if row.try_get::<i32, _>("got")? == 1 {
        Ok(Some(conn))
    } else {
        conn.close().await?;
        Ok(None)
    }
}
