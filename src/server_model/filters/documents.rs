//! Filters on documents (`DeploymentFilter`, `WorkPoolFilter`,
//! `WorkQueueFilter`, `WorkerFilter`, `VariableFilter`) compiled from their JSON by one table
//! of fields and allowed operators, rather than one struct per criterion.
//! Like Prefect's pydantic models, unknown keys are a 422.

use serde_json::Value;

use super::common::{combine, null_check, Ctx, Operator, FALSE};
use super::FilterError;
use crate::db::timestamp::Timestamp;

/// What a filtered field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Uuid,
    Text,
    Bool,
    Int,
    /// A JSON array of strings.
    Tags,
    Time,
    /// Deployment name or its flow's name (`flow_or_deployment_name`).
    FlowOrDeploymentName,
}

/// One filterable field: its key, column and the operators it accepts.
pub struct FieldSpec {
    pub key: &'static str,
    pub column: &'static str,
    pub kind: FieldKind,
    pub ops: &'static [&'static str],
}

const fn spec(key: &'static str, column: &'static str, kind: FieldKind, ops: &'static [&'static str]) -> FieldSpec {
    FieldSpec { key, column, kind, ops }
}

use FieldKind::*;

pub const DEPLOYMENT_FILTER: &[FieldSpec] = &[
    spec("id", "id", Uuid, &["any_", "not_any_"]),
    spec("name", "name", Text, &["any_", "like_"]),
    spec("flow_or_deployment_name", "name", FlowOrDeploymentName, &["like_"]),
    spec("paused", "paused", Bool, &["eq_"]),
    spec("tags", "tags", Tags, &["all_", "any_", "is_null_", "operator"]),
    spec("work_queue_name", "work_queue_name", Text, &["any_"]),
    spec("work_queue_id", "work_queue_id", Uuid, &["any_"]),
    spec("concurrency_limit", "concurrency_limit", Int, &["ge_", "le_", "is_null_"]),
    spec("flow_id", "flow_id", Uuid, &["any_"]),
];

pub const VARIABLE_FILTER: &[FieldSpec] = &[
    spec("id", "id", Uuid, &["any_"]),
    spec("name", "name", Text, &["any_", "like_"]),
    spec("tags", "tags", Tags, &["all_", "is_null_", "operator"]),
];

pub const WORK_POOL_FILTER: &[FieldSpec] = &[
    spec("id", "id", Uuid, &["any_"]),
    spec("name", "name", Text, &["any_"]),
    spec("type", "type", Text, &["any_"]),
];

pub const WORK_QUEUE_FILTER: &[FieldSpec] = &[
    spec("id", "id", Uuid, &["any_"]),
    spec("name", "name", Text, &["any_", "startswith_"]),
];

pub const WORKER_FILTER: &[FieldSpec] = &[
    spec("last_heartbeat_time", "last_heartbeat_time", Time, &["before_", "after_"]),
    spec("status", "status", Text, &["any_", "not_any_"]),
];

pub const ARTIFACT_FILTER: &[FieldSpec] = &[
    spec("id", "id", Uuid, &["any_"]),
    spec("key", "key", Text, &["any_", "like_", "exists_"]),
    spec("flow_run_id", "flow_run_id", Uuid, &["any_"]),
    spec("task_run_id", "task_run_id", Uuid, &["any_"]),
    spec("type", "type", Text, &["any_", "not_any_"]),
];

pub const ARTIFACT_COLLECTION_FILTER: &[FieldSpec] = &[
    spec("latest_id", "latest_id", Uuid, &["any_"]),
    spec("key", "key", Text, &["any_", "like_", "exists_"]),
    spec("flow_run_id", "flow_run_id", Uuid, &["any_"]),
    spec("task_run_id", "task_run_id", Uuid, &["any_"]),
    spec("type", "type", Text, &["any_", "not_any_"]),
];

pub const BLOCK_TYPE_FILTER: &[FieldSpec] = &[spec("name", "name", Text, &["like_"]), spec("slug", "slug", Text, &["any_"])];

/// `BlockSchemaFilter`: `block_capabilities.all_` is "has every one of".
pub const BLOCK_SCHEMA_FILTER: &[FieldSpec] = &[
    spec("block_type_id", "block_type_id", Uuid, &["any_"]),
    spec("block_capabilities", "capabilities", Tags, &["all_"]),
    spec("id", "id", Uuid, &["any_"]),
    spec("version", "schema_version", Text, &["any_"]),
];

/// `BlockDocumentFilter` (its `is_anonymous` default is the caller's).
pub const BLOCK_DOCUMENT_FILTER: &[FieldSpec] = &[
    spec("id", "id", Uuid, &["any_"]),
    spec("is_anonymous", "is_anonymous", Bool, &["eq_"]),
    spec("block_type_id", "block_type_id", Uuid, &["any_"]),
    spec("name", "name", Text, &["any_", "like_"]),
];

fn invalid(loc: &[&str], msg: impl Into<String>) -> FilterError {
    FilterError::Invalid { loc: loc.iter().map(|s| s.to_string()).collect(), msg: msg.into() }
}

fn operator(v: Option<&Value>, loc: &[&str]) -> Result<Operator, FilterError> {
    match v.and_then(Value::as_str) {
        None if v.is_none_or(Value::is_null) => Ok(Operator::And),
        Some("and_") => Ok(Operator::And),
        Some("or_") => Ok(Operator::Or),
        _ => Err(invalid(loc, "Input should be 'and_' or 'or_'")),
    }
}

