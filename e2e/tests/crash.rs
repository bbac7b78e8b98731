//! Crashes in the middle of a fault, against the deployed operator and agents: whatever
//! dies, the fault must not outlive its experiment (DESIGN.md's first safety invariant).
//!
//! - the operator leader is killed while a partition holds: the other replica takes the
//!   Lease, finishes the experiment and reverts;
//! - the Experiment is deleted while a partition holds: its finalizer reverts first;
//! - the agent of a faulted node is killed (no grace, so no cleanup of its own) while a
//!   partition holds: the new agent finds what its predecessor applied and reverts it;
//! - the zone holding the operator leader is blacked out (its processes killed, its nodes
//!   cut off): the other replica finishes, and the cut-off node's agent reverts on its own
//!   clock;
//! - the kill switch, `chaosctl stop-all`, is pulled while a partition holds: it returns
//!   once the agents confirm the revert, and the experiment ends Aborted.
//!
//! Each ends with no Injection and no firedrill chain on any node or talk pod. Verdicts are
//! not asserted (but the kill switch's Aborted): a crash may well fail a hypothesis;
//! leaving a fault behind may not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{
    AGENT, OPERATOR, ZONE, agent_image, catalog_experiment, chains_in_pod, chaosctl, completed,
    eventually_every, firedrill_and_talk, firedrill_namespace, nodes, note, nothing_left, report,
    running, talk_delivering, talk_namespace, talk_pods, with_temp_ns,
};
use firedrill_core::api::{Experiment, InjectionState, PAUSE_KEY, Verdict};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use tokio::sync::Mutex;

/// One at a time: they all disturb the same talk and the same operator.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Runs `chaosctl resume` when dropped: the kill switch's pause must not outlive its test.
struct Resume(String);

impl Drop for Resume {
    fn drop(&mut self) {
        let out = std::process::Command::new(chaosctl())
            .args(["--kubeconfig", &self.0, "resume"])
            .args(["--firedrill-namespace", &firedrill_namespace()])
            .output();
        match out {
            Ok(o) if o.status.success() => note(String::from_utf8_lossy(&o.stdout).trim()),
            other => note(format!("COULD NOT resume firedrill: {other:?}")),
        }
    }
}

const LEASE: &str = "firedrill-operator";

/// What to break once the fault holds.
#[derive(Clone, Copy, Debug)]
enum Crash {
    OperatorLeader,
    Experiment,
    AgentOnFaultedNode,
    /// The operator scaled to zero: nobody drives the experiment any more.
    DriverGone,
    /// `chaosctl stop-all`, as an operator in a hurry would run it.
    KillSwitch,
    /// Nothing more: the experiment itself (a blackout of the leader's zone) is the crash.
    None,
}

/// The operator pod holding the Lease, and its node.
async fn leader(client: &Client) -> Option<(String, String)> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &firedrill_namespace());
    let holder = leases.get(LEASE).await.ok()?.spec?.holder_identity?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &firedrill_namespace());
    let node = pods.get(&holder).await.ok()?.spec?.node_name?;
    Some((holder, node))
}

/// A running agent pod on `node`.
async fn agent_on(client: &Client, node: &str) -> Option<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &firedrill_namespace());
    let lp = ListParams::default()
        .labels(&format!("app.kubernetes.io/name={AGENT}"))
        .fields(&format!("spec.nodeName={node}"));
    pods.list(&lp)
        .await
        .ok()?
        .items
        .into_iter()
        .find(|p| running(p) && p.metadata.deletion_timestamp.is_none())
}

/// Sets the operator Deployment's replicas.
async fn scale_operator(client: &Client, ns: &str, replicas: i32) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let patch = serde_json::json!({"spec": {"replicas": replicas}});
    deployments
        .patch(OPERATOR, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("scale {ns}/{OPERATOR} to {replicas}: {e}"));
}

