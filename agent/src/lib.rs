//! firedrill's node agent: applies this node's `Injection`s with the shared fault
//! primitives (`firedrill-faults`, the very code the lab runs) and reverts them — when the
//! operator deletes them, at the end of their duration or their `expiresAt` on its own
//! timer (API server reachable or not), once the operator's heartbeat stops (the dead man's
//! switch), and after a crash from its journal.
//!
//! Pure core, thin shell:
//!
//! - [`planner`] (pure): desired vs applied → what to apply, revert, report, and when to
//!   wake next.
//! - [`contract`] (pure): the names shared with the operator, Injection → planner input,
//!   the status the agent writes.
//! - [`translate`] (pure): journal ids, network cuts → rule sets, Injection → faults.
//! - [`pods`]: a pod's processes and sandbox network namespace from the host's `/proc`.
//! - [`volume`]: a pod volume's directory under the kubelet's root.
//! - [`driver`] (pure): the dead man's switch, from reads of the driver's heartbeat Lease.
//! - [`exec`]: applies, enforces and reverts with the fault primitives, journalled.
//! - [`cluster`]: the watch, status and finalizer calls, each with a short deadline.
//! - [`run`]: the loop that ties them together.
//!
//! The agent opens no listening socket (its metrics are log lines with a stable
//! `category`), runs no shell and builds no command strings. See README.md for the
//! privileges, mounts and RBAC it needs.

pub mod cluster;
pub mod contract;
pub mod driver;
pub mod error;
pub mod exec;
pub mod heartbeat;
pub mod planner;
pub mod pods;
pub mod run;
pub mod translate;
pub mod volume;

pub use cluster::Cluster;
pub use error::{Error, Result};
pub use exec::Executor;
pub use pods::ProcFs;
pub use run::Agent;

/// Reverts what the journal holds past its expiry, without the API server: what the agent
/// does while it has no client. Returns how many Injections were reverted.
pub fn revert_due(exec: &Executor) -> usize {
    let held = match exec.held() {
        Ok((held, _)) => held,
        Err(e) => {
            tracing::error!(category = e.category(), error = %e, "cannot read the journal");
            return 0;
        }
    };
    let plan = planner::plan(None, &held, &planner::Memory::default(), chrono::Utc::now());
    let mut reverted = 0;
    for step in plan.steps {
        if let planner::Step::Revert { key, reason } = step {
            match exec.revert(&key) {
                Ok(_) => {
                    tracing::info!(key, "{}", reason.describe());
                    reverted += 1;
                }
                Err(e) => {
                    tracing::error!(key, category = e.category(), error = %e, "revert failed")
                }
            }
        }
    }
    reverted
}
