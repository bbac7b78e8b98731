//! `chaosctl game-day` in the lab: the quarterly drill, run for real on this machine.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use firedrill_lab::lifecycle;
use firedrill_lab::platform::LabPlatform;
use firedrill_lab::runner::{self, Progress, Runner};
use firedrill_lab::{LabError, RunDir};

use super::args::{GameDayArgs, Output};
use super::plan::{experiments_dir, load_game_day};
use super::report;

/// Prints the runner's progress on stderr.
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

/// `game-day` in the lab: brings it up, runs every step through the engine, takes it down.
pub fn run(args: GameDayArgs, lab_dir: &Path) -> Result<ExitCode, LabError> {
    let file = args.plan_file().to_path_buf();
    let experiments_dir = experiments_dir(&file, args.experiments.as_deref());
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
        args.talk.settings(),
        args.bin_dir.clone(),
        Duration::from_secs(120),
    )?;

    let abort = Arc::new(AtomicBool::new(false));
    let runtime = crate::lab::runtime()?;
    let outcome: Result<runner::gameday::GameDayRun, LabError> = runtime.block_on(async {
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
            .game_day(&gd_name, &game_day.spec, &experiments, &args.only, &show)
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
    // The run carries the sequencer's verdict (Aborted when stopped with steps left).
    let report = runner::gameday::report(
        &gd_name,
        args.weaken.map(|w| w.to_string()),
        started_at,
        outcome?,
    );
    let report_dir = args
        .report_dir
        .clone()
        .unwrap_or_else(|| report::default_dir(&gd_name, started_at));
    report::finish(&report, &report_dir, args.output == Output::Json)
        .map_err(|e| LabError::io(&e.path, e.source))
}
