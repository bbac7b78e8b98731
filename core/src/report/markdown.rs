//! Markdown, for people: the report a game day's participants read afterwards.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};

use super::{ExperimentReport, GameDayReport};
use crate::api::Verdict;

/// Shown for a number that was not measured, so an empty cell is never mistaken for zero.
const MISSING: &str = "–";

/// The report as Markdown: a header, a summary table, then one section per experiment.
pub fn markdown(report: &GameDayReport) -> String {
    let mut out = String::new();
    // `write!` into a `String` cannot fail, so its results are ignored throughout.
    let _ = writeln!(out, "# Game day report: {}\n", md(&report.name));
    let _ = writeln!(out, "- **Platform:** {}", md(&report.platform));
    if let Some(weakness) = &report.weakness {
        let _ = writeln!(out, "- **Weakness:** {}", md(weakness));
    }
    let _ = writeln!(out, "- **Verdict:** {}", verdict(report.verdict));
    let _ = writeln!(out, "- **Started:** {}", timestamp(report.started_at));
    let _ = writeln!(out, "- **Finished:** {}", timestamp(report.finished_at));
    let _ = writeln!(
        out,
        "- **Wall time:** {}",
        wall_time((report.finished_at - report.started_at).num_seconds())
    );

    out.push_str("\n## Summary\n\n");
    if report.experiments.is_empty() {
        out.push_str("No experiments ran.\n");
        return out;
    }
    out.push_str(
        "| Experiment | Fault | Verdict | Time to impact | Time to recover | Lost | Duplicated | Failed probes |\n\
         | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for e in &report.experiments {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            md(&e.name),
            md(&e.fault),
            verdict(e.verdict),
            seconds(e.time_to_impact_seconds),
            super::recovery(e.time_to_recover_seconds, &e.slis, seconds),
            count(e.messages_lost),
            count(e.messages_duplicated),
            e.failed_probes.len(),
        );
    }
    for e in &report.experiments {
        experiment(&mut out, e);
    }
    out
}

fn experiment(out: &mut String, e: &ExperimentReport) {
    let _ = writeln!(
        out,
        "\n## Experiment: {}\n\n- **Fault:** {}\n- **Verdict:** {}",
        md(&e.name),
        md(&e.fault),
        verdict(e.verdict)
    );
    if let Some(reason) = &e.reason {
        let _ = writeln!(out, "- **Reason:** {}", md(reason));
    }

    out.push_str("\n### Failed probes\n\n");
    if e.failed_probes.is_empty() {
        out.push_str("No probe failed.\n");
    } else {
        out.push_str("| Probe | Stage | Failures | Last failure |\n| --- | --- | ---: | --- |\n");
        for p in &e.failed_probes {
            let _ = writeln!(
                out,
                "| {} | {:?} | {} | {} |",
                md(&p.name),
                p.stage,
                p.failures,
                p.last_failure
                    .as_deref()
                    .map_or_else(|| MISSING.to_owned(), md),
            );
        }
    }

    slis(out, e);

    out.push_str("\n### Timeline\n\n");
    // Offsets count from the experiment's start; without one, from its first entry.
    let origin = e
        .started_at
        .or_else(|| e.timeline.iter().map(|t| t.at).min());
    match origin {
        Some(origin) if !e.timeline.is_empty() => {
            out.push_str("| Time | Phase | Message |\n| ---: | --- | --- |\n");
            for entry in &e.timeline {
                let _ = writeln!(
                    out,
                    "| {} | {:?} | {} |",
                    offset((entry.at - origin).num_milliseconds()),
                    entry.phase,
                    md(&entry.message),
                );
            }
        }
        _ => out.push_str("No timeline recorded.\n"),
    }

    let file = format!("timeline-{}.svg", e.name);
    let target = url_path(&file);
    let _ = writeln!(
        out,
        "\n[![Timeline of {}]({target})]({target})",
        md(&e.name)
    );
}

