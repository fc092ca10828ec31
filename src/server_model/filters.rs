//! Prefect 3 filter and sort request bodies, compiled to SQL over the server
//! read model (projections/server/schema.sql).
//!
//! The filter shapes and their semantics follow Prefect 3.8.8's
//! `prefect/server/schemas/filters.py` and the `_apply_*_filters` helpers in
//! `prefect/server/models`: every filter object is strict about its keys, a
//! sub-filter with no criteria is TRUE, `operator` combines sibling criteria,
//! an empty `any_` list matches nothing, an empty `not_any_` is ignored, and
//! a cross-object filter that is present (even `{}`) requires a related row
//! (e.g. `flow_runs: {}` on `/flows/filter` keeps only flows that have runs).
//!
//! The builders return [`Sql`] with `$n` placeholders; callers rewrite it with
//! [`Dialect::rewrite`] and bind [`Sql::binds`] in order.

mod artifacts;
mod blocks;
mod common;
pub mod documents;
mod flow_runs;
mod flows;
mod logs;
mod task_runs;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

pub use artifacts::{artifacts_where, ArtifactFilterBody};
pub use blocks::{block_documents_where, block_documents_where_exactly, block_schemas_where, block_types_where};
pub use common::{format_ts, Operator, StateType, Timestamp};
pub use flow_runs::*;
pub use flows::*;
pub use logs::*;
pub use task_runs::*;

use crate::db::sql::{Bind, Dialect, Sql};
use crate::server_model::sorts::{FlowRunSort, FlowSort, LogSort, TaskRunSort};
use common::Ctx;

/// Why a request body cannot be answered. Both map to HTTP 422.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    /// The body is malformed or out of range; `loc` is pydantic-style
    /// (e.g. `["body", "limit"]`).
    #[error("{msg} (at {})", loc.join("."))]
    Invalid { loc: Vec<String>, msg: String },
    /// A filter on objects this server does not model yet (e.g. `"deployments"`).
    #[error("filtering on {0} is not supported by this server")]
    Unsupported(String),
}

/// Prefect's `PREFECT_SERVER_API_DEFAULT_LIMIT`: the default and the maximum page size.
pub const DEFAULT_LIMIT: i64 = 200;

/// The body of `POST /flows/filter|count`, `/flow_runs/filter|count` and
/// `/task_runs/filter|count`. Like FastAPI, unknown top-level keys are
/// ignored (the filter objects themselves reject unknown keys), and a `null`
/// value means "absent".
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunFilterBody {
    pub flows: Option<FlowFilter>,
    pub flow_runs: Option<FlowRunFilter>,
    pub task_runs: Option<TaskRunFilter>,
    /// `DeploymentFilter`, compiled by [`documents::compile`].
    pub deployments: Option<Value>,
    /// `WorkPoolFilter`.
    pub work_pools: Option<Value>,
    /// `WorkQueueFilter`.
    pub work_pool_queues: Option<Value>,
    pub sort: Option<String>,
    #[serde(default, deserialize_with = "lax_int")]
    pub limit: Option<i64>,
    #[serde(default, deserialize_with = "lax_int")]
    pub offset: Option<i64>,
}

/// The body of `POST /logs/filter`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LogFilterBody {
    pub logs: Option<LogFilter>,
    pub sort: Option<String>,
    #[serde(default, deserialize_with = "lax_int")]
    pub limit: Option<i64>,
    #[serde(default, deserialize_with = "lax_int")]
    pub offset: Option<i64>,
}

impl RunFilterBody {
    /// Parses a request body; an empty body is all defaults.
    pub fn from_json(bytes: &[u8]) -> Result<Self, FilterError> {
        parse_body(bytes)
    }
}

impl LogFilterBody {
    /// Parses a request body; an empty body is all defaults.
    pub fn from_json(bytes: &[u8]) -> Result<Self, FilterError> {
        parse_body(bytes)
    }
}

fn parse_body<T: Default + for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, FilterError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| FilterError::Invalid { loc: vec!["body".to_owned()], msg: e.to_string() })
}

/// Integers as pydantic's lax mode takes them: JSON integers, integral
/// floats, and numeric strings; `null` is absent.
fn lax_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    let v = Option::<Value>::deserialize(d)?;
    let bad = || D::Error::custom("Input should be a valid integer");
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
            _ => Err(bad()),
        },
        Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

