//! The GameDay controller: runs a game day's experiments one after another by creating
//! child Experiments, and aggregates their verdicts and figures into the GameDay's status.
//!
//! The status is the source of truth: `status.results` has one entry per step started (or
//! not run), in order, and an entry without a verdict is the step running now. A
//! reconciliation [`advance`]s that status with what the children's status says (pure), then
//! carries out the one thing it asks for (start a step, or wait). Child names are
//! deterministic ([`child_name`]), so a step created just before a crash is adopted, not
//! created twice, and a finished step is never run again.
//!
//! # Stopping
//!
//! A game day stops when it carries `firedrill.dev/abort` or firedrill is paused
//! cluster-wide ([`crate::pause`]): its running step's Experiment gets the abort annotation
//! (so its fault is reverted through the engine), and once that step has finished every
//! step still to come is recorded as not run and the verdict is `Aborted` ([`halt`]).
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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use firedrill_core::api::{
    ABORT_ANNOTATION, API_VERSION, Experiment, ExperimentSpec, ExperimentStatus, FailurePolicy,
    GameDay, GameDayPhase, GameDaySpec, GameDayStatus, Phase, Stage, StepResult, Verdict,
};
use firedrill_core::manifest::check_experiment;
use futures_util::StreamExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalized, finalizer};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::Mutex;

use crate::plan::{self, Plan};
use crate::reconcile::Context;
use crate::status::Note;
use crate::{Error, FIELD_MANAGER, MANAGED_BY_LABEL, cluster};

/// The operator's finalizer on GameDays: a deleted game day aborts its running experiment.
pub const GAMEDAY_FINALIZER: &str = "firedrill.dev/abort-steps";
/// Labels a game day's Experiments with the game day's UID.
pub const GAMEDAY_UID_LABEL: &str = "firedrill.dev/gameday-uid";
/// Labels a game day's Experiments with the game day's name, when it fits a label value.
pub const GAMEDAY_LABEL: &str = "firedrill.dev/gameday";
/// How often a queued step (overlapping targets) is tried again.
const QUEUE_RETRY: Duration = Duration::from_secs(5);
/// The longest a Kubernetes object name may be.
const MAX_NAME: usize = 253;

/// What the GameDay controller needs beside the Experiment controller's context.
#[derive(Debug)]
pub struct GameDayContext {
    pub base: Arc<Context>,
    /// Held while checking for overlapping targets and creating a step's Experiment.
    start: Mutex<()>,
}

impl GameDayContext {
    pub fn new(base: Arc<Context>) -> Self {
        Self {
            base,
            start: Mutex::new(()),
        }
    }
}

// ----- pure -----

/// What a game day does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Start the step at this index (create its Experiment).
    Start(usize),
    /// Pause until then before the next step.
    Until(DateTime<Utc>),
    /// Wait for the running step's Experiment.
    Running,
    /// Finished.
    Done,
}

/// The Experiment of a game day's step: `<game day>-<step>`, the game day's part cut so the
/// whole is a valid name (step names are unique within a game day, so these are too).
pub fn child_name(game_day: &str, step: &str) -> String {
    let room = MAX_NAME.saturating_sub(step.len() + 1);
    let mut end = game_day.len().min(room);
    while !game_day.is_char_boundary(end) {
        end -= 1;
    }
    let prefix = game_day[..end].trim_end_matches(['-', '.']);
    format!("{prefix}-{step}")
}

/// A label value, when the text is one (at most 63 characters, alphanumeric at both ends).
pub fn label_value(text: &str) -> Option<&str> {
    let ok = text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && text
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    ok.then_some(text)
}

