//! The checker's memory for a run of any length, fed as the run goes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::report::{CheckReport, MAX_EXAMPLES, RoomReport};
use crate::load::ranges::RangeSet;

/// A send whose message the live pass has not read yet.
#[derive(Debug, Clone, Copy)]
struct Pending {
    sent_at: u64,
    /// `None` while the send is in flight.
    ack: Option<Ack>,
}

#[derive(Debug, Clone, Copy)]
struct Ack {
    seq: u64,
    acked_at: u64,
    at: Instant,
}

/// One producer's messages in one room. Its counters are contiguous when the producer
/// writes to this room only (talk-load's producers do); then every set here is a few
/// ranges, whatever the number of messages.
#[derive(Debug, Default)]
struct Lane {
    /// Counters sent (or given up before sending).
    sent: RangeSet,
    /// Sends that failed or timed out, with when they were sent: they may or may not be
    /// stored. Kept for the whole run (failures are rare), so a late copy counts as
    /// recovered and the final pass does not call them lost.
    indeterminate: BTreeMap<u64, u64>,
    /// Sent, not yet read by the live pass: in flight, acknowledged and waiting for the
    /// reader, or lost.
    pending: BTreeMap<u64, Pending>,
    /// Counters the live pass has read: a read-through watermark plus the out-of-order
    /// tail, as ranges. A counter read again is a duplicate, however long ago the first was.
    read: RangeSet,
    /// The newest counter the live pass has read, and when it was sent.
    newest: Option<(u64, u64)>,
    /// Counters the final pass has read.
    final_read: RangeSet,
}

/// One lane's messages the stream must hold (see [`Ledger::stored`]).
#[derive(Debug, Clone)]
pub struct StoredLane {
    pub room: Arc<str>,
    pub producer: Arc<str>,
    read: RangeSet,
    acked_unread: Vec<u64>,
    indeterminate: std::collections::BTreeSet<u64>,
}

impl StoredLane {
    /// The counters of this lane missing from `present`, ascending.
    pub fn missing(&self, present: &RangeSet) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .read
            .missing_from(present)
            .filter(|c| !self.indeterminate.contains(c))
            .chain(
                self.acked_unread
                    .iter()
                    .copied()
                    .filter(|&c| !present.contains(c)),
            )
            .collect();
        out.sort_unstable();
        out
    }

    /// How many messages the stream must hold for this lane.
    pub fn len(&self) -> u64 {
        let recovered = self
            .indeterminate
            .iter()
            .filter(|&&c| self.read.contains(c))
            .count() as u64;
        self.read.len() - recovered + self.acked_unread.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Default)]
struct RoomState {
    lanes: HashMap<Arc<str>, Lane>,
    /// Every message with seq <= horizon has been read by the live pass.
    horizon: u64,
    /// The highest sequence the live pass has read: reads at or below it are the same
    /// positions again, not new copies.
    max_seq: u64,
    /// sent, acked, indeterminate and out_of_order (live pass); read, duplicated,
    /// unexpected and recovered (final pass). `lost` is computed by [`Ledger::report`].
    counts: RoomReport,
    /// Live pass: copies read again at a new position, and reads of nothing sent.
    live_duplicated: u64,
    live_unexpected: u64,
}

/// The loss checker's memory for a run of any length: what was sent, what the live pass
/// (the reader following every room) has read, and what the final pass (the drain from
/// the start of every room) has read.
///
/// A message that was acknowledged and read is settled: all that remains of it is its
/// counter in a range of its lane's read set, so a later duplicate is still seen while
/// its sequence and timings are forgotten. What stays in full is only what is unsettled —
/// in flight, acknowledged but unread (waiting for the reader, or lost), and the rare
/// failed sends — so memory follows the number of lanes and of unsettled messages, not the
/// length of the run.
///
/// Checks: lost (acknowledged, never read by the final pass), duplicated and unexpected
/// (final pass), recovered (indeterminate sends that were read), and out-of-order (live
/// pass, which reads every room in stream order from the start to the end of the run, and
/// knows the ack times of what it has not read yet — all an order check needs).
#[derive(Debug, Default)]
pub struct Ledger {
    rooms: HashMap<Arc<str>, RoomState>,
}

