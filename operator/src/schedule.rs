//! The DrillSchedule controller: starts a GameDay from the schedule's template when the cron
//! expression says so, and keeps a history of the drills with their verdicts and figures.
//!
//! [`due`] and [`plan_runs`] are pure. The schedule's cursor is the newest `scheduledFor` in
//! its history (or its creation time): every scheduled time after it has not been dealt
//! with. Drill GameDays are named after their scheduled time ([`drill_name`]), so a drill
//! created just before a crash is adopted, never started twice.
//!
//! # Missed runs
//!
//! After operator downtime, of all the scheduled times passed over only the **latest** may
//! still start, and only while it is at most `startingDeadline` old; the others (and that
//! one, past its deadline) are recorded in the history as one `missed` entry with a count.
//! A quarterly drill that could not start at 09:00 still runs at 10:00 with the default
//! deadline of 6 h, but a drill never runs twice to catch up.
//!
//! # Concurrency
//!
//! When a drill is due while the previous one still runs: `Forbid` records the new one as
//! skipped; `Replace` deletes the running GameDay (its finalizer aborts its experiment, whose
//! finalizer reverts the fault), records it as aborted, and starts the new one.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use firedrill_core::api::{
    API_VERSION, ConcurrencyPolicy, DrillRecord, DrillSchedule, DrillScheduleSpec,
    DrillScheduleStatus, GameDay, GameDayPhase, GameDayStatus, Verdict,
};
use firedrill_core::manifest::check_schedule;
use futures_util::StreamExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::gameday::label_value;
use crate::reconcile::Context;
use crate::status::Note;
use crate::{Error, FIELD_MANAGER, MANAGED_BY_LABEL};

/// Labels a schedule's GameDays with the schedule's UID.
pub const SCHEDULE_UID_LABEL: &str = "firedrill.dev/schedule-uid";
/// Labels a schedule's GameDays with the schedule's name, when it fits a label value.
pub const SCHEDULE_LABEL: &str = "firedrill.dev/schedule";
/// The most scheduled times looked at in one go (an every-minute schedule after a week
/// down); the rest are dealt with at the next reconciliation.
const MAX_CATCH_UP: usize = 10_000;
/// The longest a reconciliation waits, whatever the schedule says (clocks move).
const MAX_WAIT: Duration = Duration::from_secs(300);

// ----- pure -----

/// What the schedule says at a moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// The scheduled time of the drill to start now.
    pub run: Option<DateTime<Utc>>,
    /// Scheduled times passed over and not to be run: the latest of them, and how many.
    pub missed: Option<(DateTime<Utc>, usize)>,
    /// The first scheduled time after the ones dealt with here.
    pub next: Option<DateTime<Utc>>,
}

