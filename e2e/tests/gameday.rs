//! The four missions of `experiments/`, as the quarterly DR game day, on the cluster, as a
//! user runs it: `chaosctl game-day -f experiments/gameday-quarterly-dr.yaml --kubeconfig
//! ...` applies the GameDay (its four referenced experiments inlined), the deployed
//! operator runs the steps one after another against talk, chaosctl follows it live and
//! exits 0 when all four passed, printing the table and writing the report (kept under
//! `target/e2e-reports/` for the record).
//!
//! Beside chaosctl the test watches each step from outside firedrill and checks that its
//! fault was really there: nft chains in a zone-a talk pod's sandbox while the partition
//! holds, containers killed by the blackout and by the ops-tool outage, nats-0 and its
//! claim replaced by the disk loss. Every step must pass with no acknowledged message
//! lost, and afterwards no Injection and no firedrill chain may be left on any node or
//! talk pod.
//!
//! The catalog addresses talk in namespace `talk`, so this test needs talk there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    E2E_LABEL, agent_image, chains_in_pod, chaosctl, eventually_every, firedrill_and_talk, nodes,
    note, nothing_left, report, running, talk_delivering, talk_namespace, talk_pods, with_temp_ns,
    zone_of,
};
use firedrill_core::api::{Experiment, GameDay, Phase, Verdict};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

const GAME_DAY: &str = "quarterly-dr";

