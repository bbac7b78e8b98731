//! What each fault means: its targets, its candidates and its actions, per node.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{
    BlackoutMode, DiskLoss, DiskLossMode, ExperimentSpec, LATENCY_REFUSED, NetworkCut, NetworkLoss,
    NetworkPartition, NodeAction, OpsToolOutage, OutageMode, PartitionDirection, PeerGroup,
    PodKill, PodRef, ProcessAction, ProcessSignal, TrafficDirection, VolumeAction, ZoneBlackout,
};

use super::error::PlanError;
use super::inventory::{ClaimVolume, Inventory, PodInfo};
use super::outcome::{
    FaultPlan, MAX_PEERS_PER_CUT, MAX_PODS_PER_ACTION, NodeWork, PodDeletion, Target,
};
use super::scope::Scope;

/// A zone blackout hits whole nodes: every process on them is killed (kept down, as the
/// power is off) or frozen, and with `cutNetwork` the node itself is cut off.
pub(super) fn zone_blackout(
    b: &ZoneBlackout,
    scope: &Scope<'_>,
    inventory: &Inventory,
) -> Result<FaultPlan, PlanError> {
    let zoned: Vec<&str> = scope
        .nodes
        .values()
        .filter(|n| n.zone().is_some())
        .map(|n| n.name.as_str())
        .collect();
    let mut plan = FaultPlan {
        candidates: zoned.len(),
        ..FaultPlan::default()
    };
    let signal = match b.mode {
        BlackoutMode::Kill => ProcessSignal::Kill,
        BlackoutMode::Freeze => ProcessSignal::Freeze,
    };
    for zone in b.all_zones() {
        let in_zone: Vec<&str> = scope
            .nodes
            .values()
            .filter(|n| n.zone() == Some(zone))
            .map(|n| n.name.as_str())
            .collect();
        if in_zone.is_empty() {
            let protected: Vec<&str> = inventory
                .nodes
                .iter()
                .filter(|n| n.zone() == Some(zone))
                .map(|n| n.name.as_str())
                .collect();
            return Err(PlanError::EmptyZone {
                zone: zone.to_owned(),
                excluded: if protected.is_empty() {
                    String::new()
                } else {
                    format!(" (protected: {})", protected.join(", "))
                },
            });
        }
        for node in in_zone {
            plan.targets.push(Target::Node(node.to_owned()));
            let pods: Vec<PodRef> = scope.pods_on(node).map(|p| p.pod.clone()).collect();
            if !pods.is_empty() {
                plan.work.push(processes(node, pods, signal)?);
            }
            if b.cut_network {
                plan.work.push(NodeWork {
                    node: node.to_owned(),
                    key: "network".into(),
                    action: isolate(vec![]),
                });
            }
        }
    }
    Ok(plan)
}

/// One side of a partition: the pods that get rules, and the addresses that stand for it.
struct Side<'a> {
    pods: Vec<&'a PodInfo>,
    cidrs: Vec<String>,
}

/// A side's pods and addresses: a zone brings its nodes' addresses and every pod on them; a
/// selector brings the pods it picks and their own addresses.
fn side<'a>(scope: &Scope<'a>, group: &PeerGroup) -> Side<'a> {
    let mut pods: Vec<&PodInfo> = Vec::new();
    let mut cidrs: BTreeSet<String> = BTreeSet::new();
    for node in scope.nodes.values() {
        if node
            .zone()
            .is_some_and(|z| group.zones.iter().any(|g| g == z))
        {
            cidrs.extend(node.cidrs.iter().cloned());
            pods.extend(scope.pods_on(&node.name));
        }
    }
    if let Some(selector) = &group.selector {
        for pod in scope.pods.iter().copied() {
            if selector.matches(&pod.labels) {
                pods.push(pod);
                cidrs.extend(pod.cidrs.iter().cloned());
            }
        }
    }
    pods.sort_by_key(|p| p.id());
    pods.dedup_by_key(|p| p.id());
    Side {
        pods,
        cidrs: cidrs.into_iter().collect(),
    }
}

/// A partition hits the pods of its left side (the isolated side): each side's pods drop
/// the other side's addresses, in the direction asked. "Left cannot reach right" means left
/// drops what it sends to right, and right drops what arrives from left.
pub(super) fn network_partition(
    np: &NetworkPartition,
    scope: &Scope<'_>,
) -> Result<FaultPlan, PlanError> {
    split(
        Split {
            fault: "networkPartition",
            left: &np.left,
            right: &np.right,
            direction: np.direction,
            loss_percent: None,
        },
        scope,
    )
}

