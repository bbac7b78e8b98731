use chrono::{DateTime, TimeDelta, Utc};

use crate::api::{
    Condition, DuringPolicy, ExperimentSpec, ExperimentStatus, FaultCheck, FaultState, Phase,
    Probe, ProbeRecord, SliFigures, Stage, TimelineEntry, Tolerance, Verdict, WorkloadCounters,
};

/// How long a platform has to confirm a fault effective before the experiment is aborted.
pub const INJECT_TIMEOUT: TimeDelta = TimeDelta::seconds(60);

/// Added to the fault's duration to make the expiry node agents enforce on their own; long
/// enough that a healthy operator always reverts first.
const EXPIRY_GRACE: TimeDelta = TimeDelta::seconds(60);

/// How often a platform is asked again to revert (or inject) while it has not confirmed.
const RETRY: TimeDelta = TimeDelta::seconds(1);

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

/// Advances an experiment. Deterministic: the same inputs always give the same transition, and
/// everything needed to continue is in the returned status.
pub fn step(
    spec: &ExperimentSpec,
    status: &ExperimentStatus,
    now: DateTime<Utc>,
    observations: &[Observation],
) -> Transition {
    let mut run = Run {
        spec,
        s: status.clone(),
        now,
        actions: Vec::new(),
    };
    run.s.fault = Some(spec.fault.name().to_owned());
    for observation in observations {
        run.observe(observation);
    }
    // Each pass either changes phase or settles; the lifecycle has eight phases.
    for _ in 0..16 {
        let before = run.s.phase;
        run.advance();
        if run.s.phase == before {
            break;
        }
    }
    run.update_conditions();
    Transition {
        status: run.s,
        actions: run.actions,
    }
}

struct Run<'a> {
    spec: &'a ExperimentSpec,
    s: ExperimentStatus,
    now: DateTime<Utc>,
    actions: Vec<Action>,
}

/// Stages whose samples count in a phase; samples for other stages arrived late and are
/// dropped.
fn stages_of(phase: Phase) -> &'static [Stage] {
    match phase {
        Phase::SteadyStateBefore => &[Stage::Before],
        Phase::Holding => &[Stage::During, Stage::Abort],
        Phase::Recovering => &[Stage::Recovery],
        Phase::SteadyStateAfter => &[Stage::After],
        _ => &[],
    }
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds().max(0) as f64 / 1000.0
}