/// What shows, from outside firedrill, that a step's fault took effect.
#[derive(Clone, Copy, Debug)]
enum Evidence {
    /// While it holds, a talk pod in this zone has firedrill chains in its sandbox.
    ChainsInZonePod(&'static str),
    /// Over the step, the containers of talk's pods in this zone were killed (restarts).
    RestartsInZone(&'static str),
    /// Over the step, this pod and its claim `data-<pod>` were replaced (new uids).
    PodAndClaimReplaced(&'static str),
    /// Over the step, the containers of the pods with this label were killed.
    RestartsOf(&'static str, &'static str),
}

/// The game day's steps, in order, and what each must leave behind.
const STEPS: [(&str, Evidence); 4] = [
    ("zone-blackout", Evidence::RestartsInZone("zone-a")),
    ("network-partition", Evidence::ChainsInZonePod("zone-a")),
    ("disk-loss", Evidence::PodAndClaimReplaced("nats-0")),
    (
        "ops-tool-outage",
        Evidence::RestartsOf("firedrill.dev/ops-site", "zone-a"),
    ),
];

/// The Experiment the GameDay makes for `step`.
fn child(step: &str) -> String {
    format!("{GAME_DAY}-{step}")
}

/// Container restarts per pod name (all containers, ephemeral ones aside).
fn restarts<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> BTreeMap<String, i32> {
    pods.into_iter()
        .map(|p| {
            let n = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum());
            (p.name_any(), n)
        })
        .collect()
}

/// The uids of pod `name` and of its claim `data-<name>` in talk's namespace.
async fn pod_and_claim(client: &Client, name: &str) -> (Option<String>, Option<String>) {
    let ns = talk_namespace();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let pod = pods.get_opt(name).await.unwrap().and_then(|p| p.uid());
    let claim = claims
        .get_opt(&format!("data-{name}"))
        .await
        .unwrap()
        .and_then(|c| c.uid());
    (pod, claim)
}

/// What the watcher knows of one step.
struct StepWatch {
    evidence: Evidence,
    pods_before: Vec<Pod>,
    replaced_before: Option<(Option<String>, Option<String>)>,
    /// Chains seen in a pod of the zone while the fault held (for `ChainsInZonePod`).
    chains: Option<(String, Vec<String>)>,
    seen_holding: bool,
}

impl StepWatch {
    /// The state of talk as the step's Experiment appears, before its fault.
    async fn start(client: &Client, evidence: Evidence) -> Self {
        let replaced_before = match evidence {
            Evidence::PodAndClaimReplaced(pod) => Some(pod_and_claim(client, pod).await),
            _ => None,
        };
        Self {
            evidence,
            pods_before: talk_pods(client).await,
            replaced_before,
            chains: None,
            seen_holding: false,
        }
    }

    /// Whether the note saw the pod whose replacement is the evidence (true when the
    /// evidence is another kind).
    fn saw_pod(&self) -> bool {
        self.replaced_before
            .as_ref()
            .is_none_or(|(pod, _)| pod.is_some())
    }

    /// While the fault holds: look for it where the evidence says.
    async fn holding(&mut self, client: &Client, nodes: &[Node], image: &str) {
        self.seen_holding = true;
        if let Evidence::ChainsInZonePod(zone) = self.evidence {
            let pods = talk_pods(client).await;
            if let Some(pod) = pods
                .iter()
                .find(|p| running(p) && zone_of(nodes, p).as_deref() == Some(zone))
            {
                let chains = chains_in_pod(client, pod, image).await;
                self.chains = Some((pod.name_any(), chains));
            }
        }
    }

    /// After the step: whether its fault was real, in words either way.
    async fn verify(&self, client: &Client, nodes: &[Node]) -> Result<String, String> {
        if !self.seen_holding {
            return Err("the fault was never seen holding".into());
        }
        match self.evidence {
            Evidence::ChainsInZonePod(zone) => match &self.chains {
                Some((pod, chains)) if !chains.is_empty() => {
                    Ok(format!("while holding, {pod} had chains {chains:?}"))
                }
                Some((pod, _)) => Err(format!("no firedrill chain in {pod} while holding")),
                None => Err(format!("no running talk pod in {zone} while holding")),
            },
            Evidence::RestartsInZone(zone) => {
                let in_zone = |p: &Pod| zone_of(nodes, p).as_deref() == Some(zone);
                self.killed(client, zone, in_zone).await
            }
            Evidence::RestartsOf(key, value) => {
                let selected = |p: &Pod| p.labels().get(key).map(String::as_str) == Some(value);
                self.killed(client, &format!("{key}={value}"), selected)
                    .await
            }
            Evidence::PodAndClaimReplaced(pod) => {
                let before = self.replaced_before.clone().unwrap_or_default();
                let after = pod_and_claim(client, pod).await;
                let seen = format!("{pod} and data-{pod} uids: before {before:?}, after {after:?}");
                let replaced =
                    |b: &Option<String>, a: &Option<String>| b.is_some() && a.is_some() && a != b;
                if replaced(&before.0, &after.0) && replaced(&before.1, &after.1) {
                    Ok(seen)
                } else {
                    Err(format!("not both replaced: {seen}"))
                }
            }
        }
    }

    /// Some container of the pods `which` selects restarted during the step (the kubelet
    /// reports a restart a few seconds after it, hence the wait).
    async fn killed(
        &self,
        client: &Client,
        what: &str,
        which: impl Fn(&Pod) -> bool,
    ) -> Result<String, String> {
        let before = restarts(self.pods_before.iter().filter(|p| which(p)));
        if before.is_empty() {
            return Err(format!("no talk pod of {what} before the fault"));
        }
        let after = eventually_every(Duration::from_secs(30), Duration::from_secs(2), || async {
            let after = restarts(talk_pods(client).await.iter().filter(|p| which(p)));
            after
                .iter()
                .any(|(p, n)| before.get(p).is_none_or(|b| n > b))
                .then_some(after)
        })
        .await;
        match after {
            Some(after) => Ok(format!(
                "restarts of {what}: before {before:?}, after {after:?}"
            )),
            None => Err(format!(
                "no container of {what} was killed: before {before:?}"
            )),
        }
    }
}

/// Follows the steps' Experiments in `ns` until each has completed and been verified, or
/// `stop` flips; returns each step's verification.
async fn watch_steps(
    client: Client,
    ns: String,
    nodes: Vec<Node>,
    image: String,
    mut stop: watch::Receiver<bool>,
) -> BTreeMap<&'static str, Result<String, String>> {
    let api: Api<Experiment> = Api::namespaced(client.clone(), &ns);
    let mut watching: BTreeMap<&'static str, StepWatch> = BTreeMap::new();
    // The last state of talk noted while a step was still to come: the baseline when the
    // loop (slowed by another step's evidence, e.g. an ephemeral nft container on a loaded
    // node) first sees the step only after its fault began.
    let mut waiting: BTreeMap<&'static str, StepWatch> = BTreeMap::new();
    let mut verified = BTreeMap::new();
    while verified.len() < STEPS.len() && !*stop.borrow() {
        for (step, evidence) in STEPS {
            if verified.contains_key(step) {
                continue;
            }
            let phase = match api.get_opt(&child(step)).await {
                Ok(Some(e)) => e.status.map(|s| s.phase).unwrap_or_default(),
                Ok(None) => Phase::Pending,
                Err(_) => continue,
            };
            if !watching.contains_key(step) {
                // A step's Experiment may wait Pending for its turn: talk is noted as the
                // step begins, so an earlier step's restarts do not count for it.
                if phase == Phase::Pending {
                    let fresh = StepWatch::start(&client, evidence).await;
                    // A read that found no pod to replace (gone for a moment after an earlier
                    // step, or the read failed) does not overwrite a note that saw it.
                    let keep = waiting
                        .get(step)
                        .is_some_and(|noted| noted.saw_pod() && !fresh.saw_pod());
                    if !keep {
                        waiting.insert(step, fresh);
                    }
                    continue;
                }
                let watch = match (phase, waiting.remove(step)) {
                    (Phase::SteadyStateBefore, _) | (_, None) => {
                        note(format!("{step}: {phase:?}; talk's pods noted"));
                        StepWatch::start(&client, evidence).await
                    }
                    (_, Some(noted)) => {
                        note(format!(
                            "{step}: first seen {phase:?}; talk as noted while it was to come"
                        ));
                        noted
                    }
                };
                watching.insert(step, watch);
            }
            let Some(w) = watching.get_mut(step) else {
                continue;
            };
            if phase == Phase::Holding && !w.seen_holding {
                w.holding(&client, &nodes, &image).await;
            }
            if phase == Phase::Completed {
                let result = w.verify(&client, &nodes).await;
                note(format!("{step}: evidence {result:?}"));
                verified.insert(step, result);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => {}
        }
    }
    verified
}

#[tokio::test]
async fn the_four_missions_pass_as_the_quarterly_game_day() {
    let test = "the_four_missions_pass_as_the_quarterly_game_day";
    let Some(client) = firedrill_and_talk(test).await else {
        return;
    };
    assert_eq!(
        talk_namespace(),
        "talk",
        "the catalog's game day addresses talk in namespace talk"
    );
    let sli = talk_delivering(&client).await;
    let image = agent_image(&client).await;
    let nodes = nodes(&client).await;
    note(format!(
        "{test}: {} nodes; talk delivering: {sli}",
        nodes.len()
    ));

    with_temp_ns(&client, "gameday", move |client, ns| async move {
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let plan = workspace.join("experiments/gameday-quarterly-dr.yaml");
        let reports = workspace.join("target/e2e-reports");
        std::fs::create_dir_all(&reports).unwrap();
        let kubeconfig = std::env::var("KUBECONFIG").unwrap();
        let (stop, stopped) = watch::channel(false);
        let watcher = tokio::spawn(watch_steps(
            client.clone(),
            ns.clone(),
            nodes.clone(),
            image.clone(),
            stopped,
        ));
        let t0 = Instant::now();
        // chaosctl is synchronous and long: run it off the runtime.
        let output = tokio::task::spawn_blocking({
            let ns = ns.clone();
            let reports = reports.clone();
            move || {
                Command::new(chaosctl())
                    .args(["--kubeconfig", &kubeconfig, "game-day", "-f"])
                    .arg(&plan)
                    .args(["-n", &ns, "--name", GAME_DAY])
                    .args(["--label", &format!("{E2E_LABEL}=gameday")])
                    .arg("--report-dir")
                    .arg(&reports)
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        note(format!(
            "{test}: chaosctl game-day exited {:?} after {:.0}s\n--- stderr\n{stderr}\n--- stdout\n{stdout}",
            output.status.code(),
            t0.elapsed().as_secs_f64()
        ));
        // The last step's evidence may still be coming in (restarts, up to 30 s).
        let last_word = tokio::time::sleep(Duration::from_secs(60));
        tokio::pin!(last_word);
        let mut watcher = watcher;
        let evidence = tokio::select! {
            verified = &mut watcher => verified.unwrap(),
            _ = &mut last_word => {
                let _ = stop.send(true);
                watcher.await.unwrap()
            }
        };

        // What the cluster says, whatever chaosctl said.
        let game_days: Api<GameDay> = Api::namespaced(client.clone(), &ns);
        let g = game_days.get(GAME_DAY).await.unwrap();
        let experiments: Api<Experiment> = Api::namespaced(client.clone(), &ns);
        let children = experiments.list(&ListParams::default()).await.unwrap().items;
        for e in &children {
            report(&format!("{test}/{}", e.name_any()), t0, &e.status.clone().unwrap_or_default());
        }
        let uids: Vec<String> = children.iter().filter_map(|e| e.uid()).collect();
        nothing_left(&client, test, &ns, &uids, &nodes, &image, t0).await;

        // The invariants above hold whatever the verdicts; now the fault evidence and the
        // verdicts themselves.
        assert_eq!(children.len(), STEPS.len(), "one Experiment per step");
        for (step, _) in STEPS {
            match evidence.get(step) {
                Some(Ok(_)) => {}
                Some(Err(why)) => panic!("{step}: the fault was not real: {why}"),
                None => panic!("{step}: never seen completed"),
            }
        }
        for e in &children {
            let status = e.status.clone().unwrap_or_default();
            assert_eq!(
                status.verdict,
                Some(Verdict::Passed),
                "{}: verdict (reason: {:?})",
                e.name_any(),
                status.reason
            );
            assert_eq!(
                status.messages_lost.unwrap_or(0),
                0,
                "{}: acknowledged messages lost",
                e.name_any()
            );
        }
        let status = g.status.unwrap_or_default();
        assert_eq!(
            status.verdict,
            Some(Verdict::Passed),
            "the GameDay's verdict ({:?})",
            status.message
        );
        assert!(output.status.success(), "chaosctl game-day did not exit 0");
        let written = std::fs::read_dir(&reports)
            .unwrap()
            .filter_map(Result::ok)
            .count();
        assert!(written > 0, "no report in {}", reports.display());
        note(format!("{test}: report in {}", reports.display()));
    })
    .await;
}
