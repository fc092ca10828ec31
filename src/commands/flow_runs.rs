//! Flow-run commands: create (idempotent), update, labels, delete, set_state.

use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::{record, task_runs, write};
use crate::api::error::{ApiResult, AppError};
use crate::db::{Db, Dialect};
use crate::eventlog::{lock_stream, ExpectedVersion, NewEvent, StreamRef, StreamType, DEFAULT_WORKSPACE};
use crate::server_model::concurrency_limits::{limit_row, limit_state, row_id, LimitRef};
use crate::orchestration::flow_policy::{decide_flow_transition, DeploymentSlots, FlowRunSnapshot, FlowTransitionInput, FlowTransitionOutcome};
use crate::orchestration::outcome::ProposedState;
use crate::orchestration::states::{FlowRunPolicy, State, StateType};
use crate::server_events::{
    flow_run_state_event_type, FlowRunCreated, FlowRunRecord, RowUpdated, RunBookkeeping, StateSet, FLOW_RUN_CREATED,
    FLOW_RUN_DELETED, FLOW_RUN_UPDATED,
};
use crate::server_model::flow_runs::{read_flow_run_row, read_flow_run_row_with_relations, snapshot_from_row};
use crate::server_model::run_relations::{Named, RunIds, RunRelations};
use crate::time::micros;

/// `FlowRunCreate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRunCreate {
    #[serde(default)]
    pub state: Option<ProposedState>,
    #[serde(default)]
    pub name: Option<String>,
    pub flow_id: Uuid,
    #[serde(default)]
    pub flow_version: Option<String>,
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
    #[serde(default)]
    pub parent_task_run_id: Option<Uuid>,
    #[serde(default)]
    pub infrastructure_document_id: Option<Uuid>,
    #[serde(default)]
    pub empirical_policy: Option<FlowRunPolicy>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub labels: Option<Map<String, Value>>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub work_pool_name: Option<String>,
    #[serde(default)]
    pub work_queue_name: Option<String>,
    #[serde(default)]
    pub job_variables: Option<Map<String, Value>>,
    #[serde(default)]
    pub deployment_id: Option<Uuid>,
}

/// Body of `set_state`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetStateBody {
    pub state: ProposedState,
    #[serde(default)]
    pub force: bool,
}

/// What `set_state` answers.
pub struct SetStateResult {
    pub outcome: FlowTransitionOutcome,
}

/// The `prefect.flow-run.<State>` event shape for the events feed.
pub(crate) fn state_event(
    kind: &str,
    run_id: Uuid,
    run_name: &str,
    related: Vec<Value>,
    run_count: i64,
    initial: Option<&State>,
    validated: &State,
) -> Value {
    let summary = |s: &State| {
        let mut m = Map::new();
        m.insert("type".into(), json!(s.state_type));
        m.insert("name".into(), json!(s.name));
        if let Some(msg) = s.message.as_ref().filter(|m| !m.is_empty()) {
            m.insert("message".into(), json!(msg));
        }
        Value::Object(m)
    };
    let follows = initial
        .filter(|i| validated.timestamp - i.timestamp < chrono::Duration::minutes(5))
        .map(|i| i.id);
    json!({
        "occurred": crate::time::fmt_ts(validated.timestamp),
        "event": format!("prefect.{kind}.{}", validated.name),
        "resource": {
            "prefect.resource.id": format!("prefect.{kind}.{run_id}"),
            "prefect.resource.name": run_name,
            "prefect.run-count": run_count.to_string(),
            "prefect.state-message": validated.message.clone().unwrap_or_default(),
            "prefect.state-name": validated.name,
            "prefect.state-timestamp": validated.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
            "prefect.state-type": validated.state_type,
        },
        "related": related,
        "payload": {
            "intended": {"from": initial.map(|s| s.state_type), "to": validated.state_type},
            "initial_state": initial.map(summary),
            "validated_state": summary(validated),
        },
        "id": validated.id,
        "follows": follows,
    })
}

