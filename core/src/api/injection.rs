//! The internal `Injection` resource: one typed node-level action for one node, written by the
//! operator and carried out by that node's agent. The agent takes nothing else as input.

use chrono::{DateTime, Utc};
use kube::{CustomResource, KubeSchema};

use super::Duration;
use serde::{Deserialize, Serialize};

/// One node-level action for one node, with an absolute expiry after which the agent reverts
/// it on its own timer, whether or not it can still reach the API server.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "firedrill.dev",
    version = "v1alpha1",
    kind = "Injection",
    namespaced,
    derive = "PartialEq",
    status = "InjectionStatus",
    shortname = "inj",
    category = "firedrill",
    doc = "Internal: one node-level fault action for one node, written by the firedrill operator and applied by that node's agent until expiresAt.",
    printcolumn(name = "Node", type_ = "string", json_path = ".spec.nodeName"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Expires", type_ = "date", json_path = ".spec.expiresAt"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("self == oldSelf").message("an injection is immutable; delete it to revert"))]
pub struct InjectionSpec {
    /// The node whose agent applies this.
    #[schemars(length(min = 1, max = 253))]
    pub node_name: String,
    /// The Experiment this belongs to (namespace/name).
    #[schemars(length(min = 1, max = 317))]
    pub experiment: String,
    /// What to do.
    pub action: NodeAction,
    /// The agent reverts at this time on its own, even if it cannot reach the API server.
    pub expires_at: DateTime<Utc>,
    /// How long the fault is to hold once applied: the agent reverts it at the time it
    /// applied it, by its own clock, plus this plus [`HOLD_GRACE`] at the latest, whether or
    /// not it can reach the API server (a node cut off sees no revert asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_for: Option<Duration>,
    /// The dead man's switch: the heartbeat of whoever drives the experiment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<Heartbeat>,
}

/// How long after `holdFor` an agent reverts on its own: its driver asks a little after
/// the fault's duration (it counts from the latest node's apply, and reconciles late).
pub const HOLD_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// When a node ends a fault it applied at `applied_at` on its own clock: at `expires_at`,
/// or at the end of `hold_for` (plus [`HOLD_GRACE`]) if that is sooner. Both platforms'
/// node sides (the agent, the lab's supervisor) journal this as the fault's expiry.
pub fn fault_end(
    applied_at: DateTime<Utc>,
    hold_for: Option<Duration>,
    expires_at: DateTime<Utc>,
) -> DateTime<Utc> {
    held_until(applied_at, hold_for, HOLD_GRACE, expires_at)
}

/// `applied_at + hold_for + grace`, or `expires_at` if that is sooner (or the sum overflows).
fn held_until(
    applied_at: DateTime<Utc>,
    hold_for: Option<Duration>,
    grace: std::time::Duration,
    expires_at: DateTime<Utc>,
) -> DateTime<Utc> {
    let held_until = hold_for.and_then(|d| {
        let hold = d
            .to_chrono()
            .checked_add(&chrono::TimeDelta::from_std(grace).ok()?)?;
        applied_at.checked_add_signed(hold)
    });
    held_until.map_or(expires_at, |t| t.min(expires_at))
}

impl InjectionSpec {
    /// When the node ends this fault, applied at `applied_at` by its own clock: as
    /// [`fault_end`] says, except on a node its experiment cuts off (`cut_off`, see
    /// [`Self::cut_off_among`]): no revert asked for can reach it, so it ends the fault when
    /// `hold_for` is up, and the fault lasts its duration and not [`HOLD_GRACE`] more.
    pub fn node_end(&self, applied_at: DateTime<Utc>, cut_off: bool) -> DateTime<Utc> {
        let grace = if cut_off {
            std::time::Duration::ZERO
        } else {
            HOLD_GRACE
        };
        held_until(applied_at, self.hold_for, grace, self.expires_at)
    }

    /// Whether its experiment cuts this Injection's node off while it holds: it does so
    /// itself, or one of `others` (any Injections; those of other experiments or nodes do
    /// not count) does. A zone blackout's kills on a node share the cut's fate: the revert
    /// asked for them cannot reach the node either.
    pub fn cut_off_among<'a>(&self, others: impl IntoIterator<Item = &'a InjectionSpec>) -> bool {
        self.action.cuts_node_off()
            || others.into_iter().any(|o| {
                o.node_name == self.node_name
                    && o.experiment == self.experiment
                    && o.action.cuts_node_off()
            })
    }

    /// Whether a part applied at `applied_at` and reverted by its node at `reverted_at` held
    /// for the whole of `hold_for`: then its node ended it at its duration, not early.
    pub fn held_its_duration(&self, applied_at: DateTime<Utc>, reverted_at: DateTime<Utc>) -> bool {
        self.hold_for
            .and_then(|d| applied_at.checked_add_signed(d.to_chrono()))
            .is_some_and(|end| reverted_at >= end)
    }
}

/// A `coordination.k8s.io/v1` Lease in the Injection's namespace that the experiment's
/// driver (the operator's leader) renews while it is alive. While it holds the fault, the
/// agent reads the Lease every [`HEARTBEAT_POLL`]; once the API server has answered and the
/// renew time has not changed for `timeoutSeconds` by the agent's own clock (so clock skew
/// does not matter), counted from the read that saw it change, nobody is watching the
/// hypothesis and the agent reverts: never before `timeoutSeconds` after the last renewal,
/// and at most one [`HEARTBEAT_POLL`] after that. While the API server does not answer (a node cut off), the agent cannot
/// tell and holds the fault until `holdFor` ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Heartbeat {
    /// The Lease's name.
    #[schemars(length(min = 1, max = 253))]
    pub lease: String,
    /// Seconds without a renewal after which the agent reverts (it reads every 2 s, so the
    /// revert comes 0-2 s after that).
    #[schemars(range(min = 2, max = 600))]
    pub timeout_seconds: u32,
}

