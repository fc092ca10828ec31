//! Deployment commands: create (upsert on flow + name), update, delete,
//! schedules, flow runs from a deployment, and the polling marks.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::concurrency_limits;
use super::documents::{self as doc, find};
use super::flow_runs::{self, FlowRunCreate, RunOrigin};
use super::work_pools::{self as pools, id_of, WorkPoolCreate, WorkQueueCreate, DEFAULT_AGENT_POOL};
use super::write;
use crate::api::error::{ApiResult, AppError};
use crate::db::{Bind, Db, Dialect};
use crate::eventlog::{lock_key, lock_stream, StreamRef, StreamType, DEFAULT_WORKSPACE};
use crate::orchestration::job_variables;
use crate::orchestration::outcome::ProposedState;
use crate::orchestration::states::FlowRunPolicy;
use crate::schedules::Schedule;
use crate::server_model::documents::{DEPLOYMENT, DEPLOYMENT_SCHEDULE};
use crate::server_model::feed_events as feed;
use super::schedule_patch::{self, SchedulePatch};

/// `DeploymentScheduleCreate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleCreate {
    #[serde(default = "yes")]
    pub active: bool,
    pub schedule: Value,
    #[serde(default)]
    pub max_scheduled_runs: Option<i64>,
    #[serde(default, deserialize_with = "super::null_as_default")]
    pub parameters: Map<String, Value>,
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub replaces: Option<String>,
}

/// `DeploymentScheduleUpdate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleUpdate {
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub schedule: Option<Value>,
    #[serde(default)]
    pub max_scheduled_runs: Option<i64>,
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub replaces: Option<String>,
}

fn yes() -> bool {
    true
}

/// `DeploymentCreate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentCreate {
    pub name: String,
    pub flow_id: Uuid,
    #[serde(default)]
    pub paused: bool,
    #[serde(default, deserialize_with = "super::null_as_default")]
    pub schedules: Vec<ScheduleCreate>,
    #[serde(default)]
    pub concurrency_limit: Option<i64>,
    #[serde(default)]
    pub concurrency_options: Option<Value>,
    #[serde(default)]
    pub global_concurrency_limit_id: Option<Uuid>,
    #[serde(default = "yes")]
    pub enforce_parameter_schema: bool,
    #[serde(default)]
    pub parameter_openapi_schema: Option<Value>,
    #[serde(default, deserialize_with = "super::null_as_default")]
    pub parameters: Map<String, Value>,
    #[serde(default, deserialize_with = "super::null_as_default")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub labels: Option<Map<String, Value>>,
    #[serde(default)]
    pub pull_steps: Option<Vec<Value>>,
    #[serde(default)]
    pub work_queue_name: Option<String>,
    #[serde(default)]
    pub work_pool_name: Option<String>,
    #[serde(default)]
    pub storage_document_id: Option<Uuid>,
    #[serde(default)]
    pub infrastructure_document_id: Option<Uuid>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub entrypoint: Option<String>,
    #[serde(default, deserialize_with = "super::null_as_default")]
    pub job_variables: Map<String, Value>,
    #[serde(default)]
    pub version_info: Option<Value>,
}

/// `DeploymentFlowRunCreate`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentFlowRunCreate {
    #[serde(default)]
    pub state: Option<ProposedState>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "super::null_as_default")]
    pub parameters: Map<String, Value>,
    #[serde(default)]
    pub enforce_parameter_schema: Option<bool>,
    #[serde(default, deserialize_with = "super::null_as_default")]
    pub context: Map<String, Value>,
    #[serde(default)]
    pub infrastructure_document_id: Option<Uuid>,
    #[serde(default)]
    pub empirical_policy: Option<FlowRunPolicy>,
    #[serde(default, deserialize_with = "super::null_as_default")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub labels: Option<Map<String, Value>>,
    #[serde(default)]
    pub parent_task_run_id: Option<Uuid>,
    #[serde(default)]
    pub work_queue_name: Option<String>,
    #[serde(default, deserialize_with = "super::null_as_default")]
    pub job_variables: Map<String, Value>,
    /// Who asked for the run (`{id, type, display_value}`): an automation
    /// for runs its actions start. Not part of Prefect's request body (it
    /// reads the `Prefect-Automation-*` headers).
    #[serde(skip)]
    pub created_by: Value,
}

/// Fields `DeploymentUpdate` may carry (anything else is a 422).
const UPDATE_FIELDS: &[&str] = &[
    "version",
    "description",
    "paused",
    "schedules",
    "concurrency_limit",
    "concurrency_options",
    "global_concurrency_limit_id",
    "parameters",
    "parameter_openapi_schema",
    "tags",
    "work_queue_name",
    "work_pool_name",
    "path",
    "job_variables",
    "pull_steps",
    "entrypoint",
    "storage_document_id",
    "infrastructure_document_id",
    "enforce_parameter_schema",
    "version_info",
];

fn now() -> DateTime<Utc> {
    crate::time::micros(Utc::now())
}

fn positive_limit(loc: &[&str], v: Option<i64>) -> ApiResult<()> {
    match v {
        Some(n) if n < 1 => Err(AppError::invalid(loc, "Input should be greater than 0", json!(n))),
        _ => Ok(()),
    }
}

/// Validates a schedule create body; returns the normalised schedule JSON.
pub fn validate_schedule(loc: &[&str], s: &ScheduleCreate) -> ApiResult<Value> {
    positive_limit(&[loc, &["max_scheduled_runs"]].concat(), s.max_scheduled_runs)?;
    parse_schedule(&[loc, &["schedule"]].concat(), &s.schedule)
}

