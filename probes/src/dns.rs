//! Name lookups that keep working while a zone is dark.
//!
//! A zone outage can take a CoreDNS replica with it. Until the node controller withdraws
//! its endpoint (a grace period of tens of seconds), kube-proxy still sends a share of DNS
//! queries to the dead replica, and glibc waits 5 s before it asks again. A probe has about
//! 2 s, so a healthy service would read as down only because its name did not resolve.
//!
//! So the prober does what a careful stub resolver does:
//! - a lookup still unanswered after a short wait is joined by a new one, from a new
//!   socket, which kube-proxy balances afresh (hedging);
//! - the last good answer for a name is kept and used when a fresh one is slow
//!   (serve-stale, RFC 8767). The fresh lookup goes on and replaces it when it lands.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::{FutureExt, Shared};
use futures_util::stream::{FuturesUnordered, StreamExt};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::time::{Instant, sleep_until, timeout};

use crate::kubernetes::BoxFuture;

/// When the second and third queries for a name start, if none has answered yet.
const HEDGES: [Duration; 2] = [Duration::from_millis(250), Duration::from_millis(750)];
/// How long a caller that has a last good answer waits for a fresh one.
const FRESH_GRACE: Duration = Duration::from_millis(200);
/// A lookup that has not finished by now is abandoned (glibc alone can take 10 s and more).
const LOOKUP_LIMIT: Duration = Duration::from_secs(15);

type Answer = Result<Arc<[SocketAddr]>, LookupError>;

/// Why a name did not resolve. Cloneable, because every caller waiting on one lookup
/// gets the same answer.
#[derive(Clone, Debug)]
pub(crate) struct LookupError {
    kind: io::ErrorKind,
    message: Arc<str>,
}

impl LookupError {
    fn new(kind: io::ErrorKind, message: impl Into<Arc<str>>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl From<io::Error> for LookupError {
    fn from(e: io::Error) -> Self {
        Self::new(e.kind(), e.to_string())
    }
}

impl From<LookupError> for io::Error {
    fn from(e: LookupError) -> Self {
        io::Error::new(e.kind, e.message.to_string())
    }
}

/// One query for a name's addresses, e.g. the system's `getaddrinfo`.
pub(crate) trait Lookup: Send + Sync + 'static {
    fn lookup(&self, host: &str) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>>;
}

/// The system resolver. Every call opens new sockets, so a retry is balanced afresh.
pub(crate) struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        let host = host.to_owned();
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.collect()) })
    }
}

/// Hedged, serve-stale lookups. Cheap to clone; clones share what they learned.
pub(crate) struct Resolver<L> {
    lookup: Arc<L>,
    names: Arc<Mutex<HashMap<String, Known>>>,
}

impl<L> Clone for Resolver<L> {
    fn clone(&self) -> Self {
        Self {
            lookup: Arc::clone(&self.lookup),
            names: Arc::clone(&self.names),
        }
    }
}

#[derive(Default)]
struct Known {
    last_good: Option<Arc<[SocketAddr]>>,
    in_flight: Option<Shared<BoxFuture<'static, Answer>>>,
}

impl<L: Lookup> Resolver<L> {
    pub(crate) fn new(lookup: L) -> Self {
        Self {
            lookup: Arc::new(lookup),
            names: Arc::default(),
        }
    }

    /// The addresses of `host`: a fresh answer if one comes in time, else the last good one.
    pub(crate) async fn addresses(&self, host: &str) -> Answer {
        let (last_good, fresh) = {
            let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
            let known = names.entry(host.to_owned()).or_default();
            // One lookup per name at a time: callers arriving meanwhile share it.
            let fresh = known
                .in_flight
                .get_or_insert_with(|| self.start(host))
                .clone();
            (known.last_good.clone(), fresh)
        };
        match last_good {
            None => fresh.await,
            Some(last_good) => match timeout(FRESH_GRACE, fresh).await {
                Ok(Ok(fresh)) => Ok(fresh),
                Ok(Err(_)) | Err(_) => Ok(last_good),
            },
        }
    }

