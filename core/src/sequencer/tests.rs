use std::cell::Cell;

use proptest::prelude::*;
use serde_json::json;

use super::*;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).expect("a time")
}

fn experiment(namespace: &str) -> serde_json::Value {
    json!({
        "target": {"namespaces": [namespace], "selector": {"matchLabels": {"app": "nats"}}},
        "fault": {"podKill": {}},
        "duration": "10s",
        "hypothesis": {"probes": [{"name": "up", "http": {"url": "http://x/"}}]}
    })
}

fn spec(policy: &str, pause: &str, steps: &[&str]) -> GameDaySpec {
    let experiments: Vec<_> = steps
        .iter()
        .map(|name| json!({"name": name, "spec": experiment("talk")}))
        .collect();
    serde_json::from_value(json!({
        "experiments": experiments,
        "failurePolicy": policy,
        "pauseBetween": pause,
    }))
    .expect("game day")
}

const STEPS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

/// How a run went, as a platform saw it.
#[derive(Debug)]
struct Run {
    status: GameDayStatus,
    /// The steps started, in order.
    started: Vec<usize>,
    /// When each was started.
    started_at: Vec<i64>,
}

/// Runs a game day to its end as a platform would, one second a tick: a started step runs
/// ten seconds and ends with its entry in `verdicts`, or `Aborted` a second after the
/// sequencer asked for it to stop. From `stop_from` on, the game day must stop.
fn drive(spec: &GameDaySpec, verdicts: &[Verdict], stop_from: Option<i64>) -> Run {
    let mut status = GameDayStatus::default();
    let mut run = Run {
        status: GameDayStatus::default(),
        started: Vec::new(),
        started_at: Vec::new(),
    };
    // The running step: its index, when it ends, whether it was aborted.
    let mut running: Option<(usize, i64, bool)> = None;
    for t in 0..10_000 {
        if let Some((index, ends, aborted)) = running
            && t >= ends
        {
            let result = &mut status.results[index];
            result.verdict = Some(if aborted {
                Verdict::Aborted
            } else {
                verdicts[index]
            });
            result.finished_at = Some(at(t));
            running = None;
        }
        let stop = stop_from.filter(|s| t >= *s).map(|_| "stop-all");
        match advance(spec, &mut status, at(t), stop) {
            Next::Done => {
                assert!(running.is_none(), "done with a step running: {status:#?}");
                run.status = status;
                return run;
            }
            Next::Start(index) => {
                assert!(running.is_none(), "two steps at once: {status:#?}");
                assert_eq!(index, status.results.len());
                let step = &spec.experiments[index];
                started(&mut status, &step.name, None, "podKill", at(t));
                running = Some((index, t + 10, false));
                run.started.push(index);
                run.started_at.push(t);
            }
            Next::Running => assert!(running.is_some(), "{status:#?}"),
            Next::Stopping => {
                let step = running.as_mut().expect("a running step to stop");
                step.1 = step.1.min(t + 1);
                step.2 = true;
            }
            Next::Until(until) => assert!(until > at(t)),
        }
    }
    panic!("the game day did not finish: {status:#?}");
}

fn verdicts(run: &Run) -> Vec<Option<Verdict>> {
    run.status.results.iter().map(|r| r.verdict).collect()
}

#[test]
fn steps_run_in_order_and_all_passing_passes() {
    let run = drive(
        &spec("Stop", "0s", &["a", "b", "c"]),
        &[Verdict::Passed; 3],
        None,
    );
    assert_eq!(run.started, [0, 1, 2]);
    // No pause: each starts the second the previous one ends.
    assert_eq!(run.started_at, [0, 10, 20]);
    assert_eq!(run.status.phase, GameDayPhase::Completed);
    assert_eq!(run.status.verdict, Some(Verdict::Passed));
    assert_eq!(run.status.progress.as_deref(), Some("3/3"));
    assert_eq!(run.status.started_at, Some(at(0)));
    assert_eq!(run.status.finished_at, Some(at(30)));
    assert_eq!(run.status.message, None);
}

