//! Starting a game day's step: resolving its experiment, planning it, waiting for another
//! game day's overlapping step, and creating its Experiment.

use std::time::Duration;

use chrono::Utc;
use firedrill_core::api::{Experiment, ExperimentSpec, GameDay, GameDayStatus, Phase};
use firedrill_core::sequencer::{self, not_run, started};
use kube::api::{ListParams, PostParams};
use kube::{Api, Resource, ResourceExt};

use super::context::{GameDayContext, QUEUE_RETRY, namespace};
use super::pure::{child_name, label_value};
use crate::plan::{self, Plan};
use crate::reconcile::Context;
use crate::{Error, FIELD_MANAGER, MANAGED_BY_LABEL, cluster};
use firedrill_core::api::{GAMEDAY_LABEL, GAMEDAY_UID_LABEL};

/// The spec a step runs ([`sequencer::resolve`], its `experimentRef` looked up in the game
/// day's namespace). `Err` says why it cannot run.
async fn resolve(
    ctx: &Context,
    game_day: &GameDay,
    index: usize,
) -> Result<Result<ExperimentSpec, String>, Error> {
    let step = &game_day.spec.experiments[index];
    let found = match sequencer::reference(step) {
        Some(name) => {
            let api: Api<Experiment> = Api::namespaced(ctx.client.clone(), &namespace(game_day)?);
            api.get_opt(name).await?.map(|e| e.spec)
        }
        None => None,
    };
    Ok(sequencer::resolve(&game_day.spec, step, |_| found).map_err(|e| format!("not run: {e}")))
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
        let shared = mine.overlap(&theirs);
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
pub(super) async fn start(
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
    started(status, &step.name, Some(&name), fault, Utc::now());
    Ok(None)
}
