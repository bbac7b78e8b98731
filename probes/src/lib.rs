//! Executes steady-state probes and turns each sample into an engine [`Outcome`].
//!
//! A [`Prober`] never panics and always answers within the probe's `timeout`: a probe that
//! cannot observe is `Unhealthy` with a reason a person can act on. Tolerances are applied
//! by the engine, not here.

mod dns;
mod error;
mod http;
mod kubernetes;
mod prometheus;
mod route;
mod stage;
mod talk;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use firedrill_core::api::{Probe, ProbeKind};
use firedrill_core::engine::Outcome;
use tokio::time::Instant;

pub use error::Error;
pub use kubernetes::{BoxFuture, ObjectSource, default_condition, evaluate_object};
pub use talk::verification_read;

use route::Routes;

/// Samples probes. Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct Prober {
    client: reqwest::Client,
    routes: Arc<Routes>,
    failover: Arc<prometheus::Failover>,
    resolver: dns::Resolver<dns::SystemLookup>,
    objects: Option<Arc<dyn ObjectSource>>,
    default_namespace: Option<String>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("routes", &self.routes)
            .field("failover", &self.failover)
            .field("objects", &self.objects.as_ref().map(|_| "ObjectSource"))
            .field("default_namespace", &self.default_namespace)
            .finish_non_exhaustive()
    }
}

/// Hedged, serve-stale name lookups for HTTP clients that must keep observing while a zone
/// (and the CoreDNS replica in it) is dark. See the `dns` module for why.
pub fn dns_resolver() -> impl reqwest::dns::Resolve + 'static {
    dns::Resolver::new(dns::SystemLookup)
}

/// Options for a [`Prober`].
#[derive(Default)]
pub struct ProberBuilder {
    hosts: HashMap<String, SocketAddr>,
    objects: Option<Arc<dyn ObjectSource>>,
    default_namespace: Option<String>,
}

impl std::fmt::Debug for ProberBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProberBuilder")
            .field("hosts", &self.hosts)
            .field("objects", &self.objects.as_ref().map(|_| "ObjectSource"))
            .field("default_namespace", &self.default_namespace)
            .finish()
    }
}

impl ProberBuilder {
    /// Sends requests for `host` (a DNS name, any port in the URL) to `addr` instead, e.g.
    /// `talk-load.talk` → `127.0.0.1:41234` in the lab. The `Host` header keeps the name
    /// and port written in the probe.
    pub fn resolve(mut self, host: &str, addr: SocketAddr) -> Self {
        self.hosts.insert(host.to_ascii_lowercase(), addr);
        self
    }

    /// Where `kubernetes` probes read objects from.
    pub fn objects(mut self, source: Arc<dyn ObjectSource>) -> Self {
        self.objects = Some(source);
        self
    }

    /// The namespace of `kubernetes` probes that name none (the experiment's namespace).
    pub fn default_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.default_namespace = Some(namespace.into());
        self
    }

    pub fn build(self) -> Result<Prober, Error> {
        let resolver = dns::Resolver::new(dns::SystemLookup);
        let mut builder = reqwest::Client::builder()
            // Probes observe the URL they name: no proxies, and a redirect is an answer.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            // A dark zone can hold a CoreDNS replica: hedge lookups and serve the last answer.
            .dns_resolver(resolver.clone())
            .user_agent(concat!("firedrill-probes/", env!("CARGO_PKG_VERSION")));
        for (host, addr) in &self.hosts {
            builder = builder.resolve(host, *addr);
        }
        let client = builder.build().map_err(Error::Client)?;
        Ok(Prober {
            client,
            routes: Arc::new(Routes::new(self.hosts)),
            failover: Arc::default(),
            resolver,
            objects: self.objects,
            default_namespace: self.default_namespace,
        })
    }
}

impl Prober {
    pub fn builder() -> ProberBuilder {
        ProberBuilder::default()
    }

    /// Takes one sample of `probe`, within its timeout.
    pub async fn sample(&self, probe: &Probe) -> Outcome {
        let timeout = probe.timeout.as_std();
        let start = Instant::now();
        // The work gets a slightly earlier deadline so that its own, more specific timeout
        // message wins over the catch-all below.
        let reserve = (timeout / 50).min(Duration::from_millis(20));
        let work_deadline = start + timeout.saturating_sub(reserve);
        match tokio::time::timeout_at(start + timeout, self.run(probe, work_deadline)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Unhealthy(format!(
                "probe {} gave no result within {}ms",
                probe.name,
                timeout.as_millis()
            )),
        }
    }

    async fn run(&self, probe: &Probe, deadline: Instant) -> Outcome {
        let result = match probe.kind() {
            None => {
                return Outcome::Unhealthy(format!(
                    "probe {} must set exactly one of prometheus, http, kubernetes or talk",
                    probe.name
                ));
            }
            Some(ProbeKind::Prometheus(p)) => {
                let reach = prometheus::Reach {
                    client: &self.client,
                    routes: &self.routes,
                    failover: &self.failover,
                    resolver: &self.resolver,
                };
                prometheus::query(&reach, p, deadline)
                    .await
                    .map(Outcome::Measured)
            }
            Some(ProbeKind::Http(p)) => http::check(&self.client, &self.routes, p, deadline)
                .await
                .map(|()| Outcome::Healthy),
            Some(ProbeKind::Talk(p)) => talk::read(&self.client, &self.routes, p, deadline)
                .await
                .map(Outcome::Measured),
            Some(ProbeKind::Kubernetes(p)) => {
                let Some(objects) = &self.objects else {
                    return Outcome::Unhealthy(
                        "kubernetes probes need an object source; none is configured".into(),
                    );
                };
                return kubernetes::check(
                    objects.as_ref(),
                    p,
                    self.default_namespace.as_deref(),
                    deadline,
                )
                .await;
            }
        };
        result.unwrap_or_else(|e| Outcome::Unhealthy(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_send<T: Send>(_: &T) {}

    /// The operator samples probes on spawned tasks.
    #[test]
    fn prober_and_its_samples_are_send() {
        let prober = Prober::builder().build().expect("prober");
        let probe: Probe = serde_json::from_value(serde_json::json!({
            "name": "p", "http": {"url": "http://127.0.0.1:1/"}
        }))
        .expect("probe");
        is_send(&prober);
        is_send(&prober.sample(&probe));
    }
}
