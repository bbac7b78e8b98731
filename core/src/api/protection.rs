//! What firedrill never touches and who may aim a fault at whom, decided once here: the
//! operator's planner and the node agent both ask these functions, so the two layers
//! cannot disagree.
//!
//! - Protected namespaces ([`PROTECTED_NAMESPACES`] and firedrill's own) are never targets.
//! - Control-plane nodes and nodes labelled [`PROTECTED_NODE_LABEL`]`=true` are never part
//!   of a fault: neither their pods nor the nodes themselves.
//! - A target namespace opts in with [`OPT_IN_LABEL`]`=`[`OPT_IN_VALUE`]. An Experiment
//!   may target pods of its own namespace; another namespace must also name the
//!   Experiment's namespace in its [`CONSENT_ANNOTATION`].
//! - A fault that acts on whole nodes (a node cut off the network, as a zone blackout does)
//!   hits every tenant on them, so it needs a grant on the *Experiment's* namespace:
//!   [`NODE_FAULT_GRANT_LABEL`]`=`[`NODE_FAULT_GRANT_VALUE`]. A Namespace is a
//!   cluster-scoped object, so only those who administer the cluster can set it: a
//!   namespaced Role can never grant a node fault.

use std::collections::{BTreeMap, BTreeSet};

use super::experiment::PROTECTED_NAMESPACES;
use super::injection::{NodeAction, PodRef};

/// A namespace opts in to chaos with this label set to [`OPT_IN_VALUE`].
pub const OPT_IN_LABEL: &str = "firedrill.dev/chaos";
/// See [`OPT_IN_LABEL`].
pub const OPT_IN_VALUE: &str = "enabled";
/// On a target namespace: the namespaces whose Experiments may target it besides its own,
/// comma-separated; `*` for any.
pub const CONSENT_ANNOTATION: &str = "firedrill.dev/allow-experiments-from";
/// On an Experiment's namespace, set to [`NODE_FAULT_GRANT_VALUE`]: its Experiments may
/// run faults that act on whole nodes.
pub const NODE_FAULT_GRANT_LABEL: &str = "firedrill.dev/node-faults";
/// See [`NODE_FAULT_GRANT_LABEL`].
pub const NODE_FAULT_GRANT_VALUE: &str = "allowed";
/// A node with this label set to `true` is never a target (beside control-plane nodes).
pub const PROTECTED_NODE_LABEL: &str = "firedrill.dev/protected";
/// Node labels that mark the control plane, which is never a target.
pub const CONTROL_PLANE_LABELS: [&str; 2] = [
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
];

/// The built-in protected namespaces plus firedrill's own (where it is installed).
pub fn protected_namespaces(own: &str) -> BTreeSet<String> {
    PROTECTED_NAMESPACES
        .iter()
        .copied()
        .chain([own])
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Why a node with these labels is never a target, if it is protected.
pub fn node_protection(labels: &BTreeMap<String, String>) -> Option<&'static str> {
    if CONTROL_PLANE_LABELS.iter().any(|l| labels.contains_key(*l)) {
        return Some("control plane");
    }
    if labels.get(PROTECTED_NODE_LABEL).map(String::as_str) == Some("true") {
        return Some("labelled protected");
    }
    None
}

/// Whether a namespace with these labels has opted in to chaos.
pub fn opted_in(labels: &BTreeMap<String, String>) -> bool {
    labels.get(OPT_IN_LABEL).map(String::as_str) == Some(OPT_IN_VALUE)
}

/// Whether Experiments of `source` may target the namespace `target` (with these
/// annotations): always their own; another only if it names `source` (or `*`).
pub fn consents(target: &str, annotations: &BTreeMap<String, String>, source: &str) -> bool {
    target == source
        || annotations.get(CONSENT_ANNOTATION).is_some_and(|list| {
            list.split(',')
                .map(str::trim)
                .any(|n| n == "*" || n == source)
        })
}

/// Whether a namespace with these labels may run faults that act on whole nodes.
pub fn grants_node_faults(labels: &BTreeMap<String, String>) -> bool {
    labels.get(NODE_FAULT_GRANT_LABEL).map(String::as_str) == Some(NODE_FAULT_GRANT_VALUE)
}

impl NodeAction {
    /// Acts on the node itself rather than on listed pods: every pod on it is hit, every
    /// tenant's and the node's own DaemonSets included.
    pub fn acts_on_node(&self) -> bool {
        self.network.as_ref().is_some_and(|cut| cut.pods.is_empty())
    }

    /// Every pod the action names.
    pub fn pods(&self) -> impl Iterator<Item = &PodRef> {
        let network = self.network.iter().flat_map(|n| &n.pods);
        let processes = self.processes.iter().flat_map(|p| &p.pods);
        let volume = self.read_only_volume.iter().map(|v| &v.pod);
        network.chain(processes).chain(volume)
    }
}

