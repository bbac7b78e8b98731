use std::collections::BTreeMap;

use firedrill_core::api::{
    ABORT_ANNOTATION, ExperimentStatus, GameDay, GameDayPhase, GameDaySpec, GameDayStatus, Phase,
    Verdict,
};
use firedrill_core::sequencer::overall;
use serde_json::json;

use super::pure::{MAX_NAME, finish};
use super::*;
use crate::plan::Plan;
use crate::testing::at;

fn spec(policy: &str, pause: &str, steps: &[&str]) -> GameDaySpec {
    let experiments: Vec<_> = steps
        .iter()
        .map(|name| {
            json!({"name": name, "spec": {
                "target": {"namespaces": ["talk"]},
                "fault": {"podKill": {}},
                "duration": "10s",
                "hypothesis": {"probes": [{"name": "up", "http": {"url": "http://x/"}}]}
            }})
        })
        .collect();
    serde_json::from_value(json!({
        "experiments": experiments,
        "failurePolicy": policy,
        "pauseBetween": pause,
    }))
    .expect("game day")
}

fn finished(verdict: Verdict, t: i64) -> ExperimentStatus {
    ExperimentStatus {
        phase: Phase::Completed,
        verdict: Some(verdict),
        reason: Some(format!("{verdict:?} for a reason")),
        fault: Some("podKill".into()),
        finished_at: Some(at(t)),
        time_to_recover_seconds: Some(4.5),
        messages_lost: Some(0),
        probes: vec![
            serde_json::from_value(json!({
                "name": "up", "stage": "During", "samples": 3, "failures": 3,
                "consecutiveFailures": 3, "tripped": verdict == Verdict::Failed,
            }))
            .expect("probe record"),
        ],
        ..Default::default()
    }
}

fn running() -> ExperimentStatus {
    ExperimentStatus {
        phase: Phase::Holding,
        ..Default::default()
    }
}

/// Runs a game day to its end with the given verdicts, as the shell would.
fn drive(spec: &GameDaySpec, verdicts: &[Verdict]) -> (GameDayStatus, Vec<usize>) {
    let mut status = GameDayStatus::default();
    let mut children = BTreeMap::new();
    let mut started_steps = Vec::new();
    let mut t = 0;
    for _ in 0..100 {
        t += 1;
        match advance(spec, &mut status, &children, at(t), None) {
            Next::Done => return (status, started_steps),
            Next::Running => {
                let index = status.results.len() - 1;
                let name = status.results[index].experiment.clone().expect("name");
                children.insert(name, finished(verdicts[index], t));
            }
            Next::Until(until) => t = (until - at(0)).num_seconds() - 1,
            Next::Stopping => panic!("stopping without a stop: {status:#?}"),
            Next::Start(index) => {
                let name = child_name("gd", &spec.experiments[index].name);
                children.insert(name.clone(), running());
                started(
                    &mut status,
                    &spec.experiments[index].name,
                    Some(&name),
                    "podKill",
                    at(t),
                );
                started_steps.push(index);
            }
        }
    }
    panic!("the game day did not finish: {status:#?}");
}

#[test]
fn steps_run_in_order_and_all_passing_passes() {
    let spec = spec("Stop", "0s", &["a", "b", "c"]);
    let (status, started) = drive(&spec, &[Verdict::Passed; 3]);
    assert_eq!(started, [0, 1, 2]);
    assert_eq!(status.phase, GameDayPhase::Completed);
    assert_eq!(status.verdict, Some(Verdict::Passed));
    assert_eq!(status.progress.as_deref(), Some("3/3"));
    assert_eq!(status.results[1].experiment.as_deref(), Some("gd-b"));
    assert_eq!(status.results[1].time_to_recover_seconds, Some(4.5));
    assert_eq!(status.results[1].messages_lost, Some(0));
    assert!(status.results[1].failed_probes.is_empty());
}

#[test]
fn stop_skips_the_rest_after_a_failure_and_continue_runs_them() {
    let verdicts = [Verdict::Passed, Verdict::Failed, Verdict::Passed];
    let (status, started) = drive(&spec("Stop", "0s", &["a", "b", "c"]), &verdicts);
    assert_eq!(started, [0, 1]);
    assert_eq!(status.verdict, Some(Verdict::Failed));
    assert_eq!(status.results[1].failed_probes, ["up"]);
    assert_eq!(status.results[2].verdict, Some(Verdict::Skipped));
    assert!(status.results[2].experiment.is_none());
    assert!(
        status.results[2]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("b did not pass"))
    );
    let (status, started) = drive(&spec("Continue", "0s", &["a", "b", "c"]), &verdicts);
    assert_eq!(started, [0, 1, 2]);
    assert_eq!(status.verdict, Some(Verdict::Failed));
    assert_eq!(status.results[2].verdict, Some(Verdict::Passed));
}