/// A filter on an unmodelled object is accepted only when it constrains
/// nothing: `null`, or an object whose members are all `operator` keys or
/// (recursively) vacuous. An empty list is a constraint (it matches nothing).
pub fn is_vacuous(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.iter().all(|(k, v)| k == "operator" || is_vacuous(v)),
        _ => false,
    }
}

/// `EXISTS (flow run matching the body's flow-run and task-run filters,
/// whose `run_column` is `outer`)`, or `None` when neither filter is present.
fn run_exists(ctx: &mut Ctx, body: &RunFilterBody, run_column: &str, outer: &str) -> Option<String> {
    if body.flow_runs.is_none() && body.task_runs.is_none() {
        return None;
    }
    let fr = ctx.alias("flow_run");
    let mut from = format!("flow_run {fr}");
    let mut conds = vec![format!("{fr}.{run_column} = {outer}")];
    if let Some(f) = &body.flow_runs {
        conds.push(f.to_sql(ctx, &fr));
    }
    if let Some(f) = &body.task_runs {
        let tr = ctx.alias("task_run");
        from.push_str(&format!(" JOIN task_run {tr} ON {tr}.flow_run_id = {fr}.id"));
        conds.push(f.to_sql(ctx, &tr));
    }
    Some(format!("EXISTS (SELECT 1 FROM {from} WHERE {})", all_of(&conds)))
}

/// `EXISTS (deployment matching the body's deployment and work pool
/// filters, joined to the outer row by `link`)`, or `None` when neither
/// filter is present.
fn deployment_exists(ctx: &mut Ctx, body: &RunFilterBody, link: &str) -> Result<Option<String>, FilterError> {
    let deployments = body.deployments.as_ref().filter(|v| !v.is_null());
    let pools = body.work_pools.as_ref().filter(|v| !v.is_null());
    if deployments.is_none() && pools.is_none() {
        return Ok(None);
    }
    let d = ctx.alias("deployment");
    let mut from = format!("deployment {d}");
    let mut conds = vec![format!("{d}.{link}")];
    if let Some(f) = deployments {
        conds.push(documents::compile(ctx, f, documents::DEPLOYMENT_FILTER, &d, &["body", "deployments"])?);
    }
    if let Some(f) = pools {
        let (q, p) = (ctx.alias("work_queue"), ctx.alias("work_pool"));
        from.push_str(&format!(" JOIN work_queue {q} ON {q}.id = {d}.work_queue_id JOIN work_pool {p} ON {p}.id = {q}.work_pool_id"));
        conds.push(documents::compile(ctx, f, documents::WORK_POOL_FILTER, &p, &["body", "work_pools"])?);
    }
    Ok(Some(format!("EXISTS (SELECT 1 FROM {from} WHERE {})", all_of(&conds))))
}

/// Compiles a document filter (see [`documents`]) on alias `t`, adding its
/// binds to `sql`.
pub fn compile_doc_filter(
    sql: &mut Sql,
    dialect: Dialect,
    filter: &Value,
    fields: &[documents::FieldSpec],
    t: &str,
    loc: &[&str],
) -> Result<String, FilterError> {
    let mut ctx = Ctx::new(sql, dialect);
    documents::compile(&mut ctx, filter, fields, t, loc)
}