impl Ledger {
    fn room(&mut self, room: &str) -> &mut RoomState {
        if !self.rooms.contains_key(room) {
            self.rooms.insert(Arc::from(room), RoomState::default());
        }
        match self.rooms.get_mut(room) {
            Some(r) => r,
            None => unreachable!("inserted above"),
        }
    }

    fn lane(&mut self, room: &str, producer: &str) -> &mut Lane {
        let r = self.room(room);
        if !r.lanes.contains_key(producer) {
            r.lanes.insert(Arc::from(producer), Lane::default());
        }
        match r.lanes.get_mut(producer) {
            Some(l) => l,
            None => unreachable!("inserted above"),
        }
    }

    /// A send is about to leave (before any copy of it can be read).
    pub fn register(&mut self, room: &str, producer: &str, counter: u64, sent_at: u64) {
        let lane = self.lane(room, producer);
        if lane.sent.insert(counter) {
            lane.pending.insert(counter, Pending { sent_at, ack: None });
            self.room(room).counts.sent += 1;
        }
    }

    /// The send was acknowledged at `seq`; `acked_at` in the checker's clock, `at` for the
    /// live loss grace.
    pub fn acked(
        &mut self,
        room: &str,
        producer: &str,
        counter: u64,
        seq: u64,
        acked_at: u64,
        at: Instant,
    ) {
        let lane = self.lane(room, producer);
        // Already read (the reader can be faster than the ack): nothing left to wait for.
        if let Some(p) = lane.pending.get_mut(&counter) {
            p.ack = Some(Ack { seq, acked_at, at });
        }
        self.room(room).counts.acked += 1;
    }

    /// The send failed or timed out: indeterminate, never lost.
    pub fn failed(&mut self, room: &str, producer: &str, counter: u64) {
        let lane = self.lane(room, producer);
        let sent_at = lane.pending.remove(&counter).map_or(0, |p| p.sent_at);
        lane.indeterminate.insert(counter, sent_at);
        self.room(room).counts.indeterminate += 1;
    }

    /// The live pass read `producer:counter` at `seq` (in stream order within `room`).
    pub fn read(&mut self, room: &str, producer: &str, counter: u64, seq: u64) {
        let r = self.room(room);
        if seq != 0 && seq <= r.max_seq {
            return; // the same position again
        }
        r.max_seq = r.max_seq.max(seq);
        let Some(lane) = r.lanes.get_mut(producer) else {
            r.live_unexpected += 1;
            return;
        };
        if !lane.sent.contains(counter) {
            r.live_unexpected += 1;
            return;
        }
        if !lane.read.insert(counter) {
            r.live_duplicated += 1;
            return;
        }
        let sent_at = match lane.pending.remove(&counter) {
            Some(p) => {
                // Real-time order: acknowledged before a newer message of the same producer
                // was even sent, so it must come first.
                if let (Some(ack), Some((newest, newest_sent_at))) = (p.ack, lane.newest)
                    && counter < newest
                    && ack.acked_at < newest_sent_at
                {
                    r.counts.out_of_order += 1;
                }
                p.sent_at
            }
            None => lane.indeterminate.get(&counter).copied().unwrap_or(0),
        };
        if lane.newest.is_none_or(|(n, _)| counter > n) {
            lane.newest = Some((counter, sent_at));
        }
    }

    /// The live pass has read `room` completely up to `seq`.
    pub fn advance(&mut self, room: &str, seq: u64) {
        let r = self.room(room);
        r.horizon = r.horizon.max(seq);
    }

    /// The room's stream went back in time (recreated after data loss): the live pass
    /// reads it again from the start, and its positions are new.
    pub fn reset(&mut self, room: &str) {
        let r = self.room(room);
        r.horizon = 0;
        r.max_seq = 0;
    }

