use super::*;
use InjectionState::*;
use chrono::TimeZone;
use firedrill_core::api::MAX_LAPSES;

fn at(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
}

fn wanted(key: &str, state: InjectionState) -> Wanted {
    Wanted {
        key: key.into(),
        expires_at: at(100),
        deleting: false,
        finalized: state != Pending,
        state,
        kill: false,
        driver: None,
    }
}

fn held(key: &str) -> Held {
    Held {
        key: key.into(),
        ids: vec![InjectionId::new(format!("{key}-0")).unwrap()],
        created_at: at(5),
        expires_at: at(100),
        unreadable: vec![],
    }
}

fn revert(key: &str, reason: RevertReason) -> Step {
    Step::Revert {
        key: key.into(),
        reason,
    }
}

#[test]
fn a_new_injection_is_applied_and_wakes_at_its_expiry() {
    let p = plan(
        Some(&[wanted("a", Pending)]),
        &[],
        &Memory::default(),
        at(10),
    );
    assert_eq!(p.steps, vec![Step::Apply("a".into())]);
    assert_eq!(p.wake, Some(at(100)));
}

#[test]
fn a_held_fault_is_rechecked_and_a_lapse_is_measured_from_the_last_whole_check() {
    let view = [wanted("a", Applied)];
    // First plan of a held, reported fault: check now, then every RECHECK_EVERY.
    let p = plan(Some(&view), &[held("a")], &Memory::default(), at(10));
    assert_eq!(p.steps, vec![Step::Recheck("a".into())]);
    assert_eq!(p.wake, Some(at(10) + RECHECK_EVERY));
    let mut checks = Checks::new(at(5), at(10));
    checks.record(&[], at(10));
    assert_eq!((checks.whole_at, checks.next_at), (at(10), at(12)));
    let mut memory = Memory::default();
    memory.checks.insert("a".into(), checks.clone());
    let p = plan(Some(&view), &[held("a")], &memory, at(11));
    assert_eq!(p.steps, vec![], "not due yet");
    assert_eq!(p.wake, Some(at(12)));
    // Found gone at 12 (re-applied): a lapse since 10, and another look at once.
    checks.record(&["chain x gone (re-applied)".into()], at(12));
    assert_eq!(checks.lapses.len(), 1);
    assert_eq!(checks.lapses[0].since, at(10));
    assert_eq!(checks.lapses[0].seen_at, at(12));
    assert_eq!(checks.next_at, at(12));
    // Still gone: the same lapse, its text updated; whole again: healed.
    checks.record(&["chain x gone (re-applying failed: busy)".into()], at(12));
    assert_eq!(checks.lapses.len(), 1);
    assert!(checks.lapses[0].what.contains("busy"));
    checks.record(&[], at(13));
    assert_eq!(checks.lapses[0].healed_at, Some(at(13)));
    // Unreported lapses are written before anything else is checked.
    memory.checks.insert("a".into(), checks.clone());
    let p = plan(Some(&view), &[held("a")], &memory, at(13));
    assert!(matches!(
        &p.steps[0],
        Step::Report { report: Report::Checked { lapses, .. }, .. } if lapses.len() == 1
    ));
    checks.reported = checks.lapses.clone();
    memory.checks.insert("a".into(), checks.clone());
    let p = plan(Some(&view), &[held("a")], &memory, at(13));
    assert_eq!(p.steps, vec![]);
    // A kill is enforced, never rechecked; at most MAX_LAPSES are kept.
    let mut kill = wanted("k", Applied);
    kill.kill = true;
    let p = plan(Some(&[kill]), &[held("k")], &Memory::default(), at(10));
    assert_eq!(p.steps, vec![Step::Enforce("k".into())]);
    for n in 0..(MAX_LAPSES as i64 + 5) {
        checks.record(&["gone".into()], at(20 + 2 * n));
        checks.record(&[], at(21 + 2 * n));
    }
    assert_eq!(checks.lapses.len(), MAX_LAPSES);
    assert_eq!(
        checks.lapses.last().and_then(|l| l.healed_at),
        Some(at(21 + 2 * (MAX_LAPSES as i64 + 4)))
    );
}

