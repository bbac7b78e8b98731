//! Planning, without I/O: from an experiment and the Pods, Nodes and Namespaces listed for it,
//! the targets (after the safety rules) and the work that carries the fault out: node-level
//! [`Injection`]s for the agents, and one-shot pod deletions for the operator.
//!
//! Safety rules enforced here, whatever the manifest says:
//! - the rules of [`firedrill_core::api`]'s protection module (the agent applies them too):
//!   protected namespaces and nodes are never targets; a target namespace must exist, opt in,
//!   and be the Experiment's own or consent to it; a fault on whole nodes needs the grant on
//!   the Experiment's namespace;
//! - a plan over the blast radius (count or percent) is refused, never trimmed.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use firedrill_core::api::{
    BlackoutMode, DiskLossMode, Duration, Experiment, ExperimentSpec, FaultKind, Heartbeat,
    Injection, InjectionSpec, LabelSelector, NetworkCut, NodeAction, OutageMode,
    PartitionDirection, PeerGroup, PodRef, ProcessAction, ProcessSignal, VolumeAction, consents,
    grants_node_faults, opted_in, protected_namespaces,
};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::ResourceExt;
use kube::api::ObjectMeta;

use crate::{
    CONSENT_ANNOTATION, EXPERIMENT_LABEL, EXPERIMENT_UID_LABEL, FIELD_MANAGER, MANAGED_BY_LABEL,
    NODE_FAULT_GRANT_LABEL, NODE_FAULT_GRANT_VALUE, NODE_LABEL, OPT_IN_LABEL, OPT_IN_VALUE,
    PLAN_SIZE_ANNOTATION, ZONE_LABEL,
};

/// The most pods one Injection may name (the CRD's limit).
const MAX_PODS_PER_INJECTION: usize = 500;
/// The most CIDRs one Injection may drop (the CRD's limit).
const MAX_CIDRS_PER_INJECTION: usize = 1000;

/// What the operator protects beyond the manifest's own checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Namespaces that are never targets.
    pub protected_namespaces: BTreeSet<String>,
}

impl Policy {
    /// The built-in protected namespaces plus the operator's own.
    pub fn new(operator_namespace: &str) -> Self {
        Self {
            protected_namespaces: protected_namespaces(operator_namespace),
        }
    }
}

/// What was listed for planning: the experiment's own namespace, its target namespaces
/// (those that exist), every node, and every pod of the target namespaces.
#[derive(Clone, Debug, Default)]
pub struct Candidates {
    /// The Experiment's own namespace (its labels say whether node faults are granted).
    pub source: Namespace,
    pub namespaces: Vec<Namespace>,
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
}

