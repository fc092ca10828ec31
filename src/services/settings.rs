//! The background services' settings, under Prefect's own names
//! (`PREFECT_SERVER_SERVICES_*`) and defaults.

use std::time::Duration;

/// Intervals and bounds of the scheduler, late-runs, foreman and related loops.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// `PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED` (true).
    pub scheduler_enabled: bool,
    /// `..._SCHEDULER_LOOP_SECONDS` (60).
    pub scheduler_loop: Duration,
    /// `..._SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS` (5).
    pub scheduler_recent_loop: Duration,
    /// `..._SCHEDULER_DEPLOYMENT_BATCH_SIZE` (100).
    pub scheduler_batch_size: i64,
    /// `..._SCHEDULER_MAX_RUNS` (100) / `..._MIN_RUNS` (3).
    pub scheduler_max_runs: usize,
    pub scheduler_min_runs: usize,
    /// `..._SCHEDULER_MAX_SCHEDULED_TIME` (100 days) / `..._MIN_SCHEDULED_TIME` (1 hour).
    pub scheduler_max_time: Duration,
    pub scheduler_min_time: Duration,
    /// `PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED` (true), `..._LOOP_SECONDS` (5),
    /// `..._AFTER_SECONDS` (15).
    pub late_runs_enabled: bool,
    pub late_runs_loop: Duration,
    pub late_runs_after: Duration,
    /// `PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED` (true), `..._LOOP_SECONDS` (5).
    pub pause_expirations_enabled: bool,
    pub pause_expirations_loop: Duration,
    /// `PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_ENABLED` (true),
    /// `..._LOOP_SECONDS` (20), `..._CANCELLING_TIMEOUT_SECONDS` (300).
    pub cancellation_cleanup_enabled: bool,
    pub cancellation_cleanup_loop: Duration,
    pub cancelling_timeout: Duration,
    /// `PREFECT_SERVER_SERVICES_FOREMAN_ENABLED` (true), `..._LOOP_SECONDS` (15),
    /// `..._INACTIVITY_HEARTBEAT_MULTIPLE` (3),
    /// `..._FALLBACK_HEARTBEAT_INTERVAL_SECONDS` (30),
    /// `..._DEPLOYMENT_LAST_POLLED_TIMEOUT_SECONDS` (60),
    /// `..._WORK_QUEUE_LAST_POLLED_TIMEOUT_SECONDS` (60).
    pub foreman_enabled: bool,
    pub foreman_loop: Duration,
    pub foreman_heartbeat_multiple: i64,
    pub foreman_fallback_heartbeat: Duration,
    pub foreman_deployment_timeout: Duration,
    pub foreman_queue_timeout: Duration,
    /// Zombie runs (not a Prefect setting: Prefect leaves this to a user
    /// automation). `PREFECT_SERVER_SERVICES_ZOMBIE_RUNS_ENABLED` (true),
    /// `..._LOOP_SECONDS` (20), `..._HEARTBEAT_TIMEOUT_SECONDS` (90): a RUNNING
    /// flow run that has sent heartbeats and then none for this long is CRASHED.
    pub zombie_runs_enabled: bool,
    pub zombie_runs_loop: Duration,
    pub zombie_heartbeat_timeout: Duration,
    /// `PREFECT_SERVER_SERVICES_REPOSSESSOR_ENABLED` (true), `..._LOOP_SECONDS`
    /// (15): deletes expired concurrency leases.
    pub repossessor_enabled: bool,
    pub repossessor_loop: Duration,
    /// `PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED` (true): automations'
    /// triggers and actions (`automations::service`).
    pub triggers_enabled: bool,
    /// `PREFECT_SERVER_TASKS_TAG_CONCURRENCY_SLOT_WAIT_SECONDS` (10): the
    /// longest retry wait a full `tag:*` limit asks for.
    pub tag_concurrency_slot_wait: Duration,
    /// `PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS` (30):
    /// the same for other limits.
    pub maximum_concurrency_slot_wait: Duration,
}

const P: &str = "PREFECT_SERVER_SERVICES_";

