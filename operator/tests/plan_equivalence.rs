//! Both platforms plan through one planner: random deployments, rendered once as a lab
//! topology and once as the Pods, Nodes and Namespaces a cluster would list, must get the
//! same targets, candidates and actions from the lab adapter and the Kubernetes adapter, or
//! the same refusal. A rule that one adapter bent (a floored percentage, a target counted
//! differently, an address missing) makes them differ.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use firedrill_core::api::{
    BlackoutMode, BlastRadius, DiskLoss, DiskLossMode, ExperimentSpec, Fault, LabelSelector,
    NODE_FAULT_GRANT_LABEL, NODE_FAULT_GRANT_VALUE, NetworkLoss, NetworkPartition, OPT_IN_LABEL,
    OPT_IN_VALUE, OpsToolOutage, OutageMode, PartitionDirection, PeerGroup, PodKill, ZONE_LABEL,
    ZoneBlackout,
};
use firedrill_core::manifest::{Manifest, load_str};
use firedrill_lab::LabError;
use firedrill_lab::platform;
use firedrill_lab::topology::{self, Kind, Process, Topology, Weakness};
use firedrill_operator::plan::{self, Candidates, Policy};
use k8s_openapi::api::core::v1::{
    Namespace, Node, NodeAddress, NodeStatus, PersistentVolumeClaimVolumeSource, Pod, PodIP,
    PodSpec, PodStatus, Volume,
};
use kube::api::ObjectMeta;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];
const APPS: [&str; 3] = ["nats", "talk-server", "prometheus"];

/// One generated node: its zone (or none, like the lab's client node) and its processes,
/// each an app label and whether it keeps data.
#[derive(Clone, Debug)]
struct GenNode {
    zone: Option<usize>,
    processes: Vec<(usize, bool)>,
}

fn deployment() -> impl Strategy<Value = Vec<GenNode>> {
    prop::collection::vec(
        (
            prop::option::weighted(0.85, 0usize..3),
            prop::collection::vec((0usize..3, any::<bool>()), 0..4),
        )
            .prop_map(|(zone, processes)| GenNode { zone, processes }),
        1..7,
    )
}

fn node_name(i: usize) -> String {
    format!("node-{i}")
}

fn node_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 1, 10 + i as u8)
}

fn process_name(node: usize, k: usize) -> String {
    format!("p-{node}-{k}")
}

fn app_labels(app: usize, zone: Option<usize>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([("app".to_owned(), APPS[app].to_owned())]);
    if let Some(z) = zone {
        labels.insert(ZONE_LABEL.to_owned(), ZONES[z].to_owned());
    }
    labels
}

/// The deployment as the lab would run it.
fn lab_topology(nodes: &[GenNode]) -> Topology {
    let mut processes = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for (k, (app, data)) in node.processes.iter().enumerate() {
            processes.push(Process {
                name: process_name(i, k),
                node: node_name(i),
                labels: app_labels(*app, node.zone),
                kind: Kind::TalkServer {
                    listen: SocketAddr::V4(SocketAddrV4::new(node_addr(i), 8080 + k as u16)),
                    nats: vec![],
                    replicas: 1,
                    placement_zone: None,
                },
                has_data: *data,
            });
        }
    }
    Topology {
        weakness: None,
        talk: Default::default(),
        nodes: nodes
            .iter()
            .enumerate()
            .map(|(i, n)| topology::Node {
                name: node_name(i),
                zone: n.zone.map(|z| ZONES[z].to_owned()),
                addr: node_addr(i),
                gateway: Ipv4Addr::new(10, 77, 1, 1),
            })
            .collect(),
        processes,
        hosts: BTreeMap::new(),
    }
}

