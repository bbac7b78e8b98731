//! The end of a game day, the same for the lab and a cluster: the report directory, the
//! summary on stdout and the exit code.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use firedrill_core::api::Verdict;
use firedrill_core::report::{self, GameDayReport};

use crate::output::{Column, Table, count, recovery, seconds, sli_figure_cells, width_budget};

/// Exit code of a game day that passed.
pub const PASSED: u8 = 0;
/// Exit code of a game day with an experiment that failed, aborted or was skipped.
pub const NOT_PASSED: u8 = 1;
/// Exit code when there is no verdict: the game day could not run, or chaosctl stopped
/// following it (the same code `main` gives errors).
pub const NO_VERDICT: u8 = 2;

/// The exit code for a game day's verdict.
pub fn exit_code(verdict: Verdict) -> ExitCode {
    ExitCode::from(if verdict == Verdict::Passed {
        PASSED
    } else {
        NOT_PASSED
    })
}

/// A report file that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Where the report goes without `--report-dir`: firedrill-reports/<name>-<start time>.
pub fn default_dir(name: &str, started_at: DateTime<Utc>) -> PathBuf {
    PathBuf::from("firedrill-reports")
        .join(format!("{name}-{}", started_at.format("%Y%m%dT%H%M%SZ")))
}

/// Writes report.md, report.json, junit.xml and one timeline SVG per experiment.
pub fn write_reports(dir: &Path, report: &GameDayReport) -> Result<(), WriteError> {
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError { path, source }
    };
    fs::create_dir_all(dir).map_err(failed(dir))?;
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
        fs::write(&path, text).map_err(failed(&path))?;
    }
    Ok(())
}

/// Writes the report, prints the summary table (or the JSON report) on stdout and where the
/// report is on stderr, and gives the exit code.
pub fn finish(report: &GameDayReport, dir: &Path, json: bool) -> Result<ExitCode, WriteError> {
    write_reports(dir, report)?;
    if json {
        println!("{}", report::json(report));
    } else {
        print!("{}", summary(report, Some(width_budget())));
    }
    eprintln!("report: {}", dir.display());
    Ok(exit_code(report.verdict))
}

/// The summary: one row per experiment, each experiment's SLI figures when there are any,
/// and the verdict line. Tables fit `width` (see [`crate::output`]).
pub fn summary(report: &GameDayReport, width: Option<usize>) -> String {
    let mut table = Table::new([
        Column::keep("EXPERIMENT"),
        Column::keep("FAULT"),
        Column::keep("VERDICT"),
        Column::keep("IMPACT").right(),
        Column::keep("RECOVERY").right(),
        Column::keep("LOST").right(),
        Column::keep("DUP").right(),
        Column::cut("FAILED PROBES"),
    ]);
    for e in &report.experiments {
        let failed: Vec<String> = e
            .failed_probes
            .iter()
            .map(|p| format!("{} ({:?})", p.name, p.stage))
            .collect();
        table.push(vec![
            e.name.clone(),
            e.fault.clone(),
            format!("{:?}", e.verdict),
            seconds(e.time_to_impact_seconds),
            recovery(e.time_to_recover_seconds, &e.slis),
            count(e.messages_lost),
            count(e.messages_duplicated),
            if failed.is_empty() {
                "-".to_owned()
            } else {
                failed.join(", ")
            },
        ]);
    }
    let mut out = table.render(width);
    out.push_str(&sli_table(report, width));
    out.push_str(&format!(
        "game day {}: {:?} in {}s\n",
        report.name,
        report.verdict,
        (report.finished_at - report.started_at).num_seconds()
    ));
    out
}

