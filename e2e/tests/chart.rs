//! charts/firedrill on a real cluster: its CRDs are accepted and served by the API server
//! (the catalog's experiments pass admission, a bad one is refused there), and its
//! operator (replicas in distinct zones, one leader by Lease) and agents (one per node)
//! are up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    AGENT, OPERATOR, eventually_every, firedrill, firedrill_namespace, nodes, note, with_temp_ns,
};
use firedrill_core::api::Experiment;
use firedrill_core::manifest::{self, Manifest};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};

const ZONE: &str = "topology.kubernetes.io/zone";

/// The Experiments in `experiments/` (the catalog), read and validated as chaosctl does.
fn catalog() -> Vec<(String, Experiment)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let manifests =
            manifest::load_str(&text).unwrap_or_else(|p| panic!("{}: {p:?}", path.display()));
        for m in manifests {
            if let Manifest::Experiment(e) = m {
                out.push((path.display().to_string(), *e));
            }
        }
    }
    out
}

#[tokio::test]
async fn crds_are_accepted() {
    let test = "crds_are_accepted";
    let Some(client) = firedrill(test).await else {
        return;
    };
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, generated) in firedrill_core::crd::all() {
        let name = generated.name_any();
        let installed = crds
            .get_opt(&name)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("CRD {name} is not installed (charts/firedrill/crds)"));
        let conditions = installed
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        for wanted in ["NamesAccepted", "Established"] {
            assert!(
                conditions
                    .iter()
                    .any(|c| c.type_ == wanted && c.status == "True"),
                "CRD {name}: {wanted} is not True: {conditions:?}"
            );
        }
        let served = |crd: &CustomResourceDefinition| -> BTreeSet<String> {
            crd.spec
                .versions
                .iter()
                .filter(|v| v.served)
                .map(|v| v.name.clone())
                .collect()
        };
        assert_eq!(
            served(&installed),
            served(&generated),
            "CRD {name}: served versions differ from the generated CRD"
        );
        note(format!("{test}: {name} established"));
    }

    with_temp_ns(&client, "crds", |client, ns| async move {
        let api: Api<Experiment> = Api::namespaced(client.clone(), &ns);
        let dry = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        // Every catalog Experiment passes the real API server's validation (schema + CEL).
        let catalog = catalog();
        assert!(catalog.len() >= 4, "the catalog holds the four missions");
        for (file, mut e) in catalog {
            e.metadata.namespace = Some(ns.clone());
            e.metadata.resource_version = None;
            api.create(&dry, &e)
                .await
                .unwrap_or_else(|err| panic!("{file}: {} refused: {err}", e.name_any()));
            note(format!("accepted (dry run): {file} {}", e.name_any()));
        }
        // What the schema can say is refused at admission, naming the field.
        let (_, mut bad) = catalog_first();
        bad.metadata.name = Some("bad-blast-radius".into());
        bad.metadata.namespace = Some(ns.clone());
        bad.spec.blast_radius.max_percent = 0;
        let err = api
            .create(&dry, &bad)
            .await
            .expect_err("maxPercent 0 must be refused at admission");
        let text = err.to_string();
        assert!(
            text.contains("maxPercent"),
            "the refusal names the field: {text}"
        );
        note(format!("refused at admission: {text}"));
    })
    .await;
}

fn catalog_first() -> (String, Experiment) {
    catalog().into_iter().next().expect("a catalog experiment")
}

fn zone_of(nodes: &[Node], node: &str) -> Option<String> {
    nodes
        .iter()
        .find(|n| n.name_any() == node)
        .and_then(|n| n.labels().get(ZONE).cloned())
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn pods(client: &Client, name: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &firedrill_namespace());
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/name={name}"));
    api.list(&lp).await.unwrap().items
}

#[tokio::test]
async fn operator_and_agents_are_up() {
    let test = "operator_and_agents_are_up";
    let Some(client) = firedrill(test).await else {
        return;
    };
    let ns = firedrill_namespace();
    let nodes = nodes(&client).await;

    // The operator: every replica Ready, no two in one zone.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let want = deployments
        .get(OPERATOR)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let operators = eventually_every(Duration::from_secs(120), Duration::from_secs(1), || async {
        let ps: Vec<Pod> = pods(&client, OPERATOR)
            .await
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        (ps.len() == want as usize && ps.iter().all(ready)).then_some(ps)
    })
    .await
    .unwrap_or_else(|| panic!("{want} operator replicas were not Ready in 120 s"));
    let zones: BTreeSet<String> = operators
        .iter()
        .filter_map(|p| zone_of(&nodes, p.spec.as_ref()?.node_name.as_deref()?))
        .collect();
    let distinct_zones = nodes
        .iter()
        .filter_map(|n| n.labels().get(ZONE))
        .collect::<BTreeSet<_>>()
        .len();
    assert_eq!(
        zones.len(),
        (want as usize).min(distinct_zones),
        "operator replicas spread over zones: {zones:?}"
    );
    note(format!(
        "{test}: {want} operator replicas Ready in zones {zones:?}"
    ));

    // One leader, holding a Lease it renews, and it is one of those replicas.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let names: BTreeSet<String> = operators.iter().map(|p| p.name_any()).collect();
    let (holder, renewed) =
        eventually_every(Duration::from_secs(60), Duration::from_secs(1), || async {
            let spec = leases.get_opt(OPERATOR).await.ok()??.spec?;
            let holder = spec.holder_identity?;
            let renewed = spec.renew_time?.0;
            names.contains(&holder).then_some((holder, renewed))
        })
        .await
        .unwrap_or_else(|| panic!("no operator replica of {names:?} holds Lease {ns}/{OPERATOR}"));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let spec = leases.get(OPERATOR).await.unwrap().spec.unwrap();
    assert_eq!(
        spec.holder_identity.as_deref(),
        Some(holder.as_str()),
        "leader changed"
    );
    assert!(
        spec.renew_time.unwrap().0 > renewed,
        "the leader {holder} renews its Lease"
    );
    note(format!("{test}: leader {holder}, renewing"));

    // The agent: Ready on every node.
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
    let on_nodes = eventually_every(Duration::from_secs(120), Duration::from_secs(1), || async {
        let st = daemonsets.get(AGENT).await.ok()?.status?;
        if st.desired_number_scheduled as usize != nodes.len()
            || st.number_ready != st.desired_number_scheduled
        {
            return None;
        }
        let on: BTreeSet<String> = pods(&client, AGENT)
            .await
            .iter()
            .filter(|p| ready(p))
            .filter_map(|p| p.spec.as_ref()?.node_name.clone())
            .collect();
        (on.len() == nodes.len()).then_some(on)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the agent was not Ready on all {} nodes in 120 s",
            nodes.len()
        )
    });
    note(format!("{test}: agents Ready on {on_nodes:?}"));
}