fn meta(name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

/// The same deployment as a cluster would list it: one pod per process (a page cache is
/// its node's memory, not a pod), with its node's address (as a lab process has), a claim
/// for its data, in an opted-in namespace that holds the node-fault grant.
fn cluster(topology: &Topology) -> Candidates {
    let talk = Namespace {
        metadata: meta(
            topology::NAMESPACE,
            BTreeMap::from([
                (OPT_IN_LABEL.to_owned(), OPT_IN_VALUE.to_owned()),
                (
                    NODE_FAULT_GRANT_LABEL.to_owned(),
                    NODE_FAULT_GRANT_VALUE.to_owned(),
                ),
            ]),
        ),
        ..Namespace::default()
    };
    let address = |node: &str| {
        topology
            .node(node)
            .map(|n| n.addr.to_string())
            .expect("the process's node")
    };
    let pods = topology
        .processes
        .iter()
        .filter(|p| !matches!(p.kind, Kind::PageCache { .. }))
        .map(|p| Pod {
            metadata: ObjectMeta {
                namespace: Some(topology::NAMESPACE.to_owned()),
                uid: Some(p.name.clone()),
                ..meta(&p.name, p.labels.clone())
            },
            spec: Some(PodSpec {
                node_name: Some(p.node.clone()),
                volumes: p.has_data.then(|| {
                    vec![Volume {
                        name: "data".into(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: format!("data-{}", p.name),
                            read_only: None,
                        }),
                        ..Volume::default()
                    }]
                }),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some(address(&p.node)),
                pod_ips: Some(vec![PodIP {
                    ip: address(&p.node),
                }]),
                ..PodStatus::default()
            }),
        })
        .collect();
    Candidates {
        source: talk.clone(),
        namespaces: vec![talk],
        nodes: topology
            .nodes
            .iter()
            .map(|n| Node {
                metadata: meta(
                    &n.name,
                    n.zone
                        .iter()
                        .map(|z| (ZONE_LABEL.to_owned(), z.clone()))
                        .collect(),
                ),
                status: Some(NodeStatus {
                    addresses: Some(vec![NodeAddress {
                        type_: "InternalIP".into(),
                        address: n.addr.to_string(),
                    }]),
                    ..NodeStatus::default()
                }),
                ..Node::default()
            })
            .collect(),
        pods,
    }
}

/// Plans `spec` through both adapters and checks that they agree.
fn same_on_both(spec: &ExperimentSpec, topology: &Topology) -> Result<(), TestCaseError> {
    let lab = platform::plan(spec, topology);
    let k8s = plan::plan(spec, &cluster(topology), &Policy::new("firedrill-system"));
    match (lab, k8s) {
        (Ok(lab), Ok(k8s)) => {
            prop_assert_eq!(&lab.fault, &k8s);
            prop_assert_eq!(lab.candidates, k8s.candidates);
            let names: Vec<&str> = k8s.targets.iter().map(|t| t.name()).collect();
            prop_assert_eq!(lab.targets, names);
            prop_assert!(!lab.steps.is_empty());
        }
        (Err(LabError::Refused { source }), Err(k8s)) => prop_assert_eq!(source, k8s),
        // The one refusal of the lab's own: its processes share their node's network
        // namespace, so one node cannot be on both sides of a partition.
        (Err(LabError::Plan(why)), Ok(k8s)) => {
            prop_assert!(why.contains("both sides"), "{}", why);
            let shared = k8s.work.iter().any(|a| {
                k8s.work.iter().any(|b| {
                    a.node == b.node
                        && a.key != b.key
                        && a.action.network.is_some()
                        && b.action.network.is_some()
                })
            });
            prop_assert!(
                shared,
                "the lab refused what a cluster can carry out: {}",
                why
            );
        }
        (lab, k8s) => prop_assert!(false, "lab {:?} but cluster {:?}", lab, k8s),
    }
    Ok(())
}

fn selector(app: usize) -> LabelSelector {
    LabelSelector {
        match_labels: BTreeMap::from([("app".to_owned(), APPS[app].to_owned())]),
        match_expressions: vec![],
    }
}

fn zones(picked: &[usize]) -> Vec<String> {
    picked.iter().map(|z| ZONES[*z].to_owned()).collect()
}

