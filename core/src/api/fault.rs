//! The faults an experiment can inject. Exactly one is set per experiment.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::selector::LabelSelector;

/// The one fault to inject. Exactly one field is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new(
    "[has(self.zoneBlackout), has(self.networkPartition), has(self.networkLoss), has(self.diskLoss), has(self.opsToolOutage), has(self.podKill)].filter(x, x).size() == 1"
).message("exactly one fault must be set: zoneBlackout, networkPartition, networkLoss, diskLoss, opsToolOutage or podKill"))]
pub struct Fault {
    /// A whole zone loses power or connectivity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_blackout: Option<ZoneBlackout>,
    /// Groups of pods (or zones) stop reaching each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_partition: Option<NetworkPartition>,
    /// A share of the packets between groups of pods (or zones) is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_loss: Option<NetworkLoss>,
    /// A replica's disk is gone or read-only (targets: `target.selector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_loss: Option<DiskLoss>,
    /// Monitoring, alerting, deploy or admin tools go down (targets: `target.selector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_tool_outage: Option<OpsToolOutage>,
    /// Selected pods are deleted (targets: `target.selector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_kill: Option<PodKill>,
}

/// The kind of a fault, borrowed from a [`Fault`] with exactly one field set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind<'a> {
    ZoneBlackout(&'a ZoneBlackout),
    NetworkPartition(&'a NetworkPartition),
    NetworkLoss(&'a NetworkLoss),
    DiskLoss(&'a DiskLoss),
    OpsToolOutage(&'a OpsToolOutage),
    PodKill(&'a PodKill),
}

impl Fault {
    /// The fault's kind, or `None` when not exactly one is set (refused by validation).
    pub fn kind(&self) -> Option<FaultKind<'_>> {
        let kinds: Vec<FaultKind<'_>> = [
            self.zone_blackout.as_ref().map(FaultKind::ZoneBlackout),
            self.network_partition
                .as_ref()
                .map(FaultKind::NetworkPartition),
            self.network_loss.as_ref().map(FaultKind::NetworkLoss),
            self.disk_loss.as_ref().map(FaultKind::DiskLoss),
            self.ops_tool_outage.as_ref().map(FaultKind::OpsToolOutage),
            self.pod_kill.as_ref().map(FaultKind::PodKill),
        ]
        .into_iter()
        .flatten()
        .collect();
        match kinds.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// The manifest name of the fault, for reports and printer columns.
    pub fn name(&self) -> &'static str {
        match self.kind() {
            Some(FaultKind::ZoneBlackout(_)) => "zoneBlackout",
            Some(FaultKind::NetworkPartition(_)) => "networkPartition",
            Some(FaultKind::NetworkLoss(_)) => "networkLoss",
            Some(FaultKind::DiskLoss(_)) => "diskLoss",
            Some(FaultKind::OpsToolOutage(_)) => "opsToolOutage",
            Some(FaultKind::PodKill(_)) => "podKill",
            None => "invalid",
        }
    }

    /// Faults whose targets are the pods picked by `target.selector`.
    pub fn needs_pod_selector(&self) -> bool {
        matches!(
            self.kind(),
            Some(FaultKind::DiskLoss(_) | FaultKind::OpsToolOutage(_) | FaultKind::PodKill(_))
        )
    }
}

/// Every node labelled `topology.kubernetes.io/zone=<zone>` (every lab node of the zone)
/// loses power or connectivity. With `zones`, several zones go dark at the same moment: a
/// site-wide power cut, the failure that only data already on disk survives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("has(self.zone) != (has(self.zones) && size(self.zones) > 0)")
    .message("a zone blackout takes either zone or zones, not both and not neither"))]
pub struct ZoneBlackout {
    /// The zone, as in the `topology.kubernetes.io/zone` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
    )]
    pub zone: Option<String>,
    /// Several zones that go dark together (instead of `zone`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 63)))]
    pub zones: Vec<String>,
    /// `Freeze` the zone's processes (a hang, like a lost network with live machines) or
    /// `Kill` them (a power loss: state not on disk is gone).
    #[serde(default)]
    pub mode: BlackoutMode,
    /// Also cut every network link of the zone's nodes (default true), so they go NotReady.
    #[serde(default = "yes")]
    pub cut_network: bool,
}

