//! firedrill's Kubernetes operator: the Experiment reconciler on the shared engine.
//!
//! The layout follows the pure-core, thin-shell split of the rest of firedrill:
//!
//! - [`plan`] (pure): resolves an experiment's targets from listed Pods, Nodes and
//!   Namespaces, enforces opt-in, protected namespaces and nodes and the blast radius, and
//!   builds one [`Injection`](firedrill_core::api::Injection) per node and action.
//! - [`observe`] (pure): turns the Injections' status, written by the node agents, into the
//!   engine's observations.
//! - [`status`] (pure): conditions, the server-side-apply status patch, and the Kubernetes
//!   Events a transition deserves.
//! - [`cluster`], [`objects`]: the API calls, and nothing else.
//! - [`reconcile`]: the controller: `finalizer()` around the engine loop, idempotent cleanup.
//! - [`gameday`]: the GameDay controller: steps run in order as child Experiments.
//! - [`schedule`]: the DrillSchedule controller: cron, missed runs, concurrency, history.
//! - [`controllers`]: the three controllers together, behind one leader election.
//! - [`lease`]: leader election with a `coordination.k8s.io/v1` Lease.
//! - [`metrics`]: Prometheus metrics and the `/metrics` and `/healthz` endpoints.
//!
//! # The contract with the node agent
//!
//! The operator creates Injections (immutable; named deterministically per experiment, node
//! and action; owned by their Experiment; labelled with [`EXPERIMENT_UID_LABEL`] and, where
//! the name fits a label, [`NODE_LABEL`]). It asks for a revert by *deleting* them. The
//! agent adds [`AGENT_FINALIZER`] to an Injection *before* applying it, reports
//! `status.state`/`appliedAt`, and on deletion (or at `expiresAt`) reverts, reports
//! `Reverted`/`revertedAt` and removes its finalizer. So an Injection that is gone was either
//! never applied or has been reverted; that is what lets the operator remove its own
//! finalizer from a deleted Experiment knowing no fault outlives it.

pub mod cluster;
pub mod controllers;
pub mod error;
pub mod gameday;
pub mod lease;
pub mod metrics;
pub mod objects;
pub mod observe;
pub mod pause;
pub mod plan;
pub mod reconcile;
pub mod schedule;
pub mod status;
pub mod sweep;

pub use error::{Error, Result};

pub use firedrill_core::api::{
    CONSENT_ANNOTATION, CONTROL_PLANE_LABELS, NODE_FAULT_GRANT_LABEL, NODE_FAULT_GRANT_VALUE,
    OPT_IN_LABEL, OPT_IN_VALUE, PROTECTED_NODE_LABEL,
};
/// The zone label of nodes.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The operator's finalizer on Experiments.
pub const FINALIZER: &str = "firedrill.dev/revert";
/// The agent's finalizer on Injections (see the crate docs).
pub const AGENT_FINALIZER: &str = "firedrill.dev/agent";
/// The one field manager of everything this operator writes.
pub const FIELD_MANAGER: &str = "firedrill-operator";

/// Labels every Injection with its Experiment's UID.
pub const EXPERIMENT_UID_LABEL: &str = "firedrill.dev/experiment-uid";
/// Labels every Injection with its Experiment's name, when that fits a label value.
pub const EXPERIMENT_LABEL: &str = "firedrill.dev/experiment";
/// Labels every Injection with its node's name, when that fits a label value, so an agent
/// can watch only its own.
pub const NODE_LABEL: &str = "firedrill.dev/node";
/// `app.kubernetes.io/managed-by` on everything the operator creates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// How many Injections the plan had when they were created.
pub const PLAN_SIZE_ANNOTATION: &str = "firedrill.dev/plan-size";
pub use firedrill_core::api::ABORT_ANNOTATION;

#[cfg(test)]
mod testing {
    use chrono::{DateTime, TimeZone, Utc};

    /// A fixed time, `s` seconds after a fixed origin.
    pub fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0)
            .single()
            .expect("time")
    }
}
