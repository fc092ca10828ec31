//! Logging set-up: one `tracing` subscriber for the process.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` overrides the configured level.
pub fn init(default_directive: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_directive},sqlx=warn,tower_http=warn")));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).try_init();
}
