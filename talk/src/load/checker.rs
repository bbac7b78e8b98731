//! Jepsen-style queue checker: compares what was sent with what was read.
//!
//! Pure: it takes the send log and the messages read back, and counts per
//! room: acknowledged messages never read (lost), messages read more than
//! once (duplicated), messages read that were never sent to that room
//! (unexpected), failed/timed-out sends that did arrive (recovered; a
//! failed send is indeterminate, never lost), and real-time order
//! violations (out of order).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;

/// Identity of a message: (producer, counter).
pub type MsgId = (Arc<str>, u64);

/// What happened to one send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// The server acknowledged it at stream sequence `seq`.
    Acked { seq: u64, acked_at: u64 },
    /// Error or timeout: it may or may not have been stored.
    Indeterminate,
}

/// One send attempt. Times are in any monotonic unit (talk-load uses µs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRecord {
    pub room: Arc<str>,
    pub producer: Arc<str>,
    pub counter: u64,
    pub sent_at: u64,
    pub outcome: SendOutcome,
}

/// One message read back, in stream order within its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    pub room: Arc<str>,
    pub seq: u64,
    pub producer: Arc<str>,
    pub counter: u64,
}

/// Counts for one room (or the total).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomReport {
    pub sent: u64,
    pub acked: u64,
    pub indeterminate: u64,
    pub read: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub unexpected: u64,
    pub recovered: u64,
    pub out_of_order: u64,
    /// A few lost ids (`producer:counter@seq`), to start an investigation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lost_examples: Vec<String>,
}

impl RoomReport {
    fn add(&mut self, o: &RoomReport) {
        self.sent += o.sent;
        self.acked += o.acked;
        self.indeterminate += o.indeterminate;
        self.read += o.read;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.unexpected += o.unexpected;
        self.recovered += o.recovered;
        self.out_of_order += o.out_of_order;
        for e in &o.lost_examples {
            if self.lost_examples.len() < MAX_EXAMPLES {
                self.lost_examples.push(e.clone());
            }
        }
    }

    /// True when nothing acknowledged went missing and nothing appeared twice
    /// or from nowhere.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.unexpected == 0 && self.out_of_order == 0
    }
}

/// The whole verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub total: RoomReport,
    pub rooms: BTreeMap<String, RoomReport>,
}

const MAX_EXAMPLES: usize = 10;

