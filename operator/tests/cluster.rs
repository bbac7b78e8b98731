//! The operator against a real API server (`KUBECONFIG`); each test skips, saying so, when
//! there is none. The controller runs in this process, scoped to a temporary namespace; a
//! stand-in agent plays the node agent's part of the Injection contract.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Controllers, FakeAgent, Operator, TestNamespace, setup, victim, victim_spec};
use firedrill_core::api::{Condition, Experiment, Injection, PAUSE_KEY, Phase, Verdict};
use firedrill_operator::lease::{LeaderElector, LeaseConfig};
use firedrill_operator::{CONSENT_ANNOTATION, FINALIZER, status};
use firedrill_testkit::objects::{event_reasons, labelled};
use firedrill_testkit::{client as cluster, crds, eventually, gone, wait};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::watch;

/// An experiment on the `app=victim` pods of `namespace`, judged by `node` being Ready
/// (a real `kubernetes` probe through the operator's object source), labelled
/// `firedrill.dev/test=operator`: a firedrill operator deployed in the same cluster leaves
/// it alone (run it with `--experiment-selector '!firedrill.dev/test'`).
fn experiment(name: &str, namespace: &str, node: &str, fault: Value, extra: Value) -> Experiment {
    let spec = victim_spec(namespace, node, fault, "3s", extra);
    labelled(name, namespace, "operator", spec).unwrap()
}

async fn create(client: &Client, exp: &Experiment) -> Api<Experiment> {
    let api: Api<Experiment> = Api::namespaced(client.clone(), &exp.namespace().unwrap());
    api.create(&PostParams::default(), exp).await.unwrap();
    api
}

async fn wait_for_phase(api: &Api<Experiment>, name: &str, phase: Phase, secs: u64) -> Experiment {
    let timeout = Duration::from_secs(secs);
    wait::phase(api, name, phase, timeout, wait::POLL).await
}

/// The experiment's `Invalid` condition once it is `True`.
async fn invalid_condition(api: &Api<Experiment>, name: &str) -> Condition {
    eventually(Duration::from_secs(30), || async {
        let e = api.get(name).await.ok()?;
        e.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == status::INVALID && c.status == "True")
    })
    .await
    .unwrap_or_else(|| panic!("{name} has no Invalid condition"))
}

