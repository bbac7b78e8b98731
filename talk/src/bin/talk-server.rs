//! talk-server binary: parse flags, serve until SIGTERM.

use clap::Parser;
use talk::server::{ServerConfig, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = ServerConfig::parse();
    match run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(category = e.category(), "talk-server failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
