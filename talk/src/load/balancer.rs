//! Client-side failover over the talk-servers, the way a load balancer with outlier
//! detection would do it: a target that cannot be reached is ejected for a while, and a send
//! is retried on the next target.
//!
//! Retrying is safe because the send carries its (producer, counter) as the JetStream
//! message id: a retry of a send that did reach the store is dropped as a duplicate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::targets::Targets;

/// First ejection; doubled for each consecutive failure.
const BASE_EJECTION: Duration = Duration::from_secs(2);
const MAX_EJECTION: Duration = Duration::from_secs(30);
/// How long one trial send has a returning target to itself.
pub const TRIAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, Default)]
struct Health {
    ejected_until: Option<Instant>,
    consecutive_failures: u32,
}

/// The targets and what is known of their health, by URL: the list may change under it
/// (targets found by DNS).
#[derive(Debug)]
pub struct Balancer {
    targets: Arc<Targets>,
    health: Mutex<HashMap<Arc<str>, Health>>,
}

impl Balancer {
    pub fn new(targets: Arc<Targets>) -> Self {
        Self {
            targets,
            health: Mutex::new(HashMap::new()),
        }
    }

    /// Targets to try, in order: healthy ones starting at `preferred` (modulo how many
    /// there are now), then ejected ones (a send tries everything before giving up). When
    /// an ejection ends, only the one send that gets this order tries the target again;
    /// the others keep away from it for [`TRIAL`], so a target that is still gone slows one
    /// send, not a burst of them.
    pub fn order(&self, preferred: usize, now: Instant) -> Vec<Arc<str>> {
        let targets = self.targets.current();
        let n = targets.len();
        let mut health = super::lock(&self.health);
        // Forget targets that are gone, so a pod IP used again later starts healthy.
        if health.len() > n {
            health.retain(|url, _| targets.contains(url));
        }
        let mut healthy = Vec::with_capacity(n);
        let mut sick = Vec::new();
        for url in (0..n).filter_map(|k| targets.get((preferred + k) % n)) {
            let h = health.entry(url.clone()).or_default();
            match h.ejected_until {
                Some(until) if until > now => sick.push(url.clone()),
                Some(_) => {
                    h.ejected_until = Some(now + TRIAL);
                    healthy.push(url.clone());
                }
                None => healthy.push(url.clone()),
            }
        }
        healthy.extend(sick);
        healthy
    }

    /// `target` could not be reached: eject it, longer each time in a row.
    pub fn failed(&self, target: &str, now: Instant) {
        let mut health = super::lock(&self.health);
        if let Some(h) = health.get_mut(target) {
            h.consecutive_failures = h.consecutive_failures.saturating_add(1);
            let factor = 1u32 << (h.consecutive_failures - 1).min(4);
            h.ejected_until = Some(now + (BASE_EJECTION * factor).min(MAX_EJECTION));
        }
    }

    /// `target` answered.
    pub fn succeeded(&self, target: &str) {
        let mut health = super::lock(&self.health);
        if let Some(h) = health.get_mut(target) {
            *h = Health::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balancer(urls: &[&str]) -> Balancer {
        let raw: Vec<String> = urls.iter().map(|u| u.to_string()).collect();
        Balancer::new(Arc::new(Targets::parse(&raw).unwrap()))
    }

    fn order(b: &Balancer, preferred: usize, now: Instant) -> Vec<String> {
        b.order(preferred, now)
            .iter()
            .map(|u| u.to_string())
            .collect()
    }

    #[test]
    fn ejected_targets_go_last_until_they_expire() {
        let b = balancer(&["a", "b", "c"]);
        let t0 = Instant::now();
        assert_eq!(order(&b, 1, t0), ["b", "c", "a"]);
        b.failed("c", t0);
        assert_eq!(order(&b, 1, t0), ["b", "a", "c"]);
        // Its ejection over, one send tries it again; the next ones keep away meanwhile.
        assert_eq!(order(&b, 1, t0 + BASE_EJECTION), ["b", "c", "a"]);
        assert_eq!(order(&b, 1, t0 + BASE_EJECTION), ["b", "a", "c"]);
        // A second failure in a row ejects for twice as long.
        b.failed("c", t0);
        assert_eq!(order(&b, 2, t0 + BASE_EJECTION), ["a", "b", "c"]);
        b.succeeded("c");
        assert_eq!(order(&b, 2, t0), ["c", "a", "b"]);
    }
}
