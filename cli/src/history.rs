//! `chaosctl history DRILL`: past drills from a DrillSchedule's status, as a table and as an
//! SVG trend (one bar per drill: the share of experiments that passed, coloured by verdict).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use firedrill_core::api::{DrillRecord, DrillSchedule, Verdict};
use firedrill_core::report::svg::{self, escape_text, palette};

use crate::access::{Scope, fetch};
use crate::cluster::{ClusterArgs, ClusterError, connect, runtime};
use crate::output::{Column, Table, width_budget};

/// Oldest first: the order a trend is read in (the status keeps newest first).
pub fn chronological(history: &[DrillRecord]) -> Vec<&DrillRecord> {
    let mut records: Vec<&DrillRecord> = history.iter().collect();
    records.sort_by_key(|r| r.scheduled_for);
    records
}

fn verdict_text(r: &DrillRecord) -> String {
    match r.verdict {
        Some(v) => format!("{v:?}"),
        None if r.started_at.is_none() => "not run".to_owned(),
        None => "running".to_owned(),
    }
}

/// The history as a table, oldest first, fitting `width` (see [`crate::output`]).
pub fn history_table(history: &[DrillRecord], width: Option<usize>) -> String {
    if history.is_empty() {
        return "no drills yet\n".to_owned();
    }
    let mut table = Table::new([
        Column::keep("SCHEDULED (UTC)"),
        Column::keep("GAME DAY"),
        Column::keep("VERDICT"),
        Column::keep("PASSED").right(),
        Column::keep("FAILED").right(),
        Column::keep("TOOK").right(),
        Column::cut("NOTE"),
    ]);
    for r in chronological(history) {
        let took = match (r.started_at, r.finished_at) {
            (Some(s), Some(f)) => format!(
                "{}m{:02}s",
                (f - s).num_minutes(),
                (f - s).num_seconds() % 60
            ),
            _ => "-".to_owned(),
        };
        table.push(vec![
            r.scheduled_for.format("%Y-%m-%d %H:%M").to_string(),
            r.game_day.clone(),
            verdict_text(r),
            r.passed.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            r.failed.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            took,
            r.note.clone().unwrap_or_default(),
        ]);
    }
    table.render(width)
}

/// The trend as a self-contained, deterministic SVG: one bar per drill, oldest left, its
/// height the share of experiments that passed, its colour the verdict; drills that did not
/// run are grey stubs with their note as tooltip.
pub fn trend_svg(name: &str, history: &[DrillRecord]) -> String {
    let records = chronological(history);
    let (left, top, plot_h, bar_w, gap) = (60.0_f64, 50.0_f64, 200.0_f64, 36.0_f64, 14.0_f64);
    let width = (left + 20.0 + records.len().max(1) as f64 * (bar_w + gap)).max(360.0);
    let height = top + plot_h + 70.0;
    let mut out = String::new();
    svg::open(
        &mut out,
        width,
        height,
        &format!("Drill history of {name}"),
        "",
    );
    let passed = records
        .iter()
        .filter(|r| r.verdict == Some(Verdict::Passed))
        .count();
    let _ = writeln!(
        out,
        "<text class=\"title\" x=\"{left}\" y=\"22\">{} · {passed} of {} drills passed</text>",
        escape_text(name),
        records.len()
    );
    for pct in [0, 25, 50, 75, 100] {
        let y = top + plot_h - plot_h * f64::from(pct) / 100.0;
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{left}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{pct}%</text>",
            width - 10.0,
            left - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"12\" y=\"{}\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">experiments passed</text>",
        top + plot_h / 2.0,
        top + plot_h / 2.0
    );
    for (i, r) in records.iter().enumerate() {
        let x = left + 10.0 + i as f64 * (bar_w + gap);
        let total = r.passed.unwrap_or(0) + r.failed.unwrap_or(0);
        let share = if total == 0 {
            0.0
        } else {
            f64::from(r.passed.unwrap_or(0)) / f64::from(total)
        };
        let h = (plot_h * share).max(3.0);
        let y = top + plot_h - h;
        let tip = format!(
            "{}: {}{}{}",
            r.scheduled_for.format("%Y-%m-%d %H:%M"),
            verdict_text(r),
            if total > 0 {
                format!(", {} of {total} passed", r.passed.unwrap_or(0))
            } else {
                String::new()
            },
            r.note
                .as_ref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"{y}\" width=\"{bar_w}\" height=\"{h}\" fill=\"{}\"><title>{}</title></rect>",
            palette::verdict(r.verdict),
            escape_text(&tip)
        );
        let label_y = top + plot_h + 14.0;
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{label_y}\" text-anchor=\"middle\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x + bar_w / 2.0,
            r.scheduled_for.format("%Y-%m-%d"),
            x + bar_w / 2.0,
            label_y + 13.0,
            escape_text(&verdict_text(r))
        );
    }
    let _ = writeln!(
        out,
        "<line class=\"frame\" x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>",
        top + plot_h,
        width - 10.0,
        top + plot_h
    );
    out.push_str("</svg>\n");
    out
}