fn strings(v: &Value, loc: &[&str], kind: FieldKind) -> Result<Vec<String>, FilterError> {
    let arr = v.as_array().ok_or_else(|| invalid(loc, "Input should be a valid list"))?;
    arr.iter()
        .map(|s| {
            let s = s.as_str().ok_or_else(|| invalid(loc, "Input should be a valid string"))?;
            if kind == Uuid {
                uuid::Uuid::parse_str(s).map(|u| u.to_string()).map_err(|_| invalid(loc, "Input should be a valid UUID"))
            } else {
                Ok(s.to_owned())
            }
        })
        .collect()
}

/// Compiles a document filter object (or `null`) on table alias `t`.
pub(crate) fn compile(ctx: &mut Ctx, filter: &Value, fields: &[FieldSpec], t: &str, loc: &[&str]) -> Result<String, FilterError> {
    let obj = match filter {
        Value::Null => return Ok(super::common::TRUE.to_owned()),
        Value::Object(m) => m,
        _ => return Err(invalid(loc, "Input should be a valid dictionary or object")),
    };
    let top = operator(obj.get("operator"), &[loc, &["operator"]].concat())?;
    let mut parts = Vec::new();
    for (key, sub) in obj {
        if key == "operator" {
            continue;
        }
        let at: Vec<&str> = [loc, &[key.as_str()]].concat();
        let field = fields.iter().find(|f| f.key == key).ok_or_else(|| invalid(&at, "Extra inputs are not permitted"))?;
        let sub = match sub {
            Value::Null => continue,
            Value::Object(m) => m,
            _ => return Err(invalid(&at, "Input should be a valid dictionary or object")),
        };
        let sub_op = operator(sub.get("operator"), &at)?;
        let col = format!("{t}.{}", field.column);
        let mut p = Vec::new();
        for (op_key, v) in sub {
            let at2: Vec<&str> = [at.as_slice(), &[op_key.as_str()]].concat();
            if !field.ops.contains(&op_key.as_str()) && op_key != "operator" {
                return Err(invalid(&at2, "Extra inputs are not permitted"));
            }
            if v.is_null() || op_key == "operator" {
                continue;
            }
            match (field.kind, op_key.as_str()) {
                (Tags, "all_") => p.extend(ctx.tags(&col, Some(&strings(v, &at2, Text)?), None, None)),
                (Tags, "any_") => p.extend(ctx.tags(&col, None, Some(&strings(v, &at2, Text)?), None)),
                (Tags, "is_null_") => p.extend(ctx.tags(&col, None, None, v.as_bool())),
                (_, "any_") => {
                    let items = strings(v, &at2, field.kind)?;
                    p.push(if items.is_empty() { FALSE.to_owned() } else { ctx.in_list(&col, &items) });
                }
                (_, "not_any_") => {
                    let items = strings(v, &at2, field.kind)?;
                    if !items.is_empty() {
                        p.push(ctx.not_in_list(&col, &items));
                    }
                }
                (FlowOrDeploymentName, "like_") => {
                    let needle = v.as_str().ok_or_else(|| invalid(&at2, "Input should be a valid string"))?;
                    let by_name = ctx.ilike_contains(&col, needle);
                    let f = ctx.alias("flow");
                    let by_flow = ctx.ilike_contains(&format!("{f}.name"), needle);
                    p.push(format!("({by_name}) OR EXISTS (SELECT 1 FROM flow {f} WHERE {f}.id = {t}.flow_id AND {by_flow})"));
                }
                (_, "like_") => {
                    let needle = v.as_str().ok_or_else(|| invalid(&at2, "Input should be a valid string"))?;
                    p.push(ctx.ilike_contains(&col, needle));
                }
                (_, "startswith_") => {
                    let prefixes = strings(v, &at2, Text)?;
                    let ors: Vec<String> = prefixes
                        .iter()
                        .map(|s| {
                            let ph = ctx.bind(format!("{s}%"));
                            format!("{col} LIKE {ph}")
                        })
                        .collect();
                    p.push(if ors.is_empty() { FALSE.to_owned() } else { format!("({})", ors.join(" OR ")) });
                }
                (Bool, "eq_") => {
                    let b = v.as_bool().ok_or_else(|| invalid(&at2, "Input should be a valid boolean"))?;
                    p.push(format!("{col} = {}", b as i64));
                }
                (_, "eq_") => {
                    let ph = ctx.bind(v.as_str().unwrap_or_default().to_owned());
                    p.push(format!("{col} = {ph}"));
                }
                (_, "is_null_") => p.push(null_check(&col, v.as_bool().unwrap_or(false))),
                // `exists_: true` is `IS NOT NULL`.
                (_, "exists_") => p.push(null_check(&col, !v.as_bool().unwrap_or(true))),
                (Int, "ge_") | (Int, "le_") => {
                    let n = v.as_i64().ok_or_else(|| invalid(&at2, "Input should be a valid integer"))?;
                    let cmp = if op_key == "ge_" { ">=" } else { "<=" };
                    p.push(format!("{col} {cmp} {n}"));
                }
                (Time, "before_") | (Time, "after_") => {
                    let ts = v.as_str().and_then(Timestamp::parse).ok_or_else(|| invalid(&at2, "Input should be a valid datetime"))?;
                    let (b, a) = if op_key == "before_" { (Some(&ts), None) } else { (None, Some(&ts)) };
                    p.extend(ctx.time_range(&col, b, a, None));
                }
                _ => return Err(invalid(&at2, "Extra inputs are not permitted")),
            }
        }
        let joined = if field.kind == Tags { combine(p, sub_op) } else { combine(p, Operator::And) };
        parts.push(joined);
    }
    Ok(combine(parts, top))
}
