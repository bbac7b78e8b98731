//! `chaosctl game-day`: the quarterly drill, run for real in the lab.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use clap::{Args, ValueEnum};
use firedrill_core::api::{ExperimentSpec, GameDay, Verdict};
use firedrill_core::manifest::{Manifest, load_bytes};
use firedrill_core::report::{self, ExperimentReport, GameDayReport};
use firedrill_lab::lifecycle;
use firedrill_lab::platform::LabPlatform;
use firedrill_lab::runner::{Progress, Runner, game_day_report};
use firedrill_lab::{LabError, RunDir, Weakness};

use crate::cluster::{ClusterArgs, ClusterError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Live progress on stderr, a summary table on stdout.
    Table,
    /// Live progress on stderr, the JSON report on stdout.
    Json,
}

#[derive(Debug, Args)]
pub struct GameDayArgs {
    /// The GameDay manifest (the plan).
    #[arg(
        value_name = "FILE",
        default_value = "experiments/gameday-quarterly-dr.yaml"
    )]
    file: PathBuf,
    /// The GameDay manifest, as a flag (same as FILE).
    #[arg(short = 'f', long = "file", value_name = "PLAN")]
    plan: Option<PathBuf>,
    /// Run on the cluster of the current kubeconfig context (implied by --context and
    /// --kubeconfig) instead of the lab.
    #[arg(long)]
    cluster: bool,
    /// Cluster only: the namespace to create the GameDay in (default: the plan's, else the
    /// context's).
    #[arg(short, long, value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// Cluster only: the GameDay object's name (default: the plan's name and the time).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Cluster only: a label for the GameDay object, KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = crate::follow::parse_label)]
    label: Vec<(String, String)>,
    /// Cluster only: stop following after this many seconds (the game day goes on).
    #[arg(long, value_name = "SECONDS", default_value_t = 4 * 3600)]
    timeout: u64,
    /// Where the experiments it refers to are (every *.yaml file is read); default: the
    /// game day's directory.
    #[arg(long, value_name = "DIR")]
    experiments: Option<PathBuf>,
    /// Deploy the lab with a weakness (stream-r1, single-zone, no-fsync, single-monitor) to
    /// see which experiment catches it.
    #[arg(long, value_name = "NAME")]
    weaken: Option<Weakness>,
    /// Run only this step of the game day (repeatable).
    #[arg(long, value_name = "STEP")]
    only: Vec<String>,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Where to write the report (Markdown, JSON, JUnit XML, one SVG per experiment);
    /// default: firedrill-reports/<game day>-<time>.
    #[arg(long, value_name = "DIR")]
    report_dir: Option<PathBuf>,
    /// Leave the lab up afterwards (it is taken down when this command brought it up).
    #[arg(long)]
    keep_lab: bool,
    /// Directory holding talk-server and talk-load (default: next to chaosctl).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
}

/// Errors of `game-day` besides the lab's.
fn invalid(path: &Path, problems: impl std::fmt::Display) -> LabError {
    LabError::Plan(format!("{}: {problems}", path.display()))
}

fn load(path: &Path) -> Result<Vec<Manifest>, LabError> {
    let bytes = fs::read(path).map_err(|e| LabError::io(path, e))?;
    load_bytes(&bytes).map_err(|problems| {
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        invalid(path, text.join("; "))
    })
}

/// The game day and every experiment in `dir`, by name.
fn load_game_day(
    file: &Path,
    dir: &Path,
) -> Result<(GameDay, BTreeMap<String, ExperimentSpec>), LabError> {
    let game_day = load(file)?
        .into_iter()
        .find_map(|m| match m {
            Manifest::GameDay(g) => Some(*g),
            _ => None,
        })
        .ok_or_else(|| invalid(file, "no GameDay in this file"))?;
    let mut experiments = BTreeMap::new();
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| LabError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    entries.sort();
    for path in entries {
        for m in load(&path)? {
            if let Manifest::Experiment(e) = m {
                let name = e.metadata.name.clone().unwrap_or_default();
                experiments.insert(name, e.spec);
            }
        }
    }
    Ok((game_day, experiments))
}

fn fmt_seconds(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |s| format!("{s:.1}s"))
}

