//! firedrill's Kubernetes operator: the Experiment reconciler on the shared engine.
//!
//! The layout follows the pure-core, thin-shell split of the rest of firedrill:
//!
//! - [`plan`] (pure): the Kubernetes adapter of core's fault planner: the listed Pods, Nodes
//!   and Namespaces become its inventory, and its plan becomes one
//!   [`Injection`](firedrill_core::api::Injection) per node and action. What a fault means
//!   (targets, opt-in and consent, protection, blast radius) is decided in
//!   [`firedrill_core::planner`], which the lab adapts too.
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
//! - [`inventory`]: what the gauges count (Experiments by phase, Injections by state, faults
//!   past their expiry, agents not reporting), from reflector stores on every replica.
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
pub mod echo;
pub mod error;
pub mod events;
pub mod gameday;
pub mod inventory;
pub mod lease;
pub mod metrics;
pub mod objects;
pub mod observe;
pub mod pause;
pub mod plan;
pub mod reconcile;
pub mod requeue;
pub mod schedule;
pub mod status;
pub mod sweep;

pub use error::{Error, ErrorCategory, Result};

// The contract's names, defined once in core (the agent and chaosctl use the same).
pub use firedrill_core::api::{
    ABORT_ANNOTATION, AGENT_FINALIZER, CONSENT_ANNOTATION, CONTROL_PLANE_LABELS, EXPERIMENT_LABEL,
    EXPERIMENT_UID_LABEL, FINALIZER, MANAGED_BY_LABEL, NODE_FAULT_GRANT_LABEL,
    NODE_FAULT_GRANT_VALUE, NODE_LABEL, OPERATOR_FIELD_MANAGER as FIELD_MANAGER, OPT_IN_LABEL,
    OPT_IN_VALUE, PLAN_SIZE_ANNOTATION, PROTECTED_NODE_LABEL, ZONE_LABEL,
};

#[cfg(test)]
mod testing {
    use chrono::{DateTime, TimeZone, Utc};

    /// A fixed time, `s` seconds after a fixed origin.
    pub fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0)
            .single()
            .expect("time")
    }

    /// The spec of the catalog's `experiments/<name>.yaml`.
    pub fn catalog(name: &str) -> firedrill_core::api::ExperimentSpec {
        use firedrill_core::manifest::{Manifest, load_str};
        let path = format!("{}/../experiments/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("catalog file");
        match load_str(&text).expect("valid").pop() {
            Some(Manifest::Experiment(e)) => e.spec,
            other => panic!("not an experiment: {other:?}"),
        }
    }
}
