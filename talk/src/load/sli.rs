//! Sliding-window SLIs: what `GET /sli` returns.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::lock;

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
    /// Sends still unanswered after longer than the deadline: counted as not delivered.
    #[serde(default)]
    pub overdue: u64,
    pub window_seconds: f64,
    /// How long a send may stay unanswered before it counts as not delivered (the window
    /// unless the query asked for another).
    #[serde(default)]
    pub deadline_seconds: f64,
}

/// Outcomes of recent sends, the sends still in flight, plus running totals.
#[derive(Debug)]
pub struct SliWindow {
    /// The longest window a snapshot may ask for: what is kept of completed sends.
    window: Duration,
    /// (completed at, latency in ms if acked).
    recent: Mutex<VecDeque<(Instant, Option<f64>)>>,
    /// When each send still in flight began, with how many began at that instant.
    in_flight: Mutex<BTreeMap<Instant, u32>>,
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
            in_flight: Mutex::new(BTreeMap::new()),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            duplicated: AtomicU64::new(0),
        }
    }

    /// The longest window a snapshot may ask for.
    pub fn retention(&self) -> Duration {
        self.window
    }

    /// A send begins now; returns the instant to hand to [`Self::record`] when it ends.
    pub fn begin(&self) -> Instant {
        let now = Instant::now();
        self.sent.fetch_add(1, Ordering::Relaxed);
        *lock(&self.in_flight).entry(now).or_insert(0) += 1;
        now
    }

    /// The send begun at `begun` ended at `now`: acknowledged after `latency`, or not.
    pub fn record(&self, begun: Instant, now: Instant, latency: Option<Duration>) {
        match latency {
            Some(_) => self.acked.fetch_add(1, Ordering::Relaxed),
            None => self.failed.fetch_add(1, Ordering::Relaxed),
        };
        {
            let mut in_flight = lock(&self.in_flight);
            if let Some(n) = in_flight.get_mut(&begun) {
                *n -= 1;
                if *n == 0 {
                    in_flight.remove(&begun);
                }
            }
        }
        let mut recent = lock(&self.recent);
        recent.push_back((now, latency.map(|l| l.as_secs_f64() * 1000.0)));
        prune(&mut recent, now, self.window);
    }

    /// The SLIs over the full window.
    pub fn snapshot(&self, now: Instant) -> SliSnapshot {
        self.snapshot_over(now, self.window, self.window)
    }

    /// The SLIs over the last `window` (at most the retention): the sends that ended in it,
    /// and those still unanswered. A send that hangs is news at once, not when its request
    /// finally times out: a frozen server that answers nothing would otherwise read as
    /// perfect delivery (no send ended, so none failed). So a send unanswered for longer
    /// than `window` counts in the latencies at its age so far, and one unanswered for
    /// longer than `deadline` counts as not delivered.
    ///
    /// The two differ on purpose: a probe that reads each 2 s sample on its own
    /// (`window=2s`) still sees a stall in its latency at once, while a send that a leader
    /// election holds for 5 s and then acknowledges is slow, not undelivered, unless the
    /// probe's `deadline` says so.
    pub fn snapshot_over(&self, now: Instant, window: Duration, deadline: Duration) -> SliSnapshot {
        let window = window.min(self.window);
        let mut latencies = Vec::new();
        let mut failed = 0u64;
        {
            let mut recent = lock(&self.recent);
            prune(&mut recent, now, self.window);
            for (_, l) in recent
                .iter()
                .filter(|(t, _)| now.saturating_duration_since(*t) <= window)
            {
                match l {
                    Some(ms) => latencies.push(*ms),
                    None => failed += 1,
                }
            }
        }
        let delivered = latencies.len() as f64;
        let mut overdue = 0u64;
        {
            let in_flight = lock(&self.in_flight);
            // Oldest first: stop at the first send younger than both limits.
            for (begun, n) in in_flight.iter() {
                let age = now.saturating_duration_since(*begun);
                if age <= window && age <= deadline {
                    break;
                }
                if age > window {
                    let ms = age.as_secs_f64() * 1000.0;
                    latencies.extend(std::iter::repeat_n(ms, *n as usize));
                }
                if age > deadline {
                    overdue += u64::from(*n);
                }
            }
        }
        latencies.sort_by(f64::total_cmp);
        let total = delivered + failed as f64 + overdue as f64;
        SliSnapshot {
            // Nothing ended in the window and nothing is overdue: nothing failed, 1.0.
            delivery_success_ratio: if total > 0.0 { delivered / total } else { 1.0 },
            p50_latency_ms: percentile(&latencies, 0.50),
            p99_latency_ms: percentile(&latencies, 0.99),
            lost_messages: self.lost.load(Ordering::Relaxed),
            duplicated_messages: self.duplicated.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            overdue,
            window_seconds: window.as_secs_f64(),
            deadline_seconds: deadline.as_secs_f64(),
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

    const SECOND: Duration = Duration::from_secs(1);
    const TEN: Duration = Duration::from_secs(10);

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
        let t0 = w.begin();
        w.record(t0, t0, None);
        let t1 = w.begin();
        w.record(t1, t1, Some(Duration::from_millis(4)));
        assert_eq!(w.snapshot(t1).delivery_success_ratio, 0.5);
        let later = t0 + Duration::from_secs(11);
        let t2 = w.begin();
        w.record(t2, later, Some(Duration::from_millis(2)));
        let s = w.snapshot(later);
        assert_eq!(s.delivery_success_ratio, 1.0);
        assert_eq!(s.p99_latency_ms, 2.0);
        assert_eq!(s.failed, 1);
        assert_eq!(s.acked, 2);
    }

    #[test]
    fn a_send_unanswered_past_the_window_counts_at_once() {
        let w = SliWindow::new(Duration::from_secs(10));
        let hung = w.begin();
        let ok = w.begin();
        w.record(ok, ok, Some(Duration::from_millis(3)));
        // Within the window the hanging send is only in flight.
        let s = w.snapshot_over(hung + Duration::from_millis(500), SECOND, SECOND);
        assert_eq!((s.delivery_success_ratio, s.overdue), (1.0, 0));
        // Past it, it is not delivered, at its age so far.
        let at = hung + Duration::from_millis(2500);
        let s = w.snapshot_over(at, SECOND, SECOND);
        assert_eq!(s.overdue, 1);
        assert_eq!(s.delivery_success_ratio, 0.0, "the ack is older than 1 s");
        assert!(
            (s.p99_latency_ms - 2500.0).abs() < 1.0,
            "{}",
            s.p99_latency_ms
        );
        let s = w.snapshot_over(at, TEN, TEN);
        assert_eq!((s.delivery_success_ratio, s.overdue), (1.0, 0));
        // Once answered it is no longer in flight.
        w.record(hung, at, Some(Duration::from_millis(2500)));
        let s = w.snapshot_over(at, SECOND, SECOND);
        assert_eq!((s.delivery_success_ratio, s.overdue), (1.0, 0));
        assert_eq!(s.p99_latency_ms, 2500.0);
    }

    #[test]
    fn a_stall_shows_in_latency_at_the_window_and_in_delivery_at_the_deadline() {
        let w = SliWindow::new(TEN);
        let stalled = w.begin();
        let ok = w.begin();
        w.record(ok, ok, Some(Duration::from_millis(3)));
        let two = Duration::from_secs(2);
        // 3 s in: slow but not yet undelivered.
        let at = stalled + Duration::from_secs(3);
        // Over a 10 s window a 3 s wait is not yet news: only the answered send counts.
        let s = w.snapshot_over(at, TEN, Duration::from_secs(5));
        assert_eq!((s.delivery_success_ratio, s.overdue), (1.0, 0));
        assert!((s.p99_latency_ms - 3.0).abs() < 1.0, "{}", s.p99_latency_ms);
        // Over a 2 s window it is: its age so far is the p99.
        let s = w.snapshot_over(at, two, Duration::from_secs(5));
        assert_eq!((s.delivery_success_ratio, s.overdue), (1.0, 0), "{s:?}");
        assert!(
            (s.p99_latency_ms - 3000.0).abs() < 1.0,
            "{}",
            s.p99_latency_ms
        );
        // 6 s in: past the deadline it is not delivered.
        let at = stalled + Duration::from_secs(6);
        let s = w.snapshot_over(at, two, Duration::from_secs(5));
        assert_eq!((s.delivery_success_ratio, s.overdue), (0.0, 1), "{s:?}");
        assert_eq!(s.deadline_seconds, 5.0);
        // A deadline shorter than the window counts it before its latency shows.
        let s = w.snapshot_over(
            stalled + Duration::from_secs(1),
            TEN,
            Duration::from_millis(500),
        );
        assert_eq!(s.overdue, 1);
        assert!((s.p99_latency_ms - 3.0).abs() < 1.0, "{}", s.p99_latency_ms);
    }

    #[test]
    fn a_window_longer_than_what_is_kept_is_cut_to_it() {
        let w = SliWindow::new(Duration::from_secs(10));
        let s = w.snapshot_over(Instant::now(), Duration::from_secs(60), TEN);
        assert_eq!(s.window_seconds, 10.0);
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
            "overdue",
            "windowSeconds",
            "deadlineSeconds",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
    }
}
