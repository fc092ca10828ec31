//! Command line: the three roles of the one binary, plus maintenance.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "prefect-server", version, about = "An event-sourced Prefect 3 server")]
pub struct Cli {
    /// Serve the API only, without background services (scale these out).
    #[arg(long, global = false)]
    pub no_services: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the background services only (one active instance).
    Services,
    /// Apply the event-log migrations and create the read models, then exit.
    Migrate,
    /// Rebuild a read model from the event log.
    Replay {
        /// The read model to rebuild: `server` or `events`.
        model: String,
        /// Rebuild into a scratch copy and compare it with the live model
        /// instead of replacing it.
        #[arg(long)]
        verify: bool,
    },
}