/// The scheduled times after `cursor` up to `now`: the latest runs if it is at most
/// `startingDeadline` old, every other one is missed.
pub fn due(
    spec: &DrillScheduleSpec,
    cursor: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Due, String> {
    let mut passed = Vec::new();
    let mut at = cursor;
    let mut next = None;
    while let Some(t) = spec.next_after(at)? {
        if t > now || passed.len() >= MAX_CATCH_UP {
            next = Some(t);
            break;
        }
        passed.push(t);
        at = t;
    }
    let Some(&latest) = passed.last() else {
        return Ok(Due {
            next,
            ..Due::default()
        });
    };
    if next.is_some_and(|n| n <= now) {
        // More to catch up than one look covers: all of these are older than the rest.
        return Ok(Due {
            run: None,
            missed: Some((latest, passed.len())),
            next: Some(now),
        });
    }
    if now - latest <= spec.starting_deadline.to_chrono() {
        let missed = passed
            .len()
            .checked_sub(2)
            .map(|i| (passed[i], passed.len() - 1));
        Ok(Due {
            run: Some(latest),
            missed,
            next,
        })
    } else {
        Ok(Due {
            run: None,
            missed: Some((latest, passed.len())),
            next,
        })
    }
}

/// The GameDay of the drill scheduled for `at`: `<schedule>-<yyyymmddhhmm>` (UTC), the
/// schedule's part cut so the name fits and leaves room for the game day's step names.
pub fn drill_name(schedule: &str, at: DateTime<Utc>) -> String {
    let stamp = at.format("%Y%m%d%H%M").to_string();
    let mut end = schedule.len().min(190);
    while !schedule.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{stamp}", schedule[..end].trim_end_matches(['-', '.']))
}

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

/// The status patch (server-side apply needs apiVersion and kind).
pub fn status_patch(status: &DrillScheduleStatus) -> Result<serde_json::Value, serde_json::Error> {
    Ok(json!({
        "apiVersion": API_VERSION,
        "kind": "DrillSchedule",
        "status": serde_json::to_value(status)?,
    }))
}

// ----- the shell -----

fn namespace(schedule: &DrillSchedule) -> Result<String, Error> {
    schedule.namespace().ok_or(Error::MissingField("namespace"))
}

/// The GameDay of a drill.
pub fn drill(schedule: &DrillSchedule, name: &str) -> Result<GameDay, Error> {
    let uid = schedule.uid().ok_or(Error::MissingField("uid"))?;
    let mut labels = schedule.labels().clone();
    labels.insert(SCHEDULE_UID_LABEL.to_owned(), uid);
    if let Some(value) = label_value(&schedule.name_any()) {
        labels.insert(SCHEDULE_LABEL.to_owned(), value.to_owned());
    }
    labels.insert(MANAGED_BY_LABEL.to_owned(), FIELD_MANAGER.to_owned());
    let mut game_day = GameDay::new(name, schedule.spec.game_day.clone());
    game_day.metadata.namespace = schedule.namespace();
    game_day.metadata.labels = Some(labels);
    game_day.metadata.owner_references = Some(vec![
        schedule
            .controller_owner_ref(&())
            .ok_or(Error::MissingField("uid"))?,
    ]);
    Ok(game_day)
}

async fn apply(schedule: &DrillSchedule, ctx: &Context) -> Result<Action, Error> {
    let ns = namespace(schedule)?;
    let uid = schedule.uid().ok_or(Error::MissingField("uid"))?;
    let api: Api<GameDay> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some((path, message)) = check_schedule(&schedule.spec).first() {
        let note = Note::new(
            EventType::Warning,
            "InvalidSpec",
            &format!("spec.{path}: {message}"),
            "Reconcile",
        );
        ctx.publish(schedule, &note).await;
        return Ok(Action::await_change());
    }
    let before = schedule.status.clone().unwrap_or_default();
    let mut status = before.clone();
    let owned = api
        .list(&ListParams::default().labels(&format!("{SCHEDULE_UID_LABEL}={uid}")))
        .await?
        .items;
    let active = match &status.active {
        None => Active::None,
        Some(name) => match owned.iter().find(|g| &g.name_any() == name) {
            None => Active::Gone,
            Some(g) => match g.status.as_ref() {
                Some(s) if s.phase == GameDayPhase::Completed => {
                    Active::Finished(Box::new(s.clone()))
                }
                _ => Active::Running,
            },
        },
    };
    let created = schedule
        .meta()
        .creation_timestamp
        .as_ref()
        .and_then(|t| DateTime::from_timestamp(t.0.as_second(), 0))
        .ok_or(Error::MissingField("creationTimestamp"))?;
    let now = Utc::now();
    let paused = ctx.pause.read(&ctx.client).await.blocks_start();
    let runs = match plan_runs(
        &schedule.name_any(),
        &schedule.spec,
        &mut status,
        &active,
        created,
        now,
        paused.as_deref(),
    ) {
        Ok(runs) => runs,
        Err(message) => {
            let note = Note::new(EventType::Warning, "InvalidSchedule", &message, "Reconcile");
            ctx.publish(schedule, &note).await;
            return Ok(Action::await_change());
        }
    };
    if let Some(previous) = &runs.replace {
        match api.delete(previous, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some((name, _)) = &runs.start {
        match api
            .create(&PostParams::default(), &drill(schedule, name)?)
            .await
        {
            Ok(_) => {}
            // Created before a crash, or by a replica that lost the lease: adopt it.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let names: Vec<String> = owned.iter().map(ResourceExt::name_any).collect();
    for name in to_prune(&status, &names) {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    if status != before {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        Api::<DrillSchedule>::namespaced(ctx.client.clone(), &ns)
            .patch_status(
                &schedule.name_any(),
                &params,
                &Patch::Apply(&status_patch(&status)?),
            )
            .await?;
    }
    for (reason, text, warning) in runs.notes {
        let type_ = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.publish(schedule, &Note::new(type_, &reason, &text, "Reconcile"))
            .await;
    }
    let wait = status
        .next_run_at
        .map(|next| {
            (next - Utc::now() + TimeDelta::milliseconds(200))
                .to_std()
                .unwrap_or(Duration::ZERO)
                .max(Duration::from_millis(200))
        })
        .unwrap_or(MAX_WAIT)
        .min(MAX_WAIT);
    Ok(Action::requeue(wait))
}

/// Reconciles one DrillSchedule: metrics, and a Warning Event for a failure.
pub async fn reconcile(schedule: Arc<DrillSchedule>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile();
    let result = apply(&schedule, &ctx).await;
    if let Err(error) = &result {
        ctx.metrics.failure(error);
        if !matches!(error.category(), "conflict" | "not_found") {
            let note = Note::new(
                EventType::Warning,
                error.reason(),
                &error.to_string(),
                "Reconcile",
            );
            ctx.publish(schedule.as_ref(), &note).await;
        }
    }
    result
}

pub fn error_policy(schedule: Arc<DrillSchedule>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(
        schedule = %schedule.name_any(),
        namespace = ?schedule.namespace(),
        category = error.category(),
        error = %error,
        "reconcile failed"
    );
    Action::requeue(crate::reconcile::retry_after(error))
}

/// The controller: DrillSchedules (of one namespace or all, matching the operator's
/// selector), and the GameDays they own (a drill's end triggers its schedule at once).
pub fn controller(ctx: &Context) -> Controller<DrillSchedule> {
    let client = ctx.client.clone();
    let (schedules, game_days): (Api<DrillSchedule>, Api<GameDay>) = match &ctx.watch_namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let mut watched = watcher::Config::default();
    if let Some(selector) = &ctx.experiment_selector {
        watched = watched.labels(selector);
    }
    let owned = watcher::Config::default().labels(SCHEDULE_UID_LABEL);
    Controller::new(schedules, watched).owns(game_days, owned)
}

/// Runs the controller until `stop` completes.
pub async fn run(ctx: Arc<Context>, stop: impl Future<Output = ()> + Send + Sync + 'static) {
    controller(&ctx)
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(%object, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "schedule controller"),
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("time")
    }

    fn spec(schedule: &str, extra: serde_json::Value) -> DrillScheduleSpec {
        let mut value = json!({
            "schedule": schedule,
            "gameDay": {"experiments": [{"name": "a", "experimentRef": {"name": "x"}}]},
        });
        if let (Some(v), serde_json::Value::Object(extra)) = (value.as_object_mut(), extra) {
            v.extend(extra);
        }
        serde_json::from_value(value).expect("spec")
    }

    #[test]
    fn quarterly_by_default_in_utc() {
        let spec: DrillScheduleSpec = serde_json::from_value(json!({
            "gameDay": {"experiments": [{"name": "a", "experimentRef": {"name": "x"}}]}
        }))
        .expect("spec");
        let d = due(&spec, utc(2026, 1, 2, 0, 0), utc(2026, 2, 1, 0, 0)).expect("due");
        assert_eq!(d.run, None);
        assert_eq!(d.missed, None);
        assert_eq!(d.next, Some(utc(2026, 4, 1, 9, 0)));
    }

    #[test]
    fn nothing_runs_before_its_time_and_it_runs_at_it() {
        let spec = spec("*/5 * * * *", json!({}));
        let cursor = utc(2026, 3, 1, 10, 1);
        let d = due(&spec, cursor, utc(2026, 3, 1, 10, 4)).expect("due");
        assert_eq!((d.run, d.next), (None, Some(utc(2026, 3, 1, 10, 5))));
        let d = due(&spec, cursor, utc(2026, 3, 1, 10, 5)).expect("due");
        assert_eq!(d.run, Some(utc(2026, 3, 1, 10, 5)));
        assert_eq!(d.next, Some(utc(2026, 3, 1, 10, 10)));
        // The time just run is the cursor now: it is not due again.
        let d = due(&spec, utc(2026, 3, 1, 10, 5), utc(2026, 3, 1, 10, 6)).expect("due");
        assert_eq!(d.run, None);
    }

    #[test]
    fn after_downtime_only_the_latest_missed_run_starts_within_the_deadline() {
        let spec = spec("0 * * * *", json!({"startingDeadline": "30m"}));
        // Down from 09:30 to 12:10: 10:00 and 11:00 missed, 12:00 still starts.
        let d = due(&spec, utc(2026, 3, 1, 9, 30), utc(2026, 3, 1, 12, 10)).expect("due");
        assert_eq!(d.run, Some(utc(2026, 3, 1, 12, 0)));
        assert_eq!(d.missed, Some((utc(2026, 3, 1, 11, 0), 2)));
        assert_eq!(d.next, Some(utc(2026, 3, 1, 13, 0)));
        // Back at 12:40: 12:00 is past its deadline too.
        let d = due(&spec, utc(2026, 3, 1, 9, 30), utc(2026, 3, 1, 12, 40)).expect("due");
        assert_eq!(d.run, None);
        assert_eq!(d.missed, Some((utc(2026, 3, 1, 12, 0), 3)));
    }

    #[test]
    fn a_long_catch_up_is_bounded_per_look() {
        let spec = spec("* * * * *", json!({}));
        let start = utc(2026, 1, 1, 0, 0);
        let d = due(&spec, start, utc(2026, 3, 1, 0, 0)).expect("due");
        assert_eq!(d.run, None);
        let (latest, count) = d.missed.expect("missed");
        assert_eq!(count, MAX_CATCH_UP);
        assert_eq!(latest, start + TimeDelta::minutes(MAX_CATCH_UP as i64));
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        // 09:00 in Seoul is 00:00 UTC.
        let seoul = spec("0 9 * * *", json!({"timeZone": "Asia/Seoul"}));
        let d = due(&seoul, utc(2026, 3, 1, 1, 0), utc(2026, 3, 1, 1, 0)).expect("due");
        assert_eq!(d.next, Some(utc(2026, 3, 2, 0, 0)));
        // Berlin: 09:00 is 08:00 UTC in winter and 07:00 UTC in summer.
        let berlin = spec("0 9 * * *", json!({"timeZone": "Europe/Berlin"}));
        let d = due(&berlin, utc(2026, 3, 28, 12, 0), utc(2026, 3, 28, 12, 0)).expect("due");
        assert_eq!(d.next, Some(utc(2026, 3, 29, 7, 0)));
        let d = due(&berlin, utc(2026, 3, 27, 12, 0), utc(2026, 3, 27, 12, 0)).expect("due");
        assert_eq!(d.next, Some(utc(2026, 3, 28, 8, 0)));
        // 02:30 does not exist in Berlin on 29 March 2026: it fires at the jump, 03:00 CEST.
        let skipped = spec("30 2 * * *", json!({"timeZone": "Europe/Berlin"}));
        let d = due(&skipped, utc(2026, 3, 28, 12, 0), utc(2026, 3, 28, 12, 0)).expect("due");
        let next = d.next.expect("next");
        assert_eq!(next, utc(2026, 3, 29, 1, 0));
        // 02:30 happens twice on 25 October 2026: the drill runs once.
        let d = due(&skipped, utc(2026, 10, 24, 12, 0), utc(2026, 10, 25, 3, 0)).expect("due");
        let first = d.run.expect("run");
        assert!(d.missed.is_none(), "{d:?}");
        let after = due(&skipped, first, utc(2026, 10, 25, 3, 0)).expect("due");
        assert_eq!(after.run, None, "{after:?}");
        assert!(after.next.expect("next") > utc(2026, 10, 25, 12, 0));
    }

    #[test]
    fn drill_names_are_deterministic_and_fit() {
        assert_eq!(drill_name("dr", utc(2026, 4, 1, 9, 0)), "dr-202604010900");
        let long = "s".repeat(250);
        assert!(drill_name(&long, utc(2026, 4, 1, 9, 0)).len() <= 203);
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
        let runs = plan_runs(
            "dr",
            &spec,
            &mut status,
            &Active::None,
            created,
            utc(2026, 3, 1, 10, 5),
            None,
        )
        .expect("runs");
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
        let runs = plan_runs(
            "dr",
            &spec,
            &mut status,
            &Active::None,
            created,
            utc(2026, 3, 1, 10, 0),
            None,
        )
        .expect("runs");
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
        let runs = plan_runs(
            "dr",
            &spec,
            &mut status,
            &Active::None,
            created,
            utc(2026, 3, 1, 3, 5),
            None,
        )
        .expect("runs");
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
        plan_runs(
            "dr",
            &spec,
            &mut status,
            &Active::None,
            created,
            utc(2026, 3, 1, 1, 0),
            None,
        )
        .expect("runs");
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

    #[test]
    fn the_patch_names_its_kind() {
        let patch = status_patch(&DrillScheduleStatus::default()).expect("patch");
        assert_eq!(patch["kind"], "DrillSchedule");
        assert!(patch["status"].get("active").is_none());
    }
}
