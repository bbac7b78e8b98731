use std::collections::BTreeMap;

use firedrill_core::api::{
    ExperimentStatus, LabelSelector, NetworkCut, OutageMode, PartitionDirection, PeerGroup,
    ProcessSignal, TrafficDirection,
};
use firedrill_core::manifest::{Manifest, load_str};
use k8s_openapi::api::core::v1::{
    NodeAddress, NodeSpec, NodeStatus, PersistentVolumeClaimVolumeSource, PodIP, PodSpec,
    PodStatus, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::{
    CONSENT_ANNOTATION, NODE_FAULT_GRANT_LABEL, NODE_FAULT_GRANT_VALUE, OPT_IN_LABEL, OPT_IN_VALUE,
    PROTECTED_NODE_LABEL, ZONE_LABEL,
};

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

fn node(name: &str, zone: Option<&str>, ip: &str, extra: &[(&str, &str)]) -> Node {
    let mut l: Vec<(&str, &str)> = extra.to_vec();
    if let Some(z) = zone {
        l.push((ZONE_LABEL, z));
    }
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: labels(&l),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidrs: Some(vec![format!("10.244.{}.0/24", &ip[ip.len() - 1..])]),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: ip.into(),
            }]),
            ..Default::default()
        }),
    }
}

fn namespace(name: &str, opted_in: bool) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: if opted_in {
                labels(&[(OPT_IN_LABEL, OPT_IN_VALUE)])
            } else {
                None
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

fn pod(ns: &str, name: &str, node: &str, ip: &str, l: &[(&str, &str)], claims: &[&str]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            uid: Some(format!("uid-{name}")),
            labels: labels(l),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            volumes: Some(
                claims
                    .iter()
                    .map(|c| Volume {
                        name: (*c).into(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: format!("{c}-{name}"),
                            read_only: None,
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ip.into()),
            pod_ips: Some(vec![PodIP { ip: ip.into() }]),
            ..Default::default()
        }),
    }
}

const NATS: (&str, &str) = ("app.kubernetes.io/name", "nats");

/// Three zones; zone-a also holds the control plane. talk runs one NATS server per zone,
/// two Prometheus servers, a talk-server, and talk-load on a node outside the zones.
fn cluster() -> Candidates {
    let nats = |n: &str, node: &str, ip: &str| {
        pod(
            "talk",
            n,
            node,
            ip,
            &[NATS, ("statefulset.kubernetes.io/pod-name", n)],
            &["data"],
        )
    };
    let prometheus = |n: &str, node: &str, ip: &str, site: &str| {
        pod(
            "talk",
            n,
            node,
            ip,
            &[
                ("app.kubernetes.io/name", "prometheus"),
                ("firedrill.dev/ops-tool", "true"),
                ("firedrill.dev/ops-site", site),
            ],
            &["data"],
        )
    };
    let mut terminating = pod("talk", "old-0", "a1", "10.244.1.9", &[NATS], &[]);
    terminating.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    let mut done = pod("talk", "job-0", "a1", "10.244.1.8", &[NATS], &[]);
    if let Some(s) = done.status.as_mut() {
        s.phase = Some("Succeeded".into());
    }
    let mut source = namespace("talk", true);
    source
        .labels_mut()
        .insert(NODE_FAULT_GRANT_LABEL.into(), NODE_FAULT_GRANT_VALUE.into());
    Candidates {
        source,
        namespaces: vec![
            namespace("talk", true),
            namespace("other", false),
            namespace("kube-system", true),
            namespace("firedrill-system", true),
            namespace("ops", true),
        ],
        nodes: vec![
            node(
                "cp",
                Some("zone-a"),
                "192.168.0.10",
                &[("node-role.kubernetes.io/control-plane", "")],
            ),
            node("a1", Some("zone-a"), "192.168.0.1", &[]),
            node("a2", Some("zone-a"), "192.168.0.2", &[]),
            node("b1", Some("zone-b"), "192.168.0.3", &[]),
            node("c1", Some("zone-c"), "192.168.0.4", &[]),
            node("edge", None, "192.168.0.5", &[]),
        ],
        pods: vec![
            nats("nats-0", "a1", "10.244.1.2"),
            nats("nats-1", "b1", "10.244.3.2"),
            nats("nats-2", "c1", "10.244.4.2"),
            prometheus("prometheus-a", "a2", "10.244.2.2", "zone-a"),
            prometheus("prometheus-b", "b1", "10.244.3.3", "zone-b"),
            pod(
                "talk",
                "talk-server-0",
                "a1",
                "10.244.1.3",
                &[("app.kubernetes.io/name", "talk-server")],
                &[],
            ),
            pod(
                "talk",
                "talk-load",
                "edge",
                "10.244.5.2",
                &[("app.kubernetes.io/name", "talk-load")],
                &[],
            ),
            // A talk pod on the control plane: never touched.
            pod("talk", "sneaky", "cp", "10.244.0.2", &[NATS], &["data"]),
            terminating,
            done,
            // Another namespace's pod on a zone-a node: not a target.
            pod("other", "bystander", "a1", "10.244.1.4", &[NATS], &["data"]),
        ],
    }
}

fn policy() -> Policy {
    Policy::new("firedrill-system")
}

fn catalog(name: &str) -> ExperimentSpec {
    let path = format!("{}/../experiments/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("catalog file");
    match load_str(&text).expect("valid").pop() {
        Some(Manifest::Experiment(e)) => e.spec,
        other => panic!("not an experiment: {other:?}"),
    }
}

fn pods_of(work: &NodeWork) -> Vec<&str> {
    let action = &work.action;
    let pods = match (&action.processes, &action.network, &action.read_only_volume) {
        (Some(p), _, _) => p.pods.iter().collect::<Vec<_>>(),
        (_, Some(n), _) => n.pods.iter().collect(),
        (_, _, Some(v)) => vec![&v.pod],
        _ => vec![],
    };
    pods.into_iter().map(|p| p.name.as_str()).collect()
}

#[test]
fn zone_blackout_hits_the_zones_workers_and_never_the_control_plane() {
    let plan = plan(&catalog("zone-blackout"), &cluster(), &policy()).expect("plan");
    assert_eq!(plan.targets, vec!["node/a1", "node/a2"]);
    // Candidates: the zoned, unprotected nodes.
    assert_eq!(plan.candidates, 4);
    assert!(plan.excluded.iter().any(|e| e.starts_with("node/cp")));
    assert!(plan.excluded.iter().any(|e| e.starts_with("talk/sneaky")));
    assert!(plan.work.iter().all(|w| w.node != "cp"));
    let kill_a1 = plan
        .work
        .iter()
        .find(|w| w.node == "a1" && w.key == "processes")
        .expect("a1 processes");
    // Only live pods of the opted-in target namespace.
    assert_eq!(pods_of(kill_a1), vec!["nats-0", "talk-server-0"]);
    assert_eq!(
        kill_a1.action.processes.as_ref().map(|p| p.signal),
        Some(ProcessSignal::Kill)
    );
    let cuts: Vec<&NodeWork> = plan.work.iter().filter(|w| w.key == "network").collect();
    assert_eq!(cuts.len(), 2);
    for cut in cuts {
        let network = cut.action.network.as_ref().expect("network");
        assert!(
            network.all && network.pods.is_empty(),
            "the node itself is cut"
        );
    }
    assert!(plan.deletions.is_empty());
    assert!(uses_injections(&catalog("zone-blackout")));
}

#[test]
fn a_zone_with_only_protected_nodes_is_refused() {
    let mut c = cluster();
    c.nodes.push(node(
        "d-cp",
        Some("zone-d"),
        "192.168.0.20",
        &[("node-role.kubernetes.io/control-plane", "")],
    ));
    c.nodes.push(node(
        "d-protected",
        Some("zone-d"),
        "192.168.0.21",
        &[(PROTECTED_NODE_LABEL, "true")],
    ));
    let mut spec = catalog("zone-blackout");
    spec.fault.zone_blackout.as_mut().expect("blackout").zone = Some("zone-d".into());
    let err = plan(&spec, &c, &policy()).expect_err("refused");
    assert_eq!(err.reason(), "EmptyZone");
    assert!(err.to_string().contains("d-cp") && err.to_string().contains("d-protected"));
    assert_eq!(err.field(), "spec.fault.zoneBlackout");
}

#[test]
fn namespaces_must_exist_opt_in_and_not_be_protected() {
    let mut spec = catalog("zone-blackout");
    spec.target.namespaces = vec!["talk".into(), "other".into()];
    let err = plan(&spec, &cluster(), &policy()).expect_err("not opted in");
    assert_eq!(
        err,
        PlanError::NotOptedIn {
            index: 1,
            namespace: "other".into()
        }
    );
    assert_eq!(err.field(), "spec.target.namespaces[1]");
    assert!(err.to_string().contains("firedrill.dev/chaos=enabled"));

    spec.target.namespaces = vec!["nowhere".into()];
    let err = plan(&spec, &cluster(), &policy()).expect_err("missing");
    assert_eq!(err.reason(), "NamespaceNotFound");

    // Opted in or not, kube-system and the operator's own namespace are never targets.
    for protected in ["kube-system", "firedrill-system"] {
        spec.target.namespaces = vec![protected.into()];
        let err = plan(&spec, &cluster(), &policy()).expect_err("protected");
        assert_eq!(err.reason(), "ProtectedNamespace", "{protected}");
    }
    spec.target.namespaces = vec!["ops".into()];
    let err = plan(&spec, &cluster(), &Policy::new("ops")).expect_err("operator's own");
    assert_eq!(err.reason(), "ProtectedNamespace");
}

#[test]
fn another_namespace_must_consent_and_node_faults_need_the_grant() {
    let mut c = cluster();
    c.source = namespace("team-a", false);
    let mut spec = catalog("ops-tool-outage");
    let err = plan(&spec, &c, &policy()).expect_err("talk did not consent");
    assert_eq!(
        err,
        PlanError::NotConsented {
            index: 0,
            namespace: "talk".into(),
            from: "team-a".into()
        }
    );
    assert_eq!(err.reason(), "NamespaceNotConsented");
    assert!(err.to_string().contains(CONSENT_ANNOTATION), "{err}");
    let talk = c
        .namespaces
        .iter_mut()
        .find(|n| n.name_any() == "talk")
        .expect("talk");
    talk.annotations_mut()
        .insert(CONSENT_ANNOTATION.into(), "team-b,team-a".into());
    assert!(plan(&spec, &c, &policy()).is_ok(), "consented");

    // A pod-level fault needs no grant; one that cuts whole nodes does, even in its own
    // namespace, and only the Experiment's namespace can carry it.
    c.source = namespace("talk", true);
    spec.target.namespaces = vec!["talk".into()];
    assert!(plan(&spec, &c, &policy()).is_ok());
    let blackout = catalog("zone-blackout");
    assert!(
        blackout
            .fault
            .zone_blackout
            .as_ref()
            .is_some_and(|z| z.cut_network)
    );
    let err = plan(&blackout, &c, &policy()).expect_err("no grant");
    assert_eq!(err.reason(), "NodeFaultNotGranted");
    assert_eq!(err.field(), "spec.fault");
    assert!(
        err.to_string()
            .contains("firedrill.dev/node-faults=allowed"),
        "{err}"
    );
    let mut frozen_only = blackout.clone();
    if let Some(z) = frozen_only.fault.zone_blackout.as_mut() {
        z.cut_network = false;
    }
    assert!(plan(&frozen_only, &c, &policy()).is_ok(), "processes only");
    assert!(plan(&blackout, &cluster(), &policy()).is_ok(), "granted");
}

#[test]
fn the_blast_radius_caps_count_and_percent_exactly() {
    let mut spec = catalog("zone-blackout");
    // 2 of 4 nodes = 50%: allowed at 50, refused at 49.
    spec.blast_radius.max_percent = 50;
    assert!(plan(&spec, &cluster(), &policy()).is_ok());
    spec.blast_radius.max_percent = 49;
    let err = plan(&spec, &cluster(), &policy()).expect_err("percent");
    assert_eq!(err.reason(), "BlastRadiusExceeded");
    assert!(err.to_string().contains("node/a1, node/a2"), "{err}");
    spec.blast_radius.max_percent = 100;
    spec.blast_radius.max_targets = 1;
    let err = plan(&spec, &cluster(), &policy()).expect_err("count");
    assert_eq!(err.field(), "spec.blastRadius");
    // The whole site: every zoned node, allowed only because the catalog says 100%.
    let site = plan(&catalog("site-power-loss"), &cluster(), &policy()).expect("site");
    assert_eq!(site.targets.len(), 4);
    let mut narrower = catalog("site-power-loss");
    narrower.blast_radius.max_percent = 99;
    assert!(plan(&narrower, &cluster(), &policy()).is_err());
}

#[test]
fn disk_loss_wipes_by_deleting_claim_and_pod_or_remounts_read_only() {
    let wipe = plan(&catalog("disk-loss"), &cluster(), &policy()).expect("wipe");
    assert_eq!(wipe.targets, vec!["talk/nats-0"]);
    // Candidates: live talk pods with a claim on unprotected nodes (3 nats + 2 prometheus).
    assert_eq!(wipe.candidates, 5);
    assert!(wipe.work.is_empty());
    assert_eq!(
        wipe.deletions,
        vec![PodDeletion {
            pod: PodRef {
                namespace: "talk".into(),
                name: "nats-0".into(),
                uid: "uid-nats-0".into()
            },
            node: "a1".into(),
            grace_period_seconds: 0,
            claims: vec!["data-nats-0".into()],
        }]
    );
    assert!(!uses_injections(&catalog("disk-loss")));

    let ro = plan(&catalog("disk-read-only"), &cluster(), &policy()).expect("read-only");
    assert!(ro.deletions.is_empty());
    let volume = ro.work[0]
        .action
        .read_only_volume
        .as_ref()
        .expect("volume action");
    assert_eq!(
        (ro.work[0].node.as_str(), volume.volume.as_str()),
        ("a1", "data")
    );
    assert_eq!(volume.pod.uid, "uid-nats-0");
    assert!(uses_injections(&catalog("disk-read-only")));
}

#[test]
fn disk_loss_needs_an_unambiguous_volume() {
    let mut c = cluster();
    c.pods[0] = pod(
        "talk",
        "nats-0",
        "a1",
        "10.244.1.2",
        &[NATS, ("statefulset.kubernetes.io/pod-name", "nats-0")],
        &["data", "logs"],
    );
    let mut spec = catalog("disk-loss");
    let err = plan(&spec, &c, &policy()).expect_err("ambiguous");
    assert!(err.to_string().contains("data, logs"), "{err}");
    assert_eq!(err.field(), "spec.fault.diskLoss.volume");
    spec.fault.disk_loss.as_mut().expect("disk").volume = Some("logs".into());
    let planned = plan(&spec, &c, &policy()).expect("named");
    assert_eq!(planned.deletions[0].claims, vec!["logs-nats-0"]);
    spec.fault.disk_loss.as_mut().expect("disk").volume = Some("cache".into());
    assert!(plan(&spec, &c, &policy()).is_err());
}

#[test]
fn ops_tool_outage_stops_isolates_or_freezes_the_selected_pods() {
    let stop = plan(&catalog("ops-tool-outage"), &cluster(), &policy()).expect("stop");
    assert_eq!(stop.targets, vec!["talk/prometheus-a"]);
    assert_eq!(stop.work.len(), 1);
    assert_eq!(stop.work[0].node, "a2");
    assert_eq!(
        stop.work[0].action.processes.as_ref().map(|p| p.signal),
        Some(ProcessSignal::Kill)
    );
    let mut spec = catalog("ops-tool-outage");
    spec.fault.ops_tool_outage.as_mut().expect("outage").mode = OutageMode::Isolate;
    let isolate = plan(&spec, &cluster(), &policy()).expect("isolate");
    let cut = isolate.work[0].action.network.as_ref().expect("network");
    assert!(cut.all);
    assert_eq!(pods_of(&isolate.work[0]), vec!["prometheus-a"]);
    spec.fault.ops_tool_outage.as_mut().expect("outage").mode = OutageMode::Freeze;
    let freeze = plan(&spec, &cluster(), &policy()).expect("freeze");
    assert_eq!(
        freeze.work[0].action.processes.as_ref().map(|p| p.signal),
        Some(ProcessSignal::Freeze)
    );
}

#[test]
fn pod_kill_deletes_the_selected_pods_with_their_grace_period() {
    let mut spec = catalog("disk-loss");
    spec.fault = serde_json::from_value(serde_json::json!({"podKill": {"gracePeriodSeconds": 5}}))
        .expect("fault");
    spec.target.selector = Some(LabelSelector {
        match_labels: [NATS]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        match_expressions: vec![],
    });
    spec.blast_radius.max_targets = 3;
    spec.blast_radius.max_percent = 50;
    let planned = plan(&spec, &cluster(), &policy()).expect("plan");
    // Not the terminating, the finished, the control-plane or the other namespace's pod.
    assert_eq!(
        planned.targets,
        vec!["talk/nats-0", "talk/nats-1", "talk/nats-2"]
    );
    assert!(
        planned
            .deletions
            .iter()
            .all(|d| d.grace_period_seconds == 5)
    );
    assert!(planned.deletions.iter().all(|d| d.claims.is_empty()));
    // 3 of 7 live talk pods on unprotected nodes = 42.9%.
    assert_eq!(planned.candidates, 7);
    spec.blast_radius.max_percent = 42;
    assert!(plan(&spec, &cluster(), &policy()).is_err());
}

#[test]
fn a_selector_that_matches_nothing_is_refused() {
    let mut spec = catalog("disk-loss");
    if let Some(s) = spec.target.selector.as_mut() {
        s.match_labels
            .insert("app.kubernetes.io/name".into(), "nothing".into());
    }
    let err = plan(&spec, &cluster(), &policy()).expect_err("nothing");
    assert_eq!(err.reason(), "NoTargets");
    assert_eq!(err.field(), "spec.target.selector");
}

fn network<'a>(plan: &'a Plan, node: &str, key: &str) -> &'a NetworkCut {
    plan.work
        .iter()
        .find(|w| w.node == node && w.key == key)
        .and_then(|w| w.action.network.as_ref())
        .unwrap_or_else(|| panic!("no {key} cut on {node}: {:?}", plan.work))
}