/// Why a plan was refused. Each names the spec field at fault for the `Invalid` condition.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("namespace {namespace} is protected and never a target")]
    ProtectedNamespace { index: usize, namespace: String },
    #[error("namespace {namespace} does not exist")]
    NamespaceNotFound { index: usize, namespace: String },
    #[error(
        "namespace {namespace} has not opted in to chaos: label it {OPT_IN_LABEL}={OPT_IN_VALUE}"
    )]
    NotOptedIn { index: usize, namespace: String },
    #[error(
        "namespace {namespace} does not let Experiments of {from} target it: its annotation \
         {CONSENT_ANNOTATION} must list {from}"
    )]
    NotConsented {
        index: usize,
        namespace: String,
        from: String,
    },
    #[error(
        "{fault} acts on whole nodes (every tenant's pods on them), which needs a cluster-level \
         grant: label namespace {from} {NODE_FAULT_GRANT_LABEL}={NODE_FAULT_GRANT_VALUE}"
    )]
    NoNodeFaultGrant { fault: &'static str, from: String },
    #[error("the experiment has no single fault")]
    NoFault,
    #[error("{fault} acts on the pods picked by target.selector, which is missing")]
    NoSelector { fault: &'static str },
    #[error("zone {zone} has no node that may be a target{excluded}")]
    EmptyZone { zone: String, excluded: String },
    #[error("the {side} side of the partition matches no pod in the target namespaces")]
    EmptySide { side: &'static str },
    #[error("pod {pod} is on both sides of the partition")]
    BothSides { pod: String },
    #[error("pod {pod}: {why}")]
    Volume { pod: String, why: String },
    #[error("the fault selects nothing: {what}")]
    NoTargets { what: String },
    #[error(
        "{count} target(s) ({count} of {candidates} candidates) exceed the blast radius (at most \
         {max_targets} and {max_percent}%): {list}"
    )]
    BlastRadius {
        count: usize,
        candidates: usize,
        max_targets: u32,
        max_percent: u32,
        list: String,
    },
    #[error("node {node} would get {count} {what} in one injection, more than {max}")]
    TooLarge {
        node: String,
        what: &'static str,
        count: usize,
        max: usize,
    },
    #[error("the Experiment has no {0} yet")]
    Unsaved(&'static str),
}

impl PlanError {
    /// The spec field to blame, as a path from `spec`.
    pub fn field(&self) -> String {
        match self {
            Self::ProtectedNamespace { index, .. }
            | Self::NamespaceNotFound { index, .. }
            | Self::NotOptedIn { index, .. }
            | Self::NotConsented { index, .. } => format!("spec.target.namespaces[{index}]"),
            Self::NoNodeFaultGrant { .. } => "spec.fault".into(),
            Self::NoFault => "spec.fault".into(),
            Self::NoSelector { .. } | Self::NoTargets { .. } => "spec.target.selector".into(),
            Self::EmptyZone { .. } => "spec.fault.zoneBlackout".into(),
            Self::EmptySide { side } => format!("spec.fault.networkPartition.{side}"),
            Self::BothSides { .. } => "spec.fault.networkPartition".into(),
            Self::Volume { .. } => "spec.fault.diskLoss.volume".into(),
            Self::BlastRadius { .. } => "spec.blastRadius".into(),
            Self::TooLarge { .. } => "spec.fault".into(),
            Self::Unsaved(_) => "metadata".into(),
        }
    }

    /// A CamelCase reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ProtectedNamespace { .. } => "ProtectedNamespace",
            Self::NamespaceNotFound { .. } => "NamespaceNotFound",
            Self::NotOptedIn { .. } => "NamespaceNotOptedIn",
            Self::NotConsented { .. } => "NamespaceNotConsented",
            Self::NoNodeFaultGrant { .. } => "NodeFaultNotGranted",
            Self::NoFault => "NoFault",
            Self::NoSelector { .. } => "NoSelector",
            Self::EmptyZone { .. } => "EmptyZone",
            Self::EmptySide { .. } => "EmptyPartitionSide",
            Self::BothSides { .. } => "PodOnBothSides",
            Self::Volume { .. } => "VolumeNotFound",
            Self::NoTargets { .. } => "NoTargets",
            Self::BlastRadius { .. } => "BlastRadiusExceeded",
            Self::TooLarge { .. } => "InjectionTooLarge",
            Self::Unsaved(_) => "Unsaved",
        }
    }
}

/// One node-level action for one node's agent; becomes one Injection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeWork {
    pub node: String,
    /// Distinguishes several actions on one node (`processes`, `network`, `left`, ...).
    pub key: String,
    pub action: NodeAction,
}

/// A pod the operator deletes itself, once, at injection (pod kill, disk wipe).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodDeletion {
    pub pod: PodRef,
    pub grace_period_seconds: u32,
    /// PersistentVolumeClaims deleted before the pod, so its replacement gets a new volume.
    pub claims: Vec<String>,
}

/// What an experiment's fault does, before doing it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Targets as counted for the blast radius: `node/<name>` or `<namespace>/<pod>`.
    pub targets: Vec<String>,
    /// How many candidates the percentage is of.
    pub candidates: usize,
    /// What would have been hit but is protected, and why.
    pub excluded: Vec<String>,
    /// Node-level actions, carried out by the agents through Injections.
    pub work: Vec<NodeWork>,
    /// One-shot pod deletions, carried out by the operator.
    pub deletions: Vec<PodDeletion>,
}