fn verdict(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Passed => "✅ Passed",
        Verdict::Failed => "❌ Failed",
        Verdict::Aborted => "⚠️ Aborted",
        Verdict::Skipped => "⏭️ Skipped",
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `1h 02m 03s`, `5m 00s` or `42s`; a negative span means a broken clock, so it is missing.
fn wall_time(total: i64) -> String {
    if total < 0 {
        return MISSING.to_owned();
    }
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Each hypothesis SLI's own figures, measured at the sample interval.
fn slis(out: &mut String, e: &ExperimentReport) {
    if e.slis.is_empty() {
        return;
    }
    out.push_str(
        "\n### SLIs, measured at the sample interval\n\n\
         | SLI | Time to impact | Worst while held | Time unhealthy | Time to recover |\n\
         | --- | ---: | ---: | ---: | ---: |\n",
    );
    for sli in &e.slis {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            md(&sli.name),
            seconds(sli.time_to_impact_seconds),
            sli.worst_value
                .map_or_else(|| MISSING.to_owned(), |v| md(&super::measured(v))),
            seconds(Some(sli.unhealthy_seconds)),
            super::recovery(
                sli.time_to_recover_seconds,
                std::slice::from_ref(sli),
                seconds
            ),
        );
    }
}

fn seconds(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.1} s"),
        _ => MISSING.to_owned(),
    }
}

fn count(value: Option<u64>) -> String {
    value.map_or_else(|| MISSING.to_owned(), |v| v.to_string())
}

/// `+12.3 s` from milliseconds, rounded in integers so that `-0.0` never appears.
fn offset(millis: i64) -> String {
    let tenths = (millis + if millis < 0 { -50 } else { 50 }) / 100;
    let sign = if tenths < 0 { '-' } else { '+' };
    let tenths = tenths.unsigned_abs();
    format!("{sign}{}.{} s", tenths / 10, tenths % 10)
}