#[test]
fn a_refused_injection_is_reported_refused_and_never_applied_again() {
    let mut memory = Memory::default();
    memory
        .refused
        .insert("a".into(), "this node is never a target".into());
    let p = plan(Some(&[wanted("a", Pending)]), &[], &memory, at(10));
    assert!(matches!(
        &p.steps[..],
        [Step::Report { report: Report::Refused { message }, .. }]
            if message.contains("never a target")
    ));
    // Reported (or seen after a restart, with nothing remembered): nothing to do, no
    // apply; a finalizer, if one was ever added, is let go.
    let mut refused = wanted("a", Refused);
    refused.finalized = false;
    let p = plan(Some(&[refused.clone()]), &[], &Memory::default(), at(11));
    assert_eq!(p.steps, vec![]);
    refused.finalized = true;
    let p = plan(Some(&[refused]), &[], &Memory::default(), at(11));
    assert_eq!(p.steps, vec![Step::Release("a".into())]);
}

#[test]
fn applied_and_held_needs_nothing_until_expiry_then_reverts_and_reports() {
    let view = [wanted("a", Applied)];
    let p = plan(Some(&view), &[held("a")], &Memory::default(), at(50));
    assert_eq!(
        p.steps,
        vec![Step::Recheck("a".into())],
        "only its re-check"
    );
    assert_eq!(p.wake, Some(at(50) + RECHECK_EVERY));
    let mut memory = Memory::default();
    memory.checks.insert("a".into(), Checks::new(at(5), at(99)));
    let p = plan(Some(&view), &[held("a")], &memory, at(50));
    assert_eq!(p.steps, vec![]);
    assert_eq!(p.wake, Some(at(99)));
    let p = plan(Some(&view), &[held("a")], &Memory::default(), at(100));
    assert_eq!(p.steps, vec![revert("a", RevertReason::Expired)]);
    // Once reverted: report and release.
    let p = plan(Some(&view), &[], &Memory::default(), at(101));
    assert!(matches!(
        &p.steps[..],
        [Step::Report { report: Report::Reverted { at: t, why }, .. }, Step::Release(k)]
            if *t == at(101) && why.contains("own timer") && k == "a"
    ));
    assert_eq!(p.wake, None);
}

#[test]
fn deletion_reverts_then_reports_and_releases() {
    let mut w = wanted("a", Applied);
    w.deleting = true;
    let p = plan(Some(&[w.clone()]), &[held("a")], &Memory::default(), at(20));
    assert_eq!(p.steps, vec![revert("a", RevertReason::Deleted)]);
    let p = plan(Some(&[w.clone()]), &[], &Memory::default(), at(21));
    assert!(matches!(
        &p.steps[..],
        [
            Step::Report {
                report: Report::Reverted { .. },
                ..
            },
            Step::Release(_)
        ]
    ));
    // Deleted before it was ever applied: just let it go.
    let mut pending = wanted("b", Pending);
    pending.deleting = true;
    pending.finalized = true;
    let p = plan(Some(&[pending]), &[], &Memory::default(), at(21));
    assert_eq!(p.steps, vec![Step::Release("b".into())]);
    // Without our finalizer there is nothing left to do.
    w.finalized = false;
    w.state = Reverted;
    assert_eq!(
        plan(Some(&[w]), &[], &Memory::default(), at(22)).steps,
        vec![]
    );
}

#[test]
fn an_unreadable_entry_is_salvaged_and_failed_never_reverted_nor_released() {
    let mut h = held("a");
    h.unreadable = vec!["corrupt journal entry /j/a-1.json: EOF".into()];
    for mut w in [wanted("a", Applied), wanted("a", Pending)] {
        for deleting in [false, true] {
            w.deleting = deleting;
            for now in [at(50), at(500)] {
                let mut memory = Memory::default();
                let p = plan(Some(&[w.clone()]), &[h.clone()], &memory, now);
                assert_eq!(p.steps, vec![Step::Salvage("a".into())], "{w:?} at {now}");
                memory
                    .salvaged
                    .insert("a".into(), "removed its chains from 1 namespace".into());
                let p = plan(Some(&[w.clone()]), &[h.clone()], &memory, now);
                match &p.steps[..] {
                    [
                        Step::Report {
                            report: Report::JournalUnreadable { message, at },
                            ..
                        },
                    ] => {
                        assert!(message.contains("EOF"), "{message}");
                        assert!(message.contains("1 namespace"), "{message}");
                        assert_eq!(*at, now);
                    }
                    other => panic!("{w:?} at {now}: {other:?}"),
                }
                memory.reported.insert("a".into(), Failed);
                let p = plan(Some(&[w.clone()]), &[h.clone()], &memory, now);
                assert_eq!(p.steps, vec![], "no release while the entry is there");
            }
        }
    }
    // Once a person removes the file, the ended Injection is let go as usual.
    let mut w = wanted("a", Failed);
    w.deleting = true;
    let p = plan(Some(&[w]), &[], &Memory::default(), at(60));
    assert_eq!(p.steps, vec![Step::Release("a".into())]);
}

