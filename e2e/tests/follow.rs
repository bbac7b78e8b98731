//! A held fault follows its pods through what their node does to them. Mid-partition (the
//! catalog's: zone-a cut off from zone-b and zone-c), one partitioned talk-server pod
//!
//! - gets a new sandbox: its pause process is killed, so the kubelet makes a new sandbox,
//!   with a new network namespace, for the same pod (same name and UID). The node's agent
//!   must put the cut into the new namespace within one re-check and report the lapse; the
//!   operator must carry it into `faultCheck`, and the verdict follow the rule (a lapse
//!   longer than the sample interval cannot pass);
//! - loses its node: zone-a's node is power-cycled (`e2e/cluster/reboot.sh`: every process
//!   of it killed at once, the agent too; its /run, network namespace and cgroups gone;
//!   then booted again). The restarted agent must put the cut into the pods' new sandboxes
//!   while the experiment holds, or the experiment must not pass.
//!
//! Both end with nothing left. They look at the nodes' processes through this machine's
//! `/proc` (the pause process to kill, the rules of a new namespace, timed to the tenth of
//! a second), so the nodes must run here, as e2e/cluster's and kind's do; the reboot needs
//! e2e/cluster's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    HostSandbox, agent_image, catalog_experiment, chains_in_netns, chains_in_pod, completed,
    cut_pod, eventually_every, firedrill_and_talk, holding, host_sandbox, lapses_of, nodes, note,
    nothing_left, report, talk_delivering, talk_namespace, talk_pods, talk_settled,
    verdict_follows_lapses, with_temp_ns,
};
use firedrill_core::api::{Experiment, Lapse, Phase, PodRef, Verdict};
use firedrill_testkit::skip;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use tokio::sync::Mutex;

/// One at a time: both disturb zone-a's talk pods.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// How often the agent re-checks a held fault (agent/src/planner.rs `RECHECK_EVERY`).
const RECHECK: Duration = Duration::from_secs(2);
/// On top of one re-check: a loaded 2-core machine delays the agent's loop and our look.
const SLACK: Duration = Duration::from_secs(2);
/// The catalog partition's isolated side.
const LEFT_ZONE: &str = "zone-a";

/// Skips (fails under FIREDRILL_E2E_REQUIRE) unless talk's pods' sandboxes are visible in
/// this machine's `/proc`.
async fn nodes_run_here(client: &Client, test: &str) -> bool {
    let pods = talk_pods(client).await;
    let seen = pods
        .iter()
        .filter_map(|p| p.metadata.uid.as_deref())
        .any(|uid| host_sandbox(uid).is_some());
    if !seen {
        skip(
            test,
            "no talk pod's pause process in this machine's /proc: the nodes do not run here (run as root beside e2e/cluster or kind)",
        );
    }
    seen
}

/// The partitioned talk-server pod of zone-a, its sandbox, and the cut in it now.
async fn partitioned_pod(client: &Client, ns: &str) -> (PodRef, HostSandbox) {
    let target = cut_pod(client, ns, LEFT_ZONE, "talk-server").await;
    let sandbox = host_sandbox(&target.uid)
        .unwrap_or_else(|| panic!("no pause process of {} here", target.name));
    let chains = chains_in_netns(sandbox.pid).await.unwrap();
    assert!(!chains.is_empty(), "no firedrill chain in {}", target.name);
    (target, sandbox)
}

/// Waits up to `timeout` for `target` to run in a sandbox other than `old` and returns it.
async fn new_sandbox(target: &PodRef, old: HostSandbox, timeout: Duration) -> HostSandbox {
    eventually_every(timeout, Duration::from_millis(100), || async {
        host_sandbox(&target.uid).filter(|s| s.netns != old.netns)
    })
    .await
    .unwrap_or_else(|| panic!("{} got no new sandbox in {timeout:?}", target.name))
}

/// Waits up to `timeout` for firedrill's chains in `sandbox`'s namespace; how long it took.
async fn cut_in(sandbox: HostSandbox, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    eventually_every(timeout, Duration::from_millis(100), || async {
        let chains = chains_in_netns(sandbox.pid).await.ok()?;
        (!chains.is_empty()).then(|| start.elapsed())
    })
    .await
}

/// The healed lapse an agent reported for a recreated sandbox: `target`'s, or (`None`) any
/// pod's (a rebooted node's lapse names every pod of it, and the status keeps only the
/// first 500 characters of what).
async fn sandbox_lapse(client: &Client, ns: &str, target: Option<&PodRef>) -> Option<Lapse> {
    eventually_every(Duration::from_secs(30), Duration::from_secs(1), || async {
        lapses_of(client, ns).await.into_iter().find(|l| {
            l.healed_at.is_some()
                && l.what.contains("sandbox was recreated")
                && target.is_none_or(|t| l.what.contains(&t.name))
        })
    })
    .await
}

