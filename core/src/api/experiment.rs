//! The `Experiment` custom resource: one fault against selected targets, judged by a
//! steady-state hypothesis.

use chrono::{DateTime, Utc};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::duration::Duration;
use super::fault::Fault;
use super::probe::{Hypothesis, Probe, ProbeKind};
use super::selector::LabelSelector;

/// Namespaces firedrill never targets, whatever a manifest says.
pub const PROTECTED_NAMESPACES: [&str; 4] = [
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "firedrill-system",
];

/// A chaos experiment: inject one fault into selected targets for a while, and check that a
/// steady-state hypothesis holds before, during and after.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "firedrill.dev",
    version = "v1alpha1",
    kind = "Experiment",
    namespaced,
    derive = "PartialEq",
    status = "ExperimentStatus",
    shortname = "exp",
    shortname = "fdexp",
    category = "firedrill",
    doc = "A chaos experiment: one fault against selected targets, judged by a steady-state hypothesis checked before, during and after.",
    // What ran is what the report describes: once started, an Experiment's spec stays.
    validation = Rule::new("self.spec == oldSelf.spec || !has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase == 'Pending'")
        .message("the spec of an Experiment that has started cannot change; delete it (which reverts its fault) and create a new one"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Verdict", type_ = "string", json_path = ".status.verdict"),
    printcolumn(name = "Fault", type_ = "string", json_path = ".status.fault"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = Rule::new("duration(self.duration) >= duration('1s') && duration(self.duration) <= duration('24h')")
        .message("duration must be between 1s and 24h").field_path(".duration"),
    validation = Rule::new("!has(self.recoveryDeadline) || (duration(self.recoveryDeadline) >= duration('1s') && duration(self.recoveryDeadline) <= duration('24h'))")
        .message("recoveryDeadline must be between 1s and 24h").field_path(".recoveryDeadline"),
    validation = Rule::new("!(has(self.fault.diskLoss) || has(self.fault.opsToolOutage) || has(self.fault.podKill)) || has(self.target.selector)")
        .message("diskLoss, opsToolOutage and podKill act on the pods picked by target.selector, which is missing").field_path(".target"),
    validation = Rule::new("!has(self.abortConditions) || self.abortConditions.all(p, self.abortConditions.exists_one(q, q.name == p.name))")
        .message("abort condition names must be unique").field_path(".abortConditions"),
)]
pub struct ExperimentSpec {
    /// What this experiment shows and why it matters (shown in reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub description: Option<String>,
    /// What the fault may touch.
    pub target: Target,
    /// The fault to inject.
    pub fault: Fault,
    /// How long the fault holds once it is effective.
    pub duration: Duration,
    /// What "healthy" means.
    pub hypothesis: Hypothesis,
    /// Probes checked while the fault holds; any that fails reverts the fault at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub abort_conditions: Vec<Probe>,
    /// How long after the revert the system has to be back in steady state. A talk probe of
    /// lost or duplicated messages measured over its ceiling fails the run at once: those
    /// counts never go down, so there is nothing to wait for.
    #[serde(default = "default_recovery_deadline")]
    pub recovery_deadline: Duration,
    /// Limits on how much may be hit at once.
    #[serde(default)]
    pub blast_radius: BlastRadius,
    /// Resolve and report the targets, inject nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

fn default_recovery_deadline() -> Duration {
    Duration::from_secs(120)
}

/// What an experiment may touch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = Rule::new("self.namespaces.all(n, !(n in ['kube-system', 'kube-public', 'kube-node-lease', 'firedrill-system']))")
        .message("kube-system, kube-public, kube-node-lease and firedrill-system are never targets").field_path(".namespaces"),
    validation = Rule::new("self.namespaces.all(n, n.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))")
        .message("namespaces must be DNS labels (lowercase letters, digits and '-')").field_path(".namespaces"),
)]
pub struct Target {
    /// Namespaces the fault may act in. Each must also opt in with the label
    /// `firedrill.dev/chaos=enabled`.
    #[schemars(length(min = 1, max = 16), inner(length(min = 1, max = 63)))]
    pub namespaces: Vec<String>,
    /// The pods acted on by pod-level faults (diskLoss, opsToolOutage, podKill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// Caps on the number of targets. An experiment that would exceed one is refused, never
/// silently trimmed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlastRadius {
    /// At most this many targets (pods or nodes).
    #[serde(default = "default_max_targets")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_targets: u32,
    /// At most this percentage of the candidates (1..100).
    #[serde(default = "default_max_percent")]
    #[schemars(range(min = 1, max = 100))]
    pub max_percent: u32,
}

