//! The experiment's lifecycle: when to sample, inject, hold, revert, recover and finish,
//! and the verdict it ends with.

use chrono::{DateTime, TimeDelta, Utc};

use crate::api::{DuringPolicy, FaultCheck, FaultState, Phase, Stage, Verdict};

use super::run::{Run, describe, end_lapse, later, left_tolerance, plus, seconds};
use super::types::{Action, EXPIRY_GRACE, INJECT_TIMEOUT, RETRY, VERIFY_PATIENCE};

impl Run<'_> {
    /// A fault reverted before its duration was up (its node's own timer, or its driver's
    /// heartbeat stopped) did not hold for the rest: that stretch counts as a lapse.
    pub(super) fn ended_early(&mut self) {
        let Some(injected) = self.s.injected_at else {
            return;
        };
        let end = later(injected, self.spec.duration.to_chrono());
        let reverted = self.s.reverted_at.unwrap_or(self.now).min(end);
        let missing = seconds(reverted, end);
        let check = self.s.fault_check.get_or_insert_with(FaultCheck::default);
        check.lapsed_since = None;
        check.lapses = check.lapses.saturating_add(1);
        check.longest_lapse_seconds = check.longest_lapse_seconds.max(missing);
        check.last_lapse = Some(format!(
            "it was reverted {missing:.1}s before its duration was up"
        ));
        self.note(format!(
            "the fault ended {missing:.1}s before its duration was up"
        ));
    }

    /// Why the fault cannot count as having held: it was found gone for longer than one
    /// sample interval.
    pub(super) fn lapse_failure(&self) -> Option<String> {
        let check = self.s.fault_check.as_ref()?;
        let interval = self.spec.hypothesis.interval.to_chrono().num_milliseconds() as f64;
        (check.longest_lapse_seconds * 1000.0 > interval).then(|| {
            format!(
                "the fault did not hold: part of it was gone for {:.1}s, longer than the \
                 {} sample interval ({})",
                check.longest_lapse_seconds,
                self.spec.hypothesis.interval,
                check.last_lapse.as_deref().unwrap_or("no detail")
            )
        })
    }

    /// The first tripped probe of a stage, described for a reason.
    pub(super) fn tripped(&self, stage: Stage) -> Option<String> {
        self.probes_of(stage).iter().find_map(|p| {
            let r = self.record(&p.name, stage)?;
            r.tripped.then(|| describe(r))
        })
    }

    /// Whether every hypothesis probe's latest sample in `stage` (taken at or after `since`)
    /// passed; otherwise the first that has not, described.
    pub(super) fn all_healthy(
        &self,
        stage: Stage,
        since: Option<DateTime<Utc>>,
    ) -> Result<(), String> {
        for probe in &self.spec.hypothesis.probes {
            let Some(r) = self.record(&probe.name, stage) else {
                return Err(format!("probe {} has no sample yet", probe.name));
            };
            if since.is_some_and(|t| r.last_at.is_none_or(|at| at < t)) {
                return Err(format!(
                    "probe {} has no sample of a window after the revert",
                    probe.name
                ));
            }
            if r.last_ok != Some(true) {
                return Err(describe(r));
            }
        }
        Ok(())
    }

    pub(super) fn enter(&mut self, phase: Phase, message: impl Into<String>) {
        self.s.phase = phase;
        self.s.phase_since = Some(self.now);
        self.s.last_sampled_at = None;
        self.note(message);
        match phase {
            Phase::Injecting => {
                self.s.fault_state = FaultState::Injecting;
                self.s.inject_requested_at = Some(self.now);
                let slack = plus(INJECT_TIMEOUT, EXPIRY_GRACE);
                self.s.expires_at =
                    Some(later(self.now, plus(self.spec.duration.to_chrono(), slack)));
            }
            Phase::Reverting if self.s.fault_state.may_be_active() => {
                // A lapse still open when the fault ends lasted until now.
                if let Some(check) = &mut self.s.fault_check {
                    end_lapse(check, self.now);
                }
                self.s.fault_state = FaultState::Reverting;
                self.s.revert_requested_at = Some(self.now);
            }
            _ => {}
        }
    }

    /// Ends the experiment. Never while the fault may be active: then it reverts first.
    pub(super) fn finish(&mut self, verdict: Verdict, reason: String) {
        if self.s.fault_state.may_be_active() {
            self.s.aborted_because.get_or_insert(reason);
            self.enter(Phase::Reverting, "reverting before completing");
            return;
        }
        // Whatever the verdict, a fault that was applied ends with the closing read; the
        // step that asks for it decides the same way again once it has come.
        if self.s.inject_requested_at.is_some() && self.awaits_closing_read() {
            self.actions.push(Action::VerifyWorkload);
            self.actions.push(Action::RequeueAt(self.now + RETRY));
            return;
        }
        self.close_unhealthy();
        let reason = self.with_loss(verdict, reason);
        self.s.verdict = Some(verdict);
        self.s.reason = Some(reason.clone());
        self.s.finished_at = Some(self.now);
        self.enter(Phase::Completed, format!("{verdict:?}: {reason}"));
    }

    pub(super) fn since_phase(&self) -> TimeDelta {
        self.now - self.s.phase_since.unwrap_or(self.now)
    }

    /// Asks for samples when the interval is due, and schedules the next step.
    pub(super) fn sample(&mut self, stages: &[Stage], deadline: DateTime<Utc>) {
        let interval = self
            .spec
            .hypothesis
            .interval
            .to_chrono()
            .max(TimeDelta::milliseconds(100));
        let due = self
            .s
            .last_sampled_at
            .is_none_or(|t| self.now >= later(t, interval));
        if due {
            for &stage in stages {
                let probes: Vec<String> = self
                    .probes_of(stage)
                    .iter()
                    .map(|p| p.name.clone())
                    .collect();
                if !probes.is_empty() {
                    self.actions.push(Action::Sample { stage, probes });
                }
            }
            self.s.last_sampled_at = Some(self.now);
        }
        let next = later(self.s.last_sampled_at.unwrap_or(self.now), interval);
        self.actions
            .push(Action::RequeueAt(next.min(deadline).max(self.now)));
    }

    pub(super) fn advance(&mut self) {
        let window = self.spec.hypothesis.window.to_chrono();
        match self.s.phase {
            Phase::Pending => {
                self.s.started_at = Some(self.now);
                if self.spec.dry_run {
                    self.finish(Verdict::Skipped, "dry run: nothing was injected".into());
                } else {
                    self.enter(
                        Phase::SteadyStateBefore,
                        "checking steady state before injecting",
                    );
                }
            }
            Phase::SteadyStateBefore => {
                if self.s.abort_requested {
                    let why = self.abort_reason();
                    return self.finish(Verdict::Aborted, format!("{why}; nothing was injected"));
                }
                if let Some(probe) = self.tripped(Stage::Before) {
                    return self.finish(
                        Verdict::Skipped,
                        format!("steady state did not hold before injection: {probe}"),
                    );
                }
                let elapsed = self.since_phase();
                let patience = window.checked_mul(3).unwrap_or(TimeDelta::MAX);
                if elapsed >= window {
                    match self.all_healthy(Stage::Before, None) {
                        Ok(()) => {
                            return self.enter(Phase::Injecting, "steady state holds; injecting");
                        }
                        Err(why) if elapsed >= patience => {
                            return self.finish(
                                Verdict::Skipped,
                                format!(
                                    "steady state not established within {}s: {why}",
                                    patience.num_seconds()
                                ),
                            );
                        }
                        Err(_) => {}
                    }
                }
                // The read the closing one is compared with, while the steady state is
                // established (an experiment without a workload has none).
                if self.spec.workload_url().is_some()
                    && self
                        .s
                        .loss_verification
                        .is_none_or(|v| v.baseline.is_none())
                {
                    self.actions.push(Action::VerifyWorkload);
                }
                let deadline = later(self.s.phase_since.unwrap_or(self.now), window);
                self.sample(&[Stage::Before], deadline.max(self.now));
            }
            Phase::Injecting => {
                if self.s.abort_requested || self.s.aborted_because.is_some() {
                    return self.enter(Phase::Reverting, "reverting a partial injection");
                }
                if self.s.fault_state == FaultState::Injected {
                    return self.enter(Phase::Holding, "holding the fault");
                }
                if self.since_phase() > INJECT_TIMEOUT {
                    self.s.aborted_because = Some(format!(
                        "the fault was not confirmed effective within {}s",
                        INJECT_TIMEOUT.num_seconds()
                    ));
                    return self.enter(Phase::Reverting, "injection timed out");
                }
                if let Some(expires_at) = self.s.expires_at {
                    self.actions.push(Action::Inject { expires_at });
                }
                self.actions.push(Action::RequeueAt(self.now + RETRY));
            }
            Phase::Holding => {
                if self.s.abort_requested {
                    return self.enter(Phase::Reverting, "reverting: abort requested");
                }
                if let Some(probe) = self.tripped(Stage::Abort) {
                    self.s.aborted_because = Some(format!("abort condition fired: {probe}"));
                    return self.enter(Phase::Reverting, format!("abort condition fired: {probe}"));
                }
                if self.s.fault_state == FaultState::Reverted {
                    // A node cut off by its fault hears no revert: it ends the fault when
                    // the duration is up by its own clock, and may say so first.
                    let end = later(
                        self.s.injected_at.unwrap_or(self.now),
                        self.spec.duration.to_chrono(),
                    );
                    if self.s.reverted_at.unwrap_or(self.now) >= end {
                        return self.enter(
                            Phase::Recovering,
                            "the fault ended at its duration (reverted on the node's own timer)",
                        );
                    }
                    self.ended_early();
                    return self.enter(
                        Phase::Recovering,
                        "the fault ended early (reverted on the node's own timer)",
                    );
                }
                if self.spec.hypothesis.during == DuringPolicy::Enforce
                    && self.s.violated_during.is_none()
                    && let Some(probe) = self.tripped(Stage::During)
                {
                    self.s.violated_during = Some(probe.clone());
                    self.note(format!("hypothesis violated during the fault: {probe}"));
                }
                let end = later(
                    self.s.injected_at.unwrap_or(self.now),
                    self.spec.duration.to_chrono(),
                );
                if self.now >= end {
                    return self.enter(Phase::Reverting, "duration elapsed; reverting");
                }
                self.sample(&[Stage::During, Stage::Abort], end);
            }
            Phase::Reverting => {
                if !self.s.fault_state.may_be_active() {
                    if self.s.abort_requested {
                        let why = self.abort_reason();
                        return self
                            .finish(Verdict::Aborted, format!("{why}; the fault was reverted"));
                    }
                    return self.enter(Phase::Recovering, "waiting for the system to recover");
                }
                self.actions.push(Action::Revert);
                self.actions.push(Action::RequeueAt(self.now + RETRY));
            }
            Phase::Recovering => {
                if self.s.abort_requested {
                    let why = self.abort_reason();
                    return self.finish(Verdict::Aborted, why);
                }
                let reverted = self.s.reverted_at.unwrap_or(self.now);
                // Only a sample whose window lies wholly after the revert speaks for the
                // recovered system: one taken sooner still averages over the fault, and
                // a heal can hurt more than the fault did (a healed partition elects
                // anew and replays what queued up).
                let settled = later(reverted, window);
                if self.all_healthy(Stage::Recovery, Some(settled)).is_ok() {
                    let at = self.latest_sample(Stage::Recovery).unwrap_or(self.now);
                    self.s.recovered_at = Some(at);
                    // The RTO is the slowest SLI's own first sample back in tolerance, not
                    // the settled window that lets the verdict go on.
                    self.s.time_to_recover_seconds = self.measured_recovery();
                    return self.enter(Phase::SteadyStateAfter, "recovered; checking steady state");
                }
                // Lost messages do not come back: a failed sample of such a count ends the
                // wait for recovery at once instead of at the deadline.
                let beyond = self
                    .spec
                    .hypothesis
                    .probes
                    .iter()
                    .filter(|p| p.cannot_recover())
                    .find_map(|p| {
                        // Measured: a probe that could not be read says nothing of a loss.
                        let r = self.record(&p.name, Stage::Recovery)?;
                        (r.last_ok == Some(false) && r.last_value.is_some()).then(|| describe(r))
                    });
                if let Some(why) = beyond {
                    return self.not_recovered(format!(
                        "did not recover: {why}, and a loss does not heal"
                    ));
                }
                let deadline = later(reverted, self.spec.recovery_deadline.to_chrono());
                if self.now > deadline {
                    let why = self
                        .all_healthy(Stage::Recovery, Some(settled))
                        .err()
                        .unwrap_or_default();
                    return self.not_recovered(format!(
                        "did not recover within the recovery deadline of {}: {why}",
                        self.spec.recovery_deadline
                    ));
                }
                self.sample(&[Stage::Recovery], deadline);
            }
            Phase::SteadyStateAfter => {
                if self.s.abort_requested {
                    let why = self.abort_reason();
                    return self.finish(Verdict::Aborted, why);
                }
                if let Some(probe) = self.tripped(Stage::After) {
                    return self.finish(
                        Verdict::Failed,
                        format!("steady state did not hold after recovery: {probe}"),
                    );
                }
                if self.since_phase() >= window && self.all_healthy(Stage::After, None).is_ok() {
                    let (verdict, reason) = self.final_verdict();
                    return self.finish(verdict, reason);
                }
                let deadline = later(self.s.phase_since.unwrap_or(self.now), window);
                self.sample(&[Stage::After], deadline.max(self.now));
            }
            Phase::Completed => {}
        }
    }

    /// Ends a run that will not recover: Failed, or Aborted if it was already aborting.
    fn not_recovered(&mut self, reason: String) {
        match self.s.aborted_because.clone() {
            Some(aborted) => self.finish(Verdict::Aborted, format!("{aborted}; then {reason}")),
            None => self.finish(Verdict::Failed, reason),
        }
    }

    pub(super) fn abort_reason(&self) -> String {
        self.s
            .aborted_because
            .clone()
            .unwrap_or_else(|| "abort requested".into())
    }

    pub(super) fn latest_sample(&self, stage: Stage) -> Option<DateTime<Utc>> {
        self.s
            .probes
            .iter()
            .filter(|r| r.stage == stage)
            .filter_map(|r| r.last_at)
            .max()
    }

    /// Records each impacted SLI's time to recover (revert → the first sample of the run of
    /// samples in tolerance it is still in) and returns the slowest, once every impacted SLI
    /// has one. An SLI that never left its tolerance had nothing to recover from: it gets no
    /// figure (its first sample after the revert, taken at once, would read 0.0 s). Nor does
    /// one whose run in tolerance began before the revert: it healed while the fault held,
    /// and reading 0.0 s off its first sample after the revert would measure the sampler.
    pub(super) fn measured_recovery(&mut self) -> Option<f64> {
        let reverted = self.s.reverted_at?;
        let mut slowest: Option<f64> = None;
        for probe in &self.spec.hypothesis.probes {
            let Some(f) = self.s.slis.iter_mut().find(|f| f.name == probe.name) else {
                continue;
            };
            f.time_to_recover_seconds = None;
            f.healed_while_held = false;
            if !left_tolerance(f) {
                continue;
            }
            let back = f.healthy_since?;
            if back < reverted {
                f.healed_while_held = true;
                continue;
            }
            let t = seconds(reverted, back);
            f.time_to_recover_seconds = Some(t);
            slowest = Some(slowest.map_or(t, |worst: f64| worst.max(t)));
        }
        slowest
    }

    /// A run that failed or was aborted for another reason still says what it lost: the
    /// closing read's count is the experiment's RPO whatever else went wrong.
    /// A closing read given up leaves only the live count, which never sees a message it
    /// read and the store lost afterwards; the reason says so, whatever the verdict.
    fn with_loss(&self, verdict: Verdict, reason: String) -> String {
        let reason = match self.s.messages_lost.filter(|n| *n > 0) {
            Some(lost)
                if matches!(verdict, Verdict::Failed | Verdict::Aborted)
                    && reason != loss_reason(lost) =>
            {
                format!("{reason}; {}", loss_reason(lost))
            }
            _ => reason,
        };
        let unverified = self.s.loss_verification.as_ref().is_some_and(|v| {
            v.baseline.is_some() && v.closing_asked_at.is_some() && v.closing.is_none()
        });
        if !unverified {
            return reason;
        }
        format!(
            "{reason}; loss not verified: no verification read within {}s, so the {} lost \
             counted live is only a lower bound",
            VERIFY_PATIENCE.num_seconds(),
            self.s.messages_lost.unwrap_or(0)
        )
    }

    pub(super) fn final_verdict(&self) -> (Verdict, String) {
        if let Some(aborted) = &self.s.aborted_because {
            return (Verdict::Aborted, aborted.clone());
        }
        if let Some(lapse) = self.lapse_failure() {
            return (Verdict::Failed, lapse);
        }
        if let Some(probe) = &self.s.violated_during {
            return (
                Verdict::Failed,
                format!("hypothesis violated during the fault: {probe}"),
            );
        }
        if let Some(lost) = self.s.messages_lost.filter(|n| *n > 0) {
            return (Verdict::Failed, loss_reason(lost));
        }
        let recovered = match self.s.time_to_recover_seconds {
            Some(t) => format!("recovered in {t:.1}s"),
            None if self.s.slis.iter().any(|f| f.healed_while_held) => {
                "every SLI that left its tolerance was back within it before the revert".to_owned()
            }
            None => "no SLI left its tolerance".to_owned(),
        };
        (Verdict::Passed, format!("the hypothesis held; {recovered}"))
    }
}

fn loss_reason(lost: u64) -> String {
    format!("{lost} acknowledged messages lost (RPO must be 0)")
}
