//! The operator's one error type. Each error has a stable [`ErrorCategory`]: it decides how
//! soon a failure is retried and whether it deserves a Warning Event, and its string form is
//! the `category` label of the failure metric and of the log line.

use std::fmt;

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

/// What kind of failure an [`Error`] is. Code decides on the variant (a `match` is checked
/// for exhaustiveness, a string comparison is not); the string form exists only for the
/// metric label and the log field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCategory {
    /// The API server has no such object (it went while we worked).
    NotFound,
    /// Someone else wrote the object since we read it.
    Conflict,
    /// RBAC refused the call.
    Forbidden,
    /// The API server refused what we wrote (422).
    Rejected,
    /// Any other API failure: transport, timeouts, 5xx.
    KubeApi,
    Finalizer,
    /// The experiment cannot be planned; it says so in its own condition and Event.
    Plan,
    RevertPending,
    /// The object lacks something the API server always sets.
    Object,
    Encode,
    Lease,
    Setup,
    Serve,
}

impl ErrorCategory {
    /// The `category` label value. Dashboards and alerts select on it: never rename one.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Forbidden => "forbidden",
            Self::Rejected => "rejected",
            Self::KubeApi => "kube_api",
            Self::Finalizer => "finalizer",
            Self::Plan => "plan",
            Self::RevertPending => "revert_pending",
            Self::Object => "object",
            Self::Encode => "encode",
            Self::Lease => "lease",
            Self::Setup => "setup",
            Self::Serve => "serve",
        }
    }
}

impl fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// A stable, low-cardinality category for retries, Events and metrics.
    pub fn category(&self) -> ErrorCategory {
        use ErrorCategory as C;
        match self {
            Self::Kube(kube::Error::Api(status)) if status.is_not_found() => C::NotFound,
            Self::Kube(kube::Error::Api(status)) if status.code == 409 => C::Conflict,
            Self::Kube(kube::Error::Api(status)) if status.code == 403 => C::Forbidden,
            Self::Kube(kube::Error::Api(status)) if status.code == 422 => C::Rejected,
            Self::Kube(_) => C::KubeApi,
            Self::Finalizer(_) => C::Finalizer,
            Self::Plan { .. } => C::Plan,
            Self::RevertPending { .. } => C::RevertPending,
            Self::MissingField(_) => C::Object,
            Self::Encode(_) => C::Encode,
            Self::Lease(_) => C::Lease,
            Self::Setup(_) => C::Setup,
            Self::Serve(_) => C::Serve,
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
        use ErrorCategory as C;
        assert_eq!(api(404, "NotFound").category(), C::NotFound);
        assert_eq!(api(409, "Conflict").category(), C::Conflict);
        assert_eq!(api(403, "Forbidden").category(), C::Forbidden);
        assert_eq!(api(422, "Invalid").category(), C::Rejected);
        assert_eq!(api(500, "InternalError").category(), C::KubeApi);
        let plan: Error = PlanError::NoFault.into();
        assert_eq!(plan.category(), C::Plan);
        assert_eq!(plan.reason(), "NoFault");
        assert!(plan.to_string().starts_with("spec.fault: "));
        let pending = Error::RevertPending {
            remaining: 2,
            what: "a, b".into(),
        };
        assert_eq!(pending.category(), C::RevertPending);
        assert_eq!(Error::MissingField("uid").category(), C::Object);
        assert_eq!(Error::Lease("x".into()).category(), C::Lease);
    }

    #[test]
    fn category_labels_never_change() {
        use ErrorCategory as C;
        // The label values users' dashboards and alerts select on.
        let labels = [
            (C::NotFound, "not_found"),
            (C::Conflict, "conflict"),
            (C::Forbidden, "forbidden"),
            (C::Rejected, "rejected"),
            (C::KubeApi, "kube_api"),
            (C::Finalizer, "finalizer"),
            (C::Plan, "plan"),
            (C::RevertPending, "revert_pending"),
            (C::Object, "object"),
            (C::Encode, "encode"),
            (C::Lease, "lease"),
            (C::Setup, "setup"),
            (C::Serve, "serve"),
        ];
        for (category, label) in labels {
            assert_eq!(category.as_str(), label);
            assert_eq!(category.to_string(), label);
        }
        assert_eq!(api(404, "NotFound").category().as_str(), "not_found");
    }

    #[test]
    fn finalizer_errors_unwrap_to_the_reconcile_error() {
        use kube::runtime::finalizer::Error as F;
        let inner = F::CleanupFailed(Error::RevertPending {
            remaining: 1,
            what: "a".into(),
        });
        assert_eq!(Error::from(inner).category(), ErrorCategory::RevertPending);
        let outer: F<Error> = F::UnnamedObject;
        assert_eq!(Error::from(outer).category(), ErrorCategory::Finalizer);
    }
}