fn default_max_targets() -> u32 {
    10
}

fn default_max_percent() -> u32 {
    50
}

impl ExperimentSpec {
    /// The workload's SLI endpoint, when the hypothesis has a talk probe: its loss counters
    /// measure the experiment's RPO.
    pub fn workload_url(&self) -> Option<&str> {
        self.hypothesis.probes.iter().find_map(|p| match p.kind() {
            Some(ProbeKind::Talk(t)) => Some(t.url.as_str()),
            _ => None,
        })
    }

    /// The workload's verification read (`GET /verify` on the SLI endpoint's host).
    pub fn verification_url(&self) -> Option<String> {
        verification_url(self.workload_url()?)
    }
}

/// `scheme://authority/verify` for an SLI endpoint's URL (path and query dropped).
pub fn verification_url(sli_url: &str) -> Option<String> {
    let (scheme, rest) = sli_url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}/verify"))
}

impl Default for BlastRadius {
    fn default() -> Self {
        Self {
            max_targets: default_max_targets(),
            max_percent: default_max_percent(),
        }
    }
}

/// Where an experiment is in its lifecycle.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Phase {
    #[default]
    Pending,
    SteadyStateBefore,
    Injecting,
    Holding,
    Reverting,
    Recovering,
    SteadyStateAfter,
    Completed,
}

/// The outcome of a completed experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Verdict {
    /// The hypothesis held throughout and the system recovered in time.
    Passed,
    /// The system did not hold or did not recover: a weakness was found.
    Failed,
    /// An abort condition fired or someone stopped the experiment; the fault was reverted.
    Aborted,
    /// The hypothesis did not hold before injection, so nothing was injected.
    Skipped,
}

/// Whether the fault is on the system. The engine never completes while it may be.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum FaultState {
    #[default]
    NotInjected,
    /// Asked for; may be partly applied.
    Injecting,
    Injected,
    /// Revert asked for; may still be partly applied.
    Reverting,
    Reverted,
}

impl FaultState {
    /// True while any part of the fault may be on the system.
    pub fn may_be_active(self) -> bool {
        matches!(self, Self::Injecting | Self::Injected | Self::Reverting)
    }
}

/// Which part of the experiment a probe sample belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Stage {
    Before,
    During,
    Abort,
    Recovery,
    After,
}