#[test]
fn a_zone_partition_cuts_each_sides_pods_from_the_other_sides_addresses() {
    let planned = plan(&catalog("network-partition"), &cluster(), &policy()).expect("plan");
    // The isolated (left) side is counted: zone-a's live talk pods on workers.
    assert_eq!(
        planned.targets,
        vec!["talk/nats-0", "talk/prometheus-a", "talk/talk-server-0"]
    );
    let a1 = network(&planned, "a1", "left");
    assert_eq!(a1.pods.len(), 2);
    assert!(!a1.all);
    // Zone-b and zone-c's node addresses and pod ranges, in both directions.
    for cidr in [
        "192.168.0.3/32",
        "10.244.3.0/24",
        "192.168.0.4/32",
        "10.244.4.0/24",
    ] {
        assert!(a1.peers.contains(&cidr.to_owned()), "{cidr} in {a1:?}");
    }
    assert_eq!(a1.direction, TrafficDirection::Both);
    // Never its own side, and never the control plane (protected, in zone-a).
    assert!(!a1.peers.contains(&"192.168.0.1/32".to_owned()));
    assert!(!a1.peers.contains(&"192.168.0.10/32".to_owned()));
    let b1 = network(&planned, "b1", "right");
    assert!(b1.peers.contains(&"10.244.1.0/24".to_owned()));
    // talk-load (no zone) is on neither side.
    assert!(planned.work.iter().all(|w| w.node != "edge"));

    let mut one_way = catalog("network-partition");
    one_way
        .fault
        .network_partition
        .as_mut()
        .expect("partition")
        .direction = PartitionDirection::LeftToRight;
    let planned = plan(&one_way, &cluster(), &policy()).expect("plan");
    let a1 = network(&planned, "a1", "left");
    assert!(!a1.peers.is_empty() && a1.direction == TrafficDirection::Egress);
    let b1 = network(&planned, "b1", "right");
    assert!(!b1.peers.is_empty() && b1.direction == TrafficDirection::Ingress);
}

