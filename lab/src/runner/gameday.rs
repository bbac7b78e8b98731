//! Game days in the lab: core's sequencer ([`firedrill_core::sequencer`]) decides, as it does
//! for the operator's GameDay controller; this shell runs each step it starts in-process,
//! pauses when it says so and stops when the game day is interrupted.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use firedrill_core::api::{ExperimentSpec, GameDaySpec, GameDayStatus, GameDayStep, Verdict};
use firedrill_core::report::{ExperimentReport, GameDayReport};
use firedrill_core::sequencer::{self, Next, Unresolved};

use super::{Progress, Runner};
use crate::error::{LabError, Result};
use crate::platform::plan;

/// Why a lab game day stops when it is interrupted (Ctrl-C, `chaosctl lab stop-all`); its
/// steps still to come are "not run: " this.
const INTERRUPTED: &str = "the game day was interrupted";

/// How often an interrupt is looked for during the pause between steps.
const PAUSE_TICK: Duration = Duration::from_millis(200);

/// A game day's run in the lab: each step's report, in order, and the overall verdict.
#[derive(Debug, Clone)]
pub struct GameDayRun {
    pub experiments: Vec<ExperimentReport>,
    pub verdict: Verdict,
}

impl Runner {
    /// Runs a game day's steps in order, as core's sequencer says. `experiments` resolves
    /// `experimentRef`s by name; `only`, when not empty, runs just those steps. Every step is
    /// resolved and planned before the first starts, so a missing reference or a plan the lab
    /// cannot carry out fails before any fault.
    pub async fn game_day(
        &self,
        name: &str,
        game_day: &GameDaySpec,
        experiments: &BTreeMap<String, ExperimentSpec>,
        only: &[String],
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<GameDayRun> {
        let mut game_day = game_day.clone();
        game_day
            .experiments
            .retain(|s| only.is_empty() || only.contains(&s.name));
        if game_day.experiments.is_empty() {
            return Err(LabError::Plan(format!(
                "game day {name} has no step named {}",
                only.join(", ")
            )));
        }
        let mut specs = Vec::new();
        for step in &game_day.experiments {
            let spec = sequencer::resolve(&game_day, step, |r| experiments.get(r).cloned())
                .map_err(|e| unresolved(step, &e))?;
            plan(&spec, self.platform.topology())
                .map_err(|e| LabError::Plan(format!("step {}: {e}", step.name)))?;
            specs.push(spec);
        }
        let total = specs.len();
        let mut status = GameDayStatus::default();
        let mut reports: BTreeMap<usize, ExperimentReport> = BTreeMap::new();
        let mut paused_before = None;
        loop {
            let stop = self.abort.load(Ordering::SeqCst).then_some(INTERRUPTED);
            match sequencer::advance(&game_day, &mut status, Utc::now(), stop) {
                Next::Done => break,
                Next::Start(index) => {
                    let (step, spec) = (&game_day.experiments[index], &specs[index]);
                    sequencer::started(
                        &mut status,
                        &step.name,
                        None,
                        spec.fault.name(),
                        Utc::now(),
                    );
                    let report = self
                        .run_experiment(&step.name, spec, index + 1, total, progress)
                        .await?;
                    // The quiet time runs from here, after the experiment's own clean-up.
                    if let Some(result) = status.results.get_mut(index) {
                        result.verdict = Some(report.verdict);
                        result.reason.clone_from(&report.reason);
                        result.finished_at = Some(Utc::now());
                    }
                    reports.insert(index, report);
                }
                Next::Until(until) => {
                    if paused_before != Some(status.results.len()) {
                        paused_before = Some(status.results.len());
                        progress(Progress::Pause {
                            seconds: game_day.pause_between.as_std().as_secs(),
                        });
                    }
                    self.pause_until(until).await;
                }
                // Each step runs to its end before the sequencer is asked again.
                Next::Running | Next::Stopping => {
                    return Err(LabError::State(format!(
                        "game day {name}: the sequencer waits for a step that is not running"
                    )));
                }
            }
        }
        let experiments = status
            .results
            .iter()
            .zip(&specs)
            .enumerate()
            .map(|(index, (result, spec))| match reports.remove(&index) {
                Some(report) => report,
                None => not_run(
                    &result.name,
                    spec,
                    result.reason.as_deref().unwrap_or("not run"),
                ),
            })
            .collect();
        Ok(GameDayRun {
            experiments,
            verdict: status.verdict.unwrap_or(Verdict::Failed),
        })
    }

    /// Sleeps until `until`, or until the game day is interrupted.
    async fn pause_until(&self, until: DateTime<Utc>) {
        while !self.abort.load(Ordering::SeqCst) {
            let Ok(left) = (until - Utc::now()).to_std() else {
                return;
            };
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left.min(PAUSE_TICK)).await;
        }
    }
}

/// Why a step cannot run in the lab, said as the lab says it.
fn unresolved(step: &GameDayStep, why: &Unresolved) -> LabError {
    LabError::Plan(match why {
        Unresolved::Missing(reference) => format!(
            "step {} refers to experiment {reference}, which is not among the loaded manifests",
            step.name
        ),
        Unresolved::Empty => format!("step {} has no experiment", step.name),
        Unresolved::Invalid { .. } => format!("step {}: {why}", step.name),
    })
}

fn not_run(name: &str, spec: &ExperimentSpec, reason: &str) -> ExperimentReport {
    let status = firedrill_core::api::ExperimentStatus {
        verdict: Some(Verdict::Skipped),
        reason: Some(reason.to_owned()),
        ..Default::default()
    };
    ExperimentReport::from_status(name, spec.fault.name(), &status, vec![])
}

/// The game-day report of a run.
pub fn report(
    name: &str,
    weakness: Option<String>,
    started_at: DateTime<Utc>,
    run: GameDayRun,
) -> GameDayReport {
    GameDayReport {
        name: name.to_owned(),
        platform: "lab".to_owned(),
        weakness,
        started_at,
        finished_at: Utc::now(),
        verdict: run.verdict,
        experiments: run.experiments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(name: &str, verdict: Verdict, reason: Option<&str>) -> ExperimentReport {
        let status = firedrill_core::api::ExperimentStatus {
            verdict: Some(verdict),
            reason: reason.map(str::to_owned),
            ..Default::default()
        };
        ExperimentReport::from_status(name, "podKill", &status, vec![])
    }

    #[test]
    fn the_report_keeps_the_runs_verdict_and_steps() {
        // The verdict is the sequencer's, decided during the run (tested in core and by the
        // lab's stop-all test); the report only carries it, never recomputes it.
        let run = GameDayRun {
            experiments: vec![
                experiment("a", Verdict::Aborted, None),
                experiment("b", Verdict::Skipped, Some("not run: stop-all")),
            ],
            verdict: Verdict::Aborted,
        };
        let report = report("gd", Some("stream-r1".into()), Utc::now(), run);
        assert_eq!(report.verdict, Verdict::Aborted);
        assert_eq!(report.platform, "lab");
        assert_eq!(report.weakness.as_deref(), Some("stream-r1"));
        let names: Vec<&str> = report.experiments.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }
}