impl Plan {
    /// A one-line summary for conditions, Events and the dry run.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} of {} candidate(s): {}",
            self.targets.len(),
            self.candidates,
            self.targets.join(", ")
        );
        if !self.excluded.is_empty() {
            text.push_str(&format!("; protected: {}", self.excluded.join(", ")));
        }
        text
    }
}

/// Whether the fault is carried out by node agents through Injections (and so reverted by
/// deleting them), rather than by one-shot deletions that need no revert.
pub fn uses_injections(spec: &ExperimentSpec) -> bool {
    match spec.fault.kind() {
        Some(FaultKind::PodKill(_)) | None => false,
        Some(FaultKind::DiskLoss(d)) => d.mode != DiskLossMode::Wipe,
        Some(_) => true,
    }
}

/// Why a node is never a target, if it is protected.
pub fn node_protection(node: &Node) -> Option<&'static str> {
    firedrill_core::api::node_protection(node.labels())
}

/// A pod that is there to be hit: scheduled, running or about to, not being deleted.
fn is_live(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none()
        && pod.metadata.uid.is_some()
        && pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some()
        && !matches!(phase, Some("Succeeded" | "Failed"))
}

fn pod_node(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
}

fn pod_ref(pod: &Pod) -> PodRef {
    PodRef {
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        uid: pod.uid().unwrap_or_default(),
    }
}

fn pod_id(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    selector.matches(labels)
}

/// The pods and nodes a plan may touch, after the namespace and node rules.
struct Scope<'a> {
    /// Nodes that may be part of a fault, by name.
    nodes: BTreeMap<&'a str, &'a Node>,
    /// Live pods of the target namespaces on those nodes.
    pods: Vec<&'a Pod>,
    /// What was left out, and why.
    excluded: Vec<String>,
}

fn scope<'a>(
    spec: &ExperimentSpec,
    candidates: &'a Candidates,
    policy: &Policy,
) -> Result<Scope<'a>, PlanError> {
    for (index, namespace) in spec.target.namespaces.iter().enumerate() {
        if policy.protected_namespaces.contains(namespace) {
            return Err(PlanError::ProtectedNamespace {
                index,
                namespace: namespace.clone(),
            });
        }
        let Some(found) = candidates
            .namespaces
            .iter()
            .find(|n| n.metadata.name.as_ref() == Some(namespace))
        else {
            return Err(PlanError::NamespaceNotFound {
                index,
                namespace: namespace.clone(),
            });
        };
        if !opted_in(found.labels()) {
            return Err(PlanError::NotOptedIn {
                index,
                namespace: namespace.clone(),
            });
        }
        let from = candidates.source.name_any();
        if !consents(namespace, found.annotations(), &from) {
            return Err(PlanError::NotConsented {
                index,
                namespace: namespace.clone(),
                from,
            });
        }
    }
    let mut excluded = Vec::new();
    let mut nodes = BTreeMap::new();
    for node in &candidates.nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        match node_protection(node) {
            Some(why) => excluded.push(format!("node/{name} ({why})")),
            None => {
                nodes.insert(name, node);
            }
        }
    }
    let mut pods = Vec::new();
    for pod in &candidates.pods {
        let in_target = pod
            .namespace()
            .is_some_and(|ns| spec.target.namespaces.contains(&ns));
        if !in_target || !is_live(pod) {
            continue;
        }
        if nodes.contains_key(pod_node(pod)) {
            pods.push(pod);
        } else {
            excluded.push(format!(
                "{} (on node {}, which is protected or unknown)",
                pod_id(pod),
                pod_node(pod)
            ));
        }
    }
    pods.sort_by_key(|p| pod_id(p));
    Ok(Scope {
        nodes,
        pods,
        excluded,
    })
}