    /// The final pass read `producer:counter` in `room`.
    pub fn final_read(&mut self, room: &str, producer: &str, counter: u64) {
        let r = self.room(room);
        r.counts.read += 1;
        let Some(lane) = r.lanes.get_mut(producer) else {
            r.counts.unexpected += 1;
            return;
        };
        if !lane.sent.contains(counter) {
            r.counts.unexpected += 1;
        } else if !lane.final_read.insert(counter) {
            r.counts.duplicated += 1;
        } else if lane.indeterminate.contains_key(&counter) {
            r.counts.recovered += 1;
        }
    }

    /// Acknowledged messages the live pass has not read although it has read past their
    /// sequence, acknowledged at least `grace` ago.
    pub fn lost(&self, now: Instant, grace: Duration) -> u64 {
        self.live_lost(now, grace).count() as u64
    }

    fn live_lost(
        &self,
        now: Instant,
        grace: Duration,
    ) -> impl Iterator<Item = (&Arc<str>, &Arc<str>, u64, u64, u64)> {
        self.rooms.iter().flat_map(move |(room, r)| {
            r.lanes.iter().flat_map(move |(producer, lane)| {
                lane.pending.iter().filter_map(move |(&counter, p)| {
                    let ack = p.ack?;
                    (now.duration_since(ack.at) >= grace && ack.seq <= r.horizon)
                        .then_some((room, producer, counter, ack.seq, r.horizon))
                })
            })
        })
    }

    /// Up to `max` of the messages [`lost`](Self::lost) counts, as
    /// `room/producer:counter@seq (horizon H)`, for the log: which ones, and whether they
    /// come back later, is what an investigation starts from.
    pub fn lost_examples(&self, now: Instant, grace: Duration, max: usize) -> Vec<String> {
        let mut out: Vec<String> = self
            .live_lost(now, grace)
            .map(|(room, producer, counter, seq, horizon)| {
                format!("{room}/{producer}:{counter}@{seq} (horizon {horizon})")
            })
            .collect();
        out.sort();
        out.truncate(max);
        out
    }

    /// What the stream must hold now, lane by lane: every message the live pass has read
    /// and every one acknowledged, except failed sends (indeterminate). Each was stored
    /// before this moment, so a read of the stream begun after it finds it, unless the
    /// stream lost it.
    pub fn stored(&self) -> Vec<StoredLane> {
        let mut out = Vec::new();
        for (room, r) in &self.rooms {
            for (producer, lane) in &r.lanes {
                out.push(StoredLane {
                    room: room.clone(),
                    producer: producer.clone(),
                    read: lane.read.clone(),
                    acked_unread: lane
                        .pending
                        .iter()
                        .filter(|(_, p)| p.ack.is_some())
                        .map(|(&c, _)| c)
                        .collect(),
                    indeterminate: lane.indeterminate.keys().copied().collect(),
                });
            }
        }
        out
    }

    /// Copies the live pass read at a second position.
    pub fn duplicated(&self) -> u64 {
        self.rooms.values().map(|r| r.live_duplicated).sum()
    }

    /// Reads of the live pass that match nothing sent.
    pub fn unexpected(&self) -> u64 {
        self.rooms.values().map(|r| r.live_unexpected).sum()
    }

    /// Messages held in full (unsettled) and ranges held, for the memory figures.
    pub fn footprint(&self) -> (usize, usize) {
        let mut held = 0;
        let mut ranges = 0;
        for lane in self.rooms.values().flat_map(|r| r.lanes.values()) {
            held += lane.pending.len() + lane.indeterminate.len();
            ranges += lane.sent.ranges() + lane.read.ranges() + lane.final_read.ranges();
        }
        (held, ranges)
    }

