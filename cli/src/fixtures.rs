//! Objects the unit tests of several modules build on.

use firedrill_core::api::{DrillSchedule, Experiment, GameDay, Injection};

fn parse<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    let docs = firedrill_core::yaml::parse_documents(yaml, Default::default()).unwrap();
    serde_json::from_value(docs[0].value.clone()).unwrap()
}

/// An Experiment in `talk`, a blackout of zone-a, created at 2023-11-14T22:13:20Z.
pub(crate) fn experiment(name: &str) -> Experiment {
    parse(&format!(
        "apiVersion: firedrill.dev/v1alpha1\nkind: Experiment\nmetadata:\n  name: {name}\n  namespace: talk\n  creationTimestamp: \"2023-11-14T22:13:20Z\"\nspec:\n  target: {{namespaces: [talk]}}\n  fault: {{zoneBlackout: {{zone: zone-a}}}}\n  duration: 30s\n  hypothesis: {{probes: []}}\n"
    ))
}

/// A GameDay in `talk` (uid `gd-uid`) with the steps zone-blackout and disk-loss, both
/// references.
pub(crate) fn game_day(name: &str) -> GameDay {
    parse(&format!(
        "apiVersion: firedrill.dev/v1alpha1\nkind: GameDay\nmetadata: {{name: {name}, namespace: talk, uid: gd-uid}}\nspec:\n  experiments:\n    - {{name: zone-blackout, experimentRef: {{name: zone-blackout}}}}\n    - {{name: disk-loss, experimentRef: {{name: disk-loss}}}}\n"
    ))
}

/// A quarterly DrillSchedule in Asia/Seoul with one step, blackout.
pub(crate) fn drill(name: &str) -> DrillSchedule {
    parse(&format!(
        "apiVersion: firedrill.dev/v1alpha1\nkind: DrillSchedule\nmetadata: {{name: {name}, namespace: talk}}\nspec:\n  schedule: \"0 9 1 1,4,7,10 *\"\n  timeZone: Asia/Seoul\n  gameDay:\n    experiments:\n      - {{name: blackout, experimentRef: {{name: zone-blackout}}}}\n"
    ))
}

/// An Injection of `experiment` (`namespace/name`) on `node`.
pub(crate) fn injection(name: &str, experiment: &str, node: &str) -> Injection {
    let spec = serde_json::from_value(serde_json::json!({
        "nodeName": node,
        "experiment": experiment,
        "action": {"network": {"all": true}},
        "expiresAt": "2023-11-14T22:30:00Z",
    }))
    .unwrap();
    let mut i = Injection::new(name, spec);
    i.metadata.namespace = Some("firedrill-system".into());
    i
}
