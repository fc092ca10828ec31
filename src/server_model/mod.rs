//! Queries over the server read model and the JSON shapes Prefect returns
//! for its rows (`Flow`, `FlowRunResponse`, `TaskRun`, `State`, `Log`).

pub mod blocks;
pub mod concurrency_limits;
pub mod deployments;
pub mod documents;
pub mod feed_events;
pub mod filters;
pub mod flow_run_graph;
pub mod flow_runs;
pub mod flows;
pub mod history;
pub mod logs;
pub mod paginate;
pub mod run_relations;
pub mod sorts;
pub mod states;
pub mod task_runs;
pub mod ui;
pub mod work_pools;

use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

/// Reads a text column that holds JSON (`null` when absent or unparsable).
pub(crate) fn json_col(row: &AnyRow, col: &str) -> Value {
    row.try_get::<Option<String>, _>(col)
        .ok()
        .flatten()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null)
}

/// Reads an optional text column as a JSON string or null.
pub(crate) fn text_col(row: &AnyRow, col: &str) -> Value {
    match row.try_get::<Option<String>, _>(col).ok().flatten() {
        Some(s) => Value::String(s),
        None => Value::Null,
    }
}

pub(crate) fn int_col(row: &AnyRow, col: &str) -> i64 {
    row.try_get::<Option<i64>, _>(col).ok().flatten().unwrap_or(0)
}

pub(crate) fn float_col(row: &AnyRow, col: &str) -> f64 {
    row.try_get::<Option<f64>, _>(col).ok().flatten().unwrap_or(0.0)
}

pub(crate) fn opt_text(row: &AnyRow, col: &str) -> Option<String> {
    row.try_get::<Option<String>, _>(col).ok().flatten()
}

/// Builds a JSON object from (key, value) pairs, keeping their order.
pub(crate) fn object(pairs: Vec<(&str, Value)>) -> Value {
    let mut map = Map::new();
    for (k, v) in pairs {
        map.insert(k.to_owned(), v);
    }
    Value::Object(map)
}
