//! The cluster-wide kill switch's pause: set by `stop-all`, lifted only by `resume`, kept on
//! firedrill's own Namespace ([`PAUSE_KEY`] as a label for `kubectl get ns -L` and as an
//! annotation saying who and why). The operator reads it: while it is there no Experiment
//! starts, running ones are aborted, GameDays stop and DrillSchedules skip their runs.

use std::process::ExitCode;

use firedrill_core::api::{PAUSE_KEY, pause_of};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::cluster::{ClusterArgs, ClusterError, Op, connect, runtime};

fn namespaces(client: &Client) -> Api<Namespace> {
    Api::all(client.clone())
}

/// Why firedrill in `namespace` is paused, if it is.
pub async fn read(client: &Client, namespace: &str) -> Result<Option<String>, ClusterError> {
    let ns = namespaces(client)
        .get(namespace)
        .await
        .map_err(|e| ClusterError::from_kube(e, &Op::new("get", "namespaces").name(namespace)))?;
    Ok(pause_of(ns.labels(), ns.annotations()))
}

/// Pauses firedrill in `namespace`, saying why.
pub async fn set(client: &Client, namespace: &str, why: &str) -> Result<(), ClusterError> {
    let patch = json!({"metadata": {
        "labels": {PAUSE_KEY: "true"},
        "annotations": {PAUSE_KEY: why},
    }});
    namespaces(client)
        .patch(namespace, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| ClusterError::from_kube(e, &Op::new("patch", "namespaces").name(namespace)))?;
    Ok(())
}

/// Lifts the pause in `namespace`; returns why it was paused (`None`: it was not).
pub async fn lift(client: &Client, namespace: &str) -> Result<Option<String>, ClusterError> {
    let was = read(client, namespace).await?;
    if was.is_some() {
        let patch = json!({"metadata": {
            "labels": {PAUSE_KEY: null},
            "annotations": {PAUSE_KEY: null},
        }});
        namespaces(client)
            .patch(namespace, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| {
                ClusterError::from_kube(e, &Op::new("patch", "namespaces").name(namespace))
            })?;
    }
    Ok(was)
}

/// The line `get` prints above its table while firedrill is paused.
pub fn banner(namespace: &str, why: &str) -> String {
    format!(
        "PAUSED: firedrill in {namespace} is paused cluster-wide ({why}); nothing starts until \
         `chaosctl resume`"
    )
}

/// `chaosctl resume`: lifts the pause `stop-all` set.
pub fn run_resume(cluster: &ClusterArgs) -> Result<ExitCode, ClusterError> {
    let namespace = cluster.firedrill_namespace();
    runtime()?.block_on(async {
        let (client, server) = connect(cluster).await?;
        match lift(&client, namespace).await? {
            Some(why) => println!(
                "resumed firedrill in {namespace} on {server} (it was paused: {why}); \
                 Experiments waiting in Pending start now, DrillSchedules run at their next time"
            ),
            None => println!("firedrill in {namespace} on {server} was not paused; nothing to do"),
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_says_why_and_how_to_lift_it() {
        let b = banner("firedrill-system", "stop-all by ana at 10:00:00Z");
        assert!(b.starts_with("PAUSED"));
        assert!(
            b.contains("stop-all by ana") && b.contains("chaosctl resume"),
            "{b}"
        );
    }
}
