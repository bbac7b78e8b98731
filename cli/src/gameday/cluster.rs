//! `chaosctl game-day --context CTX`: apply a GameDay to a cluster, follow it live, then print
//! the same table and write the same report as the lab does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use firedrill_core::api::{Experiment, ExperimentSpec, GameDay, PLAN_LABEL};
use futures_util::{StreamExt, TryStreamExt};
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use super::args::{GameDayArgs, Output};
use super::follow;
use super::plan::{experiments_dir, load_game_day};
use super::report;
use crate::cluster::{ClusterArgs, ClusterError, FIELD_MANAGER, Op, connect, runtime};

/// `game-day` on a cluster: the plan is applied as a GameDay and followed live.
pub fn run(args: GameDayArgs, cluster: ClusterArgs) -> Result<ExitCode, ClusterError> {
    if let Some(w) = args.weaken {
        return Err(ClusterError::Usage(format!(
            "--weaken {w} is for the lab; on a cluster deploy the weakness with the talk chart's ci/ values instead"
        )));
    }
    if args.talk.is_set() {
        return Err(ClusterError::Usage(
            "--talk-transport and --talk-channel-window are for the lab; on a cluster set the talk chart's talkLoad.transport and talkServer.channelWindow".to_owned(),
        ));
    }
    if args.keep_lab || args.bin_dir.is_some() {
        return Err(ClusterError::Usage(
            "--keep-lab and --bin-dir are for the lab, not a cluster".to_owned(),
        ));
    }
    let file = args.plan_file().to_path_buf();
    let dir = experiments_dir(&file, args.experiments.as_deref());
    let (mut game_day, experiments) =
        load_game_day(&file, &dir).map_err(|e| ClusterError::Plan {
            path: file.display().to_string(),
            detail: e.to_string(),
        })?;
    if !args.only.is_empty() {
        let unknown: Vec<&String> = args
            .only
            .iter()
            .filter(|o| !game_day.spec.experiments.iter().any(|s| &s.name == *o))
            .collect();
        if !unknown.is_empty() {
            return Err(ClusterError::Usage(format!(
                "--only: no step named {unknown:?} in {}",
                file.display()
            )));
        }
        game_day
            .spec
            .experiments
            .retain(|s| args.only.contains(&s.name));
    }
    let opts = ClusterRun {
        cluster,
        namespace: args.namespace,
        name: args.name,
        labels: args.label,
        timeout: Duration::from_secs(args.timeout),
        report_dir: args.report_dir,
        json: args.output == Output::Json,
    };
    apply_and_follow(game_day, &experiments, &opts)
}

/// Referenced experiments found in the plan's directory are inlined, so applying the plan
/// never creates stand-alone Experiments (which the operator would run on their own).
/// Returns the names of the references left for the cluster to resolve.
pub fn inline_refs(g: &mut GameDay, local: &BTreeMap<String, ExperimentSpec>) -> Vec<String> {
    let mut unresolved = Vec::new();
    for step in &mut g.spec.experiments {
        if let Some(r) = &step.experiment_ref {
            match local.get(&r.name) {
                Some(spec) => {
                    step.spec = Some(spec.clone());
                    step.experiment_ref = None;
                }
                None => unresolved.push(r.name.clone()),
            }
        }
    }
    unresolved
}

/// The name a run gets: the plan's name and the time, so every run is its own record.
pub fn run_name(plan: &str, at: DateTime<Utc>) -> String {
    let suffix = at.format("%Y%m%d-%H%M%S").to_string();
    let keep = 63usize.saturating_sub(suffix.len() + 1);
    let base: String = plan.chars().take(keep).collect();
    format!("{}-{suffix}", base.trim_end_matches('-'))
}

/// What `game-day` on a cluster needs besides the lab's arguments.
#[derive(Debug, Clone)]
pub struct ClusterRun {
    pub cluster: ClusterArgs,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub labels: Vec<(String, String)>,
    pub timeout: Duration,
    pub report_dir: Option<PathBuf>,
    pub json: bool,
}

enum Event {
    GameDay(Box<GameDay>),
    Experiment(Box<Experiment>),
}

/// Applies the game day (server-side apply) and follows it to its end.
fn apply_and_follow(
    mut game_day: GameDay,
    local: &BTreeMap<String, ExperimentSpec>,
    opts: &ClusterRun,
) -> Result<ExitCode, ClusterError> {
    let plan_name = game_day.name_any();
    let unresolved = inline_refs(&mut game_day, local);
    for name in &unresolved {
        eprintln!(
            "note: step refers to Experiment {name}, not in the plan's directory: the cluster's copy is used"
        );
    }
    runtime()?.block_on(async {
        let (client, server) = connect(&opts.cluster).await?;
        let namespace = opts
            .namespace
            .clone()
            .or_else(|| game_day.namespace())
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let name = opts
            .name
            .clone()
            .unwrap_or_else(|| run_name(&plan_name, Utc::now()));
        let mut object = GameDay::new(&name, game_day.spec.clone());
        object.metadata.namespace = Some(namespace.clone());
        let mut labels: BTreeMap<String, String> = game_day.labels().clone();
        labels.insert(PLAN_LABEL.into(), plan_name.clone());
        labels.extend(opts.labels.iter().cloned());
        object.metadata.labels = Some(labels);
        object.metadata.annotations = game_day.metadata.annotations.clone();
        let api: Api<GameDay> = Api::namespaced(client.clone(), &namespace);
        let applied = api
            .patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&object))
            .await
            .map_err(|e| ClusterError::from_kube(e, &Op::new("apply", "gamedays").ns(Some(&namespace)).name(&name)))?;
        eprintln!(
            "game day {namespace}/{name} applied to {server}: {} experiments; following it (Ctrl-C stops following, not the game day)",
            applied.spec.experiments.len()
        );
        follow_to_end(&client, &namespace, &name, opts).await
    })
}

