//! JUnit XML, so CI systems show a game day's experiments as test cases.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::model::verdict_name;
use super::xml::{escape_attr, escape_text};
use super::{ExperimentReport, GameDayReport};
use crate::api::Verdict;

/// The report as one JUnit `<testsuite>`: one `<testcase>` per experiment, `Failed` and
/// `Aborted` experiments as failures (both mean the game day did not prove the system
/// safe) and `Skipped` ones as skipped.
pub fn junit(report: &GameDayReport) -> String {
    let tests = report.experiments.len();
    let failures = report
        .experiments
        .iter()
        .filter(|e| matches!(e.verdict, Verdict::Failed | Verdict::Aborted))
        .count();
    let skipped = report
        .experiments
        .iter()
        .filter(|e| e.verdict == Verdict::Skipped)
        .count();
    let classname = format!("firedrill.{}", report.name);

    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    // `write!` into a `String` cannot fail, so its results are ignored throughout.
    let _ = writeln!(
        out,
        "<testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" skipped=\"{skipped}\" \
         errors=\"0\" time=\"{}\" timestamp=\"{}\">",
        escape_attr(&report.name),
        seconds(Some(report.started_at), Some(report.finished_at)),
        report.started_at.format("%Y-%m-%dT%H:%M:%S"),
    );
    out.push_str("  <properties>\n");
    property(&mut out, "platform", &report.platform);
    if let Some(weakness) = &report.weakness {
        property(&mut out, "weakness", weakness);
    }
    property(&mut out, "verdict", verdict_name(report.verdict));
    out.push_str("  </properties>\n");
    for experiment in &report.experiments {
        testcase(&mut out, &classname, experiment);
    }
    out.push_str("</testsuite>\n");
    out
}

fn property(out: &mut String, name: &str, value: &str) {
    let _ = writeln!(
        out,
        "    <property name=\"{}\" value=\"{}\"/>",
        escape_attr(name),
        escape_attr(value)
    );
}

fn testcase(out: &mut String, classname: &str, experiment: &ExperimentReport) {
    let _ = write!(
        out,
        "  <testcase classname=\"{}\" name=\"{}\" time=\"{}\"",
        escape_attr(classname),
        escape_attr(&experiment.name),
        seconds(experiment.started_at, experiment.finished_at),
    );
    match experiment.verdict {
        Verdict::Passed => out.push_str("/>\n"),
        Verdict::Skipped => {
            let message = experiment
                .reason
                .as_deref()
                .unwrap_or("the steady state did not hold before injection");
            let _ = writeln!(
                out,
                ">\n    <skipped message=\"{}\"/>\n  </testcase>",
                escape_attr(message)
            );
        }
        Verdict::Failed | Verdict::Aborted => {
            let verdict = verdict_name(experiment.verdict);
            let fallback = format!("experiment {}", verdict.to_lowercase());
            let message = experiment.reason.as_deref().unwrap_or(&fallback);
            let _ = writeln!(
                out,
                ">\n    <failure message=\"{}\" type=\"{verdict}\">{}</failure>\n  </testcase>",
                escape_attr(message),
                escape_text(&failure_body(experiment)),
            );
        }
    }
}

/// What a CI reader needs to start digging: the fault, the numbers and every tripped probe.
fn failure_body(experiment: &ExperimentReport) -> String {
    let mut body = String::new();
    let _ = writeln!(body, "fault: {}", experiment.fault);
    if let Some(reason) = &experiment.reason {
        let _ = writeln!(body, "reason: {reason}");
    }
    let numbers = [
        (
            "time to impact (s)",
            experiment.time_to_impact_seconds.map(|v| format!("{v:.1}")),
        ),
        (
            "time to recover (s)",
            match experiment.time_to_recover_seconds {
                None if experiment.slis.iter().any(|f| f.healed_while_held) => {
                    Some(super::HEALED_WHILE_HELD.to_owned())
                }
                t => t.map(|v| format!("{v:.1}")),
            },
        ),
        (
            "messages lost",
            experiment.messages_lost.map(|v| v.to_string()),
        ),
        (
            "messages duplicated",
            experiment.messages_duplicated.map(|v| v.to_string()),
        ),
    ];
    for (label, value) in numbers {
        if let Some(value) = value {
            let _ = writeln!(body, "{label}: {value}");
        }
    }
    for sli in &experiment.slis {
        let figure = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}s"));
        let _ = writeln!(
            body,
            "sli {}: impact after {}, worst {}, unhealthy {:.1}s, recovered after {}",
            sli.name,
            figure(sli.time_to_impact_seconds),
            sli.worst_value
                .map_or_else(|| "-".to_owned(), super::measured),
            sli.unhealthy_seconds,
            super::recovery(
                sli.time_to_recover_seconds,
                std::slice::from_ref(sli),
                figure
            ),
        );
    }
    for probe in &experiment.failed_probes {
        let _ = write!(
            body,
            "probe {} failed {} time(s) in stage {:?}",
            probe.name, probe.failures, probe.stage
        );
        match &probe.last_failure {
            Some(last) => {
                let _ = writeln!(body, ": {last}");
            }
            None => body.push('\n'),
        }
    }
    body
}

