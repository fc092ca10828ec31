//! The `prefect-server` binary: parses the command line and hands over to
//! the library.

use clap::Parser;
use prefect_server::cli::Cli;

/// mimalloc instead of glibc malloc: replay and the projectors build and
/// drop many small JSON trees, and glibc's free path (consolidation) was a
/// third of a replay's CPU samples.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let settings = match prefect_server::config::Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("prefect-server: configuration error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    prefect_server::telemetry::init(settings.tracing_directive());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("prefect-server: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(prefect_server::startup::run_cli(cli, settings)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("prefect-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
