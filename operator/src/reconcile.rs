//! The Experiment controller: the thin shell that runs the engine against the API server.
//!
//! One reconciliation reads the experiment's Injections, steps the engine with what they
//! and the probes say, carries out the engine's actions (sample, inject, revert), steps again
//! with what those produced, and writes the status once, by server-side apply. Everything the
//! engine needs to continue is in that status, so any replica picks up where another left.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use firedrill_core::api::{
    Experiment, ExperimentSpec, ExperimentStatus, Injection, Phase, WorkloadCounters,
};
use firedrill_core::engine::{Action as EngineAction, INJECT_TIMEOUT, Observation, step};
use firedrill_core::manifest::check_experiment;
use futures_util::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalized, finalizer};
use kube::runtime::reflector::{self, ObjectRef};

use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};

use crate::plan;
pub use crate::requeue::retry_after;
use crate::requeue::{self, FAST_RETRY, PLAN_RETRY};
use crate::status::{self, INVALID, Note, PAUSED, TARGETS};
use crate::{
    ABORT_ANNOTATION, Error, ErrorCategory, FIELD_MANAGER, FINALIZER, MANAGED_BY_LABEL,
    PLAN_SIZE_ANNOTATION, cluster, echo, observe,
};

/// Steps per reconciliation: each absorbs what the previous one's actions produced.
const MAX_ROUNDS: usize = 4;
/// How soon a reconciliation that met a copy older than its last status write looks again,
/// should the watch not bring that write first.
const STALE_RECHECK: Duration = Duration::from_secs(1);
/// How often a Pending experiment looks whether the pause was lifted.
const PAUSE_RECHECK: Duration = Duration::from_secs(3);
/// How soon a running experiment whose engine names no next time is looked at again.
const IDLE_RECHECK: Duration = Duration::from_secs(60);
/// The backstop while the agents apply or revert: their reports wake the experiment
/// through the Injection watch (see [`while_agents_work`]).
const AGENT_WAIT: TimeDelta = TimeDelta::seconds(5);

fn api(ctx: &Context, experiment: &Experiment) -> Result<Api<Experiment>, Error> {
    let namespace = experiment
        .namespace()
        .ok_or(Error::MissingField("namespace"))?;
    Ok(Api::namespaced(ctx.client.clone(), &namespace))
}

fn uid(experiment: &Experiment) -> Result<String, Error> {
    experiment.uid().ok_or(Error::MissingField("uid"))
}

/// Writes the status if it changed from `before` (as the API server shows it) by more than
/// routine sampling, or routine sampling has waited long enough (see [`unwritten`]);
/// returns the Experiment's resourceVersion after, and the digest of the status written and
/// when, if one was (see [`crate::echo`]).
async fn write_status(
    ctx: &Context,
    experiment: &Experiment,
    before: &ExperimentStatus,
    after: &ExperimentStatus,
) -> Result<(Option<String>, Option<(u64, DateTime<Utc>)>), Error> {
    let uid = uid(experiment)?;
    if before == after {
        ctx.unwritten.forget(&uid);
        return Ok((experiment.resource_version(), None));
    }
    if ctx.unwritten.hold_back(&uid, before, after, Utc::now()) {
        ctx.metrics.status_writes_held_back.inc();
        return Ok((experiment.resource_version(), None));
    }
    let patch = status::patch(after, experiment.resource_version())?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let written = api(ctx, experiment)?
        .patch_status(&experiment.name_any(), &params, &Patch::Apply(&patch))
        .await?;
    for note in status::notes(before, after) {
        ctx.publish(experiment, &note).await;
    }
    if before.verdict.is_none() {
        // The API server sets every object's UID; the name is only a fallback key.
        let key = experiment.uid().unwrap_or_else(|| experiment.name_any());
        ctx.metrics.completed(&key, after);
    }
    let wrote = echo::digest(&written.status).map(|d| (d, Utc::now()));
    Ok((written.resource_version(), wrote))
}