#[test]
fn stop_skips_the_rest_after_a_failure_and_continue_runs_them() {
    let results = [Verdict::Passed, Verdict::Failed, Verdict::Passed];
    let run = drive(&spec("Stop", "0s", &["a", "b", "c"]), &results, None);
    assert_eq!(run.started, [0, 1]);
    assert_eq!(run.status.verdict, Some(Verdict::Failed));
    let skipped = &run.status.results[2];
    assert_eq!(skipped.name, "c");
    assert_eq!(skipped.verdict, Some(Verdict::Skipped));
    assert_eq!(skipped.fault.as_deref(), Some("podKill"));
    assert_eq!(
        skipped.reason.as_deref(),
        Some("not run: b did not pass and the failure policy is Stop")
    );
    assert!(skipped.started_at.is_none() && skipped.experiment.is_none());
    assert_eq!(run.status.progress.as_deref(), Some("3/3"));

    let run = drive(&spec("Continue", "0s", &["a", "b", "c"]), &results, None);
    assert_eq!(run.started, [0, 1, 2]);
    assert_eq!(run.status.verdict, Some(Verdict::Failed));
    assert_eq!(run.status.results[2].verdict, Some(Verdict::Passed));
}

#[test]
fn whatever_did_not_pass_stops_a_stop_policy() {
    for first in [Verdict::Failed, Verdict::Aborted, Verdict::Skipped] {
        let run = drive(
            &spec("Stop", "0s", &["a", "b"]),
            &[first, Verdict::Passed],
            None,
        );
        assert_eq!(run.started, [0], "{first:?}");
        assert_eq!(
            verdicts(&run),
            [Some(first), Some(Verdict::Skipped)],
            "{first:?}"
        );
        assert_eq!(run.status.verdict, Some(Verdict::Failed), "{first:?}");
    }
}

#[test]
fn the_pause_comes_between_steps_only() {
    let spec = spec("Stop", "30s", &["a", "b"]);
    let mut status = GameDayStatus::default();
    assert_eq!(advance(&spec, &mut status, at(0), None), Next::Start(0));
    started(&mut status, "a", None, "podKill", at(0));
    assert_eq!(advance(&spec, &mut status, at(5), None), Next::Running);
    status.results[0].verdict = Some(Verdict::Passed);
    status.results[0].finished_at = Some(at(10));
    assert_eq!(
        advance(&spec, &mut status, at(12), None),
        Next::Until(at(40))
    );
    assert_eq!(status.message.as_deref(), Some("pausing 30s before b"));
    assert_eq!(advance(&spec, &mut status, at(40), None), Next::Start(1));
    started(&mut status, "b", None, "podKill", at(40));
    assert_eq!(status.message, None);
    status.results[1].verdict = Some(Verdict::Passed);
    status.results[1].finished_at = Some(at(50));
    // None after the last.
    assert_eq!(advance(&spec, &mut status, at(50), None), Next::Done);
    assert_eq!(status.verdict, Some(Verdict::Passed));

    let run = drive(&spec, &[Verdict::Passed; 2], None);
    assert_eq!(run.started_at, [0, 40]);
}

