//! Property tests of the experiment engine over random event sequences, plus scenario tests
//! with a cooperative simulated platform.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use firedrill_core::{
    api::{ExperimentSpec, ExperimentStatus, Phase, Stage, Verdict, WorkloadCounters},
    engine::{Action, Observation, Outcome, Transition, step},
    manifest::{self, Manifest},
};
use proptest::prelude::*;

fn catalog_spec(text: &str) -> ExperimentSpec {
    match manifest::load_str(text)
        .expect("catalog is valid")
        .remove(0)
    {
        Manifest::Experiment(e) => e.spec,
        other => panic!("expected an Experiment, got {}", other.kind()),
    }
}

fn spec() -> ExperimentSpec {
    catalog_spec(include_str!("../../experiments/zone-blackout.yaml"))
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0)
        .single()
        .expect("valid time")
}

#[derive(Clone, Debug)]
enum Event {
    Sample(usize, Stage, u8),
    Applied,
    Reverted,
    InjectionFailed,
    Abort,
    Workload(u64, u64),
}

#[derive(Clone, Debug)]
struct Tick {
    advance_ms: i64,
    events: Vec<Event>,
    restart: bool,
}

fn stage() -> impl Strategy<Value = Stage> {
    prop_oneof![
        Just(Stage::Before),
        Just(Stage::During),
        Just(Stage::Abort),
        Just(Stage::Recovery),
        Just(Stage::After),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => (0usize..6, stage(), 0u8..6).prop_map(|(p, s, o)| Event::Sample(p, s, o)),
        2 => Just(Event::Applied),
        2 => Just(Event::Reverted),
        1 => Just(Event::InjectionFailed),
        1 => Just(Event::Abort),
        1 => (0u64..3, 0u64..3).prop_map(|(l, d)| Event::Workload(l, d)),
    ]
}

fn tick() -> impl Strategy<Value = Tick> {
    (
        0i64..20_000,
        prop::collection::vec(event(), 0..5),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(advance_ms, events, restart)| Tick {
            advance_ms,
            events,
            restart,
        })
}

/// The probe names a sample may name: the spec's, plus one it does not know.
fn probe_name(spec: &ExperimentSpec, i: usize) -> String {
    let names: Vec<&str> = spec
        .hypothesis
        .probes
        .iter()
        .chain(&spec.abort_conditions)
        .map(|p| p.name.as_str())
        .collect();
    names
        .get(i)
        .map_or_else(|| "unknown-probe".to_owned(), |n| (*n).to_owned())
}

fn outcome(o: u8) -> Outcome {
    match o {
        0 => Outcome::Healthy,
        1 => Outcome::Unhealthy("connection refused".into()),
        2 => Outcome::Measured(0.0),
        3 => Outcome::Measured(1.0),
        4 => Outcome::Measured(0.4),
        _ => Outcome::Measured(f64::NAN),
    }
}

fn observations(spec: &ExperimentSpec, events: &[Event], now: DateTime<Utc>) -> Vec<Observation> {
    events
        .iter()
        .map(|e| match e {
            Event::Sample(p, stage, o) => Observation::Sample {
                probe: probe_name(spec, *p),
                stage: *stage,
                at: now,
                outcome: outcome(*o),
            },
            Event::Applied => Observation::FaultApplied { at: now },
            Event::Reverted => Observation::FaultReverted { at: now },
            Event::InjectionFailed => Observation::InjectionFailed {
                at: now,
                reason: "node unreachable".into(),
            },
            Event::Abort => Observation::AbortRequested {
                reason: "kill switch".into(),
            },
            Event::Workload(lost, duplicated) => Observation::Workload(WorkloadCounters {
                lost: *lost,
                duplicated: *duplicated,
            }),
        })
        .collect()
}

fn round_trip(status: &ExperimentStatus) -> ExperimentStatus {
    let json = serde_json::to_string(status).expect("status serializes");
    serde_json::from_str(&json).expect("status deserializes")
}