async fn read_workload(ctx: &Context, spec: &ExperimentSpec) -> Option<Observation> {
    let url = spec.workload_url()?;
    let response = ctx.http.get(url).send().await.ok()?;
    let sli: serde_json::Value = response.json().await.ok()?;
    WorkloadCounters::from_document(&sli).map(Observation::Workload)
}

/// A verification read of the workload; none when it failed, and the engine asks again.
async fn verify_workload(ctx: &Context, spec: &ExperimentSpec) -> Option<Observation> {
    let url = spec.verification_url()?;
    match firedrill_probes::verification_read(&ctx.http, &url).await {
        Ok(counters) => Some(Observation::Verified(counters)),
        Err(e) => {
            tracing::warn!(error = %e, "verification read failed");
            None
        }
    }
}

/// Whether the Injections of a plan all exist: each records the plan's size, and once that
/// many exist the plan is fixed (Injections are immutable; a retry only completes a
/// partial creation).
fn plan_in_place(existing: &[Injection]) -> bool {
    let recorded = existing
        .iter()
        .filter_map(|i| {
            i.annotations()
                .get(PLAN_SIZE_ANNOTATION)?
                .parse::<usize>()
                .ok()
        })
        .max();
    recorded.is_some_and(|size| existing.len() >= size)
}

/// Carries out `Inject`: plans against the cluster as it is now and creates the Injections
/// that are missing, or deletes the pods of a one-shot fault. A plan that is refused now is
/// an injection failure (the engine reverts whatever may be in place). Once the plan's
/// Injections all exist nothing is listed or planned again: the engine asks on every step
/// until the agents report, and then only their reports are news.
async fn inject(
    ctx: &Context,
    experiment: &Experiment,
    expires_at: DateTime<Utc>,
) -> Result<Vec<Observation>, Error> {
    let spec = &experiment.spec;
    let namespace = &ctx.injection_namespace;
    let existing = if plan::uses_injections(spec) {
        let uid = uid(experiment)?;
        // Injections are immutable: once the watch shows the whole plan, it is in place.
        if ctx.seen.of(&uid).is_some_and(|seen| plan_in_place(&seen)) {
            return Ok(vec![]);
        }
        let existing = cluster::injections(&ctx.client, namespace, &uid).await?;
        if plan_in_place(&existing) {
            return Ok(vec![]);
        }
        existing
    } else {
        vec![]
    };
    let source = experiment
        .namespace()
        .ok_or(Error::MissingField("namespace"))?;
    let candidates = cluster::candidates(&ctx.client, &source, spec).await?;
    let planned = match plan::plan(spec, &candidates, &ctx.policy) {
        Ok(planned) => planned,
        Err(e) => {
            return Ok(vec![Observation::InjectionFailed {
                at: Utc::now(),
                reason: format!("{}: {e}", e.field()),
            }]);
        }
    };
    if !plan::uses_injections(spec) {
        cluster::delete_pods(&ctx.client, &planned.deletions).await?;
        return Ok(vec![Observation::FaultApplied { at: Utc::now() }]);
    }
    let lifetime = plan::Lifetime {
        expires_at,
        hold_for: spec.duration,
        heartbeat: ctx.heartbeat.clone(),
    };
    let wanted: Vec<Injection> = plan::injections(experiment, namespace, &planned, &lifetime)?
        .into_iter()
        .filter(|w| !existing.iter().any(|e| e.name_any() == w.name_any()))
        .collect();
    let created = cluster::create_injections(&ctx.client, namespace, &wanted).await?;
    ctx.metrics.injections_created.inc_by(created as u64);
    if created > 0 {
        ctx.publish(
            experiment,
            &Note::new(
                EventType::Normal,
                "Injecting",
                &format!("created {created} injection(s): {}", planned.summary()),
                "Inject",
            ),
        )
        .await;
    }
    Ok(vec![])
}

/// How a reconciliation reads an experiment's Injections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// As the controller's watch shows them ([`seen`]): enough to learn that nothing is new,
    /// never enough to conclude that something is gone.
    Watched,
    /// From the API server, with what this reconciliation itself just wrote.
    Fresh,
}

