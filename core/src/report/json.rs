//! JSON, for machines: the model as it is, so tools can read a report back.

use super::GameDayReport;

/// The report as pretty-printed camelCase JSON.
pub fn json(report: &GameDayReport) -> String {
    // The model has only string-keyed structs, strings, numbers and timestamps, which
    // serde_json always serialises; the fallback keeps the output JSON should that change.
    serde_json::to_string_pretty(report).unwrap_or_else(|e| {
        serde_json::json!({ "error": format!("could not serialise the report: {e}") }).to_string()
    })
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};
    use serde_json::Value;

    use super::*;
    use crate::api::{Phase, Stage, TimelineEntry, Verdict};
    use crate::report::{ExperimentReport, FailedProbe, Point, Series};

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + seconds, 0)
            .single()
            .unwrap()
    }

    /// One fully filled experiment and one with every optional field empty.
    fn report() -> GameDayReport {
        let full = ExperimentReport {
            name: "zone-a".to_owned(),
            fault: "zoneBlackout".to_owned(),
            verdict: Verdict::Failed,
            reason: Some("SLO \"delivery\" broken".to_owned()),
            time_to_impact_seconds: Some(2.5),
            time_to_recover_seconds: Some(31.25),
            slis: vec![],
            messages_lost: Some(12),
            messages_duplicated: Some(0),
            failed_probes: vec![FailedProbe {
                name: "delivery".to_owned(),
                stage: Stage::During,
                failures: 3,
                last_failure: Some("0.41 is not >= 0.95".to_owned()),
            }],
            started_at: Some(at(0)),
            injected_at: Some(at(10)),
            reverted_at: Some(at(40)),
            recovered_at: Some(at(71)),
            finished_at: Some(at(80)),
            timeline: vec![TimelineEntry {
                at: at(10),
                phase: Phase::Injecting,
                message: "blackout".to_owned(),
            }],
            series: vec![Series {
                name: "deliverySuccessRatio".to_owned(),
                points: vec![
                    Point {
                        at: at(0),
                        value: Some(1.0),
                    },
                    Point {
                        at: at(15),
                        value: None,
                    },
                    Point {
                        at: at(30),
                        value: Some(0.5),
                    },
                ],
            }],
        };
        let empty = ExperimentReport {
            name: "skipped".to_owned(),
            fault: "podKill".to_owned(),
            verdict: Verdict::Skipped,
            reason: None,
            time_to_impact_seconds: None,
            time_to_recover_seconds: None,
            slis: vec![],
            messages_lost: None,
            messages_duplicated: None,
            failed_probes: Vec::new(),
            started_at: None,
            injected_at: None,
            reverted_at: None,
            recovered_at: None,
            finished_at: None,
            timeline: Vec::new(),
            series: Vec::new(),
        };
        GameDayReport {
            name: "quarterly-dr".to_owned(),
            platform: "lab".to_owned(),
            weakness: None,
            started_at: at(0),
            finished_at: at(300),
            verdict: Verdict::Failed,
            experiments: vec![full, empty],
        }
    }

    #[test]
    fn every_experiment_has_the_documented_keys() {
        let value: Value = serde_json::from_str(&json(&report())).unwrap();
        assert_eq!(value["verdict"], "Failed");
        assert_eq!(value["name"], "quarterly-dr");
        let experiments = value["experiments"].as_array().unwrap();
        assert_eq!(experiments.len(), 2);
        for experiment in experiments {
            let experiment = experiment.as_object().unwrap();
            for key in [
                "name",
                "fault",
                "verdict",
                "timeToImpactSeconds",
                "timeToRecoverSeconds",
                "messagesLost",
                "messagesDuplicated",
                "failedProbes",
            ] {
                assert!(
                    experiment.contains_key(key),
                    "{key} missing in {experiment:?}"
                );
            }
        }
        assert_eq!(experiments[0]["timeToRecoverSeconds"], 31.25);
        assert_eq!(
            experiments[0]["failedProbes"][0]["lastFailure"],
            "0.41 is not >= 0.95"
        );
        assert!(experiments[1]["timeToImpactSeconds"].is_null());
    }

    #[test]
    fn round_trips_to_an_equal_report() {
        let report = report();
        let text = json(&report);
        assert!(
            text.contains("\n  \"name\": \"quarterly-dr\""),
            "not pretty: {text}"
        );
        let back: GameDayReport = serde_json::from_str(&text).unwrap();
        assert_eq!(back, report);
        assert_eq!(json(&back), text);
    }
}