/// A network loss is a partition that drops only `percent` of the packets: the same sides,
/// directions and actions, each cut carrying the share. 100 is a partition. Latency is
/// refused here too (not only by validation), so no platform ever holds a fault without it.
pub(super) fn network_loss(nl: &NetworkLoss, scope: &Scope<'_>) -> Result<FaultPlan, PlanError> {
    if nl.delay.is_some() {
        return Err(PlanError::Unsupported {
            field: "spec.fault.networkLoss.delay",
            why: LATENCY_REFUSED,
        });
    }
    if !(1..=100).contains(&nl.percent) {
        return Err(PlanError::Unsupported {
            field: "spec.fault.networkLoss.percent",
            why: "percent must be from 1 to 100",
        });
    }
    split(
        Split {
            fault: "networkLoss",
            left: &nl.left,
            right: &nl.right,
            direction: nl.direction,
            loss_percent: (nl.percent < 100).then_some(nl.percent),
        },
        scope,
    )
}

/// Two peer groups whose traffic is cut (all of it, or a share), as a fault names them.
struct Split<'a> {
    fault: &'static str,
    left: &'a PeerGroup,
    right: &'a PeerGroup,
    direction: PartitionDirection,
    loss_percent: Option<u32>,
}

fn split(s: Split<'_>, scope: &Scope<'_>) -> Result<FaultPlan, PlanError> {
    let fault = s.fault;
    let left = side(scope, s.left);
    let right = side(scope, s.right);
    if let Some(pod) = left.pods.iter().find(|p| right.pods.contains(p)) {
        return Err(PlanError::BothSides {
            fault,
            pod: pod.id(),
        });
    }
    if left.pods.is_empty() && left.cidrs.is_empty() {
        return Err(PlanError::EmptySide {
            fault,
            side: "left",
        });
    }
    if right.pods.is_empty() && right.cidrs.is_empty() {
        return Err(PlanError::EmptySide {
            fault,
            side: "right",
        });
    }
    let (left_direction, right_direction) = match s.direction {
        PartitionDirection::Both => (TrafficDirection::Both, TrafficDirection::Both),
        PartitionDirection::LeftToRight => (TrafficDirection::Egress, TrafficDirection::Ingress),
        PartitionDirection::RightToLeft => (TrafficDirection::Ingress, TrafficDirection::Egress),
    };
    let mut plan = FaultPlan::default();
    for (key, group, peers, direction) in [
        ("left", &left, &right, left_direction),
        ("right", &right, &left, right_direction),
    ] {
        for (node, pods) in by_node(&group.pods) {
            if peers.cidrs.len() > MAX_PEERS_PER_CUT {
                return Err(PlanError::TooLarge {
                    node: node.to_owned(),
                    what: "CIDRs",
                    count: peers.cidrs.len(),
                    max: MAX_PEERS_PER_CUT,
                });
            }
            check_pods(node, pods.len())?;
            plan.work.push(NodeWork {
                node: node.to_owned(),
                key: key.into(),
                action: network(NetworkCut {
                    pods,
                    all: false,
                    peers: peers.cidrs.clone(),
                    direction,
                    loss_percent: s.loss_percent,
                }),
            });
        }
    }
    plan.targets = left
        .pods
        .iter()
        .map(|p| Target::Pod(p.pod.clone()))
        .collect();
    plan.candidates = scope.pods.len();
    if plan.targets.is_empty() {
        return Err(PlanError::EmptySide {
            fault,
            side: "left",
        });
    }
    Ok(plan)
}

/// A disk loss hits the selected pods' data volumes: replaced by empty ones (the pod and
/// its claim deleted), or remounted read-only. The candidates are the pods with a claim.
pub(super) fn disk_loss(
    d: &DiskLoss,
    scope: &Scope<'_>,
    spec: &ExperimentSpec,
) -> Result<FaultPlan, PlanError> {
    let mut plan = FaultPlan {
        candidates: scope.pods.iter().filter(|p| !p.claims.is_empty()).count(),
        ..FaultPlan::default()
    };
    for pod in selected(scope, spec)? {
        let disk = disk_of(pod, d.volume.as_deref())?;
        plan.targets.push(Target::Pod(pod.pod.clone()));
        match d.mode {
            DiskLossMode::Wipe => plan.deletions.push(PodDeletion {
                pod: pod.pod.clone(),
                node: pod.node.clone(),
                grace_period_seconds: 0,
                claims: vec![disk.claim.clone()],
            }),
            DiskLossMode::ReadOnly => plan.work.push(NodeWork {
                node: pod.node.clone(),
                key: format!("volume-{}-{}", pod.pod.name, disk.volume),
                action: NodeAction {
                    network: None,
                    processes: None,
                    read_only_volume: Some(VolumeAction {
                        pod: pod.pod.clone(),
                        volume: disk.volume.clone(),
                    }),
                },
            }),
        }
    }
    Ok(plan)
}

