//! The dead man's switch, agent side (pure): what the agent has read of each heartbeat
//! Lease, and since when it has been unchanged by the agent's own clock. Comparing the
//! Lease's renew time with this node's clock would trust the two clocks to agree; noting
//! when a change was *seen* does not.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::planner::{Wanted, heartbeat_poll, next_tick};

/// What the API server said of a heartbeat Lease: its holder and renew time, or, when it has
/// none, the answer itself (gone, forbidden). Either way it stays the same while nobody
/// renews.
pub type Answer = String;

/// The agent's reads of one heartbeat Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    /// The last answer; `None` before the first one.
    pub seen: Option<Answer>,
    /// Since when, by this agent's clock, the answer has been `seen`.
    pub since: DateTime<Utc>,
    /// Whether the API server answered the last read (not: it timed out or was unreachable).
    pub answered: bool,
    /// When it was last read.
    pub read_at: DateTime<Utc>,
}

impl Beat {
    /// Takes in one read at `now`: `Some(answer)` when the API server answered.
    pub fn read(previous: Option<&Beat>, answer: Option<Answer>, now: DateTime<Utc>) -> Beat {
        match (previous, answer) {
            (Some(p), Some(a)) if p.seen.as_ref() == Some(&a) => Beat {
                answered: true,
                read_at: now,
                ..p.clone()
            },
            // A new answer is dated when it is seen, never earlier: the renewal may have
            // come just before this read, so dating it back would end a fault before
            // `timeoutSeconds` had passed since it (2.3 s for a 4 s timeout in CI).
            (_, Some(a)) => Beat {
                seen: Some(a),
                since: now,
                answered: true,
                read_at: now,
            },
            // No answer: nothing learnt, but the renew time seen stays the one it was.
            (Some(p), None) => Beat {
                answered: false,
                read_at: now,
                ..p.clone()
            },
            (None, None) => Beat {
                seen: None,
                since: now,
                answered: false,
                read_at: now,
            },
        }
    }

    /// Since when the Lease has been unchanged, if the API server's last answer says so.
    pub fn unchanged_since(&self) -> Option<DateTime<Utc>> {
        (self.answered && self.seen.is_some()).then_some(self.since)
    }
}

/// The heartbeat Leases worth reading now: those of Injections still live, not read since
/// the last instant of the [`heartbeat_poll`] grid (see [`next_tick`]), so the reads fall
/// into the same passes as the re-checks.
pub fn due(
    view: &[Wanted],
    beats: &BTreeMap<String, Beat>,
    now: DateTime<Utc>,
) -> BTreeSet<String> {
    followed(view)
        .into_iter()
        .filter(|lease| {
            beats
                .get(lease)
                .is_none_or(|b| next_tick(b.read_at, heartbeat_poll()) <= now)
        })
        .collect()
}

/// The heartbeat Leases of the Injections still live (not ended, not being deleted).
pub fn followed(view: &[Wanted]) -> BTreeSet<String> {
    view.iter()
        .filter(|w| !w.deleting && !w.state.is_final())
        .filter_map(|w| Some(w.driver.as_ref()?.lease.clone()))
        .collect()
}

