//! `firedrill-agent`: the node agent, run by a DaemonSet (see the crate README).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use firedrill_agent::{Agent, Cluster, Executor, ProcFs, revert_due};
use tokio::signal::unix::{SignalKind, signal};

/// Applies and reverts this node's firedrill Injections.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// This node's name (from the downward API: spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    node: String,
    /// firedrill's own namespace (from the downward API: metadata.namespace): the only one
    /// whose Injections the agent follows, and never a target.
    #[arg(long, env = "POD_NAMESPACE")]
    namespace: String,
    /// The crash journal: a hostPath directory, so it outlives the agent's pod.
    #[arg(
        long,
        env = "FIREDRILL_JOURNAL_DIR",
        default_value = "/var/lib/firedrill-agent/journal"
    )]
    journal_dir: PathBuf,
    /// The kubelet's --root-dir, mounted at the same path.
    #[arg(long, env = "KUBELET_ROOT_DIR", default_value = firedrill_agent::volume::DEFAULT_KUBELET_ROOT)]
    kubelet_root: PathBuf,
    /// The host's /proc (the pod runs with hostPID).
    #[arg(long, default_value = "/proc")]
    proc: PathBuf,
}

async fn shutdown() {
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "no SIGTERM handler; only Ctrl-C stops the agent");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let exec = match Executor::new(
        &args.journal_dir,
        &args.kubelet_root,
        ProcFs::new(&args.proc),
    ) {
        Ok(exec) => exec,
        Err(e) => {
            tracing::error!(category = e.category(), error = %e, "cannot start");
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing::info!(node = %args.node, namespace = %args.namespace, journal = %args.journal_dir.display(), "firedrill-agent starting");
    // Until there is a client, the journal's expiries are still kept.
    let client = loop {
        match kube::Client::try_default().await {
            Ok(client) => break client,
            Err(e) => {
                tracing::warn!(category = "kube", error = %e, "no API client yet; reverting only what expires");
                revert_due(&exec);
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    let cluster = Cluster::new(client, args.node.clone(), args.namespace);
    let agent = Agent::new(args.node, exec, cluster);
    match agent.run(shutdown()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(category = e.category(), error = %e, "stopped with faults still recorded");
            std::process::ExitCode::FAILURE
        }
    }
}