/// How often an agent holding a fault reads its driver's heartbeat Lease.
pub const HEARTBEAT_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// A node-level action. Exactly one field is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("[has(self.network), has(self.processes), has(self.readOnlyVolume)].filter(x, x).size() == 1")
    .message("exactly one of network, processes and readOnlyVolume must be set"))]
pub struct NodeAction {
    /// Drop traffic in the node's or the pods' network namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkCut>,
    /// Freeze or kill the processes of pods on this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<ProcessAction>,
    /// Remount a pod's volume read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_volume: Option<VolumeAction>,
}

impl NodeAction {
    /// Cuts the node itself off the network: its agent loses the API server until it
    /// reverts, so it cannot report the fault applied afterwards, nor see a revert asked for.
    pub fn cuts_node_off(&self) -> bool {
        self.network
            .as_ref()
            .is_some_and(|cut| cut.all && cut.pods.is_empty())
    }
}

/// Traffic to drop, in the host's network namespace or in the sandboxes of the listed pods:
/// everything (`all`), or the traffic between them and `peers` in `direction`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = Rule::new("(has(self.all) && self.all) != (has(self.peers) && size(self.peers) > 0)")
        .message("set either all or peers: all drops everything, peers the traffic with them"),
    validation = Rule::new("!has(self.lossPercent) || (has(self.peers) && size(self.peers) > 0)")
        .message("lossPercent applies to the traffic with peers, not to all"),
)]
pub struct NetworkCut {
    /// Pods whose sandbox network namespace gets the rules; empty means the node itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
    pub pods: Vec<PodRef>,
    /// Drop everything but loopback.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// The other side: CIDRs whose traffic with the pods (or node) is dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(max = 43)))]
    pub peers: Vec<String>,
    /// Which way the traffic with `peers` is dropped, seen from the pods (or node).
    #[serde(default, skip_serializing_if = "TrafficDirection::is_both")]
    pub direction: TrafficDirection,
    /// Drop only this share of the traffic with `peers` (whole percent, at random per
    /// packet); unset drops all of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub loss_percent: Option<u32>,
}

/// Which packets of a cut are dropped, seen from the side that gets the rules.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum TrafficDirection {
    /// To and from the peers.
    #[default]
    Both,
    /// Only what goes to the peers.
    Egress,
    /// Only what comes from the peers.
    Ingress,
}

impl TrafficDirection {
    /// Whether this is the default, both ways.
    pub fn is_both(&self) -> bool {
        *self == Self::Both
    }
}

/// Freeze or kill the processes of pods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessAction {
    #[schemars(length(min = 1, max = 500))]
    pub pods: Vec<PodRef>,
    pub signal: ProcessSignal,
}

/// See [`ProcessAction::signal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ProcessSignal {
    /// Stopped until revert or expiry.
    Freeze,
    /// Killed once (and again if restarted before expiry, as power is still off).
    Kill,
}

/// A pod's volume to remount read-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeAction {
    pub pod: PodRef,
    #[schemars(length(min = 1, max = 63))]
    pub volume: String,
}

/// A pod, pinned by UID so a replacement pod with the same name is never hit by mistake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodRef {
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 64))]
    pub uid: String,
}

/// Where an injection is, as reported by the agent.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum InjectionState {
    #[default]
    Pending,
    Applied,
    Reverted,
    Failed,
    /// Never applied: the agent will not act on it (a protected node, or a pod of a
    /// protected namespace). The message says why.
    Refused,
}

impl InjectionState {
    /// Whether the agent is done with it for good (`Reverted`, `Failed` or `Refused`).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Reverted | Self::Failed | Self::Refused)
    }
}

/// Reported by the agent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InjectionStatus {
    pub state: InjectionState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Each time the agent's re-check found part of the held fault gone (oldest first, at
    /// most [`MAX_LAPSES`]: see [`keep_longest_lapses`]). The agent re-applies what is gone at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lapses: Vec<Lapse>,
    /// What a person must act on. `JournalReadable=False`: the agent cannot read its
    /// journal entry for this Injection, so it cannot prove the fault reverted; the
    /// finalizer stays until the entry is dealt with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<super::experiment::Condition>,
}

/// The condition an agent sets when it cannot read its journal entry for an Injection.
pub const JOURNAL_READABLE: &str = "JournalReadable";

/// The most lapses an Injection's status keeps (the shortest healed ones go first).
pub const MAX_LAPSES: usize = 20;

/// Cuts `lapses` to [`MAX_LAPSES`] by removing the shortest healed ones: the longest decide
/// whether the fault held, and an open one is still growing, so those always stay.
pub fn keep_longest_lapses(lapses: &mut Vec<Lapse>) {
    while lapses.len() > MAX_LAPSES {
        let shortest = lapses
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.healed_at.map(|healed| (healed - l.since, i)))
            .min();
        match shortest {
            Some((_, i)) => {
                lapses.remove(i);
            }
            None => break,
        }
    }
}

/// One stretch without the whole fault in place, as the node agent measured it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lapse {
    /// The last check that found the whole fault in place: it may have gone any time since.
    pub since: DateTime<Utc>,
    /// The check that found part of it gone.
    pub seen_at: DateTime<Utc>,
    /// The first check after that found it whole again (unset while it is not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healed_at: Option<DateTime<Utc>>,
    /// What was missing, and whether re-applying it worked.
    pub what: String,
}
