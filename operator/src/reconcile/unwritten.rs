//! Status writes held back: an Experiment's status changes on every probe sample, and at a
//! thousand live experiments sampling every few seconds those server-side applies were the
//! API server's largest request class (41 a live Experiment, 41 % of all requests at
//! N=1,000). A change that is only routine sampling (a passing sample, the fault found whole
//! again; see `ExperimentStatus::differs_only_by_routine_sampling`) waits here, in memory,
//! and the next reconciliation continues from it; anything else — a failing sample, a
//! figure, a phase, a lapse, a verdict — is written at once with what waited. Nothing waits
//! longer than [`HOLD_AT_MOST`], so `kubectl get` and another replica that takes over are
//! that far behind at worst, and a replica that takes over re-samples from the last
//! written status (it loses a few passing samples, never a failing one).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};
use firedrill_core::api::ExperimentStatus;

/// The longest a routine change waits for a write.
pub const HOLD_AT_MOST: TimeDelta = TimeDelta::seconds(30);

#[derive(Debug)]
struct Waiting {
    /// The status as written (what the API server shows) when this began to wait.
    written: ExperimentStatus,
    /// The engine's status, ahead of `written` by routine sampling only.
    current: ExperimentStatus,
    /// When the oldest change not yet written was made.
    since: DateTime<Utc>,
}

/// Held-back statuses by Experiment uid.
#[derive(Debug, Default)]
pub struct Unwritten {
    waiting: Mutex<HashMap<String, Waiting>>,
}

impl Unwritten {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Waiting>) -> T) -> Option<T> {
        // A poisoned lock only loses the saving: every change is then written.
        self.waiting.lock().ok().map(|mut waiting| f(&mut waiting))
    }

    /// The status for the engine to continue from: what waits here while the API server
    /// still shows the status it was held back from, else the API server's (another writer
    /// came between, and what waited is dropped).
    pub fn resume(&self, uid: &str, written: &ExperimentStatus) -> ExperimentStatus {
        self.with(|waiting| match waiting.get(uid) {
            Some(w) if w.written == *written => Some(w.current.clone()),
            Some(_) => {
                waiting.remove(uid);
                None
            }
            None => None,
        })
        .flatten()
        .unwrap_or_else(|| written.clone())
    }

    /// Whether `current` may wait rather than be written over `written` now; it is kept
    /// when it may. Otherwise (and after a write) nothing of `uid` waits any more.
    pub fn hold_back(
        &self,
        uid: &str,
        written: &ExperimentStatus,
        current: &ExperimentStatus,
        now: DateTime<Utc>,
    ) -> bool {
        // Compared outside the lock, which every reconciliation shares.
        let routine = current.differs_only_by_routine_sampling(written);
        self.with(|waiting| {
            let since = waiting
                .get(uid)
                .filter(|w| w.written == *written)
                .map_or(now, |w| w.since);
            let hold = routine && now - since < HOLD_AT_MOST;
            if hold {
                waiting.insert(
                    uid.to_owned(),
                    Waiting {
                        written: written.clone(),
                        current: current.clone(),
                        since,
                    },
                );
            } else {
                waiting.remove(uid);
            }
            hold
        })
        .unwrap_or(false)
    }

    /// Forgets `uid` (written, completed or deleted).
    pub fn forget(&self, uid: &str) {
        self.with(|waiting| waiting.remove(uid));
    }

    /// How many experiments have a change waiting.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.with(|waiting| waiting.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use firedrill_core::api::Phase;

    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn sampled(at_s: i64) -> ExperimentStatus {
        ExperimentStatus {
            phase: Phase::Holding,
            last_sampled_at: Some(at(at_s)),
            ..ExperimentStatus::default()
        }
    }

    #[test]
    fn routine_samples_wait_at_most_their_bound_and_the_engine_continues_from_them() {
        let held = Unwritten::default();
        let written = sampled(0);
        // Samples every 5 s: each waits, and the next reconciliation starts from the last.
        for s in [5, 10, 15, 20, 25] {
            let current = sampled(s);
            assert!(held.hold_back("uid", &written, &current, at(s)), "at {s} s");
            assert_eq!(held.resume("uid", &written), current);
        }
        // The first change waiting is 30 s old by now: written, and nothing waits.
        assert!(!held.hold_back("uid", &written, &sampled(35), at(35)));
        assert_eq!(held.len(), 0);
        assert_eq!(held.resume("uid", &written), written);
    }

    #[test]
    fn a_change_beyond_sampling_is_written_at_once() {
        let held = Unwritten::default();
        let written = sampled(0);
        assert!(held.hold_back("uid", &written, &sampled(5), at(5)));
        let mut reverting = sampled(10);
        reverting.phase = Phase::Reverting;
        assert!(!held.hold_back("uid", &written, &reverting, at(10)));
        assert_eq!(held.len(), 0);
        assert!(
            !held.hold_back("uid", &written, &written, at(10)),
            "no change"
        );
    }

    #[test]
    fn what_waited_is_dropped_once_the_api_server_shows_another_status() {
        let held = Unwritten::default();
        let written = sampled(0);
        assert!(held.hold_back("uid", &written, &sampled(5), at(5)));
        // Another replica wrote meanwhile: its status is the one to continue from.
        let theirs = sampled(7);
        assert_eq!(held.resume("uid", &theirs), theirs);
        assert_eq!(held.len(), 0);
        // And waiting starts afresh from it.
        assert!(held.hold_back("uid", &theirs, &sampled(12), at(12)));
        assert!(
            held.hold_back("uid", &theirs, &sampled(40), at(40)),
            "12 s + 28 s"
        );
    }
}
