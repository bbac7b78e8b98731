//! The agent's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in the agent. [`Error::category`] is stable: it is the
/// `category` field of log lines (the agent's metrics) and never changes with wording.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Injection asks for something that cannot be done as written.
    #[error("invalid injection: {0}")]
    Invalid(String),

    /// A listed pod has no running process on this node (not started yet, or gone).
    #[error("pod {pod} has no running process on this node")]
    PodNotFound { pod: String },

    /// A listed pod shares the node's network namespace: cutting it would cut the node.
    #[error("pod {pod} uses the node's network (hostNetwork); refusing to cut the node instead")]
    HostNetworkPod { pod: String },

    /// The pod's volume directory is not under the kubelet's root directory.
    #[error("volume {volume:?} of pod {pod} not found under {dir}")]
    VolumeNotFound {
        pod: String,
        volume: String,
        dir: PathBuf,
    },

    /// Reading `/proc` (or the kubelet's directory) failed.
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A fault primitive failed.
    #[error(transparent)]
    Fault(#[from] firedrill_faults::Error),

    /// The API server refused or could not be reached.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    /// The agent's own configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    /// A short, stable, snake_case name for log-based metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid",
            Error::PodNotFound { .. } => "pod_not_found",
            Error::HostNetworkPod { .. } => "host_network_pod",
            Error::VolumeNotFound { .. } => "volume_not_found",
            Error::Read { .. } => "read",
            Error::Fault(_) => "fault",
            Error::Kube(_) => "kube",
            Error::Config(_) => "config",
        }
    }

    pub(crate) fn read(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Read { path, source }
    }
}

/// Result alias of the agent.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_stable() {
        assert_eq!(Error::Invalid("x".into()).category(), "invalid");
        let e = Error::HostNetworkPod { pod: "a/b".into() };
        assert_eq!(e.category(), "host_network_pod");
        assert!(e.to_string().contains("hostNetwork"));
        let e: Error = firedrill_faults::Error::Internal("x".into()).into();
        assert_eq!(e.category(), "fault");
    }
}