    /// The verdict: the final pass against everything sent. Call it when no send is in
    /// flight and the final pass is done.
    pub fn report(&self) -> CheckReport {
        let mut rooms = BTreeMap::new();
        for (name, r) in &self.rooms {
            let mut report = r.counts.clone();
            let mut producers: Vec<_> = r.lanes.iter().collect();
            producers.sort_by(|a, b| a.0.cmp(b.0));
            for (producer, lane) in producers {
                for counter in lane.sent.missing_from(&lane.final_read) {
                    if lane.indeterminate.contains_key(&counter) {
                        continue;
                    }
                    let pending = lane.pending.get(&counter);
                    if pending.is_some_and(|p| p.ack.is_none()) {
                        continue; // still in flight: not acknowledged (yet)
                    }
                    report.lost += 1;
                    if report.lost_examples.len() < MAX_EXAMPLES {
                        report
                            .lost_examples
                            .push(match pending.and_then(|p| p.ack) {
                                Some(ack) => format!("{producer}:{counter}@{}", ack.seq),
                                None => format!("{producer}:{counter}"),
                            });
                    }
                }
            }
            rooms.insert(name.to_string(), report);
        }
        let mut total = RoomReport::default();
        for r in rooms.values() {
            total.add(r);
        }
        CheckReport { total, rooms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_stream_must_hold_is_what_was_read_or_acknowledged_not_what_failed() {
        let mut l = Ledger::default();
        let now = Instant::now();
        for c in 1..=5 {
            l.register("r", "p", c, 0);
        }
        l.acked("r", "p", 1, 1, 1, now);
        l.read("r", "p", 1, 1);
        l.acked("r", "p", 2, 2, 1, now); // acknowledged, not read yet
        l.failed("r", "p", 3); // indeterminate, read later: recovered
        l.read("r", "p", 3, 3);
        l.failed("r", "p", 4); // indeterminate, never read
        // 5: still in flight
        let stored = l.stored();
        assert_eq!(stored.len(), 1);
        let lane = &stored[0];
        assert_eq!(lane.len(), 2, "1 (read) and 2 (acknowledged)");
        let mut present = RangeSet::default();
        assert_eq!(lane.missing(&present), vec![1, 2]);
        present.insert(2);
        present.insert(5);
        assert_eq!(lane.missing(&present), vec![1]);
        present.insert(1);
        assert!(lane.missing(&present).is_empty());
    }

    const N: u64 = 100_000;

    /// One lane, `N` messages sent, acked at seq == counter, read by the live pass.
    fn long_run() -> (Ledger, Instant) {
        let mut l = Ledger::default();
        let t0 = Instant::now();
        for c in 1..=N {
            l.register("r", "p", c, c * 10);
            if c % 1000 == 0 {
                l.failed("r", "p", c); // a few indeterminate ones, never stored
                continue;
            }
            l.acked("r", "p", c, c, c * 10 + 5, t0);
            l.read("r", "p", c, c);
        }
        l.advance("r", N);
        (l, t0)
    }

    fn final_pass_all(l: &mut Ledger, skip: &[u64]) {
        for c in (1..=N).filter(|c| c % 1000 != 0 && !skip.contains(c)) {
            l.final_read("r", "p", c);
        }
    }

    #[test]
    fn settled_messages_take_no_per_message_memory() {
        let (mut l, t0) = long_run();
        let (held, ranges) = l.footprint();
        assert_eq!(held, 100, "only the indeterminate sends are held in full");
        assert!(ranges <= 2 + 100, "{ranges} ranges");
        final_pass_all(&mut l, &[]);
        let rep = l.report();
        assert!(rep.total.is_clean(), "{rep:?}");
        assert_eq!(rep.total.acked, N - 100);
        assert_eq!(rep.total.indeterminate, 100);
        assert_eq!(rep.total.read, N - 100);
        assert_eq!(l.lost(t0 + Duration::from_secs(60), Duration::ZERO), 0);
    }

    #[test]
    fn pruned_duplicate_is_still_duplicated() {
        let (mut l, _) = long_run();
        // A copy of a message settled long ago, at a new position.
        l.read("r", "p", 5, N + 1);
        assert_eq!(l.duplicated(), 1);
        // The same position read again (a page re-read) is not a copy.
        l.read("r", "p", 5, N + 1);
        assert_eq!(l.duplicated(), 1);
        final_pass_all(&mut l, &[]);
        l.final_read("r", "p", 5);
        let rep = l.report();
        assert_eq!(rep.total.duplicated, 1);
        assert_eq!(rep.total.lost, 0);
    }

    #[test]
    fn pruned_lane_still_sees_unexpected_and_recovered() {
        let (mut l, _) = long_run();
        final_pass_all(&mut l, &[]);
        l.final_read("r", "p", N + 7); // never sent
        l.final_read("r", "ghost", 1); // no such producer
        l.final_read("elsewhere", "p", 3); // sent to another room
        l.final_read("r", "p", 2000); // an indeterminate send that was stored after all
        let rep = l.report();
        assert_eq!(rep.total.unexpected, 3, "{rep:?}");
        assert_eq!(rep.total.recovered, 1);
        assert_eq!(rep.total.lost, 0);
        assert_eq!(rep.total.duplicated, 0);
    }

    #[test]
    fn pruned_message_missing_at_the_end_is_lost() {
        // Read live, then gone from the history (a wiped replica): the final pass decides.
        let (mut l, _) = long_run();
        final_pass_all(&mut l, &[777, 50_001]);
        let rep = l.report();
        assert_eq!(rep.total.lost, 2);
        assert_eq!(
            rep.rooms["r"].lost_examples,
            vec!["p:777".to_string(), "p:50001".to_string()]
        );
    }

    #[test]
    fn out_of_order_after_pruning() {
        let (mut l, t0) = long_run();
        let base = N * 10 + 100;
        // a acked at base+5; b sent at base+10, after a's ack; b is stored first.
        l.register("r", "p", N + 1, base);
        l.acked("r", "p", N + 1, N + 2, base + 5, t0);
        l.register("r", "p", N + 2, base + 10);
        l.acked("r", "p", N + 2, N + 1, base + 15, t0);
        l.read("r", "p", N + 2, N + 1);
        l.read("r", "p", N + 1, N + 2);
        // Concurrent sends may swap: c sent at base+20, d at base+21 before c's ack.
        l.register("r", "p", N + 3, base + 20);
        l.register("r", "p", N + 4, base + 21);
        l.acked("r", "p", N + 3, N + 4, base + 25, t0);
        l.acked("r", "p", N + 4, N + 3, base + 26, t0);
        l.read("r", "p", N + 4, N + 3);
        l.read("r", "p", N + 3, N + 4);
        final_pass_all(&mut l, &[]);
        for c in N + 1..=N + 4 {
            l.final_read("r", "p", c);
        }
        let rep = l.report();
        assert_eq!(rep.total.out_of_order, 1, "{rep:?}");
        assert_eq!(
            rep.total.lost + rep.total.duplicated + rep.total.unexpected,
            0
        );
    }

    #[test]
    fn live_lost_only_behind_horizon_and_after_grace() {
        let mut l = Ledger::default();
        let t0 = Instant::now();
        l.register("r", "p", 1, 0);
        l.register("r", "p", 2, 1);
        l.acked("r", "p", 1, 1, 2, t0);
        l.acked("r", "p", 2, 2, 3, t0);
        l.read("r", "p", 1, 1);
        let later = t0 + Duration::from_secs(5);
        let grace = Duration::from_secs(1);
        assert_eq!(l.lost(later, grace), 0, "horizon not reached");
        l.advance("r", 2);
        assert_eq!(l.lost(t0, grace), 0, "within grace");
        assert_eq!(l.lost(later, grace), 1);
        assert_eq!(
            l.lost_examples(later, grace, 5),
            vec!["r/p:2@2 (horizon 2)".to_string()]
        );
        // Read late: no longer lost. A reset of the room starts its positions over.
        l.read("r", "p", 2, 2);
        assert_eq!(l.lost(later, grace), 0);
        l.read("r", "p", 1, 1);
        assert_eq!(l.duplicated(), 0, "same position");
        l.reset("r");
        l.read("r", "p", 1, 1);
        assert_eq!(l.duplicated(), 1, "a copy in the recreated stream");
    }

    #[test]
    fn read_before_ack_is_not_lost() {
        let mut l = Ledger::default();
        let t0 = Instant::now();
        l.register("r", "p", 1, 0);
        l.read("r", "p", 1, 1); // the reader beats the ack
        l.acked("r", "p", 1, 1, 5, t0);
        l.advance("r", 1);
        assert_eq!(l.lost(t0 + Duration::from_secs(9), Duration::ZERO), 0);
        l.final_read("r", "p", 1);
        assert!(l.report().total.is_clean());
        assert_eq!(l.footprint().0, 0);
    }
}