#[test]
fn a_selector_partition_uses_pod_addresses_and_refuses_overlap() {
    let mut spec = catalog("network-partition");
    let selector = |name: &str| LabelSelector {
        match_labels: [(
            "statefulset.kubernetes.io/pod-name".to_owned(),
            name.to_owned(),
        )]
        .into_iter()
        .collect(),
        match_expressions: vec![],
    };
    if let Some(np) = spec.fault.network_partition.as_mut() {
        np.left = PeerGroup {
            zones: vec![],
            selector: Some(selector("nats-0")),
        };
        np.right = PeerGroup {
            zones: vec![],
            selector: Some(LabelSelector {
                match_labels: [NATS]
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                match_expressions: vec![],
            }),
        };
    }
    let err = plan(&spec, &cluster(), &policy()).expect_err("overlap");
    assert_eq!(err.reason(), "PodOnBothSides");
    if let Some(np) = spec.fault.network_partition.as_mut() {
        np.right.selector = Some(selector("nats-1"));
    }
    let planned = plan(&spec, &cluster(), &policy()).expect("plan");
    assert_eq!(planned.targets, vec!["talk/nats-0"]);
    let left = network(&planned, "a1", "left");
    assert_eq!(left.peers, vec!["10.244.3.2/32"]);
    let right = network(&planned, "b1", "right");
    assert_eq!(right.peers, vec!["10.244.1.2/32"]);
    assert_eq!(pods_of(&planned.work[1]), vec!["nats-1"]);
}

