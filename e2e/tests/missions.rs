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
    E2E_LABEL, agent_image, chains_in_pod, chains_on_node, delivering, eventually,
    firedrill_and_talk, nodes, note, talk_namespace, talk_sli, with_temp_ns,
};
use firedrill_core::api::{Experiment, ExperimentStatus, Injection, Phase, Verdict};
use firedrill_core::manifest::{self, Manifest};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use tokio::sync::Mutex;

const ZONE: &str = "topology.kubernetes.io/zone";

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

/// The catalog's Experiment `file`, moved into `ns` and pointed at talk in `talk_ns`.
fn catalog_experiment(file: &str, ns: &str, talk_ns: &str) -> Experiment {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../experiments")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    // The catalog addresses talk in namespace talk: the probes' URLs and the target.
    let text = text
        .replace(".talk:", &format!(".{talk_ns}:"))
        .replace("namespace: talk\n", &format!("namespace: {talk_ns}\n"));
    let mut e = match manifest::load_str(&text)
        .unwrap_or_else(|p| panic!("{}: {p:?}", path.display()))
        .into_iter()
        .next()
    {
        Some(Manifest::Experiment(e)) => *e,
        other => panic!("{}: not an Experiment: {other:?}", path.display()),
    };
    e.metadata.namespace = Some(ns.to_owned());
    e.spec.target.namespaces = vec![talk_ns.to_owned()];
    // A deployed operator leaves `firedrill.dev/test` Experiments to the operator's own
    // tests; these are for it.
    let labels = e.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.remove("firedrill.dev/test");
    labels.insert(E2E_LABEL.into(), file.trim_end_matches(".yaml").into());
    e
}

/// Pods of talk's namespace, running or not (not hostNetwork ones).
async fn talk_pods(client: &Client) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &talk_namespace());
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.host_network) != Some(true))
        .collect()
}

fn running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