/// Runs the ticks; returns every transition. With `restarts`, the status is persisted and
/// reloaded wherever a tick asks, as a restarted operator would.
fn run(spec: &ExperimentSpec, ticks: &[Tick], restarts: bool) -> Vec<Transition> {
    let mut status = ExperimentStatus::default();
    let mut now = t0();
    let mut out = Vec::new();
    for tick in ticks {
        now += TimeDelta::milliseconds(tick.advance_ms);
        if restarts && tick.restart {
            status = round_trip(&status);
        }
        let t = step(spec, &status, now, &observations(spec, &tick.events, now));
        status = t.status.clone();
        out.push(t);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn safety_invariants_hold_on_every_path(ticks in prop::collection::vec(tick(), 1..80)) {
        let spec = spec();
        let mut injected_ever = false;
        let mut reverting_seen_after_inject = false;
        let mut completed = false;
        for t in run(&spec, &ticks, false) {
            let s = &t.status;
            if t.actions.iter().any(|a| matches!(a, Action::Inject { .. })) {
                injected_ever = true;
            }
            if injected_ever && s.phase == Phase::Reverting {
                reverting_seen_after_inject = true;
            }
            if completed {
                prop_assert_eq!(s.phase, Phase::Completed, "left Completed");
            }
            if s.phase == Phase::Completed {
                completed = true;
                prop_assert!(!s.fault_state.may_be_active(), "completed with the fault {:?}", s.fault_state);
                prop_assert!(s.verdict.is_some(), "completed without a verdict");
                prop_assert!(t.actions.is_empty(), "actions after completion: {:?}", t.actions);
                if injected_ever {
                    prop_assert!(reverting_seen_after_inject, "completed after injecting without reverting");
                }
            }
            if s.verdict == Some(Verdict::Skipped) {
                prop_assert!(!injected_ever, "a skipped experiment injected");
                prop_assert!(s.inject_requested_at.is_none());
            }
            if s.aborted_because.is_some() && s.fault_state.may_be_active() {
                prop_assert!(
                    matches!(s.phase, Phase::Reverting | Phase::Injecting | Phase::Holding) ,
                    "aborted with the fault active in {:?}", s.phase
                );
            }
        }
    }

    #[test]
    fn an_abort_while_the_fault_is_active_reverts_first(ticks in prop::collection::vec(tick(), 1..80)) {
        let spec = spec();
        let mut abort_pending = false;
        for t in run(&spec, &ticks, false) {
            let s = &t.status;
            if s.aborted_because.is_some() && s.fault_state.may_be_active() {
                abort_pending = true;
            }
            if abort_pending && s.phase == Phase::Holding {
                prop_assert!(false, "kept holding after an abort");
            }
            if abort_pending && s.phase == Phase::Reverting {
                abort_pending = false;
            }
            prop_assert!(!(abort_pending && s.phase == Phase::Completed), "completed an abort without Reverting");
        }
    }

    #[test]
    fn a_restart_from_any_persisted_status_continues_identically(ticks in prop::collection::vec(tick(), 1..80)) {
        let spec = spec();
        let straight = run(&spec, &ticks, false);
        let restarted = run(&spec, &ticks, true);
        prop_assert_eq!(straight, restarted);
    }
}

/// A platform that does what it is asked: applies and reverts at once and answers probes
/// with `health(stage)`.
fn simulate(
    spec: &ExperimentSpec,
    health: impl Fn(Stage) -> Outcome,
    revert_works: bool,
    limit: TimeDelta,
) -> ExperimentStatus {
    simulate_over_time(spec, |stage, _, _| health(stage), revert_works, limit)
}

/// `simulate` with a health that also depends on the time and the status so far.
fn simulate_over_time(
    spec: &ExperimentSpec,
    health: impl Fn(Stage, DateTime<Utc>, &ExperimentStatus) -> Outcome,
    revert_works: bool,
    limit: TimeDelta,
) -> ExperimentStatus {
    simulate_checked(spec, health, |_, _| None, revert_works, limit)
}

/// `simulate_over_time` whose platform also re-checks the held fault on every pass:
/// `check` says what it found (held, or lapsed), if it checked.
fn simulate_checked(
    spec: &ExperimentSpec,
    health: impl Fn(Stage, DateTime<Utc>, &ExperimentStatus) -> Outcome,
    check: impl Fn(DateTime<Utc>, &ExperimentStatus) -> Option<Observation>,
    revert_works: bool,
    limit: TimeDelta,
) -> ExperimentStatus {
    simulate_verified(spec, health, check, |_| None, revert_works, limit)
}

/// `simulate_checked` whose workload answers verification reads with `verify(status)`
/// (none: the read failed).
fn simulate_verified(
    spec: &ExperimentSpec,
    health: impl Fn(Stage, DateTime<Utc>, &ExperimentStatus) -> Outcome,
    check: impl Fn(DateTime<Utc>, &ExperimentStatus) -> Option<Observation>,
    verify: impl Fn(&ExperimentStatus) -> Option<WorkloadCounters>,
    revert_works: bool,
    limit: TimeDelta,
) -> ExperimentStatus {
    let mut status = ExperimentStatus::default();
    let mut now = t0();
    let mut pending = Vec::new();
    while now - t0() < limit {
        let t = step(spec, &status, now, &std::mem::take(&mut pending));
        status = t.status;
        if status.phase == Phase::Holding {
            pending.extend(check(now, &status));
        }
        let mut next = now + TimeDelta::seconds(1);
        for action in t.actions {
            match action {
                Action::Inject { expires_at } => {
                    assert!(
                        expires_at > now + spec.duration.to_chrono(),
                        "expiry before the end of the fault"
                    );
                    pending.push(Observation::FaultApplied { at: now });
                }
                Action::Revert if revert_works => {
                    pending.push(Observation::FaultReverted { at: now })
                }
                Action::Revert => {}
                Action::Sample { stage, probes } => {
                    for probe in probes {
                        pending.push(Observation::Sample {
                            probe,
                            stage,
                            at: now,
                            outcome: health(stage, now, &status),
                        });
                    }
                }
                Action::VerifyWorkload => {
                    pending.extend(verify(&status).map(Observation::Verified))
                }
                Action::RequeueAt(at) => {
                    next = next.min(at.max(now + TimeDelta::milliseconds(100)))
                }
            }
        }
        if status.phase == Phase::Completed {
            break;
        }
        now = next;
    }
    status
}

fn healthy(_: Stage) -> Outcome {
    Outcome::Measured(0.0)
}

/// Zero suits every probe of the network-partition experiment except the delivery ratio.
fn partition_spec() -> ExperimentSpec {
    let mut spec = catalog_spec(include_str!("../../experiments/network-partition.yaml"));
    for probe in spec
        .hypothesis
        .probes
        .iter_mut()
        .chain(spec.abort_conditions.iter_mut())
    {
        probe.tolerance = Some(firedrill_core::api::Tolerance {
            op: firedrill_core::api::Comparison::AtMost,
            value: 0.5,
        });
    }
    spec
}

#[test]
fn a_healthy_system_passes_with_figures() {
    let spec = partition_spec();
    let status = simulate(&spec, healthy, true, TimeDelta::minutes(10));
    assert_eq!(status.verdict, Some(Verdict::Passed), "{:?}", status.reason);
    // Nothing left tolerance, so there is nothing to recover from: no figure rather than
    // the 0.0 s of a first sample taken at once after the revert.
    assert!(status.time_to_impact_seconds.is_none());
    assert_eq!(status.time_to_recover_seconds, None);
    assert!(
        status
            .slis
            .iter()
            .all(|f| f.time_to_recover_seconds.is_none())
    );
    assert_eq!(
        status.reason.as_deref(),
        Some("the hypothesis held; no SLI left its tolerance")
    );
    assert!(status.timeline.iter().any(|e| e.phase == Phase::Holding));
}

#[test]
fn failing_before_injection_skips_and_names_the_probe() {
    let spec = partition_spec();
    let status = simulate(
        &spec,
        |_| Outcome::Unhealthy("503".into()),
        true,
        TimeDelta::minutes(10),
    );
    assert_eq!(status.verdict, Some(Verdict::Skipped));
    assert!(status.inject_requested_at.is_none());
    let reason = status.reason.unwrap_or_default();
    assert!(
        reason.starts_with("steady state did not hold before injection: probe "),
        "{reason}"
    );
    assert!(reason.contains("(503)"), "{reason}");
}

#[test]
fn a_violation_while_holding_fails_and_measures_impact() {
    let spec = partition_spec();
    let status = simulate(
        &spec,
        |stage| {
            if stage == Stage::During {
                Outcome::Measured(0.8)
            } else {
                Outcome::Measured(0.0)
            }
        },
        true,
        TimeDelta::minutes(10),
    );
    assert_eq!(status.verdict, Some(Verdict::Failed), "{:?}", status.reason);
    assert!(
        status
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("during the fault"))
    );
    assert!(status.time_to_impact_seconds.is_some_and(|t| t < 3.0));
}