async fn follow_to_end(
    client: &Client,
    namespace: &str,
    name: &str,
    opts: &ClusterRun,
) -> Result<ExitCode, ClusterError> {
    let game_days: Api<GameDay> = Api::namespaced(client.clone(), namespace);
    let experiments: Api<Experiment> = Api::namespaced(client.clone(), namespace);
    let gd_stream = watcher(
        game_days.clone(),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .default_backoff()
    .applied_objects()
    .map_ok(|g| Event::GameDay(Box::new(g)));
    let exp_stream = watcher(experiments.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .map_ok(|e| Event::Experiment(Box::new(e)));
    let mut events = futures_util::stream::select(gd_stream.boxed(), exp_stream.boxed());
    let mut follower = follow::Follower::default();
    let mut pending: Vec<Experiment> = Vec::new();
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let mut warned = false;
    let finished_game_day = loop {
        let next = tokio::select! {
            n = events.next() => n,
            _ = tokio::time::sleep_until(deadline) => {
                eprintln!(
                    "game day {namespace}/{name}: not finished after {}s; it goes on in the cluster \
                     (chaosctl describe gameday {name} -n {namespace}; chaosctl abort {name} -n {namespace})",
                    opts.timeout.as_secs()
                );
                return Ok(ExitCode::from(report::NO_VERDICT));
            }
            _ = tokio::signal::ctrl_c() => {
                eprintln!(
                    "\nstopped following; game day {namespace}/{name} goes on in the cluster \
                     (chaosctl abort {name} -n {namespace} stops it)"
                );
                return Ok(ExitCode::from(report::NO_VERDICT));
            }
        };
        match next {
            None => {
                return Err(ClusterError::Unreachable {
                    detail: "the watch ended".to_owned(),
                });
            }
            Some(Err(e)) => {
                if !warned {
                    eprintln!("warning: watch interrupted ({e}); retrying");
                    warned = true;
                }
            }
            Some(Ok(Event::GameDay(g))) => {
                warned = false;
                for line in follower.on_game_day(&g) {
                    eprintln!("{line}");
                }
                for e in std::mem::take(&mut pending) {
                    for line in follower.on_experiment(&e) {
                        eprintln!("{line}");
                    }
                }
                if follow::finished(&g) {
                    break *g;
                }
            }
            Some(Ok(Event::Experiment(e))) => {
                warned = false;
                let lines = follower.on_experiment(&e);
                if lines.is_empty() {
                    // Maybe the game day's status naming it has not arrived yet.
                    pending.retain(|p| p.name_any() != e.name_any());
                    pending.push(*e);
                }
                for line in lines {
                    eprintln!("{line}");
                }
            }
        }
    };
    let all = experiments
        .list(&Default::default())
        .await
        .map_err(|e| {
            ClusterError::from_kube(e, &Op::new("list", "experiments").ns(Some(namespace)))
        })?
        .items;
    let report = follow::report(&finished_game_day, &all, Utc::now());
    let dir = opts
        .report_dir
        .clone()
        .unwrap_or_else(|| report::default_dir(name, report.started_at));
    report::finish(&report, &dir, opts.json).map_err(|e| ClusterError::Io {
        path: e.path.display().to_string(),
        source: e.source,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).single().unwrap()
    }

    fn game_day() -> GameDay {
        crate::fixtures::game_day("q")
    }

    #[test]
    fn local_references_are_inlined_and_names_are_unique_dns_labels() {
        let mut g = game_day();
        let spec = crate::fixtures::experiment("zone-blackout").spec;
        let local = BTreeMap::from([("zone-blackout".to_owned(), spec)]);
        assert_eq!(inline_refs(&mut g, &local), ["disk-loss"]);
        assert!(
            g.spec.experiments[0].spec.is_some() && g.spec.experiments[0].experiment_ref.is_none()
        );
        assert!(g.spec.experiments[1].experiment_ref.is_some());
        let name = run_name(&"x".repeat(70), at(0));
        assert_eq!(name.len(), 63);
        assert!(name.ends_with("-20231114-221320"), "{name}");
        assert_eq!(
            run_name("quarterly-dr", at(0)),
            "quarterly-dr-20231114-221320"
        );
    }
}
