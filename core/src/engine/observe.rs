//! Taking in what the platform observed: probe samples (and the SLI figures they measure),
//! fault checks, and verification reads.

use chrono::{DateTime, Utc};

use crate::api::{
    FaultCheck, FaultState, Phase, ProbeRecord, SliFigures, Stage, Tolerance, WorkloadCounters,
};

use super::run::{Run, end_lapse, end_unhealthy, seconds, stages_of};
use super::types::{Observation, Outcome, VERIFY_PATIENCE};
use crate::report::measured;

impl Run<'_> {
    pub(super) fn observe(&mut self, observation: &Observation) {
        match observation {
            Observation::Sample {
                probe,
                stage,
                at,
                outcome,
            } => self.observe_sample(probe, *stage, *at, outcome),
            Observation::FaultApplied { at } => {
                if self.s.fault_state == FaultState::Injecting {
                    self.s.fault_state = FaultState::Injected;
                    self.s.injected_at = Some(*at);
                    self.note_at(*at, "fault effective");
                }
            }
            Observation::FaultReverted { at } => {
                if self.s.fault_state.may_be_active() {
                    self.s.fault_state = FaultState::Reverted;
                    self.s.reverted_at = Some(*at);
                    self.note_at(*at, "fault reverted");
                }
            }
            Observation::FaultHeld { at } => self.observe_check(*at, None),
            Observation::FaultLapsed { at, what } => self.observe_check(*at, Some(what)),
            Observation::InjectionFailed { reason, .. } => {
                if self.s.fault_state.may_be_active() && self.s.aborted_because.is_none() {
                    self.s.aborted_because = Some(format!("injection failed: {reason}"));
                    self.note(format!("injection failed: {reason}"));
                }
            }
            Observation::AbortRequested { reason } => {
                if self.s.phase != Phase::Completed && !self.s.abort_requested {
                    self.s.abort_requested = true;
                    self.s
                        .aborted_because
                        .get_or_insert_with(|| format!("abort requested: {reason}"));
                    self.note(format!("abort requested: {reason}"));
                }
            }
            Observation::Verified(counters) => self.observe_verification(*counters),
            // The closing verification read is exact; live counts after it change nothing.
            Observation::Workload(_)
                if self
                    .s
                    .loss_verification
                    .is_some_and(|v| v.closing.is_some()) => {}
            Observation::Workload(counters) => match self.s.workload_baseline {
                None => self.s.workload_baseline = Some(*counters),
                Some(base) => {
                    self.s.messages_lost = Some(counters.lost.saturating_sub(base.lost));
                    self.s.messages_duplicated =
                        Some(counters.duplicated.saturating_sub(base.duplicated));
                }
            },
        }
    }

    /// A verification read: the baseline when it comes before the fault, the closing read
    /// when the end asked for it. Their difference is what this experiment lost.
    pub(super) fn observe_verification(&mut self, counters: WorkloadCounters) {
        // An answer after the end (the read given up) changes nothing.
        if self.s.phase == Phase::Completed {
            return;
        }
        let before_fault = self.s.injected_at.is_none()
            && matches!(self.s.phase, Phase::Pending | Phase::SteadyStateBefore);
        let v = self
            .s
            .loss_verification
            .get_or_insert_with(Default::default);
        if before_fault {
            if v.baseline.is_none() {
                v.baseline = Some(counters);
            }
            return;
        }
        let (Some(base), Some(_), None) = (v.baseline, v.closing_asked_at, v.closing) else {
            return;
        };
        v.closing = Some(counters);
        let lost = counters.lost.saturating_sub(base.lost);
        self.s.messages_lost = Some(lost);
        self.s.messages_duplicated = Some(counters.duplicated.saturating_sub(base.duplicated));
        self.note(format!(
            "verification read: {lost} more stored messages missing than before the fault"
        ));
    }

    /// Whether the experiment still waits for its closing verification read: one was
    /// taken before the fault, and the closing one has neither come nor been given up.
    pub(super) fn awaits_closing_read(&mut self) -> bool {
        let now = self.now;
        let Some(v) = self.s.loss_verification.as_mut() else {
            return false;
        };
        if v.baseline.is_none() || v.closing.is_some() {
            return false;
        }
        let asked = *v.closing_asked_at.get_or_insert(now);
        if now - asked <= VERIFY_PATIENCE {
            return true;
        }
        // Given up: the experiment completes in this step, with the live count.
        self.note(format!(
            "no verification read within {}s: the loss is the live count",
            VERIFY_PATIENCE.num_seconds()
        ));
        false
    }

    pub(super) fn observe_sample(
        &mut self,
        name: &str,
        stage: Stage,
        at: DateTime<Utc>,
        outcome: &Outcome,
    ) {
        if !stages_of(self.s.phase).contains(&stage) {
            return;
        }
        let Some(probe) = self.probes_of(stage).iter().find(|p| p.name == name) else {
            return;
        };
        let threshold = probe.failure_threshold.max(1);
        let tolerance = probe.tolerance;
        let (ok, value, failure) = match outcome {
            // A non-number is no evidence of health, and a JSON status could not hold it.
            Outcome::Measured(v) if !v.is_finite() => (
                false,
                None,
                Some(format!("measured {v}, not a finite number")),
            ),
            Outcome::Measured(v) => match tolerance {
                Some(t) if !t.admits(*v) => (
                    false,
                    Some(*v),
                    Some(format!("measured {}, tolerance {t}", measured(*v))),
                ),
                _ => (true, Some(*v), None),
            },
            Outcome::Healthy => (true, None, None),
            Outcome::Unhealthy(why) => (false, None, Some(why.clone())),
        };
        let index = match self
            .s
            .probes
            .iter()
            .position(|r| r.name == name && r.stage == stage)
        {
            Some(i) => i,
            None => {
                self.s.probes.push(ProbeRecord {
                    name: name.to_owned(),
                    stage,
                    samples: 0,
                    failures: 0,
                    consecutive_failures: 0,
                    tripped: false,
                    last_value: None,
                    last_ok: None,
                    last_failure: None,
                    last_at: None,
                });
                self.s.probes.len() - 1
            }
        };
        let record = &mut self.s.probes[index];
        record.samples = record.samples.saturating_add(1);
        record.last_ok = Some(ok);
        record.last_value = value;
        record.last_at = Some(at);
        if ok {
            record.consecutive_failures = 0;
        } else {
            record.failures = record.failures.saturating_add(1);
            record.consecutive_failures = record.consecutive_failures.saturating_add(1);
            record.last_failure = failure;
            if record.consecutive_failures >= threshold {
                record.tripped = true;
            }
        }
        if matches!(stage, Stage::During | Stage::Recovery) {
            self.measure(name, stage, at, ok, value, tolerance);
        }
        if !ok
            && stage == Stage::During
            && self.s.impact_at.is_none()
            && let Some(injected) = self.s.injected_at
        {
            self.s.impact_at = Some(at);
            self.s.time_to_impact_seconds = Some(seconds(injected, at));
            self.note_at(at, format!("impact: probe {name} failed"));
        }
    }

    /// Updates one SLI's figures with a sample taken while the fault held or while
    /// recovering. Each figure is read off the samples themselves, at the sample interval.
    pub(super) fn measure(
        &mut self,
        name: &str,
        stage: Stage,
        at: DateTime<Utc>,
        ok: bool,
        value: Option<f64>,
        tolerance: Option<Tolerance>,
    ) {
        let injected = self.s.injected_at;
        let index = match self.s.slis.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.s.slis.push(SliFigures {
                    name: name.to_owned(),
                    ..SliFigures::default()
                });
                self.s.slis.len() - 1
            }
        };
        let f = &mut self.s.slis[index];
        f.samples = f.samples.saturating_add(1);
        // Samples may complete out of order; durations never run backwards (`seconds`
        // clamps at zero), and the latest sample time only moves forward.
        f.last_at = Some(f.last_at.map_or(at, |last| last.max(at)));
        if stage == Stage::During
            && let Some(v) = value
        {
            f.worst_value = Some(match (f.worst_value, tolerance) {
                (Some(w), Some(t)) => t.worse(w, v),
                (Some(w), None) => w.max(v),
                (None, _) => v,
            });
        }
        if ok {
            end_unhealthy(f, at);
            // From the fault on: an SLI back in tolerance before the revert healed while
            // the fault held.
            if matches!(stage, Stage::During | Stage::Recovery) {
                f.healthy_since.get_or_insert(at);
            }
        } else {
            // Recovered means back in tolerance for good: a relapse starts the count anew.
            f.healthy_since = None;
            if f.unhealthy_since.is_none() {
                f.unhealthy_since = Some(at);
            }
            if stage == Stage::During
                && f.time_to_impact_seconds.is_none()
                && let Some(injected) = injected
            {
                f.time_to_impact_seconds = Some(seconds(injected, at));
            }
        }
    }

    /// Closes every open out-of-tolerance episode at its SLI's last sample, so time
    /// unhealthy counts an SLI that never came back.
    pub(super) fn close_unhealthy(&mut self) {
        for f in &mut self.s.slis {
            if let Some(last) = f.last_at {
                end_unhealthy(f, last);
            }
        }
    }

    /// A platform's re-check of the held fault. A lapse runs from the last check that found
    /// the fault whole (it may have gone any time since) to the next one that does.
    pub(super) fn observe_check(&mut self, at: DateTime<Utc>, lapsed: Option<&String>) {
        if self.s.fault_state != FaultState::Injected {
            return;
        }
        let injected = self.s.injected_at;
        let check = self.s.fault_check.get_or_insert_with(FaultCheck::default);
        let known_whole = check.last_held_at.or(injected).unwrap_or(at);
        match lapsed {
            Some(what) => {
                let first = check.lapsed_since.is_none();
                let since = *check.lapsed_since.get_or_insert(known_whole);
                check.last_lapse = Some(what.clone());
                check.longest_lapse_seconds = check.longest_lapse_seconds.max(seconds(since, at));
                if first {
                    check.lapses = check.lapses.saturating_add(1);
                    // Not "re-applying": an agent re-applies a rule that went missing, but
                    // not an Injection it reverted itself (its heartbeat or expiry), and
                    // `what` says when re-applying failed. A heal is its own entry.
                    self.note(format!("the fault lapsed: {what}"));
                }
            }
            None => {
                check.last_held_at = Some(at);
                if let Some(gone) = end_lapse(check, at) {
                    self.note(format!("the fault holds again after a lapse of {gone:.1}s"));
                }
            }
        }
    }
}
