//! Task-run commands over REST: create (idempotent on the natural key),
//! update, delete, set_state, and the subflow parent-task mirror.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::flow_runs::state_event;
use super::{record, write};
use crate::api::error::{ApiResult, AppError};
use crate::db::{Db, Dialect};
use crate::eventlog::{lock_key, lock_stream, ExpectedVersion, NewEvent, StreamRef, StreamType, DEFAULT_WORKSPACE};
use super::concurrency_limits::{create_lease, end_holder_leases};
use super::tag_concurrency_limits::V1_LEASE_SECONDS;
use crate::orchestration::concurrency_limits::{decide_task_slots, TaskSlots, WaitSettings};
use crate::orchestration::outcome::{Details, ProposedState, Status};
use crate::orchestration::states::{State, StateType, TaskRunPolicy};
use crate::orchestration::task_policy::{
    decide_task_transition, subflow_parent_task_state, ParentFlowRun, TaskRunSnapshot, TaskTransitionInput,
    TaskTransitionOutcome,
};
use crate::server_events::{
    task_run_state_event_type, RowUpdated, RunBookkeeping, StateSet, TaskRunCreated, TaskRunRecord, TASK_RUN_CREATED,
    TASK_RUN_DELETED, TASK_RUN_UPDATED,
};
use crate::server_model::concurrency_limits::{limit_row, limit_state, limits_for_tags, row_id, LimitRef};
use crate::server_model::states::state_from_row;
use crate::server_model::task_runs::{read_task_run_row, snapshot_from_row};
use crate::time::{fmt_ts, micros, parse_ts};

/// `TaskRunCreate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRunCreate {
    #[serde(default)]
    pub id: Option<Uuid>,
    #[serde(default)]
    pub state: Option<ProposedState>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub flow_run_id: Option<Uuid>,
    pub task_key: String,
    pub dynamic_key: String,
    #[serde(default)]
    pub cache_key: Option<String>,
    #[serde(default)]
    pub cache_expiration: Option<DateTime<Utc>>,
    #[serde(default)]
    pub task_version: Option<String>,
    #[serde(default)]
    pub empirical_policy: Option<TaskRunPolicy>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub labels: Option<Map<String, Value>>,
    #[serde(default)]
    pub task_inputs: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetTaskStateBody {
    pub state: ProposedState,
    #[serde(default)]
    pub force: bool,
}

fn bookkeeping(run: &TaskRunSnapshot) -> RunBookkeeping {
    RunBookkeeping {
        run_count: run.run_count,
        start_time: run.start_time,
        end_time: run.end_time,
        // A timedelta: microsecond precision, as Prefect stores it.
        total_run_time: (run.total_run_time * 1e6).round() / 1e6,
        expected_start_time: run.expected_start_time,
        next_scheduled_start_time: run.next_scheduled_start_time,
        empirical_policy: serde_json::to_value(&run.empirical_policy).unwrap_or(Value::Null),
        flow_run_run_count: Some(run.flow_run_run_count),
    }
}

fn tag_related(tags: &Value) -> Vec<Value> {
    tags.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|t| json!({"prefect.resource.id": format!("prefect.tag.{t}"), "prefect.resource.role": "tag"}))
        .collect()
}

/// Appends (and projects) a written task-run state.
#[allow(clippy::too_many_arguments)]
async fn record_transition(
    conn: &mut AnyConnection,
    dialect: Dialect,
    run_id: Uuid,
    run_name: &str,
    flow_run_id: Option<Uuid>,
    tags: &Value,
    version: ExpectedVersion,
    initial: Option<&State>,
    outcome: &TaskTransitionOutcome,
) -> ApiResult<()> {
    let Some(state) = &outcome.written else { return Ok(()) };
    let mut related = tag_related(tags);
    if let Some(fr) = flow_run_id {
        related.insert(0, json!({"prefect.resource.id": format!("prefect.flow-run.{fr}"), "prefect.resource.role": "flow-run"}));
    }
    let event = state_event("task-run", run_id, run_name, related, outcome.run.run_count, initial, state);
    let payload = StateSet { state: state.clone(), run: bookkeeping(&outcome.run), event };
    let new_event = NewEvent::new(
        state.id,
        task_run_state_event_type(&state.name),
        state.timestamp,
        serde_json::to_value(payload).map_err(anyhow::Error::from)?,
    );
    record(conn, dialect, StreamRef::new(StreamType::TaskRun, run_id), version, vec![new_event]).await?;
    Ok(())
}

pub async fn create_task_run(db: &Db, body: TaskRunCreate) -> ApiResult<(Uuid, bool)> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let body = body.clone();
        Box::pin(async move { create_in_tx(conn, dialect, body).await })
    })
    .await
}

