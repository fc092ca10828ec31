//! Services that end runs nobody will finish, each a guarded forced
//! transition (the condition is re-checked under the run's stream lock, so a
//! run that moved on meanwhile is left alone):
//!
//! - **pause expirations** (Prefect's `monitor_expired_pauses`): a PAUSED run
//!   past its `pause_timeout` fails with "The flow was paused and never
//!   resumed.";
//! - **cancellation cleanup** (Prefect's `handle_cancelling_timeout`): a run
//!   CANCELLING for longer than the timeout becomes CANCELLED; subflows of a
//!   cancelled run are cancelled with "The parent flow run was cancelled.";
//! - **zombie runs** (built in here; Prefect leaves it to an automation): a
//!   RUNNING run that sent `prefect.flow-run.heartbeat` events and then none
//!   for the timeout is CRASHED, and so is a RUNNING run whose worker (the
//!   one named by its latest `prefect.worker.submitted-flow-run` event) the
//!   foreman has marked OFFLINE.

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use crate::api::error::ApiResult;
use crate::commands::flow_runs::{set_state_guarded, SetStateBody};
use crate::config::Settings;
use crate::db::Db;
use crate::orchestration::flow_policy::FlowRunSnapshot;
use crate::orchestration::outcome::ProposedState;
use crate::orchestration::states::StateType;

async fn ids(db: &Db, sql: &str, binds: &[String]) -> ApiResult<Vec<Uuid>> {
    let q = db.q(sql);
    let mut query = sqlx::query(&q);
    for b in binds {
        query = query.bind(b.clone());
    }
    let rows = query.fetch_all(db.reader()).await?;
    Ok(rows.iter().filter_map(|r| r.try_get::<String, _>(0).ok()).filter_map(|s| Uuid::parse_str(&s).ok()).collect())
}

/// Forces `state_type` (with `message`) onto each run for which `guard` still
/// holds; returns how many changed.
async fn force_all<G>(db: &Db, runs: Vec<Uuid>, state_type: StateType, message: &str, guard: G) -> ApiResult<usize>
where
    G: Fn(&FlowRunSnapshot) -> bool + Clone + Send + Sync + 'static,
{
    let mut changed = 0;
    for id in runs {
        let state = ProposedState { state_type, name: None, message: Some(message.to_owned()), data: None, state_details: Default::default() };
        if set_state_guarded(db, id, SetStateBody { state, force: true }, (0, 8, 4), guard.clone()).await?.is_some() {
            changed += 1;
        }
    }
    Ok(changed)
}

fn is(run: &FlowRunSnapshot, t: StateType) -> bool {
    run.state.as_ref().is_some_and(|s| s.state_type == t)
}

/// Paused runs whose `pause_timeout` has passed fail.
pub async fn expire_pauses(db: &Db, now: DateTime<Utc>) -> ApiResult<usize> {
    let rows = sqlx::query(&db.q(
        "SELECT fr.id, s.state_details FROM flow_run fr JOIN flow_run_state s ON s.id = fr.state_id WHERE fr.state_type = 'PAUSED'",
    ))
    .fetch_all(db.reader())
    .await?;
    let timeout_of = |details: &str| -> Option<DateTime<Utc>> {
        let v: serde_json::Value = serde_json::from_str(details).ok()?;
        crate::time::parse_lax_datetime(v.get("pause_timeout")?.as_str()?)
    };
    let expired: Vec<Uuid> = rows
        .iter()
        .filter(|r| r.try_get::<String, _>(1).ok().and_then(|d| timeout_of(&d)).is_some_and(|t| t < now))
        .filter_map(|r| r.try_get::<String, _>(0).ok())
        .filter_map(|s| Uuid::parse_str(&s).ok())
        .collect();
    let guard = move |run: &FlowRunSnapshot| {
        is(run, StateType::Paused) && run.state.as_ref().and_then(|s| s.state_details.pause_timeout).is_some_and(|t| t < now)
    };
    force_all(db, expired, StateType::Failed, "The flow was paused and never resumed.", guard).await
}

/// Runs CANCELLING since before `cutoff` become CANCELLED; subflows of
/// cancelled runs that are still going are cancelled too.
pub async fn clean_up_cancellations(db: &Db, cutoff: DateTime<Utc>) -> ApiResult<usize> {
    let stuck = ids(db, "SELECT id FROM flow_run WHERE state_type = 'CANCELLING' AND state_timestamp < $1", &[crate::time::fmt_ts(cutoff)]).await?;
    let guard = move |run: &FlowRunSnapshot| is(run, StateType::Cancelling) && run.state.as_ref().is_some_and(|s| s.timestamp < cutoff);
    let mut changed = force_all(db, stuck, StateType::Cancelled, "The flow run was cancelled: it stayed CANCELLING past the timeout.", guard).await?;
    let orphans = ids(
        db,
        "SELECT child.id FROM flow_run child JOIN task_run t ON t.id = child.parent_task_run_id JOIN flow_run parent ON parent.id = t.flow_run_id \
         WHERE parent.state_type = 'CANCELLED' AND child.state_type IN ('SCHEDULED', 'PENDING', 'RUNNING', 'PAUSED', 'CANCELLING')",
        &[],
    )
    .await?;
    let not_final = |run: &FlowRunSnapshot| run.state.as_ref().is_some_and(|s| !s.state_type.is_final());
    changed += force_all(db, orphans, StateType::Cancelled, "The parent flow run was cancelled.", not_final).await?;
    Ok(changed)
}

