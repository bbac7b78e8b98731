//! A weakened talk makes the matching experiment fail: with a single Prometheus
//! (`charts/talk/ci/weak-single-prometheus-values.yaml`), the ops-tool outage of zone-a
//! leaves nobody able to query metrics, and the experiment must say so. A firedrill that
//! passes everything proves nothing.
//!
//! The test upgrades the deployed talk release in place (helm, `--reuse-values`) and puts
//! the second Prometheus back however it ends. `HELM` names the helm binary (default: the
//! one scripts/lint-charts.sh builds).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    agent_image, catalog_experiment, completed, eventually_every, firedrill_and_talk, nodes, note,
    nothing_left, report, talk_delivering, talk_namespace, with_temp_ns,
};
use firedrill_core::api::{Experiment, Verdict};
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::PostParams;

fn helm() -> PathBuf {
    std::env::var_os("HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/firedrill/helm-v3.22.0/helm"))
}

/// `helm upgrade talk` with `--reuse-values` and `prometheus.replicas=N`. Not `--wait`:
/// that waits for every pod of the release, and a NATS replica rebuilt after a disk loss
/// can take minutes to be ready again, which is not what this test is about.
fn prometheus_replicas(n: u32) -> Result<(), String> {
    let chart = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/talk");
    let out = Command::new(helm())
        .args(["upgrade", "talk"])
        .arg(&chart)
        .args([
            "-n",
            &talk_namespace(),
            "--reuse-values",
            "--wait",
            "--timeout",
            "4m",
        ])
        .args(["--set", &format!("prometheus.replicas={n}")])
        .output()
        .map_err(|e| format!("{}: {e}", helm().display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Puts the second Prometheus back when dropped, whatever the test did.
struct Strengthen;

impl Drop for Strengthen {
    fn drop(&mut self) {
        match prometheus_replicas(2) {
            Ok(()) => note("talk strengthened again: prometheus.replicas=2"),
            Err(e) => note(format!("COULD NOT strengthen talk again: {e}")),
        }
    }
}

#[tokio::test]
async fn a_single_prometheus_fails_the_ops_tool_outage() {
    let test = "a_single_prometheus_fails_the_ops_tool_outage";
    let Some(client) = firedrill_and_talk(test).await else {
        return;
    };
    let talk_ns = talk_namespace();
    talk_delivering(&client).await;
    let image = agent_image(&client).await;

    note(format!("{test}: weakening talk: prometheus.replicas=1"));
    let strengthen = Strengthen;
    prometheus_replicas(1).unwrap_or_else(|e| panic!("helm upgrade: {e}"));
    let services: Api<Service> = Api::namespaced(client.clone(), &talk_ns);
    let gone = eventually_every(Duration::from_secs(60), Duration::from_secs(1), || async {
        services
            .get_opt("prometheus-b")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(gone.is_some(), "prometheus-b is still there");

    with_temp_ns(&client, "weak", move |client, ns| async move {
        let nodes = nodes(&client).await;
        let exp = catalog_experiment("ops-tool-outage.yaml", &ns, &talk_namespace());
        let api: Api<Experiment> = Api::namespaced(client.clone(), &ns);
        let t0 = Instant::now();
        let created = api.create(&PostParams::default(), &exp).await.unwrap();
        let uid = kube::ResourceExt::uid(&created).unwrap();
        let name = kube::ResourceExt::name_any(&created);
        note(format!("{test}: created {ns}/{name}"));
        let done = completed(&api, &name).await;
        let status = done.status.unwrap_or_default();
        report(test, t0, &status);
        nothing_left(&client, test, &ns, &[uid], &nodes, &image, t0).await;
        assert_eq!(
            status.verdict,
            Some(Verdict::Failed),
            "a single Prometheus must fail the ops-tool outage (reason: {:?})",
            status.reason
        );
        let reason = status.reason.unwrap_or_default();
        assert!(
            reason.contains("metrics-queryable"),
            "failed for the wrong reason: {reason}"
        );
    })
    .await;
    drop(strengthen);
}
