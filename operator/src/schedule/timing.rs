//! When drills are due: the schedule's cron expression read from a cursor, and the names
//! of the drills it makes (pure).

use chrono::{DateTime, Utc};
use firedrill_core::api::DrillScheduleSpec;

/// The most scheduled times looked at in one go (an every-minute schedule after a week
/// down); the rest are dealt with at the next reconciliation.
const MAX_CATCH_UP: usize = 10_000;

/// What the schedule says at a moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// The scheduled time of the drill to start now.
    pub run: Option<DateTime<Utc>>,
    /// Scheduled times passed over and not to be run: the latest of them, and how many.
    pub missed: Option<(DateTime<Utc>, usize)>,
    /// The first scheduled time after the ones dealt with here.
    pub next: Option<DateTime<Utc>>,
}

/// The scheduled times after `cursor` up to `now`: the latest runs if it is at most
/// `startingDeadline` old, every other one is missed.
pub fn due(
    spec: &DrillScheduleSpec,
    cursor: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Due, String> {
    let mut passed = Vec::new();
    let mut at = cursor;
    let mut next = None;
    while let Some(t) = spec.next_after(at)? {
        if t > now || passed.len() >= MAX_CATCH_UP {
            next = Some(t);
            break;
        }
        passed.push(t);
        at = t;
    }
    let Some(&latest) = passed.last() else {
        return Ok(Due {
            next,
            ..Due::default()
        });
    };
    if next.is_some_and(|n| n <= now) {
        // More to catch up than one look covers: all of these are older than the rest.
        return Ok(Due {
            run: None,
            missed: Some((latest, passed.len())),
            next: Some(now),
        });
    }
    if now - latest <= spec.starting_deadline.to_chrono() {
        let missed = passed
            .len()
            .checked_sub(2)
            .map(|i| (passed[i], passed.len() - 1));
        Ok(Due {
            run: Some(latest),
            missed,
            next,
        })
    } else {
        Ok(Due {
            run: None,
            missed: Some((latest, passed.len())),
            next,
        })
    }
}

/// The GameDay of the drill scheduled for `at`: `<schedule>-<yyyymmddhhmm>` (UTC), the
/// schedule's part cut so the name fits and leaves room for the game day's step names.
pub fn drill_name(schedule: &str, at: DateTime<Utc>) -> String {
    let stamp = at.format("%Y%m%d%H%M").to_string();
    let mut end = schedule.len().min(190);
    while !schedule.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{stamp}", schedule[..end].trim_end_matches(['-', '.']))
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use serde_json::json;

    use super::*;
    use crate::schedule::test_support::{spec, utc};

    #[test]
    fn quarterly_by_default_in_utc() {
        let spec: DrillScheduleSpec = serde_json::from_value(json!({
            "gameDay": {"experiments": [{"name": "a", "experimentRef": {"name": "x"}}]}
        }))
        .expect("spec");
        let d = due(&spec, utc(2026, 1, 2, 0, 0), utc(2026, 2, 1, 0, 0)).expect("due");
        assert_eq!(d.run, None);
        assert_eq!(d.missed, None);
        assert_eq!(d.next, Some(utc(2026, 4, 1, 9, 0)));
    }

    #[test]
    fn nothing_runs_before_its_time_and_it_runs_at_it() {
        let spec = spec("*/5 * * * *", json!({}));
        let cursor = utc(2026, 3, 1, 10, 1);
        let d = due(&spec, cursor, utc(2026, 3, 1, 10, 4)).expect("due");
        assert_eq!((d.run, d.next), (None, Some(utc(2026, 3, 1, 10, 5))));
        let d = due(&spec, cursor, utc(2026, 3, 1, 10, 5)).expect("due");
        assert_eq!(d.run, Some(utc(2026, 3, 1, 10, 5)));
        assert_eq!(d.next, Some(utc(2026, 3, 1, 10, 10)));
        // The time just run is the cursor now: it is not due again.
        let d = due(&spec, utc(2026, 3, 1, 10, 5), utc(2026, 3, 1, 10, 6)).expect("due");
        assert_eq!(d.run, None);
    }

    #[test]
    fn after_downtime_only_the_latest_missed_run_starts_within_the_deadline() {
        let spec = spec("0 * * * *", json!({"startingDeadline": "30m"}));
        // Down from 09:30 to 12:10: 10:00 and 11:00 missed, 12:00 still starts.
        let d = due(&spec, utc(2026, 3, 1, 9, 30), utc(2026, 3, 1, 12, 10)).expect("due");
        assert_eq!(d.run, Some(utc(2026, 3, 1, 12, 0)));
        assert_eq!(d.missed, Some((utc(2026, 3, 1, 11, 0), 2)));
        assert_eq!(d.next, Some(utc(2026, 3, 1, 13, 0)));
        // Back at 12:40: 12:00 is past its deadline too.
        let d = due(&spec, utc(2026, 3, 1, 9, 30), utc(2026, 3, 1, 12, 40)).expect("due");
        assert_eq!(d.run, None);
        assert_eq!(d.missed, Some((utc(2026, 3, 1, 12, 0), 3)));
    }

    #[test]
    fn a_long_catch_up_is_bounded_per_look() {
        let spec = spec("* * * * *", json!({}));
        let start = utc(2026, 1, 1, 0, 0);
        let d = due(&spec, start, utc(2026, 3, 1, 0, 0)).expect("due");
        assert_eq!(d.run, None);
        let (latest, count) = d.missed.expect("missed");
        assert_eq!(count, MAX_CATCH_UP);
        assert_eq!(latest, start + TimeDelta::minutes(MAX_CATCH_UP as i64));
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        // 09:00 in Seoul is 00:00 UTC.
        let seoul = spec("0 9 * * *", json!({"timeZone": "Asia/Seoul"}));
        let d = due(&seoul, utc(2026, 3, 1, 1, 0), utc(2026, 3, 1, 1, 0)).expect("due");
        assert_eq!(d.next, Some(utc(2026, 3, 2, 0, 0)));
        // Berlin: 09:00 is 08:00 UTC in winter and 07:00 UTC in summer.
        let berlin = spec("0 9 * * *", json!({"timeZone": "Europe/Berlin"}));
        let d = due(&berlin, utc(2026, 3, 28, 12, 0), utc(2026, 3, 28, 12, 0)).expect("due");
        assert_eq!(d.next, Some(utc(2026, 3, 29, 7, 0)));
        let d = due(&berlin, utc(2026, 3, 27, 12, 0), utc(2026, 3, 27, 12, 0)).expect("due");
        assert_eq!(d.next, Some(utc(2026, 3, 28, 8, 0)));
        // 02:30 does not exist in Berlin on 29 March 2026: it fires at the jump, 03:00 CEST.
        let skipped = spec("30 2 * * *", json!({"timeZone": "Europe/Berlin"}));
        let d = due(&skipped, utc(2026, 3, 28, 12, 0), utc(2026, 3, 28, 12, 0)).expect("due");
        let next = d.next.expect("next");
        assert_eq!(next, utc(2026, 3, 29, 1, 0));
        // 02:30 happens twice on 25 October 2026: the drill runs once.
        let d = due(&skipped, utc(2026, 10, 24, 12, 0), utc(2026, 10, 25, 3, 0)).expect("due");
        let first = d.run.expect("run");
        assert!(d.missed.is_none(), "{d:?}");
        let after = due(&skipped, first, utc(2026, 10, 25, 3, 0)).expect("due");
        assert_eq!(after.run, None, "{after:?}");
        assert!(after.next.expect("next") > utc(2026, 10, 25, 12, 0));
    }

    #[test]
    fn drill_names_are_deterministic_and_fit() {
        assert_eq!(drill_name("dr", utc(2026, 4, 1, 9, 0)), "dr-202604010900");
        let long = "s".repeat(250);
        assert!(drill_name(&long, utc(2026, 4, 1, 9, 0)).len() <= 203);
    }
}
