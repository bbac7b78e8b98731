//! What to do for a schedule now: settle the active drill, start what is due, apply the
//! concurrency policy, keep the history (pure).

use chrono::{DateTime, Utc};
use firedrill_core::api::{
    ConcurrencyPolicy, DrillRecord, DrillScheduleSpec, DrillScheduleStatus, GameDayStatus, Verdict,
};

use super::timing::{drill_name, due};

/// Where the schedule's current drill is.
#[derive(Clone, Debug, PartialEq)]
pub enum Active {
    /// No drill is recorded as active.
    None,
    /// It exists and has not finished.
    Running,
    /// It finished with this status.
    Finished(Box<GameDayStatus>),
    /// It no longer exists.
    Gone,
}

/// What the shell does for a schedule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Runs {
    /// Start this drill (GameDay name) for this scheduled time.
    pub start: Option<(String, DateTime<Utc>)>,
    /// Delete this GameDay (replaced by a new drill).
    pub replace: Option<String>,
    /// Something worth an Event: (reason, note, warning).
    pub notes: Vec<(String, String, bool)>,
}

fn record<'a>(status: &'a mut DrillScheduleStatus, game_day: &str) -> Option<&'a mut DrillRecord> {
    status.history.iter_mut().find(|r| r.game_day == game_day)
}

/// Settles the active drill, works out what is due and applies the concurrency policy.
/// `cursor` is the newest scheduled time dealt with; `created` stands in when there is none.
pub fn plan_runs(
    schedule: &str,
    spec: &DrillScheduleSpec,
    status: &mut DrillScheduleStatus,
    active: &Active,
    created: DateTime<Utc>,
    now: DateTime<Utc>,
    paused: Option<&str>,
) -> Result<Runs, String> {
    let mut runs = Runs::default();
    if let Some(name) = status.active.clone() {
        match active {
            Active::Running | Active::None => {}
            Active::Finished(game_day) => {
                let verdict = game_day.verdict.unwrap_or(Verdict::Aborted);
                let count = |v: Verdict| {
                    let n = game_day
                        .results
                        .iter()
                        .filter(|r| r.verdict == Some(v))
                        .count();
                    u32::try_from(n).unwrap_or(u32::MAX)
                };
                let passed = count(Verdict::Passed);
                let failed = count(Verdict::Failed) + count(Verdict::Aborted);
                if let Some(r) = record(status, &name) {
                    r.verdict = Some(verdict);
                    r.finished_at = Some(game_day.finished_at.unwrap_or(now));
                    r.passed = Some(passed);
                    r.failed = Some(failed);
                }
                status.last_verdict = Some(verdict);
                status.active = None;
                runs.notes.push((
                    format!("Drill{verdict:?}"),
                    format!("drill {name}: {verdict:?} ({passed} passed, {failed} failed)"),
                    verdict != Verdict::Passed,
                ));
            }
            Active::Gone => {
                if let Some(r) = record(status, &name) {
                    r.verdict = Some(Verdict::Aborted);
                    r.finished_at.get_or_insert(now);
                    r.note = Some("its GameDay was deleted before it finished".to_owned());
                }
                status.last_verdict = Some(Verdict::Aborted);
                status.active = None;
            }
        }
    }
    if spec.suspend {
        status.next_run_at = None;
        return Ok(runs);
    }
    let cursor = status
        .history
        .iter()
        .map(|r| r.scheduled_for)
        .max()
        .unwrap_or(created);
    let due = due(spec, cursor, now)?;
    if let Some((latest, count)) = due.missed {
        let note = if count == 1 {
            format!(
                "missed: not started within the starting deadline of {}",
                spec.starting_deadline
            )
        } else {
            format!(
                "missed {count} runs (this one the latest): not started within the starting deadline of {}",
                spec.starting_deadline
            )
        };
        runs.notes
            .push(("DrillMissed".to_owned(), note.clone(), true));
        status.history.push(DrillRecord {
            game_day: drill_name(schedule, latest),
            scheduled_for: latest,
            started_at: None,
            finished_at: None,
            verdict: None,
            passed: None,
            failed: None,
            note: Some(note),
        });
    }
    if let Some(at) = due.run {
        let name = drill_name(schedule, at);
        let mut entry = DrillRecord {
            game_day: name.clone(),
            scheduled_for: at,
            started_at: None,
            finished_at: None,
            verdict: None,
            passed: None,
            failed: None,
            note: None,
        };
        let running = status.active.clone().filter(|_| *active == Active::Running);
        match (running, spec.concurrency_policy) {
            // The kill switch: a due run is recorded, never started.
            _ if paused.is_some() => {
                let note = format!("skipped while paused: {}", paused.unwrap_or_default());
                runs.notes
                    .push(("DrillSkipped".to_owned(), note.clone(), true));
                entry.note = Some(note);
            }
            (Some(previous), ConcurrencyPolicy::Forbid) => {
                let note = format!(
                    "skipped: drill {previous} was still running (concurrencyPolicy Forbid)"
                );
                runs.notes
                    .push(("DrillSkipped".to_owned(), note.clone(), true));
                entry.note = Some(note);
            }
            (previous, _) => {
                if let Some(previous) = previous {
                    if let Some(r) = record(status, &previous) {
                        r.verdict = Some(Verdict::Aborted);
                        r.finished_at = Some(now);
                        r.note = Some(format!("replaced by {name} (concurrencyPolicy Replace)"));
                    }
                    status.last_verdict = Some(Verdict::Aborted);
                    runs.replace = Some(previous);
                }
                entry.started_at = Some(now);
                status.active = Some(name.clone());
                status.last_run_at = Some(now);
                runs.notes.push((
                    "DrillStarted".to_owned(),
                    format!("started drill {name} scheduled for {at}"),
                    false,
                ));
                runs.start = Some((name, at));
            }
        }
        status.history.push(entry);
    }
    status
        .history
        .sort_by_key(|r| std::cmp::Reverse(r.scheduled_for));
    let limit = usize::try_from(spec.history_limit.max(1)).unwrap_or(usize::MAX);
    // The active drill's record stays, whatever the limit.
    let active_name = status.active.clone();
    let mut kept = 0;
    status.history.retain(|r| {
        kept += 1;
        kept <= limit || Some(&r.game_day) == active_name.as_ref()
    });
    status.next_run_at = due.next;
    Ok(runs)
}

