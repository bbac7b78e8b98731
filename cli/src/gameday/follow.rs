//! Following a game day on a cluster, purely: [`Follower`] turns what the watches deliver
//! into the lab's progress lines, and [`report`] turns the finished objects into the lab's
//! report. `cluster.rs` does the I/O around them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use firedrill_core::api::{Experiment, GameDay, GameDayPhase, StepResult, Verdict};
use firedrill_core::report::{ExperimentReport, FailedProbe, GameDayReport};
use kube::ResourceExt;

use crate::access::{created, fault_of};

/// The Experiments of a game day: owned by it, or named in its status.
pub fn children<'a>(g: &GameDay, experiments: &'a [Experiment]) -> Vec<&'a Experiment> {
    let uid = g.uid();
    let named: BTreeSet<String> = g
        .status
        .iter()
        .flat_map(|s| s.results.iter().filter_map(|r| r.experiment.clone()))
        .collect();
    experiments
        .iter()
        .filter(|e| {
            named.contains(&e.name_any())
                || e.owner_references()
                    .iter()
                    .any(|o| o.kind == "GameDay" && Some(&o.uid) == uid.as_ref())
        })
        .collect()
}

/// The step an experiment object runs: from the status results, else by its name ending in
/// the step's name (`<game day>-<step>`).
pub fn step_of(g: &GameDay, experiment: &str) -> Option<String> {
    if let Some(step) = g
        .status
        .iter()
        .flat_map(|s| s.results.iter())
        .find_map(|r| (r.experiment.as_deref() == Some(experiment)).then(|| r.name.clone()))
    {
        return Some(step);
    }
    g.spec
        .experiments
        .iter()
        .filter(|s| experiment == s.name || experiment.ends_with(&format!("-{}", s.name)))
        .max_by_key(|s| s.name.len())
        .map(|s| s.name.clone())
}

#[derive(Debug, Default)]
struct Seen {
    timeline: usize,
    started: bool,
    finished: bool,
}

/// Turns successive observations into the lab's progress lines, each printed once.
#[derive(Debug, Default)]
pub struct Follower {
    game_day: Option<GameDay>,
    experiments: BTreeMap<String, Seen>,
    phase: Option<(GameDayPhase, Option<String>)>,
}

impl Follower {
    /// Lines for a new version of the game day.
    pub fn on_game_day(&mut self, g: &GameDay) -> Vec<String> {
        self.game_day = Some(g.clone());
        let status = g.status.clone().unwrap_or_default();
        let now = (status.phase, status.progress.clone());
        if self.phase.as_ref() == Some(&now) {
            return Vec::new();
        }
        self.phase = Some(now);
        let mut line = format!(
            "-- game day {}: {:?}{}",
            g.name_any(),
            status.phase,
            status
                .progress
                .map(|p| format!(" ({p} done)"))
                .unwrap_or_default()
        );
        if let Some(v) = status.verdict {
            line.push_str(&format!(", {v:?}"));
        }
        vec![line]
    }

    /// Lines for a new version of an experiment (nothing when it is not the game day's).
    pub fn on_experiment(&mut self, e: &Experiment) -> Vec<String> {
        let Some(g) = &self.game_day else {
            return Vec::new();
        };
        if children(g, std::slice::from_ref(e)).is_empty() {
            return Vec::new();
        }
        let name = e.name_any();
        let step = step_of(g, &name).unwrap_or_else(|| name.clone());
        let total = g.spec.experiments.len();
        let index = g
            .spec
            .experiments
            .iter()
            .position(|s| s.name == step)
            .map_or(0, |i| i + 1);
        let seen = self.experiments.entry(name.clone()).or_default();
        let mut lines = Vec::new();
        if !seen.started {
            seen.started = true;
            lines.push(format!(
                "\n== [{index}/{total}] {step}: experiment {name}, fault {}",
                fault_of(e)
            ));
        }
        let status = e.status.clone().unwrap_or_default();
        for t in status.timeline.iter().skip(seen.timeline) {
            lines.push(format!(
                "{} [{step}] {:?}: {}",
                t.at.format("%H:%M:%S"),
                t.phase,
                t.message
            ));
        }
        seen.timeline = seen.timeline.max(status.timeline.len());
        if let (Some(verdict), false) = (status.verdict, seen.finished) {
            seen.finished = true;
            lines.push(format!(
                "== {step}: {verdict:?}{}",
                status.reason.map(|r| format!(" ({r})")).unwrap_or_default()
            ));
        }
        lines
    }
}