/// The WHERE condition (on table `deployment`) for `/deployments/filter|count`.
pub fn deployments_where(body: &RunFilterBody, dialect: Dialect, sql: &mut Sql, workspace_id: &str) -> Result<String, FilterError> {
    let mut ctx = Ctx::new(sql, dialect);
    let ws = ctx.bind(workspace_id);
    let mut parts = vec![format!("deployment.workspace_id = {ws}")];
    if let Some(f) = body.deployments.as_ref().filter(|v| !v.is_null()) {
        parts.push(documents::compile(&mut ctx, f, documents::DEPLOYMENT_FILTER, "deployment", &["body", "deployments"])?);
    }
    if let Some(f) = &body.flows {
        let a = ctx.alias("flow");
        let cond = f.to_sql(&mut ctx, &a);
        parts.push(format!("EXISTS (SELECT 1 FROM flow {a} WHERE ({a}.id = deployment.flow_id) AND ({cond}))"));
    }
    if let Some(cond) = run_exists(&mut ctx, body, "deployment_id", "deployment.id") {
        parts.push(cond);
    }
    let pools = body.work_pools.as_ref().filter(|v| !v.is_null());
    let queues = body.work_pool_queues.as_ref().filter(|v| !v.is_null());
    if pools.is_some() || queues.is_some() {
        let (q, p) = (ctx.alias("work_queue"), ctx.alias("work_pool"));
        let mut conds = vec![format!("{q}.id = deployment.work_queue_id")];
        if let Some(f) = queues {
            conds.push(documents::compile(&mut ctx, f, documents::WORK_QUEUE_FILTER, &q, &["body", "work_pool_queues"])?);
        }
        if let Some(f) = pools {
            conds.push(documents::compile(&mut ctx, f, documents::WORK_POOL_FILTER, &p, &["body", "work_pools"])?);
        }
        parts.push(format!("EXISTS (SELECT 1 FROM work_queue {q} JOIN work_pool {p} ON {p}.id = {q}.work_pool_id WHERE {})", all_of(&conds)));
    }
    Ok(all_of(&parts))
}

/// `POST /deployments/filter`: `SELECT {columns} FROM deployment ...` (default sort `NAME_ASC`).
pub fn select_deployments(body: &RunFilterBody, dialect: Dialect, workspace_id: &str, columns: &str) -> Result<Sql, FilterError> {
    let order = crate::server_model::sorts::deployment_order(body.sort.as_deref())?;
    let (limit, offset) = page(body.limit, body.offset)?;
    let mut sql = Sql::default();
    let cond = deployments_where(body, dialect, &mut sql, workspace_id)?;
    Ok(select(sql, columns, "deployment", &cond, &order, limit, offset))
}

/// `POST /deployments/count`.
pub fn count_deployments(body: &RunFilterBody, dialect: Dialect, workspace_id: &str) -> Result<Sql, FilterError> {
    let mut sql = Sql::default();
    let cond = deployments_where(body, dialect, &mut sql, workspace_id)?;
    Ok(count(sql, "deployment", &cond))
}

/// Validates `limit` (default and maximum [`DEFAULT_LIMIT`], at least 0, as
/// Prefect's `LimitBody`) and `offset` (at least 0, default 0).
pub fn page(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), FilterError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit < 0 {
        return Err(invalid("limit", "Invalid limit: must be greater than or equal to 0."));
    }
    if limit > DEFAULT_LIMIT {
        return Err(invalid("limit", &format!("Invalid limit: must be less than or equal to {DEFAULT_LIMIT}.")));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(invalid("offset", "Input should be greater than or equal to 0"));
    }
    Ok((limit, offset))
}

fn invalid(field: &str, msg: &str) -> FilterError {
    FilterError::Invalid { loc: vec!["body".to_owned(), field.to_owned()], msg: msg.to_owned() }
}

/// Joins conditions with AND, each parenthesised.
fn all_of(parts: &[String]) -> String {
    parts.iter().map(|p| format!("({p})")).collect::<Vec<_>>().join(" AND ")
}

// ---------------------------------------------------------------- WHERE ---

/// The WHERE condition (on table `flow`) for `/flows/filter|count`.
pub fn flows_where(body: &RunFilterBody, dialect: Dialect, sql: &mut Sql, workspace_id: &str) -> Result<String, FilterError> {
    // `work_pool_queues` is not a parameter of the flow routes: Prefect ignores it.
    let mut ctx = Ctx::new(sql, dialect);
    let ws = ctx.bind(workspace_id);
    let mut parts = vec![format!("flow.workspace_id = {ws}")];
    if let Some(f) = &body.flows {
        parts.push(f.to_sql(&mut ctx, "flow"));
    }
    if let Some(cond) = deployment_exists(&mut ctx, body, "flow_id = flow.id")? {
        parts.push(cond);
    }
    if let Some(cond) = run_exists(&mut ctx, body, "flow_id", "flow.id") {
        parts.push(cond);
    }
    Ok(all_of(&parts))
}

