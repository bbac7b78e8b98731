//! The agent against a real API server: the cluster in `KUBECONFIG`, or the e2e cluster's
//! `/var/lib/firedrill-cluster/kubeconfig`. Prints `SKIPPED` and passes when neither
//! answers. The agent runs in-process for a made-up node (a Node object with no kubelet,
//! so it has labels to read), so the Injections it sees name pods that do not exist and
//! nothing real is touched: a freeze of no process is a real, harmless journalled fault.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use firedrill_agent::contract::{AGENT_FINALIZER, NODE_LABEL};
use firedrill_agent::{Agent, Cluster, Executor, ProcFs};
use firedrill_core::api::{
    Injection, InjectionSpec, InjectionState, NodeAction, PodRef, ProcessAction, ProcessSignal,
};
use firedrill_testkit::objects::event_reasons;
use firedrill_testkit::{Kubeconfig, TEST_LABEL, TestNamespace, crds, unique_name, until};
use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};

async fn client(test: &str) -> Option<Client> {
    let cluster = firedrill_testkit::cluster(test, Kubeconfig::EnvOrE2e).await?;
    Some(cluster.client)
}

/// Polls `check` until it gives a value; the test fails after 30 s.
async fn eventually<T, Fut: Future<Output = Option<T>>>(
    what: &str,
    check: impl FnMut() -> Fut,
) -> T {
    until(what, Duration::from_secs(30), check).await
}

fn injection(name: &str, node: &str, ttl: i64) -> Injection {
    let mut i = Injection::new(
        name,
        InjectionSpec {
            node_name: node.into(),
            experiment: "none/agent-test".into(),
            action: NodeAction {
                network: None,
                processes: Some(ProcessAction {
                    pods: vec![PodRef {
                        namespace: "none".into(),
                        name: "no-such-pod".into(),
                        uid: "00000000-0000-4000-8000-000000000000".into(),
                    }],
                    signal: ProcessSignal::Freeze,
                }),
                read_only_volume: None,
            },
            expires_at: Utc::now() + TimeDelta::seconds(ttl),
            hold_for: None,
            heartbeat: None,
        },
    );
    i.metadata.labels = Some([(NODE_LABEL.to_owned(), node.to_owned())].into());
    i
}

fn state(i: &Injection) -> InjectionState {
    i.status.as_ref().map(|s| s.state).unwrap_or_default()
}

/// A namespace playing firedrill's own, a made-up Node, and the agent for it, running.
struct Harness {
    client: Client,
    namespace: String,
    ns: TestNamespace,
    node: String,
    journal: tempfile::TempDir,
    stop: tokio::sync::oneshot::Sender<()>,
    running: tokio::task::JoinHandle<firedrill_agent::Result<()>>,
}

impl Harness {
    async fn start(client: Client) -> Self {
        crds::install_missing(&client).await.unwrap();
        let namespace = unique_name("fdagent");
        let ns = TestNamespace::create(&client, &namespace, &[(TEST_LABEL, "agent")])
            .await
            .unwrap();
        let node = format!("{namespace}-node");
        let fake: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": node, "labels": {TEST_LABEL: "agent"}},
            // Nothing schedules here: the node has no kubelet.
            "spec": {"unschedulable": true},
        }))
        .unwrap();
        Api::<Node>::all(client.clone())
            .create(&PostParams::default(), &fake)
            .await
            .unwrap();
        let journal = tempfile::tempdir().unwrap();
        let exec = Executor::new(
            journal.path(),
            std::path::Path::new("/nonexistent"),
            ProcFs::default(),
        )
        .unwrap();
        let agent = Agent::new(
            node.clone(),
            exec,
            Cluster::new(client.clone(), node.clone(), namespace.clone()),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(agent.run(async {
            let _ = stopped.await;
        }));
        Self {
            client,
            namespace,
            ns,
            node,
            journal,
            stop,
            running,
        }
    }

    fn injections(&self) -> Api<Injection> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn finish(self) {
        let _ = self.stop.send(());
        self.running.await.unwrap().unwrap();
        let _ = Api::<Node>::all(self.client.clone())
            .delete(&self.node, &DeleteParams::default())
            .await;
        self.ns.delete().await.unwrap();
    }
}

