//! The e2e harness, on firedrill-testkit: the cluster in `KUBECONFIG` with firedrill
//! deployed from its chart (and talk), a temporary namespace per test (linkerd2 policy-controller's `with_temp_ns`: the
//! test runs in a task, the namespace goes whatever its outcome, then a failure is
//! re-raised), and probes that look at the nodes for what a fault leaves behind.
//!
//! Environment: `KUBECONFIG` (required), `FIREDRILL_NAMESPACE` (default firedrill-system),
//! `TALK_NAMESPACE` (default talk), `FIREDRILL_E2E_REQUIRE=1` to fail instead of skipping
//! when no cluster answers or firedrill or talk is not deployed.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use firedrill_core::api::{Experiment, ExperimentStatus, Injection, Lapse, Phase, PodRef, Verdict};
use firedrill_core::api::{NODE_FAULT_GRANT_LABEL, NODE_FAULT_GRANT_VALUE};
use firedrill_core::manifest::{self, Manifest};
use firedrill_testkit::{TestNamespace, skip, unique_name, wait};
pub use firedrill_testkit::{eventually_every, note};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

/// Labels the namespaces and objects the e2e tests make.
pub const E2E_LABEL: &str = "firedrill.dev/e2e";
/// firedrill's table on every node and pod sandbox (one chain pair per injection).
pub const NFT_TABLE: &str = "firedrill";
pub const OPERATOR: &str = "firedrill-operator";
pub const AGENT: &str = "firedrill-agent";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

pub fn firedrill_namespace() -> String {
    env_or("FIREDRILL_NAMESPACE", "firedrill-system")
}

pub fn talk_namespace() -> String {
    env_or("TALK_NAMESPACE", "talk")
}

/// The cluster, when firedrill's chart is deployed on it (its operator Deployment exists).
pub async fn firedrill(test: &str) -> Option<Client> {
    let client = firedrill_testkit::client(test).await?;
    let ns = firedrill_namespace();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    match deployments.get_opt(OPERATOR).await {
        Ok(Some(_)) => Some(client),
        Ok(None) => {
            skip(
                test,
                &format!("firedrill is not deployed in namespace {ns} (e2e/deploy.sh up)"),
            );
            None
        }
        Err(e) => {
            skip(
                test,
                &format!("cannot read deployment {ns}/{OPERATOR}: {e}"),
            );
            None
        }
    }
}

/// The cluster, when firedrill and talk (in an opted-in namespace) are deployed.
pub async fn firedrill_and_talk(test: &str) -> Option<Client> {
    let client = firedrill(test).await?;
    let ns = talk_namespace();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    match deployments.get_opt("talk-load").await {
        Ok(Some(_)) => Some(client),
        Ok(None) => {
            skip(
                test,
                &format!("talk is not deployed in namespace {ns} (e2e/deploy.sh up)"),
            );
            None
        }
        Err(e) => {
            skip(test, &format!("cannot read deployment {ns}/talk-load: {e}"));
            None
        }
    }
}

/// Runs `test` with a namespace of its own (`fd-e2e-<prefix>-<random>`), then deletes the
/// namespace whether the test passed or not, and re-raises a failure. Objects with
/// finalizers in it (Experiments) are deleted first and given time to be released by the
/// operator, so their faults are reverted the normal way.
pub async fn with_temp_ns<F, Fut>(client: &Client, prefix: &str, test: F)
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = unique_name(&format!("fd-e2e-{prefix}"));
    // The catalog's zone blackout cuts whole nodes: the cluster-level grant.
    let labels = [
        (E2E_LABEL, prefix),
        (NODE_FAULT_GRANT_LABEL, NODE_FAULT_GRANT_VALUE),
    ];
    let ns = TestNamespace::create(client, &name, &labels)
        .await
        .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
    note(format!("namespace {name} created"));
    let result = tokio::spawn(test(client.clone(), name.clone())).await;
    if result.is_err() {
        dump(client, &name).await;
    }
    delete_namespace(client, ns).await;
    if let Err(e) = result {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("test task failed: {e}");
    }
}

