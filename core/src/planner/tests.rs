use std::collections::BTreeMap;

use super::*;
use crate::api::PodRef;
use crate::api::{
    BlastRadius, Fault, LabelSelector, NetworkPartition, OPT_IN_LABEL, OPT_IN_VALUE, OpsToolOutage,
    OutageMode, PartitionDirection, PeerGroup, ProcessSignal, TrafficDirection, ZONE_LABEL,
    ZoneBlackout,
};
use crate::manifest::{Manifest, load_str};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn pod(name: &str, node: &str, app: &str, ip: &str) -> PodInfo {
    PodInfo {
        pod: PodRef {
            namespace: "talk".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        },
        node: node.into(),
        labels: labels(&[("app", app)]),
        cidrs: vec![format!("{ip}/32")],
        claims: vec![],
    }
}

/// Three zones of one node each, a pod of `app=a` on each, and a control-plane node.
fn inventory() -> Inventory {
    let mut nodes: Vec<NodeInfo> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, z)| NodeInfo {
            name: format!("node-{z}"),
            labels: labels(&[(ZONE_LABEL, &format!("zone-{z}"))]),
            cidrs: vec![format!("192.168.0.{}/32", i + 1)],
        })
        .collect();
    nodes.push(NodeInfo {
        name: "control".into(),
        labels: labels(&[
            (ZONE_LABEL, "zone-a"),
            ("node-role.kubernetes.io/control-plane", ""),
        ]),
        cidrs: vec!["192.168.0.9/32".into()],
    });
    let talk = NamespaceInfo {
        name: "talk".into(),
        labels: labels(&[(OPT_IN_LABEL, OPT_IN_VALUE)]),
        annotations: BTreeMap::new(),
    };
    Inventory {
        source: talk.clone(),
        namespaces: vec![talk],
        nodes,
        pods: vec![
            pod("p-a", "node-a", "a", "10.0.1.1"),
            pod("p-b", "node-b", "a", "10.0.2.1"),
            pod("p-c", "node-c", "a", "10.0.3.1"),
            pod("kube-thing", "control", "a", "10.0.9.1"),
        ],
    }
}

/// The catalog's ops-tool outage (selector `app: a` here) with `fault` instead.
fn spec(fault: &str) -> ExperimentSpec {
    let path = format!(
        "{}/../experiments/ops-tool-outage.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("catalog file");
    let mut spec = match load_str(&text).expect("valid").pop() {
        Some(Manifest::Experiment(e)) => e.spec,
        other => panic!("not an experiment: {other:?}"),
    };
    spec.target.namespaces = vec!["talk".into()];
    spec.target.selector = Some(LabelSelector {
        match_labels: labels(&[("app", "a")]),
        match_expressions: vec![],
    });
    spec.fault = serde_json::from_str(fault).expect("fault");
    spec
}

fn policy() -> Policy {
    Policy::new("firedrill-system")
}

#[test]
fn the_percentage_is_compared_exactly_on_every_platform() {
    // One pod of three is 33.3 %: over a cap of 33, within 34. The lab once floored it
    // to 33 % and let it pass while the operator refused it.
    let mut spec = spec(r#"{"opsToolOutage": {"mode": "Stop"}}"#);
    spec.target.selector = Some(LabelSelector {
        match_labels: labels(&[("app", "a")]),
        match_expressions: vec![],
    });
    let mut inventory = inventory();
    inventory.pods[1].labels = labels(&[("app", "b")]);
    inventory.pods[2].labels = labels(&[("app", "b")]);
    spec.blast_radius = BlastRadius {
        max_targets: 10,
        max_percent: 33,
    };
    let err = plan(&spec, &inventory, &policy()).expect_err("33.3 % > 33 %");
    assert_eq!(err.reason(), "BlastRadiusExceeded");
    assert_eq!(err.field(), "spec.blastRadius");
    spec.blast_radius.max_percent = 34;
    let planned = plan(&spec, &inventory, &policy()).expect("33.3 % <= 34 %");
    assert_eq!(planned.targets.len(), 1);
    assert_eq!(planned.candidates, 3);
}

#[test]
fn a_blackout_hits_whole_nodes_but_never_the_control_plane() {
    let spec = spec(r#"{"zoneBlackout": {"zone": "zone-a", "mode": "Kill", "cutNetwork": true}}"#);
    let mut inventory = inventory();
    inventory.source.labels.insert(
        crate::api::NODE_FAULT_GRANT_LABEL.into(),
        crate::api::NODE_FAULT_GRANT_VALUE.into(),
    );
    let planned = plan(&spec, &inventory, &policy()).expect("plan");
    assert_eq!(planned.targets, vec![Target::Node("node-a".into())]);
    assert_eq!(planned.candidates, 3, "zoned, unprotected nodes");
    assert!(planned.hits_whole_node("node-a") && !planned.hits_whole_node("control"));
    let keys: Vec<(&str, &str)> = planned
        .work
        .iter()
        .map(|w| (w.node.as_str(), w.key.as_str()))
        .collect();
    assert_eq!(keys, vec![("node-a", "processes"), ("node-a", "network")]);
    let kill = planned.work[0]
        .action
        .processes
        .as_ref()
        .expect("processes");
    assert_eq!(kill.signal, ProcessSignal::Kill);
    assert_eq!(kill.pods.len(), 1);
    assert!(planned.work[1].action.acts_on_node());
    assert!(planned.excluded.iter().any(|e| e.contains("control")));
    // Without the grant a node cut is refused; without the cut it needs none.
    let err = plan(&spec, &self::inventory(), &policy()).expect_err("no grant");
    assert_eq!(err.reason(), "NodeFaultNotGranted");
    let mut uncut = spec.clone();
    uncut.fault = Fault {
        zone_blackout: Some(ZoneBlackout {
            cut_network: false,
            ..uncut.fault.zone_blackout.clone().expect("blackout")
        }),
        ..Fault::default()
    };
    assert!(plan(&uncut, &self::inventory(), &policy()).is_ok());
}

#[test]
fn a_one_way_partition_carries_its_direction_to_each_side() {
    let mut spec = spec(r#"{"opsToolOutage": {"mode": "Stop"}}"#);
    spec.fault = Fault {
        network_partition: Some(NetworkPartition {
            left: PeerGroup {
                zones: vec!["zone-a".into()],
                selector: None,
            },
            right: PeerGroup {
                zones: vec!["zone-b".into(), "zone-c".into()],
                selector: None,
            },
            direction: PartitionDirection::LeftToRight,
        }),
        ..Fault::default()
    };
    let planned = plan(&spec, &inventory(), &policy()).expect("plan");
    let cut = |key: &str| {
        planned
            .work
            .iter()
            .filter(|w| w.key == key)
            .map(|w| w.action.network.clone().expect("network"))
            .collect::<Vec<_>>()
    };
    let left = cut("left");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].direction, TrafficDirection::Egress);
    assert_eq!(left[0].peers, vec!["192.168.0.2/32", "192.168.0.3/32"]);
    let right = cut("right");
    assert_eq!(right.len(), 2);
    assert!(
        right
            .iter()
            .all(|c| c.direction == TrafficDirection::Ingress)
    );
    assert!(right.iter().all(|c| c.peers == vec!["192.168.0.1/32"]));
    assert_eq!(planned.targets.len(), 1, "the isolated side is counted");
}

#[test]
fn namespaces_must_exist_opt_in_and_consent() {
    let mut spec = spec(r#"{"opsToolOutage": {"mode": "Stop"}}"#);
    spec.fault.ops_tool_outage = Some(OpsToolOutage {
        mode: OutageMode::Freeze,
    });
    spec.target.namespaces = vec!["kube-system".into()];
    let reason = |spec: &ExperimentSpec, inventory: &Inventory| {
        plan(spec, inventory, &policy())
            .expect_err("refused")
            .reason()
    };
    assert_eq!(reason(&spec, &inventory()), "ProtectedNamespace");
    spec.target.namespaces = vec!["other".into()];
    assert_eq!(reason(&spec, &inventory()), "NamespaceNotFound");
    let mut inventory = inventory();
    inventory.namespaces.push(NamespaceInfo {
        name: "other".into(),
        ..NamespaceInfo::default()
    });
    assert_eq!(reason(&spec, &inventory), "NamespaceNotOptedIn");
    inventory.namespaces[1].labels = labels(&[(OPT_IN_LABEL, OPT_IN_VALUE)]);
    assert_eq!(reason(&spec, &inventory), "NamespaceNotConsented");
}

/// A network loss from zone-a to zone-b and zone-c of `percent`, with `extra` fields.
fn loss(percent: u32, extra: &str) -> ExperimentSpec {
    spec(&format!(
        r#"{{"networkLoss": {{"left": {{"zones": ["zone-a"]}}, "right": {{"zones": ["zone-b", "zone-c"]}},
            "direction": "LeftToRight", "percent": {percent}{extra}}}}}"#
    ))
}