#[tokio::test]
async fn the_agent_applies_reports_and_reverts_on_deletion_and_on_expiry() {
    let test = "the_agent_applies_reports_and_reverts_on_deletion_and_on_expiry";
    let Some(client) = client(test).await else {
        return;
    };
    let h = Harness::start(client).await;
    let (api, node, journal) = (h.injections(), h.node.clone(), h.journal.path());
    // Another node's Injection is never touched.
    api.create(
        &PostParams::default(),
        &injection("other", "someone-else", 300),
    )
    .await
    .unwrap();
    api.create(&PostParams::default(), &injection("deleted", &node, 300))
        .await
        .unwrap();
    api.create(&PostParams::default(), &injection("expires", &node, 6))
        .await
        .unwrap();

    for name in ["deleted", "expires"] {
        let applied = eventually(&format!("{name} applied"), || async {
            let i = api.get(name).await.ok()?;
            (state(&i) == InjectionState::Applied).then_some(i)
        })
        .await;
        assert!(applied.finalizers().iter().any(|f| f == AGENT_FINALIZER));
        assert!(applied.status.unwrap().applied_at.is_some());
    }
    assert_eq!(journal.read_dir().unwrap().count(), 2);

    // Revert = delete: the agent reverts and lets the object go.
    api.delete("deleted", &DeleteParams::default())
        .await
        .unwrap();
    eventually("deleted gone", || async {
        matches!(api.get_opt("deleted").await, Ok(None)).then_some(())
    })
    .await;

    // Expiry: reverted on the agent's own timer and reported.
    let reverted = eventually("expires reverted", || async {
        let i = api.get("expires").await.ok()?;
        (state(&i) == InjectionState::Reverted).then_some(i)
    })
    .await;
    let status = reverted.status.unwrap();
    assert!(status.reverted_at.is_some() && status.applied_at.is_some());
    assert!(status.message.unwrap().contains("own timer"));
    eventually("journal empty", || async {
        (journal.read_dir().ok()?.count() == 0).then_some(())
    })
    .await;

    let other = api.get("other").await.unwrap();
    assert_eq!(state(&other), InjectionState::Pending);
    assert!(other.finalizers().is_empty());
    h.finish().await;
}

