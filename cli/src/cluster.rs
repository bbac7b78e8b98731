//! The cluster side of chaosctl: which cluster to talk to, and every API error turned into
//! plain words that say what to do.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// The field manager of everything chaosctl writes.
pub const FIELD_MANAGER: &str = "chaosctl";
pub use firedrill_core::api::ABORT_ANNOTATION;

/// Which cluster to talk to. Without either flag: the current context of `KUBECONFIG` (or
/// `~/.kube/config`).
#[derive(Debug, Clone, Default, Args)]
pub struct ClusterArgs {
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, value_name = "CONTEXT", global = true)]
    pub context: Option<String>,
    /// The kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "FILE", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The namespace firedrill is installed in: the cluster-wide pause is kept on it.
    #[arg(
        long,
        value_name = "NAMESPACE",
        global = true,
        env = "FIREDRILL_NAMESPACE",
        default_value = "firedrill-system"
    )]
    pub firedrill_namespace: String,
}

impl ClusterArgs {
    /// The namespace firedrill is installed in (`firedrill-system` unless told).
    pub fn firedrill_namespace(&self) -> &str {
        match self.firedrill_namespace.trim() {
            "" => "firedrill-system",
            ns => ns,
        }
    }

    /// True when the user named a cluster on the command line.
    pub fn given(&self) -> bool {
        self.context.is_some() || self.kubeconfig.is_some()
    }

    /// Where the configuration comes from, for error messages.
    fn source(&self) -> String {
        let file = match &self.kubeconfig {
            Some(path) => path.display().to_string(),
            None => std::env::var("KUBECONFIG")
                .map(|k| format!("KUBECONFIG={k}"))
                .unwrap_or_else(|_| "~/.kube/config".to_owned()),
        };
        match &self.context {
            Some(context) => format!("context {context} of {file}"),
            None => format!("the current context of {file}"),
        }
    }
}

/// Builds a client. Connection problems show up at the first request, where they are
/// classified by [`ClusterError::from_kube`].
pub async fn connect(args: &ClusterArgs) -> Result<(Client, String), ClusterError> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        cluster: None,
        user: None,
    };
    let source = args.source();
    let config_error = |detail: String| ClusterError::Config {
        origin: source.clone(),
        detail,
    };
    let mut config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig =
                Kubeconfig::read_from(path).map_err(|e| config_error(e.to_string()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| config_error(e.to_string()))?
        }
        None => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| config_error(e.to_string()))?,
    };
    config.connect_timeout = Some(Duration::from_secs(5));
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| config_error(e.to_string()))?;
    Ok((client, format!("{server} ({source})")))
}

/// What a request was trying to do, so an error can name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// `get`, `list`, `watch`, `patch`, `delete`, `apply`.
    pub verb: &'static str,
    /// The plural resource (`experiments`, `injections`, ...).
    pub resource: &'static str,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Op {
    pub fn new(verb: &'static str, resource: &'static str) -> Self {
        Self {
            verb,
            resource,
            namespace: None,
            name: None,
        }
    }

    pub fn ns(mut self, namespace: Option<&str>) -> Self {
        self.namespace = namespace.map(str::to_owned);
        self
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    fn scope(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("in namespace {ns}"),
            None => "in all namespaces (cluster-wide)".to_owned(),
        }
    }

    fn group(&self) -> &'static str {
        match self.resource {
            "pods" | "namespaces" | "nodes" => "\"\" (core)",
            _ => "firedrill.dev",
        }
    }
}

