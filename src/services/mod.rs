//! Background services: what `prefect-server` (by default) and
//! `prefect-server services` run besides the API.
//!
//! The events projector, the relay to the broker, events retention, and
//! Prefect's orchestration services: scheduler, late runs, foreman.

pub mod foreman;
pub mod late_runs;
pub mod repossessor;
pub mod leader;
pub mod retention;
pub mod run_monitors;
pub mod scheduler;
pub mod settings;

use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::config::Settings;
use crate::db::Db;
use crate::events_model::service::{run_projector, run_relay};

/// Starts every background service; they stop when the returned set is dropped.
pub fn spawn_all(db: &Db, broker: Arc<dyn Broker>, settings: &Settings) -> JoinSet<()> {
    let mut set = JoinSet::new();
    let projected = Arc::new(Notify::new());
    // The relay publishes the projector's batches straight from memory.
    let recent = Arc::new(crate::events_model::handoff::RecentBatches::new());
    set.spawn(run_projector(db.clone(), projected.clone(), recent.clone()));
    set.spawn(run_relay(db.clone(), broker, projected, recent));
    set.spawn(retention::run(db.clone(), settings.events_retention));
    let mut names = vec!["events projector", "event relay", "events retention"];
    let s = &settings.services;
    if s.scheduler_enabled {
        set.spawn(scheduler::run(db.clone(), settings.clone()));
        names.push("scheduler");
    }
    if s.late_runs_enabled {
        set.spawn(late_runs::run(db.clone(), settings.clone()));
        names.push("late runs");
    }
    if s.foreman_enabled {
        set.spawn(foreman::run(db.clone(), settings.clone()));
        names.push("foreman");
    }
    if s.pause_expirations_enabled || s.cancellation_cleanup_enabled || s.zombie_runs_enabled {
        set.spawn(run_monitors::run(db.clone(), settings.clone()));
        names.push("run monitors (pause expirations, cancellation cleanup, zombie runs)");
    }
    if s.repossessor_enabled {
        set.spawn(repossessor::run(db.clone(), settings.clone()));
        names.push("repossessor");
    }
    if s.triggers_enabled {
        set.spawn(crate::automations::service::run(db.clone()));
        names.push("triggers");
    }
    tracing::info!(services = %names.join(", "), "background services started");
    set
}

/// Runs the services whenever this process is the leader (always on SQLite):
/// waits for leadership, runs, and on losing it stops and waits again.
pub async fn run_as_leader(db: Db, broker: Arc<dyn Broker>, settings: Settings) {
    loop {
        let leadership = match leader::Leadership::acquire(&settings).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot take part in leader election");
                return;
            }
        };
        let services = spawn_all(&db, broker.clone(), &settings);
        leadership.lost().await;
        drop(services);
    }
}
