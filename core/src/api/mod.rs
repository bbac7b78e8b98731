//! The `firedrill.dev/v1alpha1` API, defined once here; the CRD YAML is generated from it.

// kube-derive's `printcolumn(...)` repeats `type_ = ...` per column, which this lint misreads.
#![allow(clippy::duplicated_attributes)]

mod duration;
mod experiment;
mod fault;
mod gameday;
mod injection;
mod probe;
mod protection;
mod schedule;
mod selector;

pub use duration::{Duration, ParseDurationError};
pub use experiment::*;
pub use fault::*;
pub use gameday::*;
pub use injection::*;
pub use probe::*;
pub use protection::*;
pub use schedule::*;
pub use selector::*;

/// The API group.
pub const GROUP: &str = "firedrill.dev";
/// The API version, as written in `apiVersion`.
pub const API_VERSION: &str = "firedrill.dev/v1alpha1";
/// Set on an Experiment (to a reason) to abort it: the operator reverts its fault at once.
/// chaosctl sets it (`abort`, `stop-all`); the operator acts on it.
pub const ABORT_ANNOTATION: &str = "firedrill.dev/abort";