/// Plans `spec`'s fault. Refuses, never trims, what the safety rules or the blast radius
/// forbid.
pub fn plan(
    spec: &ExperimentSpec,
    candidates: &Candidates,
    policy: &Policy,
) -> Result<Plan, PlanError> {
    let scope = scope(spec, candidates, policy)?;
    let kind = spec.fault.kind().ok_or(PlanError::NoFault)?;
    let selected = || -> Result<Vec<&Pod>, PlanError> {
        let selector = spec.target.selector.as_ref().ok_or(PlanError::NoSelector {
            fault: spec.fault.name(),
        })?;
        Ok(scope
            .pods
            .iter()
            .copied()
            .filter(|p| matches(selector, p.labels()))
            .collect())
    };
    let mut plan = Plan {
        excluded: scope.excluded.clone(),
        ..Plan::default()
    };
    match kind {
        FaultKind::ZoneBlackout(b) => {
            let zoned: Vec<&Node> = scope
                .nodes
                .values()
                .copied()
                .filter(|n| n.labels().contains_key(ZONE_LABEL))
                .collect();
            plan.candidates = zoned.len();
            for zone in b.all_zones() {
                let in_zone: Vec<&Node> = zoned
                    .iter()
                    .copied()
                    .filter(|n| n.labels().get(ZONE_LABEL).map(String::as_str) == Some(zone))
                    .collect();
                if in_zone.is_empty() {
                    let excluded = candidates
                        .nodes
                        .iter()
                        .filter(|n| n.labels().get(ZONE_LABEL).map(String::as_str) == Some(zone))
                        .map(|n| n.name_any())
                        .collect::<Vec<_>>();
                    return Err(PlanError::EmptyZone {
                        zone: zone.to_owned(),
                        excluded: if excluded.is_empty() {
                            String::new()
                        } else {
                            format!(" (protected: {})", excluded.join(", "))
                        },
                    });
                }
                for node in in_zone {
                    let name = node.name_any();
                    plan.targets.push(format!("node/{name}"));
                    let pods: Vec<PodRef> = scope
                        .pods
                        .iter()
                        .filter(|p| pod_node(p) == name)
                        .map(|p| pod_ref(p))
                        .collect();
                    if !pods.is_empty() {
                        let signal = match b.mode {
                            BlackoutMode::Kill => ProcessSignal::Kill,
                            BlackoutMode::Freeze => ProcessSignal::Freeze,
                        };
                        plan.work.push(processes(&name, "processes", pods, signal)?);
                    }
                    if b.cut_network {
                        plan.work.push(NodeWork {
                            node: name.clone(),
                            key: "network".into(),
                            action: isolate(vec![]),
                        });
                    }
                }
            }
        }
        FaultKind::NetworkPartition(np) => {
            let left = side(&scope, &np.left);
            let right = side(&scope, &np.right);
            if let Some(pod) = left.pods.iter().find(|p| right.pods.contains(p)) {
                return Err(PlanError::BothSides { pod: pod_id(pod) });
            }
            if left.pods.is_empty() && left.cidrs.is_empty() {
                return Err(PlanError::EmptySide { side: "left" });
            }
            if right.pods.is_empty() && right.cidrs.is_empty() {
                return Err(PlanError::EmptySide { side: "right" });
            }
            // Left cannot reach right: left drops what it sends to right, and right drops
            // what arrives from left (the lab does the same).
            let (left_to, left_from, right_to, right_from) = match np.direction {
                PartitionDirection::Both => (true, true, true, true),
                PartitionDirection::LeftToRight => (true, false, false, true),
                PartitionDirection::RightToLeft => (false, true, true, false),
            };
            for (name, group, peers, to, from) in [
                ("left", &left, &right, left_to, left_from),
                ("right", &right, &left, right_to, right_from),
            ] {
                let by_node = group_by_node(&group.pods);
                for (node, pods) in by_node {
                    let drop_to = if to { peers.cidrs.clone() } else { vec![] };
                    let drop_from = if from { peers.cidrs.clone() } else { vec![] };
                    let most = drop_to.len().max(drop_from.len());
                    if most > MAX_CIDRS_PER_INJECTION {
                        return Err(PlanError::TooLarge {
                            node: node.to_owned(),
                            what: "CIDRs",
                            count: most,
                            max: MAX_CIDRS_PER_INJECTION,
                        });
                    }
                    check_pods(node, pods.len())?;
                    plan.work.push(NodeWork {
                        node: node.to_owned(),
                        key: name.into(),
                        action: network(NetworkCut {
                            pods,
                            all: false,
                            drop_to,
                            drop_from,
                        }),
                    });
                }
            }
            // The isolated side is what the blast radius counts, as in the lab.
            plan.targets = left.pods.iter().map(|p| pod_id(p)).collect();
            plan.candidates = scope.pods.len();
            if plan.targets.is_empty() {
                return Err(PlanError::EmptySide { side: "left" });
            }
        }
        FaultKind::DiskLoss(d) => {
            plan.candidates = scope.pods.iter().filter(|p| !claims(p).is_empty()).count();
            for pod in selected()? {
                let (volume, claim) = disk_of(pod, d.volume.as_deref())?;
                plan.targets.push(pod_id(pod));
                match d.mode {
                    DiskLossMode::Wipe => plan.deletions.push(PodDeletion {
                        pod: pod_ref(pod),
                        grace_period_seconds: 0,
                        claims: vec![claim],
                    }),
                    DiskLossMode::ReadOnly => plan.work.push(NodeWork {
                        node: pod_node(pod).to_owned(),
                        key: format!("volume-{}-{volume}", pod.name_any()),
                        action: NodeAction {
                            network: None,
                            processes: None,
                            read_only_volume: Some(VolumeAction {
                                pod: pod_ref(pod),
                                volume,
                            }),
                        },
                    }),
                }
            }
        }
        FaultKind::OpsToolOutage(o) => {
            plan.candidates = scope.pods.len();
            let picked = selected()?;
            plan.targets = picked.iter().map(|p| pod_id(p)).collect();
            for (node, pods) in group_by_node(&picked) {
                check_pods(node, pods.len())?;
                plan.work.push(match o.mode {
                    OutageMode::Stop => processes(node, "processes", pods, ProcessSignal::Kill)?,
                    OutageMode::Freeze => {
                        processes(node, "processes", pods, ProcessSignal::Freeze)?
                    }
                    OutageMode::Isolate => NodeWork {
                        node: node.to_owned(),
                        key: "network".into(),
                        action: isolate(pods),
                    },
                });
            }
        }
        FaultKind::PodKill(k) => {
            plan.candidates = scope.pods.len();
            for pod in selected()? {
                plan.targets.push(pod_id(pod));
                plan.deletions.push(PodDeletion {
                    pod: pod_ref(pod),
                    grace_period_seconds: k.grace_period_seconds,
                    claims: vec![],
                });
            }
        }
    }
    if plan.targets.is_empty() {
        return Err(PlanError::NoTargets {
            what: format!(
                "no live pod of {} on an unprotected node matches",
                spec.target.namespaces.join(", ")
            ),
        });
    }
    if plan.work.iter().any(|w| w.action.acts_on_node())
        && !grants_node_faults(candidates.source.labels())
    {
        return Err(PlanError::NoNodeFaultGrant {
            fault: spec.fault.name(),
            from: candidates.source.name_any(),
        });
    }
    check_blast_radius(spec, &plan)?;
    Ok(plan)
}

