//! The `GameDay` custom resource: experiments run in order under one shared hypothesis.

use chrono::{DateTime, Utc};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::duration::Duration;
use super::experiment::{ExperimentSpec, SliFigures, Verdict};
use super::probe::Hypothesis;

/// A game day: experiments run one after another, with a shared hypothesis and a policy for
/// what to do when one fails.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "firedrill.dev",
    version = "v1alpha1",
    kind = "GameDay",
    namespaced,
    derive = "PartialEq",
    status = "GameDayStatus",
    shortname = "gd",
    category = "firedrill",
    doc = "A game day: experiments run in order under a shared steady-state hypothesis.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Verdict", type_ = "string", json_path = ".status.verdict"),
    printcolumn(name = "Step", type_ = "string", json_path = ".status.progress"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = Rule::new("self.experiments.all(e, self.experiments.exists_one(f, f.name == e.name))")
        .message("experiment names must be unique within a game day").field_path(".experiments"),
    validation = Rule::new("!has(self.pauseBetween) || duration(self.pauseBetween) <= duration('1h')")
        .message("pauseBetween must be at most 1h").field_path(".pauseBetween"),
)]
pub struct GameDaySpec {
    /// What this game day rehearses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub description: Option<String>,
    /// The experiments, run in this order.
    #[schemars(length(min = 1, max = 50))]
    pub experiments: Vec<GameDayStep>,
    /// Probes added to every experiment's hypothesis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypothesis: Option<Hypothesis>,
    /// What to do after an experiment fails or aborts.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// Quiet time between experiments, so one's recovery does not blur the next's baseline.
    #[serde(default = "default_pause")]
    pub pause_between: Duration,
}

fn default_pause() -> Duration {
    Duration::from_secs(5)
}

/// One step of a game day: an inline experiment or a reference to one. Exactly one is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("has(self.spec) != has(self.experimentRef)")
    .message("a step takes either an inline spec or an experimentRef, not both and not neither"))]
pub struct GameDayStep {
    /// The step's name, used for the experiment it creates and in reports.
    #[schemars(
        length(min = 1, max = 50),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// The name of an Experiment in the same namespace whose spec is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment_ref: Option<ExperimentRef>,
    /// An inline experiment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<ExperimentSpec>,
}

/// A reference to an Experiment in the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExperimentRef {
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// See [`GameDaySpec::failure_policy`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum FailurePolicy {
    /// Stop at the first experiment that fails or aborts; the rest are skipped.
    #[default]
    Stop,
    /// Run every experiment regardless.
    Continue,
}

/// Where a game day is.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum GameDayPhase {
    #[default]
    Pending,
    Running,
    Completed,
}

/// Observed state of a game day.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GameDayStatus {
    pub phase: GameDayPhase,
    /// Failed if any experiment failed or aborted, Passed when all passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// `done/total`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// What the game day is waiting for, when it waits (a pause, overlapping targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// One entry per step, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<StepResult>,
    /// Where the full report is (a ConfigMap name or a path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The outcome and figures of one game-day step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepResult {
    pub name: String,
    /// The Experiment object created for this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_impact_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_recover_seconds: Option<f64>,
    /// Per hypothesis SLI: impact, worst value, time unhealthy and recovery, as measured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slis: Vec<SliFigures>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_lost: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_duplicated: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_probes: Vec<String>,
    /// When the step's experiment was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When the step's verdict was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

impl GameDaySpec {
    /// A step's experiment with the game day's shared probes joined to its hypothesis (a
    /// probe of the same name in the experiment wins).
    pub fn with_shared_hypothesis(&self, mut spec: ExperimentSpec) -> ExperimentSpec {
        if let Some(shared) = &self.hypothesis {
            for probe in &shared.probes {
                if !spec.hypothesis.probes.iter().any(|p| p.name == probe.name) {
                    spec.hypothesis.probes.push(probe.clone());
                }
            }
        }
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_probes_join_each_step_unless_named_there() {
        let game_day: GameDaySpec = serde_json::from_value(serde_json::json!({
            "experiments": [{"name": "a", "experimentRef": {"name": "x"}}],
            "hypothesis": {"probes": [
                {"name": "up", "http": {"url": "http://shared/"}},
                {"name": "ops", "http": {"url": "http://ops/"}}
            ]}
        }))
        .expect("game day");
        let spec: ExperimentSpec = serde_json::from_value(serde_json::json!({
            "target": {"namespaces": ["talk"]},
            "fault": {"podKill": {}},
            "duration": "10s",
            "hypothesis": {"probes": [{"name": "up", "http": {"url": "http://own/"}}]}
        }))
        .expect("spec");
        let joined = game_day.with_shared_hypothesis(spec);
        let names: Vec<_> = joined
            .hypothesis
            .probes
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["up", "ops"]);
        assert_eq!(
            serde_json::to_value(&joined.hypothesis.probes[0]).expect("probe")["http"]["url"],
            "http://own/"
        );
    }
}
