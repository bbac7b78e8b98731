//! The agent's side of the Injection contract with the operator (pure): the names both
//! sides use, what the planner needs of an Injection, and the status the agent writes.
//!
//! The operator labels each Injection with its node ([`NODE_LABEL`]) when the node's name
//! fits a label value, and asks for a revert by deleting the Injection; the agent adds
//! [`AGENT_FINALIZER`] before applying, writes `status` with server-side apply under the one
//! field manager [`FIELD_MANAGER`], and removes its finalizer once nothing is in place.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use firedrill_core::api::{
    Condition, Injection, InjectionSpec, InjectionState, InjectionStatus, JOURNAL_READABLE, Lapse,
    ProcessSignal, keep_longest_lapses,
};
use kube::{Resource, ResourceExt};
use serde_json::Value;

use crate::error::Result;
use crate::planner::{Driver, Report, Wanted};
use crate::translate::key_of;

// The names both sides use, defined once in core's contract module.
pub use firedrill_core::api::{
    AGENT_FIELD_MANAGER as FIELD_MANAGER, AGENT_FINALIZER, NODE_LABEL, node_selector,
};

/// `namespace/name`, for logs and messages.
pub fn display_name(injection: &Injection) -> String {
    format!(
        "{}/{}",
        injection.namespace().unwrap_or_default(),
        injection.name_any()
    )
}

/// What the planner needs of `injection`; `Ok(None)` when it is for another node.
/// `cut_off`: its experiment cuts the node off while it holds (see
/// [`InjectionSpec::cut_off_among`]).
pub fn wanted(injection: &Injection, node: &str, cut_off: bool) -> Result<Option<Wanted>> {
    if injection.spec.node_name != node {
        return Ok(None);
    }
    let key = key_of(injection.meta().uid.as_deref().unwrap_or_default())?;
    Ok(Some(Wanted {
        key,
        // Once applied, the fault ends at its duration by the agent's clock even with
        // nothing left in the journal to say so (reverted, then restarted).
        expires_at: match injection.status.as_ref().and_then(|s| s.applied_at) {
            Some(applied_at) => own_expiry(&injection.spec, applied_at, cut_off),
            None => injection.spec.expires_at,
        },
        deleting: injection.meta().deletion_timestamp.is_some(),
        finalized: injection.finalizers().iter().any(|f| f == AGENT_FINALIZER),
        state: injection
            .status
            .as_ref()
            .map(|s| s.state)
            .unwrap_or_default(),
        kill: injection
            .spec
            .action
            .processes
            .as_ref()
            .is_some_and(|p| p.signal == ProcessSignal::Kill),
        driver: injection.spec.heartbeat.as_ref().map(|h| Driver {
            lease: h.lease.clone(),
            timeout: TimeDelta::seconds(i64::from(h.timeout_seconds)),
            unchanged_since: None,
        }),
    }))
}

/// The status after `report`, keeping what earlier reports established (the first
/// `appliedAt` and `revertedAt`). Server-side apply replaces the fields the agent owns, so
/// every write carries the whole status.
pub fn next_status(previous: Option<&InjectionStatus>, report: &Report) -> InjectionStatus {
    let previous = previous.cloned().unwrap_or_default();
    match report {
        Report::Applied { at } => InjectionStatus {
            state: InjectionState::Applied,
            applied_at: previous.applied_at.or(Some(*at)),
            reverted_at: None,
            message: None,
            lapses: previous.lapses,
            conditions: previous.conditions,
        },
        Report::Reverted { at, why } => InjectionStatus {
            state: InjectionState::Reverted,
            applied_at: previous.applied_at,
            reverted_at: previous.reverted_at.or(Some(*at)),
            message: Some(why.clone()),
            lapses: previous.lapses,
            conditions: previous.conditions,
        },
        Report::Failed { message } => InjectionStatus {
            state: InjectionState::Failed,
            applied_at: previous.applied_at,
            reverted_at: previous.reverted_at,
            message: Some(message.clone()),
            lapses: previous.lapses,
            conditions: previous.conditions,
        },
        Report::JournalUnreadable { at, message } => InjectionStatus {
            state: InjectionState::Failed,
            applied_at: previous.applied_at,
            reverted_at: previous.reverted_at,
            message: Some(message.clone()),
            lapses: previous.lapses,
            conditions: vec![Condition {
                type_: JOURNAL_READABLE.into(),
                status: "False".into(),
                reason: "EntryUnreadable".into(),
                message: message.clone(),
                last_transition_time: *at,
            }],
        },
        Report::Refused { message } => InjectionStatus {
            state: InjectionState::Refused,
            applied_at: None,
            reverted_at: None,
            message: Some(message.clone()),
            lapses: vec![],
            conditions: vec![],
        },
        Report::Checked { applied_at, lapses } => InjectionStatus {
            state: InjectionState::Applied,
            applied_at: previous.applied_at.or(Some(*applied_at)),
            reverted_at: None,
            message: None,
            lapses: merge_lapses(previous.lapses, lapses),
            conditions: previous.conditions,
        },
    }
}

