//! Cluster tier of chaosctl: `get`, `describe`, `abort`, `stop-all` and `game-day` against a
//! real API server (KUBECONFIG, else /var/lib/firedrill-cluster/kubeconfig). With no cluster
//! answering, each test prints `SKIPPED <test>: <reason>` and passes.
//!
//! Every object is labelled `firedrill.dev/test=chaosctl` and lives in a temporary namespace
//! that is deleted afterwards. The namespace is not opted in to chaos and the experiments are
//! dry runs, so even a deployed operator would inject nothing. Nothing here runs the real
//! operator: where a test needs one, it writes the status an operator would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use firedrill_core::api::{Experiment, GameDay, Injection, PAUSE_KEY};
use firedrill_testkit::objects::labelled;
use firedrill_testkit::{Cluster, Kubeconfig, TEST_LABEL, TestNamespace, skip, unique_name};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

fn chaosctl() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chaosctl"))
}

/// A cluster that answers and has firedrill's CRDs, as its kubeconfig path and a client;
/// `None` (reason printed) otherwise.
async fn cluster(test: &str) -> Option<(PathBuf, Client)> {
    let Cluster { client, kubeconfig } =
        firedrill_testkit::cluster(test, Kubeconfig::EnvOrE2e).await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    if crds
        .get_opt("experiments.firedrill.dev")
        .await
        .ok()
        .flatten()
        .is_none()
    {
        skip(test, "the firedrill CRDs are not installed in this cluster");
        return None;
    }
    Some((kubeconfig, client))
}

/// A namespace for one test (not opted in to chaos), deleted by [`delete`].
async fn test_ns(client: &Client, prefix: &str) -> TestNamespace {
    let name = unique_name(&format!("chaosctl-{prefix}"));
    TestNamespace::create(client, &name, &[(TEST_LABEL, "chaosctl")])
        .await
        .unwrap()
}

/// Deletes a test's namespace, first freeing what it left with finalizers.
async fn delete(ns: TestNamespace) {
    ns.release::<Injection>().await.unwrap();
    ns.release::<Experiment>().await.unwrap();
    let _ = ns.delete().await;
}

fn experiment_spec(ns: &str) -> Value {
    json!({
        "target": {"namespaces": [ns]},
        "fault": {"zoneBlackout": {"zone": "zone-a"}},
        "duration": "30s",
        "dryRun": true,
        "hypothesis": {"probes": [{
            "name": "up",
            "http": {"url": "http://127.0.0.1:1/"},
        }]},
    })
}

fn experiment(ns: &str, name: &str) -> Experiment {
    labelled(name, ns, "chaosctl", experiment_spec(ns)).unwrap()
}

async fn create_experiment(client: &Client, ns: &str, name: &str) -> Experiment {
    Api::<Experiment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &experiment(ns, name))
        .await
        .unwrap()
}

/// An Experiment of game day `owner`, as its controller would create it.
fn step_of(owner: &GameDay, name: &str) -> Experiment {
    let ns = owner.namespace().unwrap();
    let mut e = experiment(&ns, name);
    e.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "firedrill.dev/v1alpha1".into(),
        kind: "GameDay".into(),
        name: owner.name_any(),
        uid: owner.uid().unwrap(),
        ..OwnerReference::default()
    }]);
    e
}