fn peer_group() -> impl Strategy<Value = PeerGroup> {
    (
        prop::collection::vec(0usize..3, 0..3),
        prop::option::of(0usize..3),
    )
        .prop_map(|(z, app)| PeerGroup {
            zones: zones(&z),
            selector: app.map(selector),
        })
}

fn direction() -> impl Strategy<Value = PartitionDirection> {
    prop_oneof![
        Just(PartitionDirection::Both),
        Just(PartitionDirection::LeftToRight),
        Just(PartitionDirection::RightToLeft),
    ]
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        (
            prop::collection::vec(0usize..3, 1..3),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(z, kill, cut_network)| Fault {
                zone_blackout: Some(ZoneBlackout {
                    zone: None,
                    zones: zones(&z),
                    mode: if kill {
                        BlackoutMode::Kill
                    } else {
                        BlackoutMode::Freeze
                    },
                    cut_network,
                }),
                ..Fault::default()
            }),
        (peer_group(), peer_group(), direction()).prop_map(|(left, right, direction)| Fault {
            network_partition: Some(NetworkPartition {
                left,
                right,
                direction,
            }),
            ..Fault::default()
        }),
        (peer_group(), peer_group(), direction(), 1u32..=100).prop_map(
            |(left, right, direction, percent)| Fault {
                network_loss: Some(NetworkLoss {
                    left,
                    right,
                    direction,
                    percent,
                    delay: None,
                }),
                ..Fault::default()
            }
        ),
        (any::<bool>(), any::<bool>()).prop_map(|(wipe, named)| Fault {
            disk_loss: Some(DiskLoss {
                mode: if wipe {
                    DiskLossMode::Wipe
                } else {
                    DiskLossMode::ReadOnly
                },
                volume: named.then(|| "data".to_owned()),
            }),
            ..Fault::default()
        }),
        (0usize..3).prop_map(|m| Fault {
            ops_tool_outage: Some(OpsToolOutage {
                mode: [OutageMode::Stop, OutageMode::Freeze, OutageMode::Isolate][m],
            }),
            ..Fault::default()
        }),
        (0u32..30).prop_map(|grace| Fault {
            pod_kill: Some(PodKill {
                grace_period_seconds: grace,
            }),
            ..Fault::default()
        }),
    ]
}

/// The catalog's ops-tool outage, whose fault, selector and blast radius are replaced.
fn base_spec() -> ExperimentSpec {
    let path = format!(
        "{}/../experiments/ops-tool-outage.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("catalog file");
    match load_str(&text).expect("valid").pop() {
        Some(Manifest::Experiment(e)) => e.spec,
        other => panic!("not an experiment: {other:?}"),
    }
}

fn spec() -> impl Strategy<Value = ExperimentSpec> {
    (
        fault(),
        prop::option::weighted(0.9, 0usize..3),
        1u32..12,
        1u32..=100,
    )
        .prop_map(|(fault, app, max_targets, max_percent)| {
            let mut spec = base_spec();
            spec.fault = fault;
            spec.target.selector = app.map(selector);
            spec.blast_radius = BlastRadius {
                max_targets,
                max_percent,
            };
            spec
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_lab_and_the_cluster_plan_the_same_targets_and_actions(
        nodes in deployment(),
        spec in spec(),
    ) {
        same_on_both(&spec, &lab_topology(&nodes))?;
    }
}

#[test]
fn the_catalog_plans_the_same_on_the_lab_and_on_its_cluster_twin() {
    for weakness in std::iter::once(None).chain(Weakness::ALL.map(Some)) {
        let topology = Topology::new(weakness);
        for name in [
            "zone-blackout",
            "network-partition",
            "disk-loss",
            "disk-read-only",
            "ops-tool-outage",
            "site-power-loss",
            "network-loss",
        ] {
            let path = format!("{}/../experiments/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).expect("catalog file");
            let Some(Manifest::Experiment(e)) = load_str(&text).expect("valid").pop() else {
                panic!("{name} is not an experiment");
            };
            if let Err(e) = same_on_both(&e.spec, &topology) {
                panic!("{name} with {weakness:?}: {e}");
            }
        }
    }
}