/// Observed state of an experiment. Everything the engine needs to continue is here, so a
/// restarted operator picks up where the last one stopped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentStatus {
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Why the verdict is what it is, naming the probe or SLO involved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The fault's kind, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    #[serde(default)]
    pub fault_state: FaultState,
    /// Whether an abort was asked for from outside (deletion, `chaosctl abort`, kill switch).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abort_requested: bool,
    /// Why the experiment was aborted (abort condition, request, failed injection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_because: Option<String>,
    /// A hypothesis probe failed while the fault held (only with `during: Enforce`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violated_during: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_since: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject_requested_at: Option<DateTime<Utc>>,
    /// When the platform confirmed the fault effective.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injected_at: Option<DateTime<Utc>>,
    /// Absolute time after which node agents revert on their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// First failing hypothesis sample after injection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_requested_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// When probes were last asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sampled_at: Option<DateTime<Utc>>,
    /// Seconds from the fault being effective to the first failing sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_impact_seconds: Option<f64>,
    /// Seconds from the revert to every hypothesis SLI's first sample back within its
    /// tolerance (the measured RTO: the slowest SLI's, see `slis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_recover_seconds: Option<f64>,
    /// Per hypothesis SLI: impact, worst value, time unhealthy and recovery, measured at
    /// the sample interval (the window decides the verdict, never these figures).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slis: Vec<SliFigures>,
    /// The fault as the platform last re-checked it while holding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_check: Option<FaultCheck>,
    /// Acknowledged messages lost during the experiment (the measured RPO; must be 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_lost: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_duplicated: Option<u64>,
    /// Workload counters when the experiment started, so figures are this experiment's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_baseline: Option<WorkloadCounters>,
    /// The workload's verification reads (every stored message looked for), before the
    /// fault and at the end: their difference is this experiment's exact loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_verification: Option<LossVerification>,
    /// Per probe and stage: how its samples went.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<ProbeRecord>,
    /// What happened, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<TimelineEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl ExperimentStatus {
    /// Whether `self` and `other` differ only in what every routine sample rewrites: when
    /// probes were last sampled, sample counts, probes' last values and times, and when the
    /// fault was last found whole. A failing sample, a phase, a verdict, a figure (impact,
    /// worst value, time unhealthy or to recover), a lapse or a loss all differ here. The
    /// operator holds back status writes that differ only so (see its `unwritten` module).
    pub fn differs_only_by_routine_sampling(&self, other: &ExperimentStatus) -> bool {
        self != other && self.without_routine_sampling() == other.without_routine_sampling()
    }

    fn without_routine_sampling(&self) -> ExperimentStatus {
        let mut routine = self.clone();
        routine.last_sampled_at = None;
        for probe in &mut routine.probes {
            probe.samples = 0;
            probe.last_value = None;
            probe.last_at = None;
        }
        for sli in &mut routine.slis {
            sli.samples = 0;
            sli.last_at = None;
        }
        if let Some(check) = &mut routine.fault_check {
            check.last_held_at = None;
        }
        routine
    }
}

/// One hypothesis SLI's figures for one experiment, each a measurement at the sample
/// interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SliFigures {
    /// The probe's name.
    pub name: String,
    /// Samples taken while the fault held and while recovering.
    pub samples: u32,
    /// Seconds from the fault being effective to this SLI's first sample out of tolerance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_impact_seconds: Option<f64>,
    /// The worst value sampled while the fault held, by the tolerance's direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst_value: Option<f64>,
    /// Seconds out of tolerance, each episode from its first failing sample to the next
    /// passing one (or the last sample, when it never passed again).
    #[serde(default)]
    pub unhealthy_seconds: f64,
    /// Seconds from the revert to this SLI's first sample back within tolerance (of the run
    /// of samples in tolerance it stayed in). None when it never left its tolerance, and
    /// when it was back before the revert (`healedWhileHeld`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_recover_seconds: Option<f64>,
    /// It left its tolerance while the fault held and was back within it before the revert,
    /// for good: the system healed itself while the fault still held, so there was nothing
    /// to recover from when the fault ended.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub healed_while_held: bool,
    /// When the current out-of-tolerance episode began (bookkeeping for a restarted engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_since: Option<DateTime<Utc>>,
    /// Since when this SLI has been in tolerance, while the fault held or after the revert
    /// (bookkeeping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_since: Option<DateTime<Utc>>,
    /// When this SLI was last sampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at: Option<DateTime<Utc>>,
}

/// What the platform's re-checks of a held fault found: every part still in place, or
/// a part gone (rules deleted, a process thawed, a mount writable again).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FaultCheck {
    /// The last check that found the whole fault in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_held_at: Option<DateTime<Utc>>,
    /// Set while a part of the fault is found gone: the last time it was known in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lapsed_since: Option<DateTime<Utc>>,
    /// How many times a part of the fault was found gone.
    #[serde(default)]
    pub lapses: u32,
    /// The longest stretch without the whole fault in place, in seconds (from the last
    /// check that found it whole to the next).
    #[serde(default)]
    pub longest_lapse_seconds: f64,
    /// What the latest lapse found missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_lapse: Option<String>,
}

/// Cumulative counters from the workload's loss checker.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadCounters {
    pub lost: u64,
    pub duplicated: u64,
}

impl WorkloadCounters {
    /// The counters of talk-load's `/sli` or `/verify` document
    /// (`lostMessages`, `duplicatedMessages`).
    pub fn from_document(document: &serde_json::Value) -> Option<Self> {
        Some(Self {
            lost: document.get("lostMessages")?.as_u64()?,
            duplicated: document.get("duplicatedMessages")?.as_u64()?,
        })
    }
}