impl ZoneBlackout {
    /// Every zone that goes dark: `zone`, or each of `zones`.
    pub fn all_zones(&self) -> Vec<&str> {
        self.zone
            .iter()
            .chain(&self.zones)
            .map(String::as_str)
            .collect()
    }
}

fn yes() -> bool {
    true
}

/// How a blackout treats the zone's processes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum BlackoutMode {
    #[default]
    Kill,
    Freeze,
}

/// Traffic between `left` and `right` is dropped. Peers in neither group keep reaching both
/// (a partial, "bridge" split).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new(ZONE_ON_ONE_SIDE).message("a zone cannot be on both sides of a partition"))]
pub struct NetworkPartition {
    /// One side of the split.
    pub left: PeerGroup,
    /// The other side.
    pub right: PeerGroup,
    /// Which way traffic is dropped.
    #[serde(default)]
    pub direction: PartitionDirection,
}

/// A partition's and a loss's CEL rule: no zone on both sides.
const ZONE_ON_ONE_SIDE: &str = "!(has(self.left.zones) && has(self.right.zones)) || !self.left.zones.exists(z, z in self.right.zones)";

/// `percent` of the packets between `left` and `right` are dropped, at random and each on
/// its own (nftables' random number per packet, no netem needed). Sides and direction
/// mean what they mean in a [`NetworkPartition`]; 100 is a partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new(ZONE_ON_ONE_SIDE).message("a zone cannot be on both sides of a network loss"))]
pub struct NetworkLoss {
    /// One side.
    pub left: PeerGroup,
    /// The other side.
    pub right: PeerGroup,
    /// Which way packets are dropped.
    #[serde(default)]
    pub direction: PartitionDirection,
    /// The share of packets dropped, in whole percent (1 to 100).
    #[schemars(range(min = 1, max = 100))]
    pub percent: u32,
    /// Added latency. Refused: it needs the kernel's netem qdisc, which firedrill's
    /// kernels lack (see the faults README for how it would work where netem exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<super::Duration>,
}

/// Why `delay` is refused, for validation and the planner alike.
pub const LATENCY_REFUSED: &str = "latency needs the kernel's netem qdisc, which this kernel \
     lacks; firedrill injects no latency. Drop packets instead: remove delay and keep percent";

/// A set of peers: whole zones, or pods picked by a selector. Exactly one is given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("(has(self.zones) && size(self.zones) > 0) != has(self.selector)")
    .message("a peer group takes either zones or a selector, not both and not neither"))]
pub struct PeerGroup {
    /// Zones whose every pod (or lab node) is in the group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 63)))]
    pub zones: Vec<String>,
    /// Pods in the experiment's namespaces matching this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// Which way a partition drops traffic.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum PartitionDirection {
    /// Neither side reaches the other.
    #[default]
    Both,
    /// Left cannot reach right; right still reaches left.
    LeftToRight,
    /// Right cannot reach left; left still reaches right.
    RightToLeft,
}

/// A replica's disk is lost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiskLoss {
    /// `Wipe`: the volume is replaced by a fresh empty one (the PVC and pod are deleted).
    /// `ReadOnly`: the volume is remounted read-only for the duration.
    #[serde(default)]
    pub mode: DiskLossMode,
    /// The volume (name in the pod spec) holding the data; default: the pod's only PVC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub volume: Option<String>,
}

/// See [`DiskLoss::mode`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum DiskLossMode {
    #[default]
    Wipe,
    ReadOnly,
}

/// Ops tools go down for the duration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpsToolOutage {
    /// `Stop`: scaled to zero / killed and kept down. `Isolate`: running but cut off the
    /// network. `Freeze`: hung.
    #[serde(default)]
    pub mode: OutageMode,
}

/// See [`OpsToolOutage::mode`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum OutageMode {
    #[default]
    Stop,
    Isolate,
    Freeze,
}

/// Selected pods are deleted once, at injection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodKill {
    /// Grace period for the deletion; 0 kills at once.
    #[serde(default)]
    #[schemars(range(min = 0, max = 300))]
    pub grace_period_seconds: u32,
}