/// Fills in what the beats tell of each Injection's driver.
pub fn annotate(view: &mut [Wanted], beats: &BTreeMap<String, Beat>) {
    for d in view.iter_mut().filter_map(|w| w.driver.as_mut()) {
        d.unchanged_since = beats.get(&d.lease).and_then(Beat::unchanged_since);
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone};
    use firedrill_core::api::InjectionState;

    use super::*;
    use crate::planner::{self, Driver, Held, Memory, RevertReason, Step};

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn renewed(n: u32) -> Option<Answer> {
        Some(format!("operator-0 at 2026-12-03T10:00:{n:02}Z"))
    }

    #[test]
    fn a_lease_is_unchanged_since_the_agent_saw_its_renew_time_change() {
        let b = Beat::read(None, renewed(1), at(0));
        assert_eq!(b.unchanged_since(), Some(at(0)));
        let b = Beat::read(Some(&b), renewed(1), at(2));
        assert_eq!(b.unchanged_since(), Some(at(0)), "the same renewal again");
        let b = Beat::read(Some(&b), renewed(2), at(4));
        assert_eq!(
            b.unchanged_since(),
            Some(at(4)),
            "the renewal may have come just before this read: dated when seen"
        );
        // After reads the API server did not answer, the change is dated when it is seen.
        let silent = Beat::read(Some(&b), None, at(6));
        let back = Beat::read(Some(&silent), renewed(3), at(30));
        assert_eq!(back.unchanged_since(), Some(at(30)));
    }

    #[test]
    fn without_an_answer_the_agent_cannot_tell() {
        assert_eq!(Beat::read(None, None, at(0)).unchanged_since(), None);
        let b = Beat::read(None, renewed(1), at(0));
        let cut_off = Beat::read(Some(&b), None, at(30));
        assert_eq!(
            cut_off.unchanged_since(),
            None,
            "a node cut off holds its fault"
        );
        // Back in reach and still the same renewal: the driver has been gone all along.
        let back = Beat::read(Some(&cut_off), renewed(1), at(32));
        assert_eq!(back.unchanged_since(), Some(at(0)));
    }

    #[test]
    fn an_answer_without_a_renewal_counts_as_unchanged() {
        let gone = Some("no Lease firedrill-operator (404)".to_owned());
        let b = Beat::read(None, gone.clone(), at(0));
        let b = Beat::read(Some(&b), gone, at(12));
        assert_eq!(b.unchanged_since(), Some(at(0)));
    }

    fn wanted(state: InjectionState) -> Wanted {
        Wanted {
            key: "k".into(),
            expires_at: at(600),
            deleting: false,
            finalized: true,
            state,
            kill: false,
            driver: Some(Driver {
                lease: "firedrill-operator".into(),
                timeout: TimeDelta::seconds(10),
                unchanged_since: None,
            }),
        }
    }

    fn held() -> Held {
        Held {
            key: "k".into(),
            ids: vec![firedrill_faults::InjectionId::new("k-0").unwrap()],
            created_at: at(0),
            expires_at: at(600),
            unreadable: vec![],
        }
    }

    /// The planner over a lease read `reads` (time, answer), deciding at `now`.
    fn decide(state: InjectionState, reads: &[(i64, Option<Answer>)], now: i64) -> planner::Plan {
        let mut beats = BTreeMap::new();
        for (t, answer) in reads {
            let beat = Beat::read(beats.get("firedrill-operator"), answer.clone(), at(*t));
            beats.insert("firedrill-operator".to_owned(), beat);
        }
        let mut view = vec![wanted(state)];
        annotate(&mut view, &beats);
        let held = (state == InjectionState::Applied).then(held);
        planner::plan(Some(&view), held.as_slice(), &Memory::default(), at(now))
    }

    fn reverts_for_driver(plan: &planner::Plan) -> bool {
        plan.steps.iter().any(|s| {
            matches!(
                s,
                Step::Revert {
                    reason: RevertReason::DriverGone,
                    ..
                }
            )
        })
    }

    #[test]
    fn a_held_fault_is_reverted_once_its_driver_stops_renewing() {
        let applied = InjectionState::Applied;
        let renewing: Vec<_> = (0..10).map(|n| (i64::from(n) * 2, renewed(n))).collect();
        assert!(
            !reverts_for_driver(&decide(applied, &renewing, 19)),
            "renewed"
        );
        // Last renewal seen at 4 s: the fault ends ten seconds later, not before.
        let stopped: Vec<_> = (0..8)
            .map(|n| (i64::from(n) * 2, renewed(n.min(2))))
            .collect();
        assert!(!reverts_for_driver(&decide(applied, &stopped, 13)));
        let plan = decide(applied, &stopped, 14);
        assert!(reverts_for_driver(&plan), "{plan:?}");
        // The planner wakes the loop when the timeout would run out.
        let waiting = decide(applied, &stopped[..5], 9);
        assert!(waiting.wake.is_some_and(|w| w <= at(11)), "{waiting:?}");
    }

    /// When the agent reverts, reading on the [`heartbeat_poll`] grid, for a driver that
    /// renews every `every` ms from `offset` ms until `stops` ms; `None` if it holds to 120 s.
    fn reverted_at(every: i64, offset: i64, stops: i64) -> Option<DateTime<Utc>> {
        let poll = heartbeat_poll().num_seconds();
        let mut reads = Vec::new();
        for read in (0..120).step_by(usize::try_from(poll).unwrap()) {
            let last = ((read * 1_000).min(stops) - offset).div_euclid(every);
            reads.push((read, renewed_ms(last)));
            if reverts_for_driver(&decide(InjectionState::Applied, &reads, read)) {
                return Some(at(read));
            }
        }
        None
    }

    fn renewed_ms(n: i64) -> Option<Answer> {
        Some(format!("operator-0 renewal {n}"))
    }

    #[test]
    fn the_switch_ends_a_fault_between_the_timeout_and_one_read_after_the_last_renewal() {
        let (timeout, poll) = (10_000, heartbeat_poll().num_milliseconds());
        for every in [500, 2_140, 5_000, timeout - poll] {
            for offset in [0, 1, 300, 1_999] {
                assert_eq!(
                    reverted_at(every, offset, i64::MAX),
                    None,
                    "a driver renewing every {every} ms (offset {offset}) is alive"
                );
                let stops = 40_000 + offset;
                let last = stops - (stops - offset).rem_euclid(every);
                let ended = reverted_at(every, offset, stops).expect("reverted");
                let after = (ended - at(0)).num_milliseconds() - last;
                assert!(
                    (timeout..=timeout + poll).contains(&after),
                    "renewing every {every} ms, offset {offset}: reverted {after} ms after the last renewal"
                );
            }
        }
    }

    #[test]
    fn a_node_that_cannot_reach_the_api_server_holds_its_fault() {
        let reads: Vec<_> = std::iter::once((0, renewed(0)))
            .chain((1..30).map(|n| (n * 2, None)))
            .collect();
        assert!(!reverts_for_driver(&decide(
            InjectionState::Applied,
            &reads,
            60
        )));
    }

    #[test]
    fn an_injection_whose_driver_is_gone_is_never_applied() {
        let reads = [(0, renewed(0)), (10, renewed(0))];
        let plan = decide(InjectionState::Pending, &reads, 10);
        assert!(
            !plan.steps.iter().any(|s| matches!(s, Step::Apply(_))),
            "{plan:?}"
        );
        let failed = plan.steps.iter().find_map(|s| match s {
            Step::Report {
                report: planner::Report::Failed { message },
                ..
            } => Some(message.clone()),
            _ => None,
        });
        assert!(
            failed.is_some_and(|m| m.contains("Lease firedrill-operator")),
            "{plan:?}"
        );
    }

    #[test]
    fn only_live_injections_are_followed() {
        let mut ended = wanted(InjectionState::Reverted);
        ended.key = "ended".into();
        let mut deleting = wanted(InjectionState::Applied);
        deleting.deleting = true;
        assert!(followed(&[ended, deleting]).is_empty());
        let live = [wanted(InjectionState::Applied)];
        let beats = BTreeMap::from([(
            "firedrill-operator".to_owned(),
            Beat::read(None, renewed(0), at(0)),
        )]);
        assert!(due(&live, &beats, at(1)).is_empty(), "read a second ago");
        assert_eq!(due(&live, &beats, at(2)).len(), 1);
    }

    #[test]
    fn heartbeat_reads_fall_on_the_grid_of_the_rechecks() {
        let live = [wanted(InjectionState::Applied)];
        let read_at = at(0) + TimeDelta::milliseconds(300);
        let beats = BTreeMap::from([(
            "firedrill-operator".to_owned(),
            Beat::read(None, renewed(0), read_at),
        )]);
        let before = at(2) - TimeDelta::milliseconds(1);
        assert!(due(&live, &beats, before).is_empty());
        // Due at the grid instant, with the re-checks, not 2 s after the read.
        assert_eq!(due(&live, &beats, at(2)).len(), 1);
        let plan = decide(InjectionState::Applied, &[(0, renewed(0))], 1);
        assert_eq!(plan.wake, Some(at(2)), "{plan:?}");
    }
}