#[test]
fn the_pause_comes_between_steps_only() {
    let spec = spec("Stop", "30s", &["a", "b"]);
    let mut status = GameDayStatus::default();
    let mut children = BTreeMap::new();
    assert_eq!(
        advance(&spec, &mut status, &children, at(0), None),
        Next::Start(0)
    );
    started(&mut status, "a", Some("gd-a"), "podKill", at(0));
    children.insert("gd-a".to_owned(), running());
    assert_eq!(
        advance(&spec, &mut status, &children, at(5), None),
        Next::Running
    );
    children.insert("gd-a".to_owned(), finished(Verdict::Passed, 10));
    assert_eq!(
        advance(&spec, &mut status, &children, at(12), None),
        Next::Until(at(40))
    );
    assert!(
        status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("before b"))
    );
    assert_eq!(
        advance(&spec, &mut status, &children, at(40), None),
        Next::Start(1)
    );
}

#[test]
fn a_halted_game_day_records_the_rest_as_not_run_and_is_aborted() {
    let why = "firedrill is paused cluster-wide: stop-all";
    // Under either policy: the step aborted by the halt did not fail on its own.
    for policy in ["Continue", "Stop"] {
        let spec = spec(policy, "0s", &["a", "b", "c"]);
        let mut status = GameDayStatus::default();
        let mut children = BTreeMap::new();
        advance(&spec, &mut status, &children, at(0), None);
        started(&mut status, "a", Some("gd-a"), "podKill", at(0));
        // Halted while a runs: a is aborted and waited for.
        children.insert("gd-a".to_owned(), running());
        assert_eq!(
            advance(&spec, &mut status, &children, at(2), Some(why)),
            Next::Stopping
        );
        // Aborted because of the halt, the running step finishes; then nothing else starts.
        children.insert("gd-a".to_owned(), finished(Verdict::Aborted, 3));
        assert_eq!(
            advance(&spec, &mut status, &children, at(4), Some(why)),
            Next::Done
        );
        assert_eq!(status.phase, GameDayPhase::Completed);
        assert_eq!(status.verdict, Some(Verdict::Aborted), "{policy}");
        assert_eq!(status.results.len(), 3);
        for r in &status.results[1..] {
            assert_eq!(r.verdict, Some(Verdict::Skipped));
            assert!(
                r.reason.as_deref().is_some_and(|w| w.contains("paused")),
                "{policy}: {r:?}"
            );
        }
        assert_eq!(
            advance(&spec, &mut status, &children, at(9), None),
            Next::Done
        );
    }
}

#[test]
fn its_own_abort_annotation_comes_before_the_pause() {
    use crate::pause::Pause;
    let mut g = GameDay::new("gd", spec("Stop", "0s", &["a"]));
    assert_eq!(halt_reason(&g, &Pause::Off), None);
    assert_eq!(halt_reason(&g, &Pause::Unknown("x".into())), None);
    assert!(halt_reason(&g, &Pause::On("by ana".into())).is_some_and(|w| w.contains("by ana")));
    g.annotations_mut()
        .insert(ABORT_ANNOTATION.into(), "wrong cluster".into());
    let why = halt_reason(&g, &Pause::On("by ana".into())).unwrap();
    assert!(why.contains("wrong cluster"), "{why}");
}