/// The lapses the status keeps: those written before and those found now, one per
/// (since, seen at), the newer word on each winning (an open lapse that healed). A lapse
/// written before is never dropped for being absent now: an agent that restarted knows
/// only what it found since, and an operator that had not yet read the status would
/// otherwise never learn that the fault did not hold. Past [`MAX_LAPSES`] the shortest
/// healed ones go ([`keep_longest_lapses`]).
fn merge_lapses(previous: Vec<Lapse>, found: &[Lapse]) -> Vec<Lapse> {
    let mut by_key: BTreeMap<(DateTime<Utc>, DateTime<Utc>), Lapse> = previous
        .into_iter()
        .map(|l| ((l.since, l.seen_at), l))
        .collect();
    by_key.extend(found.iter().map(|l| ((l.since, l.seen_at), l.clone())));
    let mut kept: Vec<Lapse> = by_key.into_values().collect();
    keep_longest_lapses(&mut kept);
    kept
}

/// The server-side-apply patch of the status subresource (apiVersion and kind included, as
/// apply patches need them).
pub fn status_patch(status: &InjectionStatus) -> Result<Value> {
    firedrill_core::api::status_patch::<Injection>(status)
        .map_err(|e| crate::error::Error::Invalid(format!("status: {e}")))
}

/// A time as the API server shows it, for messages.
pub fn show(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// When the agent reverts a fault applied at `applied_at` on its own clock, on a node its
/// experiment cuts off or not (see [`InjectionSpec::node_end`]).
pub fn own_expiry(spec: &InjectionSpec, applied_at: DateTime<Utc>, cut_off: bool) -> DateTime<Utc> {
    spec.node_end(applied_at, cut_off)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use firedrill_core::api::MAX_LAPSES;
    use firedrill_core::api::{NodeAction, PodRef, ProcessAction};
    use kube::api::ObjectMeta;

    const UID: &str = "6f1c2a3b-0d4e-4f5a-8b9c-0123456789ab";

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn injection(node: &str, action: NodeAction) -> Injection {
        Injection {
            metadata: ObjectMeta {
                name: Some("exp-node-1".into()),
                namespace: Some("chaos".into()),
                uid: Some(UID.into()),
                ..ObjectMeta::default()
            },
            spec: InjectionSpec {
                node_name: node.into(),
                experiment: "chaos/exp".into(),
                action,
                expires_at: at(100),
                hold_for: None,
                heartbeat: None,
            },
            status: None,
        }
    }

    fn kill() -> NodeAction {
        NodeAction {
            network: None,
            processes: Some(ProcessAction {
                pods: vec![PodRef {
                    namespace: "a".into(),
                    name: "b".into(),
                    uid: "c".into(),
                }],
                signal: ProcessSignal::Kill,
            }),
            read_only_volume: None,
        }
    }

    #[test]
    fn the_agent_writes_under_its_own_field_manager() {
        // Server-side apply: the agent must never take over the operator's fields.
        assert_ne!(FIELD_MANAGER, firedrill_core::api::OPERATOR_FIELD_MANAGER);
    }

    #[test]
    fn the_selector_is_the_node_label_when_the_name_fits() {
        assert_eq!(
            node_selector("zone-a-1").as_deref(),
            Some("firedrill.dev/node=zone-a-1")
        );
        assert_eq!(node_selector(&format!("{}.example", "n".repeat(60))), None);
    }

    #[test]
    fn wanted_reads_what_the_planner_needs() {
        let mut inj = injection("node-1", kill());
        assert_eq!(
            wanted(&inj, "node-2", false).unwrap(),
            None,
            "another node's"
        );
        let w = wanted(&inj, "node-1", false).unwrap().unwrap();
        assert_eq!(w.key, "6f1c2a3b0d4e4f5a8b9c0123456789ab");
        assert!(w.kill && !w.deleting && !w.finalized);
        assert_eq!(w.state, InjectionState::Pending);
        inj.metadata.finalizers = Some(vec![AGENT_FINALIZER.into()]);
        inj.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        inj.spec.action = firedrill_core::planner::isolate(vec![]);
        inj.status = Some(InjectionStatus {
            state: InjectionState::Applied,
            ..InjectionStatus::default()
        });
        let w = wanted(&inj, "node-1", false).unwrap().unwrap();
        assert!(!w.kill && w.deleting && w.finalized);
        assert_eq!(w.state, InjectionState::Applied);
        inj.metadata.uid = None;
        assert_eq!(
            wanted(&inj, "node-1", false).unwrap_err().category(),
            "invalid"
        );
    }

    #[test]
    fn status_keeps_the_first_times_and_says_why() {
        let applied = next_status(None, &Report::Applied { at: at(1) });
        assert_eq!(applied.state, InjectionState::Applied);
        assert_eq!(applied.applied_at, Some(at(1)));
        let again = next_status(Some(&applied), &Report::Applied { at: at(9) });
        assert_eq!(again.applied_at, Some(at(1)), "first appliedAt kept");
        let reverted = next_status(
            Some(&applied),
            &Report::Reverted {
                at: at(60),
                why: "reverted: the Injection was deleted".into(),
            },
        );
        assert_eq!(reverted.state, InjectionState::Reverted);
        assert_eq!(reverted.applied_at, Some(at(1)));
        assert_eq!(reverted.reverted_at, Some(at(60)));
        assert!(reverted.message.unwrap().contains("deleted"));
        let failed = next_status(
            None,
            &Report::Failed {
                message: "pod a/b has no running process on this node".into(),
            },
        );
        assert_eq!(failed.state, InjectionState::Failed);
        assert_eq!(failed.applied_at, None);
    }

    #[test]
    fn an_unreadable_journal_is_a_failure_with_a_condition_that_later_reports_keep() {
        let unreadable = next_status(
            Some(&next_status(None, &Report::Applied { at: at(2) })),
            &Report::JournalUnreadable {
                at: at(9),
                message: "cannot prove the fault was reverted".into(),
            },
        );
        assert_eq!(unreadable.state, InjectionState::Failed);
        assert_eq!(unreadable.applied_at, Some(at(2)));
        let condition = &unreadable.conditions[..];
        assert!(
            matches!(condition, [c] if c.type_ == JOURNAL_READABLE && c.status == "False"
                && c.reason == "EntryUnreadable" && c.last_transition_time == at(9)),
            "{condition:?}"
        );
        let failed = next_status(
            Some(&unreadable),
            &Report::Failed {
                message: "x".into(),
            },
        );
        assert_eq!(failed.conditions, unreadable.conditions);
    }

    fn lapse(since: i64, seen: i64, healed: Option<i64>) -> firedrill_core::api::Lapse {
        firedrill_core::api::Lapse {
            since: at(since),
            seen_at: at(seen),
            healed_at: healed.map(at),
            what: format!("gone at {seen}"),
        }
    }

    #[test]
    fn a_restarted_agent_adds_its_lapses_to_those_written_before_it() {
        let written = Report::Checked {
            applied_at: at(3),
            lapses: vec![lapse(10, 12, Some(30))],
        };
        let before = next_status(None, &written);
        // After a restart the agent knows only what it found since, and it heals an open
        // lapse it found itself.
        let after = next_status(
            Some(&before),
            &Report::Checked {
                applied_at: at(3),
                lapses: vec![lapse(40, 42, None)],
            },
        );
        assert_eq!(
            after.lapses,
            vec![lapse(10, 12, Some(30)), lapse(40, 42, None)]
        );
        let healed = next_status(
            Some(&after),
            &Report::Checked {
                applied_at: at(3),
                lapses: vec![lapse(40, 42, Some(44))],
            },
        );
        assert_eq!(
            healed.lapses,
            vec![lapse(10, 12, Some(30)), lapse(40, 42, Some(44))]
        );
    }

    #[test]
    fn past_the_limit_the_shortest_healed_lapses_go_and_the_longest_stay() {
        let mut previous = None;
        let max = i64::try_from(MAX_LAPSES).unwrap();
        // A long lapse first, then short ones (2 s each), then one still open.
        let mut found = vec![lapse(0, 2, Some(100))];
        found.extend((0..max + 5).map(|n| lapse(200 + 10 * n, 201 + 10 * n, Some(202 + 10 * n))));
        found.push(lapse(5000, 5002, None));
        for l in found {
            let status = next_status(
                previous.as_ref(),
                &Report::Checked {
                    applied_at: at(0),
                    lapses: vec![l],
                },
            );
            previous = Some(status);
        }
        let kept = previous.unwrap().lapses;
        assert_eq!(kept.len(), MAX_LAPSES);
        assert_eq!(
            kept.first(),
            Some(&lapse(0, 2, Some(100))),
            "the longest stays"
        );
        assert_eq!(
            kept.last(),
            Some(&lapse(5000, 5002, None)),
            "open ones stay"
        );
    }

    #[test]
    fn lapses_are_written_with_the_state_applied_even_over_a_stale_status() {
        let lapse = firedrill_core::api::Lapse {
            since: at(10),
            seen_at: at(12),
            healed_at: Some(at(12)),
            what: "chain gone (re-applied)".into(),
        };
        let checked = Report::Checked {
            applied_at: at(3),
            lapses: vec![lapse.clone()],
        };
        // The watch has not shown the Applied report yet: still Applied, since then.
        let status = next_status(None, &checked);
        assert_eq!(status.state, InjectionState::Applied);
        assert_eq!(status.applied_at, Some(at(3)));
        assert_eq!(status.lapses, vec![lapse.clone()]);
        let applied = next_status(None, &Report::Applied { at: at(2) });
        assert_eq!(
            next_status(Some(&applied), &checked).applied_at,
            Some(at(2))
        );
        // Later reports keep them.
        let reverted = next_status(
            Some(&status),
            &Report::Reverted {
                at: at(60),
                why: "deleted".into(),
            },
        );
        assert_eq!(reverted.lapses, vec![lapse]);
    }

    #[test]
    fn the_patch_is_a_complete_apply_patch() {
        let status = next_status(None, &Report::Applied { at: at(1) });
        let patch = status_patch(&status).expect("patch");
        assert_eq!(patch["apiVersion"], "firedrill.dev/v1alpha1");
        assert_eq!(patch["kind"], "Injection");
        assert_eq!(patch["status"]["state"], "Applied");
        assert_eq!(patch["status"]["appliedAt"], "2023-11-14T22:13:21Z");
        assert!(
            patch["status"].get("revertedAt").is_none(),
            "None is skipped"
        );
        assert!(patch["status"].get("message").is_none());
    }

    #[test]
    fn the_agent_reverts_at_the_end_of_hold_for_on_its_own_clock_or_at_expires_at() {
        let mut spec = injection("fd-a-1", kill()).spec;
        spec.expires_at = at(600);
        assert_eq!(
            own_expiry(&spec, at(10), false),
            at(600),
            "no holdFor: expiresAt"
        );
        spec.hold_for = Some(std::time::Duration::from_secs(45).into());
        assert_eq!(
            own_expiry(&spec, at(10), false),
            at(10 + 45 + 5),
            "applied + holdFor + grace"
        );
        assert_eq!(
            own_expiry(&spec, at(590), false),
            at(600),
            "expiresAt is the latest"
        );
        spec.hold_for = Some(std::time::Duration::MAX.into());
        assert_eq!(own_expiry(&spec, at(10), false), at(600), "no overflow");
        // A node the fault cuts off cannot hear the revert asked for: it ends the cut at
        // the fault's duration, not the grace later.
        let mut cut = injection("fd-a-1", firedrill_core::planner::isolate(vec![])).spec;
        assert!(cut.action.cuts_node_off());
        cut.expires_at = at(600);
        cut.hold_for = Some(std::time::Duration::from_secs(45).into());
        assert_eq!(
            own_expiry(&cut, at(10), cut.cut_off_among([])),
            at(10 + 45),
            "applied + holdFor"
        );
        assert_eq!(
            own_expiry(&cut, at(590), true),
            at(600),
            "expiresAt is the latest"
        );
        // The blackout's kill on that node cannot hear its revert either: it ends with the
        // cut (the cluster measured the kill ending 4,957 ms after the revert was asked).
        let mut killed = injection("fd-a-1", kill()).spec;
        killed.expires_at = at(600);
        killed.hold_for = cut.hold_for;
        assert!(killed.cut_off_among([&cut]));
        assert_eq!(own_expiry(&killed, at(10), true), at(10 + 45));
        let mut elsewhere = cut.clone();
        elsewhere.node_name = "fd-b-1".into();
        let mut other_experiment = cut.clone();
        other_experiment.experiment = "chaos/another".into();
        assert!(!killed.cut_off_among([&elsewhere, &other_experiment]));
        // Once applied, the planner sees the fault's own end, journal or not: a fault
        // reverted at its duration is never applied again.
        let mut applied = injection("fd-a-1", kill());
        applied.spec.expires_at = at(600);
        applied.spec.hold_for = Some(std::time::Duration::from_secs(45).into());
        let w = wanted(&applied, "fd-a-1", false).unwrap().unwrap();
        assert_eq!(w.expires_at, at(600), "not applied yet");
        applied.status = Some(InjectionStatus {
            state: InjectionState::Applied,
            applied_at: Some(at(10)),
            ..InjectionStatus::default()
        });
        let w = wanted(&applied, "fd-a-1", false).unwrap().unwrap();
        assert_eq!(w.expires_at, at(60));
        let plan =
            crate::planner::plan(Some(&[w]), &[], &crate::planner::Memory::default(), at(61));
        assert!(
            !plan
                .steps
                .iter()
                .any(|s| matches!(s, crate::planner::Step::Apply(_))),
            "{plan:?}"
        );
    }
}
