//! firedrill's cluster-test harness: what the agent's, chaosctl's, the operator's and the
//! e2e tests need to test against a real API server, in one copy (the shape of linkerd2's
//! policy-test crate).
//!
//! - [`console`]: a test says it skips (or fails, with `FIREDRILL_E2E_REQUIRE=1`) and notes
//!   its progress;
//! - [`client`]: a client for the cluster in `KUBECONFIG`, or a skip;
//! - [`namespace`]: a uniquely named namespace per test, freed of finalizers and deleted;
//! - [`wait`]: polling for a condition with a timeout;
//! - [`crds`]: firedrill's CRDs installed (or updated) and established;
//! - [`objects`]: the tests' labelled objects and what the Events say of them.
//!
//! Errors are returned ([`Error`]); the few helpers that panic instead say so under
//! "Panics": they are assertions a test would otherwise write after each call.

pub mod client;
pub mod console;
pub mod crds;
mod error;
pub mod namespace;
pub mod objects;
pub mod wait;

pub use client::{Cluster, Kubeconfig, client, cluster};
pub use console::{note, required, skip};
pub use error::{Error, Result};
pub use namespace::{TestNamespace, release_finalizers, unique_name};
pub use wait::{eventually, eventually_every, gone, until};

/// Marks the objects the cluster tests make; a deployed operator leaves Experiments with
/// it alone (the chart's `experimentSelector` is `!firedrill.dev/test`).
pub const TEST_LABEL: &str = "firedrill.dev/test";
