//! What a platform has that a fault may hit, in the planner's terms. Each platform builds
//! one from its own world (the API server's Pods, Nodes and Namespaces; the lab's topology),
//! and that translation is all an adapter decides: what to hit is the planner's.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{PodRef, ZONE_LABEL, protected_namespaces};

/// Everything listed for planning one experiment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    /// The Experiment's own namespace: its labels say whether node faults are granted.
    pub source: NamespaceInfo,
    /// The target namespaces that exist (others are missing, which refuses the plan).
    pub namespaces: Vec<NamespaceInfo>,
    /// Every node, protected ones included (they are reported as left out).
    pub nodes: Vec<NodeInfo>,
    /// The live pods of the target namespaces: scheduled, not finished, not being deleted.
    pub pods: Vec<PodInfo>,
}

/// A namespace's labels and annotations (opt-in, consent, the node-fault grant).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A node: its labels (zone, protection) and the addresses that stand for it on the
/// network (its own, and the ranges of its pods).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub cidrs: Vec<String>,
}

impl NodeInfo {
    /// The node's zone, from [`ZONE_LABEL`].
    pub fn zone(&self) -> Option<&str> {
        self.labels.get(ZONE_LABEL).map(String::as_str)
    }
}

/// A pod (a process, in the lab): where it runs, its labels, its addresses and the claims
/// behind its data volumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub pod: PodRef,
    pub node: String,
    pub labels: BTreeMap<String, String>,
    /// Its own addresses; empty when it has none of its own (host network), so a partition
    /// never cuts a node by naming one of its pods.
    pub cidrs: Vec<String>,
    pub claims: Vec<ClaimVolume>,
}

impl PodInfo {
    /// `namespace/name`, as targets and messages show a pod.
    pub fn id(&self) -> String {
        format!("{}/{}", self.pod.namespace, self.pod.name)
    }
}

/// A volume backed by a claim: losing the disk is replacing the claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimVolume {
    pub volume: String,
    pub claim: String,
}

/// What is protected beyond what the manifest itself says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Namespaces that are never targets.
    pub protected_namespaces: BTreeSet<String>,
}

impl Policy {
    /// The built-in protected namespaces plus firedrill's own (`own`; empty where firedrill
    /// has no namespace, as in the lab).
    pub fn new(own: &str) -> Self {
        Self {
            protected_namespaces: protected_namespaces(own),
        }
    }
}