fn bookkeeping(run: &FlowRunSnapshot) -> RunBookkeeping {
    RunBookkeeping {
        run_count: run.run_count,
        start_time: run.start_time,
        end_time: run.end_time,
        // A timedelta: microsecond precision, as Prefect stores it.
        total_run_time: (run.total_run_time * 1e6).round() / 1e6,
        expected_start_time: run.expected_start_time,
        next_scheduled_start_time: run.next_scheduled_start_time,
        empirical_policy: serde_json::to_value(&run.empirical_policy).unwrap_or(Value::Null),
        flow_run_run_count: None,
    }
}

/// What a stored run's state events relate to, from a row read with
/// [`read_flow_run_row_with_relations`].
fn stored_relations(row: &sqlx::any::AnyRow) -> RunRelations {
    let text = |c: &str| row.try_get::<Option<String>, _>(c).ok().flatten();
    let ids = RunIds {
        flow: text("flow_id"),
        deployment: text("deployment_id"),
        work_queue: text("work_queue_id"),
        work_pool: text("work_pool_id"),
        task_run: text("parent_task_run_id"),
    };
    let run_tags = text("tags").and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    let created_by = text("created_by").and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
    RunRelations::from_row(row, &ids, run_tags, created_by)
}

/// Appends (and projects) an accepted transition, then mirrors it onto a
/// subflow's parent task run as Prefect's `UpdateSubflowParentTask` does.
#[allow(clippy::too_many_arguments)]
async fn record_transition(
    conn: &mut AnyConnection,
    dialect: Dialect,
    run_id: Uuid,
    run_name: &str,
    relations: &RunRelations,
    version: i64,
    initial: Option<&State>,
    outcome: &FlowTransitionOutcome,
) -> ApiResult<()> {
    let Some(state) = &outcome.written else { return Ok(()) };
    let related = relations.related();
    let event = state_event("flow-run", run_id, run_name, related, outcome.run.run_count, initial, state);
    let payload = StateSet { state: state.clone(), run: bookkeeping(&outcome.run), event };
    let new_event = NewEvent::new(
        state.id,
        flow_run_state_event_type(&state.name),
        state.timestamp,
        serde_json::to_value(payload).map_err(anyhow::Error::from)?,
    );
    // Every caller holds the run's stream lock (taken by its own read or by
    // the append that created the run).
    record(conn, dialect, StreamRef::new(StreamType::FlowRun, run_id), ExpectedVersion::Locked(version), vec![new_event]).await?;
    if let Some(parent) = outcome.run.parent_task_run_id {
        task_runs::mirror_subflow_state(conn, dialect, parent, run_id, state).await?;
    }
    Ok(())
}

/// Creates a flow run, or returns the existing one for the same
/// `(flow_id, idempotency_key)`. Returns its id and whether it was created.
pub async fn create_flow_run(db: &Db, body: FlowRunCreate, name_seed: u128) -> ApiResult<(Uuid, bool)> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let body = body.clone();
        Box::pin(async move { create_in_tx(conn, dialect, body, name_seed, RunOrigin::default()).await })
    })
    .await
}

/// Where a run comes from when it is not a plain `POST /flow_runs/`: a
/// deployment (through `create_flow_run` or the scheduler) fills these.
#[derive(Debug, Clone, Default)]
pub struct RunOrigin {
    pub deployment_version: Option<String>,
    pub work_queue_id: Option<Uuid>,
    pub work_pool_id: Option<Uuid>,
    pub auto_scheduled: bool,
    pub created_by: Value,
    /// Labels between the flow's and the caller's (the deployment's).
    pub labels: Map<String, Value>,
}

