//! The game-day sequencer: one pure account of how a game day moves from step to step, which
//! the operator's GameDay controller and the lab runner both follow.
//!
//! A game day's [`GameDayStatus`] is its whole memory: `results` has one entry per step
//! started or not run, in order, and an entry without a verdict is the step running now.
//! [`advance`] reads that status, the time and whether the game day must stop, and says what
//! comes next ([`Next`]): start a step, pause, wait for (or abort) the running step, or
//! nothing more. It records what it decides (steps not run, the overall verdict) in the
//! status itself. What carrying it out means is the platform's business: the operator creates
//! a child Experiment and the lab runs the experiment in-process; both then report the step
//! through [`started`] and its verdict in `results`.
//!
//! The rules:
//!
//! - Steps run in the spec's order, one at a time, with `pauseBetween` of quiet after each
//!   finished step before the next one starts (none before the first).
//! - `failurePolicy: Stop`: once a step did not pass (failed, aborted, skipped or not run),
//!   every step after it is recorded as not run, naming it.
//! - A stop (the game day's abort annotation, the kill switch, an interrupt) never starts
//!   another step: a running step is aborted first ([`Next::Stopping`]) and, once it has
//!   finished, every step still to come is recorded as not run with the stop's reason and the
//!   game day is `Aborted`. The stop comes before the failure policy: a step aborted by the
//!   stop did not fail on its own. A stop that leaves nothing unrun changes nothing.
//! - The overall verdict is [`overall`]'s.
//!
//! A step's experiment is resolved by [`resolve`] (inline spec or `experimentRef`, the shared
//! hypothesis joined, checked), each platform looking references up in its own way.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::api::{
    ExperimentSpec, FailurePolicy, GameDayPhase, GameDaySpec, GameDayStatus, GameDayStep,
    StepResult, Verdict,
};
use crate::manifest::check_experiment;

/// What a game day does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Start the step at this index (then record it with [`started`]).
    Start(usize),
    /// Pause until then before the next step.
    Until(DateTime<Utc>),
    /// Wait for the running step.
    Running,
    /// The game day must stop and a step still runs: abort it (its fault is reverted) and
    /// wait for it; nothing after it starts.
    Stopping,
    /// Finished: `status.verdict` is set.
    Done,
}

/// The overall verdict of a game day from its steps' verdicts (`None` for one that has
/// none), and whether it was stopped with steps left to run:
///
/// | steps | stopped | verdict |
/// |---|---|---|
/// | any | yes | `Aborted` |
/// | at least one, every one `Passed` | no | `Passed` |
/// | none | no | `Failed` |
/// | any `Failed`, `Aborted`, `Skipped` or without a verdict | no | `Failed` |
///
/// A skipped step proves nothing, so it does not pass the game day; neither does an empty
/// one.
pub fn overall<I>(verdicts: I, stopped: bool) -> Verdict
where
    I: IntoIterator<Item = Option<Verdict>>,
{
    if stopped {
        return Verdict::Aborted;
    }
    let mut any = false;
    for verdict in verdicts {
        if verdict != Some(Verdict::Passed) {
            return Verdict::Failed;
        }
        any = true;
    }
    if any {
        Verdict::Passed
    } else {
        Verdict::Failed
    }
}

/// Steps the game day on from its status: applies a stop, the failure policy and the pause,
/// completes it when every step has a verdict, and says what to do next. `stop` is why the
/// game day must stop now, if it must. Leaves a completed game day as it is.
pub fn advance(
    spec: &GameDaySpec,
    status: &mut GameDayStatus,
    now: DateTime<Utc>,
    stop: Option<&str>,
) -> Next {
    if status.phase == GameDayPhase::Completed {
        return Next::Done;
    }
    status.phase = GameDayPhase::Running;
    status.started_at.get_or_insert(now);
    if status.results.iter().any(|r| r.verdict.is_none()) {
        status.progress = Some(progress(spec, status));
        status.message = None;
        return if stop.is_some() {
            Next::Stopping
        } else {
            Next::Running
        };
    }
    let total = spec.experiments.len();
    if let Some(why) = stop
        && status.results.len() < total
    {
        skip_rest(spec, status, &format!("not run: {why}"), now);
        complete(spec, status, true, now);
        status.message = Some(format!("stopped: {why}"));
        return Next::Done;
    }
    if spec.failure_policy == FailurePolicy::Stop
        && let Some(bad) = status
            .results
            .iter()
            .find(|r| r.verdict != Some(Verdict::Passed))
    {
        let reason = format!(
            "not run: {} did not pass and the failure policy is Stop",
            bad.name
        );
        skip_rest(spec, status, &reason, now);
    }
    status.progress = Some(progress(spec, status));
    if status.results.len() >= total {
        complete(spec, status, false, now);
        return Next::Done;
    }
    let index = status.results.len();
    if let Some(previous) = status.results.last().and_then(|r| r.finished_at) {
        let until = previous + spec.pause_between.to_chrono();
        if until > now {
            status.message = Some(format!(
                "pausing {} before {}",
                spec.pause_between, spec.experiments[index].name
            ));
            return Next::Until(until);
        }
    }
    Next::Start(index)
}

