//! Background services: what `prefect-server` (by default) and
//! `prefect-server services` run besides the API.
//!
//! Today: the events projector, the relay to the broker, and events
//! retention. (Scheduler, late runs and the other Prefect services come with
//! the deployments work.)

pub mod leader;
pub mod retention;

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
    set.spawn(run_projector(db.clone(), projected.clone()));
    set.spawn(run_relay(db.clone(), broker, projected));
    set.spawn(retention::run(db.clone(), settings.events_retention));
    tracing::info!("background services started: events projector, event relay, events retention");
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
