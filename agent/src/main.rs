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
    #[arg(long, env = "NODE_NAME", required_unless_present = "check_heartbeat")]
    node: Option<String>,
    /// firedrill's own namespace (from the downward API: metadata.namespace): the only one
    /// whose Injections the agent follows, and never a target.
    #[arg(
        long,
        env = "POD_NAMESPACE",
        required_unless_present = "check_heartbeat"
    )]
    namespace: Option<String>,
    /// The file the loop stamps after every pass (an emptyDir of the pod).
    #[arg(long, env = "FIREDRILL_HEARTBEAT_FILE", default_value = firedrill_agent::heartbeat::DEFAULT_PATH)]
    heartbeat_file: PathBuf,
    /// The liveness probe: exit 0 if the heartbeat is fresh, 1 (saying why) if the loop
    /// has not stamped it for 120 s or it is missing.
    #[arg(long)]
    check_heartbeat: bool,
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
    if args.check_heartbeat {
        let stale_after = firedrill_agent::heartbeat::STALE_AFTER;
        return match firedrill_agent::heartbeat::check(
            &args.heartbeat_file,
            std::time::SystemTime::now(),
            stale_after,
        ) {
            Ok(age) => {
                println!("alive: the loop beat {}s ago", age.as_secs());
                std::process::ExitCode::SUCCESS
            }
            Err(why) => {
                println!("{why}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let (Some(node), Some(namespace)) = (args.node.clone(), args.namespace.clone()) else {
        tracing::error!("--node and --namespace are required");
        return std::process::ExitCode::FAILURE;
    };
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
    tracing::info!(node = %node, namespace = %namespace, journal = %args.journal_dir.display(), "firedrill-agent starting");
    // Until there is a client, the journal's expiries are still kept.
    let client = loop {
        match kube::Client::try_default().await {
            Ok(client) => break client,
            Err(e) => {
                tracing::warn!(category = "kube", error = %e, "no API client yet; reverting only what expires");
                revert_due(&exec);
                let _ = firedrill_agent::heartbeat::beat(&args.heartbeat_file);
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    let cluster = Cluster::new(client, node.clone(), namespace);
    let agent = Agent::new(node, exec, cluster).with_heartbeat(&args.heartbeat_file);
    // Alive from the start: the first pass may wait for the API server.
    if let Err(e) = firedrill_agent::heartbeat::beat(&args.heartbeat_file) {
        tracing::warn!(path = %args.heartbeat_file.display(), error = %e, "cannot stamp the heartbeat");
    }
    match agent.run(shutdown()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(category = e.category(), error = %e, "stopped with faults still recorded");
            std::process::ExitCode::FAILURE
        }
    }
}
