//! The objects a schedule writes: its drills' GameDays and its status patch.

use firedrill_core::api::{DrillSchedule, DrillScheduleStatus, GameDay};
use kube::{Resource, ResourceExt};

use crate::gameday::label_value;
use crate::{Error, FIELD_MANAGER, MANAGED_BY_LABEL};

pub use firedrill_core::api::{SCHEDULE_LABEL, SCHEDULE_UID_LABEL};

/// The status patch (server-side apply needs apiVersion and kind), written only over the
/// DrillSchedule at `resource_version`, the copy it was stepped from: a stale copy must not
/// rewind it (see `firedrill_core::api::status_patch_over`).
pub fn status_patch(
    status: &DrillScheduleStatus,
    resource_version: Option<String>,
) -> Result<serde_json::Value, serde_json::Error> {
    firedrill_core::api::status_patch_over::<DrillSchedule>(status, resource_version)
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
        let patch = status_patch(&DrillScheduleStatus::default(), None).expect("patch");
        assert_eq!(patch["kind"], "DrillSchedule");
        assert!(patch["status"].get("active").is_none());
    }
}