/// Deletes the test's Experiments (their finalizers left for the operator, so their
/// faults are reverted the normal way), then the namespace, and waits for it to go.
async fn delete_namespace(client: &Client, ns: TestNamespace) {
    let name = ns.name.clone();
    let experiments: Api<Experiment> = Api::namespaced(client.clone(), &name);
    let _ = experiments
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    match ns.delete_and_wait(Duration::from_secs(120)).await {
        Ok(()) => note(format!("namespace {name} deleted")),
        Err(e) => note(format!(
            "namespace {name}: {e} (still terminating: Experiment or Injection finalizers?)"
        )),
    }
}

/// What a failed test leaves for its reader: the Experiments' status and the Injections.
async fn dump(client: &Client, ns: &str) {
    let experiments: Api<Experiment> = Api::namespaced(client.clone(), ns);
    if let Ok(list) = experiments.list(&ListParams::default()).await {
        for e in list.items {
            note(format!(
                "experiment {ns}/{}: {}",
                e.name_any(),
                serde_json::to_string_pretty(&e.status).unwrap_or_default()
            ));
        }
    }
    {
        for i in injections_of(client, ns).await {
            note(format!(
                "injection {ns}/{}: {}",
                i.name_any(),
                serde_json::to_string(&i.status).unwrap_or_default()
            ));
        }
    }
}

/// Nodes that run pods (all of them: the control plane of the e2e cluster is not a node).
pub async fn nodes(client: &Client) -> Vec<Node> {
    Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

/// The image of firedrill's agent DaemonSet: it has `nft`, so the node probes use it.
pub async fn agent_image(client: &Client) -> String {
    let ds: Api<DaemonSet> = Api::namespaced(client.clone(), &firedrill_namespace());
    let ds = ds.get(AGENT).await.unwrap();
    ds.spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().next())
        .and_then(|c| c.image)
        .expect("the agent DaemonSet names an image")
}

/// firedrill's nftables chains in an `nft -j list ruleset` output.
pub fn firedrill_chains(ruleset: &str) -> Result<Vec<String>, String> {
    let v: Value = serde_json::from_str(ruleset.trim())
        .map_err(|e| format!("not nft JSON ({e}): {ruleset}"))?;
    let items = v["nftables"]
        .as_array()
        .ok_or_else(|| format!("no nftables array: {ruleset}"))?;
    Ok(items
        .iter()
        .filter_map(|i| i.get("chain"))
        .filter(|c| c["table"] == NFT_TABLE)
        .map(|c| {
            format!(
                "{} {}",
                c["family"].as_str().unwrap_or("?"),
                c["name"].as_str().unwrap_or("?")
            )
        })
        .collect())
}

fn nft_container(name: &str, image: &str, args: &[&str]) -> Value {
    json!({
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/usr/sbin/nft"],
        "args": args,
        "securityContext": {
            "runAsUser": 0,
            "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}
        }
    })
}

/// firedrill's chains in `node`'s own network namespace: a hostNetwork pod in `ns` runs
/// `nft -j list ruleset` there.
pub async fn chains_on_node(client: &Client, ns: &str, node: &str, image: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let name = format!("nft-{}", node.replace(['.', '_'], "-"));
    let name = name.chars().take(58).collect::<String>()
        + &format!("-{:04x}", Utc::now().timestamp_micros() & 0xffff);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {E2E_LABEL: "nft"}},
        "spec": {
            "nodeName": node,
            "hostNetwork": true,
            "restartPolicy": "Never",
            "tolerations": [{"operator": "Exists"}],
            "containers": [nft_container("nft", image, &["-j", "list", "ruleset"])]
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let done = eventually_every(
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let p = pods.get(&name).await.ok()?;
            let phase = p.status?.phase?;
            matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
        },
    )
    .await;
    let logs = finished_logs(&pods, &name, &LogParams::default()).await;
    let _ = pods.delete(&name, &DeleteParams::background()).await;
    assert_eq!(
        done.as_deref(),
        Some("Succeeded"),
        "nft on node {node} did not succeed: {logs}"
    );
    firedrill_chains(&logs).unwrap_or_else(|e| panic!("node {node}: {e}"))
}

