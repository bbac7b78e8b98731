//! The fault planner: what a fault means, decided once for every platform (no I/O).
//!
//! Given an experiment's spec and an [`Inventory`] of what the platform has (namespaces,
//! nodes, pods with their zones, labels, addresses and volumes), [`plan`] returns a
//! [`FaultPlan`]: the targets as the blast radius counts them, and per node the typed
//! actions that carry the fault out (the Injection API's [`NodeAction`](crate::api::NodeAction): kill or freeze
//! processes, cut traffic with peers in a direction, remount read-only) plus the one-shot
//! pod deletions (pod kill, a disk replaced by an empty one).
//!
//! The operator and the lab are adapters around it: inventory in, their own execution out
//! (Injections for the node agents; the lab's journalled faults and holds). Because the
//! rules live here once, a game day means the same on both platforms; a property test runs
//! the same inventories through both adapters to hold them to it.
//!
//! Rules enforced here, whatever the manifest says:
//! - the protection module's: protected namespaces and nodes are never targets; a target
//!   namespace must exist, opt in, and be the Experiment's own or consent to it; a fault on
//!   whole nodes needs the grant on the Experiment's namespace;
//! - a plan over the blast radius (count, or percent compared exactly) is refused, never
//!   trimmed;
//! - no node gets more in one action than an Injection can carry.

mod error;
mod faults;
mod inventory;
mod outcome;
mod scope;
#[cfg(test)]
mod tests;

use crate::api::{DiskLossMode, ExperimentSpec, FaultKind, grants_node_faults};

pub use error::PlanError;
pub use faults::isolate;
pub use inventory::{ClaimVolume, Inventory, NamespaceInfo, NodeInfo, PodInfo, Policy};
pub use outcome::{
    FaultPlan, MAX_PEERS_PER_CUT, MAX_PODS_PER_ACTION, NodeWork, PodDeletion, Target,
};

/// Whether the fault is held by node-level actions (and so reverted by undoing them),
/// rather than by one-shot deletions that need no revert.
pub fn uses_injections(spec: &ExperimentSpec) -> bool {
    match spec.fault.kind() {
        Some(FaultKind::PodKill(_)) | None => false,
        Some(FaultKind::DiskLoss(d)) => d.mode != DiskLossMode::Wipe,
        Some(_) => true,
    }
}

/// Plans `spec`'s fault against `inventory`. Refuses, never trims, what the safety rules
/// or the blast radius forbid.
pub fn plan(
    spec: &ExperimentSpec,
    inventory: &Inventory,
    policy: &Policy,
) -> Result<FaultPlan, PlanError> {
    let scope = scope::scope(spec, inventory, policy)?;
    let kind = spec.fault.kind().ok_or(PlanError::NoFault)?;
    let mut plan = match kind {
        FaultKind::ZoneBlackout(b) => faults::zone_blackout(b, &scope, inventory)?,
        FaultKind::NetworkPartition(np) => faults::network_partition(np, &scope)?,
        FaultKind::NetworkLoss(nl) => faults::network_loss(nl, &scope)?,
        FaultKind::DiskLoss(d) => faults::disk_loss(d, &scope, spec)?,
        FaultKind::OpsToolOutage(o) => faults::ops_tool_outage(o, &scope, spec)?,
        FaultKind::PodKill(k) => faults::pod_kill(k, &scope, spec)?,
    };
    plan.excluded = scope.excluded.clone();
    if plan.targets.is_empty() {
        return Err(PlanError::NoTargets {
            what: format!(
                "no live pod of {} on an unprotected node matches",
                spec.target.namespaces.join(", ")
            ),
        });
    }
    // A fault with nothing to carry out would hold vacuously and pass: refuse it (a zone
    // blackout without its network cut, on nodes with no pod of the target namespaces).
    if plan.work.is_empty() && plan.deletions.is_empty() {
        return Err(PlanError::NoTargets {
            what: format!(
                "{} would do nothing: no pod of {} runs on its targets ({})",
                spec.fault.name(),
                spec.target.namespaces.join(", "),
                plan.targets
                    .iter()
                    .map(Target::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    if plan.work.iter().any(|w| w.action.acts_on_node())
        && !grants_node_faults(&inventory.source.labels)
    {
        return Err(PlanError::NoNodeFaultGrant {
            fault: spec.fault.name(),
            from: inventory.source.name.clone(),
        });
    }
    check_blast_radius(spec, &plan)?;
    Ok(plan)
}

/// Refuses a plan over either cap. The percentage is compared exactly, without rounding:
/// one target of three is 33.3 %, over a cap of 33.
pub fn check_blast_radius(spec: &ExperimentSpec, plan: &FaultPlan) -> Result<(), PlanError> {
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
            list: plan
                .targets
                .iter()
                .map(Target::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(())
}
