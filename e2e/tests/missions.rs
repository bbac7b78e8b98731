//! The four mission experiments of `experiments/` against talk, run by the deployed
//! operator and agents: each ends `Passed` with no acknowledged message lost, the fault was
//! really there while it held (seen from outside firedrill: nft chains in the pods'
//! sandboxes, containers killed, a disk replaced), and afterwards no Injection and no
//! firedrill nftables chain is left on any node or talk pod.
//!
//! Each Experiment lives in a namespace of the test's own; it targets talk's namespace
//! (`TALK_NAMESPACE`, default talk, which must be opted in) as the catalog's does, and its
//! probes read that namespace's talk-load and Prometheus. Injections are created beside the
//! Experiment, so deleting the test namespace reverts whatever a failed run left. The
//! missions share one talk, so they run one at a time whatever the test threads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{
    agent_image, catalog_experiment, chains_in_pod, eventually, firedrill_and_talk, nodes, note,
    nothing_left, report, running, talk_delivering, talk_namespace, talk_pods, with_temp_ns,
    zone_of,
};
use firedrill_core::api::{Experiment, Phase, Verdict};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use tokio::sync::Mutex;

/// One mission at a time: they all disturb the same talk.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// What shows, from outside firedrill, that a mission's fault took effect.
#[derive(Clone, Copy, Debug)]
enum Evidence {
    /// While it holds, a talk pod in this zone has firedrill chains in its sandbox.
    ChainsInZonePod(&'static str),
    /// Over the run, the containers of talk's pods in this zone were killed (restarts).
    RestartsInZone(&'static str),
    /// Over the run, this pod and its claim `data-<pod>` were replaced (new uids).
    PodAndClaimReplaced(&'static str),
    /// Over the run, the containers of the pods with this label were killed.
    RestartsOf(&'static str, &'static str),
}

/// Container restarts per pod name (all containers, ephemeral ones aside).
fn restarts(pods: &[Pod]) -> BTreeMap<String, i32> {
    pods.iter()
        .map(|p| {
            let n = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum());
            (p.name_any(), n)
        })
        .collect()
}

/// Some container of the pods `which` selects restarted since `before` (the kubelet
/// reports a restart a few seconds after it, hence the wait).
async fn killed_among(
    client: &Client,
    test: &str,
    what: &str,
    before: &[Pod],
    which: impl Fn(&Pod) -> bool,
) {
    let count = |pods: &[Pod]| {
        restarts(
            &pods
                .iter()
                .filter(|p| which(p))
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    let before = count(before);
    assert!(!before.is_empty(), "no talk pod of {what} before the fault");
    let after = eventually(Duration::from_secs(30), Duration::from_secs(2), || async {
        let after = count(&talk_pods(client).await);
        after
            .iter()
            .any(|(p, n)| before.get(p).is_none_or(|b| n > b))
            .then_some(after)
    })
    .await;
    note(format!(
        "{test}: restarts of {what}: before {before:?}, after {after:?}"
    ));
    assert!(
        after.is_some(),
        "no container of {what} was killed: before {before:?}"
    );
}

/// The uids of pod `name` and of its claim `data-<name>` in talk's namespace.
async fn pod_and_claim(client: &Client, name: &str) -> (Option<String>, Option<String>) {
    let ns = talk_namespace();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let pod = pods.get_opt(name).await.unwrap().and_then(|p| p.uid());
    let claim = claims
        .get_opt(&format!("data-{name}"))
        .await
        .unwrap()
        .and_then(|c| c.uid());
    (pod, claim)
}

/// Runs the catalog's `file` against talk and checks everything a mission must show.
async fn mission(test: &'static str, file: &'static str, evidence: Evidence) {
    let Some(client) = firedrill_and_talk(test).await else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().await;
    let sli = talk_delivering(&client).await;
    note(format!("{test}: talk delivering: {sli}"));
    let image = agent_image(&client).await;

    with_temp_ns(&client, "mission", move |client, ns| async move {
        let talk_ns = talk_namespace();
        let nodes = nodes(&client).await;
        let pods_before = talk_pods(&client).await;
        let replaced_before = match evidence {
            Evidence::PodAndClaimReplaced(pod) => Some(pod_and_claim(&client, pod).await),
            _ => None,
        };
        let exp = catalog_experiment(file, &ns, &talk_ns);
        let name = exp.name_any();
        let api: Api<Experiment> = Api::namespaced(client.clone(), &ns);
        let t0 = Instant::now();
        let created = api.create(&PostParams::default(), &exp).await.unwrap();
        let uid = created.uid().unwrap();
        note(format!(
            "{test}: created {ns}/{name} (uid {uid}), targets {talk_ns}"
        ));

        // Follow the phases; while the fault holds, look for it where the evidence says.
        let mut phase = None;
        let mut seen_holding = false;
        let deadline = Duration::from_secs(480);
        let done = loop {
            assert!(
                t0.elapsed() < deadline,
                "{name} not Completed in {deadline:?}; last phase {phase:?}"
            );
            let e = api.get(&name).await.unwrap();
            let status = e.status.clone().unwrap_or_default();
            if phase != Some(status.phase) {
                note(format!(
                    "{test}: +{:5.1}s {:?}{}",
                    t0.elapsed().as_secs_f64(),
                    status.phase,
                    status
                        .reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ));
                phase = Some(status.phase);
            }
            if status.phase == Phase::Holding && !seen_holding {
                seen_holding = true;
                if let Evidence::ChainsInZonePod(zone) = evidence {
                    let pods = talk_pods(&client).await;
                    let pod = pods
                        .iter()
                        .find(|p| running(p) && zone_of(&nodes, p).as_deref() == Some(zone))
                        .unwrap_or_else(|| panic!("a running talk pod in {zone}"));
                    let chains = chains_in_pod(&client, pod, &image).await;
                    note(format!(
                        "{test}: while holding, {talk_ns}/{} has chains {chains:?}",
                        pod.name_any()
                    ));
                    assert!(!chains.is_empty(), "the fault is not in {}", pod.name_any());
                }
            }
            if status.phase == Phase::Completed {
                break e;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let status = done.status.unwrap();
        report(test, t0, &status);
        assert!(seen_holding, "the fault was never seen holding");

        // The fault was real.
        match evidence {
            Evidence::ChainsInZonePod(_) => {}
            Evidence::RestartsInZone(zone) => {
                let in_zone = |p: &Pod| zone_of(&nodes, p).as_deref() == Some(zone);
                killed_among(&client, test, zone, &pods_before, in_zone).await;
            }
            Evidence::RestartsOf(key, value) => {
                let selected = |p: &Pod| p.labels().get(key).map(String::as_str) == Some(value);
                killed_among(
                    &client,
                    test,
                    &format!("{key}={value}"),
                    &pods_before,
                    selected,
                )
                .await;
            }
            Evidence::PodAndClaimReplaced(pod) => {
                let before = replaced_before.unwrap();
                let after = pod_and_claim(&client, pod).await;
                note(format!(
                    "{test}: {pod} and data-{pod} uids: before {before:?}, after {after:?}"
                ));
                assert!(
                    before.0.is_some() && before.1.is_some(),
                    "{pod} or its claim missing before"
                );
                assert!(
                    after.0.is_some() && after.0 != before.0,
                    "pod {pod} was not replaced"
                );
                assert!(
                    after.1.is_some() && after.1 != before.1,
                    "claim data-{pod} was not replaced"
                );
            }
        }

        nothing_left(&client, test, &ns, &uid, &nodes, &image, t0).await;
        // The invariants above hold whatever the verdict; now the verdict itself.
        assert_eq!(
            status.verdict,
            Some(Verdict::Passed),
            "verdict (reason: {:?})",
            status.reason
        );
        assert_eq!(
            status.messages_lost.unwrap_or(0),
            0,
            "acknowledged messages lost"
        );
    })
    .await;
}

#[tokio::test]
async fn network_partition_passes_and_leaves_nothing() {
    mission(
        "network_partition_passes_and_leaves_nothing",
        "network-partition.yaml",
        Evidence::ChainsInZonePod("zone-a"),
    )
    .await;
}

#[tokio::test]
async fn zone_blackout_passes_and_leaves_nothing() {
    mission(
        "zone_blackout_passes_and_leaves_nothing",
        "zone-blackout.yaml",
        Evidence::RestartsInZone("zone-a"),
    )
    .await;
}

#[tokio::test]
async fn disk_loss_passes_and_leaves_nothing() {
    mission(
        "disk_loss_passes_and_leaves_nothing",
        "disk-loss.yaml",
        Evidence::PodAndClaimReplaced("nats-0"),
    )
    .await;
}

#[tokio::test]
async fn ops_tool_outage_passes_and_leaves_nothing() {
    mission(
        "ops_tool_outage_passes_and_leaves_nothing",
        "ops-tool-outage.yaml",
        Evidence::RestartsOf("firedrill.dev/ops-site", "zone-a"),
    )
    .await;
}
