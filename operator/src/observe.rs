//! What the Injections' status (written by the node agents) tells the engine, without I/O.

use chrono::{DateTime, Utc};
use firedrill_core::api::{FaultState, Injection, InjectionState, Lapse};
use firedrill_core::engine::Observation;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;

use crate::{AGENT_FINALIZER, PLAN_SIZE_ANNOTATION};

fn state(injection: &Injection) -> InjectionState {
    injection
        .status
        .as_ref()
        .map(|s| s.state)
        .unwrap_or_default()
}

/// How many Injections the plan had, as recorded on them; the count present if none says.
fn plan_size(injections: &[Injection]) -> usize {
    injections
        .iter()
        .filter_map(|i| i.annotations().get(PLAN_SIZE_ANNOTATION)?.parse().ok())
        .max()
        .unwrap_or(injections.len())
}

/// The engine's observations from the experiment's Injections (those still present; deleted
/// ones are gone), given the fault state the engine last recorded.
///
/// - While injecting: any `Failed` or `Refused` is an injection failure; every planned Injection present
///   and `Applied` is the fault applied, at the latest `appliedAt`.
/// - While injected or reverting: every Injection gone or `Reverted` is the fault reverted
///   (asked for, or expired on the agent's own timer), at the latest `revertedAt`, that of
///   the Injections already gone (`gone_reverted_at`, their agents' own time, asked for only
///   then) included; `now` only when no agent said when. A `Failed` one is an injection failure (the engine then
///   aborts).
pub fn observations(
    fault_state: FaultState,
    injections: &[Injection],
    gone_reverted_at: impl Fn() -> Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Vec<Observation> {
    let failed = injections
        .iter()
        .find(|i| matches!(state(i), InjectionState::Failed | InjectionState::Refused));
    let failure = failed.map(|i| Observation::InjectionFailed {
        at: now,
        reason: format!(
            "injection {} on node {} {}: {}",
            i.name_any(),
            i.spec.node_name,
            if state(i) == InjectionState::Refused {
                "was refused by the agent"
            } else {
                "failed"
            },
            i.status
                .as_ref()
                .and_then(|s| s.message.as_deref())
                .unwrap_or("the agent gave no reason")
        ),
    });
    match fault_state {
        FaultState::Injecting => {
            if let Some(failure) = failure {
                return vec![failure];
            }
            let all_applied = !injections.is_empty()
                && injections.len() >= plan_size(injections)
                && injections
                    .iter()
                    .all(|i| state(i) == InjectionState::Applied);
            if all_applied {
                let at = injections
                    .iter()
                    .filter_map(|i| i.status.as_ref()?.applied_at)
                    .max()
                    .unwrap_or(now);
                return vec![Observation::FaultApplied { at }];
            }
            vec![]
        }
        FaultState::Injected | FaultState::Reverting => {
            let reverted = injections
                .iter()
                .all(|i| state(i) == InjectionState::Reverted);
            if reverted {
                let at = injections
                    .iter()
                    .filter_map(|i| i.status.as_ref()?.reverted_at)
                    .chain(gone_reverted_at())
                    .max()
                    .unwrap_or(now);
                return vec![Observation::FaultReverted { at }];
            }
            failure.into_iter().collect()
        }
        FaultState::NotInjected | FaultState::Reverted => vec![],
    }
}

/// Everything the Injections tell the engine in `fault_state`: [`observations`], and while
/// the fault is held the lapses the agents measured since `last_held_at`.
pub fn news(
    fault_state: FaultState,
    last_held_at: Option<DateTime<Utc>>,
    injections: &[Injection],
    gone_reverted_at: impl Fn() -> Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Vec<Observation> {
    let mut news = observations(fault_state, injections, gone_reverted_at, now);
    if fault_state == FaultState::Injected {
        news.extend(lapse_observations(injections, last_held_at, now));
    }
    news
}

/// A stretch without the whole fault in place: since, healed (`None`: still open), what.
type Stretch<'a> = (DateTime<Utc>, Option<DateTime<Utc>>, Vec<&'a str>);

/// The engine's re-check observations from the lapses the agents measured (each
/// Injection's `status.lapses`), for a fault held since the engine last knew it whole at
/// `last_held_at`. Lapses of different nodes that overlap are one stretch without the
/// whole fault in place. One already taken in (healed by `last_held_at`) is not taken
/// again; one still open lasts until `now`.
pub fn lapse_observations(
    injections: &[Injection],
    last_held_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Vec<Observation> {
    let early = reverted_early(injections);
    let mut lapses: Vec<&Lapse> = injections
        .iter()
        .filter_map(|i| i.status.as_ref())
        .flat_map(|s| &s.lapses)
        .chain(&early)
        .collect();
    lapses.sort_by_key(|l| l.since);
    let mut merged: Vec<Stretch> = Vec::new();
    for l in lapses {
        match merged.last_mut() {
            Some((_, end, what)) if end.is_none_or(|e| l.since <= e) => {
                *end = match (*end, l.healed_at) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
                if !what.contains(&l.what.as_str()) {
                    what.push(&l.what);
                }
            }
            _ => merged.push((l.since, l.healed_at, vec![&l.what])),
        }
    }
    let mut out = Vec::new();
    for (since, healed, what) in merged {
        if healed.is_some_and(|h| last_held_at.is_some_and(|k| h <= k)) {
            continue;
        }
        if last_held_at.is_none_or(|k| since > k) {
            out.push(Observation::FaultHeld { at: since });
        }
        out.push(Observation::FaultLapsed {
            at: healed.unwrap_or(now),
            what: what.join("; "),
        });
        if let Some(at) = healed {
            out.push(Observation::FaultHeld { at });
        }
    }
    out
}

/// While the fault is held, an Injection its agent already reverted before its own
/// duration was up (its expiry, or its driver's heartbeat stopped) left that part of the
/// fault gone since: an open lapse. One its node ended once it had held for its whole
/// `holdFor` is the fault ending on time: a node cut off ends it a few milliseconds before
/// the engine's duration, which counts from the latest node's apply. Once every Injection is
/// reverted the fault as a whole ended, which the engine judges.
fn reverted_early(injections: &[Injection]) -> Vec<Lapse> {
    if injections
        .iter()
        .all(|i| state(i) == InjectionState::Reverted)
    {
        return vec![];
    }
    injections
        .iter()
        .filter(|i| state(i) == InjectionState::Reverted)
        .filter_map(|i| {
            let status = i.status.as_ref()?;
            let at = status.reverted_at?;
            if status
                .applied_at
                .is_some_and(|applied| i.spec.held_its_duration(applied, at))
            {
                return None;
            }
            Some(Lapse {
                since: at,
                seen_at: at,
                healed_at: None,
                what: format!(
                    "{} on node {} was reverted by its agent before the revert was asked ({})",
                    i.name_any(),
                    i.spec.node_name,
                    status.message.as_deref().unwrap_or("no reason given")
                ),
            })
        })
        .collect()
}

/// Injections being deleted that only their node's agent could finish, on a node that no
/// longer exists: nothing runs there any more, so their agent finalizer may be removed.
pub fn orphaned<'a>(injections: &'a [Injection], nodes: &[Node]) -> Vec<&'a Injection> {
    injections
        .iter()
        .filter(|i| i.metadata.deletion_timestamp.is_some())
        .filter(|i| i.finalizers().iter().any(|f| f == AGENT_FINALIZER))
        .filter(|i| {
            !nodes
                .iter()
                .any(|n| n.metadata.name.as_deref() == Some(i.spec.node_name.as_str()))
        })
        .collect()
}