/// Creates a run inside the caller's transaction (see [`create_flow_run`]).
pub async fn create_in_tx(
    conn: &mut AnyConnection,
    dialect: Dialect,
    body: FlowRunCreate,
    name_seed: u128,
    origin: RunOrigin,
) -> ApiResult<(Uuid, bool)> {
    let flow = sqlx::query(&dialect.rewrite("SELECT labels, name, tags FROM flow WHERE id = $1 AND workspace_id = $2"))
        .bind(body.flow_id.to_string())
        .bind(DEFAULT_WORKSPACE.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(AppError::Conflict)?;
    let flow_labels: String = flow.try_get(0)?;
    let flow_name: String = flow.try_get(1)?;
    let flow_tags: Vec<String> = serde_json::from_str(&flow.try_get::<String, _>(2)?).unwrap_or_default();
    if let Some(key) = &body.idempotency_key {
        crate::eventlog::lock_key(conn, dialect, &format!("flow-run-idempotency:{}:{key}", body.flow_id)).await?;
        let existing = sqlx::query(&dialect.rewrite("SELECT id FROM flow_run WHERE flow_id = $1 AND idempotency_key = $2"))
            .bind(body.flow_id.to_string())
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = existing {
            let id: String = row.try_get(0)?;
            return Ok((Uuid::parse_str(&id).map_err(anyhow::Error::from)?, false));
        }
    }
    let id = Uuid::now_v7();
    let now = micros(Utc::now());
    let mut labels: Map<String, Value> = serde_json::from_str(&flow_labels).unwrap_or_default();
    labels.extend(origin.labels);
    labels.extend(body.labels.clone().unwrap_or_default());
    labels.insert("prefect.flow.id".into(), Value::from(body.flow_id.to_string()));
    let tags = Value::from(body.tags.clone().unwrap_or_default());
    let policy = body.empirical_policy.clone().unwrap_or_default();
    let record_body = FlowRunRecord {
        id,
        created: now,
        name: body.name.clone().unwrap_or_else(|| super::names::slug(name_seed)),
        flow_id: body.flow_id,
        flow_version: body.flow_version.clone(),
        deployment_id: body.deployment_id,
        deployment_version: origin.deployment_version,
        work_queue_id: origin.work_queue_id,
        work_queue_name: body.work_queue_name.clone(),
        work_pool_id: origin.work_pool_id,
        work_pool_name: body.work_pool_name.clone(),
        parameters: Value::Object(body.parameters.clone().unwrap_or_default()),
        idempotency_key: body.idempotency_key.clone(),
        context: Value::Object(body.context.clone().unwrap_or_default()),
        empirical_policy: serde_json::to_value(&policy).map_err(anyhow::Error::from)?,
        tags: tags.clone(),
        labels: Value::Object(labels),
        parent_task_run_id: body.parent_task_run_id,
        auto_scheduled: origin.auto_scheduled,
        infrastructure_document_id: body.infrastructure_document_id,
        created_by: origin.created_by.clone(),
        job_variables: Value::Object(body.job_variables.clone().unwrap_or_default()),
    };
    let run_tags: Vec<String> = body.tags.clone().unwrap_or_default();
    let ids = RunIds {
        flow: Some(body.flow_id.to_string()),
        deployment: body.deployment_id.map(|d| d.to_string()),
        work_queue: origin.work_queue_id.map(|q| q.to_string()),
        work_pool: origin.work_pool_id.map(|p| p.to_string()),
        task_run: body.parent_task_run_id.map(|t| t.to_string()),
    };
    // A plain run relates only to its flow, read above; anything else
    // costs one more round trip.
    let relations = if ids.deployment.is_none() && ids.work_queue.is_none() && ids.work_pool.is_none() && ids.task_run.is_none() {
        let flow = Named { id: body.flow_id.to_string(), name: flow_name.clone(), tags: flow_tags };
        RunRelations { flow: Some(flow), run_tags, created_by: origin.created_by, ..Default::default() }
    } else {
        RunRelations::load(conn, dialect, &ids, run_tags, origin.created_by).await?
    };
    let run_name = record_body.name.clone();
    let created = NewEvent::new(
        Uuid::now_v7(),
        FLOW_RUN_CREATED,
        now,
        serde_json::to_value(FlowRunCreated { flow_run: record_body }).map_err(anyhow::Error::from)?,
    );
    let stream = StreamRef::new(StreamType::FlowRun, id);
    record(conn, dialect, stream, ExpectedVersion::NoStream, vec![created]).await?;

    // The initial state is written with force (Prefect's MinimalFlowPolicy).
    let proposed = body.state.clone().unwrap_or_else(|| ProposedState {
        state_type: StateType::Pending,
        name: None,
        message: None,
        data: None,
        state_details: Default::default(),
    });
    let snapshot = FlowRunSnapshot {
        id,
        state: None,
        empirical_policy: policy,
        run_count: 0,
        start_time: None,
        end_time: None,
        total_run_time: 0.0,
        expected_start_time: None,
        next_scheduled_start_time: None,
        deployment_id: body.deployment_id,
        infrastructure_pid: None,
        parent_task_run_id: body.parent_task_run_id,
    };
    let outcome = decide_flow_transition(FlowTransitionInput {
        run: snapshot,
        proposed,
        force: true,
        now,
        new_state_id: Uuid::now_v7(),
        fresh_pause_key: Uuid::new_v4().to_string(),
        api_version: (0, 8, 4),
        deployment_slots: None,
    });
    record_transition(conn, dialect, id, &run_name, &relations, 1, None, &outcome).await?;
    Ok((id, true))
}

/// The deployment concurrency a PENDING proposal is judged against: `None`
/// unless the run's deployment has a limit. Takes the deployment's slot lock
/// first, so two runs claiming its last slot are decided one after the other.
async fn deployment_slots(conn: &mut AnyConnection, dialect: Dialect, run: &FlowRunSnapshot) -> ApiResult<Option<DeploymentSlots>> {
    let Some(deployment_id) = run.deployment_id else { return Ok(None) };
    let row = sqlx::query(&dialect.rewrite("SELECT concurrency_options FROM deployment WHERE id = $1"))
        .bind(deployment_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let options: Value = row.try_get::<Option<String>, _>(0)?.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
    // The deployment's own v2 limit, locked so concurrent claims (and slot
    // increments through the v2 routes) are serialised.
    let name = crate::server_model::concurrency_limits::deployment_limit_name(deployment_id);
    let Some(gcl) = limit_row(conn, dialect, &LimitRef::Name(name)).await? else { return Ok(None) };
    crate::eventlog::lock_stream(conn, dialect, &StreamRef::new(StreamType::ConcurrencyLimit, row_id(&gcl))).await?;
    let Some(gcl) = limit_row(conn, dialect, &LimitRef::Id(row_id(&gcl))).await? else { return Ok(None) };
    let at = crate::time::micros(Utc::now());
    let state = limit_state(conn, dialect, &gcl, at, Some(run.id)).await?;
    if !state.active {
        return Ok(None);
    }
    Ok(Some(DeploymentSlots {
        limit: state.limit,
        active: state.occupied(at),
        cancel_new: options.get("collision_strategy").and_then(Value::as_str) == Some("CANCEL_NEW"),
        wait_seconds: 30,
    }))
}

/// Proposes a new state for a flow run and records it if the rules allow.
pub async fn set_flow_run_state(db: &Db, id: Uuid, body: SetStateBody, api_version: (u32, u32, u32)) -> ApiResult<SetStateResult> {
    let result = set_state_guarded(db, id, body, api_version, |_| true).await?;
    result.ok_or_else(|| AppError::Internal(anyhow::anyhow!("unguarded transition skipped")))
}

/// Like [`set_flow_run_state`], but only when `guard` holds for the run as
/// it is under the stream lock (services use this: e.g. only a run that is
/// still SCHEDULED is marked late). `None` when the guard refused.
pub async fn set_state_guarded<G>(db: &Db, id: Uuid, body: SetStateBody, api_version: (u32, u32, u32), guard: G) -> ApiResult<Option<SetStateResult>>
where
    G: Fn(&FlowRunSnapshot) -> bool + Clone + Send + Sync + 'static,
{
    set_state_then(db, id, body, api_version, guard, None).await
}

/// [`set_state_guarded`] that also stores `on_accept` as one of the run's
/// inputs, in the same transaction, when the transition is accepted (a
/// resume stores the validated run input only then, as Prefect does).
async fn set_state_then<G>(
    db: &Db,
    id: Uuid,
    body: SetStateBody,
    api_version: (u32, u32, u32),
    guard: G,
    on_accept: Option<super::flow_run_inputs::NewInput>,
) -> ApiResult<Option<SetStateResult>>
where
    G: Fn(&FlowRunSnapshot) -> bool + Clone + Send + Sync + 'static,
{
    let dialect = db.dialect;
    write(db, move |conn| {
        let body = body.clone();
        let guard = guard.clone();
        let on_accept = on_accept.clone();
        Box::pin(async move {
            let stream = StreamRef::new(StreamType::FlowRun, id);
            lock_stream(conn, dialect, &stream).await?;
            let row = read_flow_run_row_with_relations(conn, dialect, &id.to_string())
                .await?
                .ok_or_else(|| AppError::not_found("Flow run"))?;
            let version: i64 = row.try_get("version")?;
            let name: String = row.try_get("name")?;
            let relations = stored_relations(&row);
            let snapshot = snapshot_from_row(&row);
            if !guard(&snapshot) {
                return Ok(None);
            }
            let initial = snapshot.state.clone();
            let policy_before = snapshot.empirical_policy.clone();
            let now = micros(Utc::now());
            let deployment_slots = if body.force || body.state.state_type != StateType::Pending {
                None
            } else {
                deployment_slots(conn, dialect, &snapshot).await?
            };
            let outcome = decide_flow_transition(FlowTransitionInput {
                run: snapshot,
                proposed: body.state,
                force: body.force,
                now,
                new_state_id: Uuid::now_v7(),
                fresh_pause_key: Uuid::new_v4().to_string(),
                api_version,
                deployment_slots,
            });
            if outcome.written.is_none() && outcome.run.empirical_policy != policy_before {
                // Some rules change the run without writing a state (a
                // rejected resume still marks the run as resuming, as in
                // Prefect); that change is an event too.
                let mut changes = Map::new();
                changes.insert("empirical_policy".into(), serde_json::to_value(&outcome.run.empirical_policy).map_err(anyhow::Error::from)?);
                let payload = serde_json::to_value(RowUpdated { changes, updated: now }).map_err(anyhow::Error::from)?;
                let event = NewEvent::new(Uuid::now_v7(), FLOW_RUN_UPDATED, now, payload);
                record(conn, dialect, StreamRef::new(StreamType::FlowRun, id), ExpectedVersion::Locked(version), vec![event]).await?;
            }
            record_transition(conn, dialect, id, &name, &relations, version, initial.as_ref(), &outcome).await?;
            if let (Some(input), crate::orchestration::outcome::Status::Accept) = (on_accept, outcome.status) {
                super::flow_run_inputs::create_in_tx(conn, dialect, id, input).await?;
            }
            Ok(Some(SetStateResult { outcome }))
        })
    })
    .await
}

/// What `POST /flow_runs/{id}/resume` did.
pub enum Resumed {
    /// The run is not PAUSED (Prefect's ABORT "Cannot resume a flow run that
    /// is not paused.").
    NotPaused,
    /// Refused before any transition: the run's state and why.
    Refused(Box<State>, String),
    /// The transition out of PAUSED, as `set_state` decided it.
    Transition(Box<SetStateResult>),
}

/// `POST /flow_runs/{id}/resume`: proposes RUNNING, or SCHEDULED "Resuming"
/// now for a run paused with `reschedule`, through the flow policy. A run
/// paused while waiting for input must be sent `run_input` that fits the
/// schema it stored under `run_input_keyset.schema`; the input is stored
/// under `run_input_keyset.response` in the same transaction, and only if
/// the transition is accepted. `run_input` is hydrated first (`json` and
/// `none` kinds, as the UI sends them). The PAUSED check is repeated under the
/// run's lock, so a concurrent resume cannot transition it twice.
pub async fn resume_flow_run(db: &Db, id: Uuid, run_input: Option<Map<String, Value>>, api_version: (u32, u32, u32)) -> ApiResult<Resumed> {
    let (input, current) = {
        let mut conn = db.reader().acquire().await?;
        let row = read_flow_run_row(&mut conn, db.dialect, &id.to_string()).await?.ok_or_else(|| AppError::not_found("Flow run"))?;
        let Some(current) = snapshot_from_row(&row).state.filter(|s| s.state_type == StateType::Paused) else {
            return Ok(Resumed::NotPaused);
        };
        let refused = |reason: &str| Ok(Resumed::Refused(Box::new(current.clone()), reason.to_owned()));
        let keyset = current.state_details.run_input_keyset.clone().filter(|k| !k.is_empty());
        let input = match keyset {
            None => None,
            Some(keyset) => {
                let run_input = run_input.unwrap_or_default();
                let run_input = match crate::orchestration::hydration::hydrate(&run_input, &Default::default()) {
                    Ok(hydrated) => hydrated,
                    Err(e) => return refused(&format!("Error hydrating run input: {e}")),
                };
                let schema_key = keyset.get("schema").and_then(Value::as_str).unwrap_or_default();
                let stored = super::flow_run_inputs::input_by_key(&mut conn, db.dialect, id, schema_key).await?;
                let Some(schema_text) = stored.as_ref().and_then(|s| s.get("value")).and_then(Value::as_str) else {
                    return refused("Run input schema not found.");
                };
                let Ok(schema) = serde_json::from_str::<Value>(schema_text) else {
                    return refused("Run input schema is not valid JSON.");
                };
                let schema = crate::orchestration::job_variables::preprocessed(&schema, false);
                if let Err(msg) = crate::orchestration::parameters::validate_document(&run_input, &schema) {
                    return refused(&format!("Reason: {msg}"));
                }
                let key = keyset.get("response").and_then(Value::as_str).unwrap_or_default().to_owned();
                Some(super::flow_run_inputs::NewInput { key, value: run_input.to_string(), sender: None })
            }
        };
        (input, current)
    };
    let mut proposed = ProposedState {
        state_type: StateType::Running,
        name: None,
        message: None,
        data: None,
        state_details: Default::default(),
    };
    if current.state_details.pause_reschedule {
        proposed.state_type = StateType::Scheduled;
        proposed.name = Some("Resuming".into());
        proposed.state_details.scheduled_time = Some(Utc::now());
    }
    let body = SetStateBody { state: proposed, force: false };
    let paused = |run: &FlowRunSnapshot| run.state.as_ref().is_some_and(|s| s.state_type == StateType::Paused);
    Ok(match set_state_then(db, id, body, api_version, paused, input).await? {
        Some(result) => Resumed::Transition(Box::new(result)),
        None => Resumed::NotPaused,
    })
}

/// Applies a partial update (`FlowRunUpdate` or labels) to a run.
pub async fn update_flow_run(db: &Db, id: Uuid, changes: Map<String, Value>, merge_labels: bool) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let mut changes = changes.clone();
        Box::pin(async move {
            let stream = StreamRef::new(StreamType::FlowRun, id);
            lock_stream(conn, dialect, &stream).await?;
            let row = read_flow_run_row(conn, dialect, &id.to_string())
                .await?
                .ok_or_else(|| AppError::not_found("Flow run"))?;
            if let (false, Some(Value::Object(variables))) = (merge_labels, changes.get("job_variables")) {
                check_job_variables_update(conn, dialect, &row, variables).await?;
            }
            if merge_labels {
                let mut labels: Map<String, Value> = row
                    .try_get::<String, _>("labels")
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default();
                labels.extend(changes);
                changes = Map::new();
                changes.insert("labels".into(), Value::Object(labels));
            }
            let now = micros(Utc::now());
            let payload = serde_json::to_value(RowUpdated { changes, updated: now }).map_err(anyhow::Error::from)?;
            record(conn, dialect, stream, ExpectedVersion::Any, vec![NewEvent::new(Uuid::now_v7(), FLOW_RUN_UPDATED, now, payload)]).await?;
            Ok(())
        })
    })
    .await
}

