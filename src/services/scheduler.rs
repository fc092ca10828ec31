//! The scheduler: creates future SCHEDULED runs for deployments with active
//! schedules, as Prefect's `schedule_deployments` and
//! `schedule_recent_deployments` do. Each run carries the idempotency key
//! `scheduled <deployment> <schedule> <time>`, so running the scheduler twice,
//! or from a new leader after a failover, never duplicates a run.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::Row;
use uuid::Uuid;

use crate::api::error::ApiResult;
use crate::commands::deployments::{deployment_by_id, pool_of_queue};
use crate::commands::flow_runs::{create_in_tx, FlowRunCreate, RunOrigin};
use crate::commands::write;
use crate::config::Settings;
use crate::db::{Bind, Db};
use crate::eventlog::{lock_stream, StreamRef, StreamType};
use crate::orchestration::outcome::ProposedState;
use crate::orchestration::states::StateType;
use crate::schedules::Schedule;
use crate::server_model::documents::DEPLOYMENT_SCHEDULE;
use crate::server_model::work_pools::select_docs;

/// How far ahead and how many runs to schedule.
#[derive(Debug, Clone)]
pub struct Bounds {
    /// Schedule from here (now when `None`).
    pub start: Option<DateTime<Utc>>,
    pub min_time: chrono::Duration,
    pub max_time: chrono::Duration,
    pub min_runs: usize,
    pub max_runs: usize,
}

impl Bounds {
    pub fn from_settings(settings: &Settings) -> Bounds {
        let s = &settings.services;
        let d = |x: Duration| chrono::Duration::from_std(x).unwrap_or(chrono::Duration::MAX);
        Bounds {
            start: None,
            min_time: d(s.scheduler_min_time),
            max_time: d(s.scheduler_max_time),
            min_runs: s.scheduler_min_runs,
            max_runs: s.scheduler_max_runs,
        }
    }
}

/// The dates one schedule contributes: up to `max_runs` within
/// `[start, start + max_time]`, stopping once both minimums are met.
pub fn dates_to_schedule(schedule: &Schedule, start: DateTime<Utc>, b: &Bounds) -> Vec<DateTime<Utc>> {
    let end = start.checked_add_signed(b.max_time);
    let mut out = Vec::new();
    for dt in schedule.next_dates(b.max_runs, start, end) {
        out.push(dt);
        if out.len() >= b.min_runs && dt >= start + b.min_time {
            break;
        }
    }
    out
}

/// Python's `str(datetime)` for a UTC time, as Prefect's idempotency keys hold it.
fn python_str(dt: DateTime<Utc>) -> String {
    if dt.timestamp_subsec_micros() == 0 {
        dt.format("%Y-%m-%d %H:%M:%S+00:00").to_string()
    } else {
        dt.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string()
    }
}

