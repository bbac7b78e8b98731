//! The `DrillSchedule` custom resource: the quarterly disaster-recovery drill, unattended.

use chrono::{DateTime, Utc};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::duration::Duration;
use super::experiment::Verdict;
use super::gameday::GameDaySpec;

/// The default schedule: 09:00 on the first day of each quarter.
pub const QUARTERLY: &str = "0 9 1 1,4,7,10 *";

/// Runs a game day on a cron schedule and keeps a history of the verdicts.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "firedrill.dev",
    version = "v1alpha1",
    kind = "DrillSchedule",
    namespaced,
    derive = "PartialEq",
    status = "DrillScheduleStatus",
    shortname = "drill",
    category = "firedrill",
    doc = "A cron schedule (quarterly by default) that runs a game day and records each drill's verdict.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(
        name = "Last Verdict",
        type_ = "string",
        json_path = ".status.lastVerdict"
    ),
    printcolumn(name = "Next Run", type_ = "date", json_path = ".status.nextRunAt"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = Rule::new("!has(self.schedule) || self.schedule.split(' ').filter(f, f != '').size() == 5")
        .message("schedule must be a cron expression with five fields: minute hour day-of-month month day-of-week").field_path(".schedule"),
    validation = Rule::new("!has(self.startingDeadline) || (duration(self.startingDeadline) >= duration('1m') && duration(self.startingDeadline) <= duration('720h'))")
        .message("startingDeadline must be between 1m and 720h").field_path(".startingDeadline"),
)]
pub struct DrillScheduleSpec {
    /// Cron expression (minute hour day-of-month month day-of-week).
    #[serde(default = "quarterly")]
    #[schemars(length(min = 9, max = 128))]
    pub schedule: String,
    /// IANA time zone the schedule is read in, for example `Asia/Seoul` (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub time_zone: Option<String>,
    /// The game day each drill runs.
    pub game_day: GameDaySpec,
    /// What to do when a drill is due while the previous one still runs.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// A run missed (operator down) by more than this is recorded as missed, not started late.
    #[serde(default = "default_starting_deadline")]
    pub starting_deadline: Duration,
    /// How many past drills are kept (objects and history entries).
    #[serde(default = "default_history_limit")]
    #[schemars(range(min = 1, max = 100))]
    pub history_limit: u32,
    /// Pause the schedule without deleting it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

impl DrillScheduleSpec {
    /// The first scheduled time strictly after `after`, read in the schedule's time zone
    /// (UTC when unset); `None` when the expression never fires again. A local time that a
    /// daylight-saving jump skips fires at the jump; one it repeats fires once.
    pub fn next_after(&self, after: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, String> {
        let cron: croner::Cron = self
            .schedule
            .parse()
            .map_err(|e| format!("schedule {:?}: {e}", self.schedule))?;
        let tz: chrono_tz::Tz = match &self.time_zone {
            Some(zone) => zone
                .parse()
                .map_err(|_| format!("timeZone {zone:?} is not an IANA time zone"))?,
            None => chrono_tz::UTC,
        };
        match cron.find_next_occurrence(&after.with_timezone(&tz), false) {
            Ok(next) => Ok(Some(next.with_timezone(&Utc))),
            Err(croner::errors::CronError::TimeSearchLimitExceeded) => Ok(None),
            Err(e) => Err(format!("schedule {:?}: {e}", self.schedule)),
        }
    }
}

fn quarterly() -> String {
    QUARTERLY.to_owned()
}

fn default_starting_deadline() -> Duration {
    Duration::from_secs(6 * 3600)
}

fn default_history_limit() -> u32 {
    8
}

/// See [`DrillScheduleSpec::concurrency_policy`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum ConcurrencyPolicy {
    /// Skip the new run and record it as skipped.
    #[default]
    Forbid,
    /// Abort the running drill (reverting its fault) and start the new one.
    Replace,
}

/// Observed state of a schedule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillScheduleStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verdict: Option<Verdict>,
    /// The GameDay currently running, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
    /// Past drills, newest first, at most `historyLimit`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<DrillRecord>,
}

/// One past drill.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillRecord {
    pub game_day: String,
    pub scheduled_for: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Missing when the run was skipped or missed; see `note`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}
