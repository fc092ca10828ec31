//! A stored event as Prefect's `ReceivedEvent` JSON.

use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::filter::stored_to_pydantic;

/// `{occurred, event, resource, related, payload, id, follows, received}`
/// (Prefect's field order) from a row of `events` (any column order;
/// `select_events` returns them all). Timestamps are written as pydantic
/// writes them; JSON columns that do not parse fall back to empty values.
pub fn event_json(row: &AnyRow) -> Value {
    let text = |col: &str| row.try_get::<Option<String>, _>(col).ok().flatten();
    let json = |col: &str, default: Value| text(col).and_then(|s| serde_json::from_str::<Value>(&s).ok()).unwrap_or(default);
    let ts = |col: &str| text(col).map_or(Value::Null, |s| Value::String(stored_to_pydantic(&s)));
    let mut m = Map::new();
    m.insert("occurred".into(), ts("occurred"));
    m.insert("event".into(), text("event").map_or(Value::Null, Value::String));
    m.insert("resource".into(), json("resource", Value::Object(Map::new())));
    m.insert("related".into(), json("related", Value::Array(Vec::new())));
    m.insert("payload".into(), json("payload", Value::Object(Map::new())));
    m.insert("id".into(), text("id").map_or(Value::Null, Value::String));
    m.insert("follows".into(), text("follows").map_or(Value::Null, Value::String));
    m.insert("received".into(), ts("received"));
    Value::Object(m)
}