/// The output of a container that has finished, which `nft` never leaves empty. Read again
/// for up to 10 s while it comes back empty or not at all: on a loaded node the kubelet has
/// answered with nothing for a container that had just ended, and an empty answer must not
/// pass for "no chains". What the last read said is returned for the caller's message.
async fn finished_logs(pods: &Api<Pod>, pod: &str, params: &LogParams) -> String {
    let mut last = String::new();
    for _ in 0..20 {
        match pods.logs(pod, params).await {
            Ok(logs) if !logs.trim().is_empty() => return logs,
            Ok(_) => last = String::new(),
            Err(e) => last = format!("(logs of {pod} unreadable: {e})"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    last
}

/// Runs `nft ARGS` in a pod's sandbox network namespace (an ephemeral container of the
/// agent's image, with NET_ADMIN only) and returns its output; panics unless it succeeds.
pub async fn nft_in_pod(client: &Client, pod: &Pod, image: &str, args: &[&str]) -> String {
    let ns = pod.namespace().unwrap();
    let pod_name = pod.name_any();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let name = format!("fd-nft-{:06x}", Utc::now().timestamp_micros() & 0xff_ffff);
    let patch = json!({"spec": {"ephemeralContainers": [nft_container(&name, image, args)]}});
    pods.patch_ephemeral_containers(
        &pod_name,
        &PatchParams::default(),
        &Patch::Strategic(&patch),
    )
    .await
    .unwrap_or_else(|e| panic!("ephemeral container in {ns}/{pod_name}: {e}"));
    let done = eventually_every(
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let p = pods.get(&pod_name).await.ok()?;
            let status = p
                .status?
                .ephemeral_container_statuses?
                .into_iter()
                .find(|s| s.name == name)?;
            status.state?.terminated.map(|t| t.exit_code)
        },
    )
    .await;
    let lp = LogParams {
        container: Some(name.clone()),
        ..LogParams::default()
    };
    let logs = finished_logs(&pods, &pod_name, &lp).await;
    assert_eq!(
        done,
        Some(0),
        "nft {args:?} in pod {ns}/{pod_name} did not succeed: {logs}"
    );
    logs
}

/// firedrill's chains in a pod's sandbox network namespace (where a partition's rules go).
pub async fn chains_in_pod(client: &Client, pod: &Pod, image: &str) -> Vec<String> {
    let logs = nft_in_pod(client, pod, image, &["-j", "list", "ruleset"]).await;
    firedrill_chains(&logs).unwrap_or_else(|e| {
        panic!(
            "pod {}/{}: {e}",
            pod.namespace().unwrap_or_default(),
            pod.name_any()
        )
    })
}

/// talk-load's live SLIs (`/sli`), through the API server's service proxy.
pub async fn talk_sli(client: &Client) -> Option<Value> {
    let path = format!(
        "/api/v1/namespaces/{}/services/talk-load:8080/proxy/sli",
        talk_namespace()
    );
    let req = http::Request::get(path).body(Vec::new()).ok()?;
    let text = client.request_text(req).await.ok()?;
    serde_json::from_str(&text).ok()
}

/// talk delivers: acknowledged messages, ≥ 99 % of the window's sends, nothing lost.
pub fn delivering(sli: &Value) -> bool {
    sli["acked"].as_u64().is_some_and(|a| a > 0)
        && sli["deliverySuccessRatio"]
            .as_f64()
            .is_some_and(|r| r >= 0.99)
        && sli["lostMessages"].as_u64() == Some(0)
}

/// The zone label of nodes.
pub const ZONE: &str = "topology.kubernetes.io/zone";

/// The Injections of the Experiments of `ns`, wherever they are (the operator writes them
/// in firedrill's own namespace).
pub async fn injections_of(client: &Client, ns: &str) -> Vec<Injection> {
    let prefix = format!("{ns}/");
    Api::<Injection>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.spec.experiment.starts_with(&prefix))
        .collect()
}

/// The catalog's Experiment `file`, moved into `ns` and pointed at talk in `talk_ns`.
pub fn catalog_experiment(file: &str, ns: &str, talk_ns: &str) -> Experiment {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../experiments")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    // The catalog addresses talk in namespace talk: the probes' URLs and the target.
    let text = text
        .replace(".talk:", &format!(".{talk_ns}:"))
        .replace("namespace: talk\n", &format!("namespace: {talk_ns}\n"));
    let mut e = match manifest::load_str(&text)
        .unwrap_or_else(|p| panic!("{}: {p:?}", path.display()))
        .into_iter()
        .next()
    {
        Some(Manifest::Experiment(e)) => *e,
        other => panic!("{}: not an Experiment: {other:?}", path.display()),
    };
    e.metadata.namespace = Some(ns.to_owned());
    e.spec.target.namespaces = vec![talk_ns.to_owned()];
    // A deployed operator leaves `firedrill.dev/test` Experiments to the operator's own
    // tests; these are for it.
    let labels = e.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.remove("firedrill.dev/test");
    labels.insert(E2E_LABEL.into(), file.trim_end_matches(".yaml").into());
    e
}

/// Pods of talk's namespace, running or not (not hostNetwork ones).
pub async fn talk_pods(client: &Client) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &talk_namespace());
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.host_network) != Some(true))
        .collect()
}