fn zone_of(nodes: &[Node], pod: &Pod) -> Option<String> {
    let node = pod.spec.as_ref()?.node_name.as_deref()?;
    nodes
        .iter()
        .find(|n| n.name_any() == node)
        .and_then(|n| n.labels().get(ZONE).cloned())
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
    // Steady state first: a fault on a talk that is not delivering proves nothing.
    let sli = eventually(Duration::from_secs(240), Duration::from_secs(2), || async {
        talk_sli(&client).await.filter(delivering)
    })
    .await;
    let Some(sli) = sli else {
        panic!(
            "talk is not delivering in 240 s: {:?}",
            talk_sli(&client).await
        );
    };
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
                let in_zone = |p: &&Pod| zone_of(&nodes, p).as_deref() == Some(zone);
                let before = restarts(
                    &pods_before
                        .iter()
                        .filter(in_zone)
                        .cloned()
                        .collect::<Vec<_>>(),
                );
                let after = restarts(
                    &talk_pods(&client)
                        .await
                        .iter()
                        .filter(in_zone)
                        .cloned()
                        .collect::<Vec<_>>(),
                );
                note(format!(
                    "{test}: restarts in {zone}: before {before:?}, after {after:?}"
                ));
                let killed = after
                    .iter()
                    .filter(|(p, n)| before.get(*p).is_none_or(|b| *n > b))
                    .count();
                assert!(
                    killed > 0,
                    "no talk container in {zone} was killed: before {before:?}, after {after:?}"
                );
            }
            Evidence::RestartsOf(key, value) => {
                let selected = |p: &&Pod| p.labels().get(key).map(String::as_str) == Some(value);
                let before = restarts(
                    &pods_before
                        .iter()
                        .filter(selected)
                        .cloned()
                        .collect::<Vec<_>>(),
                );
                let after = restarts(
                    &talk_pods(&client)
                        .await
                        .iter()
                        .filter(selected)
                        .cloned()
                        .collect::<Vec<_>>(),
                );
                note(format!(
                    "{test}: restarts of {key}={value}: before {before:?}, after {after:?}"
                ));
                assert!(!before.is_empty(), "no pod with {key}={value} in {talk_ns}");
                let killed = after
                    .iter()
                    .filter(|(p, n)| before.get(*p).is_none_or(|b| *n > b))
                    .count();
                assert!(
                    killed > 0,
                    "no {key}={value} container was killed: before {before:?}, after {after:?}"
                );
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

fn report(test: &str, t0: Instant, status: &ExperimentStatus) {
    note(format!(
        "{test}: Completed after {:.1}s: verdict {:?}, reason {:?}, time to impact {:?}s, time to recover {:?}s, messages lost {:?}, duplicated {:?}; injected {:?}, reverted {:?}, recovered {:?}",
        t0.elapsed().as_secs_f64(),
        status.verdict,
        status.reason,
        status.time_to_impact_seconds,
        status.time_to_recover_seconds,
        status.messages_lost,
        status.messages_duplicated,
        status.injected_at,
        status.reverted_at,
        status.recovered_at,
    ));
    // The benchmark figures of issue 5: apply-to-effective and end-to-reverted.
    if let (Some(asked), Some(effective)) = (status.inject_requested_at, status.injected_at) {
        note(format!(
            "BENCH {test}: fault effective {} ms after it was asked for",
            (effective - asked).num_milliseconds()
        ));
    }
    if let (Some(asked), Some(reverted)) = (status.revert_requested_at, status.reverted_at) {
        note(format!(
            "BENCH {test}: reverted {} ms after it was asked for",
            (reverted - asked).num_milliseconds()
        ));
    }
}

/// No Injection of experiment `uid` anywhere, no firedrill chain on any node nor in any
/// running talk pod's sandbox.
async fn nothing_left(
    client: &Client,
    test: &str,
    ns: &str,
    uid: &str,
    nodes: &[Node],
    image: &str,
    t0: Instant,
) {
    let injections: Api<Injection> = Api::all(client.clone());
    let lp = ListParams::default().labels(&format!("firedrill.dev/experiment-uid={uid}"));
    let left = eventually(Duration::from_secs(60), Duration::from_secs(1), || async {
        let items = injections.list(&lp).await.ok()?.items;
        items.is_empty().then_some(())
    })
    .await;
    assert!(
        left.is_some(),
        "Injections left: {:?}",
        injections.list(&lp).await.map(|l| l
            .items
            .iter()
            .map(|i| i.name_any())
            .collect::<Vec<_>>())
    );
    let in_ns: Api<Injection> = Api::namespaced(client.clone(), ns);
    assert!(
        in_ns
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    for node in nodes {
        let chains = chains_on_node(client, ns, &node.name_any(), image).await;
        assert!(
            chains.is_empty(),
            "node {} still has {chains:?}",
            node.name_any()
        );
    }
    // Pods replaced by the fault may still be starting: wait for them to run first.
    let pods = eventually(Duration::from_secs(180), Duration::from_secs(2), || async {
        let pods = talk_pods(client).await;
        pods.iter().all(running).then_some(pods)
    })
    .await
    .expect("talk's pods all running again within 180 s");
    let mut tasks = tokio::task::JoinSet::new();
    for pod in pods {
        let client = client.clone();
        let image = image.to_owned();
        tasks.spawn(async move {
            let chains = chains_in_pod(&client, &pod, &image).await;
            (pod.name_any(), chains)
        });
    }
    let mut checked = 0;
    while let Some(result) = tasks.join_next().await {
        let (pod, chains) = result.unwrap();
        assert!(chains.is_empty(), "pod {pod} still has {chains:?}");
        checked += 1;
    }
    note(format!(
        "{test}: no Injection left, no firedrill chain on {} nodes and {checked} talk pods ({:.1}s in all)",
        nodes.len(),
        t0.elapsed().as_secs_f64()
    ));
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
