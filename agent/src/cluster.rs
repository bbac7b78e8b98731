//! The agent's calls to the API server, and nothing else: watching this node's Injections
//! in firedrill's own namespace, reading this node's labels, writing status and Events,
//! adding and removing the agent's finalizer. Every call has a short deadline so an
//! unreachable API server (a zone blackout) never holds up the timer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use firedrill_core::api::{Injection, protected_namespaces};
use futures_util::Stream;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use crate::contract::{AGENT_FINALIZER, FIELD_MANAGER, next_status, node_selector, status_patch};
use crate::error::{Error, Result};
use crate::planner::Report;

/// How long one API call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a heartbeat read may take: it is made every couple of seconds while faults are
/// held, and must not hold up the loop's reverts when the API server is out of reach.
pub const HEARTBEAT_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// What the watch of this node's Injections yields.
pub type WatchEvent = std::result::Result<watcher::Event<Injection>, watcher::Error>;

/// The API server, for one node's agent.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    node: String,
    /// firedrill's own namespace: the only one whose Injections the agent follows (the
    /// operator writes them there, and only it may), and a protected one.
    namespace: String,
    protected: BTreeSet<String>,
    recorder: Recorder,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node)
            .field("namespace", &self.namespace)
            .finish()
    }
}

async fn deadline<T>(call: impl Future<Output = kube::Result<T>>) -> Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Error::Kube(kube::Error::Service(
            format!("no answer from the API server in {CALL_TIMEOUT:?}").into(),
        ))),
    }
}

fn is_gone(e: &Error) -> bool {
    matches!(e, Error::Kube(kube::Error::Api(s)) if s.code == 404)
}