/// RUNNING runs whose last heartbeat is older than `cutoff` crash.
pub async fn crash_zombies(db: &Db, cutoff: DateTime<Utc>) -> ApiResult<usize> {
    let sql = "SELECT fr.id FROM flow_run fr JOIN events e ON e.resource_id = ('prefect.flow-run.' || fr.id) \
               WHERE fr.state_type = 'RUNNING' AND e.event = 'prefect.flow-run.heartbeat' \
               GROUP BY fr.id HAVING MAX(e.occurred) < $1";
    let zombies = ids(db, sql, &[crate::time::fmt_ts(cutoff)]).await?;
    let guard = |run: &FlowRunSnapshot| is(run, StateType::Running);
    force_all(db, zombies, StateType::Crashed, "Flow run stopped sending heartbeats and is presumed dead.", guard).await
}

/// RUNNING runs whose submitting worker went OFFLINE crash.
pub async fn crash_runs_of_dead_workers(db: &Db) -> ApiResult<usize> {
    use std::collections::{HashMap, HashSet};
    let rows = sqlx::query(&db.q(
        "SELECT fr.id, fr.work_pool_id, e.resource, e.occurred FROM flow_run fr \
         JOIN event_resources er ON er.resource_id = ('prefect.flow-run.' || fr.id) AND er.resource_role = 'flow-run' \
         JOIN events e ON e.id = er.event_id \
         WHERE fr.state_type = 'RUNNING' AND e.event = 'prefect.worker.submitted-flow-run'",
    ))
    .fetch_all(db.reader())
    .await?;
    // The latest submission of each run names its worker.
    let mut latest: HashMap<String, (String, String, String)> = HashMap::new();
    for r in &rows {
        let (Ok(id), Ok(Some(pool)), Ok(resource), Ok(occurred)) =
            (r.try_get::<String, _>(0), r.try_get::<Option<String>, _>(1), r.try_get::<String, _>(2), r.try_get::<String, _>(3))
        else {
            continue;
        };
        let labels: serde_json::Value = serde_json::from_str(&resource).unwrap_or_default();
        let Some(worker) = labels.get("prefect.resource.name").and_then(|v| v.as_str()) else { continue };
        if latest.get(&id).is_none_or(|(_, _, at)| occurred > *at) {
            latest.insert(id, (pool, worker.to_owned(), occurred));
        }
    }
    if latest.is_empty() {
        return Ok(0);
    }
    let offline: HashSet<(String, String)> = sqlx::query(&db.q("SELECT work_pool_id, name FROM worker WHERE status = 'OFFLINE'"))
        .fetch_all(db.reader())
        .await?
        .iter()
        .filter_map(|r| Some((r.try_get::<String, _>(0).ok()?, r.try_get::<String, _>(1).ok()?)))
        .collect();
    let dead: Vec<Uuid> = latest
        .into_iter()
        .filter(|(_, (pool, worker, _))| offline.contains(&(pool.clone(), worker.clone())))
        .filter_map(|(id, _)| Uuid::parse_str(&id).ok())
        .collect();
    let guard = |run: &FlowRunSnapshot| is(run, StateType::Running);
    force_all(db, dead, StateType::Crashed, "The worker running this flow run stopped sending heartbeats.", guard).await
}

/// Runs the three monitors on their own intervals.
pub async fn run(db: Db, settings: Settings) {
    let s = settings.services.clone();
    let d = |x: std::time::Duration| chrono::Duration::from_std(x).unwrap_or_default();
    let cancelling_timeout = d(s.cancelling_timeout);
    let mut pauses = tokio::time::interval(s.pause_expirations_loop);
    let mut cancellations = tokio::time::interval(s.cancellation_cleanup_loop);
    let mut zombies = tokio::time::interval(s.zombie_runs_loop);
    loop {
        let (what, result) = tokio::select! {
            _ = pauses.tick(), if s.pause_expirations_enabled => ("expired pauses", expire_pauses(&db, Utc::now()).await),
            _ = cancellations.tick(), if s.cancellation_cleanup_enabled => ("cancellation cleanup", clean_up_cancellations(&db, Utc::now() - cancelling_timeout).await),
            _ = zombies.tick(), if s.zombie_runs_enabled => {
                let silent = crash_zombies(&db, Utc::now() - d(s.zombie_heartbeat_timeout)).await;
                let orphaned = crash_runs_of_dead_workers(&db).await;
                ("zombie runs", silent.and_then(|a| orphaned.map(|b| a + b)))
            }
        };
        match result {
            Ok(0) => {}
            Ok(n) => tracing::info!(runs = n, monitor = what, "ended runs"),
            Err(e) => tracing::warn!(error = %e, monitor = what, "run monitor pass failed"),
        }
    }
}
