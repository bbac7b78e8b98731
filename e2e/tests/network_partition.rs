//! The network-partition mission (`experiments/network-partition.yaml`) against talk, run by
//! the deployed operator and agents: the verdict is `Passed`, the cut was really in the
//! pods' sandboxes while it held, and afterwards no Injection and no firedrill nftables
//! chain is left on any node or pod.
//!
//! The Experiment lives in a namespace of the test's own; it targets talk's namespace
//! (`TALK_NAMESPACE`, default talk, which must be opted in) as the catalog's does, and its
//! talk probes read that namespace's talk-load. Injections are created beside the
//! Experiment, so deleting the test namespace reverts whatever a failed run left.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{
    E2E_LABEL, agent_image, chains_in_pod, chains_on_node, delivering, eventually,
    firedrill_and_talk, nodes, note, talk_namespace, talk_sli, with_temp_ns,
};
use firedrill_core::api::{Experiment, Injection, Phase, Verdict};
use firedrill_core::manifest::{self, Manifest};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};

const ZONE: &str = "topology.kubernetes.io/zone";

/// The catalog's network partition, moved into `ns` and pointed at talk in `talk_ns`.
fn partition_experiment(ns: &str, talk_ns: &str) -> Experiment {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../experiments/network-partition.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    // The catalog addresses talk in namespace talk: the probes' URLs and the target.
    let text = text.replace(
        "http://talk-load.talk:",
        &format!("http://talk-load.{talk_ns}:"),
    );
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
    // tests; this one is for it.
    let labels = e.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.remove("firedrill.dev/test");
    labels.insert(E2E_LABEL.into(), "network-partition".into());
    e
}

/// Running pods of talk (not hostNetwork), by zone.
async fn talk_pods(client: &Client) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &talk_namespace());
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                && p.spec.as_ref().and_then(|s| s.host_network) != Some(true)
        })
        .collect()
}

#[tokio::test]
async fn network_partition_passes_and_leaves_nothing() {
    let test = "network_partition_passes_and_leaves_nothing";
    let Some(client) = firedrill_and_talk(test).await else {
        return;
    };
    // Steady state first: a partition on a talk that is not delivering proves nothing.
    let sli = eventually(Duration::from_secs(180), Duration::from_secs(2), || async {
        talk_sli(&client).await.filter(delivering)
    })
    .await;
    let Some(sli) = sli else {
        panic!(
            "talk is not delivering in 180 s: {:?}",
            talk_sli(&client).await
        );
    };
    note(format!("{test}: talk delivering: {sli}"));
    let image = agent_image(&client).await;

    with_temp_ns(&client, "partition", move |client, ns| async move {
        let talk_ns = talk_namespace();
        let exp = partition_experiment(&ns, &talk_ns);
        let name = exp.name_any();
        let api: Api<Experiment> = Api::namespaced(client.clone(), &ns);
        let t0 = Instant::now();
        let created = api.create(&PostParams::default(), &exp).await.unwrap();
        let uid = created.uid().unwrap();
        note(format!("{test}: created {ns}/{name} (uid {uid}), targets {talk_ns}"));

        // Follow the phases; while the fault holds, look for the cut in a zone-a pod.
        let nodes = nodes(&client).await;
        let zone_of = |node: &str| {
            nodes
                .iter()
                .find(|n| n.name_any() == node)
                .and_then(|n| n.labels().get(ZONE).cloned())
        };
        let mut phase = None;
        let mut seen_cut = None;
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
            if status.phase == Phase::Holding && seen_cut.is_none() {
                let pods = talk_pods(&client).await;
                let pod = pods
                    .iter()
                    .find(|p| {
                        p.spec
                            .as_ref()
                            .and_then(|s| s.node_name.as_deref())
                            .and_then(zone_of)
                            .as_deref()
                            == Some("zone-a")
                    })
                    .expect("a talk pod in zone-a");
                let chains = chains_in_pod(&client, pod, &image).await;
                note(format!(
                    "{test}: while holding, {}/{} has chains {chains:?}",
                    talk_ns,
                    pod.name_any()
                ));
                assert!(!chains.is_empty(), "the partition is not in {}", pod.name_any());
                seen_cut = Some(chains);
            }
            if status.phase == Phase::Completed {
                break e;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let status = done.status.unwrap();
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
        if let (Some(asked), Some(effective)) = (status.inject_requested_at, status.injected_at) {
            note(format!(
                "{test}: fault effective {} ms after it was asked for",
                (effective - asked).num_milliseconds()
            ));
        }
        if let (Some(asked), Some(reverted)) = (status.revert_requested_at, status.reverted_at) {
            note(format!(
                "{test}: reverted {} ms after it was asked for",
                (reverted - asked).num_milliseconds()
            ));
        }
        assert!(seen_cut.is_some(), "the fault was never seen holding");

        // No Injection of this experiment anywhere.
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
            injections
                .list(&lp)
                .await
                .map(|l| l.items.iter().map(|i| i.name_any()).collect::<Vec<_>>())
        );
        let in_ns: Api<Injection> = Api::namespaced(client.clone(), &ns);
        assert!(in_ns.list(&ListParams::default()).await.unwrap().items.is_empty());

        // No firedrill chain on any node, nor in any talk pod's sandbox.
        for node in &nodes {
            let chains = chains_on_node(&client, &ns, &node.name_any(), &image).await;
            assert!(chains.is_empty(), "node {} still has {chains:?}", node.name_any());
        }
        let pods = talk_pods(&client).await;
        let mut tasks = tokio::task::JoinSet::new();
        for pod in pods {
            let client = client.clone();
            let image = image.clone();
            tasks.spawn(async move {
                let chains = chains_in_pod(&client, &pod, &image).await;
                (pod.name_any(), chains)
            });
        }
        let mut checked = 0;
        while let Some(result) = tasks.join_next().await {
            let (pod, chains) = result.unwrap();
            assert!(chains.is_empty(), "pod {talk_ns}/{pod} still has {chains:?}");
            checked += 1;
        }
        note(format!(
            "{test}: no Injection left, no firedrill chain on {} nodes and {checked} talk pods ({:.1}s in all)",
            nodes.len(),
            t0.elapsed().as_secs_f64()
        ));
        // The invariants above hold whatever the verdict; now the verdict itself.
        assert_eq!(
            status.verdict,
            Some(Verdict::Passed),
            "verdict (reason: {:?})",
            status.reason
        );
        assert_eq!(status.messages_lost.unwrap_or(0), 0, "acknowledged messages lost");
    })
    .await;
}
