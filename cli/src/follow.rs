//! `chaosctl game-day --context CTX`: apply a GameDay to a cluster, follow it live, then print
//! the same table and write the same report as the lab does.
//!
//! [`Follower`] turns what the watches deliver into progress lines and [`report`] turns the
//! finished objects into the report; both are pure. [`run`] does the I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use firedrill_core::api::{Experiment, GameDay, GameDayPhase, StepResult, Verdict};
use firedrill_core::report::{ExperimentReport, FailedProbe, GameDayReport};
use futures_util::{StreamExt, TryStreamExt};
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::cluster::{ClusterArgs, ClusterError, FIELD_MANAGER, Op, connect, runtime};

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
                crate::get::fault_of(e)
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
                Some((e, s)) if s.verdict.is_some() => ExperimentReport::from_status(
                    &step.name,
                    &crate::get::fault_of(e),
                    s,
                    Vec::new(),
                ),
                _ => from_result(&step.name, fault, result),
            }
        })
        .collect();
    GameDayReport {
        name: g.name_any(),
        platform: "cluster".to_owned(),
        weakness: None,
        started_at: status
            .started_at
            .or_else(|| crate::get::created(g))
            .unwrap_or(now),
        finished_at: status.finished_at.unwrap_or(now),
        verdict: GameDayReport::overall(&steps),
        experiments: steps,
    }
}

/// Referenced experiments found in the plan's directory are inlined, so applying the plan
/// never creates stand-alone Experiments (which the operator would run on their own).
/// Returns the names of the references left for the cluster to resolve.
pub fn inline_refs(
    g: &mut GameDay,
    local: &BTreeMap<String, firedrill_core::api::ExperimentSpec>,
) -> Vec<String> {
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

pub fn run(
    mut game_day: GameDay,
    local: &BTreeMap<String, firedrill_core::api::ExperimentSpec>,
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
        labels.insert("firedrill.dev/plan".into(), plan_name.clone());
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
        follow(&client, &namespace, &name, opts).await
    })
}

async fn follow(
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
    let mut follower = Follower::default();
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
                return Ok(ExitCode::from(2));
            }
            _ = tokio::signal::ctrl_c() => {
                eprintln!(
                    "\nstopped following; game day {namespace}/{name} goes on in the cluster \
                     (chaosctl abort {name} -n {namespace} stops it)"
                );
                return Ok(ExitCode::from(2));
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
                if finished(&g) {
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
    let report = report(&finished_game_day, &all, Utc::now());
    let dir = opts.report_dir.clone().unwrap_or_else(|| {
        PathBuf::from("firedrill-reports").join(format!(
            "{name}-{}",
            report.started_at.format("%Y%m%dT%H%M%SZ")
        ))
    });
    crate::gameday::write_reports(&dir, &report).map_err(|e| ClusterError::Io {
        path: dir.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    if opts.json {
        println!("{}", firedrill_core::report::json(&report));
    } else {
        print!("{}", crate::gameday::table(&report));
    }
    eprintln!("report: {}", dir.display());
    Ok(if report.verdict == Verdict::Passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Reads `KEY=VALUE`.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// The directory the plan's experiments are read from.
pub fn experiments_dir(file: &Path, given: Option<&Path>) -> PathBuf {
    match given {
        Some(d) => d.to_path_buf(),
        None => file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
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
        let yaml = "apiVersion: firedrill.dev/v1alpha1\nkind: GameDay\nmetadata: {name: q, namespace: talk, uid: gd-uid}\nspec:\n  experiments:\n    - {name: zone-blackout, experimentRef: {name: zone-blackout}}\n    - {name: disk-loss, experimentRef: {name: disk-loss}}\n";
        let docs = firedrill_core::yaml::parse_documents(yaml, Default::default()).unwrap();
        serde_json::from_value(docs[0].value.clone()).unwrap()
    }

    fn child(name: &str) -> Experiment {
        let mut e = crate::get::tests::experiment(name);
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
        let stranger = crate::get::tests::experiment("q-zone-blackout");
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
        let table = crate::gameday::table(&r);
        assert!(
            table.contains("zone-blackout") && table.contains("12.5s"),
            "{table}"
        );
    }

    #[test]
    fn local_references_are_inlined_and_names_are_unique_dns_labels() {
        let mut g = game_day();
        let spec = crate::get::tests::experiment("zone-blackout").spec;
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
        assert_eq!(parse_label("a=b"), Ok(("a".into(), "b".into())));
        assert!(parse_label("ab").is_err());
    }
}
