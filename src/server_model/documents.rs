//! Configuration objects (work pools, work queues, workers, deployments,
//! deployment schedules, variables, flow-run inputs, saved searches,
//! concurrency limits and leases) are "documents": a row whose columns map one to one
//! to fields of Prefect's JSON. One descriptor per table drives the insert,
//! the partial update and the row → JSON read, so each object does not need
//! its own hand-written column plumbing.

use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::db::Bind;

/// How a field is stored in its (portable, text-heavy) column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// JSON stored as text.
    Json,
    /// 0/1 integer.
    Bool,
    Int,
}

/// A field: its name in Prefect's JSON and its SQL column.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub json: &'static str,
    pub column: &'static str,
    pub kind: Kind,
}

const fn f(name: &'static str, kind: Kind) -> Field {
    Field { json: name, column: name, kind }
}

/// A document table. Every such table also has `id`, `workspace_id`,
/// `created`, `updated` and `version` (the stream version).
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub fields: &'static [Field],
}

use Kind::*;

pub const WORK_POOL: Table = Table {
    name: "work_pool",
    fields: &[
        f("name", Text),
        f("description", Text),
        f("type", Text),
        f("base_job_template", Json),
        f("is_paused", Bool),
        f("concurrency_limit", Int),
        f("status", Text),
        f("default_queue_id", Text),
        f("storage_configuration", Json),
    ],
};

pub const WORK_QUEUE: Table = Table {
    name: "work_queue",
    fields: &[
        f("name", Text),
        f("description", Text),
        f("is_paused", Bool),
        f("concurrency_limit", Int),
        f("priority", Int),
        f("work_pool_id", Text),
        f("filter", Json),
        f("last_polled", Text),
        f("status", Text),
    ],
};

pub const WORKER: Table = Table {
    name: "worker",
    fields: &[
        f("name", Text),
        f("work_pool_id", Text),
        f("last_heartbeat_time", Text),
        f("heartbeat_interval_seconds", Int),
        f("status", Text),
    ],
};

pub const DEPLOYMENT: Table = Table {
    name: "deployment",
    fields: &[
        f("name", Text),
        Field { json: "version", column: "deployment_version", kind: Text },
        f("version_info", Json),
        f("description", Text),
        f("flow_id", Text),
        f("paused", Bool),
        f("status", Text),
        f("tags", Json),
        f("labels", Json),
        f("parameters", Json),
        f("parameter_openapi_schema", Json),
        f("enforce_parameter_schema", Bool),
        f("pull_steps", Json),
        f("job_variables", Json),
        f("work_queue_id", Text),
        f("work_queue_name", Text),
        f("path", Text),
        f("entrypoint", Text),
        f("storage_document_id", Text),
        f("infrastructure_document_id", Text),
        f("concurrency_limit", Int),
        f("concurrency_options", Json),
        f("created_by", Json),
        f("updated_by", Json),
        f("last_polled", Text),
    ],
};

pub const DEPLOYMENT_SCHEDULE: Table = Table {
    name: "deployment_schedule",
    fields: &[
        f("deployment_id", Text),
        f("schedule", Json),
        f("active", Bool),
        f("max_scheduled_runs", Int),
        f("parameters", Json),
        f("slug", Text),
    ],
};

/// A workspace variable (Prefect's `variables` router): `value` is any JSON.
pub const VARIABLE: Table = Table {
    name: "variable",
    fields: &[f("name", Text), f("value", Json), f("tags", Json)],
};

/// A flow run's input (Prefect's `flow_run_input`): `value` is the text the
/// client sent (usually JSON), kept as it is.
pub const FLOW_RUN_INPUT: Table = Table {
    name: "flow_run_input",
    fields: &[f("flow_run_id", Text), f("key", Text), f("value", Text), f("sender", Text)],
};

/// A saved search (the UI's saved filter views): `filters` is a list of
/// `{object, property, type, operation, value}`.
pub const SAVED_SEARCH: Table = Table {
    name: "saved_search",
    fields: &[f("name", Text), f("filters", Json)],
};

/// An automation (`automations::schema` validates and normalises the
/// trigger and actions before they are stored). `owner_resource` is not
/// part of Prefect's `Automation` JSON: it is the resource that owns the
/// automation (Prefect's `automation_related_resource` with
/// `automation_owned_by_resource`), and is dropped from responses.
pub const AUTOMATION: Table = Table {
    name: "automation",
    fields: &[
        f("name", Text),
        f("description", Text),
        f("enabled", Bool),
        f("tags", Json),
        // `trigger` is a keyword in SQL.
        Field { json: "trigger", column: "trigger_def", kind: Json },
        f("actions", Json),
        f("actions_on_trigger", Json),
        f("actions_on_resolve", Json),
        f("owner_resource", Text),
    ],
};

/// A global (v2) concurrency limit. `active_slots` is the stored counter
/// of slots taken without a lease (see `orchestration::concurrency_limits`);
/// the two floats are JSON numbers.
pub const CONCURRENCY_LIMIT: Table = Table {
    name: "concurrency_limit_v2",
    fields: &[
        f("name", Text),
        // `limit` is a reserved word in SQL.
        Field { json: "limit", column: "slot_limit", kind: Int },
        f("active", Bool),
        f("active_slots", Int),
        f("denied_slots", Int),
        f("slot_decay_per_second", Json),
        f("avg_slot_occupancy_seconds", Json),
    ],
};

