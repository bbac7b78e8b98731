//! `firedrill-operator`: the Experiment, GameDay and DrillSchedule controllers, with leader
//! election and metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use firedrill_core::api::Heartbeat;
use firedrill_operator::lease::LeaseConfig;
use firedrill_operator::metrics::{self, Metrics};
use firedrill_operator::reconcile::Context;
use firedrill_operator::{controllers, inventory};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

/// firedrill's Kubernetes operator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where /metrics and /healthz are served.
    #[arg(long, env = "FIREDRILL_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// The operator's own namespace: never a target, and where the leader Lease lives.
    #[arg(long, env = "POD_NAMESPACE", default_value = "firedrill-system")]
    namespace: String,
    /// This replica's name in the Lease and in Events.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// The leader Lease's name.
    #[arg(long, default_value = "firedrill-operator")]
    lease_name: String,
    /// Seconds a leader's lease lasts without renewal.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
    /// Watch only this namespace's Experiments (default: all namespaces).
    #[arg(long, env = "FIREDRILL_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Watch only Experiments, GameDays and DrillSchedules matching this label selector,
    /// e.g. `!firedrill.dev/test` (a game day's Experiments carry its labels).
    #[arg(long, env = "FIREDRILL_EXPERIMENT_SELECTOR")]
    experiment_selector: Option<String>,
    /// Reconciliations each controller runs at once: bounds what the operator has in
    /// flight at the API server (kube-rs has no client-side QPS limit).
    #[arg(long, env = "FIREDRILL_MAX_CONCURRENT_RECONCILES",
          default_value_t = firedrill_operator::requeue::CONCURRENCY,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    max_concurrent_reconciles: u16,
    /// Run without leader election (one replica only).
    #[arg(long)]
    no_leader_election: bool,
    /// The dead man's switch: agents revert a held fault once the leader Lease has not
    /// been renewed for this many seconds (while the API server answers them), and at most
    /// one 2 s read later: the default 8 ends an orphaned fault within 10 s. Needs leader
    /// election; without it faults end at their duration only.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(2..=600))]
    heartbeat_timeout_seconds: u32,
}

fn identity(args: &Args) -> String {
    args.identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("firedrill-operator-{}", std::process::id()))
}

async fn shutdown_signal(tx: watch::Sender<bool>) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
    tx.send_replace(true);
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let identity = identity(&args);
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "no Kubernetes client configuration");
            return std::process::ExitCode::FAILURE;
        }
    };
    let metrics = Arc::new(Metrics::default());
    let ctx = match Context::new(client, metrics.clone(), &args.namespace, &identity) {
        Ok(mut ctx) => {
            ctx.watch_namespace = args.watch_namespace.clone();
            ctx.experiment_selector = args.experiment_selector.clone();
            ctx.concurrency = args.max_concurrent_reconciles;
            ctx.heartbeat = (!args.no_leader_election).then(|| Heartbeat {
                lease: args.lease_name.clone(),
                timeout_seconds: args.heartbeat_timeout_seconds,
            });
            Arc::new(ctx)
        }
        Err(e) => {
            tracing::error!(error = %e, "could not start");
            return std::process::ExitCode::FAILURE;
        }
    };
    let server = tokio::spawn(metrics::serve(args.metrics_addr, metrics));
    // The gauges' stores, on every replica: a standby reports faults past expiry too.
    let inventory = tokio::spawn(inventory::run(ctx.clone()));
    let (shutdown_tx, shutdown) = watch::channel(false);
    tokio::spawn(shutdown_signal(shutdown_tx));
    tracing::info!(%identity, namespace = %args.namespace, "firedrill-operator starting");
    if args.no_leader_election {
        ctx.metrics.leader.set(1);
        let mut stop = shutdown.clone();
        controllers::run(ctx, async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    } else {
        let mut lease = LeaseConfig::new(&args.namespace, &args.lease_name, &identity);
        lease.lease_duration = Duration::from_secs(args.lease_duration.max(3));
        lease.renew_deadline = lease.lease_duration * 2 / 3;
        lease.retry_period = (lease.lease_duration / 7).max(Duration::from_secs(1));
        controllers::run_with_election(ctx, lease, shutdown).await;
    }
    server.abort();
    inventory.abort();
    std::process::ExitCode::SUCCESS
}