/// Everything that can stop a cluster command, each with a stable category (shown as
/// `[category]`) and a message that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "cannot load a cluster configuration from {origin}: {detail}\n  \
         what to do: check --kubeconfig/--context or KUBECONFIG (`kubectl config get-contexts` lists the contexts)"
    )]
    Config { origin: String, detail: String },
    #[error(
        "cannot reach the API server ({detail})\n  \
         what to do: check that the cluster is up and that --context/KUBECONFIG point at it \
         (`kubectl config current-context`, `kubectl cluster-info`)"
    )]
    Unreachable { detail: String },
    #[error(
        "the API server rejected your credentials ({detail})\n  \
         what to do: refresh the credentials in your kubeconfig (token expired? wrong user in the context?)"
    )]
    Unauthorized { detail: String },
    #[error(
        "RBAC forbids you to {verb} {resource} {scope} ({detail})\n  \
         what to do: ask for a Role/ClusterRole granting {verb} on {resource} in API group {group}; \
         check with `kubectl auth can-i {verb} {resource}.firedrill.dev{ns_flag}`"
    )]
    Forbidden {
        verb: &'static str,
        resource: &'static str,
        scope: String,
        group: &'static str,
        ns_flag: String,
        detail: String,
    },
    #[error(
        "the cluster does not serve {resource}.firedrill.dev: the firedrill CRDs are not installed\n  \
         what to do: install the chart (`helm install firedrill charts/firedrill -n firedrill-system --create-namespace`) \
         or just the CRDs (`chaosctl crds | kubectl apply -f -`)"
    )]
    CrdMissing { resource: &'static str },
    #[error(
        "{resource} {name:?} not found {scope}\n  \
         what to do: check the name and namespace (`chaosctl get {resource} -A` lists them all)"
    )]
    NotFound {
        resource: &'static str,
        name: String,
        scope: String,
    },
    #[error(
        "the API server refused {resource} {name:?}: {detail}\n  \
         what to do: fix the manifest (`chaosctl validate FILE` shows every problem with its line)"
    )]
    Rejected {
        resource: &'static str,
        name: String,
        detail: String,
    },
    #[error(
        "conflict on {resource} {name:?}: {detail}\n  \
         what to do: someone else changed or owns it; look at it (`chaosctl describe`) and retry"
    )]
    Conflict {
        resource: &'static str,
        name: String,
        detail: String,
    },
    #[error(
        "the API server failed to {verb} {resource} (HTTP {code}: {detail})\n  \
         what to do: retry; if it persists, look at the API server's health (`kubectl get --raw /readyz?verbose`)"
    )]
    Api {
        verb: &'static str,
        resource: &'static str,
        code: u16,
        detail: String,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {detail}")]
    Plan { path: String, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode the output: {0}")]
    Encode(#[from] serde_json::Error),
}

impl ClusterError {
    /// A stable, low-cardinality name for the kind of error.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Config { .. } => "kubeconfig",
            Self::Unreachable { .. } => "unreachable",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::CrdMissing { .. } => "crd_missing",
            Self::NotFound { .. } => "not_found",
            Self::Rejected { .. } => "rejected",
            Self::Conflict { .. } => "conflict",
            Self::Api { .. } => "api",
            Self::Usage(_) => "usage",
            Self::Plan { .. } => "plan",
            Self::Io { .. } => "io",
            Self::Encode(_) => "encode",
        }
    }

    /// The error of a failed request, in words that say what to do.
    pub fn from_kube(error: kube::Error, op: &Op) -> Self {
        let status = match error {
            kube::Error::Api(status) => status,
            kube::Error::Auth(e) => {
                return Self::Unauthorized {
                    detail: e.to_string(),
                };
            }
            other => {
                return Self::Unreachable {
                    detail: chain(&other),
                };
            }
        };
        let name = op.name.clone().unwrap_or_default();
        let detail = status.message.clone();
        match status.code {
            401 => Self::Unauthorized { detail },
            403 => Self::Forbidden {
                verb: op.verb,
                resource: op.resource,
                scope: op.scope(),
                group: op.group(),
                ns_flag: op
                    .namespace
                    .as_ref()
                    .map_or_else(|| " -A".to_owned(), |ns| format!(" -n {ns}")),
                detail,
            },
            404 if op.name.is_none()
                || status.reason == "NotFound"
                    && detail.contains("could not find the requested resource")
                || detail.contains("the server could not find the requested resource") =>
            {
                Self::CrdMissing {
                    resource: op.resource,
                }
            }
            404 => Self::NotFound {
                resource: op.resource,
                name,
                scope: op.scope(),
            },
            409 => Self::Conflict {
                resource: op.resource,
                name,
                detail,
            },
            400 | 422 => Self::Rejected {
                resource: op.resource,
                name,
                detail,
            },
            code => Self::Api {
                verb: op.verb,
                resource: op.resource,
                code,
                detail,
            },
        }
    }
}

