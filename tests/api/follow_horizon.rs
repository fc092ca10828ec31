//! How far a Postgres follower may read: never past a transaction of its own
//! database that may still append (an event committing late would fall
//! behind its cursor), yet not held back by transactions of other databases
//! on the same server, however long they last.

use prefect_server::config::DatabaseUrl;
use prefect_server::db::Db;
use prefect_server::eventlog::{append, read_after, tail_cursor, Cursor, ExpectedVersion, NewEvent, StreamRef, StreamType};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{postgres_admin_url, spawn_app, Backend, TestApp};

fn event() -> NewEvent {
    NewEvent::new(Uuid::now_v7(), "test.followed", chrono::Utc::now(), json!({}))
}

/// Appends one event to a new stream and commits it.
async fn append_committed(db: &Db) -> Uuid {
    let ev = event();
    let id = ev.event_id;
    let mut tx = db.begin_write().await.unwrap();
    append(&mut tx, db.dialect, StreamRef::new(StreamType::Flow, Uuid::now_v7()), ExpectedVersion::NoStream, vec![ev]).await.unwrap();
    tx.commit().await.unwrap();
    id
}

/// The ids, in follow order, of the given events a follower reads from the
/// start of the log now.
async fn followed(app: &TestApp, among: &[Uuid]) -> Vec<Uuid> {
    let mut conn = app.db.reader().acquire().await.unwrap();
    let read = read_after(&mut conn, app.db.dialect, Cursor::default(), 100_000).await.unwrap();
    read.iter().map(|e| e.event_id).filter(|id| among.contains(id)).collect()
}

async fn tail(app: &TestApp) -> Cursor {
    let mut conn = app.db.reader().acquire().await.unwrap();
    tail_cursor(&mut conn, app.db.dialect).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appender_in_flight_in_this_database_holds_followers_before_it() {
    let app = spawn_app(Backend::Postgres).await;
    // Given an appender that took its transaction id first and has not committed
    let other = Db::connect(&app.settings.database, 2).await.unwrap();
    let mut late = other.begin_write().await.unwrap();
    let late_event = event();
    let late_id = late_event.event_id;
    let stream = StreamRef::new(StreamType::Flow, Uuid::now_v7());
    append(&mut late, other.dialect, stream, ExpectedVersion::NoStream, vec![late_event]).await.unwrap();
    // When a later transaction commits an event
    let committed = append_committed(&app.db).await;
    // Then a follower does not read it yet: the late one would fall behind
    // its cursor; the tail stops before both.
    assert_eq!(followed(&app, &[late_id, committed]).await, Vec::<Uuid>::new());
    let before = tail(&app).await;
    // When the late appender commits, both are read, in commit-id order
    // (once the server's own short transactions that began before them end).
    late.commit().await.unwrap();
    let both = [late_id, committed];
    app.wait_for("both events to be followed", || async { (followed(&app, &both).await.len() == 2).then_some(()) }).await;
    assert_eq!(followed(&app, &both).await, vec![late_id, committed]);
    assert!(tail(&app).await > before);
    other.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_in_flight_in_another_database_does_not_hold_followers() {
    let app = spawn_app(Backend::Postgres).await;
    // Given a transaction with an id, left open in another database of the server
    let foreign = Db::connect(&DatabaseUrl::parse(&postgres_admin_url()).unwrap(), 1).await.unwrap();
    let mut open = foreign.begin_write().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()::text AS xid").fetch_one(&mut *open).await.unwrap();
    // When an event commits here
    let committed = append_committed(&app.db).await;
    // Then a follower reads it while that transaction is still open (the
    // server's own short transactions may delay it, the open one does not),
    // and the tail is past it
    app.wait_for("the event to be followed", || async { (followed(&app, &[committed]).await == vec![committed]).then_some(()) }).await;
    let mut conn = app.db.reader().acquire().await.unwrap();
    let all = read_after(&mut conn, app.db.dialect, Cursor::default(), 100_000).await.unwrap();
    let at = all.iter().find(|e| e.event_id == committed).unwrap();
    assert!(tail(&app).await >= Cursor { tx_id: at.tx_id, position: at.position });
    open.rollback().await.unwrap();
    foreign.close().await;
}