/// Schedules one deployment's runs; returns how many runs were created.
pub async fn schedule_deployment(db: &Db, deployment_id: Uuid, bounds: &Bounds) -> ApiResult<usize> {
    let dialect = db.dialect;
    let bounds = bounds.clone();
    write(db, move |conn| {
        let bounds = bounds.clone();
        Box::pin(async move {
            lock_stream(conn, dialect, &StreamRef::new(StreamType::Deployment, deployment_id)).await?;
            let Some(dep) = deployment_by_id(conn, dialect, deployment_id).await? else { return Ok(0) };
            if dep.get("paused").and_then(Value::as_bool).unwrap_or(false) {
                return Ok(0);
            }
            let schedules =
                select_docs(conn, dialect, &DEPLOYMENT_SCHEDULE, "t.deployment_id = $1 AND t.active = 1", "t.created, t.id", &[Bind::Text(deployment_id.to_string())]).await?;
            let start = bounds.start.unwrap_or_else(Utc::now);
            let flow_id = dep.get("flow_id").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok());
            let Some(flow_id) = flow_id else { return Ok(0) };
            let queue_id = dep.get("work_queue_id").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok());
            let (pool_id, pool_name) = pool_of_queue(conn, dialect, queue_id).await?;
            let mut tags = vec![json!("auto-scheduled")];
            tags.extend(dep.get("tags").and_then(Value::as_array).cloned().unwrap_or_default());
            let mut labels = dep.get("labels").and_then(Value::as_object).cloned().unwrap_or_default();
            labels.insert("prefect.deployment.id".into(), json!(deployment_id));
            let mut created = 0;
            for sched in schedules {
                let Ok(schedule) = Schedule::parse(sched.get("schedule").unwrap_or(&Value::Null)) else { continue };
                let schedule_id = sched.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
                let mut dates = dates_to_schedule(&schedule, start, &bounds);
                if let Some(max) = sched.get("max_scheduled_runs").and_then(Value::as_i64) {
                    dates.truncate(max.max(0) as usize);
                }
                let mut parameters = dep.get("parameters").and_then(Value::as_object).cloned().unwrap_or_default();
                parameters.extend(sched.get("parameters").and_then(Value::as_object).cloned().unwrap_or_default());
                let display = sched.get("slug").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| schedule.display_value());
                for date in dates {
                    let mut state = ProposedState {
                        state_type: StateType::Scheduled,
                        name: None,
                        message: Some("Flow run scheduled".into()),
                        data: None,
                        state_details: Default::default(),
                    };
                    state.state_details.scheduled_time = Some(date);
                    let body = FlowRunCreate {
                        state: Some(state),
                        name: None,
                        flow_id,
                        flow_version: None,
                        parameters: Some(parameters.clone()),
                        context: None,
                        parent_task_run_id: None,
                        infrastructure_document_id: dep.get("infrastructure_document_id").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok()),
                        empirical_policy: None,
                        tags: Some(tags.iter().filter_map(Value::as_str).map(str::to_owned).collect()),
                        labels: None,
                        idempotency_key: Some(format!("scheduled {deployment_id} {schedule_id} {}", python_str(date))),
                        work_pool_name: pool_name.clone(),
                        work_queue_name: dep.get("work_queue_name").and_then(Value::as_str).map(str::to_owned),
                        job_variables: None,
                        deployment_id: Some(deployment_id),
                    };
                    let origin = RunOrigin {
                        deployment_version: dep.get("version").and_then(Value::as_str).map(str::to_owned),
                        work_queue_id: queue_id,
                        work_pool_id: pool_id,
                        auto_scheduled: true,
                        created_by: json!({"id": schedule_id, "type": "SCHEDULE", "display_value": display}),
                        labels: labels.clone(),
                    };
                    let (_, new) = create_in_tx(conn, dialect, body, Uuid::new_v4().as_u128(), origin).await?;
                    created += new as usize;
                }
            }
            Ok(created)
        })
    })
    .await
}

/// Deployments that may need runs: not paused, with an active schedule;
/// `since` limits them to recently updated ones (the fast loop).
async fn candidates(db: &Db, since: Option<DateTime<Utc>>, after_id: &str, batch: i64) -> ApiResult<Vec<Uuid>> {
    let mut sql = "SELECT d.id FROM deployment d WHERE d.paused = 0 AND d.id > $1 \
                   AND EXISTS (SELECT 1 FROM deployment_schedule s WHERE s.deployment_id = d.id AND s.active = 1)"
        .to_owned();
    let mut binds = vec![Bind::Text(after_id.to_owned())];
    if let Some(since) = since {
        binds.push(Bind::Text(crate::time::fmt_ts(since)));
        sql.push_str(&format!(" AND d.updated >= ${}", binds.len()));
    }
    binds.push(Bind::Int(batch));
    sql.push_str(&format!(" ORDER BY d.id LIMIT ${}", binds.len()));
    let rows = crate::db::bind_all(sqlx::query(&db.q(&sql)), &binds).fetch_all(db.reader()).await?;
    Ok(rows.iter().filter_map(|r| r.try_get::<String, _>(0).ok()).filter_map(|s| Uuid::parse_str(&s).ok()).collect())
}