async fn create_in_tx(conn: &mut AnyConnection, dialect: Dialect, body: TaskRunCreate) -> ApiResult<(Uuid, bool)> {
    let flow_run = body.flow_run_id.map(|u| u.to_string());
    lock_key(conn, dialect, &format!("task-run-key:{:?}:{}:{}", flow_run, body.task_key, body.dynamic_key)).await?;
    let existing = match &flow_run {
        Some(fr) => sqlx::query(&dialect.rewrite("SELECT id FROM task_run WHERE flow_run_id = $1 AND task_key = $2 AND dynamic_key = $3"))
            .bind(fr.clone())
            .bind(&body.task_key)
            .bind(&body.dynamic_key)
            .fetch_optional(&mut *conn)
            .await?,
        None => sqlx::query(&dialect.rewrite("SELECT id FROM task_run WHERE flow_run_id IS NULL AND task_key = $1 AND dynamic_key = $2"))
            .bind(&body.task_key)
            .bind(&body.dynamic_key)
            .fetch_optional(&mut *conn)
            .await?,
    };
    if let Some(row) = existing {
        let id: String = row.try_get(0)?;
        return Ok((Uuid::parse_str(&id).map_err(anyhow::Error::from)?, false));
    }
    if let Some(fr) = &flow_run {
        let found = sqlx::query(&dialect.rewrite("SELECT 1 FROM flow_run WHERE id = $1 AND workspace_id = $2"))
            .bind(fr.clone())
            .bind(DEFAULT_WORKSPACE.to_string())
            .fetch_optional(&mut *conn)
            .await?;
        if found.is_none() {
            return Err(AppError::Conflict);
        }
    }
    let id = body.id.unwrap_or_else(Uuid::now_v7);
    let stream = StreamRef::new(StreamType::TaskRun, id);
    if crate::eventlog::stream_version(conn, dialect, &stream).await? > 0 {
        // A client-chosen id that already names another task run.
        return Err(AppError::Conflict);
    }
    let now = micros(Utc::now());
    let policy = body.empirical_policy.clone().unwrap_or_default();
    let tags = Value::from(body.tags.clone().unwrap_or_default());
    let name = body.name.clone().unwrap_or_else(|| format!("{}-{}", body.task_key, &body.dynamic_key));
    let record_body = TaskRunRecord {
        id,
        created: now,
        name: name.clone(),
        flow_run_id: body.flow_run_id,
        task_key: body.task_key.clone(),
        dynamic_key: body.dynamic_key.clone(),
        cache_key: body.cache_key.clone(),
        cache_expiration: body.cache_expiration,
        task_version: body.task_version.clone(),
        empirical_policy: serde_json::to_value(&policy).map_err(anyhow::Error::from)?,
        tags: tags.clone(),
        labels: Value::Object(body.labels.clone().unwrap_or_default()),
        task_inputs: Value::Object(body.task_inputs.clone().unwrap_or_default()),
    };
    let created = NewEvent::new(
        Uuid::now_v7(),
        TASK_RUN_CREATED,
        now,
        serde_json::to_value(TaskRunCreated { task_run: record_body }).map_err(anyhow::Error::from)?,
    );
    record(conn, dialect, stream, ExpectedVersion::NoStream, vec![created]).await?;
    let proposed = body.state.clone().unwrap_or_else(|| ProposedState {
        state_type: StateType::Pending,
        name: None,
        message: None,
        data: None,
        state_details: Default::default(),
    });
    let snapshot = TaskRunSnapshot {
        id,
        flow_run_id: body.flow_run_id,
        state: None,
        empirical_policy: policy,
        run_count: 0,
        flow_run_run_count: 0,
        start_time: None,
        end_time: None,
        total_run_time: 0.0,
        expected_start_time: None,
        next_scheduled_start_time: None,
    };
    let outcome = decide_task_transition(TaskTransitionInput {
        run: snapshot,
        proposed,
        force: true,
        now,
        new_state_id: Uuid::now_v7(),
        parent_flow_run: None,
        cached_state: None,
        jitter_sample: 0.5,
    });
    record_transition(conn, dialect, id, &name, body.flow_run_id, &tags, ExpectedVersion::Exact(1), None, &outcome).await?;
    Ok((id, true))
}