fn run(kubeconfig: &Path, args: &[&str]) -> Output {
    let output = Command::new(chaosctl())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    eprintln!(
        "$ chaosctl {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn get_and_describe_an_experiment() {
    let test = "get_and_describe_an_experiment";
    let Some((kc, client)) = cluster(test).await else {
        return;
    };
    let ns = test_ns(&client, "get").await;
    create_experiment(&client, &ns.name, "zb").await;
    // What the operator would write while the fault holds.
    let status = json!({"status": {
        "phase": "Holding",
        "fault": "zoneBlackout",
        "faultState": "Injected",
        "timeline": [{"at": "2026-01-01T09:00:00Z", "phase": "Injecting", "message": "blackout of zone-a"}],
    }});
    Api::<Experiment>::namespaced(client.clone(), &ns.name)
        .patch_status("zb", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();

    let out = run(&kc, &["get", "experiments", "-n", &ns.name]);
    assert!(out.status.success());
    let text = stdout(&out);
    let row = text
        .lines()
        .find(|l| l.starts_with("zb "))
        .expect("a row for zb");
    for cell in ["Holding", "zoneBlackout", "Injected"] {
        assert!(row.contains(cell), "{cell} missing in {row:?}");
    }

    let out = run(
        &kc,
        &["get", "exp", "-A", "-l", &format!("{TEST_LABEL}=chaosctl")],
    );
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.starts_with("NAMESPACE"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&ns.name) && l.contains(" zb ")),
        "{text}"
    );

    let out = run(
        &kc,
        &["get", "experiment", "zb", "-n", &ns.name, "-o", "json"],
    );
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("-o json parses");
    assert_eq!(v["kind"], "Experiment");
    assert_eq!(v["metadata"]["name"], "zb");
    assert_eq!(v["status"]["phase"], "Holding");
    let out = run(&kc, &["get", "experiments", "-n", &ns.name, "-o", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("a list parses");
    assert_eq!(v["kind"], "List");
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    let out = run(
        &kc,
        &["get", "experiment", "zb", "-n", &ns.name, "-o", "yaml"],
    );
    assert!(stdout(&out).contains("kind: Experiment"));

    let out = run(&kc, &["describe", "experiment", "zb", "-n", &ns.name]);
    assert!(out.status.success());
    let text = stdout(&out);
    for want in [
        "Name:         zb",
        &format!("Namespace:    {}", ns.name),
        "Phase:        Holding (fault Injected)",
        "Dry run:      yes",
        "09:00:00 Injecting: blackout of zone-a",
    ] {
        assert!(text.contains(want), "{want:?} missing in:\n{text}");
    }

    // A name that does not exist: plain words, a category and a hint, exit 2.
    let out = run(&kc, &["describe", "experiment", "nope", "-n", &ns.name]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[not_found]") && err.contains("chaosctl get experiments -A"),
        "{err}"
    );
    let out = run(&kc, &["get", "gamedays", "-n", &ns.name]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no gamedays found"));
    delete(ns).await;
}

#[tokio::test]
async fn abort_sets_the_annotation_the_operator_honours() {
    let test = "abort_sets_the_annotation_the_operator_honours";
    let Some((kc, client)) = cluster(test).await else {
        return;
    };
    let ns = test_ns(&client, "abort").await;
    create_experiment(&client, &ns.name, "zb").await;
    let out = run(
        &kc,
        &["abort", "zb", "-n", &ns.name, "--reason", "test says stop"],
    );
    assert!(out.status.success());
    let e = Api::<Experiment>::namespaced(client.clone(), &ns.name)
        .get("zb")
        .await
        .unwrap();
    let reason = e
        .annotations()
        .get("firedrill.dev/abort")
        .expect("annotation set");
    assert!(reason.starts_with("test says stop"), "{reason}");
    let out = run(&kc, &["get", "experiments", "-n", &ns.name]);
    assert!(stdout(&out).contains("abort requested"));

    // A game day: its running experiments are aborted, and it is annotated too.
    let spec = json!({"experiments": [{"name": "step", "spec": experiment_spec(&ns.name)}]});
    let g: GameDay = labelled("gd", &ns.name, "chaosctl", spec).unwrap();
    let g = Api::<GameDay>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &g)
        .await
        .unwrap();
    let child = step_of(&g, "gd-step");
    let experiments: Api<Experiment> = Api::namespaced(client.clone(), &ns.name);
    experiments
        .create(&PostParams::default(), &child)
        .await
        .unwrap();
    let out = run(&kc, &["abort", "gd", "-n", &ns.name]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("1 running experiment(s) aborted"));
    let child = experiments.get("gd-step").await.unwrap();
    assert!(child.annotations().contains_key("firedrill.dev/abort"));
    let g = Api::<GameDay>::namespaced(client.clone(), &ns.name)
        .get("gd")
        .await
        .unwrap();
    assert!(g.annotations().contains_key("firedrill.dev/abort"));

    let out = run(&kc, &["abort", "missing", "-n", &ns.name]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[not_found]"));
    delete(ns).await;
}

fn injection(ns: &str, name: &str, experiment: &str, finalizer: bool) -> Injection {
    let mut metadata = json!({"name": name, "namespace": ns, "labels": {TEST_LABEL: "chaosctl"}});
    if finalizer {
        // Stands for an agent that never confirms the revert.
        metadata["finalizers"] = json!(["firedrill.dev/test-agent"]);
    }
    serde_json::from_value(json!({
        "apiVersion": "firedrill.dev/v1alpha1",
        "kind": "Injection",
        "metadata": metadata,
        "spec": {
            // No such node: a real agent never picks this up.
            "nodeName": "chaosctl-test-no-such-node",
            "experiment": format!("{ns}/{experiment}"),
            "action": {"network": {"all": true}},
            "expiresAt": (Utc::now() + chrono::Duration::minutes(5)).to_rfc3339(),
        },
    }))
    .unwrap()
}

/// Nothing running anywhere (no Injection, no unfinished Experiment): only then may a test
/// pull the cluster-wide kill switch without disturbing other tests.
async fn cluster_idle(client: &Client) -> bool {
    let injections = Api::<Injection>::all(client.clone())
        .list(&ListParams::default())
        .await;
    let experiments = Api::<Experiment>::all(client.clone())
        .list(&ListParams::default())
        .await;
    match (injections, experiments) {
        (Ok(i), Ok(e)) => {
            i.items.is_empty()
                && e.items.iter().all(|e| {
                    e.status
                        .as_ref()
                        .is_some_and(|s| s.phase == firedrill_core::api::Phase::Completed)
                })
        }
        _ => false,
    }
}

#[tokio::test]
async fn stop_all_reverts_and_waits_for_the_agents() {
    let test = "stop_all_reverts_and_waits_for_the_agents";
    let Some((kc, client)) = cluster(test).await else {
        return;
    };
    // With no active fault it returns 0 promptly: cluster-wide when the cluster is idle
    // (pausing the namespace that plays firedrill's here, never a real firedrill's), else
    // limited to this test's objects.
    let idle = cluster_idle(&client).await;
    let home = test_ns(&client, "home").await;
    let started = Instant::now();
    let out = if idle {
        let out = run(
            &kc,
            &[
                "stop-all",
                "--timeout",
                "20",
                "--firedrill-namespace",
                &home.name,
            ],
        );
        let ns = Api::<Namespace>::all(client.clone())
            .get(&home.name)
            .await
            .unwrap();
        assert_eq!(ns.labels().get(PAUSE_KEY).map(String::as_str), Some("true"));
        let why = ns.annotations().get(PAUSE_KEY).cloned().unwrap_or_default();
        assert!(why.contains("stop-all"), "{why}");
        let got = run(
            &kc,
            &[
                "get",
                "exp",
                "-n",
                &home.name,
                "--firedrill-namespace",
                &home.name,
            ],
        );
        assert!(
            String::from_utf8_lossy(&got.stderr).contains("PAUSED"),
            "get shows the pause: {}",
            String::from_utf8_lossy(&got.stderr)
        );
        let resumed = run(&kc, &["resume", "--firedrill-namespace", &home.name]);
        assert_eq!(resumed.status.code(), Some(0));
        assert!(stdout(&resumed).contains("resumed"), "{}", stdout(&resumed));
        let ns = Api::<Namespace>::all(client.clone())
            .get(&home.name)
            .await
            .unwrap();
        assert!(!ns.labels().contains_key(PAUSE_KEY) && !ns.annotations().contains_key(PAUSE_KEY));
        // A kill switch that could not pause says so and fails.
        let nowhere = run(
            &kc,
            &[
                "stop-all",
                "--timeout",
                "5",
                "--firedrill-namespace",
                "fd-no-such-namespace",
            ],
        );
        assert_eq!(nowhere.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&nowhere.stderr).contains("NOT paused"),
            "{}",
            String::from_utf8_lossy(&nowhere.stderr)
        );
        out
    } else {
        eprintln!("{test}: other tests are running faults; stop-all limited to this test's label");
        run(
            &kc,
            &[
                "stop-all",
                "--timeout",
                "20",
                "-l",
                "firedrill.dev/test=chaosctl-none",
            ],
        )
    };
    assert_eq!(out.status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no active injection"));

    // An active fault: stop-all aborts its experiment and deletes its Injection (revert =
    // delete), and is done once it is gone.
    let ns = test_ns(&client, "stop").await;
    let selector = format!("{TEST_LABEL}=chaosctl-{}", ns.name);
    create_experiment(&client, &ns.name, "zb").await;
    let label = json!({"metadata": {"labels": {TEST_LABEL: format!("chaosctl-{}", ns.name)}}});
    let experiments: Api<Experiment> = Api::namespaced(client.clone(), &ns.name);
    experiments
        .patch("zb", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    let injections: Api<Injection> = Api::namespaced(client.clone(), &ns.name);
    injections
        .create(
            &PostParams::default(),
            &injection(&ns.name, "zb-a", "zb", false),
        )
        .await
        .unwrap();
    let applied = json!({"status": {"state": "Applied", "appliedAt": Utc::now().to_rfc3339()}});
    injections
        .patch_status("zb-a", &PatchParams::default(), &Patch::Merge(&applied))
        .await
        .unwrap();
    let out = run(&kc, &["stop-all", "--timeout", "20", "-l", &selector]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        injections.get_opt("zb-a").await.unwrap().is_none(),
        "the injection was deleted"
    );
    let e = experiments.get("zb").await.unwrap();
    assert!(
        e.annotations()
            .get("firedrill.dev/abort")
            .is_some_and(|r| r.contains("kill switch")),
        "the experiment was aborted"
    );

    // An agent that never confirms: stop-all gives up at its timeout, exits 1 and names it.
    injections
        .create(
            &PostParams::default(),
            &injection(&ns.name, "zb-b", "zb", true),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let out = run(&kc, &["stop-all", "--timeout", "3", "-l", &selector]);
    assert_eq!(out.status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(15));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "{}/zb-b on node chaosctl-test-no-such-node (Pending, revert requested",
            ns.name
        )),
        "{text}"
    );
    delete(ns).await;
    delete(home).await;
}

#[tokio::test]
async fn game_day_on_a_cluster_is_followed_and_reported() {
    let test = "game_day_on_a_cluster_is_followed_and_reported";
    let Some((kc, client)) = cluster(test).await else {
        return;
    };
    let ns = test_ns(&client, "gd").await;
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.yaml");
    let spec = serde_json::to_string(&experiment_spec(&ns.name)).unwrap();
    std::fs::write(
        &plan,
        format!(
            "apiVersion: firedrill.dev/v1alpha1\nkind: GameDay\nmetadata:\n  name: drill\nspec:\n  pauseBetween: 1s\n  experiments:\n    - name: blackout\n      spec: {spec}\n"
        ),
    )
    .unwrap();
    let reports = dir.path().join("report");
    let child = Command::new(chaosctl())
        .arg("--kubeconfig")
        .arg(&kc)
        .args(["game-day", "-f"])
        .arg(&plan)
        .args([
            "-n",
            &ns.name,
            "--name",
            "drill-run",
            "--label",
            "firedrill.dev/test=chaosctl",
        ])
        .args(["--timeout", "90", "--report-dir"])
        .arg(&reports)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Play the operator: the game day appears, runs its one experiment, completes.
    let game_days: Api<GameDay> = Api::namespaced(client.clone(), &ns.name);
    let deadline = Instant::now() + Duration::from_secs(30);
    let g = loop {
        if let Some(g) = game_days.get_opt("drill-run").await.unwrap() {
            break g;
        }
        assert!(
            Instant::now() < deadline,
            "chaosctl did not apply the GameDay"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        g.labels().get(TEST_LABEL).map(String::as_str),
        Some("chaosctl")
    );
    assert!(
        g.managed_fields()
            .iter()
            .any(|f| f.manager.as_deref() == Some("chaosctl")),
        "applied with field manager chaosctl"
    );
    assert!(
        g.spec.experiments[0]
            .spec
            .as_ref()
            .is_some_and(|s| s.dry_run)
    );
    let running = json!({"status": {"phase": "Running", "progress": "0/1", "startedAt": Utc::now().to_rfc3339(),
        "results": [{"name": "blackout", "experiment": "drill-run-blackout"}]}});
    game_days
        .patch_status(
            "drill-run",
            &PatchParams::default(),
            &Patch::Merge(&running),
        )
        .await
        .unwrap();
    let e = step_of(&g, "drill-run-blackout");
    let experiments: Api<Experiment> = Api::namespaced(client.clone(), &ns.name);
    experiments
        .create(&PostParams::default(), &e)
        .await
        .unwrap();
    let t0 = Utc::now();
    let steps = [
        ("SteadyStateBefore", "checking the hypothesis"),
        ("Injecting", "blackout of zone-a"),
        ("Completed", "recovered"),
    ];
    for (i, (phase, _)) in steps.iter().enumerate() {
        let timeline: Vec<Value> = steps[..=i]
            .iter()
            .map(|(p, m)| json!({"at": t0.to_rfc3339(), "phase": p, "message": m}))
            .collect();
        let mut status = json!({"phase": phase, "timeline": timeline, "fault": "zoneBlackout"});
        if *phase == "Completed" {
            status["verdict"] = json!("Passed");
            status["timeToRecoverSeconds"] = json!(7.5);
            status["messagesLost"] = json!(0);
        }
        experiments
            .patch_status(
                "drill-run-blackout",
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let done = json!({"status": {"phase": "Completed", "verdict": "Passed", "progress": "1/1",
        "finishedAt": Utc::now().to_rfc3339(),
        "results": [{"name": "blackout", "experiment": "drill-run-blackout", "verdict": "Passed", "fault": "zoneBlackout"}]}});
    game_days
        .patch_status("drill-run", &PatchParams::default(), &Patch::Merge(&done))
        .await
        .unwrap();

    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let out = stdout(&output);
    let err = String::from_utf8_lossy(&output.stderr);
    eprintln!("{out}{err}");
    assert_eq!(output.status.code(), Some(0), "passed game day exits 0");
    assert!(
        err.contains("== [1/1] blackout: experiment drill-run-blackout"),
        "{err}"
    );
    assert!(
        err.contains("[blackout] Injecting: blackout of zone-a"),
        "{err}"
    );
    assert_eq!(
        err.matches("[blackout] Injecting:").count(),
        1,
        "each line once: {err}"
    );
    assert!(err.contains("== blackout: Passed"), "{err}");
    assert!(out.contains("EXPERIMENT") && out.contains("7.5s"), "{out}");
    assert!(out.contains("game day drill-run: Passed"), "{out}");
    for file in [
        "report.md",
        "report.json",
        "junit.xml",
        "timeline-blackout.svg",
    ] {
        assert!(reports.join(file).exists(), "{file} missing");
    }
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(reports.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["platform"], "cluster");
    assert_eq!(json["experiments"][0]["verdict"], "Passed");

    let out = run(&kc, &["describe", "gameday", "drill-run", "-n", &ns.name]);
    let text = stdout(&out);
    assert!(text.contains("Phase:        Completed"), "{text}");
    assert!(
        text.lines().any(|l| l.contains("blackout")
            && l.contains("drill-run-blackout")
            && l.contains("Passed")),
        "{text}"
    );
    let out = run(&kc, &["get", "gd", "-n", &ns.name]);
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("drill-run ") && l.contains("1/1"))
    );
    delete(ns).await;
}

#[tokio::test]
async fn drills_show_their_next_run_and_history() {
    let test = "drills_show_their_next_run_and_history";
    let Some((kc, client)) = cluster(test).await else {
        return;
    };
    let ns = test_ns(&client, "drill").await;
    let spec = json!({
        "schedule": "0 9 1 1,4,7,10 *",
        "timeZone": "Asia/Seoul",
        "gameDay": {"experiments": [{"name": "blackout", "spec": experiment_spec(&ns.name)}]},
    });
    let drill: firedrill_core::api::DrillSchedule =
        labelled("quarterly", &ns.name, "chaosctl", spec).unwrap();
    let drills: Api<firedrill_core::api::DrillSchedule> = Api::namespaced(client.clone(), &ns.name);
    drills.create(&PostParams::default(), &drill).await.unwrap();
    // What the operator records after three quarters.
    let next = (Utc::now() + chrono::Duration::days(40)).to_rfc3339();
    let status = json!({"status": {
        "lastVerdict": "Passed",
        "lastRunAt": "2026-10-01T00:00:00Z",
        "nextRunAt": next,
        "history": [
            {"gameDay": "quarterly-3", "scheduledFor": "2026-10-01T00:00:00Z", "startedAt": "2026-10-01T00:00:05Z",
             "finishedAt": "2026-10-01T00:12:00Z", "verdict": "Passed", "passed": 4, "failed": 0},
            {"gameDay": "quarterly-2", "scheduledFor": "2026-07-01T00:00:00Z", "note": "missed: operator down"},
            {"gameDay": "quarterly-1", "scheduledFor": "2026-04-01T00:00:00Z", "startedAt": "2026-04-01T00:00:05Z",
             "finishedAt": "2026-04-01T00:15:00Z", "verdict": "Failed", "passed": 3, "failed": 1},
        ],
    }});
    drills
        .patch_status("quarterly", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();

    let out = run(&kc, &["get", "drills", "-n", &ns.name]);
    assert!(out.status.success());
    let text = stdout(&out);
    let row = text
        .lines()
        .find(|l| l.starts_with("quarterly "))
        .expect("row");
    assert!(
        row.contains("(Asia/Seoul)") && row.contains("Passed"),
        "{row}"
    );
    assert!(
        row.contains("in 39d") || row.contains("in 40d"),
        "next run: {row}"
    );

    let out = run(&kc, &["describe", "drill", "quarterly", "-n", &ns.name]);
    let text = stdout(&out);
    assert!(
        text.contains("Schedule:     0 9 1 1,4,7,10 * (Asia/Seoul)"),
        "{text}"
    );
    assert!(text.contains("missed: operator down"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("trend.svg");
    let svg_arg = svg.display().to_string();
    let out = run(
        &kc,
        &["history", "quarterly", "-n", &ns.name, "--svg", &svg_arg],
    );
    assert!(out.status.success());
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[1].starts_with("2026-04-01") && lines[1].contains("Failed"),
        "{text}"
    );
    assert!(lines[2].contains("not run"), "{text}");
    assert!(
        lines[3].starts_with("2026-10-01") && lines[3].contains("Passed"),
        "{text}"
    );
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.contains("1 of 3 drills passed"), "{picture}");
    let out = run(&kc, &["history", "quarterly", "-n", &ns.name, "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    delete(ns).await;
}

/// No cluster needed: an API server that is not there gives the `unreachable` category and
/// says what to check.
#[test]
fn an_unreachable_cluster_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    std::fs::write(
        &kc,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:1\", insecure-skip-tls-verify: true}\nusers:\n- name: u\n  user: {token: x}\ncontexts:\n- name: ctx\n  context: {cluster: c, user: u, namespace: default}\ncurrent-context: ctx\n",
    )
    .unwrap();
    let out = run(&kc, &["get", "experiments"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[unreachable]") && err.contains("KUBECONFIG"),
        "{err}"
    );
    let out = run(&kc, &["--context", "nope", "get", "experiments"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[kubeconfig]"));
}