/// Refuses a plan over either cap. The percentage is compared exactly (no rounding).
pub fn check_blast_radius(spec: &ExperimentSpec, plan: &Plan) -> Result<(), PlanError> {
    let radius = &spec.blast_radius;
    let count = plan.targets.len();
    let over_count = count > radius.max_targets as usize;
    let over_percent = count * 100 > radius.max_percent as usize * plan.candidates.max(1);
    if over_count || over_percent {
        return Err(PlanError::BlastRadius {
            count,
            candidates: plan.candidates,
            max_targets: radius.max_targets,
            max_percent: radius.max_percent,
            list: plan.targets.join(", "),
        });
    }
    Ok(())
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
        drop_to: vec![],
        drop_from: vec![],
    })
}

fn check_pods(node: &str, count: usize) -> Result<(), PlanError> {
    if count > MAX_PODS_PER_INJECTION {
        return Err(PlanError::TooLarge {
            node: node.to_owned(),
            what: "pods",
            count,
            max: MAX_PODS_PER_INJECTION,
        });
    }
    Ok(())
}

fn processes(
    node: &str,
    key: &str,
    pods: Vec<PodRef>,
    signal: ProcessSignal,
) -> Result<NodeWork, PlanError> {
    check_pods(node, pods.len())?;
    Ok(NodeWork {
        node: node.to_owned(),
        key: key.to_owned(),
        action: NodeAction {
            network: None,
            processes: Some(ProcessAction { pods, signal }),
            read_only_volume: None,
        },
    })
}

