//! The `firedrill.dev/v1alpha1` API, defined once here; the CRD YAML is generated from it.

// kube-derive's `printcolumn(...)` repeats `type_ = ...` per column, which this lint misreads.
#![allow(clippy::duplicated_attributes)]

mod contract;
mod duration;
mod experiment;
mod fault;
mod gameday;
mod injection;
mod probe;
mod protection;
mod schedule;
mod selector;

pub use contract::*;
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
/// The cluster-wide kill switch, on firedrill's own Namespace: the annotation says who paused
/// and why; the label (`true`) lets `kubectl get ns -L firedrill.dev/paused` show it. Either
/// one pauses. While paused no Experiment starts, running ones are aborted, GameDays stop
/// after their current step and DrillSchedules skip their runs. `chaosctl stop-all` sets
/// both; only `chaosctl resume` (or removing both by hand) lifts it.
pub const PAUSE_KEY: &str = "firedrill.dev/paused";

/// Why firedrill is paused, from its Namespace's labels and annotations, if it is.
pub fn pause_of(
    labels: &std::collections::BTreeMap<String, String>,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Option<String> {
    match (annotations.get(PAUSE_KEY), labels.get(PAUSE_KEY)) {
        (Some(why), _) if !why.trim().is_empty() => Some(why.trim().to_owned()),
        (Some(_), _) | (None, Some(_)) => Some("paused (no reason recorded)".to_owned()),
        (None, None) => None,
    }
}
