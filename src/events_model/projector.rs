//! The events projector: follows the log (by `(tx_id, position)`, never
//! skipping a late commit) and stores every Prefect event it carries in the
//! events read model, moving its checkpoint in the same transaction, so each
//! event takes effect exactly once.

use serde_json::{json, Map, Value};
use sqlx::{AnyConnection, Row};

use std::sync::Arc;

use super::handoff::{ProjectedBatch, RecentBatches};
use crate::broker::LiveEvent;
use crate::db::{bind_chunk, Bind, Db, Dialect};
use crate::eventlog::{read_after, Cursor, RecordedEvent};
use crate::time::{fmt_ts, parse_ts};

/// The projector's checkpoint name in `es_checkpoints`.
pub const CHECKPOINT: &str = "proj:events";
/// The tables of the events model, in an order safe for truncation.
pub const TABLES: &[&str] = &["event_resources", "events"];

/// The Prefect `ReceivedEvent` a log entry carries, if any: client events
/// keep theirs as received; server-emitted events (state transitions) are
/// received when they happened.
pub fn prefect_event(event: &RecordedEvent) -> Option<Value> {
    let e = event.payload.get("event")?.as_object()?;
    is_prefect_event(e).then(|| with_received(e.clone(), event))
}

/// [`prefect_event`] for a caller done with the entry: the event is moved
/// out of its payload instead of copied.
pub fn into_prefect_event(mut event: RecordedEvent) -> Option<Value> {
    if !is_prefect_event(event.payload.get("event")?.as_object()?) {
        return None;
    }
    let Some(Value::Object(e)) = event.payload.as_object_mut()?.remove("event") else { return None };
    Some(with_received(e, &event))
}

fn is_prefect_event(e: &Map<String, Value>) -> bool {
    e.contains_key("id") && e.get("resource").is_some_and(Value::is_object)
}

fn with_received(mut e: Map<String, Value>, event: &RecordedEvent) -> Value {
    if e.get("received").is_none_or(Value::is_null) {
        e.insert("received".into(), json!(fmt_ts(event.occurred)));
    }
    Value::Object(e)
}

fn text(e: &Value, key: &str) -> Option<String> {
    e.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Normalises a timestamp to the stored text form.
fn ts(e: &Value, key: &str) -> Option<String> {
    text(e, key).and_then(|s| parse_ts(&s)).map(fmt_ts)
}

/// Labels minus the id and role, as `event_resources.resource` stores them:
/// the map's JSON text without those two keys, written without copying the
/// map. The keys keep the order that removing them from the (insertion
/// ordered) map gives, the last key taking a removed one's place, so rows
/// are the same text as rows stored before and a rebuild verifies.
fn labels_only(resource: &Map<String, Value>) -> String {
    let mut entries: Vec<(&String, &Value)> = resource.iter().collect();
    for key in ["prefect.resource.id", "prefect.resource.role"] {
        if let Some(i) = entries.iter().position(|(k, _)| *k == key) {
            entries.swap_remove(i);
        }
    }
    struct Labels<'a>(Vec<(&'a String, &'a Value)>);
    impl serde::Serialize for Labels<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().copied())
        }
    }
    json_text(&Labels(entries))
}

/// A value's JSON text (serialising a `Value` or a map of them cannot fail).
fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// One event as the `events` table stores it, with its `event_resources` rows.
struct EventRow {
    id: String,
    occurred: String,
    binds: Vec<Bind>,
    /// (resource id, role, labels JSON) for the primary resource (role '')
    /// and each related one.
    resources: Vec<(String, String, String)>,
}

const EVENT_COLUMNS: &str = "id, workspace_id, occurred, event, resource_id, resource, related_resource_ids, related, payload, received, recorded, follows, log_position";
const EVENT_COLUMN_COUNT: usize = 13;
/// Rows per multi-row INSERT: well under both backends' bind limits
/// (13 × 200 and 5 × 500 binds).
const EVENTS_PER_INSERT: usize = 200;
const RESOURCES_PER_INSERT: usize = 500;