#[test]
fn an_abort_condition_reverts_at_once() {
    let spec = partition_spec();
    let status = simulate(
        &spec,
        |stage| {
            if stage == Stage::Abort {
                Outcome::Measured(1.0)
            } else {
                Outcome::Measured(0.0)
            }
        },
        true,
        TimeDelta::minutes(10),
    );
    assert_eq!(
        status.verdict,
        Some(Verdict::Aborted),
        "{:?}",
        status.reason
    );
    let held = (status.revert_requested_at.expect("reverted")
        - status.injected_at.expect("injected"))
    .num_seconds();
    assert!(
        held < spec.duration.to_chrono().num_seconds(),
        "held {held}s despite the abort"
    );
}

#[test]
fn never_recovering_fails_at_the_deadline() {
    let spec = partition_spec();
    let status = simulate(
        &spec,
        |stage| match stage {
            Stage::Recovery | Stage::After => Outcome::Unhealthy("still down".into()),
            _ => Outcome::Measured(0.0),
        },
        true,
        TimeDelta::minutes(10),
    );
    assert_eq!(status.verdict, Some(Verdict::Failed));
    assert!(
        status
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("recovery deadline")),
        "{:?}",
        status.reason
    );
}

#[test]
fn a_heal_that_hurts_is_waited_out_not_judged_on_samples_of_the_fault() {
    // Seen on the cluster: a partition that talk rode out, then a brownout of ~90 s after
    // the heal. Samples in the first seconds after the revert still average over the
    // fault and look fine; they must not count as recovered.
    let spec = partition_spec();
    let brownout = TimeDelta::seconds(30);
    let status = simulate_over_time(
        &spec,
        |stage, now, status| {
            let since_revert = status.reverted_at.map(|r| now - r);
            match (stage, since_revert) {
                (Stage::Recovery | Stage::After, Some(t))
                    if t >= TimeDelta::seconds(3) && t < brownout =>
                {
                    Outcome::Unhealthy("brownout after the heal".into())
                }
                _ => Outcome::Measured(0.0),
            }
        },
        true,
        TimeDelta::minutes(10),
    );
    assert_eq!(status.verdict, Some(Verdict::Passed), "{:?}", status.reason);
    let recovered = status.time_to_recover_seconds.expect("recovered");
    assert!(
        recovered >= brownout.num_seconds() as f64,
        "recovered after {recovered}s, inside the brownout"
    );
}

