//! The set-based rebuild used by `prefect-server replay server`.
//!
//! Replay starts from empty tables inside one transaction, so it need not
//! run the per-event SQL (several statements per event, ~2,500 events/s):
//! it folds the events into an in-memory copy of the model ([`fold`], pure,
//! with the same row builders and the same semantics as
//! [`super::apply`]) and then writes each table: on Postgres with COPY
//! ([`copy`]), on SQLite with multi-row INSERTs ([`write`]). The live
//! projector keeps using the per-event path.
//!
//! Memory grows with the model: the caller watches [`Rebuild::rows_held`],
//! and past its limit writes what it holds and applies the rest of the log
//! per event (on Postgres, through INSERTs: see `crate::replay`).

mod copy;
mod fold;
mod model;
mod write;

use sqlx::postgres::PgConnection;
use sqlx::AnyConnection;

use super::ProjectionError;
use crate::db::Dialect;
use crate::eventlog::RecordedEvent;

/// A log entry decoded for the fold, with the rows the fold would build
/// from its payload built ahead where that is pure (client task-run
/// events, most of a busy log), so that the decoding thread does that work
/// and the fold's thread, the replay's bottleneck, does less.
#[derive(Debug)]
pub struct Decoded {
    pub event: RecordedEvent,
    rows: Option<fold::RecorderRows>,
}

impl Decoded {
    pub fn new(event: RecordedEvent) -> Decoded {
        let rows = fold::recorder_rows(&event);
        Decoded { event, rows }
    }
}

/// The server model being rebuilt in memory.
#[derive(Debug, Default)]
pub struct Rebuild {
    model: model::Model,
}

impl Rebuild {
    /// Applies one event (in log order) to the model.
    pub fn fold(&mut self, decoded: &mut Decoded) -> Result<(), ProjectionError> {
        fold::fold(&mut self.model, &decoded.event, decoded.rows.take())
    }

    /// Rows inserted into the model so far (deleted ones included): a
    /// bound on the memory it holds.
    pub fn rows_held(&self) -> usize {
        self.model.inserted()
    }

    /// Writes the model into the server tables, which must be empty.
    /// Returns the rows written.
    pub async fn write(self, conn: &mut AnyConnection, dialect: Dialect) -> Result<u64, sqlx::Error> {
        write::write(conn, dialect, self.model).await
    }

    /// Writes the model into the server tables, which must be empty, with
    /// Postgres's COPY. Returns the rows written.
    pub async fn copy(self, conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
        copy::write(conn, self.model).await
    }
}
