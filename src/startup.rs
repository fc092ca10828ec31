//! Wiring: connect the database, migrate, bind the listener, serve.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::cli::{Cli, Command};
use crate::config::Settings;
use crate::db::Db;

/// A bound, ready-to-serve API server.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Connects and migrates the database and binds the listener (port 0
    /// picks a free port; see [`Application::local_addr`]).
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let db = Db::connect(&settings.database, settings.pool_size).await?;
        db.migrate().await?;
        let listener = TcpListener::bind(settings.bind_addr())
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.bind_addr()))?;
        tracing::info!(database = %settings.database.redacted(), "database ready");
        Ok(Application { listener, state: AppState { db, settings: Arc::new(settings) } })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn db(&self) -> &Db {
        &self.state.db
    }

    /// Serves until ctrl-c / SIGTERM.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let addr = self.local_addr();
        tracing::info!("Prefect server API listening on http://{addr}/api");
        let app = api::router(self.state.clone());
        axum::serve(self.listener, app).with_graceful_shutdown(shutdown_signal()).await?;
        self.state.db.close().await;
        Ok(())
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Runs what the command line asked for.
pub async fn run_cli(cli: Cli, settings: Settings) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => {
            if !cli.no_services {
                tracing::info!("background services: none are implemented yet; serving the API only");
            }
            Application::build(settings).await?.run_until_stopped().await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Services) => {
            let db = Db::connect(&settings.database, settings.pool_size).await?;
            db.migrate().await?;
            tracing::info!("background services: none are implemented yet; waiting for shutdown");
            shutdown_signal().await;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Migrate) => {
            let db = Db::connect(&settings.database, settings.pool_size).await?;
            db.migrate().await?;
            println!("migrated {}", settings.database.redacted());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Replay { model, verify }) => {
            let db = Db::connect(&settings.database, settings.pool_size).await?;
            db.migrate().await?;
            crate::replay::run_cli(&db, &model, verify).await
        }
    }
}
