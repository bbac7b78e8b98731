//! Incremental loss/duplicate tracking for the continuous check.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Key = (Arc<str>, Arc<str>, u64); // (room, producer, counter)

/// Acked messages not yet read back, and what the reader has seen.
#[derive(Debug, Default)]
pub struct LiveTracker {
    unread: HashMap<Key, (u64, Instant)>,
    read: HashMap<Key, u64>,
    /// Per room: every message with seq <= horizon has been read.
    horizon: HashMap<Arc<str>, u64>,
    duplicated: u64,
}

impl LiveTracker {
    pub fn on_ack(
        &mut self,
        room: Arc<str>,
        producer: Arc<str>,
        counter: u64,
        seq: u64,
        at: Instant,
    ) {
        let key = (room, producer, counter);
        if !self.read.contains_key(&key) {
            self.unread.insert(key, (seq, at));
        }
    }

    pub fn on_read(&mut self, room: Arc<str>, producer: Arc<str>, counter: u64, seq: u64) {
        let key = (room, producer, counter);
        match self.read.get(&key) {
            Some(prev) if *prev != seq => self.duplicated += 1,
            Some(_) => {}
            None => {
                self.unread.remove(&key);
                self.read.insert(key, seq);
            }
        }
    }

    /// The reader has read `room` completely up to `seq`.
    pub fn advance(&mut self, room: &Arc<str>, seq: u64) {
        let h = self.horizon.entry(room.clone()).or_insert(0);
        *h = (*h).max(seq);
    }

    /// Acked messages behind the read position, older than `grace`, unread.
    pub fn lost(&self, now: Instant, grace: Duration) -> u64 {
        self.unread
            .iter()
            .filter(|((room, _, _), (seq, at))| {
                now.duration_since(*at) >= grace && self.horizon.get(room).is_some_and(|h| seq <= h)
            })
            .count() as u64
    }

    /// Up to `max` of the messages [`lost`](Self::lost) counts, as
    /// `room/producer:counter@seq (horizon H)`, for the log: which ones, and whether they
    /// come back later, is what an investigation starts from.
    pub fn lost_examples(&self, now: Instant, grace: Duration, max: usize) -> Vec<String> {
        let mut out: Vec<String> = self
            .unread
            .iter()
            .filter_map(|((room, producer, counter), (seq, at))| {
                let horizon = *self.horizon.get(room)?;
                (now.duration_since(*at) >= grace && *seq <= horizon)
                    .then(|| format!("{room}/{producer}:{counter}@{seq} (horizon {horizon})"))
            })
            .collect();
        out.sort();
        out.truncate(max);
        out
    }

    pub fn duplicated(&self) -> u64 {
        self.duplicated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_only_behind_horizon_and_after_grace() {
        let mut t = LiveTracker::default();
        let r: Arc<str> = Arc::from("r");
        let p: Arc<str> = Arc::from("p");
        let t0 = Instant::now();
        t.on_ack(r.clone(), p.clone(), 1, 1, t0);
        t.on_ack(r.clone(), p.clone(), 2, 2, t0);
        t.on_read(r.clone(), p.clone(), 1, 1);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(
            t.lost(later, Duration::from_secs(1)),
            0,
            "horizon not reached"
        );
        t.advance(&r, 2);
        assert_eq!(t.lost(t0, Duration::from_secs(1)), 0, "within grace");
        assert_eq!(t.lost(later, Duration::from_secs(1)), 1);
        assert_eq!(
            t.lost_examples(later, Duration::from_secs(1), 5),
            vec!["r/p:2@2 (horizon 2)".to_string()]
        );
        assert!(t.lost_examples(t0, Duration::from_secs(1), 5).is_empty());
        t.on_read(r.clone(), p.clone(), 1, 7);
        assert_eq!(t.duplicated(), 1);
    }
}
