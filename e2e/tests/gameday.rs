//! The quarterly DR game day on the cluster, as a user runs it:
//! `chaosctl game-day -f experiments/gameday-quarterly-dr.yaml --kubeconfig ...` applies the
//! GameDay (its four referenced experiments inlined), the deployed operator runs the steps
//! one after another against talk, chaosctl follows it live and exits 0 when all four
//! passed, printing the table and writing the report. The report is kept under
//! `target/e2e-reports/` for the record.
//!
//! The catalog addresses talk in namespace `talk`, so this test needs talk there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use common::{
    E2E_LABEL, agent_image, firedrill_and_talk, nodes, note, talk_delivering, talk_namespace,
    with_temp_ns,
};
use firedrill_core::api::{Experiment, GameDay, Verdict};
use kube::Api;
use kube::api::ListParams;

/// The chaosctl binary: `$CHAOSCTL`, else the workspace's dev build.
fn chaosctl() -> PathBuf {
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

#[tokio::test]
async fn the_quarterly_game_day_passes_on_the_cluster() {
    let test = "the_quarterly_game_day_passes_on_the_cluster";
    let Some(client) = firedrill_and_talk(test).await else {
        return;
    };
    assert_eq!(
        talk_namespace(),
        "talk",
        "the catalog's game day addresses talk in namespace talk"
    );
    talk_delivering(&client).await;
    let _ = agent_image(&client).await;
    let zones = nodes(&client).await.len();
    note(format!("{test}: {zones} nodes; talk delivering"));

    with_temp_ns(&client, "gameday", move |client, ns| async move {
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let plan = workspace.join("experiments/gameday-quarterly-dr.yaml");
        let reports = workspace.join("target/e2e-reports");
        std::fs::create_dir_all(&reports).unwrap();
        let kubeconfig = std::env::var("KUBECONFIG").unwrap();
        let t0 = Instant::now();
        // chaosctl is synchronous and long: run it off the runtime.
        let output = tokio::task::spawn_blocking({
            let ns = ns.clone();
            let reports = reports.clone();
            move || {
                Command::new(chaosctl())
                    .args(["--kubeconfig", &kubeconfig, "game-day", "-f"])
                    .arg(&plan)
                    .args(["-n", &ns, "--name", "quarterly-dr"])
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

        // What the cluster says, whatever chaosctl said.
        let game_days: Api<GameDay> = Api::namespaced(client.clone(), &ns);
        let g = game_days.get("quarterly-dr").await.unwrap();
        let experiments: Api<Experiment> = Api::namespaced(client.clone(), &ns);
        let children = experiments.list(&ListParams::default()).await.unwrap().items;
        let verdicts: Vec<(String, Option<Verdict>)> = children
            .iter()
            .map(|e| {
                (
                    kube::ResourceExt::name_any(e),
                    e.status.as_ref().and_then(|s| s.verdict),
                )
            })
            .collect();
        note(format!("{test}: experiments and verdicts {verdicts:?}"));
        assert_eq!(children.len(), 4, "one Experiment per step");
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
