//! The operator's one error type. Each error has a stable category, used as the `category`
//! label of the failure metric and as the reason of the Warning Event it causes.

use firedrill_core::planner::PlanError;

/// Everything that can go wrong in the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Adding or removing the operator's finalizer failed (cleanup errors are unwrapped).
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// The experiment cannot be planned (not opted in, over the blast radius, ...).
    #[error("{field}: {source}")]
    Plan {
        field: String,
        #[source]
        source: PlanError,
    },
    /// The fault's Injections are not all reverted yet; the Experiment keeps its finalizer.
    #[error("waiting for the agents to revert {remaining} injection(s): {what}")]
    RevertPending { remaining: usize, what: String },
    /// The object lacks something the API server always sets.
    #[error("the object has no {0}")]
    MissingField(&'static str),
    /// Encoding a patch failed.
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
    /// Leader election failed.
    #[error("leader election: {0}")]
    Lease(String),
    /// A client could not be built.
    #[error("setup: {0}")]
    Setup(String),
    /// Serving metrics failed.
    #[error("metrics server: {0}")]
    Serve(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<PlanError> for Error {
    fn from(source: PlanError) -> Self {
        Self::Plan {
            field: source.field(),
            source,
        }
    }
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    fn from(error: kube::runtime::finalizer::Error<Error>) -> Self {
        use kube::runtime::finalizer::Error as F;
        match error {
            F::ApplyFailed(e) | F::CleanupFailed(e) => e,
            other => Self::Finalizer(other.to_string()),
        }
    }
}

impl Error {
    /// A stable, low-cardinality name for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube(kube::Error::Api(status)) if status.is_not_found() => "not_found",
            Self::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Self::Kube(kube::Error::Api(status)) if status.code == 403 => "forbidden",
            Self::Kube(kube::Error::Api(status)) if status.code == 422 => "rejected",
            Self::Kube(_) => "kube_api",
            Self::Finalizer(_) => "finalizer",
            Self::Plan { .. } => "plan",
            Self::RevertPending { .. } => "revert_pending",
            Self::MissingField(_) => "object",
            Self::Encode(_) => "encode",
            Self::Lease(_) => "lease",
            Self::Setup(_) => "setup",
            Self::Serve(_) => "serve",
        }
    }

    /// The CamelCase reason of the Warning Event this error causes.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Kube(_) => "KubernetesApiError",
            Self::Finalizer(_) => "FinalizerError",
            Self::Plan { source, .. } => source.reason(),
            Self::RevertPending { .. } => "RevertPending",
            Self::MissingField(_) => "MalformedObject",
            Self::Encode(_) => "EncodingError",
            Self::Lease(_) => "LeaderElectionError",
            Self::Setup(_) => "SetupError",
            Self::Serve(_) => "MetricsServerError",
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn api(code: u16, reason: &str) -> Error {
        let mut status = Status::failure("boom", reason);
        status.code = code;
        Error::Kube(kube::Error::Api(Box::new(status)))
    }

    #[test]
    fn categories_are_stable_and_low_cardinality() {
        assert_eq!(api(404, "NotFound").category(), "not_found");
        assert_eq!(api(409, "Conflict").category(), "conflict");
        assert_eq!(api(403, "Forbidden").category(), "forbidden");
        assert_eq!(api(422, "Invalid").category(), "rejected");
        assert_eq!(api(500, "InternalError").category(), "kube_api");
        let plan: Error = PlanError::NoFault.into();
        assert_eq!(plan.category(), "plan");
        assert_eq!(plan.reason(), "NoFault");
        assert!(plan.to_string().starts_with("spec.fault: "));
        let pending = Error::RevertPending {
            remaining: 2,
            what: "a, b".into(),
        };
        assert_eq!(pending.category(), "revert_pending");
        assert_eq!(Error::MissingField("uid").category(), "object");
        assert_eq!(Error::Lease("x".into()).category(), "lease");
    }

    #[test]
    fn finalizer_errors_unwrap_to_the_reconcile_error() {
        use kube::runtime::finalizer::Error as F;
        let inner = F::CleanupFailed(Error::RevertPending {
            remaining: 1,
            what: "a".into(),
        });
        assert_eq!(Error::from(inner).category(), "revert_pending");
        let outer: F<Error> = F::UnnamedObject;
        assert_eq!(Error::from(outer).category(), "finalizer");
    }
}
