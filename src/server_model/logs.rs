//! Log rows and Prefect's `Log` JSON.

use serde_json::Value;
use sqlx::any::AnyRow;

use super::{int_col, object, text_col};

pub const LOG_COLUMNS: &str =
    "log.id, log.created, log.created AS updated, log.name, log.level, log.flow_run_id, log.task_run_id, log.message, log.timestamp";

pub fn log_json(row: &AnyRow) -> Value {
    object(vec![
        ("id", text_col(row, "id")),
        ("created", text_col(row, "created")),
        ("updated", text_col(row, "updated")),
        ("name", text_col(row, "name")),
        ("level", Value::from(int_col(row, "level"))),
        ("message", text_col(row, "message")),
        ("timestamp", text_col(row, "timestamp")),
        ("flow_run_id", text_col(row, "flow_run_id")),
        ("task_run_id", text_col(row, "task_run_id")),
    ])
}