/// What `PATCH /flow_runs/{id}` checks before it changes a run's job
/// variables, as Prefect does: only a SCHEDULED run of a deployment may
/// change them, and the result must fit the deployment's pool.
async fn check_job_variables_update(conn: &mut AnyConnection, dialect: Dialect, row: &sqlx::any::AnyRow, variables: &Map<String, Value>) -> ApiResult<()> {
    let bad = |msg: String| AppError::Detail(axum::http::StatusCode::BAD_REQUEST, msg);
    let state_type: Option<String> = row.try_get("state_type").ok().flatten();
    let Some(state_type) = state_type else {
        return Err(bad("Flow run state is required to update job variables but none exists".into()));
    };
    if state_type != "SCHEDULED" {
        return Err(bad(format!("Job variables for a flow run in state {state_type} cannot be updated")));
    }
    let no_deployment = || bad("A deployment for the flow run could not be found".into());
    let deployment_id: Option<String> = row.try_get("deployment_id").ok().flatten();
    let deployment_id = deployment_id.and_then(|d: String| Uuid::parse_str(&d).ok()).ok_or_else(no_deployment)?;
    let deployment = super::deployments::deployment_by_id(conn, dialect, deployment_id).await?.ok_or_else(no_deployment)?;
    super::deployments::check_run_job_variables(conn, dialect, &deployment, variables, "updating flow run").await
}