#[test]
fn a_stop_aborts_the_running_step_then_skips_the_rest_under_either_policy() {
    for policy in ["Stop", "Continue"] {
        let spec = spec(policy, "0s", &["a", "b", "c"]);
        let run = drive(&spec, &[Verdict::Passed; 3], Some(5));
        assert_eq!(run.started, [0], "{policy}");
        assert_eq!(
            verdicts(&run),
            [
                Some(Verdict::Aborted),
                Some(Verdict::Skipped),
                Some(Verdict::Skipped)
            ],
            "{policy}"
        );
        for skipped in &run.status.results[1..] {
            assert_eq!(
                skipped.reason.as_deref(),
                Some("not run: stop-all"),
                "{policy}"
            );
        }
        assert_eq!(run.status.verdict, Some(Verdict::Aborted), "{policy}");
        assert_eq!(run.status.message.as_deref(), Some("stopped: stop-all"));
        assert_eq!(run.status.progress.as_deref(), Some("3/3"));
    }
    // Told once: the running step is to be aborted, and is waited for.
    let spec = spec("Continue", "0s", &["a", "b"]);
    let mut status = GameDayStatus::default();
    advance(&spec, &mut status, at(0), None);
    started(&mut status, "a", None, "podKill", at(0));
    assert_eq!(
        advance(&spec, &mut status, at(1), Some("x")),
        Next::Stopping
    );
    assert_eq!(status.phase, GameDayPhase::Running);
    assert_eq!(status.results.len(), 1);
}

#[test]
fn a_stop_during_the_pause_starts_nothing_more() {
    let spec = spec("Continue", "30s", &["a", "b"]);
    // a ends at 10; b would start at 40.
    let run = drive(&spec, &[Verdict::Passed; 2], Some(20));
    assert_eq!(run.started, [0]);
    assert_eq!(
        verdicts(&run),
        [Some(Verdict::Passed), Some(Verdict::Skipped)]
    );
    assert_eq!(run.status.verdict, Some(Verdict::Aborted));
    assert_eq!(run.status.finished_at, Some(at(20)));
}

#[test]
fn a_stop_that_leaves_nothing_to_run_changes_nothing() {
    // During the last step: that step is aborted, and the verdict is the steps' own.
    let spec = spec("Continue", "0s", &["a", "b"]);
    let run = drive(&spec, &[Verdict::Passed; 2], Some(15));
    assert_eq!(run.started, [0, 1]);
    assert_eq!(
        verdicts(&run),
        [Some(Verdict::Passed), Some(Verdict::Aborted)]
    );
    assert_eq!(run.status.verdict, Some(Verdict::Failed));
    assert_eq!(run.status.message, None);
    // After the end: nothing at all.
    let done = drive(&spec, &[Verdict::Passed; 2], None).status;
    let mut again = done.clone();
    assert_eq!(advance(&spec, &mut again, at(500), Some("x")), Next::Done);
    assert_eq!(again, done);
}

#[test]
fn a_restarted_platform_resumes_from_the_status_without_rerunning_steps() {
    let spec = spec("Stop", "0s", &["a", "b"]);
    let mut status = GameDayStatus::default();
    advance(&spec, &mut status, at(0), None);
    started(&mut status, "a", None, "podKill", at(0));
    status.results[0].verdict = Some(Verdict::Passed);
    status.results[0].finished_at = Some(at(5));
    assert_eq!(advance(&spec, &mut status, at(6), None), Next::Start(1));
    started(&mut status, "b", None, "podKill", at(6));
    // Whoever reads this status next waits for b, starting nothing.
    let saved = status.clone();
    let mut resumed = saved.clone();
    assert_eq!(advance(&spec, &mut resumed, at(100), None), Next::Running);
    assert_eq!(resumed.results, saved.results);
    assert_eq!(resumed.started_at, Some(at(0)));
    assert_eq!(resumed.progress.as_deref(), Some("1/2"));
}

#[test]
fn a_step_recorded_as_not_run_counts_as_not_passed() {
    let stopping = spec("Stop", "0s", &["a", "b"]);
    let mut status = GameDayStatus::default();
    assert_eq!(advance(&stopping, &mut status, at(0), None), Next::Start(0));
    not_run(
        &mut status,
        "a",
        None,
        "not run: experimentRef x does not exist",
        at(0),
    );
    assert_eq!(advance(&stopping, &mut status, at(1), None), Next::Done);
    assert_eq!(status.verdict, Some(Verdict::Failed));
    assert_eq!(status.results.len(), 2);
    assert_eq!(status.results[0].fault, None);
    // With Continue the next one runs, after the pause like any step's.
    let continuing = spec("Continue", "30s", &["a", "b"]);
    let mut status = GameDayStatus::default();
    advance(&continuing, &mut status, at(0), None);
    not_run(&mut status, "a", None, "not run", at(0));
    assert_eq!(
        advance(&continuing, &mut status, at(1), None),
        Next::Until(at(30))
    );
}

