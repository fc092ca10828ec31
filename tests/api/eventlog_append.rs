//! The append contract the write paths rely on, on both backends: the next
//! version is computed and checked inside the INSERT, an expectation that
//! does not hold appends nothing, and a resent event id is skipped.

use prefect_server::eventlog::{append, lock_stream, AppendError, ExpectedVersion, NewEvent, StreamRef, StreamType};
use serde_json::json;
use uuid::Uuid;

use crate::both_backends;
use crate::helpers::TestApp;

fn event() -> NewEvent {
    NewEvent::new(Uuid::now_v7(), "test.appended", chrono::Utc::now(), json!({}))
}

both_backends!(appends_check_their_expected_version_in_one_statement, |app: TestApp| async move {
    let stream = StreamRef::new(StreamType::Flow, Uuid::now_v7());
    let d = app.db.dialect;
    let mut tx = app.db.begin_write().await.unwrap();

    let first = append(&mut tx, d, stream, ExpectedVersion::NoStream, vec![event(), event()]).await.unwrap();
    assert_eq!(first.iter().map(|e| e.stream_version).collect::<Vec<_>>(), vec![1, 2]);

    // A stream that exists is not "no stream"; a stale version is refused
    // with the actual one; neither appends anything.
    let refused = append(&mut tx, d, stream, ExpectedVersion::NoStream, vec![event()]).await;
    assert!(matches!(refused, Err(AppendError::WrongExpectedVersion { actual: 2, .. })), "{refused:?}");
    let refused = append(&mut tx, d, stream, ExpectedVersion::Exact(1), vec![event()]).await;
    assert!(matches!(refused, Err(AppendError::WrongExpectedVersion { actual: 2, .. })), "{refused:?}");

    // Any appends at the next version; Locked (the caller holds the lock)
    // checks the version it read.
    let any = append(&mut tx, d, stream, ExpectedVersion::Any, vec![event()]).await.unwrap();
    assert_eq!(any[0].stream_version, 3);
    lock_stream(&mut tx, d, &stream).await.unwrap();
    let stale = append(&mut tx, d, stream, ExpectedVersion::Locked(2), vec![event()]).await;
    assert!(matches!(stale, Err(AppendError::WrongExpectedVersion { actual: 3, .. })), "{stale:?}");
    let resent = first[0].event_id;
    let mut again = event();
    again.event_id = resent;
    let locked = append(&mut tx, d, stream, ExpectedVersion::Locked(3), vec![again, event()]).await.unwrap();
    // The resend is skipped, the new event takes version 4.
    assert_eq!(locked.iter().map(|e| e.stream_version).collect::<Vec<_>>(), vec![4]);
    tx.commit().await.unwrap();

    let versions = prefect_server::eventlog::stream_version(&mut app.db.reader().acquire().await.unwrap(), d, &stream).await.unwrap();
    assert_eq!(versions, 4);
});

/// Replay reads the log on a native Postgres connection with binary column
/// formats; it must decode every entry exactly as the `Any` reader (text
/// formats) does, ids, causation and timestamps included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_postgres_reader_decodes_the_log_as_the_any_reader_does() {
    use prefect_server::eventlog::{decode_all_unparsed, decode_pg_unparsed, read_pg_rows_in_order, read_rows_in_order};

    let app = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await;
    let flow_id = app.create_flow("read-natively").await;
    app.create_flow_run(&flow_id).await;
    let mut caused = event();
    caused.correlation_id = Some(Uuid::now_v7());
    caused.causation_id = Some(Uuid::now_v7());
    let stream = StreamRef::new(StreamType::Flow, Uuid::now_v7());
    let mut tx = app.db.begin_write().await.unwrap();
    append(&mut tx, app.db.dialect, stream, ExpectedVersion::NoStream, vec![event(), caused]).await.unwrap();
    tx.commit().await.unwrap();

    let mut any = app.db.reader().acquire().await.unwrap();
    let (any_rows, any_last) = read_rows_in_order(&mut any, app.db.dialect, 0, 1000).await.unwrap();
    let mut native = app.db.connect_postgres().await.unwrap().expect("a Postgres app");
    let (native_rows, native_last) = read_pg_rows_in_order(&mut native, 0, 1000).await.unwrap();

    let by_any = decode_all_unparsed(&any_rows).unwrap();
    let natively = decode_pg_unparsed(&native_rows).unwrap();
    assert!(by_any.len() >= 4, "{}", by_any.len());
    assert!(natively.iter().any(|(e, _)| e.causation_id.is_some() && e.correlation_id.is_some()));
    assert_eq!(natively, by_any);
    assert_eq!(native_last, any_last);
    // And paging after a position gives the rest.
    let (rest, _) = read_pg_rows_in_order(&mut native, by_any[1].0.position, 1000).await.unwrap();
    assert_eq!(decode_pg_unparsed(&rest).unwrap(), by_any[2..]);
}
