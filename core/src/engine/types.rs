//! What a step takes in and gives back: observations, probe outcomes, the actions a
//! platform must carry out, and the engine's time limits.

use chrono::{DateTime, TimeDelta, Utc};

use crate::api::{ExperimentStatus, Stage, WorkloadCounters};

/// How long a platform has to confirm a fault effective before the experiment is aborted.
pub const INJECT_TIMEOUT: TimeDelta = TimeDelta::seconds(60);

/// Added to the fault's duration to make the expiry node agents enforce on their own; long
/// enough that a healthy operator always reverts first.
pub(super) const EXPIRY_GRACE: TimeDelta = TimeDelta::seconds(60);

/// How often a platform is asked again to revert (or inject) while it has not confirmed.
pub(super) const RETRY: TimeDelta = TimeDelta::seconds(1);

/// How long the end of an experiment waits for its closing verification read before it
/// settles for the live loss count.
pub const VERIFY_PATIENCE: TimeDelta = TimeDelta::seconds(30);

/// Something the platform observed since the last step.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// One probe sample.
    Sample {
        probe: String,
        stage: Stage,
        at: DateTime<Utc>,
        outcome: Outcome,
    },
    /// The fault is effective on every target.
    FaultApplied { at: DateTime<Utc> },
    /// The fault is gone from every target (asked for, or expired on its own).
    FaultReverted { at: DateTime<Utc> },
    /// A re-check while holding found the whole fault still in place.
    FaultHeld { at: DateTime<Utc> },
    /// A re-check while holding found part of the fault gone (`what`: the rules deleted, a
    /// process running again, a mount writable); the platform re-applies it.
    FaultLapsed { at: DateTime<Utc>, what: String },
    /// The fault could not be applied; parts of it may be in place.
    InjectionFailed { at: DateTime<Utc>, reason: String },
    /// Someone asked to stop: deletion, `chaosctl abort`, the kill switch.
    AbortRequested { reason: String },
    /// The workload's cumulative loss checker counters.
    Workload(WorkloadCounters),
    /// What a verification read of the workload (asked for by [`Action::VerifyWorkload`])
    /// found missing over the whole run so far.
    Verified(WorkloadCounters),
}

/// What one probe sample found.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A number, judged against the probe's tolerance by the engine.
    Measured(f64),
    /// A check that passed (http status, Kubernetes condition).
    Healthy,
    /// A check that failed, or a probe that could not observe; both mean "not known healthy".
    Unhealthy(String),
}

/// What the platform must do now.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Apply the fault (idempotently). Agents revert on their own at `expires_at`.
    Inject { expires_at: DateTime<Utc> },
    /// Remove the fault (idempotently).
    Revert,
    /// Sample these probes now and report them as this stage.
    Sample { stage: Stage, probes: Vec<String> },
    /// Read back everything the workload stored and report what is missing
    /// ([`Observation::Verified`]): once before the fault, once at the end.
    VerifyWorkload,
    /// Call `step` again no later than this.
    RequeueAt(DateTime<Utc>),
}

/// The engine's decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub status: ExperimentStatus,
    pub actions: Vec<Action>,
}
