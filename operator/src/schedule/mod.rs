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
//!
//! `timing` reads the cron expression, `runs` decides what to do, `objects` builds what is
//! written; this module is the controller that carries it out.

mod objects;
mod runs;
#[cfg(test)]
mod test_support;
mod timing;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use firedrill_core::api::{DrillSchedule, GameDay, GameDayPhase};
use firedrill_core::manifest::check_schedule;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use crate::reconcile::Context;
use crate::requeue;
use crate::status::Note;
use crate::{Error, ErrorCategory, FIELD_MANAGER};

pub use objects::{SCHEDULE_LABEL, SCHEDULE_UID_LABEL, drill, status_patch};
pub use runs::{Active, Runs, plan_runs, to_prune};
pub use timing::{Due, drill_name, due};

/// How long after its next run is due a schedule is looked at: the reconciliation lands
/// just past the due instant, not a hair before it (which would find nothing due).
const DUE_SLACK: Duration = Duration::from_millis(200);

fn namespace(schedule: &DrillSchedule) -> Result<String, Error> {
    schedule.namespace().ok_or(Error::MissingField("namespace"))
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
                &Patch::Apply(&status_patch(&status, schedule.resource_version())?),
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
    // Without a next run, the clamp's ceiling: the spec or the clock may change.
    let wait = status.next_run_at.map_or(requeue::CEILING, |next| {
        requeue::until(next, Utc::now()) + DUE_SLACK
    });
    Ok(requeue::after(wait))
}

/// Reconciles one DrillSchedule: metrics, and a Warning Event for a failure.
pub async fn reconcile(schedule: Arc<DrillSchedule>, ctx: Arc<Context>) -> Result<Action, Error> {
    let quiet = [ErrorCategory::Conflict, ErrorCategory::NotFound];
    requeue::reported(&ctx, schedule.as_ref(), &quiet, apply(&schedule, &ctx)).await
}

/// The controller: DrillSchedules (of one namespace or all, matching the operator's
/// selector), and the GameDays they own (a drill's end triggers its schedule at once).
pub fn controller(ctx: &Context) -> Controller<DrillSchedule> {
    requeue::owning::<DrillSchedule, GameDay>(ctx, SCHEDULE_UID_LABEL)
}

/// Runs the controller until `stop` completes.
pub async fn run(ctx: Arc<Context>, stop: impl Future<Output = ()> + Send + Sync + 'static) {
    let controller = controller(&ctx);
    requeue::run(controller, reconcile, ctx, stop).await;
}
