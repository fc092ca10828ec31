//! Late runs: a run still SCHEDULED (named "Scheduled") whose start time is
//! more than `late_runs_after` past becomes `Late`, as Prefect's
//! `monitor_late_runs` / `MarkLateRunsPolicy` do. The check repeats under the
//! run's stream lock, so a run a worker just claimed is left alone.

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use crate::api::error::ApiResult;
use crate::commands::flow_runs::{set_state_guarded, SetStateBody};
use crate::config::Settings;
use crate::db::Db;
use crate::orchestration::outcome::ProposedState;
use crate::orchestration::states::StateType;

/// The runs that look late at `cutoff`.
async fn overdue(db: &Db, cutoff: DateTime<Utc>) -> ApiResult<Vec<Uuid>> {
    let rows = sqlx::query(&db.q(
        "SELECT id FROM flow_run WHERE state_type = 'SCHEDULED' AND state_name = 'Scheduled' \
         AND next_scheduled_start_time <= $1 ORDER BY next_scheduled_start_time LIMIT 500",
    ))
    .bind(crate::time::fmt_ts(cutoff))
    .fetch_all(db.reader())
    .await?;
    Ok(rows.iter().filter_map(|r| r.try_get::<String, _>(0).ok()).filter_map(|s| Uuid::parse_str(&s).ok()).collect())
}

/// Marks every overdue run late; returns how many were marked.
pub async fn run_once(db: &Db, after: chrono::Duration) -> ApiResult<usize> {
    let cutoff = Utc::now() - after;
    let mut marked = 0;
    for id in overdue(db, cutoff).await? {
        let mut state = ProposedState {
            state_type: StateType::Scheduled,
            name: Some("Late".into()),
            message: None,
            data: None,
            state_details: Default::default(),
        };
        let guard = move |run: &crate::orchestration::flow_policy::FlowRunSnapshot| {
            run.state.as_ref().is_some_and(|s| s.state_type == StateType::Scheduled && s.name == "Scheduled")
                && run.next_scheduled_start_time.is_some_and(|t| t <= cutoff)
        };
        // Late keeps the run's scheduled time.
        let mut conn = db.reader().acquire().await?;
        let row = crate::server_model::flow_runs::read_flow_run_row(&mut conn, db.dialect, &id.to_string()).await?;
        drop(conn);
        let Some(row) = row else { continue };
        state.state_details.scheduled_time = crate::server_model::flow_runs::snapshot_from_row(&row).next_scheduled_start_time;
        let body = SetStateBody { state, force: true };
        if set_state_guarded(db, id, body, (0, 8, 4), guard).await?.is_some() {
            marked += 1;
        }
    }
    Ok(marked)
}

pub async fn run(db: Db, settings: Settings) {
    let s = settings.services.clone();
    let after = chrono::Duration::from_std(s.late_runs_after).unwrap_or_default();
    let mut tick = tokio::time::interval(s.late_runs_loop);
    loop {
        tick.tick().await;
        match run_once(&db, after).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(runs = n, "marked flow runs late"),
            Err(e) => tracing::warn!(error = %e, "late runs pass failed"),
        }
    }
}