/// The WHERE condition (on table `flow_run`) for `/flow_runs/filter|count`.
pub fn flow_runs_where(body: &RunFilterBody, dialect: Dialect, sql: &mut Sql, workspace_id: &str) -> Result<String, FilterError> {
    let mut ctx = Ctx::new(sql, dialect);
    let ws = ctx.bind(workspace_id);
    let mut parts = vec![format!("flow_run.workspace_id = {ws}")];
    if let Some(f) = body.deployments.as_ref().filter(|v| !v.is_null()) {
        let a = ctx.alias("deployment");
        let cond = documents::compile(&mut ctx, f, documents::DEPLOYMENT_FILTER, &a, &["body", "deployments"])?;
        parts.push(format!("EXISTS (SELECT 1 FROM deployment {a} WHERE ({a}.id = flow_run.deployment_id) AND ({cond}))"));
    }
    if let Some(f) = body.work_pools.as_ref().filter(|v| !v.is_null()) {
        let a = ctx.alias("work_pool");
        let cond = documents::compile(&mut ctx, f, documents::WORK_POOL_FILTER, &a, &["body", "work_pools"])?;
        parts.push(format!("EXISTS (SELECT 1 FROM work_pool {a} WHERE ({a}.id = flow_run.work_pool_id) AND ({cond}))"));
    }
    if let Some(f) = body.work_pool_queues.as_ref().filter(|v| !v.is_null()) {
        let a = ctx.alias("work_queue");
        let cond = documents::compile(&mut ctx, f, documents::WORK_QUEUE_FILTER, &a, &["body", "work_pool_queues"])?;
        parts.push(format!("EXISTS (SELECT 1 FROM work_queue {a} WHERE ({a}.id = flow_run.work_queue_id) AND ({cond}))"));
    }
    if let Some(f) = &body.flow_runs {
        parts.push(f.to_sql(&mut ctx, "flow_run"));
    }
    if let Some(f) = &body.flows {
        let a = ctx.alias("flow");
        let cond = f.to_sql(&mut ctx, &a);
        parts.push(format!("EXISTS (SELECT 1 FROM flow {a} WHERE ({a}.id = flow_run.flow_id) AND ({cond}))"));
    }
    if let Some(f) = &body.task_runs {
        let a = ctx.alias("task_run");
        let cond = f.to_sql(&mut ctx, &a);
        parts.push(format!("EXISTS (SELECT 1 FROM task_run {a} WHERE ({a}.flow_run_id = flow_run.id) AND ({cond}))"));
    }
    Ok(all_of(&parts))
}

/// The WHERE condition (on table `task_run`) for `/task_runs/filter|count`.
///
/// With `id_shortcut` (what Prefect's read does, not its count), a
/// `flow_runs` filter on ids alone becomes `task_run.flow_run_id IN (...)`
/// rather than requiring the flow run row to exist.
pub fn task_runs_where(
    body: &RunFilterBody,
    dialect: Dialect,
    sql: &mut Sql,
    workspace_id: &str,
    id_shortcut: bool,
) -> Result<String, FilterError> {
    // `work_pools` / `work_pool_queues` are not parameters of the task run
    // routes: Prefect ignores them.
    let mut ctx = Ctx::new(sql, dialect);
    let ws = ctx.bind(workspace_id);
    let mut parts = vec![format!("task_run.workspace_id = {ws}")];
    if let Some(f) = body.deployments.as_ref().filter(|v| !v.is_null()) {
        let (fr, d) = (ctx.alias("flow_run"), ctx.alias("deployment"));
        let cond = documents::compile(&mut ctx, f, documents::DEPLOYMENT_FILTER, &d, &["body", "deployments"])?;
        parts.push(format!(
            "EXISTS (SELECT 1 FROM flow_run {fr} JOIN deployment {d} ON {d}.id = {fr}.deployment_id WHERE ({fr}.id = task_run.flow_run_id) AND ({cond}))"
        ));
    }
    if let Some(f) = &body.task_runs {
        parts.push(f.to_sql(&mut ctx, "task_run"));
    }
    match (&body.flow_runs, &body.flows) {
        (Some(fr), None) if id_shortcut && fr.only_filters_on_id() => {
            let ids = common::uuids(fr.id.as_ref().and_then(|i| i.any_.as_deref()).unwrap_or_default());
            parts.push(ctx.in_list("task_run.flow_run_id", &ids));
        }
        (None, None) => {}
        (frf, ff) => {
            let fr = ctx.alias("flow_run");
            let mut from = format!("flow_run {fr}");
            let mut conds = vec![format!("{fr}.id = task_run.flow_run_id")];
            if let Some(f) = frf {
                conds.push(f.to_sql(&mut ctx, &fr));
            }
            if let Some(f) = ff {
                let fl = ctx.alias("flow");
                from.push_str(&format!(" JOIN flow {fl} ON {fl}.id = {fr}.flow_id"));
                conds.push(f.to_sql(&mut ctx, &fl));
            }
            parts.push(format!("EXISTS (SELECT 1 FROM {from} WHERE {})", all_of(&conds)));
        }
    }
    Ok(all_of(&parts))
}