/// How long a platform gives one verification read of the workload: it reads back the
/// whole stream.
pub const VERIFY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(45);

/// An experiment's verification reads of its workload.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct LossVerification {
    /// What the read before the fault found missing (the run's losses until then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<WorkloadCounters>,
    /// When the closing read was first asked for (it is given up after a while).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closing_asked_at: Option<DateTime<Utc>>,
    /// What the closing read found missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closing: Option<WorkloadCounters>,
}

/// The samples of one probe in one stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeRecord {
    pub name: String,
    pub stage: Stage,
    pub samples: u32,
    pub failures: u32,
    pub consecutive_failures: u32,
    /// Reached `failureThreshold` consecutive failures at some point in this stage.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tripped: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ok: Option<bool>,
    /// The latest failure's explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at: Option<DateTime<Utc>>,
}

/// One line of an experiment's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub phase: Phase,
    pub message: String,
}

/// A Kubernetes-style condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::verification_url;

    #[test]
    fn the_verification_read_is_on_the_sli_endpoints_host() {
        for (sli, verify) in [
            (
                "http://talk-load.talk:8080/sli",
                Some("http://talk-load.talk:8080/verify"),
            ),
            (
                "http://talk-load.talk:8080/sli?window=1s",
                Some("http://talk-load.talk:8080/verify"),
            ),
            ("https://10.0.0.1?x=1", Some("https://10.0.0.1/verify")),
            ("http:///sli", None),
            ("talk-load:8080/sli", None),
        ] {
            assert_eq!(verification_url(sli).as_deref(), verify, "{sli}");
        }
    }
}

#[cfg(test)]
mod routine_sampling {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn holding() -> ExperimentStatus {
        let at = |s: i64| Utc.timestamp_opt(1_700_000_000 + s, 0).single();
        ExperimentStatus {
            phase: Phase::Holding,
            last_sampled_at: at(10),
            probes: vec![ProbeRecord {
                name: "p99".into(),
                stage: Stage::During,
                samples: 5,
                failures: 0,
                consecutive_failures: 0,
                tripped: false,
                last_value: Some(20.0),
                last_ok: Some(true),
                last_failure: None,
                last_at: at(10),
            }],
            slis: vec![SliFigures {
                name: "p99".into(),
                samples: 5,
                last_at: at(10),
                ..SliFigures::default()
            }],
            fault_check: Some(FaultCheck {
                last_held_at: at(9),
                ..FaultCheck::default()
            }),
            ..ExperimentStatus::default()
        }
    }

    #[test]
    fn a_passing_sample_is_routine_and_a_failing_one_or_a_phase_is_not() {
        let before = holding();
        let mut sampled = before.clone();
        sampled.last_sampled_at = Utc.timestamp_opt(1_700_000_012, 0).single();
        sampled.probes[0].samples = 6;
        sampled.probes[0].last_value = Some(23.0);
        sampled.slis[0].samples = 6;
        sampled.fault_check = Some(FaultCheck {
            last_held_at: sampled.last_sampled_at,
            ..FaultCheck::default()
        });
        assert!(sampled.differs_only_by_routine_sampling(&before));
        assert!(
            !before.differs_only_by_routine_sampling(&before),
            "no change at all"
        );

        let mut failing = sampled.clone();
        failing.probes[0].failures = 1;
        failing.probes[0].consecutive_failures = 1;
        failing.probes[0].last_ok = Some(false);
        assert!(!failing.differs_only_by_routine_sampling(&before));
        let mut worse = sampled.clone();
        worse.slis[0].worst_value = Some(23.0);
        assert!(!worse.differs_only_by_routine_sampling(&before));
        let mut lapsed = sampled.clone();
        lapsed.fault_check = Some(FaultCheck {
            lapses: 1,
            ..FaultCheck::default()
        });
        assert!(!lapsed.differs_only_by_routine_sampling(&before));
        let mut next = sampled;
        next.phase = Phase::Reverting;
        assert!(!next.differs_only_by_routine_sampling(&before));
    }
}