fn parse_schedule(loc: &[&str], v: &Value) -> ApiResult<Value> {
    match Schedule::parse_action(v, Utc::now()) {
        Ok(s) => Ok(s.to_json()),
        Err(e) => {
            let mut at: Vec<&str> = loc.to_vec();
            at.extend(e.loc.iter().map(String::as_str));
            Err(AppError::invalid(&at, e.msg.clone(), v.clone()))
        }
    }
}

pub async fn deployment_by_id(conn: &mut AnyConnection, dialect: Dialect, id: Uuid) -> ApiResult<Option<Map<String, Value>>> {
    find(conn, dialect, &DEPLOYMENT, "t.id = $1", &[Bind::Text(id.to_string())]).await
}

async fn require_deployment(conn: &mut AnyConnection, dialect: Dialect, id: Uuid) -> ApiResult<Map<String, Value>> {
    deployment_by_id(conn, dialect, id)
        .await?
        .ok_or_else(|| AppError::Detail(axum::http::StatusCode::NOT_FOUND, "Deployment not found.".into()))
}

/// Resolves `(work_pool_name, work_queue_name)` to a queue as Prefect does,
/// creating the named queue (and the legacy agent pool) when missing.
/// Returns `(queue id, queue name)`.
async fn resolve_queue(conn: &mut AnyConnection, dialect: Dialect, pool: Option<&str>, queue: Option<&str>) -> ApiResult<Option<(Uuid, String)>> {
    let pool_name = match (pool, queue) {
        (None, None) => return Ok(None),
        (Some(p), _) => p.to_owned(),
        (None, Some(_)) => DEFAULT_AGENT_POOL.to_owned(),
    };
    lock_key(conn, dialect, &format!("work-pool-name:{pool_name}")).await?;
    let pool_doc = match pools::pool_by_name(conn, dialect, &pool_name).await? {
        Some(p) => p,
        None if pool_name == DEFAULT_AGENT_POOL => {
            let body = WorkPoolCreate {
                name: pool_name.clone(),
                description: None,
                pool_type: "prefect-agent".into(),
                base_job_template: Map::new(),
                is_paused: false,
                concurrency_limit: None,
                storage_configuration: None,
            };
            pools::insert_pool(conn, dialect, body, Utc::now()).await?;
            pools::require_pool(conn, dialect, &pool_name).await?
        }
        None => return Err(AppError::Detail(axum::http::StatusCode::NOT_FOUND, format!("Work pool \"{pool_name}\" not found."))),
    };
    let pool_id = id_of(&pool_doc)?;
    match queue {
        None => {
            let qid = pool_doc
                .get("default_queue_id")
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| AppError::Detail(axum::http::StatusCode::NOT_FOUND, format!("Work pool \"{pool_name}\" not found.")))?;
            let name = pools::queue_by_id(conn, dialect, qid).await?.and_then(|q| q.get("name").and_then(Value::as_str).map(str::to_owned));
            Ok(Some((qid, name.unwrap_or_else(|| "default".into()))))
        }
        Some(qname) => {
            if let Some(q) = pools::queue_in_pool(conn, dialect, &pool_id.to_string(), qname).await? {
                return Ok(Some((id_of(&q)?, qname.to_owned())));
            }
            let body = WorkQueueCreate {
                name: qname.to_owned(),
                description: Some(String::new()),
                is_paused: false,
                concurrency_limit: None,
                priority: None,
                filter: None,
            };
            pools::validate_queue_create(&body)?;
            Ok(Some((pools::create_queue_in(conn, dialect, pool_id, body).await?, qname.to_owned())))
        }
    }
}