/// One pass over the candidate deployments, in batches. Returns runs created.
pub async fn run_once(db: &Db, bounds: &Bounds, since: Option<DateTime<Utc>>, batch: i64) -> ApiResult<usize> {
    let mut after = String::new();
    let mut created = 0;
    loop {
        let ids = candidates(db, since, &after, batch).await?;
        let Some(last) = ids.last() else { break };
        after = last.to_string();
        for id in &ids {
            created += schedule_deployment(db, *id, bounds).await?;
        }
        if (ids.len() as i64) < batch {
            break;
        }
    }
    Ok(created)
}

/// The scheduler loops: every deployment each `scheduler_loop`, and recently
/// updated ones each `scheduler_recent_loop`.
pub async fn run(db: Db, settings: Settings) {
    let bounds = Bounds::from_settings(&settings);
    let s = settings.services.clone();
    let mut full = tokio::time::interval(s.scheduler_loop);
    let mut recent = tokio::time::interval(s.scheduler_recent_loop);
    loop {
        let since = tokio::select! {
            _ = full.tick() => None,
            _ = recent.tick() => Some(Utc::now() - chrono::Duration::from_std(s.scheduler_recent_loop * 2).unwrap_or_default() - chrono::Duration::seconds(1)),
        };
        let span = tracing::debug_span!("scheduler", recent = since.is_some());
        let _guard = span.enter();
        match run_once(&db, &bounds, since, s.scheduler_batch_size).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(runs = n, "scheduled flow runs"),
            Err(e) => tracing::warn!(error = %e, "scheduler pass failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(min_runs: usize, max_runs: usize, min_h: i64, max_d: i64) -> Bounds {
        Bounds { start: None, min_time: chrono::Duration::hours(min_h), max_time: chrono::Duration::days(max_d), min_runs, max_runs }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn an_hourly_schedule_gets_the_minimum_runs_and_an_hour_ahead() {
        let hourly = Schedule::parse(&json!({"interval": 3600.0, "anchor_date": "2026-01-01T00:00:00Z", "timezone": "UTC"})).unwrap();
        let dates = dates_to_schedule(&hourly, at("2026-11-23T10:30:00Z"), &bounds(3, 100, 1, 100));
        assert_eq!(dates, vec![at("2026-11-23T11:00:00Z"), at("2026-11-23T12:00:00Z"), at("2026-11-23T13:00:00Z")]);
    }

    #[test]
    fn a_frequent_schedule_fills_the_minimum_time() {
        let every_10_min = Schedule::parse(&json!({"interval": 600.0, "anchor_date": "2026-01-01T00:00:00Z", "timezone": "UTC"})).unwrap();
        let dates = dates_to_schedule(&every_10_min, at("2026-11-23T10:00:00Z"), &bounds(3, 100, 1, 100));
        assert_eq!(dates.len(), 7, "10:00 through 11:00 inclusive");
        assert_eq!(dates.last(), Some(&at("2026-11-23T11:00:00Z")));
    }

    #[test]
    fn max_runs_caps_the_dates() {
        let every_minute = Schedule::parse(&json!({"interval": 60.0, "anchor_date": "2026-01-01T00:00:00Z", "timezone": "UTC"})).unwrap();
        assert_eq!(dates_to_schedule(&every_minute, at("2026-11-23T10:00:00Z"), &bounds(3, 5, 1, 100)).len(), 5);
    }

    #[test]
    fn idempotency_keys_use_pythons_datetime_text() {
        assert_eq!(python_str(at("2026-11-23T10:00:00Z")), "2026-11-23 10:00:00+00:00");
        assert_eq!(python_str(at("2026-11-23T10:00:00.5Z")), "2026-11-23 10:00:00.500000+00:00");
    }
}