/// When every Injection of the experiments in `ns` had been reverted by its agent because
/// the driver's heartbeat stopped (the latest `revertedAt`); `None` if that did not happen
/// within 60 s.
async fn reverted_by_heartbeat(client: &Client, ns: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let last = eventually_every(
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async {
            let injections = common::injections_of(client, ns).await;
            let times: Option<Vec<_>> = injections
                .iter()
                .map(|i| {
                    let s = i.status.as_ref()?;
                    let by_heartbeat = s.state == InjectionState::Reverted
                        && s.message
                            .as_deref()
                            .is_some_and(|m| m.contains("heartbeat"));
                    by_heartbeat.then_some(s.reverted_at?)
                })
                .collect();
            times.filter(|t| !t.is_empty())?.into_iter().max()
        },
    )
    .await?;
    Some(last)
}

/// When the operator's Lease was last renewed (a release renews it too).
async fn last_renewal(client: &Client) -> Option<chrono::DateTime<chrono::Utc>> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &firedrill_namespace());
    let renewed = leases.get(LEASE).await.ok()?.spec?.renew_time?.0;
    chrono::DateTime::from_timestamp_micros(renewed.as_microsecond())
}

/// Kills a pod at once (grace 0: SIGKILL, no chance to clean up).
async fn kill(client: &Client, ns: &str, name: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.delete(
        name,
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("kill {ns}/{name}: {e}"));
}