/// Creates or (same flow and name) updates a deployment, replacing its
/// schedules and its future auto-scheduled runs. Returns `(id, created)`.
pub async fn create_deployment(db: &Db, body: DeploymentCreate) -> ApiResult<(Uuid, bool)> {
    super::names::validate_name(&["body", "name"], &body.name)?;
    positive_limit(&["body", "concurrency_limit"], body.concurrency_limit)?;
    let mut schedules = Vec::with_capacity(body.schedules.len());
    for (i, s) in body.schedules.iter().enumerate() {
        let idx = i.to_string();
        schedules.push(validate_schedule(&["body", "schedules", &idx], s)?);
    }
    let dialect = db.dialect;
    write(db, move |conn| {
        let body = body.clone();
        let schedules = schedules.clone();
        Box::pin(async move {
            let flow = sqlx::query(&dialect.rewrite("SELECT labels FROM flow WHERE id = $1 AND workspace_id = $2"))
                .bind(body.flow_id.to_string())
                .bind(DEFAULT_WORKSPACE.to_string())
                .fetch_optional(&mut *conn)
                .await?
                .ok_or(AppError::Conflict)?;
            let flow_labels: Map<String, Value> = serde_json::from_str(&flow.try_get::<String, _>(0)?).unwrap_or_default();
            lock_key(conn, dialect, &format!("deployment-name:{}:{}", body.flow_id, body.name)).await?;
            let existing = find(conn, dialect, &DEPLOYMENT, "t.flow_id = $1 AND t.name = $2", &[Bind::Text(body.flow_id.to_string()), Bind::Text(body.name.clone())]).await?;
            let queue = resolve_queue(conn, dialect, body.work_pool_name.as_deref(), body.work_queue_name.as_deref()).await?;
            if body.work_pool_name.is_some() {
                if let Some(template) = template_of_queue(conn, dialect, queue.as_ref().map(|q| q.0)).await? {
                    job_variables::deployment(&template, &body.job_variables).map_err(|r| job_variables_error(r, "creating deployment"))?;
                }
            }
            let mut labels = flow_labels;
            labels.insert("prefect.flow.id".into(), json!(body.flow_id));
            labels.extend(body.labels.clone().unwrap_or_default());
            let mut fields = Map::from_iter([
                ("name".into(), json!(body.name)),
                ("version".into(), json!(body.version)),
                ("version_info".into(), body.version_info.clone().unwrap_or(Value::Null)),
                ("description".into(), json!(body.description)),
                ("flow_id".into(), json!(body.flow_id)),
                ("paused".into(), json!(body.paused)),
                ("tags".into(), json!(body.tags)),
                ("labels".into(), Value::Object(labels)),
                ("parameters".into(), Value::Object(body.parameters.clone())),
                ("parameter_openapi_schema".into(), body.parameter_openapi_schema.clone().unwrap_or(Value::Null)),
                ("enforce_parameter_schema".into(), json!(body.enforce_parameter_schema)),
                ("pull_steps".into(), json!(body.pull_steps)),
                ("job_variables".into(), Value::Object(body.job_variables.clone())),
                ("work_queue_id".into(), json!(queue.as_ref().map(|q| q.0))),
                ("work_queue_name".into(), json!(queue.as_ref().map(|q| q.1.clone()))),
                ("path".into(), json!(body.path)),
                ("entrypoint".into(), json!(body.entrypoint)),
                ("storage_document_id".into(), json!(body.storage_document_id)),
                ("infrastructure_document_id".into(), json!(body.infrastructure_document_id)),
                ("concurrency_limit".into(), json!(body.concurrency_limit)),
                ("concurrency_options".into(), body.concurrency_options.clone().unwrap_or(Value::Null)),
            ]);
            let at = now();
            let (id, created) = match existing {
                Some(d) => {
                    let id = id_of(&d)?;
                    lock_stream(conn, dialect, &StreamRef::new(StreamType::Deployment, id)).await?;
                    delete_future_auto_runs(conn, dialect, id).await?;
                    delete_schedules(conn, dialect, id).await?;
                    let changed = feed::changed_fields(&d, &fields, feed::DEPLOYMENT_FIELDS);
                    let event = match changed.is_empty() {
                        true => None,
                        false => Some(feed::deployment_event(conn, dialect, "prefect.deployment.updated", id, &feed::merged(&d, &fields), feed::updated_payload(changed), at).await?),
                    };
                    doc::update(conn, dialect, StreamType::Deployment, id, fields, at, event).await?;
                    (id, false)
                }
                None => {
                    let id = Uuid::now_v7();
                    fields.insert("status".into(), json!("NOT_READY"));
                    fields.insert("created_by".into(), Value::Null);
                    fields.insert("updated_by".into(), Value::Null);
                    let event = feed::deployment_event(conn, dialect, "prefect.deployment.created", id, &fields, json!({}), at).await?;
                    doc::create(conn, dialect, StreamType::Deployment, id, fields, at, Some(event)).await?;
                    (id, true)
                }
            };
            for (s, schedule) in body.schedules.iter().zip(schedules) {
                insert_schedule(conn, dialect, id, s, schedule, at).await?;
            }
            concurrency_limits::sync_deployment_limit(conn, dialect, id, body.concurrency_limit, at).await?;
            Ok((id, created))
        })
    })
    .await
}

async fn insert_schedule(conn: &mut AnyConnection, dialect: Dialect, deployment_id: Uuid, s: &ScheduleCreate, schedule: Value, at: DateTime<Utc>) -> ApiResult<Uuid> {
    let id = Uuid::now_v7();
    let record = Map::from_iter([
        ("deployment_id".into(), json!(deployment_id)),
        ("schedule".into(), schedule),
        ("active".into(), json!(s.active)),
        ("max_scheduled_runs".into(), json!(s.max_scheduled_runs)),
        ("parameters".into(), Value::Object(s.parameters.clone())),
        ("slug".into(), json!(s.slug)),
    ]);
    doc::create(conn, dialect, StreamType::DeploymentSchedule, id, record, at, None).await?;
    Ok(id)
}

async fn schedule_ids(conn: &mut AnyConnection, dialect: Dialect, deployment_id: Uuid) -> ApiResult<Vec<Uuid>> {
    let rows = sqlx::query(&dialect.rewrite("SELECT id FROM deployment_schedule WHERE deployment_id = $1 ORDER BY id"))
        .bind(deployment_id.to_string())
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.iter().filter_map(|r| r.try_get::<String, _>(0).ok()).filter_map(|s| Uuid::parse_str(&s).ok()).collect())
}

async fn delete_schedules(conn: &mut AnyConnection, dialect: Dialect, deployment_id: Uuid) -> ApiResult<()> {
    let at = now();
    for id in schedule_ids(conn, dialect, deployment_id).await? {
        doc::delete(conn, dialect, StreamType::DeploymentSchedule, id, at, None).await?;
    }
    Ok(())
}