/// Forty Injections arriving together (a burst of experiments) go through the batched
/// paths: one read of the node's labels, the finalizers and the statuses together, the
/// releases together on deletion. Every one must come out applied with its finalizer, and
/// every one must be let go. Prints how long the burst took, which is not asserted.
#[tokio::test]
async fn a_burst_of_injections_is_applied_reported_and_released_together() {
    let test = "a_burst_of_injections_is_applied_reported_and_released_together";
    let Some(client) = client(test).await else {
        return;
    };
    let h = Harness::start(client).await;
    let (api, node) = (h.injections(), h.node.clone());
    let names: Vec<String> = (0..40).map(|i| format!("burst-{i:02}")).collect();
    let started = std::time::Instant::now();
    futures_util::future::try_join_all(names.iter().map(|name| {
        let api = api.clone();
        let injection = injection(name, &node, 300);
        async move { api.create(&PostParams::default(), &injection).await }
    }))
    .await
    .unwrap();
    let listed = || async {
        api.list(&Default::default())
            .await
            .ok()
            .map(|l| l.items)
            .unwrap_or_default()
    };
    eventually("all forty applied", || async {
        let items = listed().await;
        let applied = items
            .iter()
            .filter(|i| {
                state(i) == InjectionState::Applied
                    && i.finalizers().iter().any(|f| f == AGENT_FINALIZER)
            })
            .count();
        (applied == names.len()).then_some(())
    })
    .await;
    println!(
        "[{test}] BENCH 40 Injections created together: all applied and reported in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(h.journal.path().read_dir().unwrap().count(), names.len());

    let started = std::time::Instant::now();
    futures_util::future::try_join_all(names.iter().map(|name| {
        let api = api.clone();
        async move { api.delete(name, &DeleteParams::default()).await }
    }))
    .await
    .unwrap();
    eventually("all forty reverted and let go", || async {
        listed().await.is_empty().then_some(())
    })
    .await;
    println!(
        "[{test}] BENCH 40 Injections deleted together: all reverted and released in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(h.journal.path().read_dir().unwrap().count(), 0);
    h.finish().await;
}

/// The finalizer calls start from the copy the watch delivered (no read first). A copy
/// someone changed since must still get the finalizer on and off, losing nothing of the
/// other change; a copy of an Injection deleted and made again under its name must not put
/// it on the new one (which this agent has not applied).
#[tokio::test]
async fn finalizers_go_on_and_off_from_a_stale_copy_and_never_onto_a_replaced_injection() {
    let test = "finalizers_go_on_and_off_from_a_stale_copy_and_never_onto_a_replaced_injection";
    let Some(client) = client(test).await else {
        return;
    };
    crds::install_missing(&client).await.unwrap();
    let namespace = unique_name("fdfinal");
    let ns = TestNamespace::create(&client, &namespace, &[(TEST_LABEL, "agent")])
        .await
        .unwrap();
    let api: Api<Injection> = Api::namespaced(client.clone(), &namespace);
    // No agent runs for this node: only the calls are tested.
    let cluster = Cluster::new(client.clone(), "no-agent-node", namespace.clone());
    let has_ours = |i: &Injection| i.finalizers().iter().any(|f| f == AGENT_FINALIZER);
    let touch = |value: &'static str| {
        let api = api.clone();
        async move {
            let patch = serde_json::json!({"metadata": {"labels": {"touched": value}}});
            api.patch("stale", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap()
        }
    };

    let stale = api
        .create(
            &PostParams::default(),
            &injection("stale", "no-agent-node", 600),
        )
        .await
        .unwrap();
    touch("before-add").await;
    assert!(cluster.add_finalizer(&stale).await.unwrap());
    let now = api.get("stale").await.unwrap();
    assert!(
        has_ours(&now),
        "the finalizer is on: {:?}",
        now.finalizers()
    );
    assert_eq!(
        now.labels().get("touched").map(String::as_str),
        Some("before-add")
    );

    // Released from a copy that shows the finalizer but is stale again.
    let shows_it = now;
    touch("before-release").await;
    cluster.release(&shows_it).await.unwrap();
    let now = api.get("stale").await.unwrap();
    assert!(
        !has_ours(&now),
        "the finalizer is off: {:?}",
        now.finalizers()
    );
    assert_eq!(
        now.labels().get("touched").map(String::as_str),
        Some("before-release")
    );

    // Released from the first copy, which does not show the finalizer put on since.
    assert!(cluster.add_finalizer(&stale).await.unwrap());
    assert!(has_ours(&api.get("stale").await.unwrap()));
    cluster.release(&stale).await.unwrap();
    assert!(
        !has_ours(&api.get("stale").await.unwrap()),
        "released from an older copy"
    );

    // Deleted and made again under the same name: the old copy is another Injection.
    api.delete("stale", &DeleteParams::default()).await.unwrap();
    eventually("the old one gone", || async {
        api.get_opt("stale").await.unwrap().is_none().then_some(())
    })
    .await;
    api.create(
        &PostParams::default(),
        &injection("stale", "no-agent-node", 600),
    )
    .await
    .unwrap();
    assert!(
        !cluster.add_finalizer(&stale).await.unwrap(),
        "not the Injection it was"
    );
    assert!(!has_ours(&api.get("stale").await.unwrap()));
    ns.delete().await.unwrap();
}

#[tokio::test]
async fn the_agent_ignores_other_namespaces_and_refuses_protected_targets() {
    let test = "the_agent_ignores_other_namespaces_and_refuses_protected_targets";
    let Some(client) = client(test).await else {
        return;
    };
    let h = Harness::start(client.clone()).await;
    let (api, node) = (h.injections(), h.node.clone());
    // A tenant writes an Injection for this node in its own namespace: never seen.
    let tenant = format!("{}-tenant", h.namespace);
    let tenant_ns = TestNamespace::create(&client, &tenant, &[]).await.unwrap();
    let tenants: Api<Injection> = Api::namespaced(client.clone(), &tenant);
    tenants
        .create(&PostParams::default(), &injection("sneaky", &node, 300))
        .await
        .unwrap();
    // One naming a kube-system pod, in firedrill's namespace: refused, with an Event.
    let mut system = injection("system", &node, 300);
    if let Some(p) = system.spec.action.processes.as_mut() {
        p.pods[0].namespace = "kube-system".into();
        p.pods[0].name = "coredns-0".into();
    }
    api.create(&PostParams::default(), &system).await.unwrap();
    let refused = eventually("system refused", || async {
        let i = api.get("system").await.ok()?;
        (state(&i) == InjectionState::Refused).then_some(i)
    })
    .await;
    assert!(refused.finalizers().is_empty(), "never applied, never held");
    let message = refused.status.unwrap().message.unwrap();
    assert!(message.contains("kube-system/coredns-0"), "{message}");
    eventually("a Refused event", || async {
        let reasons = event_reasons(&client, &h.namespace, "system").await.ok()?;
        reasons.iter().any(|r| r == "Refused").then_some(())
    })
    .await;
    // A valid one, once the node is labelled protected: refused too.
    let protect = serde_json::json!({"metadata": {"labels": {"firedrill.dev/protected": "true"}}});
    Api::<Node>::all(client.clone())
        .patch(&node, &PatchParams::default(), &Patch::Merge(&protect))
        .await
        .unwrap();
    api.create(
        &PostParams::default(),
        &injection("on-protected", &node, 300),
    )
    .await
    .unwrap();
    let refused = eventually("on-protected refused", || async {
        let i = api.get("on-protected").await.ok()?;
        (state(&i) == InjectionState::Refused).then_some(i)
    })
    .await;
    let message = refused.status.unwrap().message.unwrap();
    assert!(message.contains("labelled protected"), "{message}");
    assert_eq!(h.journal.path().read_dir().unwrap().count(), 0);
    // By now the agent has long handled what it sees; the tenant's is untouched.
    let sneaky = tenants.get("sneaky").await.unwrap();
    assert_eq!(state(&sneaky), InjectionState::Pending);
    assert!(sneaky.finalizers().is_empty());
    h.finish().await;
    tenant_ns.delete().await.unwrap();
}

#[tokio::test]
async fn an_unreadable_journal_entry_is_reported_failed_with_an_event_and_keeps_its_finalizer() {
    let test = "an_unreadable_journal_entry_is_reported_failed_with_an_event";
    let Some(client) = client(test).await else {
        return;
    };
    let h = Harness::start(client.clone()).await;
    let (api, node, journal) = (h.injections(), h.node.clone(), h.journal.path());
    api.create(&PostParams::default(), &injection("corrupt", &node, 300))
        .await
        .unwrap();
    eventually("corrupt applied", || async {
        let i = api.get("corrupt").await.ok()?;
        (state(&i) == InjectionState::Applied).then_some(())
    })
    .await;
    // Damage every entry, then touch the object so the agent looks at once.
    let entries: Vec<_> = journal
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!entries.is_empty());
    for entry in &entries {
        std::fs::write(entry, b"{ not json").unwrap();
    }
    let touch = serde_json::json!({"metadata": {"labels": {"firedrill.dev/touched": "1"}}});
    api.patch("corrupt", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .unwrap();
    let failed = eventually("corrupt reported failed", || async {
        let i = api.get("corrupt").await.ok()?;
        (state(&i) == InjectionState::Failed).then_some(i)
    })
    .await;
    assert!(
        failed.finalizers().iter().any(|f| f == AGENT_FINALIZER),
        "kept"
    );
    let status = failed.status.unwrap();
    let message = status.message.unwrap();
    assert!(message.contains("cannot prove"), "{message}");
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "JournalReadable"
                && c.status == "False"
                && c.reason == "EntryUnreadable"),
        "{:?}",
        status.conditions
    );
    eventually("a JournalUnreadable event", || async {
        let reasons = event_reasons(&client, &h.namespace, "corrupt").await.ok()?;
        reasons
            .iter()
            .any(|r| r == "JournalUnreadable")
            .then_some(())
    })
    .await;
    // The person removes the entry: the agent lets the Injection go.
    for entry in &entries {
        std::fs::remove_file(entry).unwrap();
    }
    api.delete("corrupt", &DeleteParams::default())
        .await
        .unwrap();
    eventually("corrupt released", || async {
        matches!(api.get_opt("corrupt").await, Ok(None)).then_some(())
    })
    .await;
    h.finish().await;
}

