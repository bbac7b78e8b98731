//! talk-load binary: parse flags, run, write the report, exit by verdict.

use clap::Parser;
use talk::load::{LoadConfig, run, run::write_report};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = LoadConfig::parse();
    let report_path = config.report.clone();
    let fail_on_loss = config.fail_on_loss;
    let result = run(config, talk::server::shutdown_signal(), |_| {}).await;
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(category = e.category(), "talk-load failed: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Err(e) = write_report(&report, &report_path) {
        tracing::error!(category = e.category(), "{e}");
        return std::process::ExitCode::FAILURE;
    }
    let t = &report.check.total;
    tracing::info!(
        acked = t.acked,
        lost = t.lost,
        duplicated = t.duplicated,
        unexpected = t.unexpected,
        out_of_order = t.out_of_order,
        complete = report.complete,
        "done"
    );
    if fail_on_loss && !report.passed() {
        return std::process::ExitCode::from(2);
    }
    std::process::ExitCode::SUCCESS
}
