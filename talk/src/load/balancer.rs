//! Client-side failover over the talk-servers, the way a load balancer with outlier
//! detection would do it: a target that cannot be reached is ejected for a while, and a send
//! is retried on the next target.
//!
//! Retrying is safe because the send carries its (producer, counter) as the JetStream
//! message id: a retry of a send that did reach the store is dropped as a duplicate.

use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// The targets and what is known of their health.
#[derive(Debug)]
pub struct Balancer {
    targets: Vec<String>,
    health: Mutex<Vec<Health>>,
}

impl Balancer {
    pub fn new(targets: Vec<String>) -> Self {
        let health = Mutex::new(vec![Health::default(); targets.len()]);
        Self { targets, health }
    }

    pub fn target(&self, i: usize) -> &str {
        self.targets.get(i).map_or("", String::as_str)
    }

    /// Targets to try, in order: healthy ones starting at `preferred`, then ejected ones
    /// (a send tries everything before giving up). When an ejection ends, only the one send
    /// that gets this order tries the target again; the others keep away from it for
    /// [`TRIAL`], so a target that is still gone slows one send, not a burst of them.
    pub fn order(&self, preferred: usize, now: Instant) -> Vec<usize> {
        let n = self.targets.len();
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let mut healthy = Vec::with_capacity(n);
        let mut sick = Vec::new();
        for i in (0..n).map(|k| (preferred + k) % n) {
            let Some(h) = health.get_mut(i) else { continue };
            match h.ejected_until {
                Some(until) if until > now => sick.push(i),
                Some(_) => {
                    h.ejected_until = Some(now + TRIAL);
                    healthy.push(i);
                }
                None => healthy.push(i),
            }
        }
        healthy.extend(sick);
        healthy
    }

    /// `i` could not be reached: eject it, longer each time in a row.
    pub fn failed(&self, i: usize, now: Instant) {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = health.get_mut(i) {
            h.consecutive_failures = h.consecutive_failures.saturating_add(1);
            let factor = 1u32 << (h.consecutive_failures - 1).min(4);
            h.ejected_until = Some(now + (BASE_EJECTION * factor).min(MAX_EJECTION));
        }
    }

    /// `i` answered.
    pub fn succeeded(&self, i: usize) {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = health.get_mut(i) {
            *h = Health::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejected_targets_go_last_until_they_expire() {
        let b = Balancer::new(vec!["a".into(), "b".into(), "c".into()]);
        let t0 = Instant::now();
        assert_eq!(b.order(1, t0), vec![1, 2, 0]);
        b.failed(2, t0);
        assert_eq!(b.order(1, t0), vec![1, 0, 2]);
        // Its ejection over, one send tries it again; the next ones keep away meanwhile.
        assert_eq!(b.order(1, t0 + BASE_EJECTION), vec![1, 2, 0]);
        assert_eq!(b.order(1, t0 + BASE_EJECTION), vec![1, 0, 2]);
        // A second failure in a row ejects for twice as long.
        b.failed(2, t0);
        assert_eq!(b.order(2, t0 + BASE_EJECTION), vec![0, 1, 2]);
        b.succeeded(2);
        assert_eq!(b.order(2, t0), vec![2, 0, 1]);
    }
}