/// A lease on concurrency slots: `slots` of each limit in `resource_ids`
/// (a JSON list of ids) until `expiration`, for `holder` (JSON or null).
pub const CONCURRENCY_LEASE: Table = Table {
    name: "concurrency_lease",
    fields: &[f("resource_ids", Json), f("slots", Int), f("holder", Json), f("expiration", Text)],
};

/// A deferred task run handed to a task worker. Its id is the id of the
/// SCHEDULED state it was delivered in, so each scheduling of a run is
/// claimed by exactly one subscriber (the stream can be created once);
/// `released` puts it back when the worker went away before its ack, and
/// `acked` records the ack (a claim left unacknowledged too long was sent
/// by a process that died, and may be claimed again).
pub const TASK_RUN_DELIVERY: Table = Table {
    name: "task_run_delivery",
    fields: &[f("task_run_id", Text), f("task_key", Text), f("client_id", Text), f("released", Bool), f("acked", Bool)],
};

/// An artifact (`metadata_` is JSON text, `data` any JSON).
pub const ARTIFACT: Table = Table {
    name: "artifact",
    fields: &[
        f("key", Text),
        f("type", Text),
        f("description", Text),
        f("data", Json),
        f("metadata_", Json),
        f("flow_run_id", Text),
        f("task_run_id", Text),
    ],
};

/// The latest artifact of each key: a copy of its fields and `latest_id`.
pub const ARTIFACT_COLLECTION: Table = Table {
    name: "artifact_collection",
    fields: &[
        f("key", Text),
        f("latest_id", Text),
        f("type", Text),
        f("description", Text),
        f("data", Json),
        f("metadata_", Json),
        f("flow_run_id", Text),
        f("task_run_id", Text),
    ],
};

/// A block type (`is_protected` types come from Prefect's own block
/// registration; API-created ones never are).
pub const BLOCK_TYPE: Table = Table {
    name: "block_type",
    fields: &[
        f("name", Text),
        f("slug", Text),
        f("logo_url", Text),
        f("documentation_url", Text),
        f("description", Text),
        f("code_example", Text),
        f("is_protected", Bool),
    ],
};

/// A block schema: `fields` is the JSON schema, `version` Prefect's schema
/// version (its column is `schema_version`: `version` is the stream's).
pub const BLOCK_SCHEMA: Table = Table {
    name: "block_schema",
    fields: &[
        f("checksum", Text),
        f("fields", Json),
        f("capabilities", Json),
        Field { json: "version", column: "schema_version", kind: Text },
        f("block_type_id", Text),
    ],
};

/// A block document: `data` without nested-block references, which are
/// `references` (`{field: referenced document id}`).
pub const BLOCK_DOCUMENT: Table = Table {
    name: "block_document",
    fields: &[
        f("name", Text),
        f("data", Json),
        f("is_anonymous", Bool),
        f("block_type_name", Text),
        f("block_type_id", Text),
        f("block_schema_id", Text),
        Field { json: "references", column: "document_refs", kind: Json },
    ],
};

/// A server configuration entry (Prefect's `configuration`): `value` is JSON.
pub const CONFIGURATION: Table = Table {
    name: "configuration",
    fields: &[f("key", Text), f("value", Json)],
};

impl Table {
    /// `t.id, t.created, t.updated, t.<columns>...` for a SELECT.
    pub fn select_list(&self, alias: &str) -> String {
        let mut cols = vec![format!("{alias}.id"), format!("{alias}.created"), format!("{alias}.updated")];
        cols.extend(self.fields.iter().map(|c| format!("{alias}.{}", c.column)));
        cols.join(", ")
    }

    pub fn field(&self, json: &str) -> Option<&Field> {
        self.fields.iter().find(|c| c.json == json)
    }

    /// The row as Prefect's JSON: `id`, `created`, `updated`, then the fields
    /// in descriptor order.
    pub fn row_json(&self, row: &AnyRow) -> Map<String, Value> {
        let mut out = Map::new();
        for key in ["id", "created", "updated"] {
            out.insert(key.into(), super::text_col(row, key));
        }
        for c in self.fields {
            out.insert(c.json.into(), read(row, c));
        }
        out
    }
}

fn read(row: &AnyRow, c: &Field) -> Value {
    match c.kind {
        Text => super::text_col(row, c.column),
        Json => super::json_col(row, c.column),
        Bool => Value::Bool(row.try_get::<Option<i64>, _>(c.column).ok().flatten().unwrap_or(0) != 0),
        Int => row.try_get::<Option<i64>, _>(c.column).ok().flatten().map(Value::from).unwrap_or(Value::Null),
    }
}

/// A JSON value as the bind for a column of `kind` (`null` → SQL NULL).
pub fn bind(kind: Kind, v: &Value) -> Bind {
    match (kind, v) {
        (Int | Bool, Value::Null) => Bind::NullInt,
        (_, Value::Null) => Bind::Null,
        (Json, v) => Bind::Text(v.to_string()),
        (Bool, Value::Bool(b)) => Bind::Int(*b as i64),
        (Int, Value::Number(n)) => Bind::Int(n.as_i64().unwrap_or(0)),
        (_, Value::String(s)) => Bind::Text(s.clone()),
        (_, other) => Bind::Text(other.to_string()),
    }
}
