//! What the schedule's tests share: times and specs.

use chrono::{DateTime, TimeZone, Utc};
use firedrill_core::api::DrillScheduleSpec;
use serde_json::json;

pub(super) fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("time")
}

pub(super) fn spec(schedule: &str, extra: serde_json::Value) -> DrillScheduleSpec {
    let mut value = json!({
        "schedule": schedule,
        "gameDay": {"experiments": [{"name": "a", "experimentRef": {"name": "x"}}]},
    });
    if let (Some(v), serde_json::Value::Object(extra)) = (value.as_object_mut(), extra) {
        v.extend(extra);
    }
    serde_json::from_value(value).expect("spec")
}