/// True when the game day has finished.
pub fn finished(g: &GameDay) -> bool {
    g.status
        .as_ref()
        .is_some_and(|s| s.phase == GameDayPhase::Completed)
}

fn from_result(step: &str, fault: String, r: Option<&StepResult>) -> ExperimentReport {
    let verdict = r.and_then(|r| r.verdict).unwrap_or(Verdict::Skipped);
    ExperimentReport {
        name: step.to_owned(),
        fault: r.and_then(|r| r.fault.clone()).unwrap_or(fault),
        verdict,
        reason: r.and_then(|r| r.reason.clone()).or_else(|| {
            r.is_none_or(|r| r.verdict.is_none())
                .then(|| "not run".to_owned())
        }),
        time_to_impact_seconds: r.and_then(|r| r.time_to_impact_seconds),
        time_to_recover_seconds: r.and_then(|r| r.time_to_recover_seconds),
        slis: r.map(|r| r.slis.clone()).unwrap_or_default(),
        messages_lost: r.and_then(|r| r.messages_lost),
        messages_duplicated: r.and_then(|r| r.messages_duplicated),
        failed_probes: r
            .map(|r| {
                r.failed_probes
                    .iter()
                    .map(|p| FailedProbe {
                        name: p.clone(),
                        stage: firedrill_core::api::Stage::During,
                        failures: 0,
                        last_failure: None,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        started_at: None,
        injected_at: None,
        reverted_at: None,
        recovered_at: None,
        finished_at: None,
        timeline: Vec::new(),
        series: Vec::new(),
    }
}

/// The report of a finished game day, from its status and its experiments' statuses: every
/// step in order, from its Experiment object when that still exists, else from the game
/// day's step result.
pub fn report(g: &GameDay, experiments: &[Experiment], now: DateTime<Utc>) -> GameDayReport {
    let status = g.status.clone().unwrap_or_default();
    let children = children(g, experiments);
    let steps: Vec<ExperimentReport> = g
        .spec
        .experiments
        .iter()
        .map(|step| {
            let result = status.results.iter().find(|r| r.name == step.name);
            let fault = step
                .spec
                .as_ref()
                .map_or("experimentRef", |s| s.fault.name())
                .to_owned();
            let object = children.iter().find(|e| {
                result.and_then(|r| r.experiment.as_deref()) == Some(e.name_any().as_str())
                    || step_of(g, &e.name_any()).as_deref() == Some(step.name.as_str())
            });
            match object.and_then(|e| e.status.as_ref().map(|s| (e, s))) {
                Some((e, s)) if s.verdict.is_some() => {
                    ExperimentReport::from_status(&step.name, &fault_of(e), s, Vec::new())
                }
                _ => from_result(&step.name, fault, result),
            }
        })
        .collect();
    GameDayReport {
        name: g.name_any(),
        platform: "cluster".to_owned(),
        weakness: None,
        started_at: status.started_at.or_else(|| created(g)).unwrap_or(now),
        finished_at: status.finished_at.unwrap_or(now),
        // The game day's own verdict, as the operator's sequencer decided it (Aborted when
        // stopped); while it has none, the same rule over the steps so far.
        verdict: status.verdict.unwrap_or_else(|| {
            firedrill_core::sequencer::overall(steps.iter().map(|s| Some(s.verdict)), false)
        }),
        experiments: steps,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use firedrill_core::api::{ExperimentStatus, GameDayStatus, Phase, TimelineEntry};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).single().unwrap()
    }

    fn game_day() -> GameDay {
        crate::fixtures::game_day("q")
    }

    fn child(name: &str) -> Experiment {
        let mut e = crate::fixtures::experiment(name);
        e.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "firedrill.dev/v1alpha1".into(),
            kind: "GameDay".into(),
            name: "q".into(),
            uid: "gd-uid".into(),
            ..Default::default()
        }]);
        e
    }

    fn entry(s: i64, phase: Phase, message: &str) -> TimelineEntry {
        TimelineEntry {
            at: at(s),
            phase,
            message: message.into(),
        }
    }

    #[test]
    fn children_are_owned_or_named_and_map_to_steps() {
        let g = game_day();
        let stranger = crate::fixtures::experiment("q-zone-blackout");
        let list = [child("q-zone-blackout"), stranger];
        assert_eq!(children(&g, &list).len(), 1);
        assert_eq!(
            step_of(&g, "q-zone-blackout").as_deref(),
            Some("zone-blackout")
        );
        assert_eq!(step_of(&g, "unrelated"), None);
    }

    #[test]
    fn the_follower_prints_each_transition_once_in_the_lab_format() {
        let mut f = Follower::default();
        let mut g = game_day();
        assert!(
            f.on_experiment(&child("q-zone-blackout")).is_empty(),
            "before the game day"
        );
        g.status = Some(GameDayStatus {
            phase: GameDayPhase::Running,
            progress: Some("0/2".into()),
            ..Default::default()
        });
        assert_eq!(f.on_game_day(&g), ["-- game day q: Running (0/2 done)"]);
        assert!(f.on_game_day(&g).is_empty(), "unchanged");
        let mut e = child("q-zone-blackout");
        e.status = Some(ExperimentStatus {
            phase: Phase::SteadyStateBefore,
            timeline: vec![entry(0, Phase::SteadyStateBefore, "checking")],
            ..Default::default()
        });
        let lines = f.on_experiment(&e);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(
            lines[0],
            "\n== [1/2] zone-blackout: experiment q-zone-blackout, fault zoneBlackout"
        );
        assert!(
            lines[1].ends_with("[zone-blackout] SteadyStateBefore: checking"),
            "{lines:?}"
        );
        assert!(f.on_experiment(&e).is_empty(), "nothing new");
        let status = e.status.as_mut().unwrap();
        status
            .timeline
            .push(entry(5, Phase::Injecting, "blackout of zone-a"));
        status.timeline.push(entry(40, Phase::Completed, "done"));
        status.verdict = Some(Verdict::Passed);
        let lines = f.on_experiment(&e);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].ends_with("Injecting: blackout of zone-a"));
        assert_eq!(lines[2], "== zone-blackout: Passed");
        assert!(f.on_experiment(&e).is_empty());
    }

    #[test]
    fn the_report_has_every_step_in_order_and_marks_unrun_ones() {
        let mut g = game_day();
        g.status = Some(GameDayStatus {
            phase: GameDayPhase::Completed,
            verdict: Some(Verdict::Failed),
            started_at: Some(at(0)),
            finished_at: Some(at(100)),
            results: vec![StepResult {
                name: "zone-blackout".into(),
                experiment: Some("q-zone-blackout".into()),
                verdict: Some(Verdict::Failed),
                ..Default::default()
            }],
            ..Default::default()
        });
        let mut e = child("q-zone-blackout");
        e.status = Some(ExperimentStatus {
            phase: Phase::Completed,
            verdict: Some(Verdict::Failed),
            reason: Some("SLO delivery broken".into()),
            time_to_recover_seconds: Some(12.5),
            messages_lost: Some(3),
            ..Default::default()
        });
        let r = report(&g, &[e], at(200));
        assert_eq!(r.platform, "cluster");
        assert_eq!(r.verdict, Verdict::Failed);
        assert_eq!((r.started_at, r.finished_at), (at(0), at(100)));
        assert_eq!(r.experiments.len(), 2);
        assert_eq!(r.experiments[0].name, "zone-blackout");
        assert_eq!(r.experiments[0].messages_lost, Some(3));
        assert_eq!(r.experiments[0].time_to_recover_seconds, Some(12.5));
        assert_eq!(r.experiments[1].verdict, Verdict::Skipped);
        assert_eq!(r.experiments[1].reason.as_deref(), Some("not run"));
        let table = crate::gameday::report::summary(&r, Some(120));
        assert!(
            table.contains("zone-blackout") && table.contains("12.5s"),
            "{table}"
        );
    }
}