fn experiment(name: &str, spec: ExperimentSpec) -> Experiment {
    let mut e = Experiment::new(name, spec);
    e.metadata.namespace = Some("talk".into());
    e.metadata.uid = Some("0b6a3e1c-5c1e-4d7c-9b53-1a2b3c4d5e6f".into());
    e.status = Some(ExperimentStatus::default());
    e
}

#[test]
fn injections_live_in_firedrills_namespace_labelled_expiring_and_deterministically_named() {
    let spec = catalog("zone-blackout");
    let planned = plan(&spec, &cluster(), &policy()).expect("plan");
    let exp = experiment("zone-blackout", spec);
    let expires = crate::testing::at(0);
    let lifetime = Lifetime {
        expires_at: expires,
        hold_for: exp.spec.duration,
        heartbeat: Some(Heartbeat {
            lease: "firedrill-operator".into(),
            timeout_seconds: 10,
        }),
    };
    let built = injections(&exp, "firedrill-system", &planned, &lifetime).expect("injections");
    assert_eq!(built.len(), planned.work.len());
    assert_eq!(built.len(), 4, "processes and network on a1 and a2");
    let again = injections(&exp, "firedrill-system", &planned, &lifetime).expect("again");
    assert_eq!(built, again, "the same plan gives the same objects");
    let mut names: Vec<String> = built.iter().map(|i| i.name_any()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 4, "one name per node and action");
    for inj in &built {
        let name = inj.name_any();
        assert!(name.starts_with("zone-blackout-a"), "{name}");
        assert!(name.len() <= 63);
        // Every node reverts on its own clock at the duration's end (a node cut off sees
        // no revert asked for), and within the heartbeat's timeout of the driver's death.
        assert_eq!(inj.spec.expires_at, expires, "{name}");
        assert_eq!(inj.spec.hold_for, Some(lifetime.hold_for), "{name}");
        assert_eq!(inj.spec.heartbeat, lifetime.heartbeat, "{name}");
        assert_eq!(inj.spec.experiment, "talk/zone-blackout");
        // Not the Experiment's namespace: firedrill's own, where tenants write nothing.
        assert_eq!(inj.namespace().as_deref(), Some("firedrill-system"));
        assert!(
            inj.owner_references().is_empty(),
            "none can cross namespaces"
        );
        let l = inj.labels();
        assert_eq!(
            l.get(EXPERIMENT_UID_LABEL).map(String::as_str),
            Some("0b6a3e1c-5c1e-4d7c-9b53-1a2b3c4d5e6f")
        );
        assert_eq!(l.get(NODE_LABEL), Some(&inj.spec.node_name));
        assert_eq!(
            l.get(MANAGED_BY_LABEL).map(String::as_str),
            Some(FIELD_MANAGER)
        );
        assert_eq!(
            inj.annotations()
                .get(PLAN_SIZE_ANNOTATION)
                .map(String::as_str),
            Some("4")
        );
        // What the CRD's schema and CEL rules accept.
        let action = &inj.spec.action;
        let set = [
            action.network.is_some(),
            action.processes.is_some(),
            action.read_only_volume.is_some(),
        ];
        assert_eq!(set.iter().filter(|s| **s).count(), 1);
    }
    // A new experiment of the same name (new UID) gets new names.
    let mut other = exp.clone();
    other.metadata.uid = Some("another-uid".into());
    let renamed = injections(&other, "firedrill-system", &planned, &lifetime).expect("other");
    assert_eq!(
        built
            .iter()
            .filter(|i| i.spec.action.cuts_node_off())
            .count(),
        2,
        "the blackout cuts a1 and a2 off"
    );
    assert!(renamed.iter().all(|i| !names.contains(&i.name_any())));
}