fn seconds(from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}

/// The same pod (name and UID) runs again, all its containers started (ready or not: a
/// talk-server cut off with the minority may not be): the ephemeral container of
/// `chains_in_pod` then lands in its sandbox of now.
async fn running_again(client: &Client, target: &PodRef) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &target.namespace);
    eventually_every(Duration::from_secs(180), Duration::from_secs(1), || async {
        let pod = pods.get(&target.name).await.ok()?;
        let started = pod
            .status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .iter()
            .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
        (started && pod.metadata.uid.as_deref() == Some(target.uid.as_str())).then_some(pod)
    })
    .await
    .unwrap_or_else(|| panic!("{} is not running again in 180 s", target.name))
}

#[tokio::test]
async fn a_recreated_sandbox_gets_the_cut_within_one_recheck() {
    let test = "a_recreated_sandbox_gets_the_cut_within_one_recheck";
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(client) = firedrill_and_talk(test).await else {
        return;
    };
    if !nodes_run_here(&client, test).await {
        return;
    }
    talk_delivering(&client).await;
    let image = agent_image(&client).await;
    with_temp_ns(&client, "sandbox", move |client, ns| async move {
        let nodes = nodes(&client).await;
        let exp = catalog_experiment("network-partition.yaml", &ns, &talk_namespace());
        let interval_ms = exp.spec.hypothesis.interval.to_chrono().num_milliseconds() as f64;
        let api: Api<Experiment> = Api::namespaced(client.clone(), &ns);
        let t0 = Instant::now();
        let created = api.create(&PostParams::default(), &exp).await.unwrap();
        let (uid, name) = (created.uid().unwrap(), created.name_any());
        holding(&api, &name).await;
        let (target, old) = partitioned_pod(&client, &ns).await;

        // The sandbox dies; the kubelet makes the pod a new one.
        let killed = tokio::process::Command::new("kill")
            .args(["-KILL", &old.pid.to_string()])
            .status()
            .await
            .unwrap();
        assert!(killed.success(), "kill {} failed", old.pid);
        let t_kill = Instant::now();
        note(format!(
            "{test}: +{:.1}s killed the pause process {} of {}/{} (netns {})",
            t0.elapsed().as_secs_f64(),
            old.pid,
            target.namespace,
            target.name,
            old.netns
        ));
        let new = new_sandbox(&target, old, Duration::from_secs(120)).await;
        note(format!(
            "{test}: new sandbox {} (netns {}) {:.1}s after the kill",
            new.pid,
            new.netns,
            t_kill.elapsed().as_secs_f64()
        ));

        // The agent's cut in the new namespace, within one re-check of it being there.
        let took = cut_in(new, Duration::from_secs(30)).await;
        note(format!(
            "{test}: firedrill's chains in the new netns after {took:?} (one re-check is {RECHECK:?})"
        ));
        let took = took.expect("the agent did not put the cut into the new sandbox in 30 s");
        assert!(
            took <= RECHECK + SLACK,
            "the cut reached the new sandbox {took:?} after it appeared, more than one re-check ({RECHECK:?}) and {SLACK:?}"
        );
        // Seen through the pod itself: the same pod, its sandbox of now, cut.
        let pod = running_again(&client, &target).await;
        assert!(!chains_in_pod(&client, &pod, &image).await.is_empty());

        // Reported by the agent: from its last whole check to the one after the put-back.
        let lapse = sandbox_lapse(&client, &ns, Some(&target))
            .await
            .expect("no healed lapse for the recreated sandbox in any Injection's status");
        let lasted = seconds(lapse.since, lapse.healed_at.unwrap());
        note(format!(
            "{test}: lapse reported: since {}, seen {}, healed {:?} ({lasted:.2}s): {}",
            lapse.since, lapse.seen_at, lapse.healed_at, lapse.what
        ));
        assert!(lapse.what.contains("re-applied there"), "{lapse:?}");
        assert!(
            lasted <= (RECHECK + SLACK).as_secs_f64(),
            "the lapse lasted {lasted:.2}s, more than one re-check and {SLACK:?}"
        );

        let done = completed(&api, &name).await;
        let status = done.status.unwrap_or_default();
        report(test, t0, &status);
        nothing_left(&client, test, &ns, &[uid], &nodes, &image, t0).await;
        let check = status.fault_check.clone().expect("a faultCheck in the status");
        note(format!(
            "{test}: faultCheck {check:?} (sample interval {interval_ms} ms), verdict {:?}, reason {:?}",
            status.verdict, status.reason
        ));
        assert!(check.lapses >= 1, "{check:?}");
        assert!(check.longest_lapse_seconds >= lasted - 0.01, "{check:?}");
        verdict_follows_lapses(&status, interval_ms);
        talk_settled(&client).await;
    })
    .await;
}

