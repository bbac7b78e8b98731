//! A harness for tests against a real API server: the cluster given by `KUBECONFIG`, a
//! temporary opted-in namespace per test, the CRDs installed when missing, and a stand-in
//! for the node agent that follows the agent's side of the Injection contract.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use firedrill_core::api::{Experiment, Injection};
use firedrill_operator::{AGENT_FINALIZER, OPT_IN_LABEL, OPT_IN_VALUE};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};
use serde_json::{Value, json};

/// Says why a test is skipped, on stderr directly so the test harness does not swallow it.
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
    // e2e/run.sh sets it once the cluster is up: a test that cannot reach it then fails.
    assert!(
        std::env::var("FIREDRILL_E2E_REQUIRE").as_deref() != Ok("1"),
        "{test}: {why} (FIREDRILL_E2E_REQUIRE=1)"
    );
}

/// A client for the cluster in `KUBECONFIG`, or `None` (with the reason printed) when there
/// is none or it does not answer: these tests then skip.
pub async fn cluster(test: &str) -> Option<Client> {
    let Ok(path) = std::env::var("KUBECONFIG") else {
        skip(
            test,
            "KUBECONFIG is not set (no API server to test against)",
        );
        return None;
    };
    let config = match Kubeconfig::read_from(&path) {
        Ok(kubeconfig) => {
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await
        }
        Err(e) => {
            skip(test, &format!("cannot read KUBECONFIG {path}: {e}"));
            return None;
        }
    };
    let client = match config.map(Client::try_from) {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => {
            skip(test, &format!("no client for {path}: {e}"));
            return None;
        }
        Err(e) => {
            skip(test, &format!("bad kubeconfig {path}: {e}"));
            return None;
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), client.apiserver_version()).await {
        Ok(Ok(version)) => {
            println!("{test}: API server {}.{}", version.major, version.minor);
            Some(client)
        }
        Ok(Err(e)) => {
            skip(
                test,
                &format!("the API server in {path} does not answer: {e}"),
            );
            None
        }
        Err(_) => {
            skip(
                test,
                &format!("the API server in {path} did not answer in 10 s"),
            );
            None
        }
    }
}

/// Installs firedrill's CRDs when they are missing, and waits until they are served.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, crd) in firedrill_core::crd::all() {
        let name = crd.name_any();
        if api.get_opt(&name).await.unwrap().is_none() {
            let params = PatchParams::apply("firedrill-operator-tests").force();
            api.patch(&name, &params, &Patch::Apply(&crd))
                .await
                .unwrap();
        }
        eventually(Duration::from_secs(30), || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await.ok()?;
                let established = crd
                    .status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                established.then_some(())
            }
        })
        .await
        .unwrap_or_else(|| panic!("CRD {name} was not established"));
    }
}

/// Polls `check` every 200 ms until it gives a value, or `None` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A namespace for one test, opted in to chaos (or not), with a companion that plays
/// firedrill's own namespace (where the operator writes the Injections); both deleted by
/// [`TestNamespace::delete`].
pub struct TestNamespace {
    pub name: String,
    pub firedrill: String,
    client: Client,
}

async fn create_namespace(client: &Client, name: &str, labels: serde_json::Map<String, Value>) {
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels}
    }))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str, opted_in: bool) -> Self {
        let name = format!(
            "fd-{prefix}-{:x}",
            Utc::now().timestamp_micros() & 0xff_ffff
        );
        let mut labels = serde_json::Map::new();
        labels.insert("firedrill.dev/test".into(), "operator".into());
        let firedrill = format!("{name}-fd");
        create_namespace(client, &firedrill, labels.clone()).await;
        if opted_in {
            labels.insert(OPT_IN_LABEL.into(), OPT_IN_VALUE.into());
        }
        create_namespace(client, &name, labels).await;
        Self {
            name,
            firedrill,
            client: client.clone(),
        }
    }

    /// Deletes the namespaces, first freeing anything a test left with finalizers.
    pub async fn delete(self) {
        let injections: Api<Injection> = Api::namespaced(self.client.clone(), &self.firedrill);
        let experiments: Api<Experiment> = Api::namespaced(self.client.clone(), &self.name);
        let clear = json!({"metadata": {"finalizers": null}});
        for i in injections.list(&ListParams::default()).await.unwrap().items {
            let _ = injections
                .patch(
                    &i.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&clear),
                )
                .await;
        }
        for e in experiments
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
        {
            let _ = experiments
                .patch(
                    &e.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&clear),
                )
                .await;
        }
        for name in [&self.name, &self.firedrill] {
            let _ = Api::<Namespace>::all(self.client.clone())
                .delete(name, &DeleteParams::background())
                .await;
        }
    }
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
        "metadata": {"name": name, "labels": {"app": "victim", "firedrill.dev/test": name}},
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
    pub applied: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeAgent {
    pub fn start(client: &Client, namespace: &str) -> Self {
        let api: Api<Injection> = Api::namespaced(client.clone(), namespace);
        let hold = Arc::new(AtomicBool::new(false));
        let applied = Arc::new(std::sync::atomic::AtomicUsize::new(0));
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