pub fn running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

pub fn zone_of(nodes: &[Node], pod: &Pod) -> Option<String> {
    let node = pod.spec.as_ref()?.node_name.as_deref()?;
    nodes
        .iter()
        .find(|n| n.name_any() == node)
        .and_then(|n| n.labels().get(ZONE).cloned())
}

pub fn report(test: &str, t0: Instant, status: &ExperimentStatus) {
    note(format!(
        "{test}: Completed after {:.1}s: verdict {:?}, reason {:?}, time to impact {:?}s, time to recover {:?}s, messages lost {:?}, duplicated {:?}; injected {:?}, reverted {:?}, recovered {:?}",
        t0.elapsed().as_secs_f64(),
        status.verdict,
        status.reason,
        status.time_to_impact_seconds,
        status.time_to_recover_seconds,
        status.messages_lost,
        status.messages_duplicated,
        status.injected_at,
        status.reverted_at,
        status.recovered_at,
    ));
    // The benchmark figures of issue 5: apply-to-effective and end-to-reverted.
    if let (Some(asked), Some(effective)) = (status.inject_requested_at, status.injected_at) {
        note(format!(
            "BENCH {test}: fault effective {} ms after it was asked for",
            (effective - asked).num_milliseconds()
        ));
    }
    if let (Some(asked), Some(reverted)) = (status.revert_requested_at, status.reverted_at) {
        let ms = (reverted - asked).num_milliseconds();
        // revertRequestedAt is when the operator's engine asked. The agents may revert
        // before it does: chaosctl stop-all deletes the Injections itself (the test times
        // stop-all on its own), and a node that a blackout cuts off ends its part on its own
        // timer at the duration. Neither is a latency of the engine's revert.
        note(if ms < 0 {
            format!(
                "{test}: reverted {} ms before the operator asked (stop-all, or the node's own timer at the duration, came first)",
                -ms
            )
        } else {
            format!("BENCH {test}: reverted {ms} ms after it was asked for")
        });
    }
}