/// Fills a step's verdict and figures from its finished Experiment's status.
fn finish(result: &mut StepResult, experiment: &ExperimentStatus, now: DateTime<Utc>) {
    result.verdict = Some(experiment.verdict.unwrap_or(Verdict::Aborted));
    result.reason.clone_from(&experiment.reason);
    if result.fault.is_none() {
        result.fault.clone_from(&experiment.fault);
    }
    result.time_to_impact_seconds = experiment.time_to_impact_seconds;
    result.time_to_recover_seconds = experiment.time_to_recover_seconds;
    result.slis.clone_from(&experiment.slis);
    result.messages_lost = experiment.messages_lost;
    result.messages_duplicated = experiment.messages_duplicated;
    result.failed_probes = experiment
        .probes
        .iter()
        .filter(|p| p.tripped && p.stage != Stage::Recovery)
        .map(|p| p.name.clone())
        .collect();
    result.finished_at = Some(experiment.finished_at.unwrap_or(now));
}

/// Records a step as not run, with why.
pub fn not_run(
    status: &mut GameDayStatus,
    step: &str,
    fault: Option<&str>,
    reason: &str,
    now: DateTime<Utc>,
) {
    status.results.push(StepResult {
        name: step.to_owned(),
        fault: fault.map(str::to_owned),
        verdict: Some(Verdict::Skipped),
        reason: Some(reason.to_owned()),
        finished_at: Some(now),
        ..Default::default()
    });
}

/// Records a step as started, its Experiment created.
pub fn started(
    status: &mut GameDayStatus,
    step: &str,
    experiment: &str,
    fault: &str,
    now: DateTime<Utc>,
) {
    status.results.push(StepResult {
        name: step.to_owned(),
        experiment: Some(experiment.to_owned()),
        fault: Some(fault.to_owned()),
        started_at: Some(now),
        ..Default::default()
    });
    status.message = None;
}

/// `Passed` only when every step passed (a skipped step proves nothing), as in the lab.
pub fn overall(results: &[StepResult]) -> Verdict {
    if !results.is_empty() && results.iter().all(|r| r.verdict == Some(Verdict::Passed)) {
        Verdict::Passed
    } else {
        Verdict::Failed
    }
}

fn progress(spec: &GameDaySpec, status: &GameDayStatus) -> String {
    let done = status
        .results
        .iter()
        .filter(|r| r.verdict.is_some())
        .count();
    format!("{done}/{}", spec.experiments.len())
}

/// Steps the game day: absorbs the children's verdicts (by Experiment name; a name missing
/// from `children` is an Experiment that no longer exists), applies the failure policy and
/// the pause, and says what to do next.
pub fn advance(
    spec: &GameDaySpec,
    status: &mut GameDayStatus,
    children: &BTreeMap<String, ExperimentStatus>,
    now: DateTime<Utc>,
) -> Next {
    if status.phase == GameDayPhase::Completed {
        return Next::Done;
    }
    status.phase = GameDayPhase::Running;
    status.started_at.get_or_insert(now);
    for result in status.results.iter_mut().filter(|r| r.verdict.is_none()) {
        match result.experiment.as_ref().and_then(|n| children.get(n)) {
            Some(child) if child.phase == Phase::Completed => finish(result, child, now),
            Some(_) => {}
            None => {
                result.verdict = Some(Verdict::Aborted);
                result.reason = Some("its Experiment was deleted before it finished".to_owned());
                result.finished_at = Some(now);
            }
        }
    }
    let total = spec.experiments.len();
    if status.results.iter().any(|r| r.verdict.is_none()) {
        status.progress = Some(progress(spec, status));
        status.message = None;
        return Next::Running;
    }
    if spec.failure_policy == FailurePolicy::Stop
        && let Some(bad) = status
            .results
            .iter()
            .find(|r| r.verdict != Some(Verdict::Passed))
    {
        let reason = format!(
            "not run: {} did not pass and the failure policy is Stop",
            bad.name
        );
        let rest: Vec<_> = spec.experiments.iter().skip(status.results.len()).collect();
        for step in rest {
            let fault = step.spec.as_ref().map(|s| s.fault.name());
            not_run(status, &step.name, fault, &reason, now);
        }
    }
    status.progress = Some(progress(spec, status));
    if status.results.len() >= total {
        status.phase = GameDayPhase::Completed;
        status.verdict = Some(overall(&status.results));
        status.finished_at = Some(now);
        status.message = None;
        return Next::Done;
    }
    let index = status.results.len();
    if let Some(previous) = status.results.last().and_then(|r| r.finished_at) {
        let until = previous + spec.pause_between.to_chrono();
        if until > now {
            status.message = Some(format!(
                "pausing {} before {}",
                spec.pause_between, spec.experiments[index].name
            ));
            return Next::Until(until);
        }
    }
    Next::Start(index)
}