/// The parent flow run's facts the task rules read.
async fn parent_flow_run(conn: &mut AnyConnection, dialect: Dialect, flow_run_id: Option<Uuid>) -> ApiResult<Option<ParentFlowRun>> {
    let Some(id) = flow_run_id else { return Ok(None) };
    let row = sqlx::query(&dialect.rewrite(
        "SELECT fr.state_type, fr.state_name, fr.run_count, s.state_details FROM flow_run fr \
         LEFT JOIN flow_run_state s ON s.id = fr.state_id WHERE fr.id = $1",
    ))
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| {
        let details: Value = r
            .try_get::<Option<String>, _>("state_details")
            .ok()
            .flatten()
            .and_then(|d| serde_json::from_str(&d).ok())
            .unwrap_or(Value::Null);
        ParentFlowRun {
            state_type: r.try_get::<Option<String>, _>("state_type").ok().flatten().and_then(|s| StateType::parse(&s)),
            state_name: r.try_get::<Option<String>, _>("state_name").ok().flatten(),
            run_count: r.try_get::<i64, _>("run_count").unwrap_or(0),
            pause_timeout: details.get("pause_timeout").and_then(Value::as_str).and_then(parse_ts),
            pause_reschedule: details.get("pause_reschedule").and_then(Value::as_bool).unwrap_or(false),
        }
    }))
}

/// The newest unexpired cached COMPLETED state for a cache key.
async fn cached_state(conn: &mut AnyConnection, dialect: Dialect, proposed: &ProposedState, now: DateTime<Utc>) -> ApiResult<Option<State>> {
    let Some(key) = proposed.state_details.cache_key.as_ref() else { return Ok(None) };
    if proposed.state_type != StateType::Running && proposed.state_details.refresh_cache == Some(true) {
        return Ok(None);
    }
    let sql = format!(
        "SELECT {} FROM task_run_state_cache c JOIN task_run_state s ON s.id = c.task_run_state_id \
         WHERE c.cache_key = $1 AND (c.cache_expiration IS NULL OR c.cache_expiration > $2) ORDER BY c.created DESC LIMIT 1",
        crate::server_model::states::state_columns("s", "")
    );
    let row = sqlx::query(&dialect.rewrite(&sql)).bind(key.clone()).bind(fmt_ts(now)).fetch_optional(&mut *conn).await?;
    Ok(row.and_then(|r| state_from_row(&r, "")))
}

pub async fn set_task_run_state(db: &Db, id: Uuid, body: SetTaskStateBody, jitter_sample: f64, waits: WaitSettings) -> ApiResult<TaskTransitionOutcome> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let body = body.clone();
        Box::pin(async move {
            let stream = StreamRef::new(StreamType::TaskRun, id);
            lock_stream(conn, dialect, &stream).await?;
            let row = read_task_run_row(conn, dialect, &id.to_string())
                .await?
                .ok_or_else(|| AppError::not_found("Task run"))?;
            let name: String = row.try_get("name")?;
            let tags: Value = row.try_get::<String, _>("tags").ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
            let snapshot = snapshot_from_row(&row);
            let now = micros(Utc::now());
            let parent = parent_flow_run(conn, dialect, snapshot.flow_run_id).await?;
            let cached = cached_state(conn, dialect, &body.state, now).await?;
            let initial = snapshot.state.clone();
            let flow_run_id = snapshot.flow_run_id;
            let before = snapshot.clone();
            let core_policy = !body.force && body.state.state_details.deferred != Some(true);
            let outcome = decide_task_transition(TaskTransitionInput {
                run: snapshot,
                proposed: body.state,
                force: body.force,
                now,
                new_state_id: Uuid::now_v7(),
                parent_flow_run: parent,
                cached_state: cached,
                jitter_sample,
            });
            let tag_list: Vec<String> = tags.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect();
            let limits = limits_for_tags(conn, dialect, &tag_list).await?;
            let starts_running = outcome.written.as_ref().is_some_and(|s| s.state_type == StateType::Running);
            let mut acquired = Vec::new();
            if core_policy && starts_running && !limits.is_empty() {
                match tag_slots(conn, dialect, &limits, now, waits, jitter_sample).await? {
                    TaskSlots::Free => {}
                    TaskSlots::Acquire(ids) => acquired = ids,
                    TaskSlots::Abort(reason) => return Ok(refused(before, Status::Abort, Details::Abort { reason })),
                    TaskSlots::Wait { delay_seconds, reason } => return Ok(refused(before, Status::Wait, Details::Wait { delay_seconds, reason })),
                }
            }
            // `Any`, not the row's version: client events may have advanced
            // the stream without touching the row (an older state arriving late).
            record_transition(conn, dialect, id, &name, flow_run_id, &tags, ExpectedVersion::Any, initial.as_ref(), &outcome).await?;
            // ReleaseTaskConcurrencySlots, then the new slots' lease.
            let leaves_running = outcome.written.as_ref().is_some_and(|s| !matches!(s.state_type, StateType::Running | StateType::Cancelling));
            if leaves_running && !limits.is_empty() {
                let ids: Vec<Uuid> = limits.iter().map(row_id).collect();
                end_holder_leases(conn, dialect, &ids, id, now, waits).await?;
            }
            if !acquired.is_empty() {
                let resources = acquired.iter().map(Uuid::to_string).collect();
                create_lease(conn, dialect, resources, 1, json!({"type": "task_run", "id": id}), V1_LEASE_SECONDS, now).await?;
            }
            Ok(outcome)
        })
    })
    .await
}