/// Prefect's `_delete_scheduled_runs(auto_scheduled_only=True, future_only=True)`:
/// when schedules change, the runs they produced and that have not started go.
pub async fn delete_future_auto_runs(conn: &mut AnyConnection, dialect: Dialect, deployment_id: Uuid) -> ApiResult<()> {
    let rows = sqlx::query(&dialect.rewrite(
        "SELECT id FROM flow_run WHERE deployment_id = $1 AND auto_scheduled = 1 AND state_type = 'SCHEDULED' AND next_scheduled_start_time >= $2",
    ))
    .bind(deployment_id.to_string())
    .bind(crate::time::fmt_ts(Utc::now()))
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<Uuid> = rows.iter().filter_map(|r| r.try_get::<String, _>(0).ok()).filter_map(|s| Uuid::parse_str(&s).ok()).collect();
    flow_runs::delete_in_tx(conn, dialect, &ids).await
}

/// Applies a `DeploymentUpdate` (only the fields that were sent), as
/// Prefect's `update_deployment` route does: the schedules by slug (see
/// [`schedule_patch`]), the default parameters checked against the schema
/// when it is enforced (409), and the future auto-scheduled runs dropped
/// since they reflect the old configuration.
pub async fn update_deployment(db: &Db, id: Uuid, body: Map<String, Value>) -> ApiResult<()> {
    for (k, v) in &body {
        if !UPDATE_FIELDS.contains(&k.as_str()) {
            return Err(AppError::Validation {
                detail: vec![json!({"type": "extra_forbidden", "loc": ["body", k], "msg": "Extra inputs are not permitted", "input": v})],
                body: Value::Object(body.clone()),
            });
        }
    }
    let sent: Option<Vec<ScheduleUpdate>> = match body.get("schedules") {
        None | Some(Value::Null) => None,
        Some(v) => Some(serde_json::from_value(v.clone()).map_err(|e| AppError::invalid(&["body", "schedules"], e.to_string(), v.clone()))?),
    };
    // Each sent schedule, parsed (None when it carries no schedule).
    let mut parsed: Vec<Option<Value>> = Vec::new();
    for (i, s) in sent.iter().flatten().enumerate() {
        let idx = i.to_string();
        positive_limit(&["body", "schedules", &idx, "max_scheduled_runs"], s.max_scheduled_runs)?;
        parsed.push(match &s.schedule {
            Some(v) => Some(parse_schedule(&["body", "schedules", &idx, "schedule"], v)?),
            None => None,
        });
    }
    positive_limit(&["body", "concurrency_limit"], body.get("concurrency_limit").and_then(Value::as_i64))?;
    let dialect = db.dialect;
    write(db, move |conn| {
        let mut body = body.clone();
        let sent = sent.clone();
        let parsed = parsed.clone();
        Box::pin(async move {
            let current = require_deployment(conn, dialect, id).await?;
            lock_stream(conn, dialect, &StreamRef::new(StreamType::Deployment, id)).await?;
            let plan = match &sent {
                Some(sent) => {
                    let existing = schedule_slugs(conn, dialect, id).await?;
                    Some(schedule_patch::plan(&existing, sent).map_err(|d| AppError::Detail(axum::http::StatusCode::UNPROCESSABLE_ENTITY, d))?)
                }
                None => None,
            };
            check_update_configuration(conn, dialect, &body).await?;
            // Prefect stores the hydrated parameters, checked against the schema.
            if let Some(Value::Object(p)) = body.get("parameters") {
                let hydrated = hydrate_parameters(conn, dialect, p.clone(), "deployment").await?;
                body.insert("parameters".into(), Value::Object(hydrated));
            }
            check_default_parameters(&current, &body)?;
            let mut changes = Map::new();
            for (k, v) in &body {
                match k.as_str() {
                    "schedules" | "work_pool_name" | "work_queue_name" | "global_concurrency_limit_id" => {}
                    _ => {
                        changes.insert(k.clone(), v.clone());
                    }
                }
            }
            if body.contains_key("work_pool_name") || body.contains_key("work_queue_name") {
                let pool = body.get("work_pool_name").and_then(Value::as_str);
                let queue = body.get("work_queue_name").and_then(Value::as_str);
                let resolved = resolve_queue(conn, dialect, pool, queue).await?;
                changes.insert("work_queue_id".into(), json!(resolved.as_ref().map(|q| q.0)));
                changes.insert("work_queue_name".into(), json!(resolved.as_ref().map(|q| q.1.clone())));
            }
            let at = now();
            delete_future_auto_runs(conn, dialect, id).await?;
            let changed = feed::changed_fields(&current, &changes, feed::DEPLOYMENT_FIELDS);
            let event = match changed.is_empty() {
                true => None,
                false => Some(feed::deployment_event(conn, dialect, "prefect.deployment.updated", id, &feed::merged(&current, &changes), feed::updated_payload(changed), at).await?),
            };
            doc::update(conn, dialect, StreamType::Deployment, id, changes, at, event).await?;
            if let Some(limit) = body.get("concurrency_limit") {
                concurrency_limits::sync_deployment_limit(conn, dialect, id, limit.as_i64(), at).await?;
            }
            if let (Some(sent), Some(plan)) = (&sent, plan) {
                apply_schedule_patch(conn, dialect, id, sent, &parsed, plan, at).await?;
            }
            Ok(())
        })
    })
    .await
}