/// Ends a game day that must stop (its abort annotation, or the cluster-wide pause) once no
/// step runs: every step still to come is recorded as not run, with why, and the verdict
/// is `Aborted`.
pub fn halt(spec: &GameDaySpec, status: &mut GameDayStatus, why: &str, now: DateTime<Utc>) {
    let reason = format!("not run: {why}");
    let rest: Vec<_> = spec.experiments.iter().skip(status.results.len()).collect();
    for step in rest {
        let fault = step.spec.as_ref().map(|s| s.fault.name());
        not_run(status, &step.name, fault, &reason, now);
    }
    status.progress = Some(progress(spec, status));
    status.phase = GameDayPhase::Completed;
    status.verdict = Some(Verdict::Aborted);
    status.finished_at = Some(now);
    status.message = Some(format!("stopped: {why}"));
}

/// Why a game day must stop now, if it must: its own abort annotation first, then the pause.
pub fn halt_reason(game_day: &GameDay, pause: &crate::pause::Pause) -> Option<String> {
    game_day
        .annotations()
        .get(ABORT_ANNOTATION)
        .map(|why| format!("{ABORT_ANNOTATION}: {why}"))
        .or_else(|| pause.halts())
}

/// What an experiment may touch: its targets and the nodes its Injections act on.
pub fn footprint(plan: &Plan) -> BTreeSet<String> {
    plan.targets
        .iter()
        .cloned()
        .chain(plan.work.iter().map(|w| format!("node/{}", w.node)))
        .collect()
}

/// What two plans both touch.
pub fn overlap(a: &Plan, b: &Plan) -> Vec<String> {
    let theirs = footprint(b);
    footprint(a)
        .into_iter()
        .filter(|t| theirs.contains(t))
        .collect()
}

/// The status patch (server-side apply needs apiVersion and kind).
pub fn status_patch(status: &GameDayStatus) -> Result<serde_json::Value, serde_json::Error> {
    Ok(json!({
        "apiVersion": API_VERSION,
        "kind": "GameDay",
        "status": serde_json::to_value(status)?,
    }))
}

/// The Events a change of status deserves: each step that started or finished, and the end.
pub fn notes(before: &GameDayStatus, after: &GameDayStatus) -> Vec<Note> {
    let mut notes = Vec::new();
    for (i, result) in after.results.iter().enumerate() {
        let old = before.results.get(i);
        if old.is_none()
            && let Some(experiment) = &result.experiment
        {
            notes.push(Note::new(
                EventType::Normal,
                "StepStarted",
                &format!("step {}: created Experiment {experiment}", result.name),
                "Reconcile",
            ));
        }
        if let Some(verdict) = result.verdict
            && old.and_then(|o| o.verdict).is_none()
        {
            let type_ = match verdict {
                Verdict::Passed => EventType::Normal,
                _ if result.experiment.is_none() => EventType::Normal,
                _ => EventType::Warning,
            };
            let why = result.reason.as_deref().unwrap_or("");
            notes.push(Note::new(
                type_,
                &format!("Step{verdict:?}"),
                &format!("step {}: {verdict:?} {why}", result.name),
                "Reconcile",
            ));
        }
    }
    if before.verdict.is_none()
        && let Some(verdict) = after.verdict
    {
        let type_ = if verdict == Verdict::Passed {
            EventType::Normal
        } else {
            EventType::Warning
        };
        let progress = after.progress.as_deref().unwrap_or("");
        notes.push(Note::new(
            type_,
            &format!("{verdict:?}"),
            &format!("game day finished: {verdict:?} ({progress} steps)"),
            "Reconcile",
        ));
    }
    notes
}

