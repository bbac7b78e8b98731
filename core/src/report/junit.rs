//! JUnit XML, so CI systems show a game day's experiments as test cases.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

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
            experiment
                .time_to_recover_seconds
                .map(|v| format!("{v:.1}")),
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
                .map_or_else(|| "-".to_owned(), |v| v.to_string()),
            sli.unhealthy_seconds,
            figure(sli.time_to_recover_seconds),
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

fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Passed => "Passed",
        Verdict::Failed => "Failed",
        Verdict::Aborted => "Aborted",
        Verdict::Skipped => "Skipped",
    }
}

/// Escapes text for XML element content. Also used by the SVG renderer.
///
/// Besides the five markup characters, `\r` becomes a character reference (parsers would
/// otherwise fold it into `\n`) and characters XML 1.0 forbids even when escaped (most C0
/// controls, U+FFFE, U+FFFF) become U+FFFD, so a probe's raw error output cannot make the
/// whole file unreadable.
pub(super) fn escape_text(s: &str) -> String {
    escape(s, false)
}

/// Escapes text for a double- or single-quoted XML attribute value. Also used by the SVG
/// renderer. Like [`escape_text`], and also keeps tabs and newlines, which parsers would
/// otherwise normalise to spaces inside attributes.
pub(super) fn escape_attr(s: &str) -> String {
    escape(s, true)
}

fn escape(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' | '\t' => out.push(c),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => out.push('\u{fffd}'),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
pub(super) mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::api::Stage;
    use crate::report::FailedProbe;

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

    /// A tiny XML checker: tags balance, attributes are quoted, and every `&` starts a
    /// known entity or a character reference. Also used by the SVG tests.
    pub(crate) fn well_formed(xml: &str) -> Result<(), String> {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = xml;
        let mut roots = 0;
        while let Some(open) = rest.find('<') {
            check_text(&rest[..open])?;
            rest = &rest[open..];
            if let Some(after) = rest.strip_prefix("<?") {
                let end = after.find("?>").ok_or("unterminated <?")?;
                rest = &after[end + 2..];
                continue;
            }
            if let Some(after) = rest.strip_prefix("<!--") {
                let end = after.find("-->").ok_or("unterminated comment")?;
                rest = &after[end + 3..];
                continue;
            }
            let end = tag_end(rest).ok_or("unterminated tag")?;
            let tag = &rest[1..end];
            rest = &rest[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().ok_or(format!("stray </{name}>"))?;
                if open != name.trim() {
                    return Err(format!("<{open}> closed by </{name}>"));
                }
                continue;
            }
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
            let name = &tag[..name_end];
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_alphanumeric() || ":-_.".contains(c))
            {
                return Err(format!("bad tag name {name:?}"));
            }
            check_attributes(&tag[name_end..])?;
            if stack.is_empty() {
                roots += 1;
            }
            if !self_closing {
                stack.push(name.to_owned());
            }
        }
        check_text(rest)?;
        if !stack.is_empty() {
            return Err(format!("unclosed {stack:?}"));
        }
        if roots != 1 {
            return Err(format!("{roots} root elements"));
        }
        Ok(())
    }

    /// The `>` ending the tag at the start of `s`, skipping quoted attribute values.
    fn tag_end(s: &str) -> Option<usize> {
        let mut quote = None;
        for (i, c) in s.char_indices().skip(1) {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '>') => return Some(i),
                _ => {}
            }
        }
        None
    }

    fn check_attributes(mut s: &str) -> Result<(), String> {
        loop {
            s = s.trim_start();
            if s.is_empty() {
                return Ok(());
            }
            let eq = s
                .find('=')
                .ok_or(format!("attribute without value: {s:?}"))?;
            let name = s[..eq].trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(format!("bad attribute name {name:?}"));
            }
            let value = s[eq + 1..].trim_start();
            let quote = value.chars().next().ok_or("missing attribute value")?;
            if quote != '"' && quote != '\'' {
                return Err(format!("unquoted attribute {name}"));
            }
            let close = value[1..].find(quote).ok_or("unterminated attribute")?;
            let inner = &value[1..1 + close];
            if inner.contains('<') {
                return Err(format!("raw < in attribute {name}"));
            }
            check_text(inner)?;
            s = &value[close + 2..];
        }
    }

    fn check_text(s: &str) -> Result<(), String> {
        if s.contains("]]>") {
            return Err("]]> in text".to_owned());
        }
        let mut rest = s;
        while let Some(amp) = rest.find('&') {
            rest = &rest[amp + 1..];
            let semi = rest.find(';').ok_or("& without ;")?;
            let entity = &rest[..semi];
            let known = matches!(entity, "amp" | "lt" | "gt" | "quot" | "apos")
                || entity
                    .strip_prefix('#')
                    .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            if !known {
                return Err(format!("unknown entity &{entity};"));
            }
            rest = &rest[semi + 1..];
        }
        if s.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
        {
            return Err("control character in text".to_owned());
        }
        Ok(())
    }

    /// Undoes [`escape`], to prove nothing was lost.
    fn unescape(s: &str) -> String {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&#13;", "\r")
            .replace("&#10;", "\n")
            .replace("&#9;", "\t")
            .replace("&amp;", "&")
    }

    #[test]
    fn escape_handles_nasty_strings() {
        assert_eq!(escape_text(""), "");
        assert_eq!(escape_text("plain"), "plain");
        assert_eq!(
            escape_attr(r#"<a href="x">&amp;'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;amp;&apos;&lt;/a&gt;"
        );
        assert_eq!(escape_text("]]><![CDATA["), "]]&gt;&lt;![CDATA[");
        assert_eq!(escape_text("a\r\nb\tc"), "a&#13;\nb\tc");
        assert_eq!(escape_attr("a\r\nb\tc"), "a&#13;&#10;b&#9;c");
        assert_eq!(
            escape_text("nul\0bell\u{7}\u{ffff}"),
            "nul\u{fffd}bell\u{fffd}\u{fffd}"
        );
        assert_eq!(escape_text("ünïcödé ✓ 🔥"), "ünïcödé ✓ 🔥");
        for nasty in [
            "&&&;",
            "&lt;",
            "'\"'\"",
            "<<>>",
            "a\nb\r\tc",
            "x & y < z > 'w' \"v\"",
        ] {
            for escaped in [escape_text(nasty), escape_attr(nasty)] {
                assert!(
                    !escaped.contains('<') && !escaped.contains('"'),
                    "{escaped}"
                );
                check_text(&escaped).unwrap();
                assert_eq!(unescape(&escaped), nasty);
            }
            let doc = format!("<a b=\"{}\">{}</a>", escape_attr(nasty), escape_text(nasty));
            well_formed(&doc).unwrap();
        }
    }

    #[test]
    fn checker_rejects_broken_xml() {
        assert!(well_formed("<a><b></a></b>").is_err());
        assert!(well_formed("<a>").is_err());
        assert!(well_formed("<a>x & y</a>").is_err());
        assert!(well_formed("<a b=\"<\"/>").is_err());
        assert!(well_formed("<a/><b/>").is_err());
        assert!(well_formed("<?xml version=\"1.0\"?><a b='1'><c/>&amp;</a>").is_ok());
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
