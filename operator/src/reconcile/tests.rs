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
        requeue::after(requeue_wait(Some(now + chrono::TimeDelta::seconds(2)), now)),
        Action::requeue(Duration::from_secs(2))
    );
    assert_eq!(
        requeue::after(requeue_wait(Some(now - chrono::TimeDelta::seconds(2)), now)),
        Action::requeue(Duration::from_millis(100))
    );
    assert_eq!(
        requeue::after(requeue_wait(None, now)),
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

#[test]
fn the_agents_reports_not_a_timer_wake_a_waiting_experiment() {
    let now = Utc::now();
    let s = chrono::TimeDelta::seconds;
    // The engine's one-second retry waits for the backstop instead.
    assert_eq!(
        while_agents_work(Some(now + s(1)), None, now),
        Some(now + AGENT_WAIT)
    );
    // Never past the engine's own deadline (the injection timeout), even one passed.
    assert_eq!(
        while_agents_work(Some(now + s(1)), Some(now + s(3)), now),
        Some(now + s(3))
    );
    assert_eq!(
        while_agents_work(Some(now + s(1)), Some(now - s(3)), now),
        Some(now + s(1))
    );
    // A later time of the engine's is kept, and no time stays none.
    assert_eq!(
        while_agents_work(Some(now + s(30)), None, now),
        Some(now + s(30))
    );
    assert_eq!(while_agents_work(None, None, now), None);
}

fn injection(name: &str, plan_size: Option<&str>) -> Injection {
    let spec: firedrill_core::api::InjectionSpec = serde_json::from_value(serde_json::json!({
        "nodeName": "n1",
        "experiment": "ns/e",
        "action": {"network": {"all": true}},
        "expiresAt": "2026-01-01T00:10:00Z",
    }))
    .unwrap();
    let mut i = Injection::new(name, spec);
    if let Some(size) = plan_size {
        i.annotations_mut()
            .insert(PLAN_SIZE_ANNOTATION.into(), size.into());
    }
    i
}

#[test]
fn a_plan_is_in_place_once_as_many_injections_exist_as_it_recorded() {
    let two = |name| injection(name, Some("2"));
    assert!(!plan_in_place(&[]));
    assert!(!plan_in_place(&[two("a")]), "one of two");
    assert!(plan_in_place(&[two("a"), two("b")]));
    assert!(!plan_in_place(&[injection("a", None)]), "size unknown");
    assert!(
        !plan_in_place(&[injection("a", Some("x"))]),
        "size unreadable"
    );
    assert!(plan_in_place(&[injection("a", Some("1"))]));
}