/// Checks `reads` against `sends`. `reads` of one room must be in stream order.
pub fn check(sends: &[SendRecord], reads: &[ReadRecord]) -> CheckReport {
    let mut rooms: BTreeMap<String, RoomReport> = BTreeMap::new();
    // Index sends by room and id.
    let mut sent: HashMap<(Arc<str>, MsgId), &SendRecord> = HashMap::with_capacity(sends.len());
    for s in sends {
        let r = rooms.entry(s.room.to_string()).or_default();
        r.sent += 1;
        match s.outcome {
            SendOutcome::Acked { .. } => r.acked += 1,
            SendOutcome::Indeterminate => r.indeterminate += 1,
        }
        sent.insert((s.room.clone(), (s.producer.clone(), s.counter)), s);
    }

    let mut seen: HashMap<(Arc<str>, MsgId), u64> = HashMap::with_capacity(reads.len());
    // Per (room, producer): the read message with the highest counter so far.
    let mut newest: HashMap<(Arc<str>, Arc<str>), &SendRecord> = HashMap::new();
    for read in reads {
        let r = rooms.entry(read.room.to_string()).or_default();
        r.read += 1;
        let key = (read.room.clone(), (read.producer.clone(), read.counter));
        let count = seen.entry(key.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            r.duplicated += 1;
            continue;
        }
        let Some(send) = sent.get(&key) else {
            r.unexpected += 1;
            continue;
        };
        if send.outcome == SendOutcome::Indeterminate {
            r.recovered += 1;
        }
        // Real-time order: if this message was acknowledged before a newer
        // message of the same producer was even sent, it must come first.
        let slot = newest.entry((read.room.clone(), read.producer.clone()));
        match slot {
            std::collections::hash_map::Entry::Occupied(mut prev) => {
                let p = *prev.get();
                if send.counter < p.counter {
                    if let SendOutcome::Acked { acked_at, .. } = send.outcome
                        && acked_at < p.sent_at
                    {
                        r.out_of_order += 1;
                    }
                } else {
                    prev.insert(send);
                }
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(send);
            }
        }
    }

    for s in sends {
        if let SendOutcome::Acked { seq, .. } = s.outcome {
            let key = (s.room.clone(), (s.producer.clone(), s.counter));
            if !seen.contains_key(&key) {
                let r = rooms.entry(s.room.to_string()).or_default();
                r.lost += 1;
                if r.lost_examples.len() < MAX_EXAMPLES {
                    r.lost_examples
                        .push(format!("{}:{}@{}", s.producer, s.counter, seq));
                }
            }
        }
    }

    let mut total = RoomReport::default();
    for r in rooms.values() {
        total.add(r);
    }
    CheckReport { total, rooms }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    fn acked(
        room: &str,
        p: &str,
        counter: u64,
        seq: u64,
        sent_at: u64,
        acked_at: u64,
    ) -> SendRecord {
        SendRecord {
            room: a(room),
            producer: a(p),
            counter,
            sent_at,
            outcome: SendOutcome::Acked { seq, acked_at },
        }
    }

    fn failed(room: &str, p: &str, counter: u64, sent_at: u64) -> SendRecord {
        SendRecord {
            room: a(room),
            producer: a(p),
            counter,
            sent_at,
            outcome: SendOutcome::Indeterminate,
        }
    }

    fn read(room: &str, seq: u64, p: &str, counter: u64) -> ReadRecord {
        ReadRecord {
            room: a(room),
            seq,
            producer: a(p),
            counter,
        }
    }

    #[test]
    fn clean_run_is_clean() {
        let sends = vec![acked("r", "p", 1, 1, 0, 5), acked("r", "p", 2, 2, 10, 15)];
        let reads = vec![read("r", 1, "p", 1), read("r", 2, "p", 2)];
        let rep = check(&sends, &reads);
        assert!(rep.total.is_clean(), "{rep:?}");
        assert_eq!(rep.total.acked, 2);
        assert_eq!(rep.total.read, 2);
    }

    #[test]
    fn acked_but_unread_is_lost() {
        let sends = vec![acked("r", "p", 1, 1, 0, 5), acked("r", "p", 2, 2, 10, 15)];
        let reads = vec![read("r", 1, "p", 1)];
        let rep = check(&sends, &reads);
        assert_eq!(rep.total.lost, 1);
        assert_eq!(rep.rooms["r"].lost_examples, vec!["p:2@2".to_string()]);
    }

    #[test]
    fn failed_send_is_never_lost_and_recovered_if_read() {
        let sends = vec![failed("r", "p", 1, 0), failed("r", "p", 2, 1)];
        let reads = vec![read("r", 7, "p", 2)];
        let rep = check(&sends, &reads);
        assert_eq!(rep.total.lost, 0);
        assert_eq!(rep.total.indeterminate, 2);
        assert_eq!(rep.total.recovered, 1);
        assert!(rep.total.is_clean());
    }

    #[test]
    fn read_twice_is_duplicated() {
        let sends = vec![acked("r", "p", 1, 1, 0, 5)];
        let reads = vec![read("r", 1, "p", 1), read("r", 2, "p", 1)];
        let rep = check(&sends, &reads);
        assert_eq!(rep.total.duplicated, 1);
        assert_eq!(rep.total.lost, 0);
    }

    #[test]
    fn never_sent_or_wrong_room_is_unexpected() {
        let sends = vec![acked("r", "p", 1, 1, 0, 5)];
        let reads = vec![
            read("r", 1, "p", 1),
            read("r", 2, "ghost", 1),
            read("other", 3, "p", 1),
        ];
        let rep = check(&sends, &reads);
        assert_eq!(rep.total.unexpected, 2);
        assert_eq!(rep.rooms["other"].unexpected, 1);
    }

    #[test]
    fn real_time_reorder_is_out_of_order() {
        // p:1 acked at 5, p:2 sent at 10: p:1 must be stored first.
        let sends = vec![acked("r", "p", 1, 2, 0, 5), acked("r", "p", 2, 1, 10, 15)];
        let reads = vec![read("r", 1, "p", 2), read("r", 2, "p", 1)];
        let rep = check(&sends, &reads);
        assert_eq!(rep.total.out_of_order, 1);
    }

    #[test]
    fn concurrent_sends_may_swap() {
        // p:2 was sent (at 3) before p:1 was acked (at 5): either order is fine.
        let sends = vec![acked("r", "p", 1, 2, 0, 5), acked("r", "p", 2, 1, 3, 6)];
        let reads = vec![read("r", 1, "p", 2), read("r", 2, "p", 1)];
        let rep = check(&sends, &reads);
        assert_eq!(rep.total.out_of_order, 0);
        assert!(rep.total.is_clean());
    }

    #[test]
    fn totals_sum_rooms() {
        let sends = vec![
            acked("a", "p", 1, 1, 0, 1),
            acked("b", "p", 2, 2, 2, 3),
            acked("b", "q", 1, 3, 2, 3),
        ];
        let reads = vec![read("a", 1, "p", 1), read("b", 3, "q", 1)];
        let rep = check(&sends, &reads);
        assert_eq!(rep.total.sent, 3);
        assert_eq!(rep.total.lost, 1);
        assert_eq!(rep.rooms["b"].lost, 1);
        assert_eq!(rep.rooms["a"].lost, 0);
    }
}