/// The Injections of the experiment with `uid`, and how they were read: from the watch when
/// asked and it has listed, from the API server otherwise.
async fn injections_of(
    ctx: &Context,
    uid: &str,
    read: Read,
) -> Result<(Vec<Injection>, Read), Error> {
    if read == Read::Watched
        && let Some(seen) = ctx.seen.of(uid)
    {
        return Ok((seen, Read::Watched));
    }
    let present = cluster::injections(&ctx.client, &ctx.injection_namespace, uid).await?;
    Ok((present, Read::Fresh))
}

/// What the experiment's Injections tell the engine now. From the watch only "nothing new"
/// is believed: news is read again from the API server before it counts, because a watch
/// that lags this operator's own writes shows an Injection it just created as absent, and
/// absent reads as reverted.
async fn injection_news(
    ctx: &Context,
    uid: &str,
    status: &ExperimentStatus,
    read: Read,
    now: DateTime<Utc>,
) -> Result<Vec<Observation>, Error> {
    let known = status.fault_check.as_ref().and_then(|c| c.last_held_at);
    // When the agents reverted this fault (not an earlier one), as the watch showed it: what
    // dates the revert when a fresh read finds the Injections gone. Looked up only then: it
    // walks the watch's store, and every sample of a held fault comes through here.
    let gone = || {
        ctx.seen
            .reverted_at(uid)
            .filter(|at| status.injected_at.is_none_or(|injected| *at >= injected))
    };
    let (present, read) = injections_of(ctx, uid, read).await?;
    let news = observe::news(status.fault_state, known, &present, gone, now);
    if news.is_empty() || read == Read::Fresh {
        return Ok(news);
    }
    let (present, _) = injections_of(ctx, uid, Read::Fresh).await?;
    Ok(observe::news(
        status.fault_state,
        known,
        &present,
        gone,
        now,
    ))
}

/// Asks for every Injection of the experiment to be reverted (deleted), frees those whose
/// node is gone, and returns those still present. Read [`Read::Watched`], what it returns
/// is only a hint of whether the agents still work (the next read decides); read
/// [`Read::Fresh`], an empty answer means nothing is left.
async fn revert_all(
    ctx: &Context,
    experiment: &Experiment,
    read: Read,
) -> Result<Vec<Injection>, Error> {
    let namespace = ctx.injection_namespace.as_str();
    let uid = uid(experiment)?;
    let (present, read) = injections_of(ctx, &uid, read).await?;
    if present.is_empty() {
        return Ok(present);
    }
    let doomed = observe::to_delete(&present);
    cluster::delete_injections(&ctx.client, namespace, &doomed).await?;
    // Read fresh, look again: those no agent held are gone at once.
    let present = if read == Read::Fresh && !doomed.is_empty() {
        cluster::injections(&ctx.client, namespace, &uid).await?
    } else {
        present
    };
    if present
        .iter()
        .any(|i| i.metadata.deletion_timestamp.is_some())
    {
        let nodes = cluster::nodes(&ctx.client).await?;
        let orphans = observe::orphaned(&present, &nodes);
        if !orphans.is_empty() {
            cluster::release_orphans(&ctx.client, namespace, &orphans).await?;
            return Ok(injections_of(ctx, &uid, read).await?.0);
        }
    }
    Ok(present)
}