/// Records a step as started (with the Experiment object made for it, if the platform makes
/// one).
pub fn started(
    status: &mut GameDayStatus,
    step: &str,
    experiment: Option<&str>,
    fault: &str,
    now: DateTime<Utc>,
) {
    status.results.push(StepResult {
        name: step.to_owned(),
        experiment: experiment.map(str::to_owned),
        fault: Some(fault.to_owned()),
        started_at: Some(now),
        ..Default::default()
    });
    status.message = None;
}

/// Records a step as not run (`Skipped`), with why.
pub fn not_run(
    status: &mut GameDayStatus,
    step: &str,
    fault: Option<&str>,
    reason: &str,
    now: DateTime<Utc>,
) {
    status.results.push(StepResult {
        name: step.to_owned(),
        fault: fault.map(str::to_owned),
        verdict: Some(Verdict::Skipped),
        reason: Some(reason.to_owned()),
        finished_at: Some(now),
        ..Default::default()
    });
}

/// Every step not yet started or recorded, recorded as not run.
fn skip_rest(spec: &GameDaySpec, status: &mut GameDayStatus, reason: &str, now: DateTime<Utc>) {
    for step in spec.experiments.iter().skip(status.results.len()) {
        let fault = step.spec.as_ref().map(|s| s.fault.name());
        not_run(status, &step.name, fault, reason, now);
    }
}

fn complete(spec: &GameDaySpec, status: &mut GameDayStatus, stopped: bool, now: DateTime<Utc>) {
    status.progress = Some(progress(spec, status));
    status.phase = GameDayPhase::Completed;
    status.verdict = Some(overall(status.results.iter().map(|r| r.verdict), stopped));
    status.finished_at = Some(now);
    status.message = None;
}

/// `done/total`, for `kubectl get`.
fn progress(spec: &GameDaySpec, status: &GameDayStatus) -> String {
    let done = status
        .results
        .iter()
        .filter(|r| r.verdict.is_some())
        .count();
    format!("{done}/{}", spec.experiments.len())
}

/// Why a step's experiment cannot be resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unresolved {
    /// Its `experimentRef` names an experiment the platform does not have.
    Missing(String),
    /// It has neither an inline spec nor a reference.
    Empty,
    /// The experiment, with the shared hypothesis joined, is not valid: the field and why.
    Invalid { path: String, message: String },
}

impl fmt::Display for Unresolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(name) => write!(f, "experimentRef {name} does not exist"),
            Self::Empty => f.write_str("the step has no experiment"),
            Self::Invalid { path, message } => write!(f, "spec.{path}: {message}"),
        }
    }
}

impl std::error::Error for Unresolved {}

/// The experiment a step refers to by `experimentRef`, when it has to be looked up (it has
/// no inline spec, which would win).
pub fn reference(step: &GameDayStep) -> Option<&str> {
    match (&step.spec, &step.experiment_ref) {
        (None, Some(reference)) => Some(&reference.name),
        _ => None,
    }
}

/// The experiment a step runs: its inline spec, or the spec `lookup` finds for its
/// `experimentRef` (asked only then, with [`reference()`]'s name); with the game day's shared
/// probes joined ([`GameDaySpec::with_shared_hypothesis`]) and checked as a manifest would be.
pub fn resolve(
    game_day: &GameDaySpec,
    step: &GameDayStep,
    lookup: impl FnOnce(&str) -> Option<ExperimentSpec>,
) -> Result<ExperimentSpec, Unresolved> {
    let spec = match (&step.spec, &step.experiment_ref) {
        (Some(spec), _) => spec.clone(),
        (None, Some(reference)) => {
            lookup(&reference.name).ok_or_else(|| Unresolved::Missing(reference.name.clone()))?
        }
        (None, None) => return Err(Unresolved::Empty),
    };
    let spec = game_day.with_shared_hypothesis(spec);
    if let Some((path, message)) = check_experiment(&spec).into_iter().next() {
        return Err(Unresolved::Invalid { path, message });
    }
    Ok(spec)
}

#[cfg(test)]
mod tests;