/// The GameDays of a schedule to delete: those in neither its history nor active.
pub fn to_prune<'a>(status: &DrillScheduleStatus, existing: &'a [String]) -> Vec<&'a str> {
    existing
        .iter()
        .filter(|name| {
            status.active.as_ref() != Some(*name)
                && !status.history.iter().any(|r| &r.game_day == *name)
        })
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schedule::test_support::{spec, utc};

    /// Plans for schedule `dr` with no drill active, as a reconciliation at `now` would.
    fn plan_idle(
        spec: &DrillScheduleSpec,
        status: &mut DrillScheduleStatus,
        created: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Runs {
        plan_runs("dr", spec, status, &Active::None, created, now, None).expect("runs")
    }

    fn finished(verdict: Verdict) -> Active {
        let game_day: GameDayStatus = serde_json::from_value(json!({
            "phase": "Completed", "verdict": verdict, "finishedAt": "2026-03-01T10:03:00Z",
            "results": [{"name": "a", "verdict": "Passed"}, {"name": "b", "verdict": verdict}],
        }))
        .expect("status");
        Active::Finished(Box::new(game_day))
    }

    #[test]
    fn a_run_due_while_paused_is_recorded_as_skipped_and_the_next_one_starts_after_resume() {
        let spec = spec("*/5 * * * *", json!({}));
        let created = utc(2026, 3, 1, 9, 58);
        let mut status = DrillScheduleStatus::default();
        let runs = plan_runs(
            "dr",
            &spec,
            &mut status,
            &Active::None,
            created,
            utc(2026, 3, 1, 10, 0),
            Some("firedrill is paused cluster-wide (stop-all by ana)"),
        )
        .expect("runs");
        assert_eq!(runs.start, None, "nothing starts while paused");
        assert_eq!(status.active, None);
        let skipped = &status.history[0];
        assert_eq!(skipped.game_day, "dr-202603011000");
        assert_eq!(skipped.started_at, None);
        assert!(
            skipped
                .note
                .as_deref()
                .is_some_and(|n| n.starts_with("skipped while paused") && n.contains("ana")),
            "{skipped:?}"
        );
        assert!(
            runs.notes
                .iter()
                .any(|(reason, _, warning)| reason == "DrillSkipped" && *warning)
        );
        // Resumed: the next scheduled run starts; the skipped one is not run late.
        let runs = plan_idle(&spec, &mut status, created, utc(2026, 3, 1, 10, 5));
        assert_eq!(
            runs.start,
            Some(("dr-202603011005".into(), utc(2026, 3, 1, 10, 5)))
        );
    }

    #[test]
    fn a_due_drill_starts_and_its_end_is_recorded_with_figures() {
        let spec = spec("*/5 * * * *", json!({}));
        let created = utc(2026, 3, 1, 9, 58);
        let mut status = DrillScheduleStatus::default();
        let runs = plan_idle(&spec, &mut status, created, utc(2026, 3, 1, 10, 0));
        assert_eq!(
            runs.start,
            Some(("dr-202603011000".into(), utc(2026, 3, 1, 10, 0)))
        );
        assert_eq!(status.active.as_deref(), Some("dr-202603011000"));
        assert_eq!(status.next_run_at, Some(utc(2026, 3, 1, 10, 5)));
        // Again before it is done: nothing new.
        let runs = plan_runs(
            "dr",
            &spec,
            &mut status,
            &Active::Running,
            created,
            utc(2026, 3, 1, 10, 2),
            None,
        )
        .expect("runs");
        assert_eq!(runs, Runs::default());
        let runs = plan_runs(
            "dr",
            &spec,
            &mut status,
            &finished(Verdict::Failed),
            created,
            utc(2026, 3, 1, 10, 3),
            None,
        )
        .expect("runs");
        assert!(runs.start.is_none());
        assert_eq!(status.active, None);
        assert_eq!(status.last_verdict, Some(Verdict::Failed));
        let r = &status.history[0];
        assert_eq!(
            (r.verdict, r.passed, r.failed),
            (Some(Verdict::Failed), Some(1), Some(1))
        );
        assert_eq!(r.finished_at, Some(utc(2026, 3, 1, 10, 3)));
    }

    #[test]
    fn forbid_skips_a_drill_while_one_runs_and_replace_aborts_it() {
        let forbid = spec("*/5 * * * *", json!({}));
        let created = utc(2026, 3, 1, 9, 58);
        let mut status = DrillScheduleStatus::default();
        plan_runs(
            "dr",
            &forbid,
            &mut status,
            &Active::None,
            created,
            utc(2026, 3, 1, 10, 0),
            None,
        )
        .expect("runs");
        let mut replaced = status.clone();
        let runs = plan_runs(
            "dr",
            &forbid,
            &mut status,
            &Active::Running,
            created,
            utc(2026, 3, 1, 10, 5),
            None,
        )
        .expect("runs");
        assert!(runs.start.is_none() && runs.replace.is_none());
        assert_eq!(status.active.as_deref(), Some("dr-202603011000"));
        assert!(
            status.history[0]
                .note
                .as_deref()
                .is_some_and(|n| n.starts_with("skipped"))
        );
        assert_eq!(status.history[0].verdict, None);
        let replace = spec("*/5 * * * *", json!({"concurrencyPolicy": "Replace"}));
        let runs = plan_runs(
            "dr",
            &replace,
            &mut replaced,
            &Active::Running,
            created,
            utc(2026, 3, 1, 10, 5),
            None,
        )
        .expect("runs");
        assert_eq!(runs.replace.as_deref(), Some("dr-202603011000"));
        assert_eq!(runs.start.map(|s| s.0).as_deref(), Some("dr-202603011005"));
        assert_eq!(replaced.active.as_deref(), Some("dr-202603011005"));
        assert_eq!(replaced.history[1].verdict, Some(Verdict::Aborted));
    }

    #[test]
    fn missed_runs_are_recorded_and_history_is_limited_and_pruned() {
        let spec = spec(
            "0 * * * *",
            json!({"startingDeadline": "10m", "historyLimit": 2}),
        );
        let created = utc(2026, 3, 1, 0, 30);
        let mut status = DrillScheduleStatus::default();
        let runs = plan_idle(&spec, &mut status, created, utc(2026, 3, 1, 3, 5));
        assert_eq!(runs.start.map(|s| s.1), Some(utc(2026, 3, 1, 3, 0)));
        assert_eq!(status.history.len(), 2);
        assert_eq!(status.history[1].scheduled_for, utc(2026, 3, 1, 2, 0));
        assert!(
            status.history[1]
                .note
                .as_deref()
                .is_some_and(|n| n.contains("missed 2 runs"))
        );
        // The operator was down past the next deadline: recorded as missed, nothing runs.
        let runs = plan_runs(
            "dr",
            &spec,
            &mut status,
            &finished(Verdict::Passed),
            created,
            utc(2026, 3, 1, 4, 30),
            None,
        )
        .expect("runs");
        assert!(runs.start.is_none());
        assert_eq!(status.history.len(), 2);
        assert_eq!(status.history[0].scheduled_for, utc(2026, 3, 1, 4, 0));
        assert_eq!(status.history[1].verdict, Some(Verdict::Passed));
        let existing = vec![
            "dr-202603010200".to_owned(),
            "dr-202603010300".to_owned(),
            "other".to_owned(),
        ];
        assert_eq!(to_prune(&status, &existing), ["dr-202603010200", "other"]);
        // A deleted drill is recorded as aborted.
        let mut status = DrillScheduleStatus::default();
        plan_idle(&spec, &mut status, created, utc(2026, 3, 1, 1, 0));
        plan_runs(
            "dr",
            &spec,
            &mut status,
            &Active::Gone,
            created,
            utc(2026, 3, 1, 1, 5),
            None,
        )
        .expect("runs");
        assert_eq!(status.active, None);
        assert_eq!(status.history[0].verdict, Some(Verdict::Aborted));
    }

    #[test]
    fn a_suspended_schedule_runs_nothing_and_shows_no_next_run() {
        let spec = spec("* * * * *", json!({"suspend": true}));
        let mut status = DrillScheduleStatus {
            next_run_at: Some(utc(2026, 3, 1, 0, 1)),
            ..Default::default()
        };
        let runs = plan_runs(
            "dr",
            &spec,
            &mut status,
            &Active::None,
            utc(2026, 3, 1, 0, 0),
            utc(2026, 3, 1, 0, 5),
            None,
        )
        .expect("runs");
        assert!(runs.start.is_none());
        assert_eq!(status.next_run_at, None);
        assert!(status.history.is_empty());
    }
}