/// `DeploymentUpdate.check_valid_configuration`, which Prefect runs when an
/// update names a work pool: the sent job variables against that pool's
/// schema, required keys not enforced; 409 with the error's repr. (An
/// unknown pool is left to the queue resolution's 404.)
async fn check_update_configuration(conn: &mut AnyConnection, dialect: Dialect, body: &Map<String, Value>) -> ApiResult<()> {
    let (Some(pool), Some(Value::Object(variables))) = (body.get("work_pool_name").and_then(Value::as_str).filter(|p| !p.is_empty()), body.get("job_variables")) else {
        return Ok(());
    };
    let Some(pool) = pools::pool_by_name(conn, dialect, pool).await? else { return Ok(()) };
    let template = pool.get("base_job_template").and_then(Value::as_object).cloned().unwrap_or_default();
    job_variables::update_configuration(&template, variables)
        .map_err(|repr| AppError::Detail(axum::http::StatusCode::CONFLICT, format!("Error creating deployment: {repr}")))
}

/// Prefect's `hydrate(parameters, ctx)` with a context that raises on error,
/// renders jinja and reads the workspace's variables (only when there is
/// something to hydrate). A failure is Prefect's 400 "Error hydrating
/// <what> parameters: ...".
pub async fn hydrate_parameters(conn: &mut AnyConnection, dialect: Dialect, parameters: Map<String, Value>, what: &str) -> ApiResult<Map<String, Value>> {
    use crate::orchestration::hydration::{hydrate, needs_hydration, HydrationContext};
    if !parameters.values().any(needs_hydration) && !parameters.contains_key("__prefect_kind") {
        return Ok(parameters);
    }
    let ctx = HydrationContext { workspace_variables: super::variables::values_by_name(conn, dialect).await?, ..Default::default() };
    match hydrate(&parameters, &ctx) {
        Ok(Value::Object(m)) => Ok(m),
        // Only a top-level `__prefect_kind` can hydrate to a non-object.
        Ok(_) => Ok(Map::new()),
        Err(e) => Err(AppError::Detail(axum::http::StatusCode::BAD_REQUEST, format!("Error hydrating {what} parameters: {e}"))),
    }
}

/// Prefect's check of a deployment's default parameters on update: when the
/// schema is enforced (as sent, else as stored), the parameters (as sent,
/// else as stored) must fit the schema (as sent, else as stored), required
/// keys aside; a deployment without a schema cannot be checked (409).
fn check_default_parameters(current: &Map<String, Value>, body: &Map<String, Value>) -> ApiResult<()> {
    let sent = |k: &str| body.get(k).filter(|v| !v.is_null());
    let enforce = sent("enforce_parameter_schema").or_else(|| current.get("enforce_parameter_schema")).and_then(Value::as_bool).unwrap_or(false);
    if !enforce {
        return Ok(());
    }
    let truthy = |v: &&Value| v.as_object().is_some_and(|m| !m.is_empty());
    let schema = sent("parameter_openapi_schema").filter(truthy).or_else(|| current.get("parameter_openapi_schema")).filter(|s| s.is_object()).ok_or_else(|| {
        AppError::Detail(
            axum::http::StatusCode::CONFLICT,
            "Error updating deployment: Cannot update parameters because parameter schema enforcement is enabled and the deployment does not have a valid parameter schema.".into(),
        )
    })?;
    let parameters = sent("parameters").or_else(|| current.get("parameters")).cloned().unwrap_or_else(|| json!({}));
    crate::orchestration::parameters::validate_ignoring_required(&parameters, schema)
        .map_err(|msg| AppError::Detail(axum::http::StatusCode::CONFLICT, format!("Error updating deployment: {msg}")))
}

/// A deployment's schedules as (id, slug).
async fn schedule_slugs(conn: &mut AnyConnection, dialect: Dialect, deployment_id: Uuid) -> ApiResult<Vec<(Uuid, Option<String>)>> {
    let rows = sqlx::query(&dialect.rewrite("SELECT id, slug FROM deployment_schedule WHERE deployment_id = $1 ORDER BY id"))
        .bind(deployment_id.to_string())
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| Some((Uuid::parse_str(&r.try_get::<String, _>(0).ok()?).ok()?, r.try_get::<Option<String>, _>(1).ok().flatten())))
        .collect())
}

/// Carries out a [`SchedulePatch`]; `parsed[i]` is the normalised schedule of `sent[i]`.
async fn apply_schedule_patch(
    conn: &mut AnyConnection,
    dialect: Dialect,
    deployment_id: Uuid,
    sent: &[ScheduleUpdate],
    parsed: &[Option<Value>],
    plan: SchedulePatch,
    at: DateTime<Utc>,
) -> ApiResult<()> {
    let create = |i: usize| ScheduleCreate {
        active: sent[i].active.unwrap_or(true),
        schedule: Value::Null,
        max_scheduled_runs: sent[i].max_scheduled_runs,
        parameters: sent[i].parameters.clone().unwrap_or_default(),
        slug: sent[i].slug.clone(),
        replaces: None,
    };
    let to_create: Vec<usize> = match plan {
        SchedulePatch::ReplaceAll => {
            delete_schedules(conn, dialect, deployment_id).await?;
            (0..sent.len()).collect()
        }
        SchedulePatch::Targeted { update, create } => {
            for (schedule_id, i) in update {
                let changes = schedule_changes(&sent[i], parsed[i].clone());
                doc::update(conn, dialect, StreamType::DeploymentSchedule, schedule_id, changes, at, None).await?;
            }
            create
        }
    };
    for i in to_create {
        if let Some(schedule) = parsed[i].clone() {
            insert_schedule(conn, dialect, deployment_id, &create(i), schedule, at).await?;
        }
    }
    Ok(())
}