/// The WHERE condition (on table `task_run`) for the one task-run route
/// whose filters also take work pools and queues
/// (`/ui/task_runs/dashboard/counts`): Prefect's `_apply_task_run_filters`
/// with `work_pool_filter` / `work_queue_filter`, which require the task
/// run's flow run to sit in a matching queue (and pool). Either filter turns
/// off the flow-run-id shortcut, as in Prefect.
pub fn task_runs_where_with_pools(body: &RunFilterBody, dialect: Dialect, sql: &mut Sql, workspace_id: &str) -> Result<String, FilterError> {
    let pools = body.work_pools.as_ref().filter(|v| !v.is_null());
    let queues = body.work_pool_queues.as_ref().filter(|v| !v.is_null());
    let base = task_runs_where(body, dialect, sql, workspace_id, pools.is_none() && queues.is_none())?;
    if pools.is_none() && queues.is_none() {
        return Ok(base);
    }
    let mut ctx = Ctx::new(sql, dialect);
    let (fr, q, p) = ("pool_flow_run", "pool_work_queue", "pool_work_pool");
    let mut from = format!("flow_run {fr} JOIN work_queue {q} ON {q}.id = {fr}.work_queue_id");
    let mut conds = vec![format!("{fr}.id = task_run.flow_run_id")];
    if let Some(f) = queues {
        conds.push(documents::compile(&mut ctx, f, documents::WORK_QUEUE_FILTER, q, &["body", "work_queues"])?);
    }
    if let Some(f) = pools {
        from.push_str(&format!(" JOIN work_pool {p} ON {p}.id = {q}.work_pool_id"));
        conds.push(documents::compile(&mut ctx, f, documents::WORK_POOL_FILTER, p, &["body", "work_pools"])?);
    }
    Ok(all_of(&[base, format!("EXISTS (SELECT 1 FROM {from} WHERE {})", all_of(&conds))]))
}

/// The WHERE condition (on table `log`) for `/logs/filter`.
pub fn logs_where(logs: Option<&LogFilter>, dialect: Dialect, sql: &mut Sql, workspace_id: &str) -> Result<String, FilterError> {
    if let Some(f) = logs {
        f.validate(&["body", "logs"])?;
    }
    let mut ctx = Ctx::new(sql, dialect);
    let ws = ctx.bind(workspace_id);
    let mut parts = vec![format!("log.workspace_id = {ws}")];
    if let Some(f) = logs {
        parts.push(f.to_sql(&mut ctx, "log"));
    }
    Ok(all_of(&parts))
}

// ------------------------------------------------------- full statements ---

fn select(mut sql: Sql, columns: &str, table: &str, cond: &str, order: &str, limit: i64, offset: i64) -> Sql {
    debug_assert!(!columns.contains('$'), "column lists must not contain '$'");
    let l = sql.placeholder(Bind::Int(limit));
    let o = sql.placeholder(Bind::Int(offset));
    sql.text = format!("SELECT {columns} FROM {table} WHERE {cond} ORDER BY {order} LIMIT {l} OFFSET {o}");
    sql
}

fn count(mut sql: Sql, table: &str, cond: &str) -> Sql {
    sql.text = format!("SELECT COUNT(*) FROM {table} WHERE {cond}");
    sql
}