/// Runs the engine until its actions produce nothing new (or [`MAX_ROUNDS`]); returns when
/// it wants to be called again.
async fn drive(
    ctx: &Context,
    experiment: &Experiment,
    status: &mut ExperimentStatus,
    mut observations: Vec<Observation>,
) -> Result<Option<DateTime<Utc>>, Error> {
    let spec = &experiment.spec;
    let namespace = experiment
        .namespace()
        .ok_or(Error::MissingField("namespace"))?;
    let uid = uid(experiment)?;
    let uses_injections = plan::uses_injections(spec);
    let prober = ctx.prober(&namespace)?;
    let mut next = None;
    let mut reverted = false;
    // Whether the last round left the agents with work whose reports will wake us.
    let mut waiting = false;
    // How the Injections are to be read, while they may have changed since they were last
    // read here (`None` otherwise). Only this reconciliation's own inject or revert changes
    // them meanwhile (the agents' reports come with the next one), so a round after a probe
    // sample does not read them again. The watch shows what woke this reconciliation, not
    // yet what this reconciliation itself wrote.
    let mut to_read = Some(Read::Watched);
    for round in 0..=MAX_ROUNDS {
        let now = Utc::now();
        if uses_injections
            && status.fault_state.may_be_active()
            && let Some(read) = to_read.take()
        {
            observations.extend(injection_news(ctx, &uid, status, read, now).await?);
        }
        let transition = step(spec, status, now, &observations);
        observations.clear();
        *status = transition.status;
        next = None;
        waiting = false;
        let last = round == MAX_ROUNDS;
        let mut again = false;
        let mut read_counters = false;
        for action in transition.actions {
            match action {
                EngineAction::RequeueAt(at) => {
                    next = Some(next.map_or(at, |n: DateTime<Utc>| n.min(at)))
                }
                // The last round only absorbs; its other actions come at the next call.
                _ if last => next = Some(now),
                EngineAction::Sample { stage, probes } => {
                    observations.extend(prober.sample_stage(spec, stage, &probes).await);
                    // The loss counters, once a round in which probes were sampled.
                    if !read_counters && let Some(workload) = read_workload(ctx, spec).await {
                        observations.push(workload);
                    }
                    read_counters = true;
                }
                EngineAction::Inject { expires_at } => {
                    let news = inject(ctx, experiment, expires_at).await?;
                    to_read = Some(Read::Fresh);
                    // Nothing came of it at once: the Injections are the agents' to apply.
                    waiting |= uses_injections && news.is_empty();
                    observations.extend(news);
                }
                EngineAction::VerifyWorkload => {
                    observations.extend(verify_workload(ctx, spec).await);
                }
                EngineAction::Revert => {
                    if uses_injections {
                        waiting |= !revert_all(ctx, experiment, Read::Watched).await?.is_empty();
                        to_read = Some(Read::Fresh);
                        // Look once more: Injections no agent held are gone already.
                        again |= !reverted;
                        reverted = true;
                    } else {
                        observations.push(Observation::FaultReverted { at: Utc::now() });
                    }
                }
            }
        }
        if status.phase == Phase::Completed || (observations.is_empty() && !again) {
            break;
        }
    }
    if waiting {
        let deadline = (status.phase == Phase::Injecting)
            .then(|| status.phase_since.map(|since| since + INJECT_TIMEOUT))
            .flatten();
        next = while_agents_work(next, deadline, Utc::now());
    }
    Ok(next)
}

/// When to look again while the agents apply or revert what was asked. The engine asks
/// again every second until they confirm, but their reports (status written, Injection
/// deleted once reverted) wake the experiment through the Injection watch at once; a
/// second's re-list of every waiting experiment would only load the API server. So the
/// engine's time is pushed back to [`AGENT_WAIT`] from now, the backstop for a missed watch
/// event, but never past the engine's own deadline (the injection timeout).
fn while_agents_work(
    next: Option<DateTime<Utc>>,
    deadline: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let backstop = now + AGENT_WAIT;
    let backstop = deadline.map_or(backstop, |d| d.min(backstop));
    next.map(|n| n.max(backstop))
}

