//! Steady-state hypotheses and the probes that observe them.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::Duration;

/// What "healthy" means, observed before, during and after the fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = Rule::new("self.probes.all(p, self.probes.exists_one(q, q.name == p.name))")
        .message("probe names must be unique within a hypothesis").field_path(".probes"),
    validation = Rule::new("!has(self.interval) || (duration(self.interval) >= duration('100ms') && duration(self.interval) <= duration('5m'))")
        .message("interval must be between 100ms and 5m").field_path(".interval"),
    validation = Rule::new("!has(self.window) || (duration(self.window) >= duration('1s') && duration(self.window) <= duration('1h'))")
        .message("window must be between 1s and 1h").field_path(".window"),
)]
pub struct Hypothesis {
    /// The probes that must all be within tolerance for the system to be in steady state.
    #[schemars(length(min = 1, max = 20))]
    pub probes: Vec<Probe>,
    /// How often every probe is sampled.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// How long steady state is observed before injecting and after recovering.
    #[serde(default = "default_window")]
    pub window: Duration,
    /// Whether a violation while the fault holds fails the experiment (`Enforce`) or is only
    /// measured (`Observe`, for faults the system is expected to feel).
    #[serde(default)]
    pub during: DuringPolicy,
}

fn default_interval() -> Duration {
    Duration::from_secs(2)
}

fn default_window() -> Duration {
    Duration::from_secs(10)
}

/// See [`Hypothesis::during`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum DuringPolicy {
    #[default]
    Enforce,
    Observe,
}

/// One observation of the system, with the tolerance that makes it healthy. Exactly one of
/// `prometheus`, `http`, `kubernetes` and `talk` is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = Rule::new("[has(self.prometheus), has(self.http), has(self.kubernetes), has(self.talk)].filter(x, x).size() == 1")
        .message("a probe needs exactly one of prometheus, http, kubernetes or talk"),
    validation = Rule::new("!(has(self.prometheus) || has(self.talk)) || has(self.tolerance)")
        .message("prometheus and talk probes measure a number and need a tolerance").field_path(".tolerance"),
    validation = Rule::new("!has(self.timeout) || (duration(self.timeout) >= duration('100ms') && duration(self.timeout) <= duration('1m'))")
        .message("timeout must be between 100ms and 1m").field_path(".timeout"),
)]
pub struct Probe {
    /// A short name, unique in its list, used in reports and conditions.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// A PromQL instant query whose single value is compared with the tolerance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusProbe>,
    /// An HTTP request that must answer with an expected status in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,
    /// A Kubernetes object that must report a condition (or enough ready replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesProbe>,
    /// A service-level indicator of the talk workload, read from its prober.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub talk: Option<TalkProbe>,
    /// The range of values that counts as healthy (prometheus and talk probes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<Tolerance>,
    /// How long one sample may take before it counts as a failure.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// How many consecutive failed samples make the probe fail (1 = the first).
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 20))]
    pub failure_threshold: u32,
    /// Marks a probe of operability: that people could still act (an alert arrives, a metric
    /// is queryable, a rollout completes). Reported separately; the lesson of 2022.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub operability: bool,
}

fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_failure_threshold() -> u32 {
    2
}

/// The kind of a probe, borrowed from a [`Probe`] that has exactly one set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ProbeKind<'a> {
    Prometheus(&'a PrometheusProbe),
    Http(&'a HttpProbe),
    Kubernetes(&'a KubernetesProbe),
    Talk(&'a TalkProbe),
}

impl Probe {
    /// Whether a sample outside its tolerance means the probe can never be within it again:
    /// a count that only grows (messages lost) held under a ceiling (`== 0`, `<= n`,
    /// `< n`). Waiting for such a probe to recover only waits out the deadline.
    pub fn cannot_recover(&self) -> bool {
        let grows = self.talk.as_ref().is_some_and(|t| t.sli.only_grows());
        let ceiling = self.tolerance.is_some_and(|t| {
            matches!(
                t.op,
                Comparison::Equal | Comparison::AtMost | Comparison::LessThan
            )
        });
        grows && ceiling
    }

    /// The probe's kind, or `None` when not exactly one is set (refused by validation).
    pub fn kind(&self) -> Option<ProbeKind<'_>> {
        let kinds: Vec<ProbeKind<'_>> = [
            self.prometheus.as_ref().map(ProbeKind::Prometheus),
            self.http.as_ref().map(ProbeKind::Http),
            self.kubernetes.as_ref().map(ProbeKind::Kubernetes),
            self.talk.as_ref().map(ProbeKind::Talk),
        ]
        .into_iter()
        .flatten()
        .collect();
        match kinds.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }
}

/// A PromQL instant query. Endpoints are tried in order, so observation survives the loss
/// of one monitoring replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("self.endpoints.all(e, isURL(e) && (e.startsWith('http://') || e.startsWith('https://')))")
    .message("endpoints must be http:// or https:// URLs").field_path(".endpoints"))]
pub struct PrometheusProbe {
    /// Prometheus base URLs, for example `http://prometheus-a.monitoring:9090`.
    #[schemars(length(min = 1, max = 8), inner(length(max = 2048)))]
    pub endpoints: Vec<String>,
    /// The query; it must return one sample (or a scalar).
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,
}