/// Each experiment's per-SLI figures, measured at the sample interval, between blank lines;
/// empty when no experiment has any.
fn sli_table(report: &GameDayReport, width: Option<usize>) -> String {
    if report.experiments.iter().all(|e| e.slis.is_empty()) {
        return String::new();
    }
    let mut table = Table::new([
        Column::keep("EXPERIMENT"),
        Column::keep("SLI"),
        Column::keep("IMPACT").right(),
        Column::keep("WORST").right(),
        Column::keep("UNHEALTHY").right(),
        Column::keep("RECOVERY").right(),
    ]);
    for e in &report.experiments {
        for sli in &e.slis {
            let mut row = vec![e.name.clone(), sli.name.clone()];
            row.extend(sli_figure_cells(sli));
            table.push(row);
        }
    }
    format!("\n{}\n", table.render(width))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use firedrill_core::api::{SliFigures, Stage};
    use firedrill_core::report::{ExperimentReport, FailedProbe};

    use super::*;

    fn experiment(name: &str, verdict: Verdict) -> ExperimentReport {
        ExperimentReport {
            name: name.to_owned(),
            fault: "zoneBlackout".to_owned(),
            verdict,
            reason: None,
            time_to_impact_seconds: Some(1.25),
            time_to_recover_seconds: Some(12.5),
            slis: Vec::new(),
            messages_lost: Some(0),
            messages_duplicated: None,
            failed_probes: Vec::new(),
            started_at: None,
            injected_at: None,
            reverted_at: None,
            recovered_at: None,
            finished_at: None,
            timeline: Vec::new(),
            series: Vec::new(),
        }
    }

    fn game_day(experiments: Vec<ExperimentReport>) -> GameDayReport {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap();
        GameDayReport {
            name: "quarterly-dr".into(),
            platform: "lab".into(),
            weakness: None,
            started_at: start,
            finished_at: start + chrono::Duration::seconds(754),
            verdict: firedrill_core::sequencer::overall(
                experiments.iter().map(|e| Some(e.verdict)),
                false,
            ),
            experiments,
        }
    }

    #[test]
    fn exit_codes_follow_the_verdict() {
        assert_eq!(exit_code(Verdict::Passed), ExitCode::from(0));
        for v in [Verdict::Failed, Verdict::Aborted, Verdict::Skipped] {
            assert_eq!(exit_code(v), ExitCode::from(1), "{v:?}");
        }
    }

    #[test]
    fn the_summary_keeps_long_experiment_names_aligned() {
        let long = "zone-blackout-of-the-biggest-zone-at-new-year";
        let mut failing = experiment(long, Verdict::Failed);
        let failed = |name: &str, stage| FailedProbe {
            name: name.into(),
            stage,
            failures: 3,
            last_failure: None,
        };
        failing.failed_probes = vec![
            failed("p99-latency", Stage::During),
            failed("delivery", Stage::After),
        ];
        failing.slis = vec![SliFigures {
            name: "p99-latency".into(),
            samples: 41,
            time_to_impact_seconds: Some(7.04),
            worst_value: Some(4808.0),
            unhealthy_seconds: 10.0,
            time_to_recover_seconds: Some(2.1),
            ..Default::default()
        }];
        let report = game_day(vec![experiment("zb", Verdict::Passed), failing]);
        let text = summary(&report, Some(120));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("EXPERIMENT  "), "{text}");
        // Every FAULT cell starts under FAULT, and the right-aligned RECOVERY cells end
        // where the header does, however long the name before them.
        let fault = lines[0].find("FAULT").unwrap();
        let recovery_end = lines[0].find("RECOVERY").unwrap() + "RECOVERY".len();
        for line in &lines[1..3] {
            assert_eq!(line.find("zoneBlackout"), Some(fault), "{text}");
            assert_eq!(
                line.find("12.5s").map(|i| i + 5),
                Some(recovery_end),
                "{text}"
            );
        }
        assert!(lines[2].starts_with(long), "{text}");
        assert!(lines[2].chars().count() <= 120, "{text}");
        assert!(lines[2].ends_with('…'), "the failed probes are cut: {text}");
        let full = summary(&report, None);
        assert!(
            full.lines()
                .nth(2)
                .unwrap()
                .ends_with("p99-latency (During), delivery (After)"),
            "{full}"
        );
        assert!(text.contains("\nEXPERIMENT  "), "the SLI table: {text}");
        let sli = lines
            .iter()
            .find(|l| l.contains("p99-latency ") && l.contains("4808"))
            .unwrap();
        for figure in ["7.0s", "4808", "10.0s", "2.1s"] {
            assert!(sli.contains(figure), "{figure} in {sli}");
        }
        assert!(
            text.ends_with("game day quarterly-dr: Failed in 754s\n"),
            "{text}"
        );
        // Without figures there is no SLI table.
        let text = summary(
            &game_day(vec![experiment("zb", Verdict::Passed)]),
            Some(120),
        );
        assert_eq!(text.lines().count(), 3, "{text}");
    }

    #[test]
    fn reports_are_written_to_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        write_reports(&out, &game_day(vec![experiment("zb", Verdict::Passed)])).unwrap();
        for file in ["report.md", "report.json", "junit.xml", "timeline-zb.svg"] {
            assert!(out.join(file).exists(), "{file}");
        }
        let blocked = dir.path().join("file");
        fs::write(&blocked, "").unwrap();
        let err = write_reports(&blocked.join("x"), &game_day(Vec::new())).unwrap_err();
        assert!(err.path.starts_with(&blocked), "{err}");
        assert_eq!(
            default_dir("q", Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap()),
            PathBuf::from("firedrill-reports/q-20260101T090000Z")
        );
    }
}