#[test]
fn injection_names_are_valid_for_any_experiment_or_node_name() {
    let long = "a".repeat(253);
    for (exp, node) in [
        ("x", "node-1"),
        (long.as_str(), long.as_str()),
        ("my.dotted.experiment", "ip-10-0-0-1.ec2.internal"),
        ("-", "--"),
    ] {
        let name = injection_name(exp, "uid", node, "processes");
        assert!(name.len() <= 253, "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{name}"
        );
        assert!(!name.starts_with('-') && !name.ends_with('-'), "{name}");
    }
    assert_ne!(
        injection_name("x", "uid", "n", "left"),
        injection_name("x", "uid", "n", "right")
    );
    // That the hash is the same in every build is checked beside it, in core's contract.
    assert!(!is_label_value(&long));
    assert!(is_label_value("ip-10-0-0-1.ec2.internal"));
    assert!(!is_label_value("-x"));
}

#[test]
fn unsaved_experiments_get_no_injections() {
    let spec = catalog("zone-blackout");
    let planned = plan(&spec, &cluster(), &policy()).expect("plan");
    let mut exp = experiment("zone-blackout", spec);
    exp.metadata.uid = None;
    let lifetime = Lifetime {
        expires_at: crate::testing::at(0),
        hold_for: exp.spec.duration,
        heartbeat: None,
    };
    assert_eq!(
        injections(&exp, "firedrill-system", &planned, &lifetime),
        Err(PlanError::Unsaved("uid"))
    );
}

#[test]
fn the_whole_catalog_plans_on_a_three_zone_cluster() {
    for name in [
        "zone-blackout",
        "network-partition",
        "disk-loss",
        "disk-read-only",
        "ops-tool-outage",
        "site-power-loss",
    ] {
        let spec = catalog(name);
        let planned = plan(&spec, &cluster(), &policy())
            .unwrap_or_else(|e| panic!("{name}: {} ({})", e, e.field()));
        assert!(!planned.targets.is_empty(), "{name}");
        assert!(planned.summary().contains("candidate"), "{name}");
    }
}