impl Cluster {
    /// The agent of `node`, following the Injections of firedrill's `namespace`.
    pub fn new(client: Client, node: impl Into<String>, namespace: impl Into<String>) -> Self {
        let node = node.into();
        let namespace = namespace.into();
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: Some(node.clone()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            protected: protected_namespaces(&namespace),
            client,
            node,
            namespace,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The namespaces whose pods the agent never touches.
    pub fn protected(&self) -> &BTreeSet<String> {
        &self.protected
    }

    fn api(&self) -> Api<Injection> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// This node's Injections in firedrill's namespace, by the node label; when the node's
    /// name cannot be a label value (so the operator sets none), every Injection there (the
    /// caller filters by `spec.nodeName` in any case). Injections anywhere else are never
    /// seen: RBAC lets tenants create none here, and the agent reads nothing else.
    pub fn watch(&self) -> impl Stream<Item = WatchEvent> + Send + use<> {
        let api = self.api();
        let config = match node_selector(&self.node) {
            Some(selector) => watcher::Config::default().labels(&selector),
            None => {
                tracing::warn!(node = %self.node, "the node name is no label value: watching every Injection");
                watcher::Config::default()
            }
        };
        watcher(api, config).default_backoff()
    }

    /// Writes the status after `report` by server-side apply. An Injection that is gone
    /// needs no status.
    pub async fn report(&self, injection: &Injection, report: &Report) -> Result<()> {
        let status = next_status(injection.status.as_ref(), report);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patch = status_patch(&status)?;
        let api = self.api();
        let name = injection.name_any();
        let patch = Patch::Apply(&patch);
        match deadline(api.patch_status(&name, &params, &patch)).await {
            Ok(_) => Ok(()),
            Err(e) if is_gone(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sets the finalizer list of `injection` to what `change` makes of it; the
    /// resourceVersion makes a concurrent change fail (and be retried on a fresh read)
    /// rather than be lost. `Ok(false)` when the Injection is gone.
    ///
    /// The first try patches the copy the watch delivered, without reading it again: that
    /// copy is nearly always current, and when it is not, its resourceVersion makes the
    /// patch fail with a conflict and the next try reads. One round trip instead of two for
    /// each Injection applied or released (operator/README.md, "Scale").
    async fn finalizers(
        &self,
        injection: &Injection,
        adding: bool,
        change: impl Fn(&[String]) -> Option<Vec<String>>,
    ) -> Result<bool> {
        let api = self.api();
        let name = injection.name_any();
        let mut watched = injection
            .resource_version()
            .is_some()
            .then(|| injection.clone());
        for _ in 0..4 {
            let (fresh, read) = match watched.take() {
                Some(copy) => (copy, false),
                None => match deadline(api.get_opt(&name)).await? {
                    Some(fresh) => (fresh, true),
                    None => return Ok(false),
                },
            };
            // A replaced object is another Injection; one being deleted takes no new
            // finalizer (and must not be applied).
            if fresh.uid() != injection.uid()
                || (adding && fresh.metadata.deletion_timestamp.is_some())
            {
                return Ok(false);
            }
            let Some(wanted) = change(fresh.finalizers()) else {
                // Nothing to change is only believed of a copy read now: a late watch copy
                // may not show the finalizer this agent put on since.
                if read {
                    return Ok(true);
                }
                continue;
            };
            let patch = json!({
                "metadata": {"finalizers": wanted, "resourceVersion": fresh.resource_version()}
            });
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            };
            match deadline(api.patch(&name, &params, &Patch::Merge(&patch))).await {
                Ok(_) => return Ok(true),
                Err(Error::Kube(kube::Error::Api(s))) if s.code == 409 => continue,
                Err(e) if is_gone(&e) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Err(Error::Config(format!(
            "the finalizers of {name} kept changing under the agent"
        )))
    }

    /// The heartbeat Lease `name` in firedrill's namespace as the API server tells it now
    /// (see [`crate::driver::Answer`]); `None` when it did not answer within
    /// [`HEARTBEAT_READ_TIMEOUT`] (this node may be cut off: then it cannot tell).
    pub async fn heartbeat(&self, name: &str) -> Option<crate::driver::Answer> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        match tokio::time::timeout(HEARTBEAT_READ_TIMEOUT, api.get(name)).await {
            Ok(Ok(lease)) => {
                let spec = lease.spec.unwrap_or_default();
                Some(format!(
                    "held by {} renewed at {}",
                    spec.holder_identity.as_deref().unwrap_or("nobody"),
                    spec.renew_time
                        .map_or_else(|| "never".to_owned(), |t| t.0.to_string())
                ))
            }
            Ok(Err(kube::Error::Api(status))) => {
                tracing::warn!(lease = name, code = status.code, reason = %status.message, "the heartbeat Lease cannot be read: its faults revert at the timeout");
                Some(format!("answered {} {}", status.code, status.reason))
            }
            Ok(Err(e)) => {
                tracing::debug!(lease = name, error = %e, "no answer for the heartbeat Lease");
                None
            }
            Err(_) => None,
        }
    }

    /// This node's labels, read now (whether it is protected is decided on them).
    pub async fn node_labels(&self) -> Result<BTreeMap<String, String>> {
        let api: Api<Node> = Api::all(self.client.clone());
        let node = deadline(api.get(&self.node)).await?;
        Ok(node.metadata.labels.unwrap_or_default())
    }

    /// Publishes a Warning Event about `injection`; a failure is logged, never fatal.
    pub async fn warn(&self, injection: &Injection, reason: &str, note: &str) {
        let event = Event {
            type_: EventType::Warning,
            reason: reason.to_owned(),
            note: Some(note.to_owned()),
            action: reason.to_owned(),
            secondary: None,
        };
        let regarding = injection.object_ref(&());
        let publish = self.recorder.publish(&event, &regarding);
        match tokio::time::timeout(CALL_TIMEOUT, publish).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not publish an event"),
            Err(_) => tracing::warn!("could not publish an event: no answer in time"),
        }
    }

    /// Adds the agent's finalizer (before applying). `Ok(false)` when the Injection is gone
    /// or being deleted, so it must not be applied.
    pub async fn add_finalizer(&self, injection: &Injection) -> Result<bool> {
        self.finalizers(injection, true, |current| {
            (!current.iter().any(|f| f == AGENT_FINALIZER)).then(|| {
                let mut list = current.to_vec();
                list.push(AGENT_FINALIZER.to_owned());
                list
            })
        })
        .await
    }

    /// Removes the agent's finalizer (once nothing is in place).
    pub async fn release(&self, injection: &Injection) -> Result<()> {
        self.finalizers(injection, false, |current| {
            current.iter().any(|f| f == AGENT_FINALIZER).then(|| {
                current
                    .iter()
                    .filter(|f| f.as_str() != AGENT_FINALIZER)
                    .cloned()
                    .collect()
            })
        })
        .await
        .map(|_| ())
    }
}