#[test]
fn an_unconfirmed_revert_never_completes() {
    let spec = partition_spec();
    let status = simulate(&spec, healthy, false, TimeDelta::minutes(30));
    assert_eq!(status.phase, Phase::Reverting);
    assert!(status.fault_state.may_be_active());
    assert!(status.verdict.is_none());
}

#[test]
fn an_operator_back_after_long_downtime_reverts_immediately() {
    let spec = partition_spec();
    let mut status = ExperimentStatus::default();
    let mut now = t0();
    let mut pending = Vec::new();
    while status.phase != Phase::Holding {
        let t = step(&spec, &status, now, &std::mem::take(&mut pending));
        for action in &t.actions {
            match action {
                Action::Inject { .. } => pending.push(Observation::FaultApplied { at: now }),
                Action::Sample { stage, probes } => {
                    pending.extend(probes.iter().map(|p| Observation::Sample {
                        probe: p.clone(),
                        stage: *stage,
                        at: now,
                        outcome: Outcome::Measured(0.0),
                    }))
                }
                _ => {}
            }
        }
        status = round_trip(&t.status);
        now += TimeDelta::seconds(1);
    }
    let later = step(&spec, &status, now + TimeDelta::hours(1), &[]);
    assert_eq!(later.status.phase, Phase::Reverting);
    assert!(later.actions.contains(&Action::Revert));
}

#[test]
fn lost_messages_fail_an_otherwise_healthy_run() {
    let spec = partition_spec();
    let mut status = ExperimentStatus::default();
    let mut now = t0();
    let mut pending = vec![Observation::Workload(WorkloadCounters {
        lost: 5,
        duplicated: 0,
    })];
    for _ in 0..600 {
        let t = step(&spec, &status, now, &std::mem::take(&mut pending));
        for action in &t.actions {
            match action {
                Action::Inject { .. } => pending.push(Observation::FaultApplied { at: now }),
                Action::Revert => {
                    pending.push(Observation::FaultReverted { at: now });
                    pending.push(Observation::Workload(WorkloadCounters {
                        lost: 8,
                        duplicated: 1,
                    }));
                }
                Action::Sample { stage, probes } => {
                    pending.extend(probes.iter().map(|p| Observation::Sample {
                        probe: p.clone(),
                        stage: *stage,
                        at: now,
                        outcome: Outcome::Measured(0.0),
                    }))
                }
                _ => {}
            }
        }
        status = t.status;
        if status.phase == Phase::Completed {
            break;
        }
        now += TimeDelta::seconds(1);
    }
    assert_eq!(status.verdict, Some(Verdict::Failed));
    assert_eq!(status.messages_lost, Some(3));
    assert_eq!(status.messages_duplicated, Some(1));
}

fn with_interval(mut spec: ExperimentSpec, interval: &str) -> ExperimentSpec {
    spec.hypothesis.interval = interval.parse().expect("a duration");
    spec
}