/// No Injection of the experiments `uids` anywhere, no firedrill chain on any node nor in
/// any running talk pod's sandbox.
pub async fn nothing_left(
    client: &Client,
    test: &str,
    ns: &str,
    uids: &[String],
    nodes: &[Node],
    image: &str,
    t0: Instant,
) {
    let injections: Api<Injection> = Api::all(client.clone());
    for uid in uids {
        let lp = ListParams::default().labels(&format!("firedrill.dev/experiment-uid={uid}"));
        let left = eventually_every(Duration::from_secs(60), Duration::from_secs(1), || async {
            let items = injections.list(&lp).await.ok()?.items;
            items.is_empty().then_some(())
        })
        .await;
        assert!(
            left.is_some(),
            "Injections left: {:?}",
            injections.list(&lp).await.map(|l| l
                .items
                .iter()
                .map(|i| i.name_any())
                .collect::<Vec<_>>())
        );
    }
    let left = injections_of(client, ns).await;
    assert!(left.is_empty(), "{} Injection(s) left", left.len());

    for node in nodes {
        let chains = chains_on_node(client, ns, &node.name_any(), image).await;
        assert!(
            chains.is_empty(),
            "node {} still has {chains:?}",
            node.name_any()
        );
    }
    // Pods replaced by the fault may still be starting: wait for them to run first.
    let pods = eventually_every(Duration::from_secs(180), Duration::from_secs(2), || async {
        let pods = talk_pods(client).await;
        pods.iter().all(running).then_some(pods)
    })
    .await
    .expect("talk's pods all running again within 180 s");
    let mut tasks = tokio::task::JoinSet::new();
    for pod in pods {
        let client = client.clone();
        let image = image.to_owned();
        tasks.spawn(async move {
            let chains = chains_in_pod(&client, &pod, &image).await;
            (pod.name_any(), chains)
        });
    }
    let mut checked = 0;
    while let Some(result) = tasks.join_next().await {
        let (pod, chains) = result.unwrap();
        assert!(chains.is_empty(), "pod {pod} still has {chains:?}");
        checked += 1;
    }
    note(format!(
        "{test}: no Injection left, no firedrill chain on {} nodes and {checked} talk pods ({:.1}s in all)",
        nodes.len(),
        t0.elapsed().as_secs_f64()
    ));
}

/// Waits up to 240 s for talk to deliver (a fault on a talk that is not delivering proves
/// nothing) and returns its SLIs; panics with the last ones otherwise.
pub async fn talk_delivering(client: &Client) -> Value {
    let sli = eventually_every(Duration::from_secs(240), Duration::from_secs(2), || async {
        talk_sli(client).await.filter(delivering)
    })
    .await;
    match sli {
        Some(sli) => sli,
        None => panic!(
            "talk is not delivering in 240 s: {:?}",
            talk_sli(client).await
        ),
    }
}

/// Waits up to 420 s for Experiment `name` to be Completed and returns it.
pub async fn completed(api: &Api<Experiment>, name: &str) -> Experiment {
    let (timeout, every) = (Duration::from_secs(420), Duration::from_secs(2));
    wait::phase(api, name, Phase::Completed, timeout, every).await
}