    /// Looks `host` up in the background if nothing is known of it yet, so that a name first
    /// needed while a zone is dark (the standby replica of a failover pair) already has a
    /// last good answer then. Never waits.
    pub(crate) fn warm(&self, host: &str) {
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        let known = names.entry(host.to_owned()).or_default();
        if known.last_good.is_none() && known.in_flight.is_none() {
            known.in_flight = Some(self.start(host));
        }
    }

    /// Starts a lookup that runs to the end even when its callers stop waiting, so that a
    /// slow answer still becomes the last good one.
    fn start(&self, host: &str) -> Shared<BoxFuture<'static, Answer>> {
        let lookup = Arc::clone(&self.lookup);
        let names = Arc::clone(&self.names);
        let host = host.to_owned();
        let task = tokio::spawn(async move {
            let answer = match timeout(LOOKUP_LIMIT, hedged(&*lookup, &host)).await {
                Ok(answer) => answer,
                Err(_) => Err(LookupError::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no DNS answer for {host} within {}s",
                        LOOKUP_LIMIT.as_secs()
                    ),
                )),
            };
            let mut names = names.lock().unwrap_or_else(PoisonError::into_inner);
            let known = names.entry(host).or_default();
            known.in_flight = None;
            if let Ok(addrs) = &answer {
                known.last_good = Some(Arc::clone(addrs));
            }
            answer
        });
        let joined: BoxFuture<'static, Answer> = Box::pin(async move {
            task.await.unwrap_or_else(|e| {
                Err(LookupError::new(
                    io::ErrorKind::Other,
                    format!("the DNS lookup task failed: {e}"),
                ))
            })
        });
        joined.shared()
    }
}

/// The first non-empty answer of up to three queries started [`HEDGES`] apart. Gives up
/// when every query started has failed: a quick failure (no such name) is an answer too.
async fn hedged<L: Lookup + ?Sized>(lookup: &L, host: &str) -> Answer {
    let start = Instant::now();
    let mut running = FuturesUnordered::new();
    running.push(lookup.lookup(host));
    let mut hedges = HEDGES.iter().map(|after| start + *after);
    let mut next_hedge = hedges.next();
    let mut failure = None;
    loop {
        tokio::select! {
            Some(result) = running.next() => match result {
                Ok(addrs) if !addrs.is_empty() => return Ok(addrs.into()),
                Ok(_) => {
                    failure = Some(LookupError::new(
                        io::ErrorKind::NotFound,
                        format!("{host} has no addresses"),
                    ));
                }
                Err(e) => failure = Some(e.into()),
            },
            () = sleep_until(next_hedge.unwrap_or(start)), if next_hedge.is_some() => {
                running.push(lookup.lookup(host));
                next_hedge = hedges.next();
            }
        }
        if running.is_empty() {
            return Err(failure.unwrap_or_else(|| {
                LookupError::new(io::ErrorKind::Other, format!("no lookup of {host} ran"))
            }));
        }
    }
}