/// The stored fields a `DeploymentScheduleUpdate` changes (the ones it sets; `replaces` is not stored).
fn schedule_changes(s: &ScheduleUpdate, schedule: Option<Value>) -> Map<String, Value> {
    let mut changes = Map::new();
    if let Some(a) = s.active {
        changes.insert("active".into(), json!(a));
    }
    if let Some(v) = schedule {
        changes.insert("schedule".into(), v);
    }
    if let Some(m) = s.max_scheduled_runs {
        changes.insert("max_scheduled_runs".into(), json!(m));
    }
    if let Some(p) = &s.parameters {
        changes.insert("parameters".into(), Value::Object(p.clone()));
    }
    if let Some(slug) = &s.slug {
        changes.insert("slug".into(), json!(slug));
    }
    changes
}

/// Deletes a deployment and its scheduled (not yet started) runs.
pub async fn delete_deployment(db: &Db, id: Uuid) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        Box::pin(async move {
            let current = deployment_by_id(conn, dialect, id)
                .await?
                .ok_or_else(|| AppError::Detail(axum::http::StatusCode::NOT_FOUND, "Deployment not found".into()))?;
            lock_stream(conn, dialect, &StreamRef::new(StreamType::Deployment, id)).await?;
            let rows = sqlx::query(&dialect.rewrite("SELECT id FROM flow_run WHERE deployment_id = $1 AND state_type = 'SCHEDULED'"))
                .bind(id.to_string())
                .fetch_all(&mut *conn)
                .await?;
            let ids: Vec<Uuid> = rows.iter().filter_map(|r| r.try_get::<String, _>(0).ok()).filter_map(|s| Uuid::parse_str(&s).ok()).collect();
            flow_runs::delete_in_tx(conn, dialect, &ids).await?;
            delete_schedules(conn, dialect, id).await?;
            let at = now();
            let event = feed::deployment_event(conn, dialect, "prefect.deployment.deleted", id, &current, json!({}), at).await?;
            concurrency_limits::sync_deployment_limit(conn, dialect, id, None, at).await?;
            doc::delete(conn, dialect, StreamType::Deployment, id, at, Some(event)).await
        })
    })
    .await
}

// ---------------------------------------------------------- schedules ---

pub async fn create_schedules(db: &Db, deployment_id: Uuid, body: Vec<ScheduleCreate>) -> ApiResult<Vec<Uuid>> {
    let mut parsed = Vec::new();
    for (i, s) in body.iter().enumerate() {
        let idx = i.to_string();
        parsed.push(validate_schedule(&["body", &idx], s)?);
    }
    let dialect = db.dialect;
    write(db, move |conn| {
        let body = body.clone();
        let parsed = parsed.clone();
        Box::pin(async move {
            require_deployment(conn, dialect, deployment_id).await?;
            lock_stream(conn, dialect, &StreamRef::new(StreamType::Deployment, deployment_id)).await?;
            let at = now();
            let mut ids = Vec::new();
            for (s, schedule) in body.iter().zip(parsed) {
                ids.push(insert_schedule(conn, dialect, deployment_id, s, schedule, at).await?);
            }
            Ok(ids)
        })
    })
    .await
}

async fn require_schedule(conn: &mut AnyConnection, dialect: Dialect, deployment_id: Uuid, schedule_id: Uuid) -> ApiResult<Map<String, Value>> {
    require_deployment(conn, dialect, deployment_id).await?;
    find(conn, dialect, &DEPLOYMENT_SCHEDULE, "t.id = $1 AND t.deployment_id = $2", &[Bind::Text(schedule_id.to_string()), Bind::Text(deployment_id.to_string())])
        .await?
        .ok_or_else(|| AppError::Detail(axum::http::StatusCode::NOT_FOUND, "Schedule not found.".into()))
}

pub async fn update_schedule(db: &Db, deployment_id: Uuid, schedule_id: Uuid, body: ScheduleUpdate) -> ApiResult<()> {
    positive_limit(&["body", "max_scheduled_runs"], body.max_scheduled_runs)?;
    let schedule = match &body.schedule {
        Some(v) => Some(parse_schedule(&["body", "schedule"], v)?),
        None => None,
    };
    let dialect = db.dialect;
    write(db, move |conn| {
        let body = body.clone();
        let schedule = schedule.clone();
        Box::pin(async move {
            require_schedule(conn, dialect, deployment_id, schedule_id).await?;
            lock_stream(conn, dialect, &StreamRef::new(StreamType::Deployment, deployment_id)).await?;
            let changes = schedule_changes(&body, schedule);
            // A changed schedule makes its future auto-scheduled runs stale.
            delete_future_auto_runs(conn, dialect, deployment_id).await?;
            doc::update(conn, dialect, StreamType::DeploymentSchedule, schedule_id, changes, now(), None).await
        })
    })
    .await
}

pub async fn delete_schedule(db: &Db, deployment_id: Uuid, schedule_id: Uuid) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        Box::pin(async move {
            require_schedule(conn, dialect, deployment_id, schedule_id).await?;
            lock_stream(conn, dialect, &StreamRef::new(StreamType::Deployment, deployment_id)).await?;
            delete_future_auto_runs(conn, dialect, deployment_id).await?;
            doc::delete(conn, dialect, StreamType::DeploymentSchedule, schedule_id, now(), None).await
        })
    })
    .await
}

// ---------------------------------------------------------- flow runs ---

/// Labels a deployment's runs carry besides the flow's.
fn run_labels(deployment: &Map<String, Value>, id: Uuid) -> Map<String, Value> {
    let mut labels = deployment.get("labels").and_then(Value::as_object).cloned().unwrap_or_default();
    labels.insert("prefect.deployment.id".into(), json!(id));
    labels
}