fn group_by_node<'a>(pods: &[&'a Pod]) -> BTreeMap<&'a str, Vec<PodRef>> {
    let mut by_node: BTreeMap<&str, Vec<PodRef>> = BTreeMap::new();
    for pod in pods {
        by_node.entry(pod_node(pod)).or_default().push(pod_ref(pod));
    }
    by_node
}

/// One side of a partition: the pods that get rules, and the addresses of the side.
struct Side<'a> {
    pods: Vec<&'a Pod>,
    cidrs: Vec<String>,
}

fn side<'a>(scope: &Scope<'a>, group: &PeerGroup) -> Side<'a> {
    let mut pods: Vec<&Pod> = Vec::new();
    let mut cidrs: BTreeSet<String> = BTreeSet::new();
    if !group.zones.is_empty() {
        for node in scope.nodes.values() {
            let zone = node.labels().get(ZONE_LABEL);
            if !zone.is_some_and(|z| group.zones.contains(z)) {
                continue;
            }
            let name = node.name_any();
            cidrs.extend(node_cidrs(node));
            pods.extend(scope.pods.iter().copied().filter(|p| pod_node(p) == name));
        }
    }
    if let Some(selector) = &group.selector {
        for pod in scope.pods.iter().copied() {
            if matches(selector, pod.labels()) {
                pods.push(pod);
                cidrs.extend(pod_cidrs(pod));
            }
        }
    }
    pods.sort_by_key(|p| pod_id(p));
    pods.dedup_by_key(|p| pod_id(p));
    Side {
        pods,
        cidrs: cidrs.into_iter().collect(),
    }
}

fn host_cidr(ip: &str) -> String {
    if ip.contains(':') {
        format!("{ip}/128")
    } else {
        format!("{ip}/32")
    }
}

/// A node's internal addresses and its pod ranges.
fn node_cidrs(node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(status) = &node.status {
        for address in status.addresses.iter().flatten() {
            if address.type_ == "InternalIP" {
                out.push(host_cidr(&address.address));
            }
        }
    }
    if let Some(spec) = &node.spec {
        out.extend(spec.pod_cidrs.iter().flatten().cloned());
        out.extend(spec.pod_cidr.iter().cloned());
    }
    out
}

fn pod_cidrs(pod: &Pod) -> Vec<String> {
    let Some(status) = &pod.status else {
        return vec![];
    };
    // A host-network pod's address is its node's: cutting it would cut the node.
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    if host_network {
        return vec![];
    }
    let mut ips: BTreeSet<String> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .collect();
    ips.extend(status.pod_ip.iter().cloned());
    ips.iter().map(|ip| host_cidr(ip)).collect()
}

/// The pod's PersistentVolumeClaims: (volume name, claim name).
fn claims(pod: &Pod) -> Vec<(String, String)> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            v.persistent_volume_claim
                .as_ref()
                .map(|c| (v.name.clone(), c.claim_name.clone()))
        })
        .collect()
}