#[test]
fn the_overall_verdict_table() {
    use Verdict::{Aborted, Failed, Passed, Skipped};
    let cases: &[(&[Option<Verdict>], bool, Verdict)] = &[
        (&[], false, Failed),
        (&[Some(Passed)], false, Passed),
        (&[Some(Passed), Some(Passed)], false, Passed),
        (&[Some(Passed), Some(Failed)], false, Failed),
        (&[Some(Passed), Some(Aborted)], false, Failed),
        (&[Some(Passed), Some(Skipped)], false, Failed),
        (&[Some(Skipped), Some(Skipped)], false, Failed),
        (&[Some(Passed), None], false, Failed),
        (&[Some(Aborted), Some(Failed)], false, Failed),
        (&[], true, Aborted),
        (&[Some(Passed), Some(Skipped)], true, Aborted),
        (&[Some(Failed), Some(Skipped)], true, Aborted),
    ];
    for (steps, stopped, expected) in cases {
        assert_eq!(
            overall(steps.iter().copied(), *stopped),
            *expected,
            "{steps:?} stopped {stopped}"
        );
    }
}

fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        3 => Just(Verdict::Passed),
        1 => Just(Verdict::Failed),
        1 => Just(Verdict::Aborted),
        1 => Just(Verdict::Skipped),
    ]
}

proptest! {
    #[test]
    fn overall_passes_only_all_passed_and_aborts_only_when_stopped(
        steps in proptest::collection::vec(proptest::option::of(verdict()), 0..8),
        stopped in any::<bool>(),
    ) {
        let got = overall(steps.iter().copied(), stopped);
        prop_assert_eq!(got == Verdict::Aborted, stopped);
        let all_passed = !steps.is_empty() && steps.iter().all(|v| *v == Some(Verdict::Passed));
        prop_assert_eq!(got == Verdict::Passed, all_passed && !stopped);
        prop_assert!(got != Verdict::Skipped);
    }

    #[test]
    fn any_run_ends_with_every_step_accounted_for(
        results in proptest::collection::vec(verdict(), 1..6),
        continue_ in any::<bool>(),
        pause in 0u64..20,
        stop_from in proptest::option::of(0i64..200),
    ) {
        let names = &STEPS[..results.len()];
        let policy = if continue_ { "Continue" } else { "Stop" };
        let spec = spec(policy, &format!("{pause}s"), names);
        let run = drive(&spec, &results, stop_from);
        let status = &run.status;
        prop_assert_eq!(status.phase, GameDayPhase::Completed);
        let recorded: Vec<_> = status.results.iter().map(|r| r.name.as_str()).collect();
        prop_assert_eq!(recorded, names.to_vec());
        prop_assert!(status.results.iter().all(|r| r.verdict.is_some()));
        // The steps started are the first ones, in order, one at a time with the pause.
        prop_assert_eq!(&run.started, &(0..run.started.len()).collect::<Vec<_>>());
        for pair in run.started_at.windows(2) {
            prop_assert!(pair[1] >= pair[0] + 10 + i64::try_from(pause).unwrap_or(0));
        }
        // Nothing starts once the game day must stop.
        if let Some(stop) = stop_from {
            prop_assert!(run.started_at.iter().all(|t| *t < stop));
        }
        // A step not started was not run, and says why.
        for r in &status.results[run.started.len()..] {
            prop_assert_eq!(r.verdict, Some(Verdict::Skipped));
            prop_assert!(r.started_at.is_none());
            prop_assert!(r.reason.as_deref().is_some_and(|w| w.starts_with("not run: ")));
        }
        let stopped = status.results[run.started.len()..]
            .iter()
            .any(|r| r.reason.as_deref() == Some("not run: stop-all"));
        prop_assert_eq!(
            status.verdict,
            Some(overall(status.results.iter().map(|r| r.verdict), stopped))
        );
        if stop_from.is_none() {
            // Stop runs up to the first step that did not pass; Continue runs all.
            let expected = if continue_ {
                results.len()
            } else {
                results
                    .iter()
                    .position(|v| *v != Verdict::Passed)
                    .map_or(results.len(), |i| i + 1)
            };
            prop_assert_eq!(run.started.len(), expected);
            for (r, v) in status.results.iter().zip(&results).take(expected) {
                prop_assert_eq!(r.verdict, Some(*v));
            }
        }
    }
}