/// Seconds between two instants with millisecond precision; `0.000` when either is unknown
/// or the clock went backwards, because JUnit readers reject a missing or negative time.
fn seconds(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> String {
    let millis = match (from, to) {
        (Some(from), Some(to)) => (to - from).num_milliseconds().max(0),
        _ => 0,
    };
    format!("{}.{:03}", millis / 1000, millis % 1000)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::api::Stage;
    use crate::report::FailedProbe;
    use crate::report::xml::tests::well_formed;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + seconds, 0)
            .single()
            .unwrap()
    }

    fn experiment(name: &str, verdict: Verdict, reason: Option<&str>) -> ExperimentReport {
        ExperimentReport {
            name: name.to_owned(),
            fault: "zoneBlackout".to_owned(),
            verdict,
            reason: reason.map(str::to_owned),
            time_to_impact_seconds: Some(2.5),
            time_to_recover_seconds: None,
            slis: vec![],
            messages_lost: Some(3),
            messages_duplicated: None,
            failed_probes: Vec::new(),
            started_at: Some(at(0)),
            injected_at: Some(at(10)),
            reverted_at: Some(at(40)),
            recovered_at: None,
            finished_at: Some(at(61)),
            timeline: Vec::new(),
            series: Vec::new(),
        }
    }

    /// One experiment of each verdict, with markup in the names and reasons.
    fn report() -> GameDayReport {
        let mut failed = experiment(
            "broker <b> & \"friends\"",
            Verdict::Failed,
            Some("SLO 'delivery' broken: 0.41 < 0.95"),
        );
        failed.failed_probes.push(FailedProbe {
            name: "delivery<ratio>".to_owned(),
            stage: Stage::During,
            failures: 3,
            last_failure: Some("0.41 is not >= 0.95 & falling".to_owned()),
        });
        let mut aborted = experiment("abort", Verdict::Aborted, None);
        aborted.started_at = None;
        GameDayReport {
            name: "quarterly-dr".to_owned(),
            platform: "lab".to_owned(),
            weakness: Some("stream-r1".to_owned()),
            started_at: at(0),
            finished_at: at(300),
            verdict: Verdict::Failed,
            experiments: vec![
                experiment("ok", Verdict::Passed, None),
                failed,
                experiment("skip", Verdict::Skipped, Some("not steady")),
                aborted,
            ],
        }
    }

    #[test]
    fn counts_match_verdicts() {
        let xml = junit(&report());
        well_formed(&xml).unwrap();
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"));
        assert!(
            xml.contains(
                "<testsuite name=\"quarterly-dr\" tests=\"4\" failures=\"2\" skipped=\"1\" \
                 errors=\"0\" time=\"300.000\""
            ),
            "{xml}"
        );
        assert_eq!(xml.matches("<testsuite ").count(), 1);
        assert_eq!(xml.matches("<testcase ").count(), 4);
        assert_eq!(xml.matches("<failure ").count(), 2);
        assert_eq!(xml.matches("<skipped ").count(), 1);
        assert_eq!(xml.matches("<error").count(), 0);
        assert!(xml.contains("classname=\"firedrill.quarterly-dr\" name=\"ok\" time=\"61.000\"/>"));
        assert!(xml.contains("<skipped message=\"not steady\"/>"));
        assert!(xml.contains("<property name=\"weakness\" value=\"stream-r1\"/>"));
    }

    #[test]
    fn failures_carry_reason_and_probes_escaped() {
        let xml = junit(&report());
        assert!(xml.contains("name=\"broker &lt;b&gt; &amp; &quot;friends&quot;\""));
        assert!(xml.contains(
            "<failure message=\"SLO &apos;delivery&apos; broken: 0.41 &lt; 0.95\" type=\"Failed\">"
        ));
        assert!(xml.contains(
            "probe delivery&lt;ratio&gt; failed 3 time(s) in stage During: \
             0.41 is not &gt;= 0.95 &amp; falling"
        ));
        assert!(xml.contains("messages lost: 3"));
        // No reason and no start: a fallback message and a zero time, never a missing one.
        assert!(xml.contains("name=\"abort\" time=\"0.000\""));
        assert!(xml.contains("<failure message=\"experiment aborted\" type=\"Aborted\">"));
    }

    #[test]
    fn empty_game_day_is_still_a_suite() {
        let mut report = report();
        report.experiments.clear();
        report.weakness = None;
        report.finished_at = at(-5);
        let xml = junit(&report);
        well_formed(&xml).unwrap();
        assert!(
            xml.contains("tests=\"0\" failures=\"0\" skipped=\"0\" errors=\"0\" time=\"0.000\"")
        );
        assert!(!xml.contains("weakness"));
    }
}