/// The volume that holds a pod's data: the one named, or its only claim.
fn disk_of(pod: &Pod, named: Option<&str>) -> Result<(String, String), PlanError> {
    let claims = claims(pod);
    let err = |why: String| PlanError::Volume {
        pod: pod_id(pod),
        why,
    };
    match named {
        Some(name) => claims
            .into_iter()
            .find(|(volume, _)| volume == name)
            .ok_or_else(|| err(format!("has no volume {name} backed by a claim"))),
        None => match claims.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(err("has no PersistentVolumeClaim volume".into())),
            more => Err(err(format!(
                "has {} claim volumes ({}); name one in fault.diskLoss.volume",
                more.len(),
                more.iter()
                    .map(|(v, _)| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        },
    }
}

/// 64-bit FNV-1a: a hash that is the same in every build, for object names.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hash ^= 0xff;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        for byte in part.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// Lowercase letters, digits and single dashes, at most `max` characters, no dash at
/// either end.
fn dns_part(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '-'
        };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
        if out.len() >= max {
            break;
        }
    }
    out.trim_matches('-').to_owned()
}

/// The Injection's name: readable (experiment and node), unique per experiment UID, node and
/// action key, and the same every time it is computed, so creating it again is a no-op.
pub fn injection_name(experiment: &str, uid: &str, node: &str, key: &str) -> String {
    let hash = fnv1a(&[uid, node, key]);
    let mut parts = vec![dns_part(experiment, 40), dns_part(node, 20)];
    parts.retain(|p| !p.is_empty());
    parts.push(format!("{:012x}", hash & 0xffff_ffff_ffff));
    parts.join("-")
}

/// Whether `value` is a valid label value (63 characters of `[A-Za-z0-9._-]`, alphanumeric
/// at both ends).
pub fn is_label_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && value
            .chars()
            .next()
            .is_none_or(|c| c.is_ascii_alphanumeric())
        && value
            .chars()
            .last()
            .is_none_or(|c| c.is_ascii_alphanumeric())
}

/// How long the Injections of one injection live on their nodes.
#[derive(Clone, Debug)]
pub struct Lifetime {
    /// Every Injection's expiry: the engine's safety net.
    pub expires_at: DateTime<Utc>,
    /// The fault's duration: each agent reverts at its own apply time plus this (plus
    /// [`firedrill_core::api::HOLD_GRACE`]) at the latest, on its own clock, so a node cut off by the fault ends
    /// it on time without seeing the revert asked for.
    pub hold_for: Duration,
    /// The driver's heartbeat (a leader-elected operator's Lease): while it is not renewed
    /// the agents revert within its timeout.
    pub heartbeat: Option<Heartbeat>,
}

/// The Injections that carry out `plan` for `experiment`, in firedrill's own `namespace`
/// (the only one the agents follow), living as `lifetime` says, and labelled so the
/// experiment's can be listed and each agent can watch its node's. No owner reference: it
/// cannot cross namespaces. The Experiment's finalizer deletes them, and an Injection left
/// behind anyway still ends at its expiry on its agent's own timer.
pub fn injections(
    experiment: &Experiment,
    namespace: &str,
    plan: &Plan,
    lifetime: &Lifetime,
) -> Result<Vec<Injection>, PlanError> {
    let name = experiment
        .metadata
        .name
        .clone()
        .ok_or(PlanError::Unsaved("name"))?;
    let experiment_namespace = experiment
        .metadata
        .namespace
        .clone()
        .ok_or(PlanError::Unsaved("namespace"))?;
    let uid = experiment
        .metadata
        .uid
        .clone()
        .ok_or(PlanError::Unsaved("uid"))?;
    let size = plan.work.len().to_string();
    Ok(plan
        .work
        .iter()
        .map(|work| {
            let mut labels = BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), FIELD_MANAGER.to_owned()),
                (EXPERIMENT_UID_LABEL.to_owned(), uid.clone()),
            ]);
            if is_label_value(&name) {
                labels.insert(EXPERIMENT_LABEL.to_owned(), name.clone());
            }
            if is_label_value(&work.node) {
                labels.insert(NODE_LABEL.to_owned(), work.node.clone());
            }
            Injection {
                metadata: ObjectMeta {
                    name: Some(injection_name(&name, &uid, &work.node, &work.key)),
                    namespace: Some(namespace.to_owned()),
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([(
                        PLAN_SIZE_ANNOTATION.to_owned(),
                        size.clone(),
                    )])),
                    ..ObjectMeta::default()
                },
                spec: InjectionSpec {
                    node_name: work.node.clone(),
                    experiment: format!("{experiment_namespace}/{name}"),
                    action: work.action.clone(),
                    expires_at: lifetime.expires_at,
                    hold_for: Some(lifetime.hold_for),
                    heartbeat: lifetime.heartbeat.clone(),
                },
                status: None,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests;