async fn injections(client: &Client, namespace: &str) -> Vec<Injection> {
    Api::<Injection>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experiment_runs_to_a_verdict_and_leaves_nothing_behind() {
    let Some((client, node)) = setup("an_experiment_runs_to_a_verdict").await else {
        return;
    };
    let ns = TestNamespace::new(&client, "run", true).await;
    victim(&client, &ns.name, "victim", &node).await;
    let agent = FakeAgent::start(&client, &ns.firedrill);
    let operator = Operator::start(&client, &ns, Controllers::Experiments);
    let exp = experiment(
        "freeze",
        &ns.name,
        &node,
        json!({"opsToolOutage": {"mode": "Freeze"}}),
        json!({}),
    );
    let api = create(&client, &exp).await;

    let done = wait_for_phase(&api, "freeze", Phase::Completed, 120).await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.verdict, Some(Verdict::Passed), "{status:#?}");
    assert!(done.finalizers().iter().any(|f| f == FINALIZER));
    let messages: Vec<&str> = status.timeline.iter().map(|t| t.message.as_str()).collect();
    assert!(messages.contains(&"fault effective"), "{messages:?}");
    assert!(messages.contains(&"fault reverted"), "{messages:?}");
    let targets = status
        .conditions
        .iter()
        .find(|c| c.type_ == status::TARGETS)
        .expect("targets condition");
    assert!(targets.message.contains("victim"), "{targets:?}");
    assert!(agent.applied.load(Ordering::SeqCst) >= 1);
    assert!(
        status.probes.iter().all(|p| p.failures == 0),
        "{:#?}",
        status.probes
    );
    assert_eq!(status.observed_generation, done.metadata.generation);
    // Reverted means deleted: nothing of the experiment is left.
    assert!(injections(&client, &ns.firedrill).await.is_empty());
    // Its story is told in Events.
    let told = eventually(Duration::from_secs(10), || async {
        let reasons = event_reasons(&client, &ns.name, "freeze").await.ok()?;
        (reasons.iter().any(|r| r == "Passed") && reasons.iter().any(|r| r == "Resolved"))
            .then_some(reasons)
    })
    .await;
    assert!(told.is_some(), "no Passed and Resolved events");
    let metrics = operator.ctx.metrics.render();
    assert!(
        metrics.contains("firedrill_operator_experiments_completed_total{verdict=\"Passed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("firedrill_operator_injections_created_total 1"),
        "{metrics}"
    );

    // Deleting a completed experiment is immediate: there is nothing to revert.
    api.delete("freeze", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        gone(&api, "freeze", Duration::from_secs(20)).await,
        "the experiment was not deleted"
    );
    operator.shutdown().await;
    drop(agent);
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_mid_fault_waits_until_every_injection_is_reverted() {
    let Some((client, node)) = setup("deleting_mid_fault").await else {
        return;
    };
    let ns = TestNamespace::new(&client, "delete", true).await;
    victim(&client, &ns.name, "victim", &node).await;
    let agent = FakeAgent::start(&client, &ns.firedrill);
    let operator = Operator::start(&client, &ns, Controllers::Experiments);
    let exp = experiment(
        "long",
        &ns.name,
        &node,
        json!({"opsToolOutage": {"mode": "Isolate"}}),
        json!({"duration": "10m"}),
    );
    let api = create(&client, &exp).await;
    wait_for_phase(&api, "long", Phase::Holding, 90).await;
    assert_eq!(injections(&client, &ns.firedrill).await.len(), 1);

    // The agent is slow to revert: the experiment must wait for it.
    agent.hold.store(true, Ordering::SeqCst);
    api.delete("long", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let waiting = api
        .get("long")
        .await
        .expect("still there while the fault may be active");
    assert!(waiting.metadata.deletion_timestamp.is_some());
    let status = waiting.status.unwrap();
    assert_eq!(status.phase, Phase::Reverting, "{status:#?}");
    assert!(status.abort_requested);
    let left = injections(&client, &ns.firedrill).await;
    assert_eq!(left.len(), 1);
    assert!(
        left[0].metadata.deletion_timestamp.is_some(),
        "revert asked for"
    );

    agent.hold.store(false, Ordering::SeqCst);
    assert!(
        gone(&api, "long", Duration::from_secs(30)).await,
        "the experiment outlived its revert"
    );
    assert!(injections(&client, &ns.firedrill).await.is_empty());
    operator.shutdown().await;
    drop(agent);
    ns.delete().await;
}

/// Sets (`Some(why)`) or lifts (`None`) the pause on the namespace playing firedrill's.
async fn pause(client: &Client, firedrill: &str, why: Option<&str>) {
    let patch = json!({"metadata": {
        "labels": {PAUSE_KEY: why.map(|_| "true")},
        "annotations": {PAUSE_KEY: why},
    }});
    Api::<Namespace>::all(client.clone())
        .patch(firedrill, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_aborts_what_runs_and_holds_what_would_start_until_resumed() {
    let Some((client, node)) = setup("a_pause").await else {
        return;
    };
    let ns = TestNamespace::new(&client, "pause", true).await;
    victim(&client, &ns.name, "victim", &node).await;
    let agent = FakeAgent::start(&client, &ns.firedrill);
    let operator = Operator::start(&client, &ns, Controllers::Experiments);
    let freeze = json!({"opsToolOutage": {"mode": "Freeze"}});
    let long = experiment(
        "long",
        &ns.name,
        &node,
        freeze.clone(),
        json!({"duration": "10m"}),
    );
    let api = create(&client, &long).await;
    wait_for_phase(&api, "long", Phase::Holding, 90).await;

    pause(
        &client,
        &ns.firedrill,
        Some("stop-all by the operator tests"),
    )
    .await;
    let done = wait_for_phase(&api, "long", Phase::Completed, 45).await;
    let status = done.status.unwrap();
    assert_eq!(status.verdict, Some(Verdict::Aborted), "{status:#?}");
    assert!(
        status
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("paused")),
        "{:?}",
        status.reason
    );
    let gone = eventually(Duration::from_secs(30), || async {
        injections(&client, &ns.firedrill)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "the paused experiment's Injection was not reverted"
    );

    // What is created while paused waits in Pending, saying why, and injects nothing.
    let later = experiment("later", &ns.name, &node, freeze, json!({"duration": "2s"}));
    create(&client, &later).await;
    let paused = eventually(Duration::from_secs(30), || async {
        let e = api.get("later").await.ok()?;
        let s = e.status?;
        s.conditions
            .iter()
            .find(|c| c.type_ == status::PAUSED && c.status == "True")
            .cloned()
            .map(|c| (s.phase, c))
    })
    .await;
    let (phase, condition) = paused.expect("a Paused condition");
    assert_eq!(phase, Phase::Pending);
    assert!(
        condition.message.contains("chaosctl resume"),
        "{condition:?}"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        api.get("later").await.unwrap().status.unwrap().phase,
        Phase::Pending
    );
    assert!(injections(&client, &ns.firedrill).await.is_empty());

    // Resumed: it runs.
    pause(&client, &ns.firedrill, None).await;
    let done = wait_for_phase(&api, "later", Phase::Completed, 90).await;
    assert_eq!(done.status.unwrap().verdict, Some(Verdict::Passed));
    operator.shutdown().await;
    drop(agent);
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_dry_run_experiments_inject_nothing() {
    let Some((client, node)) = setup("refused_and_dry_run").await else {
        return;
    };
    let closed = TestNamespace::new(&client, "closed", false).await;
    let open = TestNamespace::new(&client, "dry", true).await;
    victim(&client, &closed.name, "victim", &node).await;
    victim(&client, &open.name, "victim", &node).await;
    let op_closed = Operator::start(&client, &closed, Controllers::Experiments);
    let op_open = Operator::start(&client, &open, Controllers::Experiments);
    let freeze = json!({"opsToolOutage": {"mode": "Freeze"}});

    let refused = experiment("refused", &closed.name, &node, freeze.clone(), json!({}));
    let api = create(&client, &refused).await;
    let invalid = invalid_condition(&api, "refused").await;
    assert_eq!(invalid.reason, "NamespaceNotOptedIn");
    assert!(
        invalid.message.contains("spec.target.namespaces[0]"),
        "{invalid:?}"
    );
    assert_eq!(
        api.get("refused").await.unwrap().status.unwrap().phase,
        Phase::Pending
    );

    let open_api: Api<Experiment> = Api::namespaced(client.clone(), &open.name);
    let over = experiment(
        "over",
        &open.name,
        &node,
        freeze.clone(),
        json!({"blastRadius": {"maxTargets": 1, "maxPercent": 50}}),
    );
    create(&client, &over).await;
    let over_reason = invalid_condition(&open_api, "over").await;
    assert_eq!(over_reason.reason, "BlastRadiusExceeded");

    let dry = experiment("dry", &open.name, &node, freeze, json!({"dryRun": true}));
    create(&client, &dry).await;
    let done = wait_for_phase(&open_api, "dry", Phase::Completed, 30).await;
    let status = done.status.unwrap();
    assert_eq!(status.verdict, Some(Verdict::Skipped));
    let targets = status
        .conditions
        .iter()
        .find(|c| c.type_ == status::TARGETS)
        .expect("targets");
    assert_eq!(targets.reason, "DryRun");
    assert!(
        targets.message.contains(&format!("{}/victim", open.name)),
        "{targets:?}"
    );

    // Tenancy: another opted-in namespace is no target for `open`'s Experiments until it
    // names `open` in its consent annotation (the next plan, at most PLAN_RETRY later).
    let foreign = TestNamespace::new(&client, "foreign", true).await;
    victim(&client, &foreign.name, "victim", &node).await;
    let mut across = experiment(
        "across",
        &open.name,
        &node,
        json!({"opsToolOutage": {"mode": "Freeze"}}),
        json!({"dryRun": true}),
    );
    across.spec.target.namespaces = vec![foreign.name.clone()];
    create(&client, &across).await;
    let invalid = invalid_condition(&open_api, "across").await;
    assert_eq!(invalid.reason, "NamespaceNotConsented", "{invalid:?}");
    assert!(invalid.message.contains(CONSENT_ANNOTATION), "{invalid:?}");
    let consent = json!({"metadata": {"annotations": {CONSENT_ANNOTATION: open.name}}});
    Api::<Namespace>::all(client.clone())
        .patch(
            &foreign.name,
            &PatchParams::default(),
            &Patch::Merge(&consent),
        )
        .await
        .unwrap();
    let done = wait_for_phase(&open_api, "across", Phase::Completed, 45).await;
    assert_eq!(done.status.unwrap().verdict, Some(Verdict::Skipped));

    assert!(injections(&client, &closed.firedrill).await.is_empty());
    assert!(injections(&client, &open.firedrill).await.is_empty());
    op_closed.shutdown().await;
    op_open.shutdown().await;
    closed.delete().await;
    open.delete().await;
    foreign.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_kill_deletes_the_target_pod_it_resolved() {
    let Some((client, node)) = setup("pod_kill").await else {
        return;
    };
    let ns = TestNamespace::new(&client, "kill", true).await;
    let pod = victim(&client, &ns.name, "victim", &node).await;
    let operator = Operator::start(&client, &ns, Controllers::Experiments);
    let exp = experiment(
        "kill",
        &ns.name,
        &node,
        json!({"podKill": {"gracePeriodSeconds": 0}}),
        json!({"duration": "2s"}),
    );
    let api = create(&client, &exp).await;
    let done = wait_for_phase(&api, "kill", Phase::Completed, 90).await;
    assert_eq!(done.status.unwrap().verdict, Some(Verdict::Passed));
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let gone = eventually(Duration::from_secs(30), || async {
        match pods.get_opt("victim").await.ok()? {
            None => Some(()),
            Some(p) if p.uid() != pod.uid() => Some(()),
            Some(_) => None,
        }
    })
    .await;
    assert!(gone.is_some(), "the victim pod was not deleted");
    // A one-shot fault never needs an Injection.
    assert!(injections(&client, &ns.firedrill).await.is_empty());
    operator.shutdown().await;
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_when_the_leaders_lease_expires() {
    let Some(client) = cluster("a_standby_takes_over").await else {
        return;
    };
    let ns = TestNamespace::new(&client, "lease", false).await;
    let config = |identity: &str| {
        let mut c = LeaseConfig::new(&ns.name, "firedrill-operator", identity);
        c.lease_duration = Duration::from_secs(3);
        c.renew_deadline = Duration::from_secs(2);
        c.retry_period = Duration::from_millis(300);
        c
    };
    let mut a = LeaderElector::new(client.clone(), config("a"));
    let mut b = LeaderElector::new(client.clone(), config("b"));
    assert!(
        a.try_acquire_or_renew().await.unwrap(),
        "a creates the lease"
    );
    assert!(!b.try_acquire_or_renew().await.unwrap(), "b follows");
    assert!(a.try_acquire_or_renew().await.unwrap(), "a renews");
    // a dies without releasing: b waits out the lease by its own clock, then takes over.
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_secs(15);
    while !b.try_acquire_or_renew().await.unwrap() {
        assert!(tokio::time::Instant::now() < deadline, "b never took over");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(2800),
        "took over early: {waited:?}"
    );
    let lease: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    let spec = lease.get("firedrill-operator").await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
    // a comes back: it must follow, not fight.
    assert!(!a.try_acquire_or_renew().await.unwrap());

    // The running loop: c releases on shutdown, and d takes over without waiting it out.
    b.release().await.unwrap();
    let (c_tx, c_leading) = watch::channel(false);
    let (c_stop_tx, c_stop) = watch::channel(false);
    let c = tokio::spawn(LeaderElector::new(client.clone(), config("c")).run(c_tx, c_stop));
    let mut leading = c_leading.clone();
    tokio::time::timeout(Duration::from_secs(10), leading.wait_for(|l| *l))
        .await
        .expect("c leads")
        .unwrap();
    let (d_tx, mut d_leading) = watch::channel(false);
    let (_d_stop_tx, d_stop) = watch::channel(false);
    let d = tokio::spawn(LeaderElector::new(client.clone(), config("d")).run(d_tx, d_stop));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!*d_leading.borrow(), "d must not lead while c renews");
    c_stop_tx.send_replace(true);
    c.await.unwrap();
    assert!(!*c_leading.borrow());
    let start = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), d_leading.wait_for(|l| *l))
        .await
        .expect("d leads")
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "a released lease is taken at once"
    );
    d.abort();
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_passes_the_real_api_servers_validation() {
    let Some(client) = cluster("the_catalog_passes_validation").await else {
        return;
    };
    crds::install_missing(&client).await.unwrap();
    let ns = TestNamespace::new(&client, "catalog", true).await;
    let dir = format!("{}/../experiments", env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for manifest in firedrill_core::manifest::load_str(&text).unwrap() {
            if let firedrill_core::manifest::Manifest::Experiment(mut e) = manifest {
                e.metadata.namespace = Some(ns.name.clone());
                let api: Api<Experiment> = Api::namespaced(client.clone(), &ns.name);
                let params = PostParams {
                    dry_run: true,
                    ..PostParams::default()
                };
                api.create(&params, &e)
                    .await
                    .unwrap_or_else(|err| panic!("{}: {err}", e.name_any()));
                checked += 1;
            }
        }
    }
    assert!(checked >= 5, "only {checked} experiments in the catalog");
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spec_of_a_started_experiment_cannot_change() {
    let test = "the_spec_of_a_started_experiment_cannot_change";
    let Some((client, node)) = setup(test).await else {
        return;
    };
    let ns = TestNamespace::new(&client, "immutable", true).await;
    let exp = experiment("fixed", &ns.name, &node, json!({"podKill": {}}), json!({}));
    let api = create(&client, &exp).await;
    let longer = |d: &str| Patch::Merge(json!({"spec": {"duration": d}}));
    // Not started (no operator watches this one): the spec may still change.
    api.patch("fixed", &PatchParams::default(), &longer("4s"))
        .await
        .expect("a pending Experiment's spec changes");
    let started = Patch::Merge(json!({"status": {"phase": "Holding"}}));
    api.patch_status("fixed", &PatchParams::default(), &started)
        .await
        .unwrap();
    let refused = api
        .patch("fixed", &PatchParams::default(), &longer("1h"))
        .await
        .expect_err("the API server must refuse a started Experiment's new spec");
    let message = refused.to_string();
    assert!(message.contains("has started cannot change"), "{message}");
    // Its metadata still may: that is how abort and the pause reach it.
    let label = Patch::Merge(json!({"metadata": {"annotations": {"note": "still editable"}}}));
    api.patch("fixed", &PatchParams::default(), &label)
        .await
        .expect("metadata of a started Experiment changes");
    assert_eq!(
        api.get("fixed").await.unwrap().spec.duration.to_string(),
        "4s"
    );
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_stepped_from_a_stale_copy_is_refused_not_forced_over_a_newer_one() {
    let test = "a_status_stepped_from_a_stale_copy_is_refused_not_forced_over_a_newer_one";
    let Some((client, node)) = setup(test).await else {
        return;
    };
    let ns = TestNamespace::new(&client, "stale", true).await;
    let exp = experiment("stale", &ns.name, &node, json!({"podKill": {}}), json!({}));
    let api = create(&client, &exp).await;
    // No operator watches this one: the test writes as the operator does.
    let stale = api.get("stale").await.unwrap();
    let apply = PatchParams::apply(firedrill_operator::FIELD_MANAGER).force();
    let status_at = |phase: Phase| firedrill_core::api::ExperimentStatus {
        phase,
        ..Default::default()
    };
    let fresh = status::patch(&status_at(Phase::Injecting), stale.resource_version()).unwrap();
    api.patch_status("stale", &apply, &Patch::Apply(&fresh))
        .await
        .expect("written over the copy it was stepped from");
    // Stepped from the copy before that write: refused, and the newer status stays.
    let rewound = status::patch(
        &status_at(Phase::SteadyStateBefore),
        stale.resource_version(),
    )
    .unwrap();
    let refused = api
        .patch_status("stale", &apply, &Patch::Apply(&rewound))
        .await
        .expect_err("a status from a stale copy must not be forced over a newer one");
    assert!(
        matches!(&refused, kube::Error::Api(s) if s.code == 409),
        "{refused}"
    );
    let now = api.get("stale").await.unwrap();
    assert_eq!(now.status.unwrap().phase, Phase::Injecting);
    ns.delete().await;
}
