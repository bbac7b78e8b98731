//! Status, conditions and Events, without I/O.

use chrono::{DateTime, Utc};
use firedrill_core::api::{Condition, ExperimentStatus, Phase, TimelineEntry, Verdict};
use kube::runtime::events::EventType;
use serde_json::Value;

/// `True` while the spec or its plan is refused; names the field.
pub const INVALID: &str = "Invalid";
/// The resolved targets (or, for a dry run, what would have been hit).
pub const TARGETS: &str = "TargetsResolved";
/// `True` while a Pending Experiment waits for the cluster-wide pause to be lifted.
pub const PAUSED: &str = "Paused";

/// The most a condition message or Event note carries.
const MAX_MESSAGE: usize = 1000;

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Sets a condition of the operator's own (the engine keeps `FaultActive` and `Completed`),
/// moving its transition time only when its status changes.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) {
    let status = if status { "True" } else { "False" };
    let message = truncate(message, MAX_MESSAGE);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                status.clone_into(&mut c.status);
                c.last_transition_time = now;
            }
            reason.clone_into(&mut c.reason);
            c.message = message;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            last_transition_time: now,
        }),
    }
}

/// Whether a condition is `True`.
pub fn is_true(status: &ExperimentStatus, type_: &str) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// The server-side-apply patch for the status subresource (apiVersion and kind are
/// required), written only over the Experiment at `resource_version`, the copy the status
/// was stepped from (see `firedrill_core::api::status_patch_over`).
pub fn patch(
    status: &ExperimentStatus,
    resource_version: Option<String>,
) -> Result<Value, serde_json::Error> {
    firedrill_core::api::status_patch_over::<firedrill_core::api::Experiment>(
        status,
        resource_version,
    )
}

/// A Kubernetes Event to publish about an experiment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub type_: EventType,
    /// CamelCase, at most 128 characters.
    pub reason: String,
    pub note: String,
    /// What the operator did: `Reconcile`, `Inject`, `Revert`, `Plan`.
    pub action: String,
}

impl Note {
    pub fn new(type_: EventType, reason: &str, note: &str, action: &str) -> Self {
        Self {
            type_,
            reason: truncate(reason, 128),
            note: truncate(note, MAX_MESSAGE),
            action: action.to_owned(),
        }
    }
}

fn phase_reason(phase: Phase) -> String {
    format!("{phase:?}")
}

/// The Events a transition deserves: one per new timeline entry (the engine's narrative),
/// a Warning when the experiment ends in anything but `Passed` or `Skipped`.
pub fn notes(before: &ExperimentStatus, after: &ExperimentStatus) -> Vec<Note> {
    let new: &[TimelineEntry] = after
        .timeline
        .get(before.timeline.len()..)
        .unwrap_or_default();
    new.iter()
        .map(|entry| {
            let finished = entry.phase == Phase::Completed && after.verdict.is_some();
            match after.verdict.filter(|_| finished) {
                Some(verdict) => {
                    let type_ = match verdict {
                        Verdict::Passed | Verdict::Skipped => EventType::Normal,
                        Verdict::Failed | Verdict::Aborted => EventType::Warning,
                    };
                    Note::new(type_, &format!("{verdict:?}"), &entry.message, "Reconcile")
                }
                None => {
                    let warn = entry.message.contains("abort")
                        || entry.message.contains("failed")
                        || entry.message.contains("timed out");
                    let type_ = if warn {
                        EventType::Warning
                    } else {
                        EventType::Normal
                    };
                    Note::new(
                        type_,
                        &phase_reason(entry.phase),
                        &entry.message,
                        "Reconcile",
                    )
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::at;

    #[test]
    fn conditions_move_their_time_only_on_a_status_change() {
        let mut conds = Vec::new();
        set(&mut conds, INVALID, true, "NotOptedIn", "label it", at(1));
        set(&mut conds, INVALID, true, "NotOptedIn", "label it!", at(2));
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].last_transition_time, at(1));
        assert_eq!(conds[0].message, "label it!");
        set(&mut conds, INVALID, false, "Valid", "ok", at(3));
        assert_eq!(conds[0].last_transition_time, at(3));
        assert_eq!(conds[0].status, "False");
        let status = ExperimentStatus {
            conditions: conds,
            ..Default::default()
        };
        assert!(!is_true(&status, INVALID));
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let long = "é".repeat(800);
        let mut conds = Vec::new();
        set(&mut conds, TARGETS, true, "Resolved", &long, at(1));
        assert!(conds[0].message.len() <= MAX_MESSAGE);
        assert!(conds[0].message.ends_with("..."));
    }

    #[test]
    fn the_patch_names_its_kind() {
        let value = patch(&ExperimentStatus::default(), None).expect("patch");
        assert_eq!(value["apiVersion"], "firedrill.dev/v1alpha1");
        assert_eq!(value["kind"], "Experiment");
        assert_eq!(value["status"]["phase"], "Pending");
        // None is skipped, never sent as null (it would clear another manager's field).
        assert!(value["status"].get("verdict").is_none());
    }

    #[test]
    fn the_patch_is_written_only_over_the_copy_it_was_stepped_from() {
        let value = patch(&ExperimentStatus::default(), Some("42".into())).expect("patch");
        assert_eq!(value["metadata"]["resourceVersion"], "42");
        assert_eq!(value["kind"], "Experiment");
        let value = patch(&ExperimentStatus::default(), None).expect("patch");
        assert!(value.get("metadata").is_none());
    }

    #[test]
    fn every_new_timeline_entry_is_an_event_and_bad_verdicts_warn() {
        let entry = |phase, message: &str| TimelineEntry {
            at: at(1),
            phase,
            message: message.into(),
        };
        let before = ExperimentStatus {
            timeline: vec![entry(Phase::Pending, "old")],
            ..Default::default()
        };
        let after = ExperimentStatus {
            timeline: vec![
                entry(Phase::Pending, "old"),
                entry(Phase::Holding, "holding the fault"),
                entry(Phase::Completed, "Failed: did not recover"),
            ],
            verdict: Some(Verdict::Failed),
            ..Default::default()
        };
        let notes = notes(&before, &after);
        assert_eq!(notes.len(), 2);
        assert_eq!(notes[0].reason, "Holding");
        assert_eq!(notes[0].type_, EventType::Normal);
        assert_eq!(notes[1].reason, "Failed");
        assert_eq!(notes[1].type_, EventType::Warning);
        // A status that lost its timeline (replaced by hand) yields nothing, not a panic.
        assert!(super::notes(&after, &before).is_empty());
    }
}