/// How long until the engine wants to be stepped again, or, when it named no time, a
/// minute; clamped as every requeue is.
fn requeue_wait(next: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Duration {
    requeue::clamped(next.map_or(IDLE_RECHECK, |at| requeue::until(at, now)))
}

/// Refuses the experiment with an `Invalid` condition naming the field, and a Warning Event
/// when that is news.
async fn refuse(
    ctx: &Context,
    experiment: &Experiment,
    before: &ExperimentStatus,
    mut status: ExperimentStatus,
    reason: &str,
    message: &str,
) -> Result<(), Error> {
    let news = !status::is_true(before, INVALID)
        || before
            .conditions
            .iter()
            .any(|c| c.type_ == INVALID && c.message != message);
    status::set(
        &mut status.conditions,
        INVALID,
        true,
        reason,
        message,
        Utc::now(),
    );
    write_status(ctx, experiment, before, &status).await?;
    if news {
        ctx.publish(
            experiment,
            &Note::new(EventType::Warning, reason, message, "Plan"),
        )
        .await;
    }
    Ok(())
}

/// A Pending experiment while firedrill is paused: it stays Pending, says why in its
/// `Paused` condition (and an Event, once), and looks again shortly.
async fn wait_for_resume(
    ctx: &Context,
    experiment: &Experiment,
    before: &ExperimentStatus,
    mut status: ExperimentStatus,
    why: &str,
) -> Result<Action, Error> {
    let news = !status::is_true(before, PAUSED);
    status::set(
        &mut status.conditions,
        PAUSED,
        true,
        "Paused",
        why,
        Utc::now(),
    );
    write_status(ctx, experiment, before, &status).await?;
    if news {
        ctx.publish(
            experiment,
            &Note::new(EventType::Warning, "Paused", why, "Start"),
        )
        .await;
    }
    Ok(requeue::after(PAUSE_RECHECK))
}

/// Reconciles a live (not deleted) experiment.
async fn apply(experiment: &Experiment, ctx: &Context) -> Result<Action, Error> {
    let before = experiment.status.clone().unwrap_or_default();
    // The engine continues from its routine samples not written yet.
    let mut status = ctx.unwritten.resume(&uid(experiment)?, &before);
    status.observed_generation = experiment.meta().generation;
    if status.phase == Phase::Completed {
        // Belt and braces: nothing of a completed experiment stays in place. The watch
        // suffices: an Injection of it that appears wakes it, and is in the view when it does.
        let left = revert_all(ctx, experiment, Read::Watched).await?;
        write_status(ctx, experiment, &before, &status).await?;
        return Ok(if left.is_empty() {
            Action::await_change()
        } else {
            requeue::after(FAST_RETRY)
        });
    }
    let pause = ctx.pause.read(&ctx.client).await;
    if status.phase == Phase::Pending {
        if let Some(why) = pause.blocks_start() {
            return wait_for_resume(ctx, experiment, &before, status, &why).await;
        }
        if status::is_true(&before, PAUSED) {
            status::set(
                &mut status.conditions,
                PAUSED,
                false,
                "Resumed",
                "",
                Utc::now(),
            );
        }
        if let Some((path, message)) = check_experiment(&experiment.spec).first() {
            let message = format!("spec.{path}: {message}");
            refuse(ctx, experiment, &before, status, "InvalidSpec", &message).await?;
            return Ok(Action::await_change());
        }
        // Plan before starting: a refused plan never starts, and a dry run shows its targets.
        let source = experiment
            .namespace()
            .ok_or(Error::MissingField("namespace"))?;
        let candidates = cluster::candidates(&ctx.client, &source, &experiment.spec).await?;
        match plan::plan(&experiment.spec, &candidates, &ctx.policy) {
            Err(e) => {
                let message = format!("{}: {e}", e.field());
                refuse(ctx, experiment, &before, status, e.reason(), &message).await?;
                return Ok(requeue::after(PLAN_RETRY));
            }
            Ok(planned) => {
                let now = Utc::now();
                let dry = experiment.spec.dry_run;
                let reason = if dry { "DryRun" } else { "Resolved" };
                let summary = if dry {
                    format!("dry run, nothing injected; would hit {}", planned.summary())
                } else {
                    planned.summary()
                };
                status::set(&mut status.conditions, INVALID, false, "Valid", "", now);
                status::set(&mut status.conditions, TARGETS, true, reason, &summary, now);
                ctx.publish(
                    experiment,
                    &Note::new(EventType::Normal, reason, &summary, "Plan"),
                )
                .await;
            }
        }
    }
    let mut observations = Vec::new();
    if let Some(reason) = experiment.annotations().get(ABORT_ANNOTATION) {
        observations.push(Observation::AbortRequested {
            reason: format!("{ABORT_ANNOTATION}: {reason}"),
        });
    } else if let Some(reason) = pause.halts() {
        observations.push(Observation::AbortRequested { reason });
    }
    let next = drive(ctx, experiment, &mut status, observations).await?;
    let (written, wrote) = write_status(ctx, experiment, &before, &status).await?;
    let key = key(experiment);
    if status.phase == Phase::Completed {
        ctx.echoes.forget(&key);
        let uid = uid(experiment)?;
        ctx.unwritten.forget(&uid);
        ctx.seen.forget(&uid);
        return Ok(Action::await_change());
    }
    let now = Utc::now();
    let wait = requeue_wait(next, now);
    ctx.echoes.done(&key, written, wrote, now + wait);
    Ok(requeue::after(wait))
}

/// An Experiment's key in the echo record: `namespace/name`, as its Injections name it.
fn key(experiment: &Experiment) -> String {
    format!(
        "{}/{}",
        experiment.namespace().unwrap_or_default(),
        experiment.name_any()
    )
}

/// Cleanup before the finalizer goes: every Injection reverted and gone. Idempotent; fails
/// (keeping the finalizer) while anything remains.
async fn cleanup(experiment: &Experiment, ctx: &Context) -> Result<Action, Error> {
    let remaining = revert_all(ctx, experiment, Read::Fresh).await?;
    if !remaining.is_empty() {
        return Err(Error::RevertPending {
            remaining: remaining.len(),
            what: observe::describe(&remaining),
        });
    }
    ctx.seen.forget(&uid(experiment)?);
    Ok(Action::await_change())
}

/// A deleted experiment is aborted through the engine (so its status says so while the
/// agents revert) and its Injections are deleted. Returns what is still in place.
async fn abort_on_delete(experiment: &Experiment, ctx: &Context) -> Result<Vec<Injection>, Error> {
    let before = experiment.status.clone().unwrap_or_default();
    let mut status = before.clone();
    if status.phase != Phase::Completed {
        let abort = Observation::AbortRequested {
            reason: "the Experiment was deleted".to_owned(),
        };
        drive(ctx, experiment, &mut status, vec![abort]).await?;
        write_status(ctx, experiment, &before, &status).await?;
    }
    revert_all(ctx, experiment, Read::Fresh).await
}

async fn reconcile_inner(experiment: Arc<Experiment>, ctx: &Context) -> Result<Action, Error> {
    let deleting = experiment.meta().deletion_timestamp.is_some();
    let key = key(&experiment);
    let now = Utc::now();
    if !deleting
        && let Some(due) = ctx
            .echoes
            .echo(&key, experiment.resource_version().as_deref(), now)
    {
        ctx.metrics.echoes_skipped.inc();
        return Ok(requeue::at(due, now));
    }
    if !deleting
        && ctx.echoes.stale(
            &key,
            experiment.resource_version().as_deref(),
            &experiment.status,
            now,
        )
    {
        // The watch brings the write, and that wakes it; the requeue is the backstop.
        ctx.metrics.stale_copies_skipped.inc();
        return Ok(requeue::after(STALE_RECHECK));
    }
    ctx.echoes.begin(&key);
    if deleting && experiment.finalizers().iter().any(|f| f == FINALIZER) {
        let remaining = abort_on_delete(&experiment, ctx).await?;
        if !remaining.is_empty() {
            tracing::info!(
                experiment = %experiment.name_any(),
                remaining = remaining.len(),
                "deleted; waiting for the agents to revert"
            );
            return Ok(requeue::after(FAST_RETRY));
        }
    }
    let api = api(ctx, &experiment)?;
    finalizer(&api, FINALIZER, experiment, |event| async move {
        match event {
            Finalized::Apply(experiment) => apply(&experiment, ctx).await,
            Finalized::Cleanup(experiment) => cleanup(&experiment, ctx).await,
        }
    })
    .await
    .map_err(Error::from)
}

/// Reconciles one Experiment: metrics, and a Warning Event for a failure.
pub async fn reconcile(experiment: Arc<Experiment>, ctx: Arc<Context>) -> Result<Action, Error> {
    // A plan refusal has its own condition and Event; conflicts just retry.
    let quiet = [
        ErrorCategory::Plan,
        ErrorCategory::Conflict,
        ErrorCategory::NotFound,
    ];
    let reconciliation = reconcile_inner(experiment.clone(), &ctx);
    requeue::reported(&ctx, experiment.as_ref(), &quiet, reconciliation).await
}

/// The Experiments this operator watches: of one namespace or all, matching its label
/// selector or not (the controller and the metrics' inventory watch the same).
pub fn experiment_watch(ctx: &Context) -> (Api<Experiment>, watcher::Config) {
    let experiments: Api<Experiment> = match ctx.watch_namespace.as_deref() {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let mut watched = watcher::Config::default();
    if let Some(selector) = ctx.experiment_selector.as_deref() {
        watched = watched.labels(selector);
    }
    (experiments, watched)
}

/// The Injections this operator wrote, in firedrill's namespace.
pub fn injection_watch(ctx: &Context) -> (Api<Injection>, watcher::Config) {
    let injections: Api<Injection> = Api::namespaced(ctx.client.clone(), &ctx.injection_namespace);
    let written = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={FIELD_MANAGER}"));
    (injections, written)
}

/// The controller: the Experiments of [`experiment_watch`], and the Injections written for
/// them (an agent's status report triggers its experiment at once). Injections live in
/// another namespace than their Experiment, so no owner reference ties them:
/// `spec.experiment` does.
pub fn controller(ctx: &Context) -> Controller<Experiment> {
    let (experiments, watched) = experiment_watch(ctx);
    let (injections, written) = injection_watch(ctx);
    let only = ctx.watch_namespace.clone();
    let echoes = ctx.echoes.clone();
    // One watch both wakes the experiments and fills the controller's view of their
    // Injections, in that order: a woken reconciliation sees what woke it.
    let trigger = watcher(injections, written)
        .default_backoff()
        .modify(seen::slim)
        .inspect({
            let record = ctx.seen.recorder();
            move |event| {
                if let Ok(event) = event {
                    record(event);
                }
            }
        })
        .reflect(ctx.seen.attach())
        .touched_objects();
    // The controller's store of Experiments without their managed fields, which no
    // reconciliation reads and which the status's server-side apply makes about as large as
    // the status itself.
    let experiments_store = reflector::store::Writer::default();
    let experiments_view = experiments_store.as_reader();
    let experiments = watcher(experiments, watched)
        .default_backoff()
        .modify(|e: &mut Experiment| e.managed_fields_mut().clear())
        .reflect(experiments_store)
        .applied_objects();
    Controller::for_stream(experiments, experiments_view)
        .watches_stream(trigger, move |i: Injection| {
            let (ns, name) = i.spec.experiment.split_once('/')?;
            if only.as_deref().is_some_and(|o| o != ns) {
                return None;
            }
            // An agent's report is news for the experiment, never an echo.
            echoes.touched(&i.spec.experiment);
            Some(ObjectRef::new(name).within(ns))
        })
        .with_config(requeue::config(ctx.concurrency))
}

/// Runs the controller until `stop` completes; reconciliations in flight finish first.
pub async fn run(ctx: Arc<Context>, stop: impl Future<Output = ()> + Send + Sync + 'static) {
    let controller = controller(&ctx);
    requeue::run(controller, reconcile, ctx, stop).await;
}

mod context;
mod seen;
#[cfg(test)]
mod tests;
mod unwritten;

pub use context::Context;