/// Injections still to be deleted (not already being deleted).
pub fn to_delete(injections: &[Injection]) -> Vec<&Injection> {
    injections
        .iter()
        .filter(|i| i.metadata.deletion_timestamp.is_none())
        .collect()
}

/// A short list of what is still in place, for messages.
pub fn describe(injections: &[Injection]) -> String {
    let mut names: Vec<String> = injections
        .iter()
        .take(5)
        .map(|i| format!("{} on {} ({:?})", i.name_any(), i.spec.node_name, state(i)))
        .collect();
    if injections.len() > 5 {
        names.push(format!("and {} more", injections.len() - 5));
    }
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use firedrill_core::api::{InjectionSpec, InjectionStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::api::ObjectMeta;

    use super::*;
    use crate::testing::at;

    /// [`observations`] with no Injection gone before this read.
    fn observed(
        fault_state: FaultState,
        injections: &[Injection],
        now: DateTime<Utc>,
    ) -> Vec<Observation> {
        observations(fault_state, injections, || None, now)
    }

    fn inj(name: &str, node: &str, state: InjectionState, plan_size: usize) -> Injection {
        Injection {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: Some(BTreeMap::from([(
                    PLAN_SIZE_ANNOTATION.to_owned(),
                    plan_size.to_string(),
                )])),
                ..Default::default()
            },
            spec: InjectionSpec {
                node_name: node.into(),
                experiment: "talk/x".into(),
                action: crate::plan::isolate(vec![]),
                expires_at: at(100),
                hold_for: None,
                heartbeat: None,
            },
            status: Some(InjectionStatus {
                state,
                applied_at: (state != InjectionState::Pending).then(|| at(3)),
                reverted_at: (state == InjectionState::Reverted).then(|| at(50)),
                message: (state == InjectionState::Failed).then(|| "no such pod".into()),
                lapses: vec![],
                ..InjectionStatus::default()
            }),
        }
    }

    #[test]
    fn applied_only_when_every_planned_injection_reports_applied() {
        let a = inj("a", "n1", InjectionState::Applied, 2);
        let b = inj("b", "n2", InjectionState::Pending, 2);
        assert!(observed(FaultState::Injecting, &[], at(5)).is_empty());
        assert!(observed(FaultState::Injecting, &[a.clone(), b], at(5)).is_empty());
        // One of two created so far: not applied, even though it reports Applied.
        assert!(observed(FaultState::Injecting, std::slice::from_ref(&a), at(5)).is_empty());
        let mut b = inj("b", "n2", InjectionState::Applied, 2);
        if let Some(s) = b.status.as_mut() {
            s.applied_at = Some(at(4));
        }
        assert_eq!(
            observed(FaultState::Injecting, &[a, b], at(5)),
            vec![Observation::FaultApplied { at: at(4) }]
        );
    }

    #[test]
    fn a_failed_injection_is_reported_with_the_agents_reason() {
        let obs = observed(
            FaultState::Injecting,
            &[
                inj("a", "n1", InjectionState::Applied, 2),
                inj("b", "n2", InjectionState::Failed, 2),
            ],
            at(5),
        );
        match obs.as_slice() {
            [Observation::InjectionFailed { reason, .. }] => {
                assert!(reason.contains("b on node n2") && reason.contains("no such pod"));
            }
            other => panic!("{other:?}"),
        }
    }

    fn lapse(since: i64, seen: i64, healed: Option<i64>, what: &str) -> Lapse {
        Lapse {
            since: at(since),
            seen_at: at(seen),
            healed_at: healed.map(at),
            what: what.into(),
        }
    }

    fn with_lapses(name: &str, lapses: Vec<Lapse>) -> Injection {
        let mut i = inj(name, "n1", InjectionState::Applied, 2);
        if let Some(s) = i.status.as_mut() {
            s.lapses = lapses;
        }
        i
    }

    #[test]
    fn lapses_become_held_lapsed_held_once_and_overlapping_ones_merge() {
        let a = with_lapses(
            "a",
            vec![lapse(10, 11, Some(12), "chain a gone (re-applied)")],
        );
        let b = with_lapses(
            "b",
            vec![lapse(11, 12, Some(14), "pid 7 running (re-applied)")],
        );
        let obs = lapse_observations(&[a.clone(), b], Some(at(5)), at(20));
        assert_eq!(obs.len(), 3, "{obs:?}");
        assert_eq!(obs[0], Observation::FaultHeld { at: at(10) });
        match &obs[1] {
            Observation::FaultLapsed { at: t, what } => {
                assert_eq!(*t, at(14), "the stretch ends when both healed");
                assert!(what.contains("chain a") && what.contains("pid 7"), "{what}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(obs[2], Observation::FaultHeld { at: at(14) });
        // Taken in already (the engine knew the fault whole at 14): nothing again.
        assert!(lapse_observations(&[a], Some(at(14)), at(20)).is_empty());
        // Still open: it lasts until now, and is not "held" at its start twice.
        let open = with_lapses(
            "c",
            vec![lapse(30, 31, None, "mount writable (re-applying failed)")],
        );
        let obs = lapse_observations(std::slice::from_ref(&open), Some(at(14)), at(40));
        assert_eq!(obs[0], Observation::FaultHeld { at: at(30) });
        assert!(matches!(&obs[1], Observation::FaultLapsed { at: t, .. } if *t == at(40)));
        assert_eq!(obs.len(), 2);
        let again = lapse_observations(&[open], Some(at(30)), at(45));
        assert!(matches!(&again[..], [Observation::FaultLapsed { at: t, .. }] if *t == at(45)));
        // No lapses, no observations.
        assert!(
            lapse_observations(&[inj("d", "n1", InjectionState::Applied, 1)], None, at(1))
                .is_empty()
        );
    }

    #[test]
    fn a_part_its_agent_reverted_while_the_rest_holds_is_an_open_lapse() {
        let held = inj("a", "n1", InjectionState::Applied, 2);
        let mut early = inj("b", "n2", InjectionState::Reverted, 2);
        if let Some(s) = early.status.as_mut() {
            s.message = Some("its driver's heartbeat (Lease x) was not renewed".into());
        }
        let obs = lapse_observations(&[held.clone(), early.clone()], Some(at(10)), at(60));
        assert_eq!(obs[0], Observation::FaultHeld { at: at(50) }, "{obs:?}");
        match &obs[1] {
            Observation::FaultLapsed { at: t, what } => {
                assert_eq!(*t, at(60), "open: it lasts until now");
                assert!(
                    what.contains("b on node n2") && what.contains("heartbeat"),
                    "{what}"
                );
            }
            other => panic!("{other:?}"),
        }
        // All reverted: the fault ended as a whole, no lapse of a part.
        let mut both = held;
        if let Some(s) = both.status.as_mut() {
            s.state = InjectionState::Reverted;
            s.reverted_at = Some(at(55));
        }
        assert!(lapse_observations(&[both, early], Some(at(10)), at(60)).is_empty());
    }

    #[test]
    fn a_part_its_node_ended_once_it_had_held_its_duration_is_no_lapse() {
        // Applied at 3 for 45 s; a node that cut itself off ends it at 48, before the
        // engine's duration, which counts from the latest apply, is up.
        let held = inj("a", "n1", InjectionState::Applied, 2);
        let mut on_time = inj("b", "n2", InjectionState::Reverted, 2);
        on_time.spec.hold_for = Some(std::time::Duration::from_secs(45).into());
        if let Some(s) = on_time.status.as_mut() {
            s.reverted_at = Some(at(48));
            s.message = Some("reverted by the agent's own timer".into());
        }
        assert!(
            lapse_observations(&[held.clone(), on_time.clone()], Some(at(10)), at(49)).is_empty()
        );
        // A second short of its duration: early, a lapse.
        if let Some(s) = on_time.status.as_mut() {
            s.reverted_at = Some(at(47));
        }
        let obs = lapse_observations(&[held, on_time], Some(at(10)), at(49));
        assert!(
            obs.iter()
                .any(|o| matches!(o, Observation::FaultLapsed { .. })),
            "{obs:?}"
        );
    }

    #[test]
    fn a_refused_injection_is_an_injection_failure_that_says_so() {
        let mut refused = inj("b", "n2", InjectionState::Refused, 2);
        if let Some(s) = refused.status.as_mut() {
            s.message = Some("pod kube-system/coredns is in a protected namespace".into());
        }
        let obs = observed(
            FaultState::Injecting,
            &[inj("a", "n1", InjectionState::Applied, 2), refused],
            at(5),
        );
        match obs.as_slice() {
            [Observation::InjectionFailed { reason, .. }] => {
                assert!(reason.contains("refused by the agent"), "{reason}");
                assert!(reason.contains("kube-system/coredns"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reverted_when_all_are_gone_or_report_reverted() {
        // All gone (deleted, the agents removed their finalizers): when their agents said
        // they reverted them, and only if none said, when it is seen.
        assert_eq!(
            observed(FaultState::Reverting, &[], at(60)),
            vec![Observation::FaultReverted { at: at(60) }]
        );
        assert_eq!(
            observations(FaultState::Reverting, &[], || Some(at(52)), at(120)),
            vec![Observation::FaultReverted { at: at(52) }]
        );
        // Some gone, the rest reverted and still there: the latest of all.
        assert_eq!(
            observations(
                FaultState::Reverting,
                &[inj("a", "n1", InjectionState::Reverted, 1)],
                || Some(at(52)),
                at(120)
            ),
            vec![Observation::FaultReverted { at: at(52) }]
        );
        // Expired on the agent's own timer while holding.
        assert_eq!(
            observed(
                FaultState::Injected,
                &[inj("a", "n1", InjectionState::Reverted, 1)],
                at(60)
            ),
            vec![Observation::FaultReverted { at: at(50) }]
        );
        // One still applied: not reverted.
        assert!(
            observed(
                FaultState::Reverting,
                &[
                    inj("a", "n1", InjectionState::Reverted, 2),
                    inj("b", "n2", InjectionState::Applied, 2)
                ],
                at(60)
            )
            .is_empty()
        );
        // Nothing is observed before injecting or after the revert.
        assert!(observed(FaultState::NotInjected, &[], at(1)).is_empty());
        assert!(observed(FaultState::Reverted, &[], at(1)).is_empty());
    }

    #[test]
    fn only_deleted_injections_of_vanished_nodes_are_orphans() {
        let mut gone = inj("a", "gone-node", InjectionState::Applied, 2);
        gone.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        gone.metadata.finalizers = Some(vec![AGENT_FINALIZER.to_owned()]);
        let mut here = gone.clone();
        here.spec.node_name = "n1".into();
        let mut not_deleted = gone.clone();
        not_deleted.metadata.deletion_timestamp = None;
        let node = Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let all = [gone, here, not_deleted];
        let orphans = orphaned(&all, &[node]);
        assert_eq!(orphans.len(), 1);
        assert_eq!(orphans[0].spec.node_name, "gone-node");
        assert_eq!(to_delete(&all).len(), 1);
    }
}