/// `chaosctl history DRILL`.
pub fn run(
    cluster: &ClusterArgs,
    name: &str,
    namespace: Option<String>,
    svg: Option<PathBuf>,
    json: bool,
) -> Result<ExitCode, ClusterError> {
    let drill: DrillSchedule = runtime()?.block_on(async {
        let (client, _) = connect(cluster).await?;
        let mut items: Vec<DrillSchedule> = fetch(
            &client,
            &Scope::Namespace(namespace),
            Some(name),
            "drillschedules",
            None,
        )
        .await?;
        items
            .pop()
            .ok_or_else(|| ClusterError::Usage(format!("no drill schedule {name}")))
    })?;
    let history = drill.status.clone().unwrap_or_default().history;
    if json {
        let records: Vec<&DrillRecord> = chronological(&history);
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else {
        print!("{}", history_table(&history, Some(width_budget())));
    }
    if let Some(path) = svg {
        std::fs::write(&path, trend_svg(name, &history)).map_err(|source| ClusterError::Io {
            path: path.display().to_string(),
            source,
        })?;
        eprintln!("trend: {} ({} drills)", path.display(), history.len());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};

    use super::*;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, day, 9, 0, 0).unwrap()
    }

    fn record(day: u32, verdict: Option<Verdict>, passed: u32, failed: u32) -> DrillRecord {
        DrillRecord {
            game_day: format!("q-{day}"),
            scheduled_for: at(day),
            started_at: verdict.map(|_| at(day)),
            finished_at: verdict.map(|_| at(day) + chrono::Duration::seconds(754)),
            verdict,
            passed: verdict.map(|_| passed),
            failed: verdict.map(|_| failed),
            note: verdict
                .is_none()
                .then(|| "missed: operator down".to_owned()),
        }
    }

    fn history() -> Vec<DrillRecord> {
        // Newest first, as the status keeps it.
        vec![
            record(3, Some(Verdict::Passed), 4, 0),
            record(2, None, 0, 0),
            record(1, Some(Verdict::Failed), 3, 1),
        ]
    }

    #[test]
    fn the_table_is_oldest_first_with_figures_and_notes() {
        let t = history_table(&history(), Some(120));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(
            lines[1].starts_with("2026-01-01 09:00") && lines[1].contains("Failed"),
            "{t}"
        );
        assert!(lines[1].contains("12m34s"), "{t}");
        assert!(
            lines[2].contains("not run") && lines[2].contains("missed: operator down"),
            "{t}"
        );
        assert!(lines[3].contains("Passed"), "{t}");
        assert_eq!(history_table(&[], Some(120)), "no drills yet\n");
    }

    #[test]
    fn the_trend_has_one_bar_per_drill_coloured_by_verdict() {
        let svg = trend_svg("quarterly <dr>", &history());
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.ends_with("</svg>\n"));
        assert!(
            svg.contains("quarterly &lt;dr&gt; · 1 of 3 drills passed"),
            "{svg}"
        );
        let bars = svg.matches("<rect x=").count() - 1; // minus the background
        assert_eq!(bars, 3);
        let red = svg.find("#d62728").unwrap();
        let green = svg.find("#2ca02c").unwrap();
        assert!(red < green, "oldest (failed) first");
        assert!(svg.contains("3 of 4 passed"));
        assert_eq!(
            svg,
            trend_svg("quarterly <dr>", &history()),
            "deterministic"
        );
        // An empty history still draws a valid picture.
        assert!(trend_svg("x", &[]).contains("0 of 0 drills passed"));
    }
}
