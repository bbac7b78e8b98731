//! The GameDay controller: runs a game day's experiments one after another by creating
//! child Experiments, and aggregates their verdicts and figures into the GameDay's status.
//!
//! The status is the source of truth: `status.results` has one entry per step started (or
//! not run), in order, and an entry without a verdict is the step running now. A
//! reconciliation [`advance`]s that status with what the children's status says (pure; the
//! sequencing is core's [`firedrill_core::sequencer`], which the lab runner follows too),
//! then carries out the one thing it asks for (start a step, abort the running one, or
//! wait). Child names are deterministic ([`child_name`]), so a step created just before a
//! crash is adopted, not created twice, and a finished step is never run again.
//!
//! # Stopping
//!
//! A game day stops when it carries `firedrill.dev/abort` or firedrill is paused
//! cluster-wide ([`crate::pause`]): its running step's Experiment gets the abort annotation
//! (so its fault is reverted through the engine), and once that step has finished every
//! step still to come is recorded as not run and the verdict is `Aborted`
//! ([`firedrill_core::sequencer::Next::Stopping`]).
//!
//! # Never two faults on the same targets
//!
//! A game day has at most one running child. Before starting a step, the controller plans it
//! against the cluster and compares its footprint (targeted pods and nodes, and the nodes its
//! Injections act on) with that of every unfinished Experiment of *another* game day; if they
//! share anything, the step is queued (`status.message` names the other experiment) and tried
//! again every few seconds. The check and the creation happen under one lock of the leader's
//! process, so two game days cannot both pass the check at once. Dry runs inject nothing and
//! neither block nor wait.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use firedrill_core::api::{ABORT_ANNOTATION, Experiment, ExperimentStatus, GameDay, GameDayStatus};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalized, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::reconcile::Context;
use crate::requeue;
use crate::{Error, ErrorCategory, FIELD_MANAGER};

mod context;
mod pure;
mod start;

pub use firedrill_core::sequencer::{Next, not_run, started};
pub use pure::{advance, child_name, halt_reason, label_value, notes, status_patch};
pub use start::child;

pub use context::GameDayContext;
use context::namespace;
pub use firedrill_core::api::{GAMEDAY_FINALIZER, GAMEDAY_LABEL, GAMEDAY_UID_LABEL};

/// How soon a game day whose step is running is looked at again; its step's Experiment
/// changing wakes it sooner (the controller owns them).
const RUNNING_RECHECK: Duration = Duration::from_secs(60);
/// How soon a stopping game day looks whether its aborted step has reverted.
const STOPPING_RECHECK: Duration = Duration::from_secs(2);

/// The game day's Experiments, by name.
async fn children(ctx: &Context, game_day: &GameDay) -> Result<Vec<Experiment>, Error> {
    let uid = game_day.uid().ok_or(Error::MissingField("uid"))?;
    let api: Api<Experiment> = Api::namespaced(ctx.client.clone(), &namespace(game_day)?);
    let params = ListParams::default().labels(&format!("{GAMEDAY_UID_LABEL}={uid}"));
    Ok(api.list(&params).await?.items)
}

async fn write_status(
    ctx: &Context,
    game_day: &GameDay,
    before: &GameDayStatus,
    after: &GameDayStatus,
) -> Result<(), Error> {
    if before == after {
        return Ok(());
    }
    let patch = status_patch(after, game_day.resource_version())?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Api::<GameDay>::namespaced(ctx.client.clone(), &namespace(game_day)?)
        .patch_status(&game_day.name_any(), &params, &Patch::Apply(&patch))
        .await?;
    for note in notes(before, after) {
        ctx.publish(game_day, &note).await;
    }
    Ok(())
}