/// The SLI is out of tolerance for exactly `from..until` after the fault is effective.
fn out_between(
    from: TimeDelta,
    until: TimeDelta,
) -> impl Fn(Stage, DateTime<Utc>, &ExperimentStatus) -> Outcome {
    move |stage, now, status| {
        let since = status.injected_at.map(|at| now - at);
        match (stage, since) {
            (Stage::During, Some(t)) if t >= from && t < until => Outcome::Measured(0.8),
            (Stage::During, _) => Outcome::Measured(0.1),
            _ => Outcome::Measured(0.0),
        }
    }
}

#[test]
fn figures_are_measured_at_the_sample_interval_not_read_off_the_window() {
    // Seven seconds out of tolerance, three seconds into the fault, sampled every second.
    let spec = with_interval(partition_spec(), "1s");
    let window = spec.hypothesis.window.to_chrono().num_seconds() as f64;
    let status = simulate_over_time(
        &spec,
        out_between(TimeDelta::seconds(3), TimeDelta::seconds(10)),
        true,
        TimeDelta::minutes(10),
    );
    assert_eq!(status.phase, Phase::Completed);
    assert_eq!(status.slis.len(), spec.hypothesis.probes.len());
    for sli in &status.slis {
        let unhealthy = sli.unhealthy_seconds;
        assert!(
            (6.0..=8.0).contains(&unhealthy),
            "{}: {unhealthy}s",
            sli.name
        );
        let impact = sli.time_to_impact_seconds.expect("impact");
        assert!(
            (3.0..=4.0).contains(&impact),
            "{}: impact {impact}s",
            sli.name
        );
        assert_eq!(sli.worst_value, Some(0.8), "{}", sli.name);
        // Back 10 s into the fault, long before the revert: it healed while the fault
        // held, and a time to recover read off the first sample after the revert would
        // measure the sampler (0.0 s in every run).
        assert!(sli.healed_while_held, "{sli:?}");
        assert_eq!(sli.time_to_recover_seconds, None, "{}", sli.name);
    }
    assert_eq!(status.time_to_recover_seconds, None);
    // The timeline says the impact when the sample saw it, as the figure does, not when the
    // next step learnt of it.
    let impact_note = status
        .timeline
        .iter()
        .find(|e| e.message.starts_with("impact:"))
        .expect("an impact note");
    let injected = status.injected_at.expect("injected");
    let impact = status.time_to_impact_seconds.expect("impact");
    assert_eq!(
        (impact_note.at - injected).num_milliseconds(),
        (impact * 1000.0).round() as i64,
        "{:?}",
        status.timeline
    );
    let effective_note = status
        .timeline
        .iter()
        .find(|e| e.message == "fault effective")
        .expect("an effective note");
    assert_eq!(effective_note.at, injected, "{:?}", status.timeline);
    assert!(
        status.timeline.windows(2).all(|w| w[0].at <= w[1].at),
        "{:?}",
        status.timeline
    );
    // Out of tolerance until the revert: the time to recover is measured from the revert,
    // to the sample interval.
    let held = spec.duration.to_chrono();
    let status = simulate_over_time(
        &spec,
        out_between(TimeDelta::seconds(3), held + TimeDelta::minutes(1)),
        true,
        TimeDelta::minutes(10),
    );
    for sli in &status.slis {
        assert!(!sli.healed_while_held, "{sli:?}");
        let recovered = sli.time_to_recover_seconds.expect("recovered");
        assert!(recovered <= 1.0, "{}: recovered {recovered}s", sli.name);
    }
    let rto = status.time_to_recover_seconds.expect("rto");
    assert!(
        rto < window,
        "RTO {rto}s is the window ({window}s), not a measurement"
    );
    // Different faults give different figures: nothing is a constant.
    let longer = simulate_over_time(
        &spec,
        out_between(TimeDelta::seconds(1), TimeDelta::seconds(20)),
        true,
        TimeDelta::minutes(10),
    );
    let unhealthy = longer.slis[0].unhealthy_seconds;
    assert!((18.0..=20.0).contains(&unhealthy), "{unhealthy}s");
}

#[test]
fn a_heal_that_hurts_is_recovered_from_and_measured() {
    // In tolerance while the fault holds, out for the first 4 s after the revert. Only the
    // probes that can come back: a loss count out of tolerance never does.
    let mut spec = with_interval(partition_spec(), "1s");
    spec.hypothesis.probes.retain(|p| !p.cannot_recover());
    assert!(!spec.hypothesis.probes.is_empty());
    let status = simulate_over_time(
        &spec,
        |stage, now, status: &ExperimentStatus| {
            let since_revert = status.reverted_at.map(|at| now - at);
            match (stage, since_revert) {
                (Stage::Recovery, Some(t)) if t < TimeDelta::seconds(4) => Outcome::Measured(0.8),
                _ => Outcome::Measured(0.0),
            }
        },
        true,
        TimeDelta::minutes(10),
    );
    assert_eq!(status.verdict, Some(Verdict::Passed), "{:?}", status.reason);
    assert!(status.time_to_impact_seconds.is_none());
    for sli in &status.slis {
        let recovered = sli.time_to_recover_seconds.expect("recovered");
        assert!(
            (4.0..=5.0).contains(&recovered),
            "{}: recovered {recovered}s",
            sli.name
        );
    }
    let rto = status.time_to_recover_seconds.expect("rto");
    assert!((4.0..=5.0).contains(&rto), "RTO {rto}s");
}

