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

/// A context whose API server lists `listed` as the Injections (and answers a deletion with
/// the Injection it names), counting the requests, and whose watch view holds `watched`.
fn context_with(
    listed: Vec<Injection>,
    watched: Vec<Injection>,
) -> (Context, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let server = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let answer = if request.method() == http::Method::DELETE {
            let name = request.uri().path().rsplit('/').next().unwrap_or_default();
            serde_json::to_value(listed.iter().find(|i| i.name_any() == name)).unwrap()
        } else {
            serde_json::json!({
                "apiVersion": "firedrill.dev/v1alpha1",
                "kind": "InjectionList",
                "metadata": {"resourceVersion": "7"},
                "items": listed,
            })
        };
        let response = http::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(kube::client::Body::from(
                serde_json::to_vec(&answer).unwrap(),
            ));
        async move { response }
    });
    let client = kube::Client::new(server, "default");
    let ctx = Context::new(client, Arc::default(), "firedrill-system", "test").unwrap();
    let mut writer = ctx.seen.attach();
    writer.apply_watcher_event(&watcher::Event::Init);
    for i in watched {
        writer.apply_watcher_event(&watcher::Event::InitApply(i));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    (ctx, asked)
}

fn of_experiment(mut i: Injection, state: firedrill_core::api::InjectionState) -> Injection {
    i.metadata.namespace = Some("firedrill-system".into());
    i.labels_mut()
        .insert(crate::EXPERIMENT_UID_LABEL.into(), "uid-1".into());
    i.status = Some(firedrill_core::api::InjectionStatus {
        state,
        ..Default::default()
    });
    i
}

fn held() -> ExperimentStatus {
    ExperimentStatus {
        fault_state: firedrill_core::api::FaultState::Injected,
        ..Default::default()
    }
}

fn requests(asked: &std::sync::atomic::AtomicUsize) -> usize {
    asked.load(std::sync::atomic::Ordering::SeqCst)
}

#[tokio::test]
async fn a_watch_that_shows_nothing_new_costs_no_request() {
    use firedrill_core::api::InjectionState::Applied;
    let applied = of_experiment(injection("a", Some("1")), Applied);
    let (ctx, asked) = context_with(vec![applied.clone()], vec![applied]);
    let news = injection_news(&ctx, "uid-1", &held(), Read::Watched, Utc::now())
        .await
        .unwrap();
    assert!(news.is_empty(), "{news:?}");
    assert_eq!(requests(&asked), 0);
}

#[tokio::test]
async fn a_watch_that_lags_never_makes_a_held_fault_reverted() {
    use firedrill_core::api::InjectionState::Applied;
    // The watch has not delivered the Injection yet: absent reads as reverted, so the
    // API server is asked, and there the fault still holds.
    let applied = of_experiment(injection("a", Some("1")), Applied);
    let (ctx, asked) = context_with(vec![applied], vec![]);
    let news = injection_news(&ctx, "uid-1", &held(), Read::Watched, Utc::now())
        .await
        .unwrap();
    assert!(news.is_empty(), "the fault is held: {news:?}");
    assert_eq!(requests(&asked), 1);
    // Gone there too, it is reverted.
    let (ctx, _) = context_with(vec![], vec![]);
    let news = injection_news(&ctx, "uid-1", &held(), Read::Watched, Utc::now())
        .await
        .unwrap();
    assert!(
        matches!(news[..], [Observation::FaultReverted { .. }]),
        "{news:?}"
    );
}

#[tokio::test]
async fn after_its_own_write_a_reconciliation_reads_the_api_server() {
    use firedrill_core::api::InjectionState::{Applied, Reverted};
    let applied = of_experiment(injection("a", Some("1")), Applied);
    let reverted = of_experiment(injection("a", Some("1")), Reverted);
    let (ctx, asked) = context_with(vec![reverted], vec![applied]);
    let news = injection_news(&ctx, "uid-1", &held(), Read::Fresh, Utc::now())
        .await
        .unwrap();
    assert!(
        matches!(news[..], [Observation::FaultReverted { .. }]),
        "{news:?}"
    );
    assert_eq!(requests(&asked), 1);
}

#[tokio::test]
async fn what_keeps_a_deleted_experiment_is_read_from_the_api_server() {
    use firedrill_core::api::InjectionState::Applied;
    // The watch shows nothing, the API server an Injection still held.
    let applied = of_experiment(injection("a", Some("1")), Applied);
    let (ctx, asked) = context_with(vec![applied], vec![]);
    let mut experiment = Experiment::new("e", crate::testing::catalog("network-partition"));
    experiment.metadata.uid = Some("uid-1".into());
    experiment.metadata.namespace = Some("talk".into());
    let left = revert_all(&ctx, &experiment, Read::Fresh).await.unwrap();
    assert_eq!(left.len(), 1, "the finalizer stays");
    assert_eq!(requests(&asked), 3, "listed, deleted, listed again");
    // The watch's view is a hint of whether to wait, and costs nothing.
    let hint = revert_all(&ctx, &experiment, Read::Watched).await.unwrap();
    assert!(hint.is_empty());
    assert_eq!(requests(&asked), 3);
}
