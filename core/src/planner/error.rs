//! Why a plan was refused. Each refusal names the spec field at fault, for the `Invalid`
//! condition on a cluster and the error line in the lab.

use crate::api::{CONSENT_ANNOTATION, NODE_FAULT_GRANT_LABEL, NODE_FAULT_GRANT_VALUE};
use crate::api::{OPT_IN_LABEL, OPT_IN_VALUE};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("namespace {namespace} is protected and never a target")]
    ProtectedNamespace { index: usize, namespace: String },
    #[error("namespace {namespace} does not exist")]
    NamespaceNotFound { index: usize, namespace: String },
    #[error(
        "namespace {namespace} has not opted in to chaos: label it {OPT_IN_LABEL}={OPT_IN_VALUE}"
    )]
    NotOptedIn { index: usize, namespace: String },
    #[error(
        "namespace {namespace} does not let Experiments of {from} target it: its annotation \
         {CONSENT_ANNOTATION} must list {from}"
    )]
    NotConsented {
        index: usize,
        namespace: String,
        from: String,
    },
    #[error(
        "{fault} acts on whole nodes (every tenant's pods on them), which needs a cluster-level \
         grant: label namespace {from} {NODE_FAULT_GRANT_LABEL}={NODE_FAULT_GRANT_VALUE}"
    )]
    NoNodeFaultGrant { fault: &'static str, from: String },
    #[error("the experiment has no single fault")]
    NoFault,
    #[error("{fault} acts on the pods picked by target.selector, which is missing")]
    NoSelector { fault: &'static str },
    #[error("zone {zone} has no node that may be a target{excluded}")]
    EmptyZone { zone: String, excluded: String },
    #[error("the {side} side of the {fault} matches no pod in the target namespaces")]
    EmptySide {
        fault: &'static str,
        side: &'static str,
    },
    #[error("pod {pod} is on both sides of the {fault}")]
    BothSides { fault: &'static str, pod: String },
    #[error("{why}")]
    Unsupported {
        field: &'static str,
        why: &'static str,
    },
    #[error("pod {pod}: {why}")]
    Volume { pod: String, why: String },
    #[error("the fault selects nothing: {what}")]
    NoTargets { what: String },
    #[error(
        "{count} target(s) ({count} of {candidates} candidates) exceed the blast radius (at most \
         {max_targets} and {max_percent}%): {list}"
    )]
    BlastRadius {
        count: usize,
        candidates: usize,
        max_targets: u32,
        max_percent: u32,
        list: String,
    },
    #[error("node {node} would get {count} {what} in one injection, more than {max}")]
    TooLarge {
        node: String,
        what: &'static str,
        count: usize,
        max: usize,
    },
    #[error("the Experiment has no {0} yet")]
    Unsaved(&'static str),
}

impl PlanError {
    /// The spec field to blame, as a path from `spec`.
    pub fn field(&self) -> String {
        match self {
            Self::ProtectedNamespace { index, .. }
            | Self::NamespaceNotFound { index, .. }
            | Self::NotOptedIn { index, .. }
            | Self::NotConsented { index, .. } => format!("spec.target.namespaces[{index}]"),
            Self::NoNodeFaultGrant { .. } | Self::NoFault | Self::TooLarge { .. } => {
                "spec.fault".into()
            }
            Self::NoSelector { .. } | Self::NoTargets { .. } => "spec.target.selector".into(),
            Self::EmptyZone { .. } => "spec.fault.zoneBlackout".into(),
            Self::EmptySide { fault, side } => format!("spec.fault.{fault}.{side}"),
            Self::BothSides { fault, .. } => format!("spec.fault.{fault}"),
            Self::Unsupported { field, .. } => (*field).into(),
            Self::Volume { .. } => "spec.fault.diskLoss.volume".into(),
            Self::BlastRadius { .. } => "spec.blastRadius".into(),
            Self::Unsaved(_) => "metadata".into(),
        }
    }

    /// A CamelCase reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ProtectedNamespace { .. } => "ProtectedNamespace",
            Self::NamespaceNotFound { .. } => "NamespaceNotFound",
            Self::NotOptedIn { .. } => "NamespaceNotOptedIn",
            Self::NotConsented { .. } => "NamespaceNotConsented",
            Self::NoNodeFaultGrant { .. } => "NodeFaultNotGranted",
            Self::NoFault => "NoFault",
            Self::NoSelector { .. } => "NoSelector",
            Self::EmptyZone { .. } => "EmptyZone",
            Self::EmptySide { .. } => "EmptyPartitionSide",
            Self::BothSides { .. } => "PodOnBothSides",
            Self::Unsupported { .. } => "Unsupported",
            Self::Volume { .. } => "VolumeNotFound",
            Self::NoTargets { .. } => "NoTargets",
            Self::BlastRadius { .. } => "BlastRadiusExceeded",
            Self::TooLarge { .. } => "InjectionTooLarge",
            Self::Unsaved(_) => "Unsaved",
        }
    }
}