/// Why a node agent must not carry out `action` on a node with `node_labels`, if it must
/// not: the node is protected, or the action names a pod of a protected namespace. The last
/// layer, after the CRD's rules, validation and the planner: an Injection written by
/// anything but the operator's planner meets it too.
pub fn refusal(
    action: &NodeAction,
    node_labels: &BTreeMap<String, String>,
    protected: &BTreeSet<String>,
) -> Option<String> {
    if let Some(why) = node_protection(node_labels) {
        return Some(format!("this node is never a target ({why})"));
    }
    action
        .pods()
        .find(|p| protected.contains(&p.namespace))
        .map(|p| {
            format!(
                "pod {}/{} is in a protected namespace, never a target",
                p.namespace, p.name
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{NetworkCut, ProcessAction, ProcessSignal, VolumeAction};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn pod(ns: &str, name: &str) -> PodRef {
        PodRef {
            namespace: ns.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        }
    }

    fn freeze(pods: Vec<PodRef>) -> NodeAction {
        NodeAction {
            network: None,
            processes: Some(ProcessAction {
                pods,
                signal: ProcessSignal::Freeze,
            }),
            read_only_volume: None,
        }
    }

    fn cut(pods: Vec<PodRef>) -> NodeAction {
        NodeAction {
            network: Some(NetworkCut {
                pods,
                all: true,
                peers: vec![],
                direction: Default::default(),
                loss_percent: None,
            }),
            processes: None,
            read_only_volume: None,
        }
    }

    #[test]
    fn either_pause_marker_pauses_and_the_annotation_says_why() {
        use crate::api::{PAUSE_KEY, pause_of};
        let none = BTreeMap::new();
        assert_eq!(pause_of(&none, &none), None);
        let why = labels(&[(PAUSE_KEY, " stop-all by ana ")]);
        assert_eq!(pause_of(&none, &why).as_deref(), Some("stop-all by ana"));
        let label = labels(&[(PAUSE_KEY, "true")]);
        assert!(pause_of(&label, &none).is_some(), "the label alone pauses");
        let blank = labels(&[(PAUSE_KEY, "")]);
        assert!(
            pause_of(&none, &blank).is_some(),
            "an empty annotation pauses"
        );
    }

    #[test]
    fn firedrills_own_namespace_is_protected_beside_the_built_in_ones() {
        let p = protected_namespaces("chaos-ops");
        assert!(p.contains("kube-system") && p.contains("firedrill-system"));
        assert!(p.contains("chaos-ops"));
        assert!(!p.contains("talk"));
        assert_eq!(protected_namespaces("").len(), PROTECTED_NAMESPACES.len());
    }

    #[test]
    fn control_plane_and_protected_nodes_are_never_targets() {
        for l in CONTROL_PLANE_LABELS {
            assert_eq!(node_protection(&labels(&[(l, "")])), Some("control plane"));
        }
        let protected = labels(&[(PROTECTED_NODE_LABEL, "true")]);
        assert_eq!(node_protection(&protected), Some("labelled protected"));
        assert_eq!(
            node_protection(&labels(&[(PROTECTED_NODE_LABEL, "false")])),
            None
        );
        assert_eq!(node_protection(&labels(&[("zone", "a")])), None);
    }

    #[test]
    fn a_namespace_consents_to_itself_and_to_those_it_names() {
        let none = BTreeMap::new();
        assert!(consents("talk", &none, "talk"));
        assert!(!consents("talk", &none, "team-a"));
        let named = labels(&[(CONSENT_ANNOTATION, "team-b, team-a")]);
        assert!(consents("talk", &named, "team-a"));
        assert!(!consents("talk", &named, "team-c"));
        assert!(!consents("talk", &named, "team"), "whole names only");
        assert!(consents(
            "talk",
            &labels(&[(CONSENT_ANNOTATION, "*")]),
            "any"
        ));
        assert!(!consents("talk", &labels(&[(CONSENT_ANNOTATION, "")]), "x"));
    }

    #[test]
    fn opt_in_and_node_fault_grants_need_their_exact_values() {
        assert!(opted_in(&labels(&[(OPT_IN_LABEL, OPT_IN_VALUE)])));
        assert!(!opted_in(&labels(&[(OPT_IN_LABEL, "true")])));
        assert!(grants_node_faults(&labels(&[(
            NODE_FAULT_GRANT_LABEL,
            NODE_FAULT_GRANT_VALUE
        )])));
        assert!(!grants_node_faults(&labels(&[(
            NODE_FAULT_GRANT_LABEL,
            "yes"
        )])));
        assert!(!grants_node_faults(&BTreeMap::new()));
    }

    #[test]
    fn only_a_cut_of_the_node_itself_acts_on_the_node() {
        assert!(cut(vec![]).acts_on_node());
        assert!(!cut(vec![pod("talk", "a")]).acts_on_node());
        assert!(!freeze(vec![pod("talk", "a")]).acts_on_node());
    }

    #[test]
    fn the_agent_refuses_protected_nodes_and_pods_of_protected_namespaces() {
        let protected = protected_namespaces("firedrill");
        let worker = labels(&[("topology.kubernetes.io/zone", "a")]);
        let talk = freeze(vec![pod("talk", "nats-0")]);
        assert_eq!(refusal(&talk, &worker, &protected), None);
        assert_eq!(refusal(&cut(vec![]), &worker, &protected), None);
        let mixed = freeze(vec![pod("talk", "nats-0"), pod("kube-system", "coredns-1")]);
        let why = refusal(&mixed, &worker, &protected).unwrap();
        assert!(why.contains("kube-system/coredns-1"), "{why}");
        let own = cut(vec![pod("firedrill", "operator-0")]);
        assert!(refusal(&own, &worker, &protected).is_some());
        let volume = NodeAction {
            network: None,
            processes: None,
            read_only_volume: Some(VolumeAction {
                pod: pod("kube-system", "etcd-0"),
                volume: "data".into(),
            }),
        };
        assert!(refusal(&volume, &worker, &protected).is_some());
        let control_plane = labels(&[(CONTROL_PLANE_LABELS[0], "")]);
        let why = refusal(&talk, &control_plane, &protected).unwrap();
        assert!(why.contains("control plane"), "{why}");
    }
}
