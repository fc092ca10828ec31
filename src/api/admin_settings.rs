//! `GET /admin/settings`: this server's effective settings in the shape of
//! Prefect's `Settings` JSON (the UI's dashboard reads it). Only the
//! settings this server has are present; secret values are obfuscated as
//! Prefect obfuscates a `SecretStr`.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::AppState;
use crate::config::{BrokerKind, Settings};

pub async fn read_settings(State(state): State<AppState>) -> Json<Value> {
    Json(settings_json(&state.settings))
}

/// A duration as pydantic writes a `timedelta` (ISO 8601: `PT15S`, `P7D`,
/// `P1DT2H`).
fn iso_duration(d: Duration) -> String {
    let total = d.as_secs();
    let (days, rest) = (total / 86_400, total % 86_400);
    let (hours, minutes, seconds) = (rest / 3600, rest % 3600 / 60, rest % 60);
    let mut out = String::from("P");
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    let mut time = String::new();
    for (value, unit) in [(hours, 'H'), (minutes, 'M'), (seconds, 'S')] {
        if value > 0 {
            time.push_str(&format!("{value}{unit}"));
        }
    }
    if !time.is_empty() || days == 0 {
        out.push('T');
        out.push_str(if time.is_empty() { "0S" } else { &time });
    }
    out
}

fn secs(d: Duration) -> Value {
    json!(d.as_secs_f64())
}

/// The settings as Prefect's nested JSON.
pub fn settings_json(s: &Settings) -> Value {
    let v = &s.services;
    let service = |enabled: bool, every: Duration| json!({"enabled": enabled, "loop_seconds": secs(every)});
    let mut late_runs = service(v.late_runs_enabled, v.late_runs_loop);
    late_runs["after_seconds"] = json!(iso_duration(v.late_runs_after));
    let mut cancellation = service(v.cancellation_cleanup_enabled, v.cancellation_cleanup_loop);
    cancellation["cancelling_timeout_seconds"] = secs(v.cancelling_timeout);
    let broker = match s.broker {
        BrokerKind::Memory => "prefect.server.utilities.messaging.memory",
        BrokerKind::Nats => "nats",
    };
    json!({
        "home": s.home.display().to_string(),
        "server": {
            "logging_level": s.log_level.to_uppercase(),
            "api": {
                "host": s.host.to_string(),
                "port": s.port,
                "default_limit": s.default_limit,
                "csrf_protection_enabled": false,
            },
            "database": {"connection_url": "********", "sqlalchemy": {"pool_size": s.pool_size}},
            "events": {
                "retention_period": iso_duration(s.events_retention),
                "maximum_size_bytes": s.max_event_bytes,
                "messaging_broker": broker,
            },
            "flow_run_graph": {"max_nodes": s.max_flow_run_graph_nodes},
            "services": {
                "scheduler": {
                    "enabled": v.scheduler_enabled,
                    "loop_seconds": secs(v.scheduler_loop),
                    "deployment_batch_size": v.scheduler_batch_size,
                    "max_runs": v.scheduler_max_runs,
                    "min_runs": v.scheduler_min_runs,
                    "max_scheduled_time": iso_duration(v.scheduler_max_time),
                    "min_scheduled_time": iso_duration(v.scheduler_min_time),
                    "recent_deployments_loop_seconds": secs(v.scheduler_recent_loop),
                },
                "late_runs": late_runs,
                "pause_expirations": service(v.pause_expirations_enabled, v.pause_expirations_loop),
                "cancellation_cleanup": cancellation,
                "foreman": service(v.foreman_enabled, v.foreman_loop),
                "repossessor": service(v.repossessor_enabled, v.repossessor_loop),
                "triggers": {"enabled": v.triggers_enabled},
            },
            "ui": {
                "enabled": crate::web_ui::is_served(&s.ui),
                "v2_enabled": s.ui.v2_enabled,
                "api_url": s.ui.api_url,
                "serve_base": "/",
                "static_directory": s.ui.static_directory.as_ref().map(|d| d.display().to_string()),
                "show_promotional_content": false,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_pydantic_writes_timedeltas() {
        assert_eq!(iso_duration(Duration::from_secs(15)), "PT15S");
        assert_eq!(iso_duration(Duration::from_secs(90)), "PT1M30S");
        assert_eq!(iso_duration(Duration::from_secs(3600)), "PT1H");
        assert_eq!(iso_duration(Duration::from_secs(7 * 86_400)), "P7D");
        assert_eq!(iso_duration(Duration::from_secs(86_400 + 7200)), "P1DT2H");
        assert_eq!(iso_duration(Duration::ZERO), "PT0S");
    }

    #[test]
    fn the_defaults_read_as_prefects_and_the_database_url_is_hidden() {
        let settings = Settings::from_lookup(|k| (k == "PREFECT_API_DATABASE_CONNECTION_URL").then(|| "postgresql://u:secret@h/db".to_owned())).unwrap();
        let json = settings_json(&settings);
        assert_eq!(json["server"]["services"]["scheduler"]["loop_seconds"], 60.0);
        assert_eq!(json["server"]["services"]["late_runs"]["after_seconds"], "PT15S");
        assert_eq!(json["server"]["events"]["retention_period"], "P7D");
        assert_eq!(json["server"]["api"]["default_limit"], 200);
        assert!(!json.to_string().contains("secret"));
    }
}