/// Renews the Lease `name` every 500 ms until the returned sender is dropped or fired;
/// the handle yields the time of the last renewal.
async fn renew_lease(
    client: &Client,
    namespace: &str,
    name: &str,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<chrono::DateTime<Utc>>,
) {
    use k8s_openapi::api::coordination::v1::Lease;
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"holderIdentity": "test-driver"},
    }))
    .unwrap();
    api.create(&PostParams::default(), &lease).await.unwrap();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let name = name.to_owned();
    let renewing = tokio::spawn(async move {
        let mut last = Utc::now();
        loop {
            let now = Utc::now();
            let renew = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            let patch = serde_json::json!({"spec": {"renewTime": renew}});
            if api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                last = now;
            }
            tokio::select! {
                _ = &mut stopped => return last,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    });
    (stop, renewing)
}

#[tokio::test]
async fn a_fault_ends_when_its_drivers_heartbeat_stops_and_at_its_duration_on_the_nodes_clock() {
    let test =
        "a_fault_ends_when_its_drivers_heartbeat_stops_and_at_its_duration_on_the_nodes_clock";
    let Some(client) = client(test).await else {
        return;
    };
    let h = Harness::start(client.clone()).await;
    let (api, node) = (h.injections(), h.node.clone());
    let (stop_renewing, renewing) = renew_lease(&client, &h.namespace, "driver").await;
    let timeout = 4;
    let mut watched = injection("watched", &node, 300);
    watched.spec.heartbeat = Some(firedrill_core::api::Heartbeat {
        lease: "driver".into(),
        timeout_seconds: timeout,
    });
    api.create(&PostParams::default(), &watched).await.unwrap();
    // Held for 3 s, with nobody to ask for the revert: the agent ends it on its own clock.
    let hold = 3;
    let mut timed = injection("timed", &node, 300);
    timed.spec.hold_for = Some(std::time::Duration::from_secs(hold).into());
    api.create(&PostParams::default(), &timed).await.unwrap();
    for name in ["watched", "timed"] {
        eventually(&format!("{name} applied"), || async {
            let i = api.get(name).await.ok()?;
            (state(&i) == InjectionState::Applied).then_some(())
        })
        .await;
    }
    let ended = eventually("timed reverted at its duration", || async {
        let i = api.get("timed").await.ok()?;
        (state(&i) == InjectionState::Reverted).then_some(i)
    })
    .await;
    let status = ended.status.unwrap();
    let held = (status.reverted_at.unwrap() - status.applied_at.unwrap()).as_seconds_f64();
    let grace = firedrill_core::api::HOLD_GRACE.as_secs_f64();
    eprintln!("holdFor {hold}s: reverted {held:.1}s after it was applied (grace {grace}s)");
    assert!(
        held >= hold as f64 + grace - 1.0 && held <= hold as f64 + grace + 2.0,
        "held {held:.1}s"
    );
    // Renewed: the fault holds past the heartbeat's timeout.
    tokio::time::sleep(Duration::from_secs(u64::from(timeout) * 2)).await;
    let still = api.get("watched").await.unwrap();
    assert_eq!(state(&still), InjectionState::Applied, "{:?}", still.status);
    // The driver dies: reverted no sooner than the timeout after its last renewal, and at
    // most one read later.
    let _ = stop_renewing.send(());
    let last_renewal = renewing.await.unwrap();
    let reverted = eventually("watched reverted by the dead man's switch", || async {
        let i = api.get("watched").await.ok()?;
        (state(&i) == InjectionState::Reverted).then_some(i)
    })
    .await;
    let status = reverted.status.unwrap();
    let after = (status.reverted_at.unwrap() - last_renewal).as_seconds_f64();
    eprintln!(
        "dead man's switch: reverted {after:.1}s after the last renewal (timeout {timeout}s, read every {:?})",
        firedrill_core::api::HEARTBEAT_POLL
    );
    let poll = firedrill_core::api::HEARTBEAT_POLL.as_secs_f64();
    assert!(
        after >= f64::from(timeout) && after <= f64::from(timeout) + poll + 1.5,
        "reverted {after:.1}s after the last renewal"
    );
    let message = status.message.unwrap();
    assert!(message.contains("Lease driver"), "{message}");
    h.finish().await;
}