/// Escapes text so names, reasons and probe output cannot break the table or inject markup:
/// CommonMark lets any ASCII punctuation be backslash-escaped, and a table row ends at a
/// line break, so line breaks become spaces.
fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' | '&' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a relative file name for a link target.
fn url_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::api::{Phase, Stage, TimelineEntry};
    use crate::report::FailedProbe;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + seconds, 0)
            .single()
            .unwrap()
    }

    fn entry(seconds: i64, phase: Phase, message: &str) -> TimelineEntry {
        TimelineEntry {
            at: at(seconds),
            phase,
            message: message.to_owned(),
        }
    }

    fn report() -> GameDayReport {
        let passed = ExperimentReport {
            name: "zone-a".to_owned(),
            fault: "zoneBlackout".to_owned(),
            verdict: Verdict::Passed,
            reason: None,
            time_to_impact_seconds: Some(2.5),
            time_to_recover_seconds: Some(31.0),
            slis: vec![crate::api::SliFigures {
                name: "p99-latency".to_owned(),
                samples: 40,
                time_to_impact_seconds: Some(2.5),
                worst_value: Some(1004.5),
                unhealthy_seconds: 7.0,
                time_to_recover_seconds: Some(1.5),
                ..Default::default()
            }],
            messages_lost: Some(0),
            messages_duplicated: Some(7),
            failed_probes: Vec::new(),
            started_at: Some(at(100)),
            injected_at: Some(at(110)),
            reverted_at: Some(at(140)),
            recovered_at: Some(at(171)),
            finished_at: Some(at(180)),
            timeline: vec![
                entry(100, Phase::SteadyStateBefore, "steady"),
                entry(110, Phase::Injecting, "blackout zone a"),
                entry(171, Phase::SteadyStateAfter, "recovered"),
            ],
            series: Vec::new(),
        };
        let failed = ExperimentReport {
            name: "broker|kill".to_owned(),
            fault: "podKill".to_owned(),
            verdict: Verdict::Failed,
            reason: Some("SLO deliverySuccessRatio broken".to_owned()),
            time_to_impact_seconds: None,
            time_to_recover_seconds: None,
            slis: vec![],
            messages_lost: None,
            messages_duplicated: None,
            failed_probes: vec![FailedProbe {
                name: "delivery".to_owned(),
                stage: Stage::Recovery,
                failures: 4,
                last_failure: Some("0.41 is not >= 0.95\nsecond line".to_owned()),
            }],
            started_at: None,
            injected_at: None,
            reverted_at: None,
            recovered_at: None,
            finished_at: None,
            timeline: vec![
                entry(205, Phase::Injecting, "kill broker-0"),
                entry(200, Phase::SteadyStateBefore, "steady"),
            ],
            series: Vec::new(),
        };
        GameDayReport {
            name: "quarterly-dr".to_owned(),
            platform: "lab".to_owned(),
            weakness: Some("stream-r1".to_owned()),
            started_at: at(0),
            finished_at: at(3723),
            verdict: Verdict::Failed,
            experiments: vec![passed, failed],
        }
    }

    #[test]
    fn header_names_game_day_and_verdict() {
        let md = markdown(&report());
        assert!(md.starts_with("# Game day report: quarterly-dr\n"), "{md}");
        assert!(md.contains("- **Platform:** lab\n"));
        assert!(md.contains("- **Weakness:** stream-r1\n"));
        assert!(md.contains("- **Verdict:** ❌ Failed\n"));
        assert!(md.contains("- **Started:** 2023-11-14T22:13:20Z\n"));
        assert!(md.contains("- **Wall time:** 1h 02m 03s\n"));
    }

    #[test]
    fn each_sli_has_its_measured_figures() {
        let md = markdown(&report());
        assert!(
            md.contains("| p99-latency | 2.5 s | 1004.5 | 7.0 s | 1.5 s |\n"),
            "{md}"
        );
        // An experiment without figures gets no empty table.
        assert_eq!(md.matches("### SLIs").count(), 1, "{md}");
    }

    #[test]
    fn summary_has_a_row_per_experiment() {
        let md = markdown(&report());
        assert!(
            md.contains("| zone-a | zoneBlackout | ✅ Passed | 2.5 s | 31.0 s | 0 | 7 | 0 |\n"),
            "{md}"
        );
        assert!(
            md.contains("| broker\\|kill | podKill | ❌ Failed | – | – | – | – | 1 |\n"),
            "{md}"
        );
    }

    #[test]
    fn sections_have_reason_probes_timeline_and_svg() {
        let md = markdown(&report());
        assert!(md.contains("## Experiment: zone-a\n"));
        assert!(md.contains("## Experiment: broker\\|kill\n"));
        assert!(md.contains("- **Reason:** SLO deliverySuccessRatio broken\n"));
        assert!(md.contains("| delivery | Recovery | 4 | 0.41 is not \\>= 0.95 second line |\n"));
        assert!(md.contains("No probe failed.\n"));
        assert!(md.contains("| +0.0 s | SteadyStateBefore | steady |\n"));
        assert!(md.contains("| +10.0 s | Injecting | blackout zone a |\n"));
        assert!(md.contains("| +71.0 s | SteadyStateAfter | recovered |\n"));
        // Without a start, offsets count from the earliest entry.
        assert!(md.contains("| +5.0 s | Injecting | kill broker-0 |\n"));
        assert!(md.contains("[![Timeline of zone-a](timeline-zone-a.svg)](timeline-zone-a.svg)"));
        assert!(md.contains("(timeline-broker%7Ckill.svg)"));
    }

    #[test]
    fn empty_game_day_says_so() {
        let mut report = report();
        report.experiments.clear();
        report.weakness = None;
        report.finished_at = at(-1);
        let md = markdown(&report);
        assert!(md.contains("No experiments ran."));
        assert!(md.contains("- **Wall time:** –\n"));
        assert!(!md.contains("Weakness"));
        assert!(!md.contains("| Experiment |"));
    }

    #[test]
    fn helpers_format_edge_cases() {
        assert_eq!(offset(0), "+0.0 s");
        assert_eq!(offset(-40), "+0.0 s");
        assert_eq!(offset(-60), "-0.1 s");
        assert_eq!(offset(12_349), "+12.3 s");
        assert_eq!(offset(12_350), "+12.4 s");
        assert_eq!(wall_time(42), "42s");
        assert_eq!(wall_time(300), "5m 00s");
        assert_eq!(seconds(Some(f64::NAN)), "–");
        assert_eq!(seconds(None), "–");
        assert_eq!(
            md("a|b\n*c*_d_ [x](y) <br> & #1 \\"),
            "a\\|b \\*c\\*\\_d\\_ \\[x\\](y) \\<br\\> \\& \\#1 \\\\"
        );
        assert_eq!(
            url_path("timeline-a b/ü.svg"),
            "timeline-a%20b%2F%C3%BC.svg"
        );
    }
}