impl<L: Lookup> Resolve for Resolver<L> {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.clone();
        Box::pin(async move {
            let addrs = resolver
                .addresses(name.as_str())
                .await
                .map_err(io::Error::from)?;
            let owned: Vec<SocketAddr> = addrs.iter().copied().collect();
            let addrs: Addrs = Box::new(owned.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 0, last)), 0)
    }

    /// Answers each query with the next scripted behaviour; the last one repeats.
    struct Scripted {
        queries: AtomicUsize,
        script: Vec<Behaviour>,
    }

    #[derive(Clone)]
    enum Behaviour {
        Answer(u8),
        Fail,
        Hang,
    }

    impl Scripted {
        fn new(script: Vec<Behaviour>) -> Self {
            Self {
                queries: AtomicUsize::new(0),
                script,
            }
        }
    }

    impl Lookup for Arc<Scripted> {
        fn lookup(&self, _host: &str) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
            let n = self.queries.fetch_add(1, Ordering::SeqCst);
            let behaviour = self.script[n.min(self.script.len() - 1)].clone();
            Box::pin(async move {
                match behaviour {
                    Behaviour::Answer(last) => Ok(vec![addr(last)]),
                    Behaviour::Fail => Err(io::Error::other("SERVFAIL")),
                    Behaviour::Hang => std::future::pending().await,
                }
            })
        }
    }

    #[tokio::test]
    async fn a_query_lost_to_a_dead_server_is_overtaken_by_a_hedge() {
        let lookup = Arc::new(Scripted::new(vec![Behaviour::Hang, Behaviour::Answer(2)]));
        let resolver = Resolver::new(Arc::clone(&lookup));
        let answer = resolver
            .addresses("prometheus-b.talk")
            .await
            .expect("answer");
        assert_eq!(&*answer, &[addr(2)]);
        assert_eq!(lookup.queries.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_last_good_answer_serves_while_dns_is_dark() {
        let lookup = Arc::new(Scripted::new(vec![Behaviour::Answer(1), Behaviour::Hang]));
        let resolver = Resolver::new(Arc::clone(&lookup));
        assert_eq!(
            &*resolver.addresses("talk-load.talk").await.expect("first"),
            &[addr(1)]
        );
        for _ in 0..3 {
            let answer = resolver.addresses("talk-load.talk").await.expect("stale");
            assert_eq!(&*answer, &[addr(1)]);
        }
    }

    #[tokio::test]
    async fn a_fresh_answer_replaces_the_last_good_one() {
        let lookup = Arc::new(Scripted::new(vec![
            Behaviour::Answer(1),
            Behaviour::Answer(7),
        ]));
        let resolver = Resolver::new(Arc::clone(&lookup));
        resolver
            .addresses("talk-server-pods.talk")
            .await
            .expect("first");
        let answer = resolver
            .addresses("talk-server-pods.talk")
            .await
            .expect("second");
        assert_eq!(&*answer, &[addr(7)]);
    }

    #[tokio::test]
    async fn a_failed_lookup_keeps_the_last_good_answer_and_says_why_without_one() {
        let lookup = Arc::new(Scripted::new(vec![Behaviour::Answer(1), Behaviour::Fail]));
        let resolver = Resolver::new(Arc::clone(&lookup));
        resolver.addresses("nats.talk").await.expect("first");
        assert_eq!(
            &*resolver.addresses("nats.talk").await.expect("kept"),
            &[addr(1)]
        );

        let never = Resolver::new(Arc::new(Scripted::new(vec![Behaviour::Fail])));
        let why = never
            .addresses("nowhere.talk")
            .await
            .expect_err("no answer");
        assert!(why.message.contains("SERVFAIL"), "{why:?}");
    }

    #[tokio::test]
    async fn a_warmed_name_is_known_before_its_first_use() {
        let lookup = Arc::new(Scripted::new(vec![Behaviour::Answer(4), Behaviour::Hang]));
        let resolver = Resolver::new(Arc::clone(&lookup));
        resolver.warm("prometheus-b.talk");
        resolver.warm("prometheus-b.talk");
        // The background lookup lands without anyone waiting on it.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            lookup.queries.load(Ordering::SeqCst),
            1,
            "one lookup for two warms"
        );
        // DNS is dark now (every query hangs), yet the first real use has an answer.
        let answer = resolver
            .addresses("prometheus-b.talk")
            .await
            .expect("warmed");
        assert_eq!(&*answer, &[addr(4)]);
        // Known names are not looked up again by warming.
        resolver.warm("prometheus-b.talk");
        assert_eq!(lookup.queries.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn callers_share_one_lookup_per_name() {
        let lookup = Arc::new(Scripted::new(vec![Behaviour::Answer(3)]));
        let resolver = Resolver::new(Arc::clone(&lookup));
        let (a, b) = tokio::join!(
            resolver.addresses("prometheus-a.talk"),
            resolver.addresses("prometheus-a.talk")
        );
        assert_eq!(&*a.expect("a"), &[addr(3)]);
        assert_eq!(&*b.expect("b"), &[addr(3)]);
        assert_eq!(lookup.queries.load(Ordering::SeqCst), 1);
    }
}
