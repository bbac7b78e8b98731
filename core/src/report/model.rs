//! The report's data model: what the runner fills and every renderer reads.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::api::{ExperimentStatus, SliFigures, Stage, TimelineEntry, Verdict};

/// One game day: what ran, where, and how it ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GameDayReport {
    /// The GameDay's name (`quarterly-dr`).
    pub name: String,
    /// `lab` or `cluster`.
    pub platform: String,
    /// The weakness the lab was deployed with, if any (`stream-r1`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weakness: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// `Passed` only when every experiment passed.
    pub verdict: Verdict,
    pub experiments: Vec<ExperimentReport>,
}

/// One experiment of a game day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentReport {
    /// The step's name in the game day.
    pub name: String,
    /// The fault's kind (`zoneBlackout`, ...).
    pub fault: String,
    pub verdict: Verdict,
    /// Why it ended this way, naming the broken SLO when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub time_to_impact_seconds: Option<f64>,
    pub time_to_recover_seconds: Option<f64>,
    /// Per hypothesis SLI, measured at the sample interval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slis: Vec<SliFigures>,
    pub messages_lost: Option<u64>,
    pub messages_duplicated: Option<u64>,
    pub failed_probes: Vec<FailedProbe>,
    pub started_at: Option<DateTime<Utc>>,
    pub injected_at: Option<DateTime<Utc>>,
    pub reverted_at: Option<DateTime<Utc>>,
    pub recovered_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub timeline: Vec<TimelineEntry>,
    /// SLI time series for the timeline picture.
    pub series: Vec<Series>,
}

/// A probe that broke its tolerance `failureThreshold` times in a row in a stage where that
/// counts (failing while recovering only means "not recovered yet").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedProbe {
    pub name: String,
    pub stage: Stage,
    pub failures: u32,
    /// The last failure (`0.41 is not >= 0.95`, `connection refused`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

/// One SLI sampled over an experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Series {
    /// `deliverySuccessRatio`, `p99LatencyMs`, ...
    pub name: String,
    /// Points in time order; `None` where the SLI could not be read.
    pub points: Vec<Point>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    pub at: DateTime<Utc>,
    pub value: Option<f64>,
}

impl ExperimentReport {
    /// The report of one finished experiment from its engine status.
    pub fn from_status(
        name: &str,
        fault: &str,
        status: &ExperimentStatus,
        series: Vec<Series>,
    ) -> Self {
        let failed_probes = status
            .probes
            .iter()
            .filter(|p| p.tripped && p.stage != Stage::Recovery)
            .map(|p| FailedProbe {
                name: p.name.clone(),
                stage: p.stage,
                failures: p.failures,
                last_failure: p.last_failure.clone(),
            })
            .collect();
        Self {
            name: name.to_owned(),
            fault: fault.to_owned(),
            verdict: status.verdict.unwrap_or(Verdict::Aborted),
            reason: status.reason.clone(),
            time_to_impact_seconds: status.time_to_impact_seconds,
            time_to_recover_seconds: status.time_to_recover_seconds,
            slis: status.slis.clone(),
            messages_lost: status.messages_lost,
            messages_duplicated: status.messages_duplicated,
            failed_probes,
            started_at: status.started_at,
            injected_at: status.injected_at,
            reverted_at: status.reverted_at,
            recovered_at: status.recovered_at,
            finished_at: status.finished_at,
            timeline: status.timeline.clone(),
            series,
        }
    }
}

/// A verdict's name as JUnit and SVG show it.
pub(super) fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Passed => "Passed",
        Verdict::Failed => "Failed",
        Verdict::Aborted => "Aborted",
        Verdict::Skipped => "Skipped",
    }
}