#[test]
fn what_this_process_reported_wins_over_a_stale_view() {
    let view = [wanted("a", Applied)];
    let mut memory = Memory::default();
    memory.reported.insert("a".into(), Reverted);
    let p = plan(Some(&view), &[], &memory, at(101));
    assert_eq!(p.steps, vec![Step::Release("a".into())]);
}

#[test]
fn held_faults_of_no_injection_are_reverted_once_the_list_is_known() {
    let p = plan(Some(&[]), &[held("gone")], &Memory::default(), at(10));
    assert_eq!(p.steps, vec![revert("gone", RevertReason::Gone)]);
}

#[test]
fn while_the_api_is_unknown_only_expiry_reverts() {
    let p = plan(None, &[held("a")], &Memory::default(), at(10));
    assert_eq!(p.steps, vec![]);
    assert_eq!(p.wake, Some(at(100)));
    let p = plan(None, &[held("a")], &Memory::default(), at(100));
    assert_eq!(p.steps, vec![revert("a", RevertReason::Expired)]);
    assert_eq!(p.wake, None);
}

#[test]
fn an_interrupted_apply_is_reverted_then_applied_again() {
    let view = [wanted("a", Pending)];
    let p = plan(Some(&view), &[held("a")], &Memory::default(), at(10));
    assert_eq!(p.steps, vec![revert("a", RevertReason::Interrupted)]);
    let p = plan(Some(&view), &[], &Memory::default(), at(10));
    assert_eq!(p.steps, vec![Step::Apply("a".into())]);
}

#[test]
fn applied_here_but_not_yet_reported_is_reported_with_the_journal_time() {
    let view = [wanted("a", Pending)];
    let mut memory = Memory::default();
    memory.complete.insert("a".into());
    let p = plan(Some(&view), &[held("a")], &memory, at(10));
    assert_eq!(
        p.steps,
        vec![Step::Report {
            key: "a".into(),
            report: Report::Applied { at: at(5) }
        }]
    );
}

#[test]
fn a_failure_is_reported_and_never_retried() {
    let view = [wanted("a", Pending)];
    let mut memory = Memory::default();
    memory
        .failed
        .insert("a".into(), "pod x/y has no process".into());
    let p = plan(Some(&view), &[], &memory, at(10));
    assert_eq!(
        p.steps,
        vec![Step::Report {
            key: "a".into(),
            report: Report::Failed {
                message: "pod x/y has no process".into()
            }
        }]
    );
    memory.reported.insert("a".into(), Failed);
    let p = plan(Some(&view), &[], &memory, at(11));
    assert_eq!(p.steps, vec![], "ended: no report again, no retry");
    // A failed injection with our finalizer has it removed.
    let mut w = wanted("a", Failed);
    w.finalized = true;
    let p = plan(Some(&[w]), &[], &Memory::default(), at(11));
    assert_eq!(p.steps, vec![Step::Release("a".into())]);
}

#[test]
fn an_ended_injection_that_still_holds_something_is_reverted() {
    let p = plan(
        Some(&[wanted("a", Failed)]),
        &[held("a")],
        &Memory::default(),
        at(10),
    );
    assert_eq!(p.steps, vec![revert("a", RevertReason::Ended)]);
}

#[test]
fn expired_before_it_was_applied_is_a_plain_failure_never_an_apply() {
    let p = plan(
        Some(&[wanted("a", Pending)]),
        &[],
        &Memory::default(),
        at(100),
    );
    assert!(matches!(
        &p.steps[..],
        [Step::Report { report: Report::Failed { message }, .. }]
            if message.contains("before the agent could apply it")
    ));
}

#[test]
fn a_kill_is_enforced_while_it_lasts() {
    let mut w = wanted("k", Applied);
    w.kill = true;
    let p = plan(Some(&[w.clone()]), &[held("k")], &Memory::default(), at(10));
    assert_eq!(p.steps, vec![Step::Enforce("k".into())]);
    assert_eq!(p.wake, Some(at(10) + ENFORCE_EVERY));
    let p = plan(Some(&[w]), &[held("k")], &Memory::default(), at(100));
    assert_eq!(p.steps, vec![revert("k", RevertReason::Expired)]);
}

