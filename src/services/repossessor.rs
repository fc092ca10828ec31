//! The repossessor (Prefect's `monitor_expired_leases`): deletes concurrency
//! leases whose holders stopped renewing them. Their slots are free from the
//! moment they expire (a limit only counts live leases); this pass records
//! the end of each lease in the log and the limit's average occupancy.

use crate::commands::concurrency_limits::revoke_expired;
use crate::config::Settings;
use crate::db::Db;

pub async fn run(db: Db, settings: Settings) {
    let waits = settings.services.concurrency_waits();
    let mut tick = tokio::time::interval(settings.services.repossessor_loop);
    loop {
        tick.tick().await;
        match revoke_expired(&db, 500, waits).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(leases = n, "revoked expired concurrency leases"),
            Err(e) => tracing::warn!(error = %e, "repossessor pass failed"),
        }
    }
}
