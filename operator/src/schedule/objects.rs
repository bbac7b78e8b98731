//! The objects a schedule writes: its drills' GameDays and its status patch.

use firedrill_core::api::{API_VERSION, DrillSchedule, DrillScheduleStatus, GameDay};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::gameday::label_value;
use crate::{Error, FIELD_MANAGER, MANAGED_BY_LABEL};

/// Labels a schedule's GameDays with the schedule's UID.
pub const SCHEDULE_UID_LABEL: &str = "firedrill.dev/schedule-uid";
/// Labels a schedule's GameDays with the schedule's name, when it fits a label value.
pub const SCHEDULE_LABEL: &str = "firedrill.dev/schedule";

/// The status patch (server-side apply needs apiVersion and kind).
pub fn status_patch(status: &DrillScheduleStatus) -> Result<serde_json::Value, serde_json::Error> {
    Ok(json!({
        "apiVersion": API_VERSION,
        "kind": "DrillSchedule",
        "status": serde_json::to_value(status)?,
    }))
}

/// The GameDay of a drill.
pub fn drill(schedule: &DrillSchedule, name: &str) -> Result<GameDay, Error> {
    let uid = schedule.uid().ok_or(Error::MissingField("uid"))?;
    let mut labels = schedule.labels().clone();
    labels.insert(SCHEDULE_UID_LABEL.to_owned(), uid);
    if let Some(value) = label_value(&schedule.name_any()) {
        labels.insert(SCHEDULE_LABEL.to_owned(), value.to_owned());
    }
    labels.insert(MANAGED_BY_LABEL.to_owned(), FIELD_MANAGER.to_owned());
    let mut game_day = GameDay::new(name, schedule.spec.game_day.clone());
    game_day.metadata.namespace = schedule.namespace();
    game_day.metadata.labels = Some(labels);
    game_day.metadata.owner_references = Some(vec![
        schedule
            .controller_owner_ref(&())
            .ok_or(Error::MissingField("uid"))?,
    ]);
    Ok(game_day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_names_its_kind() {
        let patch = status_patch(&DrillScheduleStatus::default()).expect("patch");
        assert_eq!(patch["kind"], "DrillSchedule");
        assert!(patch["status"].get("active").is_none());
    }
}
