//! The talk-servers talk-load sends to and reads from: URLs given as they are, or found by
//! DNS and found again while the run goes on.
//!
//! Behind one Service address the client cannot tell the servers apart: a server cut off by
//! a partition keeps getting its share of new connections, and the balancer cannot eject
//! it. `dns+http://NAME:PORT` (the convention Prometheus and Thanos use) names a headless
//! Service instead: every ready pod is one target, and a pod that stops being ready drops
//! out of the list at the next lookup.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;

/// How often DNS targets are looked up again: about as often as a pod's readiness changes
/// reach the Service's DNS records.
pub const REFRESH: Duration = Duration::from_secs(5);

const DNS_PREFIX: &str = "dns+";

/// One `--target` as given.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TargetSpec {
    Fixed(Arc<str>),
    /// Every address `host` resolves to, as `scheme://address:port`.
    Dns {
        scheme: String,
        host: String,
        port: u16,
    },
}

impl TargetSpec {
    fn parse(raw: &str) -> Result<Self, String> {
        let Some(rest) = raw.strip_prefix(DNS_PREFIX) else {
            return Ok(Self::Fixed(Arc::from(raw.trim_end_matches('/'))));
        };
        let url = reqwest::Url::parse(rest).map_err(|e| format!("{raw:?}: {e}"))?;
        let host = url
            .host_str()
            .ok_or_else(|| format!("{raw:?}: no host name to look up"))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("{raw:?}: no port"))?;
        if url.path() != "/" || url.query().is_some() {
            return Err(format!(
                "{raw:?}: a DNS target is scheme://name:port, no path"
            ));
        }
        Ok(Self::Dns {
            scheme: url.scheme().to_string(),
            host: host.to_string(),
            port,
        })
    }
}

/// The current targets, shared by the generator, the readers and the drain.
#[derive(Debug)]
pub struct Targets {
    specs: Vec<TargetSpec>,
    /// Per spec, the URLs it stood for at the last lookup: what a failed lookup keeps.
    answers: Mutex<Vec<Vec<Arc<str>>>>,
    /// Every spec's answer, in order.
    current: RwLock<Arc<[Arc<str>]>>,
}

impl Targets {
    /// Parses `--target` values; DNS targets are empty until [`Targets::refresh`].
    pub fn parse(raw: &[String]) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("--target needs at least one URL".into());
        }
        let specs = raw
            .iter()
            .map(|r| TargetSpec::parse(r))
            .collect::<Result<Vec<_>, _>>()?;
        let answers: Vec<Vec<Arc<str>>> = specs
            .iter()
            .map(|s| match s {
                TargetSpec::Fixed(url) => vec![url.clone()],
                TargetSpec::Dns { .. } => Vec::new(),
            })
            .collect();
        let current = answers.concat();
        Ok(Self {
            specs,
            answers: Mutex::new(answers),
            current: RwLock::new(current.into()),
        })
    }

    /// The targets now, in a stable order.
    pub fn current(&self) -> Arc<[Arc<str>]> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn has_dns(&self) -> bool {
        self.specs
            .iter()
            .any(|s| matches!(s, TargetSpec::Dns { .. }))
    }

    /// Looks the DNS targets up again. A name that does not resolve keeps what it had: a
    /// DNS hiccup must not take every server away at once.
    pub async fn refresh(&self) {
        if !self.has_dns() {
            return;
        }
        let mut looked_up = Vec::with_capacity(self.specs.len());
        for spec in &self.specs {
            let TargetSpec::Dns { scheme, host, port } = spec else {
                looked_up.push(None);
                continue;
            };
            match tokio::net::lookup_host((host.as_str(), *port)).await {
                Ok(addrs) => {
                    let mut ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
                    ips.sort();
                    ips.dedup();
                    looked_up.push(Some(
                        ips.iter().map(|ip| url_of(scheme, *ip, *port)).collect(),
                    ));
                }
                Err(e) => {
                    tracing::warn!(%host, error = %e, "target lookup failed; keeping the last answer");
                    looked_up.push(None);
                }
            }
        }
        let mut next = {
            let mut answers = super::lock(&self.answers);
            for (answer, found) in answers.iter_mut().zip(looked_up) {
                if let Some(found) = found {
                    *answer = found;
                }
            }
            answers.concat()
        };
        next.dedup();
        let old = self.current();
        if *next != *old {
            tracing::info!(targets = ?next, "targets changed");
            *self.current.write().unwrap_or_else(|p| p.into_inner()) = next.into();
        }
    }

    /// Refreshes every [`REFRESH`] until `stop` flips.
    pub async fn keep_fresh(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        if !self.has_dns() {
            return;
        }
        while !*stop.borrow() {
            tokio::select! {
                _ = tokio::time::sleep(REFRESH) => self.refresh().await,
                _ = stop.changed() => {}
            }
        }
    }
}

/// The `t`-th of `targets`, round robin; empty when there is none (the request then fails
/// and is retried like any other).
pub fn pick(targets: &[Arc<str>], t: usize) -> Arc<str> {
    targets
        .get(t % targets.len().max(1))
        .cloned()
        .unwrap_or_else(|| Arc::from(""))
}

fn url_of(scheme: &str, ip: IpAddr, port: u16) -> Arc<str> {
    match ip {
        IpAddr::V4(v4) => Arc::from(format!("{scheme}://{v4}:{port}")),
        IpAddr::V6(v6) => Arc::from(format!("{scheme}://[{v6}]:{port}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_targets_are_used_as_given() {
        let t = Targets::parse(&["http://10.0.0.1:8080/".into(), "http://b:80".into()]).unwrap();
        let current = t.current();
        let now: Vec<&str> = current.iter().map(|u| &**u).collect();
        assert_eq!(now, ["http://10.0.0.1:8080", "http://b:80"]);
    }

    #[test]
    fn bad_dns_targets_are_refused_with_the_reason() {
        assert!(Targets::parse(&[]).is_err());
        let e = Targets::parse(&["dns+http://pods.talk.svc:8080/x".into()]).unwrap_err();
        assert!(e.contains("no path"), "{e}");
        let e = Targets::parse(&["dns+not a url".into()]).unwrap_err();
        assert!(e.contains("not a url"), "{e}");
    }

    #[tokio::test]
    async fn a_dns_target_becomes_one_target_per_address() {
        let t = Targets::parse(&["dns+http://localhost:8080".into(), "http://x:1".into()]).unwrap();
        assert_eq!(t.current().len(), 1, "nothing looked up yet");
        t.refresh().await;
        let now = t.current();
        assert!(now.iter().any(|u| &**u == "http://x:1"));
        assert!(
            now.iter()
                .any(|u| &**u == "http://127.0.0.1:8080" || &**u == "http://[::1]:8080"),
            "{now:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_lookup_keeps_the_last_answer() {
        let t = Targets::parse(&["dns+http://name.invalid:8080".into()]).unwrap();
        *t.answers.lock().unwrap() = vec![vec![Arc::from("http://10.1.2.3:8080")]];
        t.refresh().await;
        assert_eq!(&*t.current()[0], "http://10.1.2.3:8080");
    }
}