impl ServiceSettings {
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let flag = |name: &str| -> Result<bool, String> {
            let key = format!("{P}{name}");
            match get(&key).map(|v| v.trim().to_lowercase()) {
                None => Ok(true),
                Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(true),
                Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
                Some(v) => Err(format!("{key}: {v:?} is not a boolean")),
            }
        };
        let secs = |name: &str, default: &str| -> Result<Duration, String> {
            let key = format!("{P}{name}");
            let raw = get(&key).unwrap_or_else(|| default.to_owned());
            crate::config::parse_duration(&raw).ok_or_else(|| format!("{key}: {raw:?} is not a duration"))
        };
        let full_secs = |key: &str, default: &str| -> Result<Duration, String> {
            let raw = get(key).unwrap_or_else(|| default.to_owned());
            crate::config::parse_duration(&raw).ok_or_else(|| format!("{key}: {raw:?} is not a duration"))
        };
        let int = |name: &str, default: i64| -> Result<i64, String> {
            let key = format!("{P}{name}");
            match get(&key) {
                None => Ok(default),
                Some(v) => v.trim().parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| format!("{key}: {v:?} is not a non-negative integer")),
            }
        };
        Ok(ServiceSettings {
            scheduler_enabled: flag("SCHEDULER_ENABLED")?,
            scheduler_loop: secs("SCHEDULER_LOOP_SECONDS", "60")?,
            scheduler_recent_loop: secs("SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS", "5")?,
            scheduler_batch_size: int("SCHEDULER_DEPLOYMENT_BATCH_SIZE", 100)?.max(1),
            scheduler_max_runs: int("SCHEDULER_MAX_RUNS", 100)? as usize,
            scheduler_min_runs: int("SCHEDULER_MIN_RUNS", 3)? as usize,
            scheduler_max_time: secs("SCHEDULER_MAX_SCHEDULED_TIME", "P100D")?,
            scheduler_min_time: secs("SCHEDULER_MIN_SCHEDULED_TIME", "PT1H")?,
            late_runs_enabled: flag("LATE_RUNS_ENABLED")?,
            late_runs_loop: secs("LATE_RUNS_LOOP_SECONDS", "5")?,
            late_runs_after: secs("LATE_RUNS_AFTER_SECONDS", "15")?,
            pause_expirations_enabled: flag("PAUSE_EXPIRATIONS_ENABLED")?,
            pause_expirations_loop: secs("PAUSE_EXPIRATIONS_LOOP_SECONDS", "5")?,
            cancellation_cleanup_enabled: flag("CANCELLATION_CLEANUP_ENABLED")?,
            cancellation_cleanup_loop: secs("CANCELLATION_CLEANUP_LOOP_SECONDS", "20")?,
            cancelling_timeout: secs("CANCELLATION_CLEANUP_CANCELLING_TIMEOUT_SECONDS", "300")?,
            foreman_enabled: flag("FOREMAN_ENABLED")?,
            foreman_loop: secs("FOREMAN_LOOP_SECONDS", "15")?,
            foreman_heartbeat_multiple: int("FOREMAN_INACTIVITY_HEARTBEAT_MULTIPLE", 3)?,
            foreman_fallback_heartbeat: secs("FOREMAN_FALLBACK_HEARTBEAT_INTERVAL_SECONDS", "30")?,
            foreman_deployment_timeout: secs("FOREMAN_DEPLOYMENT_LAST_POLLED_TIMEOUT_SECONDS", "60")?,
            foreman_queue_timeout: secs("FOREMAN_WORK_QUEUE_LAST_POLLED_TIMEOUT_SECONDS", "60")?,
            zombie_runs_enabled: flag("ZOMBIE_RUNS_ENABLED")?,
            zombie_runs_loop: secs("ZOMBIE_RUNS_LOOP_SECONDS", "20")?,
            zombie_heartbeat_timeout: secs("ZOMBIE_RUNS_HEARTBEAT_TIMEOUT_SECONDS", "90")?,
            repossessor_enabled: flag("REPOSSESSOR_ENABLED")?,
            repossessor_loop: secs("REPOSSESSOR_LOOP_SECONDS", "15")?,
            triggers_enabled: flag("TRIGGERS_ENABLED")?,
            tag_concurrency_slot_wait: full_secs("PREFECT_SERVER_TASKS_TAG_CONCURRENCY_SLOT_WAIT_SECONDS", "10")?,
            maximum_concurrency_slot_wait: full_secs("PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS", "30")?,
        })
    }
}

impl ServiceSettings {
    /// The retry-wait bounds of concurrency limits.
    pub fn concurrency_waits(&self) -> crate::orchestration::concurrency_limits::WaitSettings {
        crate::orchestration::concurrency_limits::WaitSettings {
            tag_max_wait: self.tag_concurrency_slot_wait.as_secs_f64(),
            max_wait: self.maximum_concurrency_slot_wait.as_secs_f64(),
        }
    }
}