/// The pool (id, name) of a work queue, if any.
pub async fn pool_of_queue(conn: &mut AnyConnection, dialect: Dialect, queue_id: Option<Uuid>) -> ApiResult<(Option<Uuid>, Option<String>)> {
    let Some(qid) = queue_id else { return Ok((None, None)) };
    let row = sqlx::query(&dialect.rewrite("SELECT p.id, p.name FROM work_queue q JOIN work_pool p ON p.id = q.work_pool_id WHERE q.id = $1"))
        .bind(qid.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match row {
        Some(r) => (r.try_get::<String, _>(0).ok().and_then(|s| Uuid::parse_str(&s).ok()), r.try_get::<String, _>(1).ok()),
        None => (None, None),
    })
}

fn uuid_field(doc: &Map<String, Value>, key: &str) -> Option<Uuid> {
    doc.get(key).and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok())
}

/// The base job template of the pool behind a work queue (`None` when the
/// queue is unknown or not in a pool).
async fn template_of_queue(conn: &mut AnyConnection, dialect: Dialect, queue_id: Option<Uuid>) -> ApiResult<Option<Map<String, Value>>> {
    let Some(qid) = queue_id else { return Ok(None) };
    let row = sqlx::query(&dialect.rewrite("SELECT p.base_job_template FROM work_queue q JOIN work_pool p ON p.id = q.work_pool_id WHERE q.id = $1"))
        .bind(qid.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.and_then(|r| r.try_get::<String, _>(0).ok()).and_then(|t| serde_json::from_str(&t).ok()))
}

/// A job-variable refusal as Prefect answers it: 422 `Error <doing>: ...`,
/// or 404 for a default that references a missing block.
fn job_variables_error(refusal: job_variables::Refusal, doing: &str) -> AppError {
    match refusal {
        job_variables::Refusal::Invalid(msg) => AppError::Detail(axum::http::StatusCode::UNPROCESSABLE_ENTITY, format!("Error {doing}: {msg}")),
        job_variables::Refusal::BlockNotFound => AppError::Detail(axum::http::StatusCode::NOT_FOUND, "Block not found.".into()),
    }
}

/// Prefect's `validate_job_variables_for_deployment_flow_run`: a run's job
/// variables over its deployment's and the defaults of the deployment's
/// pool, required keys enforced. Nothing to check without a pool.
pub async fn check_run_job_variables(
    conn: &mut AnyConnection,
    dialect: Dialect,
    deployment: &Map<String, Value>,
    run_variables: &Map<String, Value>,
    doing: &str,
) -> ApiResult<()> {
    let Some(template) = template_of_queue(conn, dialect, uuid_field(deployment, "work_queue_id")).await? else { return Ok(()) };
    let deployment_variables = deployment.get("job_variables").and_then(Value::as_object).cloned().unwrap_or_default();
    job_variables::flow_run(&template, &deployment_variables, run_variables).map_err(|r| job_variables_error(r, doing))
}

/// `POST /deployments/{id}/create_flow_run`. Returns `(run id, created)`.
pub async fn create_flow_run(db: &Db, deployment_id: Uuid, body: DeploymentFlowRunCreate, name_seed: u128) -> ApiResult<(Uuid, bool)> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let body = body.clone();
        Box::pin(async move {
            let deployment = deployment_by_id(conn, dialect, deployment_id)
                .await?
                .ok_or_else(|| AppError::Detail(axum::http::StatusCode::NOT_FOUND, "Deployment not found".into()))?;
            let mut parameters = deployment.get("parameters").and_then(Value::as_object).cloned().unwrap_or_default();
            parameters.extend(body.parameters.clone());
            let parameters = hydrate_parameters(conn, dialect, parameters, "flow run").await?;
            let enforce = body
                .enforce_parameter_schema
                .unwrap_or_else(|| deployment.get("enforce_parameter_schema").and_then(Value::as_bool).unwrap_or(true));
            if enforce {
                let schema = deployment.get("parameter_openapi_schema").filter(|s| s.is_object()).ok_or_else(|| {
                    AppError::Detail(
                        axum::http::StatusCode::CONFLICT,
                        "Error updating deployment: Cannot update parameters because parameter schema enforcement is enabled and the deployment does not have a valid parameter schema.".into(),
                    )
                })?;
                if let Err(msg) = crate::orchestration::parameters::validate(&Value::Object(parameters.clone()), schema) {
                    return Err(AppError::Detail(axum::http::StatusCode::CONFLICT, format!("Error creating flow run: {msg}")));
                }
            }
            check_run_job_variables(conn, dialect, &deployment, &body.job_variables, "creating flow run").await?;
            let mut queue_id = uuid_field(&deployment, "work_queue_id");
            let mut queue_name = deployment.get("work_queue_name").and_then(Value::as_str).map(str::to_owned);
            if let Some(requested) = &body.work_queue_name {
                let (_, pool_name) = pool_of_queue(conn, dialect, queue_id).await?;
                let Some(pool_name) = pool_name else {
                    return Err(AppError::Detail(
                        axum::http::StatusCode::BAD_REQUEST,
                        format!("Cannot create flow run in work queue {requested} because deployment {deployment_id} is not associated with a work pool. Please remove work_pool_name and try again."),
                    ));
                };
                let resolved = resolve_queue(conn, dialect, Some(&pool_name), Some(requested)).await?;
                queue_id = resolved.as_ref().map(|q| q.0);
                queue_name = Some(requested.clone());
            }
            let (pool_id, pool_name) = pool_of_queue(conn, dialect, queue_id).await?;
            let mut tags: Vec<String> = deployment.get("tags").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect();
            for t in &body.tags {
                if !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
            // Only the run's own: a worker layers them over the deployment's.
            let job_variables = body.job_variables.clone();
            let state = body.state.clone().unwrap_or_else(|| ProposedState {
                state_type: crate::orchestration::states::StateType::Scheduled,
                name: None,
                message: None,
                data: None,
                state_details: Default::default(),
            });
            let flow_id = uuid_field(&deployment, "flow_id").ok_or(AppError::Conflict)?;
            let create = FlowRunCreate {
                state: Some(state),
                name: body.name.clone(),
                flow_id,
                flow_version: None,
                parameters: Some(parameters),
                context: Some(body.context.clone()),
                parent_task_run_id: body.parent_task_run_id,
                infrastructure_document_id: body.infrastructure_document_id.or_else(|| uuid_field(&deployment, "infrastructure_document_id")),
                empirical_policy: body.empirical_policy.clone(),
                tags: Some(tags),
                labels: body.labels.clone(),
                idempotency_key: body.idempotency_key.clone(),
                work_pool_name: pool_name,
                work_queue_name: queue_name,
                job_variables: Some(job_variables),
                deployment_id: Some(deployment_id),
            };
            let origin = RunOrigin {
                deployment_version: deployment.get("version").and_then(Value::as_str).map(str::to_owned),
                work_queue_id: queue_id,
                work_pool_id: pool_id,
                auto_scheduled: false,
                created_by: body.created_by.clone(),
                labels: run_labels(&deployment, deployment_id),
            };
            flow_runs::create_in_tx(conn, dialect, create, name_seed, origin).await
        })
    })
    .await
}

