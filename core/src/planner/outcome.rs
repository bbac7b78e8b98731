//! What the planner answers: the targets as the blast radius counts them, and the actions
//! that carry the fault out.

use std::fmt;

use crate::api::{NodeAction, PodRef};

/// The most pods one node action may name (the Injection CRD's limit).
pub const MAX_PODS_PER_ACTION: usize = 500;
/// The most peer CIDRs one network cut may name (the Injection CRD's limit).
pub const MAX_PEERS_PER_CUT: usize = 1000;

/// What the blast radius counts: a whole node, or one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Node(String),
    Pod(PodRef),
}

impl Target {
    /// The bare name (the node's, or the pod's without its namespace).
    pub fn name(&self) -> &str {
        match self {
            Self::Node(name) => name,
            Self::Pod(pod) => &pod.name,
        }
    }
}

/// A target equals its display form (`node/a1`, `talk/nats-0`).
impl PartialEq<&str> for Target {
    fn eq(&self, other: &&str) -> bool {
        match self {
            Self::Node(name) => other.strip_prefix("node/") == Some(name.as_str()),
            Self::Pod(pod) => other
                .split_once('/')
                .is_some_and(|(ns, name)| ns == pod.namespace && name == pod.name),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Node(name) => write!(f, "node/{name}"),
            Self::Pod(pod) => write!(f, "{}/{}", pod.namespace, pod.name),
        }
    }
}

/// One node-level action for one node, held until it is reverted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeWork {
    pub node: String,
    /// Tells several actions on one node apart (`processes`, `network`, `left`, `right`,
    /// `volume-<pod>-<volume>`); part of the Injection's name, so it never changes.
    pub key: String,
    pub action: NodeAction,
}

/// A pod deleted once at injection, with nothing to revert: a pod kill, or a disk loss that
/// replaces the pod's claims with new, empty volumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodDeletion {
    pub pod: PodRef,
    /// Where it runs.
    pub node: String,
    pub grace_period_seconds: u32,
    /// Claims deleted before the pod, so its replacement gets a new volume.
    pub claims: Vec<String>,
}

/// What an experiment's fault does, before doing it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// What the blast radius counts, in a stable order.
    pub targets: Vec<Target>,
    /// How many candidates the percentage is of.
    pub candidates: usize,
    /// What would have been hit but is protected, and why.
    pub excluded: Vec<String>,
    /// Node-level actions, held until reverted.
    pub work: Vec<NodeWork>,
    /// One-shot pod deletions.
    pub deletions: Vec<PodDeletion>,
}

impl FaultPlan {
    /// A one-line summary for conditions, Events and the dry run.
    pub fn summary(&self) -> String {
        let targets: Vec<String> = self.targets.iter().map(Target::to_string).collect();
        let mut text = format!(
            "{} of {} candidate(s): {}",
            self.targets.len(),
            self.candidates,
            targets.join(", ")
        );
        if !self.excluded.is_empty() {
            text.push_str(&format!("; protected: {}", self.excluded.join(", ")));
        }
        text
    }

    /// What the fault may touch, for telling whether two faults overlap: its targets and
    /// every node its actions act on (`node/<name>`).
    pub fn footprint(&self) -> std::collections::BTreeSet<String> {
        self.targets
            .iter()
            .map(Target::to_string)
            .chain(self.work.iter().map(|w| format!("node/{}", w.node)))
            .collect()
    }

    /// What this plan and `other` both touch (two faults must never share a target).
    pub fn overlap(&self, other: &FaultPlan) -> Vec<String> {
        let theirs = other.footprint();
        self.footprint()
            .into_iter()
            .filter(|t| theirs.contains(t))
            .collect()
    }

    /// Whether `node` is hit as a whole (a zone blackout's node), rather than through some
    /// of its pods.
    pub fn hits_whole_node(&self, node: &str) -> bool {
        self.targets
            .iter()
            .any(|t| matches!(t, Target::Node(n) if n == node))
    }
}
