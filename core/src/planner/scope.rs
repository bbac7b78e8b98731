//! The namespace and node rules: which nodes and pods a plan may touch at all.

use std::collections::BTreeMap;

use crate::api::{ExperimentSpec, consents, node_protection, opted_in};

use super::error::PlanError;
use super::inventory::{Inventory, NodeInfo, PodInfo, Policy};

/// The pods and nodes a plan may touch, after the namespace and node rules.
pub(super) struct Scope<'a> {
    /// Nodes that may be part of a fault, by name.
    pub nodes: BTreeMap<&'a str, &'a NodeInfo>,
    /// Pods of the target namespaces on those nodes, by `namespace/name`.
    pub pods: Vec<&'a PodInfo>,
    /// What was left out, and why.
    pub excluded: Vec<String>,
}

impl<'a> Scope<'a> {
    /// The pods in scope on `node`.
    pub fn pods_on<'s>(&'s self, node: &'s str) -> impl Iterator<Item = &'a PodInfo> + 's {
        self.pods.iter().copied().filter(move |p| p.node == node)
    }
}

pub(super) fn scope<'a>(
    spec: &ExperimentSpec,
    inventory: &'a Inventory,
    policy: &Policy,
) -> Result<Scope<'a>, PlanError> {
    let from = &inventory.source.name;
    for (index, namespace) in spec.target.namespaces.iter().enumerate() {
        let fail = |make: fn(usize, String) -> PlanError| Err(make(index, namespace.clone()));
        if policy.protected_namespaces.contains(namespace) {
            return fail(|index, namespace| PlanError::ProtectedNamespace { index, namespace });
        }
        let Some(found) = inventory.namespaces.iter().find(|n| &n.name == namespace) else {
            return fail(|index, namespace| PlanError::NamespaceNotFound { index, namespace });
        };
        if !opted_in(&found.labels) {
            return fail(|index, namespace| PlanError::NotOptedIn { index, namespace });
        }
        if !consents(namespace, &found.annotations, from) {
            return Err(PlanError::NotConsented {
                index,
                namespace: namespace.clone(),
                from: from.clone(),
            });
        }
    }
    let mut excluded = Vec::new();
    let mut nodes = BTreeMap::new();
    for node in &inventory.nodes {
        match node_protection(&node.labels) {
            Some(why) => excluded.push(format!("node/{} ({why})", node.name)),
            None => {
                nodes.insert(node.name.as_str(), node);
            }
        }
    }
    let mut pods = Vec::new();
    for pod in &inventory.pods {
        if !spec.target.namespaces.contains(&pod.pod.namespace) {
            continue;
        }
        if nodes.contains_key(pod.node.as_str()) {
            pods.push(pod);
        } else {
            excluded.push(format!(
                "{} (on node {}, which is protected or unknown)",
                pod.id(),
                pod.node
            ));
        }
    }
    pods.sort_by_key(|p| p.id());
    Ok(Scope {
        nodes,
        pods,
        excluded,
    })
}
