//! Wiring: connect the database, migrate, bind the listener, serve.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::api::{self, AppState};
use crate::cli::{Cli, Command};
use crate::commands::ingest_queue::IngestQueue;
use crate::config::Settings;
use crate::db::Db;

/// A bound, ready-to-serve API server.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    services: Option<JoinSet<()>>,
}

impl Application {
    /// Connects and migrates the database and binds the listener (port 0
    /// picks a free port; see [`Application::local_addr`]).
    pub async fn build(settings: Settings, with_services: bool) -> anyhow::Result<Application> {
        let db = Db::connect(&settings.database, settings.pool_size).await?;
        db.migrate().await?;
        let broker = crate::broker::from_settings(&settings).await?;
        let listener = TcpListener::bind(settings.bind_addr())
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.bind_addr()))?;
        tracing::info!(database = %settings.database.redacted(), broker = broker.name(), "database ready");
        let services = with_services.then(|| {
            let mut set = JoinSet::new();
            set.spawn(crate::services::run_as_leader(db.clone(), broker.clone(), settings.clone()));
            set
        });
        Ok(Application { listener, state: AppState { ingest: IngestQueue::start(db.clone()), db, settings: Arc::new(settings), broker, task_workers: Default::default() }, services })
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
        drop(self.services);
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
            Application::build(settings, !cli.no_services).await?.run_until_stopped().await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Services) => {
            let db = Db::connect(&settings.database, settings.pool_size).await?;
            db.migrate().await?;
            let broker = crate::broker::from_settings(&settings).await?;
            tokio::select! {
                _ = crate::services::run_as_leader(db.clone(), broker, settings) => {}
                _ = shutdown_signal() => {}
            }
            db.close().await;
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
