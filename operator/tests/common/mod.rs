//! The operator's own harness on top of firedrill-testkit: a test namespace with a
//! companion that plays firedrill's own, the controllers running in this process, a
//! worker node and a victim pod on it, and a stand-in for the node agent that follows the
//! agent's side of the Injection contract.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use firedrill_core::api::{Experiment, Injection};
use firedrill_operator::metrics::Metrics;
use firedrill_operator::reconcile::{self, Context};
use firedrill_operator::{AGENT_FINALIZER, OPT_IN_LABEL, OPT_IN_VALUE, controllers, inventory};
use firedrill_testkit::{TEST_LABEL, unique_name};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::watch;

/// A namespace for one test, opted in to chaos (or not), with a companion that plays
/// firedrill's own namespace (where the operator writes the Injections); both deleted by
/// [`TestNamespace::delete`].
pub struct TestNamespace {
    pub name: String,
    pub firedrill: String,
    own: firedrill_testkit::TestNamespace,
    home: firedrill_testkit::TestNamespace,
}

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str, opted_in: bool) -> Self {
        let name = unique_name(&format!("fd-{prefix}"));
        let firedrill = format!("{name}-fd");
        let test = (TEST_LABEL, "operator");
        let home = firedrill_testkit::TestNamespace::create(client, &firedrill, &[test])
            .await
            .unwrap();
        let labels: &[(&str, &str)] = if opted_in {
            &[test, (OPT_IN_LABEL, OPT_IN_VALUE)]
        } else {
            &[test]
        };
        let own = firedrill_testkit::TestNamespace::create(client, &name, labels)
            .await
            .unwrap();
        Self {
            name,
            firedrill,
            own,
            home,
        }
    }

    /// Deletes the namespaces, first freeing anything a test left with finalizers.
    pub async fn delete(self) {
        self.home.release::<Injection>().await.unwrap();
        self.own.release::<Experiment>().await.unwrap();
        let _ = self.own.delete().await;
        let _ = self.home.delete().await;
    }
}

/// Which of the operator's controllers a test runs.
#[derive(Clone, Copy)]
pub enum Controllers {
    /// The Experiment controller alone (`reconcile::run`).
    Experiments,
    /// The Experiment, GameDay and DrillSchedule controllers (`controllers::run`).
    All,
}

/// The operator, in this process, for one namespace.
pub struct Operator {
    pub ctx: Arc<Context>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    inventory: tokio::task::JoinHandle<()>,
}

impl Operator {
    /// Watches `ns`'s test-labelled Experiments (and with [`Controllers::All`] its GameDays
    /// and DrillSchedules) and writes their Injections in `ns.firedrill`.
    pub fn start(client: &Client, ns: &TestNamespace, which: Controllers) -> Self {
        let mut ctx = Context::new(
            client.clone(),
            Arc::new(Metrics::default()),
            &ns.firedrill,
            "operator-tests",
        )
        .unwrap();
        ctx.watch_namespace = Some(ns.name.clone());
        ctx.experiment_selector = Some(TEST_LABEL.to_owned());
        let ctx = Arc::new(ctx);
        let (stop, mut stopped) = watch::channel(false);
        let stopped = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let task = match which {
            Controllers::Experiments => tokio::spawn(reconcile::run(ctx.clone(), stopped)),
            Controllers::All => tokio::spawn(controllers::run(ctx.clone(), stopped)),
        };
        // As on every replica: the stores the gauges and the sweep read.
        let inventory = tokio::spawn(inventory::run(ctx.clone()));
        Self {
            ctx,
            stop,
            task,
            inventory,
        }
    }

    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
        self.inventory.abort();
    }
}