/// `at + delta`, saturating at the latest representable time: a duration past what
/// admission allows (a spec that bypassed it) must not overflow the clock.
fn later(at: DateTime<Utc>, delta: TimeDelta) -> DateTime<Utc> {
    at.checked_add_signed(delta)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Ends an SLI's open out-of-tolerance episode at `at`, adding it to its time unhealthy.
fn end_unhealthy(f: &mut SliFigures, at: DateTime<Utc>) {
    if let Some(since) = f.unhealthy_since.take() {
        f.unhealthy_seconds += seconds(since, at);
    }
}

/// Whether the SLI had a sample out of tolerance while the fault held or while recovering.
fn left_tolerance(f: &SliFigures) -> bool {
    f.time_to_impact_seconds.is_some() || f.unhealthy_since.is_some() || f.unhealthy_seconds > 0.0
}

/// Ends an open lapse at `at`, keeping the longest; returns how long it lasted.
fn end_lapse(check: &mut FaultCheck, at: DateTime<Utc>) -> Option<f64> {
    let gone = seconds(check.lapsed_since.take()?, at);
    check.longest_lapse_seconds = check.longest_lapse_seconds.max(gone);
    Some(gone)
}

/// Sum of durations, saturating.
fn plus(a: TimeDelta, b: TimeDelta) -> TimeDelta {
    a.checked_add(&b).unwrap_or(TimeDelta::MAX)
}

impl Run<'_> {
    fn probes_of(&self, stage: Stage) -> &[Probe] {
        match stage {
            Stage::Abort => &self.spec.abort_conditions,
            _ => &self.spec.hypothesis.probes,
        }
    }

    fn record(&self, name: &str, stage: Stage) -> Option<&ProbeRecord> {
        self.s
            .probes
            .iter()
            .find(|r| r.name == name && r.stage == stage)
    }

    fn note(&mut self, message: impl Into<String>) {
        self.s.timeline.push(TimelineEntry {
            at: self.now,
            phase: self.s.phase,
            message: message.into(),
        });
    }

    fn observe(&mut self, observation: &Observation) {
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
                    self.note("fault effective");
                }
            }
            Observation::FaultReverted { at } => {
                if self.s.fault_state.may_be_active() {
                    self.s.fault_state = FaultState::Reverted;
                    self.s.reverted_at = Some(*at);
                    self.note("fault reverted");
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
    fn observe_verification(&mut self, counters: WorkloadCounters) {
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
    fn awaits_closing_read(&mut self) -> bool {
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

    fn observe_sample(&mut self, name: &str, stage: Stage, at: DateTime<Utc>, outcome: &Outcome) {
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
                    Some(format!("measured {v}, tolerance {t}")),
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
            self.note(format!("impact: probe {name} failed"));
        }
    }

    /// Updates one SLI's figures with a sample taken while the fault held or while
    /// recovering. Each figure is read off the samples themselves, at the sample interval.
    fn measure(
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
            if stage == Stage::Recovery {
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
    fn close_unhealthy(&mut self) {
        for f in &mut self.s.slis {
            if let Some(last) = f.last_at {
                end_unhealthy(f, last);
            }
        }
    }

    /// A platform's re-check of the held fault. A lapse runs from the last check that found
    /// the fault whole (it may have gone any time since) to the next one that does.
    fn observe_check(&mut self, at: DateTime<Utc>, lapsed: Option<&String>) {
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
                    self.note(format!("the fault lapsed: {what}; re-applying"));
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

    /// A fault reverted before its duration was up (its node's own timer, or its driver's
    /// heartbeat stopped) did not hold for the rest: that stretch counts as a lapse.
    fn ended_early(&mut self) {
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
    fn lapse_failure(&self) -> Option<String> {
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
    fn tripped(&self, stage: Stage) -> Option<String> {
        self.probes_of(stage).iter().find_map(|p| {
            let r = self.record(&p.name, stage)?;
            r.tripped.then(|| describe(r))
        })
    }

    /// Whether every hypothesis probe's latest sample in `stage` (taken at or after `since`)
    /// passed; otherwise the first that has not, described.
    fn all_healthy(&self, stage: Stage, since: Option<DateTime<Utc>>) -> Result<(), String> {
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

    fn enter(&mut self, phase: Phase, message: impl Into<String>) {
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
    fn finish(&mut self, verdict: Verdict, reason: String) {
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
        self.s.verdict = Some(verdict);
        self.s.reason = Some(reason.clone());
        self.s.finished_at = Some(self.now);
        self.enter(Phase::Completed, format!("{verdict:?}: {reason}"));
    }

    fn since_phase(&self) -> TimeDelta {
        self.now - self.s.phase_since.unwrap_or(self.now)
    }

    /// Asks for samples when the interval is due, and schedules the next step.
    fn sample(&mut self, stages: &[Stage], deadline: DateTime<Utc>) {
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

    fn advance(&mut self) {
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
                let deadline = later(reverted, self.spec.recovery_deadline.to_chrono());
                if self.now > deadline {
                    let why = self
                        .all_healthy(Stage::Recovery, Some(settled))
                        .err()
                        .unwrap_or_default();
                    let reason = format!(
                        "did not recover within the recovery deadline of {}: {why}",
                        self.spec.recovery_deadline
                    );
                    return match self.s.aborted_because.clone() {
                        Some(aborted) => {
                            self.finish(Verdict::Aborted, format!("{aborted}; then {reason}"))
                        }
                        None => self.finish(Verdict::Failed, reason),
                    };
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

    fn abort_reason(&self) -> String {
        self.s
            .aborted_because
            .clone()
            .unwrap_or_else(|| "abort requested".into())
    }

    fn latest_sample(&self, stage: Stage) -> Option<DateTime<Utc>> {
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
    /// figure (its first sample after the revert, taken at once, would read 0.0 s), and a
    /// run none of whose SLIs left tolerance has no time to recover at all.
    fn measured_recovery(&mut self) -> Option<f64> {
        let reverted = self.s.reverted_at?;
        let mut slowest: Option<f64> = None;
        for probe in &self.spec.hypothesis.probes {
            let Some(f) = self.s.slis.iter_mut().find(|f| f.name == probe.name) else {
                continue;
            };
            if !left_tolerance(f) {
                f.time_to_recover_seconds = None;
                continue;
            }
            f.time_to_recover_seconds = f.healthy_since.map(|at| seconds(reverted, at));
            let t = f.time_to_recover_seconds?;
            slowest = Some(slowest.map_or(t, |worst: f64| worst.max(t)));
        }
        slowest
    }

    fn final_verdict(&self) -> (Verdict, String) {
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
            return (
                Verdict::Failed,
                format!("{lost} acknowledged messages lost (RPO must be 0)"),
            );
        }
        let recovered = match self.s.time_to_recover_seconds {
            Some(t) => format!("recovered in {t:.1}s"),
            None => "no SLI left its tolerance".to_owned(),
        };
        (Verdict::Passed, format!("the hypothesis held; {recovered}"))
    }

    fn update_conditions(&mut self) {
        let active = self.s.fault_state.may_be_active();
        let status = if active { "True" } else { "False" };
        let reason = format!("{:?}", self.s.fault_state);
        let message = match self.s.fault_state {
            FaultState::NotInjected => "nothing has been injected",
            FaultState::Injecting => "the fault is being applied",
            FaultState::Injected => "the fault is in effect",
            FaultState::Reverting => "the fault is being reverted",
            FaultState::Reverted => "the fault was reverted",
        };
        set_condition(
            &mut self.s.conditions,
            "FaultActive",
            status,
            &reason,
            message,
            self.now,
        );
        let done = self.s.phase == Phase::Completed;
        let message = self
            .s
            .reason
            .clone()
            .unwrap_or_else(|| format!("{:?}", self.s.phase));
        let reason = self
            .s
            .verdict
            .map_or_else(|| format!("{:?}", self.s.phase), |v| format!("{v:?}"));
        set_condition(
            &mut self.s.conditions,
            "Completed",
            if done { "True" } else { "False" },
            &reason,
            &message,
            self.now,
        );
    }
}

fn describe(r: &ProbeRecord) -> String {
    format!(
        "probe {} failed {} of {} samples ({})",
        r.name,
        r.failures,
        r.samples,
        r.last_failure.as_deref().unwrap_or("no detail")
    )
}

/// Sets a condition, moving its transition time only when its status changes.
fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) {
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now;
                c.status = status.to_owned();
            }
            reason.clone_into(&mut c.reason);
            message.clone_into(&mut c.message);
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_time: now,
        }),
    }
}