/// An HTTP check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = Rule::new("isURL(self.url) && (self.url.startsWith('http://') || self.url.startsWith('https://'))")
        .message("url must be an http:// or https:// URL").field_path(".url"),
    validation = Rule::new("!has(self.expectStatus) || self.expectStatus.all(s, s >= 100 && s <= 599)")
        .message("expectStatus codes must be between 100 and 599").field_path(".expectStatus"),
    validation = Rule::new("!has(self.maxLatency) || duration(self.maxLatency) <= duration('1m')")
        .message("maxLatency must be at most 1m").field_path(".maxLatency"),
)]
pub struct HttpProbe {
    /// The URL to request.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// The method to use.
    #[serde(default)]
    pub method: HttpMethod,
    /// Status codes that count as healthy (default: any 2xx).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub expect_status: Vec<u16>,
    /// Slower answers count as failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency: Option<Duration>,
}

/// HTTP methods a probe may use: only ones that do not change the system.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Head,
}

/// A Kubernetes object that must be healthy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesProbe {
    /// For example `apps/v1` or `v1`.
    #[schemars(length(min = 1, max = 253))]
    pub api_version: String,
    /// For example `Deployment`.
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,
    /// The object's namespace (defaults to the experiment's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
    /// The object's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// A condition type in `status.conditions` that must be `True` (default `Ready`,
    /// or `Available` for Deployments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub condition: Option<String>,
    /// Instead of a condition: at least this many `status.readyReplicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub min_ready_replicas: Option<u32>,
}

/// A service-level indicator from the talk workload's prober (`GET <url>` returns JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("isURL(self.url) && (self.url.startsWith('http://') || self.url.startsWith('https://'))")
    .message("url must be an http:// or https:// URL").field_path(".url"))]
pub struct TalkProbe {
    /// The prober's SLI endpoint, for example `http://talk-load.talk:8080/sli`.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// Which indicator to compare with the tolerance.
    pub sli: TalkSli,
}

/// The indicators talk-load publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum TalkSli {
    /// Acknowledged sends over attempted sends in the recent window (0..1).
    DeliverySuccessRatio,
    /// Median end-to-end latency in milliseconds.
    P50LatencyMs,
    /// 99th percentile end-to-end latency in milliseconds.
    P99LatencyMs,
    /// Acknowledged messages that can no longer be read (must stay 0).
    LostMessages,
    /// Messages delivered more than once.
    DuplicatedMessages,
}

impl TalkSli {
    /// A running count since talk-load started, which never goes down: lost and
    /// duplicated messages do not come back.
    pub fn only_grows(self) -> bool {
        matches!(self, Self::LostMessages | Self::DuplicatedMessages)
    }

    /// The field of the prober's JSON document that holds this indicator.
    pub fn json_field(self) -> &'static str {
        match self {
            Self::DeliverySuccessRatio => "deliverySuccessRatio",
            Self::P50LatencyMs => "p50LatencyMs",
            Self::P99LatencyMs => "p99LatencyMs",
            Self::LostMessages => "lostMessages",
            Self::DuplicatedMessages => "duplicatedMessages",
        }
    }
}

/// A comparison a measured value must satisfy, for example `{op: ">=", value: 0.99}`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tolerance {
    /// One of `<`, `<=`, `>`, `>=`, `==`, `!=`.
    pub op: Comparison,
    /// The value to compare against.
    pub value: f64,
}

/// How a measured value is compared with a tolerance's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Comparison {
    #[serde(rename = "<")]
    LessThan,
    #[serde(rename = "<=")]
    AtMost,
    #[serde(rename = ">")]
    GreaterThan,
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = "==")]
    Equal,
    #[serde(rename = "!=")]
    NotEqual,
}

impl Tolerance {
    /// The worse of two measured values: the one further on the failing side (the larger
    /// for `<`/`<=`, the smaller for `>`/`>=`, the further from the value for `==`, the
    /// nearer for `!=`).
    pub fn worse(&self, a: f64, b: f64) -> f64 {
        let pick_a = match self.op {
            Comparison::LessThan | Comparison::AtMost => a > b,
            Comparison::GreaterThan | Comparison::AtLeast => a < b,
            Comparison::Equal => (a - self.value).abs() > (b - self.value).abs(),
            Comparison::NotEqual => (a - self.value).abs() < (b - self.value).abs(),
        };
        if pick_a { a } else { b }
    }

    /// Whether `measured` is healthy. NaN never is.
    pub fn admits(&self, measured: f64) -> bool {
        if measured.is_nan() {
            return false;
        }
        match self.op {
            Comparison::LessThan => measured < self.value,
            Comparison::AtMost => measured <= self.value,
            Comparison::GreaterThan => measured > self.value,
            Comparison::AtLeast => measured >= self.value,
            Comparison::Equal => measured == self.value,
            Comparison::NotEqual => measured != self.value,
        }
    }
}

impl std::fmt::Display for Tolerance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            Comparison::LessThan => "<",
            Comparison::AtMost => "<=",
            Comparison::GreaterThan => ">",
            Comparison::AtLeast => ">=",
            Comparison::Equal => "==",
            Comparison::NotEqual => "!=",
        };
        write!(f, "{op} {}", self.value)
    }
}
