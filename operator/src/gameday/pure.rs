//! The GameDay controller's pure part: child Experiments' names and labels, a step's result
//! from its Experiment, the status patch and the Events. The sequencing
//! itself is core's ([`firedrill_core::sequencer`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use firedrill_core::api::{
    ABORT_ANNOTATION, ExperimentStatus, GameDay, GameDayPhase, GameDaySpec, GameDayStatus, Phase,
    Stage, StepResult, Verdict,
};
use firedrill_core::sequencer::{self, Next};
use kube::ResourceExt;
use kube::runtime::events::EventType;

use crate::status::Note;

/// The longest a Kubernetes object name may be.
pub(super) const MAX_NAME: usize = 253;

/// The Experiment of a game day's step: `<game day>-<step>`, the game day's part cut so the
/// whole is a valid name (step names are unique within a game day, so these are too).
pub fn child_name(game_day: &str, step: &str) -> String {
    let room = MAX_NAME.saturating_sub(step.len() + 1);
    let mut end = game_day.len().min(room);
    while !game_day.is_char_boundary(end) {
        end -= 1;
    }
    let prefix = game_day[..end].trim_end_matches(['-', '.']);
    format!("{prefix}-{step}")
}

/// A label value, when the text can identify something (see the contract's
/// [`identity_label`](firedrill_core::api::identity_label): the one label-value check).
pub fn label_value(text: &str) -> Option<&str> {
    firedrill_core::api::identity_label(text)
}

/// Fills a step's verdict and figures from its finished Experiment's status.
pub(super) fn finish(result: &mut StepResult, experiment: &ExperimentStatus, now: DateTime<Utc>) {
    result.verdict = Some(experiment.verdict.unwrap_or(Verdict::Aborted));
    result.reason.clone_from(&experiment.reason);
    if result.fault.is_none() {
        result.fault.clone_from(&experiment.fault);
    }
    result.time_to_impact_seconds = experiment.time_to_impact_seconds;
    result.time_to_recover_seconds = experiment.time_to_recover_seconds;
    result.slis.clone_from(&experiment.slis);
    result.messages_lost = experiment.messages_lost;
    result.messages_duplicated = experiment.messages_duplicated;
    result.failed_probes = experiment
        .probes
        .iter()
        .filter(|p| p.tripped && p.stage != Stage::Recovery)
        .map(|p| p.name.clone())
        .collect();
    result.finished_at = Some(experiment.finished_at.unwrap_or(now));
}

/// Takes in what the running step's Experiment says (by name; a name missing from
/// `children` is an Experiment that no longer exists, and its step is `Aborted`).
fn absorb(
    status: &mut GameDayStatus,
    children: &BTreeMap<String, ExperimentStatus>,
    now: DateTime<Utc>,
) {
    for result in status.results.iter_mut().filter(|r| r.verdict.is_none()) {
        match result.experiment.as_ref().and_then(|n| children.get(n)) {
            Some(child) if child.phase == Phase::Completed => finish(result, child, now),
            Some(_) => {}
            None => {
                result.verdict = Some(Verdict::Aborted);
                result.reason = Some("its Experiment was deleted before it finished".to_owned());
                result.finished_at = Some(now);
            }
        }
    }
}

/// Steps the game day: absorbs the children's verdicts, then the sequencer
/// ([`sequencer::advance`]) applies a stop (`stop` says why the game day must stop, if it
/// must), the failure policy and the pause, and says what to do next.
pub fn advance(
    spec: &GameDaySpec,
    status: &mut GameDayStatus,
    children: &BTreeMap<String, ExperimentStatus>,
    now: DateTime<Utc>,
    stop: Option<&str>,
) -> Next {
    if status.phase != GameDayPhase::Completed {
        absorb(status, children, now);
    }
    sequencer::advance(spec, status, now, stop)
}

/// Why a game day must stop now, if it must: its own abort annotation first, then the pause.
pub fn halt_reason(game_day: &GameDay, pause: &crate::pause::Pause) -> Option<String> {
    game_day
        .annotations()
        .get(ABORT_ANNOTATION)
        .map(|why| format!("{ABORT_ANNOTATION}: {why}"))
        .or_else(|| pause.halts())
}

/// The status patch (server-side apply needs apiVersion and kind), written only over the
/// GameDay at `resource_version`, the copy it was stepped from: a stale copy must not
/// rewind a game day (see `firedrill_core::api::status_patch_over`).
pub fn status_patch(
    status: &GameDayStatus,
    resource_version: Option<String>,
) -> Result<serde_json::Value, serde_json::Error> {
    firedrill_core::api::status_patch_over::<firedrill_core::api::GameDay>(status, resource_version)
}

/// The Events a change of status deserves: each step that started or finished, and the end.
pub fn notes(before: &GameDayStatus, after: &GameDayStatus) -> Vec<Note> {
    let mut notes = Vec::new();
    for (i, result) in after.results.iter().enumerate() {
        let old = before.results.get(i);
        if old.is_none()
            && let Some(experiment) = &result.experiment
        {
            notes.push(Note::new(
                EventType::Normal,
                "StepStarted",
                &format!("step {}: created Experiment {experiment}", result.name),
                "Reconcile",
            ));
        }
        if let Some(verdict) = result.verdict
            && old.and_then(|o| o.verdict).is_none()
        {
            let type_ = match verdict {
                Verdict::Passed => EventType::Normal,
                _ if result.experiment.is_none() => EventType::Normal,
                _ => EventType::Warning,
            };
            let why = result.reason.as_deref().unwrap_or("");
            notes.push(Note::new(
                type_,
                &format!("Step{verdict:?}"),
                &format!("step {}: {verdict:?} {why}", result.name),
                "Reconcile",
            ));
        }
    }
    if before.verdict.is_none()
        && let Some(verdict) = after.verdict
    {
        let type_ = if verdict == Verdict::Passed {
            EventType::Normal
        } else {
            EventType::Warning
        };
        let progress = after.progress.as_deref().unwrap_or("");
        notes.push(Note::new(
            type_,
            &format!("{verdict:?}"),
            &format!("game day finished: {verdict:?} ({progress} steps)"),
            "Reconcile",
        ));
    }
    notes
}