// ----- the shell -----

fn namespace(game_day: &GameDay) -> Result<String, Error> {
    game_day.namespace().ok_or(Error::MissingField("namespace"))
}

/// The game day's Experiments, by name.
async fn children(ctx: &Context, game_day: &GameDay) -> Result<Vec<Experiment>, Error> {
    let uid = game_day.uid().ok_or(Error::MissingField("uid"))?;
    let api: Api<Experiment> = Api::namespaced(ctx.client.clone(), &namespace(game_day)?);
    let params = ListParams::default().labels(&format!("{GAMEDAY_UID_LABEL}={uid}"));
    Ok(api.list(&params).await?.items)
}

/// The spec a step runs: inline, or copied from the referenced Experiment; with the game
/// day's shared probes. `Err` says why it cannot run.
async fn resolve(
    ctx: &Context,
    game_day: &GameDay,
    index: usize,
) -> Result<Result<ExperimentSpec, String>, Error> {
    let step = &game_day.spec.experiments[index];
    let spec = match (&step.spec, &step.experiment_ref) {
        (Some(spec), _) => spec.clone(),
        (None, Some(reference)) => {
            let api: Api<Experiment> = Api::namespaced(ctx.client.clone(), &namespace(game_day)?);
            match api.get_opt(&reference.name).await? {
                Some(found) => found.spec,
                None => {
                    return Ok(Err(format!(
                        "not run: experimentRef {} does not exist",
                        reference.name
                    )));
                }
            }
        }
        (None, None) => return Ok(Err("not run: the step has no experiment".to_owned())),
    };
    let spec = game_day.spec.with_shared_hypothesis(spec);
    if let Some((path, message)) = check_experiment(&spec).first() {
        return Ok(Err(format!("not run: spec.{path}: {message}")));
    }
    Ok(Ok(spec))
}

/// An unfinished Experiment of another game day whose footprint shares something with
/// `mine`, described.
async fn blocker(ctx: &Context, game_day: &GameDay, mine: &Plan) -> Result<Option<String>, Error> {
    let uid = game_day.uid().ok_or(Error::MissingField("uid"))?;
    let api: Api<Experiment> = match &ctx.watch_namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let params =
        ListParams::default().labels(&format!("{GAMEDAY_UID_LABEL},{GAMEDAY_UID_LABEL}!={uid}"));
    for other in api.list(&params).await?.items {
        let done = other
            .status
            .as_ref()
            .is_some_and(|s| s.phase == Phase::Completed);
        if done || other.spec.dry_run {
            continue;
        }
        let source = other.namespace().unwrap_or_default();
        let candidates = cluster::candidates(&ctx.client, &source, &other.spec).await?;
        let Ok(theirs) = plan::plan(&other.spec, &candidates, &ctx.policy) else {
            continue;
        };
        let shared = overlap(mine, &theirs);
        if !shared.is_empty() {
            let owner = other
                .labels()
                .get(GAMEDAY_LABEL)
                .cloned()
                .unwrap_or_default();
            return Ok(Some(format!(
                "queued: Experiment {}/{} of game day {owner} is running on {}",
                other.namespace().unwrap_or_default(),
                other.name_any(),
                shared.join(", ")
            )));
        }
    }
    Ok(None)
}

/// The Experiment object of a step.
pub fn child(game_day: &GameDay, name: &str, spec: ExperimentSpec) -> Result<Experiment, Error> {
    let uid = game_day.uid().ok_or(Error::MissingField("uid"))?;
    let mut labels = game_day.labels().clone();
    labels.insert(GAMEDAY_UID_LABEL.to_owned(), uid);
    if let Some(value) = label_value(&game_day.name_any()) {
        labels.insert(GAMEDAY_LABEL.to_owned(), value.to_owned());
    }
    labels.insert(MANAGED_BY_LABEL.to_owned(), FIELD_MANAGER.to_owned());
    let mut experiment = Experiment::new(name, spec);
    experiment.metadata.namespace = game_day.namespace();
    experiment.metadata.labels = Some(labels);
    experiment.metadata.owner_references = Some(vec![
        game_day
            .controller_owner_ref(&())
            .ok_or(Error::MissingField("uid"))?,
    ]);
    Ok(experiment)
}