#[test]
fn a_loss_plans_the_partitions_actions_each_dropping_its_share() {
    let planned = plan(&loss(30, ""), &inventory(), &policy()).expect("plan");
    let mut as_partition = loss(30, "");
    let l = as_partition.fault.network_loss.take().expect("loss");
    as_partition.fault.network_partition = Some(NetworkPartition {
        left: l.left,
        right: l.right,
        direction: l.direction,
    });
    let cut = plan(&as_partition, &inventory(), &policy()).expect("plan");
    // The same nodes, keys, peers and directions as the partition, each cut at 30 %.
    assert_eq!(planned.targets, cut.targets);
    assert_eq!(planned.work.len(), cut.work.len());
    for (lossy, full) in planned.work.iter().zip(&cut.work) {
        let (mut lossy_cut, full_cut) = (
            lossy.action.network.clone().expect("network"),
            full.action.network.clone().expect("network"),
        );
        assert_eq!(lossy_cut.loss_percent, Some(30));
        assert_eq!(full_cut.loss_percent, None);
        lossy_cut.loss_percent = None;
        assert_eq!(
            (&lossy.node, &lossy.key, lossy_cut),
            (&full.node, &full.key, full_cut)
        );
    }
    // Dropping every packet is the partition itself.
    let all = plan(&loss(100, ""), &inventory(), &policy()).expect("plan");
    assert_eq!(all.work, cut.work);
}

#[test]
fn a_loss_refuses_latency_and_shares_that_are_not_percent() {
    let err =
        plan(&loss(30, r#", "delay": "100ms""#), &inventory(), &policy()).expect_err("no netem");
    assert_eq!(err.field(), "spec.fault.networkLoss.delay");
    assert_eq!(err.reason(), "Unsupported");
    assert!(
        err.to_string()
            .starts_with("latency needs the kernel's netem qdisc"),
        "{err}"
    );
    for bad in [0, 101] {
        let err = plan(&loss(bad, ""), &inventory(), &policy()).expect_err("not a percent");
        assert_eq!(err.field(), "spec.fault.networkLoss.percent", "{bad}");
    }
    // Its sides are named as its own in refusals.
    let empty = spec(
        r#"{"networkLoss": {"left": {"zones": ["zone-x"]}, "right": {"zones": ["zone-b"]}, "percent": 5}}"#,
    );
    let err = plan(&empty, &inventory(), &policy()).expect_err("empty side");
    assert_eq!(err.field(), "spec.fault.networkLoss.left");
}