fn fmt_count(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

fn show(event: Progress) {
    match event {
        Progress::ExperimentStarted {
            name,
            index,
            total,
            targets,
        } => eprintln!(
            "\n== [{index}/{total}] {name}: targets {}",
            targets.join(", ")
        ),
        Progress::Timeline {
            name,
            phase,
            message,
        } => eprintln!(
            "{} [{name}] {phase:?}: {message}",
            Utc::now().format("%H:%M:%S")
        ),
        Progress::Slis {
            name,
            phase,
            values,
        } => {
            let v = |k: &str| values.get(k).copied().flatten();
            eprintln!(
                "{} [{name}] {phase:?}: delivery {} p99 {} lost {} duplicated {}",
                Utc::now().format("%H:%M:%S"),
                v("deliverySuccessRatio").map_or("?".into(), |x| format!("{x:.3}")),
                v("p99LatencyMs").map_or("?".into(), |x| format!("{x:.0}ms")),
                v("lostMessages").map_or("?".into(), |x| format!("{x:.0}")),
                v("duplicatedMessages").map_or("?".into(), |x| format!("{x:.0}")),
            );
        }
        Progress::ExperimentFinished { report } => eprintln!(
            "== {}: {:?}{}",
            report.name,
            report.verdict,
            report
                .reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        Progress::Pause { seconds } => eprintln!("-- pause {seconds}s before the next experiment"),
    }
}

pub(crate) fn table(report: &GameDayReport) -> String {
    let mut out = format!(
        "{:<20} {:<17} {:<8} {:>8} {:>9} {:>5} {:>5}  FAILED PROBES\n",
        "EXPERIMENT", "FAULT", "VERDICT", "IMPACT", "RECOVERY", "LOST", "DUP"
    );
    for e in &report.experiments {
        let failed: Vec<String> = e
            .failed_probes
            .iter()
            .map(|p| format!("{} ({:?})", p.name, p.stage))
            .collect();
        out.push_str(&format!(
            "{:<20} {:<17} {:<8} {:>8} {:>9} {:>5} {:>5}  {}\n",
            e.name,
            e.fault,
            format!("{:?}", e.verdict),
            fmt_seconds(e.time_to_impact_seconds),
            fmt_seconds(e.time_to_recover_seconds),
            fmt_count(e.messages_lost),
            fmt_count(e.messages_duplicated),
            if failed.is_empty() {
                "-".to_owned()
            } else {
                failed.join(", ")
            }
        ));
    }
    out.push_str(&sli_table(report));
    out.push_str(&format!(
        "game day {}: {:?} in {}s\n",
        report.name,
        report.verdict,
        (report.finished_at - report.started_at).num_seconds()
    ));
    out
}

/// Each experiment's per-SLI figures, measured at the sample interval; empty when no
/// experiment has any.
fn sli_table(report: &GameDayReport) -> String {
    if report.experiments.iter().all(|e| e.slis.is_empty()) {
        return String::new();
    }
    let mut out = format!(
        "\n{:<20} {:<20} {:>8} {:>12} {:>10} {:>9}\n",
        "EXPERIMENT", "SLI", "IMPACT", "WORST", "UNHEALTHY", "RECOVERY"
    );
    for e in &report.experiments {
        for sli in &e.slis {
            out.push_str(&format!(
                "{:<20} {:<20} {:>8} {:>12} {:>10} {:>9}\n",
                e.name,
                sli.name,
                fmt_seconds(sli.time_to_impact_seconds),
                sli.worst_value
                    .map_or_else(|| "-".to_owned(), |v| format!("{v:.3}")),
                fmt_seconds(Some(sli.unhealthy_seconds)),
                fmt_seconds(sli.time_to_recover_seconds),
            ));
        }
    }
    out.push('\n');
    out
}

pub(crate) fn write_reports(dir: &Path, report: &GameDayReport) -> Result<(), LabError> {
    fs::create_dir_all(dir).map_err(|e| LabError::io(dir, e))?;
    let mut files = vec![
        ("report.md".to_owned(), report::markdown(report)),
        ("report.json".to_owned(), report::json(report)),
        ("junit.xml".to_owned(), report::junit(report)),
    ];
    for e in &report.experiments {
        files.push((format!("timeline-{}.svg", e.name), report::timeline_svg(e)));
    }
    for (name, text) in files {
        let path = dir.join(name);
        fs::write(&path, text).map_err(|e| LabError::io(&path, e))?;
    }
    Ok(())
}

impl GameDayArgs {
    /// True when the game day is to run on a cluster rather than in the lab.
    pub fn on_cluster(&self, cluster: &ClusterArgs) -> bool {
        self.cluster || cluster.given()
    }

    fn plan_file(&self) -> &Path {
        self.plan.as_deref().unwrap_or(&self.file)
    }
}

/// `game-day` on a cluster: the plan is applied as a GameDay and followed live.
pub fn run_cluster(args: GameDayArgs, cluster: ClusterArgs) -> Result<ExitCode, ClusterError> {
    if let Some(w) = args.weaken {
        return Err(ClusterError::Usage(format!(
            "--weaken {w} is for the lab; on a cluster deploy the weakness with the talk chart's ci/ values instead"
        )));
    }
    if args.keep_lab || args.bin_dir.is_some() {
        return Err(ClusterError::Usage(
            "--keep-lab and --bin-dir are for the lab, not a cluster".to_owned(),
        ));
    }
    let file = args.plan_file().to_path_buf();
    let dir = crate::follow::experiments_dir(&file, args.experiments.as_deref());
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
    let opts = crate::follow::ClusterRun {
        cluster,
        namespace: args.namespace,
        name: args.name,
        labels: args.label,
        timeout: Duration::from_secs(args.timeout),
        report_dir: args.report_dir,
        json: args.output == Output::Json,
    };
    crate::follow::run(game_day, &experiments, &opts)
}

pub fn run(args: GameDayArgs, lab_dir: &Path) -> Result<ExitCode, LabError> {
    let file = args.plan_file().to_path_buf();
    let experiments_dir = crate::follow::experiments_dir(&file, args.experiments.as_deref());
    let (game_day, experiments) = load_game_day(&file, &experiments_dir)?;
    let gd_name = game_day.metadata.name.clone().unwrap_or_default();
    lifecycle::check_privileges()?;
    let run = RunDir::new(lab_dir);
    if let Some(pause) = firedrill_lab::pause::paused(&run)? {
        return Err(LabError::Paused(pause.describe()));
    }
    let started_at = Utc::now();
    crate::lab::up(
        &run,
        args.weaken,
        args.bin_dir.clone(),
        Duration::from_secs(120),
    )?;

    let abort = Arc::new(AtomicBool::new(false));
    let runtime = crate::lab::runtime()?;
    let outcome: Result<Vec<ExperimentReport>, LabError> = runtime.block_on(async {
        let flag = abort.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\ninterrupted: reverting the fault and stopping");
                flag.store(true, Ordering::SeqCst);
            }
        });
        // The kill switch (`chaosctl lab stop-all`) from another shell.
        let (flag, watched) = (abort.clone(), run.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Ok(Some(pause)) = firedrill_lab::pause::paused(&watched) {
                    eprintln!(
                        "\nstop-all: the lab is {}: reverting the fault and skipping the rest",
                        pause.describe()
                    );
                    flag.store(true, Ordering::SeqCst);
                    return;
                }
            }
        });
        let runner = Runner::new(LabPlatform::open(run.clone())?, abort.clone())?;
        runner
            .run_game_day(&gd_name, &game_day.spec, &experiments, &args.only, &show)
            .await
    });
    if !args.keep_lab {
        match lifecycle::down(&run) {
            Ok(r) => eprintln!("lab: down: {}", r.summary()),
            Err(e) => eprintln!("lab: taking the lab down failed: {e} (run `chaosctl lab down`)"),
        }
    } else {
        eprintln!("lab: left up (chaosctl lab status; chaosctl lab down)");
    }
    let experiments = outcome?;
    let report = game_day_report(
        &gd_name,
        args.weaken.map(|w| w.to_string()),
        started_at,
        experiments,
    );
    let report_dir = args.report_dir.clone().unwrap_or_else(|| {
        PathBuf::from("firedrill-reports")
            .join(format!("{gd_name}-{}", started_at.format("%Y%m%dT%H%M%SZ")))
    });
    write_reports(&report_dir, &report)?;
    match args.output {
        Output::Table => print!("{}", table(&report)),
        Output::Json => println!("{}", report::json(&report)),
    }
    eprintln!("report: {}", report_dir.display());
    Ok(if report.verdict == Verdict::Passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