/// An experiment spec on the `app=victim` pods of `namespace`, judged by `node` being
/// Ready (a real `kubernetes` probe through the operator's object source); `extra` adds
/// or replaces fields.
pub fn victim_spec(
    namespace: &str,
    node: &str,
    fault: Value,
    duration: &str,
    extra: Value,
) -> Value {
    let mut spec = json!({
        "target": {"namespaces": [namespace], "selector": {"matchLabels": {"app": "victim"}}},
        "fault": fault,
        "duration": duration,
        "hypothesis": {
            "interval": "500ms",
            "window": "1s",
            "probes": [{"name": "node-ready", "kubernetes": {"apiVersion": "v1", "kind": "Node", "name": node}}]
        },
        "recoveryDeadline": "30s",
        "blastRadius": {"maxTargets": 1, "maxPercent": 100}
    });
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    spec
}

/// A schedulable worker node (not the control plane, not protected), or `None`.
pub async fn worker(client: &Client) -> Option<Node> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    nodes
        .items
        .into_iter()
        .find(|n| firedrill_operator::plan::node_protection(n).is_none())
}

/// A pod bound to `node` whose image cannot be pulled: a target that runs nothing, so no
/// real agent could hurt anything by acting on it.
pub async fn victim(client: &Client, namespace: &str, name: &str, node: &str) -> Pod {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "victim", TEST_LABEL: name}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": "firedrill.invalid/never:0"}]
        }
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap()
}

/// Plays the node agent's part of the contract: finalizer before applying, `Applied` with
/// `appliedAt`, and on deletion `Reverted` with `revertedAt` and the finalizer removed.
/// While `hold` is set, deleted Injections are kept (a slow or unreachable agent).
pub struct FakeAgent {
    pub hold: Arc<AtomicBool>,
    pub applied: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeAgent {
    pub fn start(client: &Client, namespace: &str) -> Self {
        let api: Api<Injection> = Api::namespaced(client.clone(), namespace);
        let hold = Arc::new(AtomicBool::new(false));
        let applied = Arc::new(AtomicUsize::new(0));
        let (h, a) = (hold.clone(), applied.clone());
        let task = tokio::spawn(async move {
            loop {
                if let Ok(list) = api.list(&ListParams::default()).await {
                    for i in list.items {
                        let name = i.name_any();
                        let state = i.status.as_ref().map(|s| s.state);
                        if i.metadata.deletion_timestamp.is_some() {
                            if h.load(Ordering::SeqCst) {
                                continue;
                            }
                            let status = json!({"status": {
                                "state": "Reverted",
                                "appliedAt": i.status.as_ref().and_then(|s| s.applied_at),
                                "revertedAt": Utc::now(),
                            }});
                            let _ = api
                                .patch_status(
                                    &name,
                                    &PatchParams::default(),
                                    &Patch::Merge(&status),
                                )
                                .await;
                            let clear = json!({"metadata": {"finalizers": null}});
                            let _ = api
                                .patch(&name, &PatchParams::default(), &Patch::Merge(&clear))
                                .await;
                        } else if state.is_none() {
                            let fin = json!({"metadata": {"finalizers": [AGENT_FINALIZER]}});
                            if api
                                .patch(&name, &PatchParams::default(), &Patch::Merge(&fin))
                                .await
                                .is_err()
                            {
                                continue;
                            }
                            let status = json!({"status": {
                                "state": "Applied",
                                "appliedAt": Utc::now(),
                            }});
                            if api
                                .patch_status(
                                    &name,
                                    &PatchParams::default(),
                                    &Patch::Merge(&status),
                                )
                                .await
                                .is_ok()
                            {
                                a.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self {
            hold,
            applied,
            task,
        }
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Common setup: a cluster with firedrill's CRDs and an unprotected worker, or a printed
/// reason to skip.
pub async fn setup(test: &str) -> Option<(Client, String)> {
    let client = firedrill_testkit::client(test).await?;
    firedrill_testkit::crds::install_missing(&client)
        .await
        .expect("firedrill's CRDs installed");
    let Some(node) = worker(&client).await else {
        firedrill_testkit::skip(test, "the cluster has no unprotected worker node");
        return None;
    };
    Some((client, node.name_any()))
}