/// The row of event `e`. Its parts are serialised straight from `e`: the
/// projector runs this for every event, and copying the maps first was a
/// large share of its CPU.
fn event_row(workspace: &str, position: i64, e: &Value) -> Option<EventRow> {
    let (Some(id), Some(occurred), Some(name)) = (text(e, "id"), ts(e, "occurred"), text(e, "event")) else {
        return None;
    };
    let empty = Map::new();
    let resource = e.get("resource").and_then(Value::as_object).unwrap_or(&empty);
    let resource_id = resource.get("prefect.resource.id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let related: Vec<&Map<String, Value>> =
        e.get("related").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_object).collect()).unwrap_or_default();
    let related_ids: Vec<&Value> = related.iter().filter_map(|r| r.get("prefect.resource.id")).collect();
    let received = ts(e, "received").unwrap_or_else(|| occurred.clone());
    let payload = match e.get("payload") {
        Some(p) => json_text(p),
        None => "{}".to_owned(),
    };
    let binds = vec![
        Bind::Text(id.clone()),
        Bind::Text(workspace.to_owned()),
        Bind::Text(occurred.clone()),
        Bind::Text(name),
        Bind::Text(resource_id.clone()),
        Bind::Text(json_text(resource)),
        Bind::Text(json_text(&related_ids)),
        Bind::Text(json_text(&related)),
        Bind::Text(payload),
        Bind::Text(received.clone()),
        Bind::Text(received),
        text(e, "follows").into(),
        Bind::Int(position),
    ];
    let mut resources = Vec::with_capacity(related.len() + 1);
    resources.push((resource_id, String::new(), labels_only(resource)));
    for r in &related {
        let rid = r.get("prefect.resource.id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let role = r.get("prefect.resource.role").and_then(Value::as_str).unwrap_or_default().to_owned();
        resources.push((rid, role, labels_only(r)));
    }
    Some(EventRow { id, occurred, binds, resources })
}

/// `($1, ..., $k), ($k+1, ...)`: `rows` groups of `width` placeholders.
fn values_list(rows: usize, width: usize) -> String {
    (0..rows).map(|r| format!("({})", crate::db::sql::placeholders(r * width + 1, width))).collect::<Vec<_>>().join(", ")
}

/// Stores events idempotently: an event id already stored keeps its first
/// version, and only newly stored events get resource rows. Each event is
/// `(workspace id, log position, Prefect event)`. Rows go in multi-row
/// INSERTs, a few round trips per batch rather than several per event.
pub async fn store_all(conn: &mut AnyConnection, dialect: Dialect, events: &[(String, i64, Value)]) -> Result<usize, sqlx::Error> {
    let mut seen = std::collections::HashSet::new();
    let rows: Vec<EventRow> = events.iter().filter_map(|(ws, pos, e)| event_row(ws, *pos, e)).filter(|r| seen.insert(r.id.clone())).collect();
    let mut stored = std::collections::HashSet::new();
    for chunk in rows.chunks(EVENTS_PER_INSERT) {
        let sql = format!("INSERT INTO events ({EVENT_COLUMNS}) VALUES {} ON CONFLICT DO NOTHING RETURNING id", values_list(chunk.len(), EVENT_COLUMN_COUNT));
        let binds: Vec<Bind> = chunk.iter().flat_map(|r| r.binds.iter().cloned()).collect();
        let full = chunk.len() == EVENTS_PER_INSERT;
        for row in bind_chunk(sqlx::query(&dialect.rewrite(&sql)), &binds, full).fetch_all(&mut *conn).await? {
            stored.insert(row.try_get::<String, _>(0)?);
        }
    }
    let resources: Vec<Bind> = rows
        .iter()
        .filter(|r| stored.contains(&r.id))
        .flat_map(|r| {
            r.resources.iter().flat_map(move |(rid, role, labels)| {
                [Bind::Text(r.id.clone()), Bind::Text(r.occurred.clone()), Bind::Text(rid.clone()), Bind::Text(role.clone()), Bind::Text(labels.clone())]
            })
        })
        .collect();
    for chunk in resources.chunks(RESOURCES_PER_INSERT * 5) {
        let sql = format!(
            "INSERT INTO event_resources (event_id, occurred, resource_id, resource_role, resource) VALUES {} ON CONFLICT DO NOTHING",
            values_list(chunk.len() / 5, 5)
        );
        let full = chunk.len() == RESOURCES_PER_INSERT * 5;
        bind_chunk(sqlx::query(&dialect.rewrite(&sql)), chunk, full).execute(&mut *conn).await?;
    }
    Ok(stored.len())
}

/// Batches at least this large are written in two halves at once on Postgres.
const SPLIT_AT: usize = 200;

