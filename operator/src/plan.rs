//! The Kubernetes adapter of the fault planner: from the Pods, Nodes and Namespaces listed
//! for an experiment, the planner's [`Inventory`]; from the planner's [`Plan`], the
//! [`Injection`]s the node agents carry out. What a fault means (targets, actions, blast
//! radius, protection and consent) is decided in [`firedrill_core::planner`], once for the
//! operator and the lab; this module only translates.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use firedrill_core::api::{
    Duration, EXPERIMENT_LABEL, EXPERIMENT_UID_LABEL, Experiment, ExperimentSpec, Heartbeat,
    Injection, InjectionSpec, MANAGED_BY_LABEL, NODE_LABEL,
    OPERATOR_FIELD_MANAGER as FIELD_MANAGER, PLAN_SIZE_ANNOTATION, PodRef, identity_label,
};
use firedrill_core::planner::{self, ClaimVolume, Inventory, NamespaceInfo, NodeInfo, PodInfo};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::ResourceExt;
use kube::api::ObjectMeta;

pub use firedrill_core::api::{injection_name, is_label_value};
pub use firedrill_core::planner::{
    FaultPlan as Plan, NodeWork, PlanError, PodDeletion, Policy, Target, isolate, uses_injections,
};

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

/// Plans `spec`'s fault on the cluster as listed. Refuses, never trims, what the safety
/// rules or the blast radius forbid.
pub fn plan(
    spec: &ExperimentSpec,
    candidates: &Candidates,
    policy: &Policy,
) -> Result<Plan, PlanError> {
    planner::plan(spec, &inventory(candidates), policy)
}

/// The planner's view of what was listed. Pods that are not live are no candidates.
pub fn inventory(candidates: &Candidates) -> Inventory {
    Inventory {
        source: namespace_info(&candidates.source),
        namespaces: candidates.namespaces.iter().map(namespace_info).collect(),
        nodes: candidates.nodes.iter().map(node_info).collect(),
        pods: candidates
            .pods
            .iter()
            .filter(|p| is_live(p))
            .map(pod_info)
            .collect(),
    }
}

/// Why a node is never a target, if it is protected.
pub fn node_protection(node: &Node) -> Option<&'static str> {
    firedrill_core::api::node_protection(node.labels())
}

fn namespace_info(namespace: &Namespace) -> NamespaceInfo {
    NamespaceInfo {
        name: namespace.name_any(),
        labels: namespace.labels().clone(),
        annotations: namespace.annotations().clone(),
    }
}

fn node_info(node: &Node) -> NodeInfo {
    NodeInfo {
        name: node.name_any(),
        labels: node.labels().clone(),
        cidrs: node_cidrs(node),
    }
}

fn pod_info(pod: &Pod) -> PodInfo {
    PodInfo {
        pod: pod_ref(pod),
        node: pod_node(pod).to_owned(),
        labels: pod.labels().clone(),
        cidrs: pod_cidrs(pod),
        claims: claims(pod),
    }
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

/// The pod's volumes backed by PersistentVolumeClaims.
fn claims(pod: &Pod) -> Vec<ClaimVolume> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            v.persistent_volume_claim.as_ref().map(|c| ClaimVolume {
                volume: v.name.clone(),
                claim: c.claim_name.clone(),
            })
        })
        .collect()
}

/// How long the Injections of one injection live on their nodes.
#[derive(Clone, Debug)]
pub struct Lifetime {
    /// Every Injection's expiry: the engine's safety net.
    pub expires_at: DateTime<Utc>,
    /// The fault's duration: each agent reverts at its own apply time plus this (plus
    /// [`firedrill_core::api::HOLD_GRACE`] unless the fault cuts its node off) at the
    /// latest, on its own clock, so a node cut off by the fault ends it on time without
    /// seeing the revert asked for.
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
            if let Some(name) = identity_label(&name) {
                labels.insert(EXPERIMENT_LABEL.to_owned(), name.to_owned());
            }
            if let Some(node) = identity_label(&work.node) {
                labels.insert(NODE_LABEL.to_owned(), node.to_owned());
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