/// The chaosctl binary: `$CHAOSCTL`, else the workspace's dev build.
pub fn chaosctl() -> PathBuf {
    if let Some(path) = std::env::var_os("CHAOSCTL") {
        return PathBuf::from(path);
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let path = target.join("debug/chaosctl");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p chaosctl` (or set CHAOSCTL)",
        path.display()
    );
    path
}

/// Waits up to 180 s for Experiment `name` to hold its fault; panics otherwise.
pub async fn holding(api: &Api<Experiment>, name: &str) {
    let held = eventually_every(Duration::from_secs(180), Duration::from_secs(1), || async {
        let e = api.get(name).await.ok()?;
        (e.status?.phase == Phase::Holding).then_some(())
    })
    .await;
    assert!(held.is_some(), "{name} never held its fault");
}

/// A pod that the network cuts of `ns`'s Injections name on the nodes of `zone`, the first
/// whose name starts with `prefer` if there is one.
pub async fn cut_pod(client: &Client, ns: &str, zone: &str, prefer: &str) -> PodRef {
    let in_zone: Vec<String> = nodes(client)
        .await
        .into_iter()
        .filter(|n| n.labels().get(ZONE).is_some_and(|z| z == zone))
        .map(|n| n.name_any())
        .collect();
    let pods: Vec<PodRef> = injections_of(client, ns)
        .await
        .into_iter()
        .filter(|i| in_zone.contains(&i.spec.node_name))
        .filter_map(|i| i.spec.action.network)
        .flat_map(|cut| cut.pods)
        .collect();
    pods.iter()
        .find(|p| p.name.starts_with(prefer))
        .or(pods.first())
        .unwrap_or_else(|| panic!("no partition Injection naming pods in {zone}"))
        .clone()
}

/// The lapses the agents reported in the Injections of `ns`.
pub async fn lapses_of(client: &Client, ns: &str) -> Vec<Lapse> {
    injections_of(client, ns)
        .await
        .into_iter()
        .filter_map(|i| i.status)
        .flat_map(|s| s.lapses)
        .collect()
}

/// The rule of a held fault's lapses, on a Completed experiment's status: one longer than
/// the sample interval fails the verdict ("did not hold"); a shorter one is no failure of
/// its own.
pub fn verdict_follows_lapses(status: &ExperimentStatus, interval_ms: f64) {
    let check = status.fault_check.clone().unwrap_or_default();
    if check.longest_lapse_seconds * 1000.0 > interval_ms {
        assert_eq!(status.verdict, Some(Verdict::Failed), "{:?}", status.reason);
        assert!(
            status
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("did not hold")),
            "{:?}",
            status.reason
        );
    } else {
        assert_ne!(
            status.reason.as_deref().map(|r| r.contains("did not hold")),
            Some(true),
            "a lapse within one interval is not a failure of its own"
        );
    }
}

/// A pod's sandbox as this machine's `/proc` shows it: its pause process and the inode of
/// its network namespace. The e2e cluster's nodes (and kind's) run their processes on the
/// machine the tests run on; on another cluster nothing is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostSandbox {
    pub pid: u32,
    pub netns: u64,
}

/// The pause process of the pod with `uid` in this machine's `/proc`, if it runs here (a
/// cgroup path names `pod<uid>`, with `_` for `-` under the systemd driver).
pub fn host_sandbox(uid: &str) -> Option<HostSandbox> {
    use std::os::unix::fs::MetadataExt;
    let names = [format!("pod{uid}"), format!("pod{}", uid.replace('-', "_"))];
    for dirent in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = dirent
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = dirent.path();
        let in_pod = std::fs::read_to_string(dir.join("cgroup"))
            .is_ok_and(|c| names.iter().any(|n| c.contains(n.as_str())));
        if !in_pod || std::fs::read_to_string(dir.join("comm")).ok()?.trim_end() != "pause" {
            continue;
        }
        if let Ok(ns) = std::fs::metadata(dir.join("ns/net")) {
            return Some(HostSandbox {
                pid,
                netns: ns.ino(),
            });
        }
    }
    None
}

/// firedrill's chains in the network namespace of process `pid` of this machine (`nsenter`
/// and the host's `nft`): a look that takes milliseconds, for timing what the agent does.
pub async fn chains_in_netns(pid: u32) -> Result<Vec<String>, String> {
    let out = tokio::process::Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["--", "nft", "-j", "list", "ruleset"])
        .output()
        .await
        .map_err(|e| format!("nsenter: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    firedrill_chains(&String::from_utf8_lossy(&out.stdout))
}

/// Waits up to 300 s for talk to be steady again after a test restarted its pods: every
/// container ready and talk delivering in every sample for 30 s (three verdict windows).
/// A pod restarted while cut off may join its Service only after the heal and fail sends
/// for a while (seen: delivery 0.80 right after the sandbox test), which the next test's
/// steady-state check must not meet.
pub async fn talk_settled(client: &Client) {
    let started = Instant::now();
    let mut good_since: Option<Instant> = None;
    loop {
        let ready = talk_pods(client).await.iter().all(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| cs.iter().all(|c| c.ready))
        });
        let good = ready && talk_sli(client).await.is_some_and(|s| delivering(&s));
        good_since = if good {
            good_since.or(Some(Instant::now()))
        } else {
            None
        };
        if good_since.is_some_and(|t| t.elapsed() >= Duration::from_secs(30)) {
            note(format!(
                "talk steady again after {:.1}s",
                started.elapsed().as_secs_f64()
            ));
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "talk is not steady again in 300 s: {:?}",
            talk_sli(client).await
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