/// Writes a batch's events inside the checkpoint transaction `tx`. On
/// Postgres a large batch is split: `tx` writes one half while a second
/// transaction writes and commits the other, so two backends share the
/// index work. Storing is idempotent by event id, so if `tx` fails after
/// the other half committed, projecting the batch again finds that half
/// already stored and moves on.
async fn store_batch(db: &Db, tx: &mut AnyConnection, events: &[(String, i64, Value)]) -> Result<(), sqlx::Error> {
    if db.dialect != Dialect::Postgres || events.len() < SPLIT_AT {
        return store_all(tx, db.dialect, events).await.map(|_| ());
    }
    // An id in both halves would make the two transactions wait on each other.
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<(String, i64, Value)> = events.iter().filter(|(_, _, e)| seen.insert(e.get("id").cloned())).cloned().collect();
    let (first, second) = unique.split_at(unique.len() / 2);
    let other = async {
        let mut other_tx = db.begin_write().await?;
        store_all(&mut other_tx, db.dialect, second).await?;
        other_tx.commit().await
    };
    let (mine, theirs) = tokio::join!(store_all(tx, db.dialect, first), other);
    mine.map(|_| ()).and(theirs)
}

/// Reads a follower's checkpoint (creating it at the start of the log).
/// On Postgres the row is locked for the transaction, fencing off a second
/// instance of the same follower. The row exists after the first call, so
/// the common case is the one locking read.
pub async fn load_checkpoint(conn: &mut AnyConnection, dialect: Dialect, name: &str) -> Result<Cursor, sqlx::Error> {
    let lock = if dialect == Dialect::Postgres { " FOR UPDATE" } else { "" };
    let select = dialect.rewrite(&format!(
        "SELECT CAST(tx_id AS BIGINT) AS tx_id, CAST(position AS BIGINT) AS position FROM es_checkpoints WHERE name = $1{lock}"
    ));
    let mut row = sqlx::query(&select).bind(name).fetch_optional(&mut *conn).await?;
    if row.is_none() {
        sqlx::query(&dialect.rewrite("INSERT INTO es_checkpoints (name, tx_id, position) VALUES ($1, 0, 0) ON CONFLICT DO NOTHING"))
            .bind(name)
            .execute(&mut *conn)
            .await?;
        row = Some(sqlx::query(&select).bind(name).fetch_one(&mut *conn).await?);
    }
    let row = row.ok_or(sqlx::Error::RowNotFound)?;
    Ok(Cursor { tx_id: row.try_get("tx_id")?, position: row.try_get("position")? })
}