#[test]
fn an_sli_that_never_comes_back_counts_unhealthy_to_its_last_sample() {
    let spec = with_interval(partition_spec(), "1s");
    let status = simulate(
        &spec,
        |stage| match stage {
            Stage::During | Stage::Recovery | Stage::After => Outcome::Unhealthy("down".into()),
            _ => Outcome::Measured(0.0),
        },
        true,
        TimeDelta::minutes(10),
    );
    assert_eq!(status.verdict, Some(Verdict::Failed));
    let deadline = spec.recovery_deadline.to_chrono().num_seconds() as f64;
    let held = spec.duration.to_chrono().num_seconds() as f64;
    for sli in &status.slis {
        assert!(sli.time_to_recover_seconds.is_none(), "{}", sli.name);
        assert!(
            sli.unhealthy_seconds >= held + deadline - 2.0,
            "{}: {}s",
            sli.name,
            sli.unhealthy_seconds
        );
    }
    assert!(status.time_to_recover_seconds.is_none());
}

/// A platform whose re-check finds the fault gone from `from` to `until` into the fault.
fn lapsed_between(
    from: TimeDelta,
    until: TimeDelta,
) -> impl Fn(DateTime<Utc>, &ExperimentStatus) -> Option<Observation> {
    move |now, status| {
        let t = now - status.injected_at?;
        Some(if t >= from && t < until {
            Observation::FaultLapsed {
                at: now,
                what: "chain firedrill-x gone from fdlab-zone-a-1".into(),
            }
        } else {
            Observation::FaultHeld { at: now }
        })
    }
}

#[test]
fn a_fault_that_lapsed_longer_than_a_sample_interval_cannot_pass() {
    let spec = partition_spec();
    let status = simulate_checked(
        &spec,
        |_, _, _| Outcome::Measured(0.0),
        lapsed_between(TimeDelta::seconds(10), TimeDelta::seconds(20)),
        true,
        TimeDelta::minutes(10),
    );
    assert_eq!(status.verdict, Some(Verdict::Failed), "{:?}", status.reason);
    let reason = status.reason.unwrap_or_default();
    assert!(reason.starts_with("the fault did not hold"), "{reason}");
    assert!(reason.contains("fdlab-zone-a-1"), "{reason}");
    let check = status.fault_check.expect("checked");
    assert_eq!(check.lapses, 1);
    assert!(check.longest_lapse_seconds >= 10.0, "{check:?}");
}

#[test]
fn a_lapse_put_right_within_a_sample_interval_still_passes() {
    // Checked every second, found gone once and whole again at the next check: at most
    // two seconds without the fault, which is the partition's 2 s interval.
    let spec = partition_spec();
    let status = simulate_checked(
        &spec,
        |_, _, _| Outcome::Measured(0.0),
        lapsed_between(TimeDelta::seconds(10), TimeDelta::milliseconds(10_500)),
        true,
        TimeDelta::minutes(10),
    );
    assert_eq!(status.verdict, Some(Verdict::Passed), "{:?}", status.reason);
    let check = status.fault_check.expect("checked");
    assert_eq!(check.lapses, 1);
    assert!(check.longest_lapse_seconds <= 2.0, "{check:?}");
}

#[test]
fn a_lapse_still_open_at_the_revert_counts_until_the_revert() {
    let spec = partition_spec();
    let held = spec.duration.to_chrono();
    let status = simulate_checked(
        &spec,
        |_, _, _| Outcome::Measured(0.0),
        lapsed_between(held - TimeDelta::seconds(8), held + TimeDelta::seconds(60)),
        true,
        TimeDelta::minutes(10),
    );
    assert_eq!(status.verdict, Some(Verdict::Failed), "{:?}", status.reason);
    let check = status.fault_check.expect("checked");
    assert!(check.lapsed_since.is_none());
    assert!(check.longest_lapse_seconds >= 8.0, "{check:?}");
}