/// `POST /flows/filter`: `SELECT {columns} FROM flow ...` (default sort `NAME_ASC`).
pub fn select_flows(body: &RunFilterBody, dialect: Dialect, workspace_id: &str, columns: &str) -> Result<Sql, FilterError> {
    let sort = FlowSort::parse_or_default(body.sort.as_deref())?;
    let (limit, offset) = page(body.limit, body.offset)?;
    let mut sql = Sql::default();
    let cond = flows_where(body, dialect, &mut sql, workspace_id)?;
    Ok(select(sql, columns, "flow", &cond, &sort.order_by("flow"), limit, offset))
}

/// `POST /flows/count`: one row, one integer column (sort/limit/offset ignored, as in Prefect).
pub fn count_flows(body: &RunFilterBody, dialect: Dialect, workspace_id: &str) -> Result<Sql, FilterError> {
    let mut sql = Sql::default();
    let cond = flows_where(body, dialect, &mut sql, workspace_id)?;
    Ok(count(sql, "flow", &cond))
}

/// `POST /flow_runs/filter`: `SELECT {columns} FROM flow_run ...` (default sort `ID_DESC`).
pub fn select_flow_runs(body: &RunFilterBody, dialect: Dialect, workspace_id: &str, columns: &str) -> Result<Sql, FilterError> {
    let sort = FlowRunSort::parse_or_default(body.sort.as_deref())?;
    let (limit, offset) = page(body.limit, body.offset)?;
    let mut sql = Sql::default();
    let cond = flow_runs_where(body, dialect, &mut sql, workspace_id)?;
    Ok(select(sql, columns, "flow_run", &cond, &sort.order_by("flow_run"), limit, offset))
}

/// `SELECT {columns} FROM flow_run ...` with a sort and page the caller
/// validated (routes whose limits differ from the default, such as
/// `/ui/flow_runs/history`).
pub fn select_flow_runs_page(
    body: &RunFilterBody,
    dialect: Dialect,
    workspace_id: &str,
    columns: &str,
    sort: FlowRunSort,
    limit: i64,
    offset: i64,
) -> Result<Sql, FilterError> {
    let mut sql = Sql::default();
    let cond = flow_runs_where(body, dialect, &mut sql, workspace_id)?;
    Ok(select(sql, columns, "flow_run", &cond, &sort.order_by("flow_run"), limit, offset))
}

/// `POST /flow_runs/count`.
pub fn count_flow_runs(body: &RunFilterBody, dialect: Dialect, workspace_id: &str) -> Result<Sql, FilterError> {
    let mut sql = Sql::default();
    let cond = flow_runs_where(body, dialect, &mut sql, workspace_id)?;
    Ok(count(sql, "flow_run", &cond))
}

/// `POST /task_runs/filter`: `SELECT {columns} FROM task_run ...` (default sort `ID_DESC`).
pub fn select_task_runs(body: &RunFilterBody, dialect: Dialect, workspace_id: &str, columns: &str) -> Result<Sql, FilterError> {
    let sort = TaskRunSort::parse_or_default(body.sort.as_deref())?;
    let (limit, offset) = page(body.limit, body.offset)?;
    let mut sql = Sql::default();
    let cond = task_runs_where(body, dialect, &mut sql, workspace_id, true)?;
    Ok(select(sql, columns, "task_run", &cond, &sort.order_by("task_run"), limit, offset))
}

/// `POST /task_runs/count`.
pub fn count_task_runs(body: &RunFilterBody, dialect: Dialect, workspace_id: &str) -> Result<Sql, FilterError> {
    let mut sql = Sql::default();
    let cond = task_runs_where(body, dialect, &mut sql, workspace_id, false)?;
    Ok(count(sql, "task_run", &cond))
}

/// `POST /logs/filter`: `SELECT {columns} FROM log ...` (default sort `TIMESTAMP_ASC`).
pub fn select_logs(body: &LogFilterBody, dialect: Dialect, workspace_id: &str, columns: &str) -> Result<Sql, FilterError> {
    let sort = LogSort::parse_or_default(body.sort.as_deref())?;
    let (limit, offset) = page(body.limit, body.offset)?;
    let mut sql = Sql::default();
    let cond = logs_where(body.logs.as_ref(), dialect, &mut sql, workspace_id)?;
    Ok(select(sql, columns, "log", &cond, &sort.order_by("log"), limit, offset))
}

#[cfg(test)]
mod tests;