/// An ops-tool outage hits the selected pods: scaled to zero (killed and kept down),
/// frozen, or cut off the network.
pub(super) fn ops_tool_outage(
    o: &OpsToolOutage,
    scope: &Scope<'_>,
    spec: &ExperimentSpec,
) -> Result<FaultPlan, PlanError> {
    let picked = selected(scope, spec)?;
    let mut plan = FaultPlan {
        candidates: scope.pods.len(),
        targets: picked.iter().map(|p| Target::Pod(p.pod.clone())).collect(),
        ..FaultPlan::default()
    };
    for (node, pods) in by_node(&picked) {
        plan.work.push(match o.mode {
            OutageMode::Stop => processes(node, pods, ProcessSignal::Kill)?,
            OutageMode::Freeze => processes(node, pods, ProcessSignal::Freeze)?,
            OutageMode::Isolate => {
                check_pods(node, pods.len())?;
                NodeWork {
                    node: node.to_owned(),
                    key: "network".into(),
                    action: isolate(pods),
                }
            }
        });
    }
    Ok(plan)
}

/// A pod kill deletes the selected pods once; they come back as their owners make them.
pub(super) fn pod_kill(
    k: &PodKill,
    scope: &Scope<'_>,
    spec: &ExperimentSpec,
) -> Result<FaultPlan, PlanError> {
    let picked = selected(scope, spec)?;
    Ok(FaultPlan {
        candidates: scope.pods.len(),
        targets: picked.iter().map(|p| Target::Pod(p.pod.clone())).collect(),
        deletions: picked
            .iter()
            .map(|p| PodDeletion {
                pod: p.pod.clone(),
                node: p.node.clone(),
                grace_period_seconds: k.grace_period_seconds,
                claims: vec![],
            })
            .collect(),
        ..FaultPlan::default()
    })
}

/// The pods in scope that `target.selector` picks; a fault on pods needs one.
fn selected<'a>(scope: &Scope<'a>, spec: &ExperimentSpec) -> Result<Vec<&'a PodInfo>, PlanError> {
    let selector = spec.target.selector.as_ref().ok_or(PlanError::NoSelector {
        fault: spec.fault.name(),
    })?;
    Ok(scope
        .pods
        .iter()
        .copied()
        .filter(|p| selector.matches(&p.labels))
        .collect())
}

fn network(cut: NetworkCut) -> NodeAction {
    NodeAction {
        network: Some(cut),
        processes: None,
        read_only_volume: None,
    }
}

/// Drops all traffic of the pods, or of the node itself when `pods` is empty.
pub fn isolate(pods: Vec<PodRef>) -> NodeAction {
    network(NetworkCut {
        pods,
        all: true,
        peers: vec![],
        direction: TrafficDirection::Both,
        loss_percent: None,
    })
}

fn check_pods(node: &str, count: usize) -> Result<(), PlanError> {
    if count > MAX_PODS_PER_ACTION {
        return Err(PlanError::TooLarge {
            node: node.to_owned(),
            what: "pods",
            count,
            max: MAX_PODS_PER_ACTION,
        });
    }
    Ok(())
}

fn processes(node: &str, pods: Vec<PodRef>, signal: ProcessSignal) -> Result<NodeWork, PlanError> {
    check_pods(node, pods.len())?;
    Ok(NodeWork {
        node: node.to_owned(),
        key: "processes".to_owned(),
        action: NodeAction {
            network: None,
            processes: Some(ProcessAction { pods, signal }),
            read_only_volume: None,
        },
    })
}

fn by_node<'a>(pods: &[&'a PodInfo]) -> BTreeMap<&'a str, Vec<PodRef>> {
    let mut grouped: BTreeMap<&str, Vec<PodRef>> = BTreeMap::new();
    for pod in pods {
        grouped
            .entry(pod.node.as_str())
            .or_default()
            .push(pod.pod.clone());
    }
    grouped
}

/// The claim volume that holds a pod's data: the one named, or its only one.
fn disk_of<'a>(pod: &'a PodInfo, named: Option<&str>) -> Result<&'a ClaimVolume, PlanError> {
    let err = |why: String| PlanError::Volume { pod: pod.id(), why };
    match named {
        Some(name) => pod
            .claims
            .iter()
            .find(|c| c.volume == name)
            .ok_or_else(|| err(format!("has no volume {name} backed by a claim"))),
        None => match pod.claims.as_slice() {
            [one] => Ok(one),
            [] => Err(err("has no PersistentVolumeClaim volume".into())),
            more => Err(err(format!(
                "has {} claim volumes ({}); name one in fault.diskLoss.volume",
                more.len(),
                more.iter()
                    .map(|c| c.volume.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        },
    }
}