/// Starts step `index`: resolves, plans, waits for overlapping targets to clear, creates the
/// Experiment (adopting one of ours by that name). Returns when to look again.
async fn start(
    ctx: &GameDayContext,
    game_day: &GameDay,
    status: &mut GameDayStatus,
    index: usize,
) -> Result<Option<Duration>, Error> {
    let base = &ctx.base;
    let step = &game_day.spec.experiments[index];
    let now = Utc::now();
    let spec = match resolve(base, game_day, index).await? {
        Ok(spec) => spec,
        Err(reason) => {
            let fault = step.spec.as_ref().map(|s| s.fault.name());
            not_run(status, &step.name, fault, &reason, now);
            return Ok(Some(Duration::ZERO));
        }
    };
    let source = game_day
        .namespace()
        .ok_or(Error::MissingField("namespace"))?;
    let candidates = cluster::candidates(&base.client, &source, &spec).await?;
    let planned = match plan::plan(&spec, &candidates, &base.policy) {
        Ok(planned) => planned,
        Err(e) => {
            let reason = format!("not run: {}: {e}", e.field());
            not_run(status, &step.name, Some(spec.fault.name()), &reason, now);
            return Ok(Some(Duration::ZERO));
        }
    };
    let _held = ctx.start.lock().await;
    if !spec.dry_run
        && let Some(why) = blocker(base, game_day, &planned).await?
    {
        status.message = Some(format!("step {}: {why}", step.name));
        return Ok(Some(QUEUE_RETRY));
    }
    let name = child_name(&game_day.name_any(), &step.name);
    let fault = spec.fault.name();
    let experiment = child(game_day, &name, spec)?;
    let api: Api<Experiment> = Api::namespaced(base.client.clone(), &namespace(game_day)?);
    match api.create(&PostParams::default(), &experiment).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = api.get(&name).await?;
            let ours = existing
                .owner_references()
                .iter()
                .any(|o| Some(&o.uid) == game_day.uid().as_ref());
            if !ours {
                status.message = Some(format!(
                    "step {}: an Experiment named {name} exists and is not this game day's",
                    step.name
                ));
                return Ok(Some(QUEUE_RETRY));
            }
        }
        Err(e) => return Err(e.into()),
    }
    started(status, &step.name, &name, fault, Utc::now());
    Ok(None)
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
    let patch = status_patch(after)?;
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
        let next = advance(&game_day.spec, &mut status, &children, Utc::now());
        if let Some(why) = &stopping {
            match next {
                // Its running step is aborted (the Experiment reverts its fault) and waited
                // for; nothing after it starts.
                Next::Running => {
                    abort_running(base, game_day, &status, why).await?;
                    wait = Some(Duration::from_secs(2));
                    break;
                }
                Next::Start(_) | Next::Until(_) => {
                    halt(&game_day.spec, &mut status, why, Utc::now());
                    wait = None;
                    break;
                }
                Next::Done => {}
            }
        }
        match next {
            Next::Done => {
                wait = None;
                break;
            }
            Next::Running => {
                wait = Some(Duration::from_secs(60));
                break;
            }
            Next::Until(at) => {
                wait = Some(
                    (at - Utc::now())
                        .to_std()
                        .unwrap_or(Duration::ZERO)
                        .max(Duration::from_millis(100)),
                );
                break;
            }
            Next::Start(index) => match start(ctx, game_day, &mut status, index).await? {
                Some(Duration::ZERO) => continue,
                Some(retry) => {
                    wait = Some(retry);
                    break;
                }
                None => {
                    wait = Some(Duration::from_secs(60));
                    break;
                }
            },
        }
    }
    write_status(base, game_day, &before, &status).await?;
    Ok(match wait {
        Some(after) => Action::requeue(after),
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
            return Ok(Action::requeue(Duration::from_secs(1)));
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
    let _timer = ctx.base.metrics.reconcile();
    let result = reconcile_inner(game_day.clone(), &ctx).await;
    if let Err(error) = &result {
        ctx.base.metrics.failure(error);
        if !matches!(error.category(), "conflict" | "not_found") {
            let note = Note::new(
                EventType::Warning,
                error.reason(),
                &error.to_string(),
                "Reconcile",
            );
            ctx.base.publish(game_day.as_ref(), &note).await;
        }
    }
    result
}

pub fn error_policy(game_day: Arc<GameDay>, error: &Error, _ctx: Arc<GameDayContext>) -> Action {
    tracing::warn!(
        game_day = %game_day.name_any(),
        namespace = ?game_day.namespace(),
        category = error.category(),
        error = %error,
        "reconcile failed"
    );
    Action::requeue(crate::reconcile::retry_after(error))
}

/// The controller: GameDays (of one namespace or all, matching the operator's selector),
/// and the Experiments they own (a step's verdict triggers its game day at once).
pub fn controller(ctx: &Context) -> Controller<GameDay> {
    let client = ctx.client.clone();
    let (game_days, experiments): (Api<GameDay>, Api<Experiment>) = match &ctx.watch_namespace {
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
    let owned = watcher::Config::default().labels(GAMEDAY_UID_LABEL);
    Controller::new(game_days, watched).owns(experiments, owned)
}

/// Runs the controller until `stop` completes.
pub async fn run(ctx: Arc<GameDayContext>, stop: impl Future<Output = ()> + Send + Sync + 'static) {
    controller(&ctx.base)
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(%object, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "game day controller"),
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
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
            match advance(spec, &mut status, &children, at(t)) {
                Next::Done => return (status, started_steps),
                Next::Running => {
                    let index = status.results.len() - 1;
                    let name = status.results[index].experiment.clone().expect("name");
                    children.insert(name, finished(verdicts[index], t));
                }
                Next::Until(until) => t = (until - at(0)).num_seconds() - 1,
                Next::Start(index) => {
                    let name = child_name("gd", &spec.experiments[index].name);
                    children.insert(name.clone(), running());
                    started(
                        &mut status,
                        &spec.experiments[index].name,
                        &name,
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
            advance(&spec, &mut status, &children, at(0)),
            Next::Start(0)
        );
        started(&mut status, "a", "gd-a", "podKill", at(0));
        children.insert("gd-a".to_owned(), running());
        assert_eq!(advance(&spec, &mut status, &children, at(5)), Next::Running);
        children.insert("gd-a".to_owned(), finished(Verdict::Passed, 10));
        assert_eq!(
            advance(&spec, &mut status, &children, at(12)),
            Next::Until(at(40))
        );
        assert!(
            status
                .message
                .as_deref()
                .is_some_and(|m| m.contains("before b"))
        );
        assert_eq!(
            advance(&spec, &mut status, &children, at(40)),
            Next::Start(1)
        );
    }

    #[test]
    fn a_halted_game_day_records_the_rest_as_not_run_and_is_aborted() {
        let spec = spec("Continue", "0s", &["a", "b", "c"]);
        let mut status = GameDayStatus::default();
        let mut children = BTreeMap::new();
        advance(&spec, &mut status, &children, at(0));
        started(&mut status, "a", "gd-a", "podKill", at(0));
        // Aborted because of the halt, the running step finishes; then nothing else starts.
        children.insert("gd-a".to_owned(), finished(Verdict::Aborted, 3));
        assert_eq!(
            advance(&spec, &mut status, &children, at(4)),
            Next::Start(1)
        );
        halt(
            &spec,
            &mut status,
            "firedrill is paused cluster-wide: stop-all",
            at(4),
        );
        assert_eq!(status.phase, GameDayPhase::Completed);
        assert_eq!(status.verdict, Some(Verdict::Aborted));
        assert_eq!(status.results.len(), 3);
        for r in &status.results[1..] {
            assert_eq!(r.verdict, Some(Verdict::Skipped));
            assert!(
                r.reason.as_deref().is_some_and(|w| w.contains("paused")),
                "{r:?}"
            );
        }
        assert_eq!(advance(&spec, &mut status, &children, at(9)), Next::Done);
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
        advance(&spec, &mut status, &BTreeMap::new(), at(0));
        started(&mut status, "a", "gd-a", "podKill", at(0));
        let mut children = BTreeMap::from([("gd-a".to_owned(), finished(Verdict::Passed, 5))]);
        assert_eq!(
            advance(&spec, &mut status, &children, at(6)),
            Next::Start(1)
        );
        started(&mut status, "b", "gd-b", "podKill", at(6));
        // The new leader sees the same status and children: it waits, creating nothing.
        let saved = status.clone();
        children.insert("gd-b".to_owned(), running());
        let mut resumed = saved.clone();
        assert_eq!(
            advance(&spec, &mut resumed, &children, at(100)),
            Next::Running
        );
        assert_eq!(resumed.results, saved.results);
        // Completed game days stay as they are.
        children.insert("gd-b".to_owned(), finished(Verdict::Passed, 101));
        assert_eq!(advance(&spec, &mut resumed, &children, at(102)), Next::Done);
        let done = resumed.clone();
        assert_eq!(
            advance(&spec, &mut resumed, &BTreeMap::new(), at(500)),
            Next::Done
        );
        assert_eq!(resumed, done);
    }

    #[test]
    fn a_deleted_step_experiment_aborts_that_step() {
        let spec = spec("Continue", "0s", &["a", "b"]);
        let mut status = GameDayStatus::default();
        advance(&spec, &mut status, &BTreeMap::new(), at(0));
        started(&mut status, "a", "gd-a", "podKill", at(0));
        assert_eq!(
            advance(&spec, &mut status, &BTreeMap::new(), at(3)),
            Next::Start(1)
        );
        assert_eq!(status.results[0].verdict, Some(Verdict::Aborted));
    }

    #[test]
    fn not_run_steps_count_as_not_passed() {
        let spec = spec("Stop", "0s", &["a", "b"]);
        let mut status = GameDayStatus::default();
        advance(&spec, &mut status, &BTreeMap::new(), at(0));
        not_run(
            &mut status,
            "a",
            None,
            "not run: experimentRef x does not exist",
            at(0),
        );
        assert_eq!(
            advance(&spec, &mut status, &BTreeMap::new(), at(1)),
            Next::Done
        );
        assert_eq!(status.verdict, Some(Verdict::Failed));
        assert_eq!(status.results.len(), 2);
        assert_eq!(overall(&[]), Verdict::Failed);
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
        let mine = Plan {
            targets: vec!["talk/nats-0".into()],
            ..Default::default()
        };
        let theirs = Plan {
            targets: vec!["talk/nats-0".into(), "talk/nats-1".into()],
            ..Default::default()
        };
        assert_eq!(overlap(&mine, &theirs), ["talk/nats-0"]);
        let elsewhere = Plan {
            targets: vec!["node/w2".into()],
            ..Default::default()
        };
        assert!(overlap(&mine, &elsewhere).is_empty());
        assert_eq!(overlap(&elsewhere, &elsewhere), ["node/w2"]);
    }

    #[test]
    fn events_tell_each_step_and_the_end() {
        let mut before = GameDayStatus::default();
        started(&mut before, "a", "gd-a", "podKill", at(0));
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
        let patch = status_patch(&after).expect("patch");
        assert_eq!(patch["kind"], "GameDay");
        assert!(patch["status"].get("report").is_none());
    }
}