async fn crash_mid_fault(test: &'static str, file: &'static str, crash: Crash) {
    let Some(client) = firedrill_and_talk(test).await else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().await;
    talk_delivering(&client).await;
    let image = agent_image(&client).await;

    with_temp_ns(&client, "crash", move |client, ns| async move {
        let talk_ns = talk_namespace();
        let fd_ns = firedrill_namespace();
        let nodes = nodes(&client).await;
        let mut exp = catalog_experiment(file, &ns, &talk_ns);
        if let (Crash::None, Some(fault)) = (crash, exp.spec.fault.zone_blackout.as_mut()) {
            // Black out the zone the operator leader runs in.
            let (holder, node) = leader(&client).await.expect("an operator leader");
            let zone = nodes
                .iter()
                .find(|n| n.name_any() == node)
                .and_then(|n| n.labels().get(ZONE).cloned())
                .expect("the leader's node has a zone");
            note(format!(
                "{test}: leader {holder} on {node} in {zone}: blacking out {zone}"
            ));
            fault.zone = Some(zone);
            fault.zones.clear();
        }
        let name = exp.name_any();
        let api: Api<Experiment> = Api::namespaced(client.clone(), &ns);
        let t0 = Instant::now();
        let created = api.create(&PostParams::default(), &exp).await.unwrap();
        let uid = created.uid().unwrap();
        note(format!("{test}: created {ns}/{name} (uid {uid})"));

        // Wait for the fault to hold, and see it in a pod of the faulted zone.
        common::holding(&api, &name).await;
        note(format!(
            "{test}: +{:.1}s Holding",
            t0.elapsed().as_secs_f64()
        ));
        let injections = common::injections_of(&client, &ns).await;
        let faulted_nodes: Vec<String> = injections
            .iter()
            .map(|i| i.spec.node_name.clone())
            .collect();
        note(format!("{test}: injections on {faulted_nodes:?}"));
        if !matches!(crash, Crash::None) {
            let pods = talk_pods(&client).await;
            let pod = pods
                .iter()
                .find(|p| {
                    running(p)
                        && p.spec
                            .as_ref()
                            .and_then(|s| s.node_name.as_ref())
                            .is_some_and(|n| faulted_nodes.contains(n))
                })
                .expect("a running talk pod on a faulted node");
            let chains = chains_in_pod(&client, pod, &image).await;
            assert!(!chains.is_empty(), "the fault is not in {}", pod.name_any());
        }

        match crash {
            Crash::OperatorLeader => {
                let (holder, node) = leader(&client).await.expect("an operator leader");
                note(format!(
                    "{test}: killing the operator leader {holder} on {node}"
                ));
                kill(&client, &fd_ns, &holder).await;
                let next = eventually_every(Duration::from_secs(90), Duration::from_secs(1), || async {
                    leader(&client).await.filter(|(h, _)| *h != holder)
                })
                .await;
                let (next, on) = next.expect("another replica took the Lease within 90 s");
                note(format!(
                    "{test}: +{:.1}s new leader {next} on {on}",
                    t0.elapsed().as_secs_f64()
                ));
            }
            Crash::DriverGone => {
                // No operator at all: nobody renews the leader Lease, so the agents'
                // dead man's switch must end the fault within its timeout.
                let gone_at = chrono::Utc::now();
                scale_operator(&client, &fd_ns, 0).await;
                note(format!("{test}: operator scaled to 0 mid-fault"));
                let reverted = reverted_by_heartbeat(&client, &ns).await;
                let renewed = last_renewal(&client).await;
                scale_operator(&client, &fd_ns, 2).await;
                let reverted = reverted.expect("the agents reverted on their own within 60 s");
                let renewed = renewed.expect("the operator's Lease and its renew time");
                let after = (reverted - gone_at).as_seconds_f64();
                // The cluster's nodes share this machine's clock, so the Lease's renew time
                // and the agents' revertedAt compare directly.
                let after_renewal = (reverted - renewed).as_seconds_f64();
                note(format!(
                    "BENCH {test}: dead man's switch: every fault reverted {after:.1}s after the operator was scaled to 0, {after_renewal:.1}s after its Lease's last renewal (timeout 8 s, read every 2 s)"
                ));
                // Never before the timeout; at most one read (and a second to act) after. The
                // figure printed above is the benchmark (target: within 10 s).
                assert!(
                    (8.0..=11.0).contains(&after_renewal),
                    "reverted {after_renewal:.1}s after the last renewal: the timeout is 8 s \
                     from it, read every 2 s"
                );
            }
            Crash::Experiment => {
                note(format!("{test}: deleting {ns}/{name} mid-fault"));
                api.delete(&name, &DeleteParams::default()).await.unwrap();
                let gone = eventually_every(Duration::from_secs(120), Duration::from_secs(1), || async {
                    api.get_opt(&name).await.ok()?.is_none().then_some(())
                })
                .await;
                assert!(
                    gone.is_some(),
                    "{name} still there 120 s after its deletion"
                );
                note(format!(
                    "{test}: +{:.1}s {name} gone (its finalizer reverted first)",
                    t0.elapsed().as_secs_f64()
                ));
            }
            Crash::AgentOnFaultedNode => {
                let node = faulted_nodes.first().expect("a faulted node").clone();
                let agent = agent_on(&client, &node)
                    .await
                    .expect("an agent on the faulted node");
                note(format!(
                    "{test}: killing agent {} on {node}",
                    agent.name_any()
                ));
                kill(&client, &fd_ns, &agent.name_any()).await;
                let back = eventually_every(Duration::from_secs(90), Duration::from_secs(1), || async {
                    agent_on(&client, &node)
                        .await
                        .filter(|p| p.uid() != agent.uid())
                })
                .await;
                assert!(back.is_some(), "no new agent on {node} within 90 s");
                note(format!(
                    "{test}: +{:.1}s a new agent runs on {node}",
                    t0.elapsed().as_secs_f64()
                ));
            }
            Crash::KillSwitch => {
                let kubeconfig = std::env::var("KUBECONFIG").unwrap();
                let pulled = Instant::now();
                // The pause stop-all sets is lifted however the test ends.
                let resume = Resume(kubeconfig.clone());
                let out = tokio::task::spawn_blocking(move || {
                    std::process::Command::new(chaosctl())
                        .args(["--kubeconfig", &kubeconfig, "stop-all", "--timeout", "90"])
                        .args(["--firedrill-namespace", &firedrill_namespace()])
                        .output()
                        .unwrap()
                })
                .await
                .unwrap();
                let namespaces: Api<Namespace> = Api::all(client.clone());
                let fd = namespaces.get(&firedrill_namespace()).await.unwrap();
                assert!(
                    fd.annotations()
                        .get(PAUSE_KEY)
                        .is_some_and(|why| why.contains("stop-all")),
                    "stop-all did not pause firedrill: {:?}",
                    fd.annotations()
                );
                drop(resume);
                let fd = namespaces.get(&firedrill_namespace()).await.unwrap();
                assert!(!fd.annotations().contains_key(PAUSE_KEY), "resume did not lift it");
                note(format!(
                    "{test}: chaosctl stop-all exited {:?} after {:.1}s\n--- stderr\n{}--- stdout\n{}",
                    out.status.code(),
                    pulled.elapsed().as_secs_f64(),
                    String::from_utf8_lossy(&out.stderr),
                    String::from_utf8_lossy(&out.stdout)
                ));
                note(format!(
                    "BENCH {test}: stop-all confirmed every revert {} ms after it was run",
                    pulled.elapsed().as_millis()
                ));
                assert!(out.status.success(), "chaosctl stop-all did not exit 0");
            }
            Crash::None => {}
        }

        if !matches!(crash, Crash::Experiment) {
            let done = completed(&api, &name).await;
            report(test, t0, &done.status.clone().unwrap_or_default());
            let status = done.status.unwrap_or_default();
            assert!(
                !status.fault_state.may_be_active(),
                "Completed with the fault possibly active: {:?}",
                status.fault_state
            );
            if matches!(crash, Crash::KillSwitch) {
                assert_eq!(status.verdict, Some(Verdict::Aborted), "{:?}", status.reason);
            }
            if matches!(crash, Crash::DriverGone) {
                // The fault ended long before its duration: it cannot count as held.
                assert_eq!(status.verdict, Some(Verdict::Failed), "{:?}", status.reason);
                let reason = status.reason.clone().unwrap_or_default();
                assert!(reason.contains("did not hold"), "{reason}");
            }
        }
        // A blackout leaves its zone's pods restarting for a while.
        nothing_left(&client, test, &ns, &[uid], &nodes, &image, t0).await;
        if matches!(crash, Crash::OperatorLeader | Crash::None) {
            let (holder, _) = leader(&client).await.expect("an operator leader");
            note(format!("{test}: leader now {holder}"));
        }
    })
    .await;
}