async fn apply(game_day: &GameDay, ctx: &GameDayContext) -> Result<Action, Error> {
    let base = &ctx.base;
    let before = game_day.status.clone().unwrap_or_default();
    let mut status = before.clone();
    status.observed_generation = game_day.meta().generation;
    let stopping = halt_reason(game_day, &base.pause.read(&base.client).await);
    let mut wait = None;
    // Each round absorbs what the previous did; a step that cannot run is recorded at once.
    for _ in 0..=game_day.spec.experiments.len() {
        let children: BTreeMap<String, ExperimentStatus> = children(base, game_day)
            .await?
            .into_iter()
            .map(|e| (e.name_any(), e.status.unwrap_or_default()))
            .collect();
        let next = advance(
            &game_day.spec,
            &mut status,
            &children,
            Utc::now(),
            stopping.as_deref(),
        );
        match next {
            Next::Done => {
                wait = None;
                break;
            }
            Next::Running => {
                wait = Some(RUNNING_RECHECK);
                break;
            }
            // It must stop: its running step is aborted (the Experiment reverts its fault)
            // and waited for; nothing after it starts.
            Next::Stopping => {
                let why = stopping.as_deref().unwrap_or_default();
                abort_running(base, game_day, &status, why).await?;
                wait = Some(STOPPING_RECHECK);
                break;
            }
            Next::Until(at) => {
                wait = Some(requeue::until(at, Utc::now()));
                break;
            }
            Next::Start(index) => match start::start(ctx, game_day, &mut status, index).await? {
                Some(Duration::ZERO) => continue,
                Some(retry) => {
                    wait = Some(retry);
                    break;
                }
                None => {
                    wait = Some(RUNNING_RECHECK);
                    break;
                }
            },
        }
    }
    write_status(base, game_day, &before, &status).await?;
    Ok(match wait {
        Some(after) => requeue::after(after),
        None => Action::await_change(),
    })
}

/// Sets the abort annotation on the game day's running step's Experiment (once).
async fn abort_running(
    ctx: &Context,
    game_day: &GameDay,
    status: &GameDayStatus,
    why: &str,
) -> Result<(), Error> {
    let api: Api<Experiment> = Api::namespaced(ctx.client.clone(), &namespace(game_day)?);
    let running = status
        .results
        .iter()
        .filter(|r| r.verdict.is_none())
        .filter_map(|r| r.experiment.as_deref());
    for name in running {
        let Some(child) = api.get_opt(name).await? else {
            continue;
        };
        if child.annotations().contains_key(ABORT_ANNOTATION) {
            continue;
        }
        let patch = json!({"metadata": {"annotations": {ABORT_ANNOTATION: format!("game day stopped: {why}")}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        tracing::info!(game_day = %game_day.name_any(), experiment = name, why, "aborting the running step");
    }
    Ok(())
}

/// A deleted game day deletes its Experiments (their finalizer reverts any fault) and keeps
/// its own finalizer until they are gone. Returns how many remain.
async fn abort_children(game_day: &GameDay, ctx: &Context) -> Result<usize, Error> {
    let children = children(ctx, game_day).await?;
    let api: Api<Experiment> = Api::namespaced(ctx.client.clone(), &namespace(game_day)?);
    for child in children
        .iter()
        .filter(|c| c.meta().deletion_timestamp.is_none())
    {
        match api
            .delete(&child.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(children.len())
}

async fn reconcile_inner(game_day: Arc<GameDay>, ctx: &GameDayContext) -> Result<Action, Error> {
    let deleting = game_day.meta().deletion_timestamp.is_some();
    if deleting && game_day.finalizers().iter().any(|f| f == GAMEDAY_FINALIZER) {
        let remaining = abort_children(&game_day, &ctx.base).await?;
        if remaining > 0 {
            tracing::info!(
                game_day = %game_day.name_any(),
                remaining,
                "deleted; waiting for its experiments to revert"
            );
            return Ok(requeue::after(requeue::FAST_RETRY));
        }
    }
    let api: Api<GameDay> = Api::namespaced(ctx.base.client.clone(), &namespace(&game_day)?);
    finalizer(&api, GAMEDAY_FINALIZER, game_day, |event| async move {
        match event {
            Finalized::Apply(game_day) => apply(&game_day, ctx).await,
            Finalized::Cleanup(_) => Ok(Action::await_change()),
        }
    })
    .await
    .map_err(Error::from)
}

/// Reconciles one GameDay: metrics, and a Warning Event for a failure.
pub async fn reconcile(game_day: Arc<GameDay>, ctx: Arc<GameDayContext>) -> Result<Action, Error> {
    let quiet = [ErrorCategory::Conflict, ErrorCategory::NotFound];
    let reconciliation = reconcile_inner(game_day.clone(), &ctx);
    requeue::reported(&ctx.base, game_day.as_ref(), &quiet, reconciliation).await
}

/// The controller: GameDays (of one namespace or all, matching the operator's selector),
/// and the Experiments they own (a step's verdict triggers its game day at once).
pub fn controller(ctx: &Context) -> Controller<GameDay> {
    requeue::owning::<GameDay, Experiment>(ctx, GAMEDAY_UID_LABEL)
}

/// Runs the controller until `stop` completes.
pub async fn run(ctx: Arc<GameDayContext>, stop: impl Future<Output = ()> + Send + Sync + 'static) {
    let controller = controller(&ctx.base);
    requeue::run(controller, reconcile, ctx, stop).await;
}

#[cfg(test)]
mod tests;