/// The tag limits locked and read, then `SecureTaskConcurrencySlots`.
async fn tag_slots(conn: &mut AnyConnection, dialect: Dialect, limits: &[Map<String, Value>], now: DateTime<Utc>, waits: WaitSettings, u: f64) -> ApiResult<TaskSlots> {
    let mut states = Vec::with_capacity(limits.len());
    for row in limits {
        lock_stream(conn, dialect, &StreamRef::new(StreamType::ConcurrencyLimit, row_id(row))).await?;
        let Some(row) = limit_row(conn, dialect, &LimitRef::Id(row_id(row))).await? else { continue };
        states.push(limit_state(conn, dialect, &row, now, None).await?);
    }
    Ok(decide_task_slots(&states, now, waits, u))
}

/// A WAIT or ABORT from the tag limits: nothing is written.
fn refused(run: TaskRunSnapshot, status: Status, details: Details) -> TaskTransitionOutcome {
    let returned_state = run.state.clone();
    TaskTransitionOutcome { status, details, written: None, run, returned_state, cache_insert: None }
}

/// Force-sets a copy of a subflow's new state on its parent task run.
pub(crate) async fn mirror_subflow_state(
    conn: &mut AnyConnection,
    dialect: Dialect,
    parent_task_run_id: Uuid,
    child_flow_run_id: Uuid,
    child_state: &State,
) -> ApiResult<()> {
    let stream = StreamRef::new(StreamType::TaskRun, parent_task_run_id);
    lock_stream(conn, dialect, &stream).await?;
    let Some(row) = read_task_run_row(conn, dialect, &parent_task_run_id.to_string()).await? else {
        return Ok(());
    };
    let name: String = row.try_get("name")?;
    let tags: Value = row.try_get::<String, _>("tags").ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
    let snapshot = snapshot_from_row(&row);
    let initial = snapshot.state.clone();
    let flow_run_id = snapshot.flow_run_id;
    let copy = subflow_parent_task_state(child_state, child_flow_run_id, parent_task_run_id, Uuid::now_v7());
    let proposed = ProposedState {
        state_type: copy.state_type,
        name: Some(copy.name.clone()),
        message: copy.message.clone(),
        data: copy.data.clone(),
        state_details: copy.state_details.clone(),
    };
    let outcome = decide_task_transition(TaskTransitionInput {
        run: snapshot,
        proposed,
        force: true,
        now: copy.timestamp,
        new_state_id: copy.id,
        parent_flow_run: None,
        cached_state: None,
        jitter_sample: 0.5,
    });
    record_transition(conn, dialect, parent_task_run_id, &name, flow_run_id, &tags, ExpectedVersion::Any, initial.as_ref(), &outcome).await
}

pub async fn update_task_run(db: &Db, id: Uuid, changes: Map<String, Value>) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let changes = changes.clone();
        Box::pin(async move {
            let stream = StreamRef::new(StreamType::TaskRun, id);
            lock_stream(conn, dialect, &stream).await?;
            if read_task_run_row(conn, dialect, &id.to_string()).await?.is_none() {
                return Err(AppError::not_found("Task run"));
            }
            let now = micros(Utc::now());
            let payload = serde_json::to_value(RowUpdated { changes, updated: now }).map_err(anyhow::Error::from)?;
            record(conn, dialect, stream, ExpectedVersion::Any, vec![NewEvent::new(Uuid::now_v7(), TASK_RUN_UPDATED, now, payload)]).await?;
            Ok(())
        })
    })
    .await
}

pub async fn delete_task_run(db: &Db, id: Uuid) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        Box::pin(async move {
            let stream = StreamRef::new(StreamType::TaskRun, id);
            lock_stream(conn, dialect, &stream).await?;
            if read_task_run_row(conn, dialect, &id.to_string()).await?.is_none() {
                return Err(AppError::not_found("Task run"));
            }
            let now = micros(Utc::now());
            record(conn, dialect, stream, ExpectedVersion::Any, vec![NewEvent::new(Uuid::now_v7(), TASK_RUN_DELETED, now, json!({}))]).await?;
            Ok(())
        })
    })
    .await
}