#[test]
fn reverts_come_before_applies_and_wake_is_the_earliest() {
    let mut soon = wanted("b", Pending);
    soon.expires_at = at(30);
    let view = [wanted("a", Pending), soon];
    let p = plan(Some(&view), &[held("z")], &Memory::default(), at(10));
    assert_eq!(
        p.steps,
        vec![
            revert("z", RevertReason::Gone),
            Step::Apply("a".into()),
            Step::Apply("b".into())
        ]
    );
    assert_eq!(p.wake, Some(at(30)));
}

#[test]
fn the_journal_expiry_counts_when_it_is_earlier() {
    let mut h = held("a");
    h.expires_at = at(40);
    let p = plan(
        Some(&[wanted("a", Applied)]),
        &[h],
        &Memory::default(),
        at(40),
    );
    assert_eq!(p.steps, vec![revert("a", RevertReason::Expired)]);
}

#[test]
fn memory_forgets_what_neither_the_watch_nor_the_journal_knows() {
    let mut memory = Memory::default();
    for key in ["watched", "journalled", "gone"] {
        memory.complete.insert(key.into());
        memory.failed.insert(key.into(), "x".into());
        memory.refused.insert(key.into(), "x".into());
        memory.reported.insert(key.into(), Reverted);
        memory.salvaged.insert(key.into(), "x".into());
        memory.checks.insert(key.into(), Checks::new(at(5), at(6)));
        memory.reverted_at.insert(key.into(), at(7));
    }
    let before = memory.clone();
    // A watch that has not listed yet says nothing about what is gone.
    memory.forget_gone(None, &[held("journalled")]);
    assert_eq!(memory, before);

    memory.forget_gone(Some(&[wanted("watched", Applied)]), &[held("journalled")]);
    let keys = |m: &Memory| -> Vec<Vec<String>> {
        vec![
            m.complete.iter().cloned().collect(),
            m.failed.keys().cloned().collect(),
            m.refused.keys().cloned().collect(),
            m.reported.keys().cloned().collect(),
            m.salvaged.keys().cloned().collect(),
            m.checks.keys().cloned().collect(),
            m.reverted_at.keys().cloned().collect(),
        ]
    };
    let kept = vec!["journalled".to_owned(), "watched".to_owned()];
    assert_eq!(keys(&memory), vec![kept; 7]);
}

fn at_ms(ms: i64) -> DateTime<Utc> {
    at(0) + TimeDelta::milliseconds(ms)
}

#[test]
fn the_next_grid_instant_is_after_now_and_at_most_one_period_away() {
    let every = RECHECK_EVERY;
    for ms in [0, 1, 999, 1000, 1999, 2000, 2001, 3333, 123_457] {
        let now = at_ms(ms);
        let next = next_tick(now, every);
        assert!(next > now && next <= now + every, "{now} → {next}");
        let nanos = next.timestamp_nanos_opt().unwrap();
        assert_eq!(
            nanos % every.num_nanoseconds().unwrap(),
            0,
            "{next} on the grid"
        );
    }
    // On a grid instant: the next one, a whole period later.
    assert_eq!(next_tick(at(10), every), at(12));
}

#[test]
fn faults_checked_at_staggered_times_are_next_checked_together_in_one_pass() {
    // Three faults applied at different moments (as 100 Injections are): each first check
    // runs when it is applied; after it, all fall due on the same grid instant, so the
    // loop wakes once per period for all of them instead of once per fault.
    let keys = ["a", "b", "c"];
    let view: Vec<Wanted> = keys.iter().map(|k| wanted(k, Applied)).collect();
    let held: Vec<Held> = keys.iter().map(|k| held(k)).collect();
    let mut memory = Memory::default();
    for (key, ms) in keys.iter().zip([10_300, 11_100, 11_900]) {
        let mut checks = Checks::new(at(5), at_ms(ms));
        checks.record(&[], at_ms(ms));
        assert_eq!(checks.next_at, at(12), "{key} checked at {ms} ms");
        memory.checks.insert((*key).into(), checks);
    }
    let p = plan(Some(&view), &held, &memory, at_ms(11_950));
    assert_eq!(p.steps, vec![], "none due before the grid instant");
    assert_eq!(p.wake, Some(at(12)), "one wake for all three");
    let p = plan(Some(&view), &held, &memory, at_ms(12_004));
    let rechecks: Vec<&str> = p
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Recheck(_)))
        .map(Step::key)
        .collect();
    assert_eq!(rechecks, keys, "all three in the same pass");
    assert_eq!(p.wake, Some(at(14)));
    // A pass that ran late still keeps the next check within one period of it.
    let mut late = memory.checks["a"].clone();
    late.record(&[], at_ms(13_990));
    assert_eq!(late.next_at, at(14));
}

