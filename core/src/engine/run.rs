//! The state of one step, and the small rules every part of it shares: which stages count
//! in a phase, time arithmetic that saturates, and SLI and fault-check bookkeeping.

use chrono::{DateTime, TimeDelta, Utc};

use crate::api::{
    ExperimentSpec, ExperimentStatus, FaultCheck, Phase, Probe, ProbeRecord, SliFigures, Stage,
    TimelineEntry,
};

use super::types::Action;

/// One step in progress: the spec, the status being rewritten, the time, the actions so far.
pub(super) struct Run<'a> {
    pub(super) spec: &'a ExperimentSpec,
    pub(super) s: ExperimentStatus,
    pub(super) now: DateTime<Utc>,
    pub(super) actions: Vec<Action>,
}

/// Stages whose samples count in a phase; samples for other stages arrived late and are
/// dropped.
pub(super) fn stages_of(phase: Phase) -> &'static [Stage] {
    match phase {
        Phase::SteadyStateBefore => &[Stage::Before],
        Phase::Holding => &[Stage::During, Stage::Abort],
        Phase::Recovering => &[Stage::Recovery],
        Phase::SteadyStateAfter => &[Stage::After],
        _ => &[],
    }
}

pub(super) fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds().max(0) as f64 / 1000.0
}

/// `at + delta`, saturating at the latest representable time: a duration past what
/// admission allows (a spec that bypassed it) must not overflow the clock.
pub(super) fn later(at: DateTime<Utc>, delta: TimeDelta) -> DateTime<Utc> {
    at.checked_add_signed(delta)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Ends an SLI's open out-of-tolerance episode at `at`, adding it to its time unhealthy.
pub(super) fn end_unhealthy(f: &mut SliFigures, at: DateTime<Utc>) {
    if let Some(since) = f.unhealthy_since.take() {
        f.unhealthy_seconds += seconds(since, at);
    }
}

/// Whether the SLI had a sample out of tolerance while the fault held or while recovering.
pub(super) fn left_tolerance(f: &SliFigures) -> bool {
    f.time_to_impact_seconds.is_some() || f.unhealthy_since.is_some() || f.unhealthy_seconds > 0.0
}

/// Ends an open lapse at `at`, keeping the longest; returns how long it lasted.
pub(super) fn end_lapse(check: &mut FaultCheck, at: DateTime<Utc>) -> Option<f64> {
    let gone = seconds(check.lapsed_since.take()?, at);
    check.longest_lapse_seconds = check.longest_lapse_seconds.max(gone);
    Some(gone)
}

/// Sum of durations, saturating.
pub(super) fn plus(a: TimeDelta, b: TimeDelta) -> TimeDelta {
    a.checked_add(&b).unwrap_or(TimeDelta::MAX)
}

pub(super) fn describe(r: &ProbeRecord) -> String {
    format!(
        "probe {} failed {} of {} samples ({})",
        r.name,
        r.failures,
        r.samples,
        r.last_failure.as_deref().unwrap_or("no detail")
    )
}

impl Run<'_> {
    pub(super) fn probes_of(&self, stage: Stage) -> &[Probe] {
        match stage {
            Stage::Abort => &self.spec.abort_conditions,
            _ => &self.spec.hypothesis.probes,
        }
    }

    pub(super) fn record(&self, name: &str, stage: Stage) -> Option<&ProbeRecord> {
        self.s
            .probes
            .iter()
            .find(|r| r.name == name && r.stage == stage)
    }

    pub(super) fn note(&mut self, message: impl Into<String>) {
        self.note_at(self.now, message);
    }

    /// A note of something that happened at `at` (a sample's time), which may be earlier
    /// than the step that learns of it: the timeline then agrees with the figures read off
    /// the same sample. Never before the previous entry, so the timeline stays in order.
    pub(super) fn note_at(&mut self, at: DateTime<Utc>, message: impl Into<String>) {
        let after_previous = self.s.timeline.last().map_or(at, |last| at.max(last.at));
        self.s.timeline.push(TimelineEntry {
            at: after_previous.min(self.now),
            phase: self.s.phase,
            message: message.into(),
        });
    }
}