fn step(value: serde_json::Value) -> GameDayStep {
    serde_json::from_value(value).expect("step")
}

fn shared(game_day_probe: &str) -> GameDaySpec {
    serde_json::from_value(json!({
        "experiments": [{"name": "a", "experimentRef": {"name": "x"}}],
        "hypothesis": {"probes": [{"name": game_day_probe, "http": {"url": "http://shared/"}}]}
    }))
    .expect("game day")
}

fn probe_names(spec: &ExperimentSpec) -> Vec<&str> {
    spec.hypothesis
        .probes
        .iter()
        .map(|p| p.name.as_str())
        .collect()
}

#[test]
fn a_reference_is_looked_up_once_and_joined_to_the_shared_hypothesis() {
    let game_day = shared("ops");
    let by_ref = step(json!({"name": "a", "experimentRef": {"name": "x"}}));
    assert_eq!(reference(&by_ref), Some("x"));
    let asked = Cell::new(0);
    let found = serde_json::from_value::<ExperimentSpec>(experiment("talk")).expect("spec");
    let spec = resolve(&game_day, &by_ref, |name| {
        asked.set(asked.get() + 1);
        (name == "x").then(|| found.clone())
    })
    .expect("resolved");
    assert_eq!(asked.get(), 1);
    assert_eq!(probe_names(&spec), ["up", "ops"]);
    assert_eq!(
        resolve(&game_day, &by_ref, |_| None),
        Err(Unresolved::Missing("x".into()))
    );
    assert_eq!(
        Unresolved::Missing("x".into()).to_string(),
        "experimentRef x does not exist"
    );
}

#[test]
fn an_inline_spec_wins_and_is_not_looked_up() {
    let game_day = shared("up");
    let both = step(json!({
        "name": "a", "experimentRef": {"name": "x"}, "spec": experiment("talk")
    }));
    assert_eq!(reference(&both), None);
    let spec = resolve(&game_day, &both, |_| panic!("looked up")).expect("resolved");
    // The step's own probe of the same name wins.
    assert_eq!(probe_names(&spec), ["up"]);
    assert_eq!(
        serde_json::to_value(&spec.hypothesis.probes[0]).expect("probe")["http"]["url"],
        "http://x/"
    );
}

#[test]
fn a_step_without_an_experiment_or_with_an_invalid_one_cannot_be_resolved() {
    let game_day = shared("ops");
    let empty = step(json!({"name": "a"}));
    assert_eq!(reference(&empty), None);
    assert_eq!(resolve(&game_day, &empty, |_| None), Err(Unresolved::Empty));
    assert_eq!(Unresolved::Empty.to_string(), "the step has no experiment");
    let protected = step(json!({"name": "a", "spec": experiment("kube-system")}));
    let Err(why) = resolve(&game_day, &protected, |_| None) else {
        panic!("a protected namespace resolved");
    };
    assert!(matches!(why, Unresolved::Invalid { .. }), "{why:?}");
    let why = why.to_string();
    assert!(
        why.starts_with("spec.target.namespaces[0]: ") && why.contains("kube-system"),
        "{why}"
    );
}