/// Deletes runs inside the caller's transaction (runs already gone are skipped).
pub async fn delete_in_tx(conn: &mut AnyConnection, dialect: Dialect, ids: &[Uuid]) -> ApiResult<()> {
    let now = micros(Utc::now());
    for id in ids {
        let stream = StreamRef::new(StreamType::FlowRun, *id);
        lock_stream(conn, dialect, &stream).await?;
        if read_flow_run_row(conn, dialect, &id.to_string()).await?.is_some() {
            record(conn, dialect, stream, ExpectedVersion::Any, vec![NewEvent::new(Uuid::now_v7(), FLOW_RUN_DELETED, now, json!({}))]).await?;
        }
    }
    Ok(())
}

/// Deletes whichever of `ids` still exist, in one transaction (each under
/// its run's lock); returns those it deleted.
pub async fn delete_flow_runs(db: &Db, ids: Vec<Uuid>) -> ApiResult<Vec<Uuid>> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let ids = ids.clone();
        Box::pin(async move {
            let now = micros(Utc::now());
            let mut deleted = Vec::with_capacity(ids.len());
            for id in ids {
                let stream = StreamRef::new(StreamType::FlowRun, id);
                lock_stream(conn, dialect, &stream).await?;
                if read_flow_run_row(conn, dialect, &id.to_string()).await?.is_some() {
                    record(conn, dialect, stream, ExpectedVersion::Any, vec![NewEvent::new(Uuid::now_v7(), FLOW_RUN_DELETED, now, json!({}))]).await?;
                    deleted.push(id);
                }
            }
            Ok(deleted)
        })
    })
    .await
}

pub async fn delete_flow_run(db: &Db, id: Uuid) -> ApiResult<()> {
    match delete_flow_runs(db, vec![id]).await?.is_empty() {
        true => Err(AppError::not_found("Flow run")),
        false => Ok(()),
    }
}