/// An error and its causes on one line (`connection refused` is usually the last cause).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A Kubernetes timestamp as chrono's.
pub fn time(
    t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(
        t.0.as_second(),
        u32::try_from(t.0.subsec_nanosecond()).unwrap_or(0),
    )
}

/// The runtime the cluster commands run on (two workers: the machine has two cores).
pub fn runtime() -> Result<tokio::runtime::Runtime, ClusterError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| ClusterError::Io {
            path: "tokio runtime".to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        let mut status = Status::failure(message, reason);
        status.code = code;
        kube::Error::Api(Box::new(status))
    }

    fn get() -> Op {
        Op::new("get", "experiments").ns(Some("talk")).name("zb")
    }

    #[test]
    fn forbidden_names_the_verb_resource_and_namespace() {
        let e = ClusterError::from_kube(api(403, "Forbidden", "user x cannot"), &get());
        assert_eq!(e.category(), "forbidden");
        let text = e.to_string();
        assert!(
            text.contains("RBAC forbids you to get experiments in namespace talk"),
            "{text}"
        );
        assert!(
            text.contains("kubectl auth can-i get experiments.firedrill.dev -n talk"),
            "{text}"
        );
        let all = Op::new("list", "injections");
        let text = ClusterError::from_kube(api(403, "Forbidden", "no"), &all).to_string();
        assert!(
            text.contains("cluster-wide") && text.contains(" -A`"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_resource_type_means_the_crds_are_not_installed() {
        let e = ClusterError::from_kube(
            api(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
            &get(),
        );
        assert_eq!(e.category(), "crd_missing");
        assert!(
            e.to_string()
                .contains("helm install firedrill charts/firedrill")
        );
        // A list can only 404 when the type is not served.
        let list = Op::new("list", "gamedays").ns(Some("talk"));
        let e = ClusterError::from_kube(api(404, "NotFound", "whatever"), &list);
        assert_eq!(e.category(), "crd_missing");
    }

    #[test]
    fn a_missing_object_is_not_found_with_a_hint() {
        let e = ClusterError::from_kube(
            api(
                404,
                "NotFound",
                "experiments.firedrill.dev \"zb\" not found",
            ),
            &get(),
        );
        assert_eq!(e.category(), "not_found");
        let text = e.to_string();
        assert!(
            text.contains("experiments \"zb\" not found in namespace talk"),
            "{text}"
        );
        assert!(text.contains("chaosctl get experiments -A"), "{text}");
    }

    #[test]
    fn other_codes_have_their_own_categories() {
        let cat = |code, reason| ClusterError::from_kube(api(code, reason, "m"), &get()).category();
        assert_eq!(cat(401, "Unauthorized"), "unauthorized");
        assert_eq!(cat(409, "Conflict"), "conflict");
        assert_eq!(cat(422, "Invalid"), "rejected");
        assert_eq!(cat(500, "InternalError"), "api");
        let io = kube::Error::ReadEvents(std::io::Error::other("connection refused"));
        let e = ClusterError::from_kube(io, &get());
        assert_eq!(e.category(), "unreachable");
        assert!(e.to_string().contains("connection refused"));
        assert!(e.to_string().contains("KUBECONFIG"));
    }
}
