//! What a reconciliation needs: the client, Events, metrics, the policy, the pause and
//! heartbeat, and a prober per namespace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use firedrill_core::api::Heartbeat;
use firedrill_probes::Prober;
use kube::Client;

use super::seen::SeenInjections;
use super::unwritten::Unwritten;
use crate::echo::Echoes;
use crate::events::EventWriter;
use crate::metrics::Metrics;
use crate::objects::KubeObjects;
use crate::pause::PauseReader;
use crate::plan::Policy;
use crate::status::Note;
use crate::{Error, FIELD_MANAGER};

/// What a reconciliation needs.
pub struct Context {
    pub client: Client,
    pub events: EventWriter,
    pub metrics: Arc<Metrics>,
    pub policy: Policy,
    /// firedrill's own namespace, where every Injection lives: the agents follow no other,
    /// and only the operator may write there (so no tenant can hand an agent work).
    pub injection_namespace: String,
    /// The kill switch: the pause marker on `injection_namespace`.
    pub pause: PauseReader,
    /// The dead man's switch written into every Injection: the leader Lease this replica
    /// renews while it leads (none without leader election).
    pub heartbeat: Option<Heartbeat>,
    /// Watch only this namespace's Experiments (all when `None`).
    pub watch_namespace: Option<String>,
    /// Watch only Experiments matching this label selector (all when `None`).
    pub experiment_selector: Option<String>,
    /// What the last reconciliation of each Experiment left, to tell its own status write
    /// coming back from news.
    pub echoes: Arc<Echoes>,
    /// Reconciliations each controller runs at once ([`crate::requeue::CONCURRENCY`]).
    pub concurrency: u16,
    /// The Injections as the Experiment controller's watch last delivered them.
    pub(super) seen: SeenInjections,
    /// Status changes of routine sampling not written yet.
    pub(super) unwritten: Unwritten,
    objects: Arc<KubeObjects>,
    probers: Mutex<HashMap<String, Prober>>,
    pub(super) http: reqwest::Client,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// `operator_namespace` is protected and holds the Injections; `identity` names this
    /// replica in Events.
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        operator_namespace: &str,
        identity: &str,
    ) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .dns_resolver(firedrill_probes::dns_resolver())
            .build()
            .map_err(|e| Error::Setup(format!("http client: {e}")))?;
        Ok(Self {
            events: EventWriter::new(client.clone(), FIELD_MANAGER, identity),
            objects: Arc::new(KubeObjects::new(client.clone())),
            client,
            metrics,
            policy: Policy::new(operator_namespace),
            injection_namespace: operator_namespace.to_owned(),
            pause: PauseReader::new(operator_namespace),
            heartbeat: None,
            watch_namespace: None,
            experiment_selector: None,
            concurrency: crate::requeue::CONCURRENCY,
            echoes: Arc::default(),
            seen: SeenInjections::default(),
            unwritten: Unwritten::default(),
            probers: Mutex::new(HashMap::new()),
            http,
        })
    }

    /// The prober for experiments of `namespace` (the default namespace of their
    /// `kubernetes` probes).
    pub(super) fn prober(&self, namespace: &str) -> Result<Prober, Error> {
        let cached = self
            .probers
            .lock()
            .ok()
            .and_then(|p| p.get(namespace).cloned());
        if let Some(prober) = cached {
            return Ok(prober);
        }
        let prober = Prober::builder()
            .objects(self.objects.clone())
            .default_namespace(namespace)
            .build()
            .map_err(|e| Error::Setup(format!("prober: {e}")))?;
        if let Ok(mut probers) = self.probers.lock() {
            probers.insert(namespace.to_owned(), prober.clone());
        }
        Ok(prober)
    }

    /// Publishes `note` as an Event about `object`; a failure is logged, never fatal.
    pub(crate) async fn publish<K>(&self, object: &K, note: &Note)
    where
        K: kube::Resource<DynamicType = ()>,
    {
        if let Err(e) = self.events.publish(note, &object.object_ref(&())).await {
            tracing::warn!(error = %e, "could not publish an event");
        }
    }
}