/// A platform whose fault is reverted on its own (the node's timer, or its driver's
/// heartbeat stopped) `after` into the fault, and healthy throughout.
fn reverted_after(
    after: TimeDelta,
) -> impl Fn(DateTime<Utc>, &ExperimentStatus) -> Option<Observation> {
    move |now, status| {
        let t = now - status.injected_at?;
        Some(if t >= after {
            Observation::FaultReverted { at: now }
        } else {
            Observation::FaultHeld { at: now }
        })
    }
}

#[test]
fn a_fault_reverted_before_its_duration_was_up_cannot_pass() {
    let spec = partition_spec();
    let held = spec.duration.to_chrono();
    let status = simulate_checked(
        &spec,
        |_, _, _| Outcome::Measured(0.0),
        reverted_after(held - TimeDelta::seconds(20)),
        true,
        TimeDelta::minutes(10),
    );
    assert_eq!(status.verdict, Some(Verdict::Failed), "{:?}", status.reason);
    let reason = status.reason.unwrap_or_default();
    assert!(reason.starts_with("the fault did not hold"), "{reason}");
    assert!(reason.contains("before its duration was up"), "{reason}");
    let check = status.fault_check.expect("checked");
    assert!(
        (19.0..=21.0).contains(&check.longest_lapse_seconds),
        "{check:?}"
    );
}

#[test]
fn a_fault_reverted_on_its_own_within_a_sample_interval_of_the_end_still_passes() {
    let spec = partition_spec();
    let held = spec.duration.to_chrono();
    let status = simulate_checked(
        &spec,
        |_, _, _| Outcome::Measured(0.0),
        reverted_after(held - TimeDelta::seconds(1)),
        true,
        TimeDelta::minutes(10),
    );
    assert_eq!(status.verdict, Some(Verdict::Passed), "{:?}", status.reason);
}

#[test]
fn durations_past_any_bound_do_not_overflow_the_clock() {
    let mut spec = partition_spec();
    let huge: firedrill_core::api::Duration = std::time::Duration::MAX.into();
    spec.duration = huge;
    spec.hypothesis.window = huge;
    spec.hypothesis.interval = huge;
    spec.recovery_deadline = huge;
    let mut status = ExperimentStatus::default();
    let mut now = t0();
    for _ in 0..50 {
        let t = step(
            &spec,
            &status,
            now,
            &[Observation::FaultApplied { at: now }],
        );
        status = t.status;
        now += TimeDelta::seconds(30);
    }
    assert_ne!(status.phase, Phase::Completed);
}

/// The workload's verification reads as a platform reports them: `earlier` lost before the
/// fault, `earlier + during` once it is over (the closing read is asked for at the end).
fn reads(earlier: u64, during: u64) -> impl Fn(&ExperimentStatus) -> Option<WorkloadCounters> {
    move |status| {
        let lost = if status.injected_at.is_some() {
            earlier + during
        } else {
            earlier
        };
        Some(WorkloadCounters {
            lost,
            duplicated: 0,
        })
    }
}

#[test]
fn the_loss_is_what_the_closing_verification_read_finds_beyond_the_first() {
    let spec = partition_spec();
    // Losses before this experiment (an earlier one's) are not this one's.
    let status = simulate_verified(
        &spec,
        |_, _, _| Outcome::Measured(0.0),
        |_, _| None,
        reads(5, 0),
        true,
        TimeDelta::minutes(10),
    );
    assert_eq!(status.verdict, Some(Verdict::Passed), "{:?}", status.reason);
    assert_eq!(status.messages_lost, Some(0));
    let v = status.loss_verification.expect("verification reads");
    assert_eq!(v.baseline.map(|b| b.lost), Some(5));
    assert_eq!(v.closing.map(|c| c.lost), Some(5));
    // A message read live and lost afterwards shows only in the closing read.
    let status = simulate_verified(
        &spec,
        |_, _, _| Outcome::Measured(0.0),
        |_, _| None,
        reads(5, 7),
        true,
        TimeDelta::minutes(10),
    );
    assert_eq!(status.messages_lost, Some(7));
    assert_eq!(status.verdict, Some(Verdict::Failed));
    assert_eq!(
        status.reason.as_deref(),
        Some("7 acknowledged messages lost (RPO must be 0)")
    );
}