// ------------------------------------------------------------ polling ---

/// Marks the deployments on a polled queue as polled and READY (throttled
/// like the queue itself, see `work_pools::mark_polled`).
pub async fn mark_deployments_polled(conn: &mut AnyConnection, dialect: Dialect, queue_id: Uuid, at: DateTime<Utc>, stale: &str) -> ApiResult<()> {
    let rows = sqlx::query(&dialect.rewrite(
        "SELECT id FROM deployment WHERE work_queue_id = $1 AND (status <> 'READY' OR last_polled IS NULL OR last_polled < $2)",
    ))
    .bind(queue_id.to_string())
    .bind(stale.to_owned())
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let id = Uuid::parse_str(&row.try_get::<String, _>(0)?).map_err(anyhow::Error::from)?;
        mark_one(conn, dialect, id, at).await?;
    }
    Ok(())
}

async fn mark_one(conn: &mut AnyConnection, dialect: Dialect, id: Uuid, at: DateTime<Utc>) -> ApiResult<()> {
    lock_stream(conn, dialect, &StreamRef::new(StreamType::Deployment, id)).await?;
    let Some(current) = deployment_by_id(conn, dialect, id).await? else { return Ok(()) };
    let changes = Map::from_iter([("last_polled".into(), json!(crate::time::fmt_ts(at))), ("status".into(), json!("READY"))]);
    let status_event = match current.get("status").and_then(Value::as_str) == Some("READY") {
        true => None,
        false => Some(feed::deployment_event(conn, dialect, "prefect.deployment.ready", id, &feed::merged(&current, &changes), json!({}), at).await?),
    };
    doc::update_with_status(conn, dialect, StreamType::Deployment, id, changes, at, None, status_event).await
}

/// A runner (`serve()`) polled these deployments. Like the queue marks,
/// the check runs on a read connection first, so a poll that changes
/// nothing takes no write transaction.
pub async fn mark_deployment_ids_polled(db: &Db, ids: Vec<Uuid>, min_interval: chrono::Duration) -> ApiResult<()> {
    let stale = crate::time::fmt_ts(now() - min_interval);
    if ids.is_empty() || !deployments_need_marking(db, &ids, &stale).await? {
        return Ok(());
    }
    let dialect = db.dialect;
    write(db, move |conn| {
        let ids = ids.clone();
        Box::pin(async move {
            let at = now();
            let stale = crate::time::fmt_ts(at - min_interval);
            for id in ids {
                let Some(d) = deployment_by_id(conn, dialect, id).await? else { continue };
                let ready = d.get("status").and_then(Value::as_str) == Some("READY");
                let fresh = d.get("last_polled").and_then(Value::as_str).is_some_and(|lp| lp >= stale.as_str());
                if !(ready && fresh) {
                    mark_one(conn, dialect, id, at).await?;
                }
            }
            Ok(())
        })
    })
    .await
}

/// Whether any of these deployments is not READY or was last polled before `stale`.
async fn deployments_need_marking(db: &Db, ids: &[Uuid], stale: &str) -> ApiResult<bool> {
    let list = crate::db::sql::placeholders(2, ids.len());
    let sql = format!("SELECT 1 FROM deployment WHERE id IN ({list}) AND (status <> 'READY' OR last_polled IS NULL OR last_polled < $1) LIMIT 1");
    let sql = db.q(&sql);
    let mut query = sqlx::query(&sql).bind(stale.to_owned());
    for id in ids {
        query = query.bind(id.to_string());
    }
    Ok(query.fetch_optional(db.reader()).await?.is_some())
}
