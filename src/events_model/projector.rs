//! The events projector: follows the log (by `(tx_id, position)`, never
//! skipping a late commit) and stores every Prefect event it carries in the
//! events read model, moving its checkpoint in the same transaction, so each
//! event takes effect exactly once.

use serde_json::{json, Map, Value};
use sqlx::{AnyConnection, Row};

use crate::db::{bind_all, Bind, Db, Dialect};
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
    let mut e = event.payload.get("event")?.as_object()?.clone();
    e.get("id")?;
    e.get("resource")?.as_object()?;
    if e.get("received").is_none_or(Value::is_null) {
        e.insert("received".into(), json!(fmt_ts(event.occurred)));
    }
    Some(Value::Object(e))
}

fn text(e: &Value, key: &str) -> Option<String> {
    e.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Normalises a timestamp to the stored text form.
fn ts(e: &Value, key: &str) -> Option<String> {
    text(e, key).and_then(|s| parse_ts(&s)).map(fmt_ts)
}

/// Labels minus the id and role, as `event_resources.resource` stores them.
fn labels_only(resource: &Map<String, Value>) -> Value {
    let mut m = resource.clone();
    m.remove("prefect.resource.id");
    m.remove("prefect.resource.role");
    Value::Object(m)
}

/// Stores one event (idempotent).
pub async fn store(conn: &mut AnyConnection, dialect: Dialect, workspace: &str, position: i64, e: &Value) -> Result<(), sqlx::Error> {
    let (Some(id), Some(occurred), Some(name)) = (text(e, "id"), ts(e, "occurred"), text(e, "event")) else {
        return Ok(());
    };
    let resource = e.get("resource").and_then(Value::as_object).cloned().unwrap_or_default();
    let resource_id = resource.get("prefect.resource.id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let related: Vec<Map<String, Value>> = e
        .get("related")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|r| r.as_object().cloned()).collect())
        .unwrap_or_default();
    let related_ids: Vec<Value> = related.iter().filter_map(|r| r.get("prefect.resource.id").cloned()).collect();
    let received = ts(e, "received").unwrap_or_else(|| occurred.clone());
    let sql = "INSERT INTO events (id, workspace_id, occurred, event, resource_id, resource, related_resource_ids, related, payload, received, recorded, follows, log_position) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING";
    let binds = vec![
        Bind::Text(id.clone()),
        Bind::Text(workspace.to_owned()),
        Bind::Text(occurred.clone()),
        Bind::Text(name),
        Bind::Text(resource_id.clone()),
        Bind::Text(Value::Object(resource.clone()).to_string()),
        Bind::Text(Value::Array(related_ids).to_string()),
        Bind::Text(Value::Array(related.iter().cloned().map(Value::Object).collect()).to_string()),
        Bind::Text(e.get("payload").cloned().unwrap_or(json!({})).to_string()),
        Bind::Text(received.clone()),
        Bind::Text(received),
        text(e, "follows").into(),
        Bind::Int(position),
    ];
    let inserted = bind_all(sqlx::query(&dialect.rewrite(sql)), &binds).execute(&mut *conn).await?.rows_affected();
    if inserted == 0 {
        return Ok(());
    }
    let mut rows = vec![(resource_id, String::new(), labels_only(&resource))];
    for r in &related {
        let rid = r.get("prefect.resource.id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let role = r.get("prefect.resource.role").and_then(Value::as_str).unwrap_or_default().to_owned();
        rows.push((rid, role, labels_only(r)));
    }
    let sql = dialect.rewrite(
        "INSERT INTO event_resources (event_id, occurred, resource_id, resource_role, resource) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    );
    for (rid, role, labels) in rows {
        sqlx::query(&sql)
            .bind(id.clone())
            .bind(occurred.clone())
            .bind(rid)
            .bind(role)
            .bind(labels.to_string())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Reads a follower's checkpoint (creating it at the start of the log).
/// On Postgres the row is locked for the transaction, fencing off a second
/// instance of the same follower.
pub async fn load_checkpoint(conn: &mut AnyConnection, dialect: Dialect, name: &str) -> Result<Cursor, sqlx::Error> {
    sqlx::query(&dialect.rewrite("INSERT INTO es_checkpoints (name, tx_id, position) VALUES ($1, 0, 0) ON CONFLICT DO NOTHING"))
        .bind(name)
        .execute(&mut *conn)
        .await?;
    let lock = if dialect == Dialect::Postgres { " FOR UPDATE" } else { "" };
    let row = sqlx::query(&dialect.rewrite(&format!(
        "SELECT CAST(tx_id AS BIGINT) AS tx_id, CAST(position AS BIGINT) AS position FROM es_checkpoints WHERE name = $1{lock}"
    )))
    .bind(name)
    .fetch_one(&mut *conn)
    .await?;
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
    let mut tx = db.begin_write().await?;
    let cursor = load_checkpoint(&mut tx, db.dialect, CHECKPOINT).await?;
    let batch = read_after(&mut tx, db.dialect, cursor, limit).await?;
    let Some(last) = batch.last() else {
        tx.rollback().await?;
        return Ok(0);
    };
    let last = Cursor { tx_id: last.tx_id, position: last.position };
    for event in &batch {
        if let Some(e) = prefect_event(event) {
            store(&mut tx, db.dialect, &event.workspace_id.to_string(), event.position, &e).await?;
        }
    }
    save_checkpoint(&mut tx, db.dialect, CHECKPOINT, last).await?;
    tx.commit().await?;
    tracing::debug!(events = batch.len(), position = last.position, "events projector batch");
    Ok(batch.len())
}