pub async fn save_checkpoint(conn: &mut AnyConnection, dialect: Dialect, name: &str, cursor: Cursor) -> Result<(), sqlx::Error> {
    sqlx::query(&dialect.rewrite("UPDATE es_checkpoints SET tx_id = $1, position = $2 WHERE name = $3"))
        .bind(cursor.tx_id)
        .bind(cursor.position)
        .bind(name)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Projects the next batch of up to `limit` log entries. Returns how many
/// log entries were consumed (0 when caught up).
pub async fn project_batch(db: &Db, limit: i64) -> Result<usize, sqlx::Error> {
    project_batch_for(db, limit, None).await
}

/// The log entries after `after`, read on a reader connection while the
/// projector is still writing the batch that ends there.
///
/// Entries come back in log order and only up to the oldest transaction
/// still in flight (`read_after`), so what a read returns is always a prefix
/// of what any later read from the same cursor returns: using it in the
/// next batch skips nothing. It is used only if the checkpoint is still at
/// `after` when that batch starts.
pub struct ReadAhead {
    after: Cursor,
    handle: tokio::task::JoinHandle<Result<Vec<RecordedEvent>, sqlx::Error>>,
}

impl ReadAhead {
    fn start(db: &Db, after: Cursor, limit: i64) -> ReadAhead {
        let db = db.clone();
        let handle = tokio::spawn(async move {
            let mut conn = db.reader().acquire().await?;
            read_after(&mut conn, db.dialect, after, limit).await
        });
        ReadAhead { after, handle }
    }

    /// The entries, if this read starts at `cursor` and found some.
    async fn take(self, cursor: Cursor) -> Option<Vec<RecordedEvent>> {
        if self.after != cursor {
            self.handle.abort();
            return None;
        }
        match self.handle.await {
            Ok(Ok(batch)) if !batch.is_empty() => Some(batch),
            _ => None,
        }
    }
}

/// [`project_batch`], keeping the committed batch's Prefect events in
/// `recent` for this process's relay.
pub async fn project_batch_for(db: &Db, limit: i64, recent: Option<&RecentBatches>) -> Result<usize, sqlx::Error> {
    project_batch_ahead(db, limit, recent, &mut None).await
}

/// [`project_batch_for`] for a follower that keeps going: uses the batch
/// `ahead` read (when it starts where the checkpoint is) and, after a full
/// batch, starts reading the next one while this one is written, so reading
/// the log overlaps the writes instead of adding to them.
pub async fn project_batch_ahead(db: &Db, limit: i64, recent: Option<&RecentBatches>, ahead: &mut Option<ReadAhead>) -> Result<usize, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let cursor = load_checkpoint(&mut tx, db.dialect, CHECKPOINT).await?;
    let prefetched = match ahead.take() {
        Some(read) => read.take(cursor).await,
        None => None,
    };
    let batch = match prefetched {
        Some(batch) => batch,
        None => read_after(&mut tx, db.dialect, cursor, limit).await?,
    };
    let Some(last) = batch.last() else {
        tx.rollback().await?;
        return Ok(0);
    };
    let last = Cursor { tx_id: last.tx_id, position: last.position };
    if batch.len() as i64 == limit {
        *ahead = Some(ReadAhead::start(db, last, limit));
    }
    let covered = batch.len();
    let mut sources: Vec<(Cursor, uuid::Uuid)> = Vec::with_capacity(covered);
    let events: Vec<(String, i64, Value)> = batch
        .into_iter()
        .filter_map(|ev| {
            let cursor = Cursor { tx_id: ev.tx_id, position: ev.position };
            let (event_id, workspace, position) = (ev.event_id, ev.workspace_id, ev.position);
            let e = into_prefect_event(ev)?;
            sources.push((cursor, event_id));
            Some((workspace.to_string(), position, e))
        })
        .collect();
    store_batch(db, &mut tx, &events).await?;
    save_checkpoint(&mut tx, db.dialect, CHECKPOINT, last).await?;
    tx.commit().await?;
    tracing::debug!(events = covered, position = last.position, "events projector batch");
    if let Some(recent) = recent {
        let events = sources
            .into_iter()
            .zip(events)
            .map(|((cursor, event_id), (_, _, e))| LiveEvent { cursor, event_id, event: Arc::new(e) })
            .collect();
        recent.push(ProjectedBatch { after: cursor, last, covered, events });
    }
    Ok(covered)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the rows held before they were serialised in place: a copy of
    /// the map with the two keys removed.
    fn copied_labels(resource: &Map<String, Value>) -> String {
        let mut m = resource.clone();
        m.remove("prefect.resource.id");
        m.remove("prefect.resource.role");
        Value::Object(m).to_string()
    }

    #[test]
    fn given_resources_in_any_key_order_when_labels_are_written_then_they_match_the_copied_form() {
        let cases = [
            json!({"prefect.resource.id": "a", "x": "1", "y": "2", "z": "3"}),
            json!({"x": "1", "prefect.resource.role": "flow", "y": "2", "prefect.resource.id": "b", "z": "3"}),
            json!({"prefect.resource.role": "r", "prefect.resource.id": "c"}),
            json!({"only": "label"}),
            json!({}),
        ];
        for case in cases {
            let map = case.as_object().unwrap();
            assert_eq!(labels_only(map), copied_labels(map), "{case}");
        }
    }

    #[test]
    fn given_a_received_event_when_made_a_row_then_its_columns_are_the_events_parts_as_json_text() {
        let e = json!({
            "occurred": "2026-12-07T10:00:00Z", "event": "prefect.flow-run.Running",
            "resource": {"prefect.resource.id": "prefect.flow-run.1", "prefect.resource.name": "run"},
            "related": [{"prefect.resource.id": "prefect.flow.2", "prefect.resource.role": "flow", "prefect.resource.name": "f"}],
            "payload": {"intended": {"from": "PENDING", "to": "RUNNING"}},
            "id": "0193a5a0-0000-7000-8000-000000000001", "follows": null
        });
        let row = event_row("ws", 7, &e).unwrap();
        let texts: Vec<Option<String>> = row.binds.iter().map(|b| match b { Bind::Text(t) => Some(t.clone()), _ => None }).collect();
        assert_eq!(texts[5].as_deref(), Some(e["resource"].to_string().as_str()));
        assert_eq!(texts[6].as_deref(), Some(r#"["prefect.flow.2"]"#));
        assert_eq!(texts[7].as_deref(), Some(e["related"].to_string().as_str()));
        assert_eq!(texts[8].as_deref(), Some(e["payload"].to_string().as_str()));
        assert_eq!(row.resources, vec![
            ("prefect.flow-run.1".to_owned(), String::new(), r#"{"prefect.resource.name":"run"}"#.to_owned()),
            ("prefect.flow.2".to_owned(), "flow".to_owned(), r#"{"prefect.resource.name":"f"}"#.to_owned()),
        ]);
    }
}