#[test]
fn a_restarted_operator_resumes_from_status_without_rerunning_steps() {
    let spec = spec("Stop", "0s", &["a", "b"]);
    // Written by a previous leader: a finished, b started.
    let mut status = GameDayStatus::default();
    advance(&spec, &mut status, &BTreeMap::new(), at(0), None);
    started(&mut status, "a", Some("gd-a"), "podKill", at(0));
    let mut children = BTreeMap::from([("gd-a".to_owned(), finished(Verdict::Passed, 5))]);
    assert_eq!(
        advance(&spec, &mut status, &children, at(6), None),
        Next::Start(1)
    );
    started(&mut status, "b", Some("gd-b"), "podKill", at(6));
    // The new leader sees the same status and children: it waits, creating nothing.
    let saved = status.clone();
    children.insert("gd-b".to_owned(), running());
    let mut resumed = saved.clone();
    assert_eq!(
        advance(&spec, &mut resumed, &children, at(100), None),
        Next::Running
    );
    assert_eq!(resumed.results, saved.results);
    // Completed game days stay as they are.
    children.insert("gd-b".to_owned(), finished(Verdict::Passed, 101));
    assert_eq!(
        advance(&spec, &mut resumed, &children, at(102), None),
        Next::Done
    );
    let done = resumed.clone();
    assert_eq!(
        advance(&spec, &mut resumed, &BTreeMap::new(), at(500), None),
        Next::Done
    );
    assert_eq!(resumed, done);
}

#[test]
fn a_deleted_step_experiment_aborts_that_step() {
    let spec = spec("Continue", "0s", &["a", "b"]);
    let mut status = GameDayStatus::default();
    advance(&spec, &mut status, &BTreeMap::new(), at(0), None);
    started(&mut status, "a", Some("gd-a"), "podKill", at(0));
    assert_eq!(
        advance(&spec, &mut status, &BTreeMap::new(), at(3), None),
        Next::Start(1)
    );
    assert_eq!(status.results[0].verdict, Some(Verdict::Aborted));
}

#[test]
fn not_run_steps_count_as_not_passed() {
    let spec = spec("Stop", "0s", &["a", "b"]);
    let mut status = GameDayStatus::default();
    advance(&spec, &mut status, &BTreeMap::new(), at(0), None);
    not_run(
        &mut status,
        "a",
        None,
        "not run: experimentRef x does not exist",
        at(0),
    );
    assert_eq!(
        advance(&spec, &mut status, &BTreeMap::new(), at(1), None),
        Next::Done
    );
    assert_eq!(status.verdict, Some(Verdict::Failed));
    assert_eq!(status.results.len(), 2);
    assert_eq!(overall([], false), Verdict::Failed);
}

#[test]
fn child_names_are_deterministic_and_valid() {
    assert_eq!(child_name("quarterly", "zone-a"), "quarterly-zone-a");
    let long = "g".repeat(250);
    let name = child_name(&long, "step");
    assert_eq!(name.len(), MAX_NAME);
    assert!(name.ends_with("-step"));
    assert_eq!(child_name("x-", "s"), "x-s");
    assert_eq!(label_value("quarterly-dr"), Some("quarterly-dr"));
    assert_eq!(label_value(&"a".repeat(64)), None);
    assert_eq!(label_value("a.b-"), None);
}

#[test]
fn footprints_overlap_on_shared_pods_and_nodes() {
    let pod = |name: &str| {
        crate::plan::Target::Pod(firedrill_core::api::PodRef {
            namespace: "talk".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        })
    };
    let mine = Plan {
        targets: vec![pod("nats-0")],
        ..Default::default()
    };
    let theirs = Plan {
        targets: vec![pod("nats-0"), pod("nats-1")],
        ..Default::default()
    };
    assert_eq!(mine.overlap(&theirs), ["talk/nats-0"]);
    let elsewhere = Plan {
        targets: vec![crate::plan::Target::Node("w2".into())],
        ..Default::default()
    };
    assert!(mine.overlap(&elsewhere).is_empty());
    assert_eq!(elsewhere.overlap(&elsewhere), ["node/w2"]);
}

#[test]
fn events_tell_each_step_and_the_end() {
    let mut before = GameDayStatus::default();
    started(&mut before, "a", Some("gd-a"), "podKill", at(0));
    let mut after = before.clone();
    finish(&mut after.results[0], &finished(Verdict::Failed, 3), at(3));
    after.verdict = Some(Verdict::Failed);
    let reasons: Vec<_> = notes(&before, &after)
        .into_iter()
        .map(|n| n.reason)
        .collect();
    assert_eq!(reasons, ["StepFailed", "Failed"]);
    let first: Vec<_> = notes(&GameDayStatus::default(), &before)
        .into_iter()
        .map(|n| n.reason)
        .collect();
    assert_eq!(first, ["StepStarted"]);
    let patch = status_patch(&after, None).expect("patch");
    assert_eq!(patch["kind"], "GameDay");
    assert!(patch["status"].get("report").is_none());
}