#[test]
fn the_recheck_period_is_not_longer_than_the_default_sample_interval() {
    // The lapse rule fails a run whose fault was gone for longer than one sample interval;
    // checks at most that far apart see such a lapse.
    let h: firedrill_core::api::Hypothesis =
        serde_json::from_value(serde_json::json!({"probes": [{"name": "x"}]})).unwrap();
    assert!(RECHECK_EVERY <= h.interval.to_chrono());
}

#[test]
fn a_released_injection_is_not_released_again_while_the_view_is_stale() {
    let mut deleted = wanted("a", Reverted);
    deleted.deleting = true;
    let p = plan(Some(&[deleted.clone()]), &[], &Memory::default(), at(101));
    assert_eq!(p.steps, vec![Step::Release("a".into())]);
    // Released: the watch has not brought the deletion yet, and the view still shows the
    // finalizer. Nothing to do, no second patch.
    let mut memory = Memory::default();
    memory.released.insert("a".into());
    let p = plan(Some(&[deleted.clone()]), &[], &memory, at(102));
    assert_eq!(p.steps, vec![]);
    // Once the view no longer has it, it is forgotten.
    memory.forget_gone(Some(&[]), &[]);
    assert!(memory.released.is_empty());
}

/// A blackout's node, cut off by its own fault, sees no watch update until the cut ends:
/// its copies of the Injections are older than its own reports (no `appliedAt`, so the
/// copy's end is the far `expiresAt`). Its own timer ends the faults at their duration from
/// the journal. Nothing may then apply them again: the e2e cluster's agents killed the
/// zone's pods and cut the node off again for up to 0.8 s after the fault's end.
#[test]
fn a_fault_its_own_timer_ended_is_never_applied_again_from_an_old_copy() {
    let mut held_until_10 = held("a");
    held_until_10.expires_at = at(10);
    let stale = wanted("a", Pending);
    let mut memory = Memory::default();
    memory.reported.insert("a".into(), Applied);
    memory.complete.insert("a".into());
    // Held to the journal's end: reverted then, by its own timer.
    let p = plan(
        Some(std::slice::from_ref(&stale)),
        &[held_until_10],
        &memory,
        at(10),
    );
    assert_eq!(p.steps, vec![revert("a", RevertReason::Expired)]);
    // The revert done (as the shell records it), the stale copy still says nothing of it.
    memory.complete.remove("a");
    memory.reverted_at.insert("a".into(), at(10));
    let p = plan(Some(std::slice::from_ref(&stale)), &[], &memory, at(11));
    assert!(
        !p.steps.contains(&Step::Apply("a".into())),
        "applied again: {:?}",
        p.steps
    );
    assert_eq!(
        p.steps,
        vec![Step::Report {
            key: "a".into(),
            report: Report::Reverted {
                at: at(10),
                why: RevertReason::Expired.describe().to_owned(),
            },
        }]
    );
    // Reported once, and released when the operator deletes it.
    memory.reported.insert("a".into(), Reverted);
    let p = plan(Some(std::slice::from_ref(&stale)), &[], &memory, at(12));
    assert!(p.steps.is_empty(), "{:?}", p.steps);
    let deleting = Wanted {
        deleting: true,
        finalized: true,
        ..stale
    };
    let p = plan(Some(&[deleting]), &[], &memory, at(13));
    assert_eq!(p.steps, vec![Step::Release("a".into())]);
}

/// An apply a crash interrupted is reverted to be applied whole again: that revert is no
/// end, and leaves no revert time behind.
#[test]
fn an_interrupted_apply_reverted_here_is_still_applied_again() {
    let memory = Memory::default();
    let p = plan(Some(&[wanted("a", Pending)]), &[], &memory, at(11));
    assert_eq!(p.steps, vec![Step::Apply("a".into())]);
}