#[test]
fn without_a_closing_read_the_end_waits_its_patience_then_takes_the_live_count() {
    let spec = partition_spec();
    let status = simulate_verified(
        &spec,
        |_, _, _| Outcome::Measured(0.0),
        |_, _| None,
        |status: &ExperimentStatus| {
            status
                .injected_at
                .is_none()
                .then_some(WorkloadCounters::default())
        },
        true,
        TimeDelta::minutes(20),
    );
    assert_eq!(status.verdict, Some(Verdict::Passed), "{:?}", status.reason);
    // The live count is no measurement of what the store lost: the reason says so.
    let reason = status.reason.as_deref().unwrap_or_default();
    assert!(
        reason.ends_with(
            "; loss not verified: no verification read within 30s, so the 0 lost counted live \
             is only a lower bound"
        ),
        "{reason}"
    );
    let asked = status
        .loss_verification
        .and_then(|v| v.closing_asked_at)
        .expect("the closing read was asked for");
    let finished = status.finished_at.expect("finished");
    assert!(
        finished - asked > firedrill_core::engine::VERIFY_PATIENCE,
        "finished {} s after asking",
        (finished - asked).num_seconds()
    );
    assert!(
        status
            .timeline
            .iter()
            .any(|e| e.message.starts_with("no verification read within")),
        "{:#?}",
        status.timeline
    );
}

#[test]
fn a_run_that_never_recovered_still_says_what_it_lost() {
    let spec = partition_spec();
    // The whole stream gone (a power cut on unsynced disks): nothing recovers, and the
    // closing read finds every acknowledged message missing.
    let status = simulate_verified(
        &spec,
        |stage, _, _| match stage {
            Stage::Recovery | Stage::After => Outcome::Unhealthy("still down".into()),
            _ => Outcome::Measured(0.0),
        },
        |_, _| None,
        reads(0, 4_000),
        true,
        TimeDelta::minutes(10),
    );
    assert_eq!(status.verdict, Some(Verdict::Failed));
    assert_eq!(status.messages_lost, Some(4_000));
    let reason = status.reason.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("did not recover within the recovery deadline")
            && reason.ends_with("; 4000 acknowledged messages lost (RPO must be 0)"),
        "{reason}"
    );
}

#[test]
fn a_loss_measured_after_the_revert_fails_at_once_not_at_the_recovery_deadline() {
    let spec = partition_spec();
    // The loss checker counts 3 acknowledged messages lost once the fault is reverted: a
    // count that never goes down, so waiting for it to recover only waits out the deadline.
    let status = simulate_over_time(
        &spec,
        |stage, _, _| match stage {
            Stage::Recovery | Stage::After => Outcome::Measured(3.0),
            _ => Outcome::Measured(0.0),
        },
        true,
        TimeDelta::minutes(10),
    );
    assert_eq!(status.verdict, Some(Verdict::Failed));
    let reason = status.reason.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("did not recover: probe no-acked-loss")
            && reason.contains("a loss does not heal"),
        "{reason}"
    );
    let reverted = status.reverted_at.expect("reverted");
    let finished = status.finished_at.expect("finished");
    assert!(
        finished - reverted <= spec.hypothesis.interval.to_chrono() * 2,
        "failed {} s after the revert (deadline {})",
        (finished - reverted).num_seconds(),
        spec.recovery_deadline
    );
    // A probe that could not be read is no measured loss: it waits for the deadline.
    let unreadable = simulate_over_time(
        &spec,
        |stage, _, _| match stage {
            Stage::Recovery | Stage::After => Outcome::Unhealthy("no answer".into()),
            _ => Outcome::Measured(0.0),
        },
        true,
        TimeDelta::minutes(10),
    );
    assert!(
        unreadable
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("did not recover within the recovery deadline")),
        "{:?}",
        unreadable.reason
    );
}

#[test]
fn a_fault_its_node_ends_at_the_duration_before_the_revert_is_asked_for_is_no_lapse() {
    let spec = partition_spec();
    let held = spec.duration.to_chrono();
    // The node reverted on its own clock the moment the duration was up (its clock a
    // little ahead of the driver's), and the driver heard of it before asking (a node cut
    // off gets no grace: it cannot hear the ask).
    let status = simulate_checked(
        &spec,
        |_, _, _| Outcome::Measured(0.0),
        |now, status| {
            let injected = status.injected_at?;
            Some(if now - injected >= held - TimeDelta::seconds(2) {
                Observation::FaultReverted {
                    at: injected + held,
                }
            } else {
                Observation::FaultHeld { at: now }
            })
        },
        true,
        TimeDelta::minutes(10),
    );
    assert_eq!(status.verdict, Some(Verdict::Passed), "{:?}", status.reason);
    assert!(
        status.fault_check.as_ref().is_none_or(|c| c.lapses == 0),
        "{:?}",
        status.fault_check
    );
    assert!(
        status
            .timeline
            .iter()
            .any(|e| e.message.starts_with("the fault ended at its duration")),
        "{:#?}",
        status.timeline
    );
}