/// e2e/cluster/reboot.sh, when this machine runs e2e/cluster's nodes.
fn reboot_script() -> Option<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/reboot.sh");
    Path::new("/run/firedrill-cluster/ns")
        .is_dir()
        .then_some(script)
}

#[tokio::test]
async fn a_rebooted_node_gets_the_cut_back_or_the_experiment_fails() {
    let test = "a_rebooted_node_gets_the_cut_back_or_the_experiment_fails";
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(client) = firedrill_and_talk(test).await else {
        return;
    };
    let Some(reboot) = reboot_script() else {
        skip(
            test,
            "not e2e/cluster's source-built cluster (no /run/firedrill-cluster/ns): its reboot.sh power-cycles a node",
        );
        return;
    };
    if !nodes_run_here(&client, test).await {
        return;
    }
    talk_delivering(&client).await;
    let image = agent_image(&client).await;
    with_temp_ns(&client, "reboot", move |client, ns| async move {
        let nodes = nodes(&client).await;
        let mut exp = catalog_experiment("network-partition.yaml", &ns, &talk_namespace());
        // Long enough for the node to boot, its pods to start and its agent to put the cut
        // back while the partition holds.
        exp.spec.duration = "90s".parse().unwrap();
        let interval_ms = exp.spec.hypothesis.interval.to_chrono().num_milliseconds() as f64;
        let api: Api<Experiment> = Api::namespaced(client.clone(), &ns);
        let t0 = Instant::now();
        let created = api.create(&PostParams::default(), &exp).await.unwrap();
        let (uid, name) = (created.uid().unwrap(), created.name_any());
        holding(&api, &name).await;
        let (target, old) = partitioned_pod(&client, &ns).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &target.namespace);
        let node = pods
            .get(&target.name)
            .await
            .unwrap()
            .spec
            .and_then(|s| s.node_name)
            .expect("the pod is on a node");

        note(format!(
            "{test}: +{:.1}s power-cycling {node} (5 s off)",
            t0.elapsed().as_secs_f64()
        ));
        let off_at = chrono::Utc::now();
        let rebooting = tokio::process::Command::new(&reboot)
            .args(["--down", "5", &node])
            .output();
        // Watched while the node boots (reboot.sh returns once the whole cluster is up
        // again): the pod back in a new sandbox, then the rebooted node's new agent's cut in
        // it, which must come while the experiment still holds.
        let watching = async {
            let new = new_sandbox(&target, old, Duration::from_secs(180)).await;
            note(format!(
                "{test}: +{:.1}s {} in a new sandbox (netns {}) {:.1}s after the power-off",
                t0.elapsed().as_secs_f64(),
                target.name,
                new.netns,
                seconds(off_at, chrono::Utc::now())
            ));
            cut_in(new, Duration::from_secs(60)).await
        };
        let (out, took) = tokio::join!(rebooting, watching);
        let out = out.unwrap();
        note(format!(
            "{test}: reboot.sh: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
        assert!(out.status.success(), "reboot.sh {node} failed");
        let phase = api.get(&name).await.unwrap().status.map(|s| s.phase);
        note(format!(
            "{test}: +{:.1}s firedrill's chains in the new sandbox {took:?} after it appeared (experiment {phase:?})",
            t0.elapsed().as_secs_f64()
        ));
        let lapse = if took.is_some() {
            let pod = running_again(&client, &target).await;
            assert!(!chains_in_pod(&client, &pod, &image).await.is_empty());
            let lapse = sandbox_lapse(&client, &ns, None)
                .await
                .expect("no healed lapse for the rebooted node's pods in any Injection's status");
            note(format!(
                "{test}: lapse reported: since {}, seen {} and healed {:?} ({:.1}s after the power-off): {}",
                lapse.since,
                lapse.seen_at,
                lapse.healed_at,
                seconds(off_at, lapse.healed_at.unwrap()),
                lapse.what
            ));
            Some(lapse)
        } else {
            // Not put back: only an experiment that no longer held may leave it so.
            assert_ne!(phase, Some(Phase::Holding), "the cut was not put back in 60 s");
            None
        };

        let done = completed(&api, &name).await;
        let status = done.status.unwrap_or_default();
        report(test, t0, &status);
        nothing_left(&client, test, &ns, &[uid], &nodes, &image, t0).await;
        note(format!(
            "{test}: faultCheck {:?} (sample interval {interval_ms} ms), verdict {:?}, reason {:?}",
            status.fault_check, status.verdict, status.reason
        ));
        match lapse {
            Some(_) => {
                let check = status.fault_check.clone().expect("a faultCheck in the status");
                assert!(check.lapses >= 1, "{check:?}");
            }
            None => assert_ne!(status.verdict, Some(Verdict::Passed), "{:?}", status.reason),
        }
        verdict_follows_lapses(&status, interval_ms);
        talk_settled(&client).await;
    })
    .await;
}
