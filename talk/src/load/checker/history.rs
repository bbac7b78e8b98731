//! The checker over whole logs: every send and every read of a run, given at once.

use std::sync::Arc;
use std::time::Instant;

use super::ledger::Ledger;
use super::report::CheckReport;

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

/// Checks `reads` against `sends`. `reads` of one room must be in stream order.
///
/// The whole-history form of [`Ledger`]: the live pass and the final pass both read
/// `reads`.
pub fn check(sends: &[SendRecord], reads: &[ReadRecord]) -> CheckReport {
    let mut ledger = Ledger::default();
    let at = Instant::now();
    for s in sends {
        ledger.register(&s.room, &s.producer, s.counter, s.sent_at);
    }
    for s in sends {
        match s.outcome {
            SendOutcome::Acked { seq, acked_at } => {
                ledger.acked(&s.room, &s.producer, s.counter, seq, acked_at, at);
            }
            SendOutcome::Indeterminate => ledger.failed(&s.room, &s.producer, s.counter),
        }
    }
    for r in reads {
        ledger.read(&r.room, &r.producer, r.counter, r.seq);
    }
    for r in reads {
        ledger.final_read(&r.room, &r.producer, r.counter);
    }
    ledger.report()
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

    // The ledger after long runs: settled messages are ranges, and every check still works.
}
