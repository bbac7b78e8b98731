//! Sliding-window SLIs: what `GET /sli` returns.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The exact JSON shape firedrill's `talk` probe reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SliSnapshot {
    pub delivery_success_ratio: f64,
    pub p50_latency_ms: f64,
    pub p99_latency_ms: f64,
    pub lost_messages: u64,
    pub duplicated_messages: u64,
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    pub window_seconds: f64,
}

/// Outcomes of recent sends plus running totals.
#[derive(Debug)]
pub struct SliWindow {
    window: Duration,
    /// (completed at, latency in ms if acked).
    recent: Mutex<VecDeque<(Instant, Option<f64>)>>,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub failed: AtomicU64,
    pub lost: AtomicU64,
    pub duplicated: AtomicU64,
}

impl SliWindow {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            recent: Mutex::new(VecDeque::new()),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            duplicated: AtomicU64::new(0),
        }
    }

    pub fn record_sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record(&self, now: Instant, latency: Option<Duration>) {
        match latency {
            Some(_) => self.acked.fetch_add(1, Ordering::Relaxed),
            None => self.failed.fetch_add(1, Ordering::Relaxed),
        };
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.push_back((now, latency.map(|l| l.as_secs_f64() * 1000.0)));
        prune(&mut recent, now, self.window);
    }

    pub fn snapshot(&self, now: Instant) -> SliSnapshot {
        let mut latencies = Vec::new();
        let mut failed = 0u64;
        {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            prune(&mut recent, now, self.window);
            for (_, l) in recent.iter() {
                match l {
                    Some(ms) => latencies.push(*ms),
                    None => failed += 1,
                }
            }
        }
        latencies.sort_by(f64::total_cmp);
        let ok = latencies.len() as f64;
        let total = ok + failed as f64;
        SliSnapshot {
            // No completions in the window: nothing failed, report 1.0.
            delivery_success_ratio: if total > 0.0 { ok / total } else { 1.0 },
            p50_latency_ms: percentile(&latencies, 0.50),
            p99_latency_ms: percentile(&latencies, 0.99),
            lost_messages: self.lost.load(Ordering::Relaxed),
            duplicated_messages: self.duplicated.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            window_seconds: self.window.as_secs_f64(),
        }
    }
}

fn prune(recent: &mut VecDeque<(Instant, Option<f64>)>, now: Instant, window: Duration) {
    while let Some((t, _)) = recent.front() {
        if now.duration_since(*t) > window {
            recent.pop_front();
        } else {
            break;
        }
    }
}

/// Nearest-rank percentile of sorted values (0 when empty).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len() - 1))
        .copied()
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.99), 0.0);
    }

    #[test]
    fn window_forgets_old_failures() {
        let w = SliWindow::new(Duration::from_secs(10));
        let t0 = Instant::now();
        w.record(t0, None);
        w.record(t0, Some(Duration::from_millis(4)));
        assert_eq!(w.snapshot(t0).delivery_success_ratio, 0.5);
        let later = t0 + Duration::from_secs(11);
        w.record(later, Some(Duration::from_millis(2)));
        let s = w.snapshot(later);
        assert_eq!(s.delivery_success_ratio, 1.0);
        assert_eq!(s.p99_latency_ms, 2.0);
        assert_eq!(s.failed, 1);
        assert_eq!(s.acked, 2);
    }

    #[test]
    fn json_field_names() {
        let v = serde_json::to_value(SliSnapshot::default()).expect("json");
        for k in [
            "deliverySuccessRatio",
            "p50LatencyMs",
            "p99LatencyMs",
            "lostMessages",
            "duplicatedMessages",
            "sent",
            "acked",
            "failed",
            "windowSeconds",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
    }
}