#[tokio::test]
async fn killing_the_operator_leader_mid_fault_still_reverts() {
    crash_mid_fault(
        "killing_the_operator_leader_mid_fault_still_reverts",
        "network-partition.yaml",
        Crash::OperatorLeader,
    )
    .await;
}

#[tokio::test]
async fn with_no_operator_left_the_agents_revert_within_the_heartbeat_timeout() {
    crash_mid_fault(
        "with_no_operator_left_the_agents_revert_within_the_heartbeat_timeout",
        "network-partition.yaml",
        Crash::DriverGone,
    )
    .await;
}

#[tokio::test]
async fn deleting_the_experiment_mid_fault_reverts() {
    crash_mid_fault(
        "deleting_the_experiment_mid_fault_reverts",
        "network-partition.yaml",
        Crash::Experiment,
    )
    .await;
}

#[tokio::test]
async fn killing_the_agent_mid_fault_still_reverts() {
    crash_mid_fault(
        "killing_the_agent_mid_fault_still_reverts",
        "network-partition.yaml",
        Crash::AgentOnFaultedNode,
    )
    .await;
}

#[tokio::test]
async fn blacking_out_the_leaders_zone_is_finished_by_the_other_replica() {
    crash_mid_fault(
        "blacking_out_the_leaders_zone_is_finished_by_the_other_replica",
        "zone-blackout.yaml",
        Crash::None,
    )
    .await;
}

#[tokio::test]
async fn the_kill_switch_mid_fault_reverts_and_aborts() {
    crash_mid_fault(
        "the_kill_switch_mid_fault_reverts_and_aborts",
        "network-partition.yaml",
        Crash::KillSwitch,
    )
    .await;
}
