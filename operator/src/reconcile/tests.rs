use super::*;

#[test]
fn retries_follow_the_error_category() {
    let pending = Error::RevertPending {
        remaining: 1,
        what: "x".into(),
    };
    assert_eq!(retry_after(&pending), Duration::from_secs(1));
    let plan: Error = plan::PlanError::NoFault.into();
    assert_eq!(retry_after(&plan), PLAN_RETRY);
    assert_eq!(
        retry_after(&Error::MissingField("uid")),
        Duration::from_secs(5)
    );
}

#[test]
#[allow(clippy::disallowed_methods)] // the expected values are the raw requeues
fn requeue_is_at_the_engines_time_and_never_a_busy_loop() {
    let now = Utc::now();
    assert_eq!(
        requeue_at(Some(now + chrono::TimeDelta::seconds(2)), now),
        Action::requeue(Duration::from_secs(2))
    );
    assert_eq!(
        requeue_at(Some(now - chrono::TimeDelta::seconds(2)), now),
        Action::requeue(Duration::from_millis(100))
    );
    assert_eq!(
        requeue_at(None, now),
        Action::requeue(Duration::from_secs(60))
    );
}

#[test]
fn workload_counters_come_from_the_talk_probes_sli() {
    let spec: ExperimentSpec = serde_json::from_value(serde_json::json!({
        "target": {"namespaces": ["talk"]},
        "fault": {"zoneBlackout": {"zone": "a"}},
        "duration": "10s",
        "hypothesis": {"probes": [
            {"name": "up", "http": {"url": "http://x/"}},
            {"name": "loss", "talk": {"url": "http://talk-load.talk:8080/sli", "sli": "LostMessages"},
             "tolerance": {"op": "==", "value": 0}}
        ]}
    }))
    .expect("spec");
    assert_eq!(spec.workload_url(), Some("http://talk-load.talk:8080/sli"));
    let sli = serde_json::json!({"lostMessages": 3, "duplicatedMessages": 1});
    assert_eq!(
        WorkloadCounters::from_document(&sli),
        Some(WorkloadCounters {
            lost: 3,
            duplicated: 1
        })
    );
    assert_eq!(
        WorkloadCounters::from_document(&serde_json::json!({})),
        None
    );
}
