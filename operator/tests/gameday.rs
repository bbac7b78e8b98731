//! The GameDay and DrillSchedule controllers against a real API server (`KUBECONFIG`); each
//! test skips, saying so, when there is none. All three controllers run in this process,
//! scoped to a temporary namespace; a stand-in agent plays the node agent's part.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Controllers, FakeAgent, Operator, TestNamespace, victim, victim_spec};
use firedrill_core::api::{
    ABORT_ANNOTATION, DrillSchedule, Experiment, GameDay, GameDayPhase, Injection, Phase, Verdict,
};
use firedrill_operator::gameday::{GAMEDAY_FINALIZER, GAMEDAY_UID_LABEL};
use firedrill_operator::schedule::SCHEDULE_UID_LABEL;
use firedrill_testkit::objects::labelled;
use firedrill_testkit::{TEST_LABEL, crds, eventually, release_finalizers};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

/// Common setup, with the GameDay and DrillSchedule CRDs as this build defines them (a
/// cluster may have older ones, whose schema would prune the newer status fields).
async fn setup(test: &str) -> Option<(Client, String)> {
    let (client, node) = common::setup(test).await?;
    crds::update(&client, |name| {
        name.starts_with("gamedays.") || name.starts_with("drillschedules.")
    })
    .await
    .unwrap();
    Some((client, node))
}

/// An experiment spec on the `app=victim` pods of `namespace` that freezes them, judged by
/// `node` being Ready.
fn experiment_spec(namespace: &str, node: &str, duration: &str, extra: Value) -> Value {
    let freeze = json!({"opsToolOutage": {"mode": "Freeze"}});
    victim_spec(namespace, node, freeze, duration, extra)
}

/// A GameDay labelled `firedrill.dev/test=gameday` (a deployed operator leaves it alone).
fn game_day(name: &str, namespace: &str, spec: Value) -> GameDay {
    labelled(name, namespace, "gameday", spec).unwrap()
}

async fn wait_for_game_day<F>(
    api: &Api<GameDay>,
    name: &str,
    secs: u64,
    what: &str,
    check: F,
) -> GameDay
where
    F: Fn(&GameDay) -> bool,
{
    let found = eventually(Duration::from_secs(secs), || async {
        let g = api.get(name).await.ok()?;
        check(&g).then_some(g)
    })
    .await;
    match found {
        Some(g) => g,
        None => {
            let now = api.get(name).await.ok();
            panic!(
                "{name}: not {what} in {secs}s; status: {:#?}",
                now.and_then(|g| g.status)
            )
        }
    }
}

fn completed(g: &GameDay) -> bool {
    g.status
        .as_ref()
        .is_some_and(|s| s.phase == GameDayPhase::Completed)
}

async fn gone<K>(api: &Api<K>, name: &str, secs: u64) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    firedrill_testkit::gone(api, name, Duration::from_secs(secs)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_day_runs_its_steps_in_order_resumes_after_a_restart_and_aggregates() {
    let test = "game_day_in_order";
    let Some((client, node)) = setup(test).await else {
        return;
    };
    let ns = TestNamespace::new(&client, "gd", true).await;
    victim(&client, &ns.name, "victim", &node).await;
    let agent = FakeAgent::start(&client, &ns.firedrill);
    // A referenced Experiment: only a spec holder (no test label: the tests' operator leaves
    // it alone; it is a dry run for any other).
    let template: Experiment = serde_json::from_value(json!({
        "apiVersion": "firedrill.dev/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "template", "namespace": ns.name},
        "spec": experiment_spec(&ns.name, &node, "3s", json!({"dryRun": true})),
    }))
    .unwrap();
    let experiments: Api<Experiment> = Api::namespaced(client.clone(), &ns.name);
    experiments
        .create(&PostParams::default(), &template)
        .await
        .unwrap();
    let operator = Operator::start(&client, &ns, Controllers::All);
    let api: Api<GameDay> = Api::namespaced(client.clone(), &ns.name);
    let gd = game_day(
        "drill",
        &ns.name,
        json!({
            "experiments": [
                {"name": "freeze", "spec": experiment_spec(&ns.name, &node, "6s", json!({}))},
                {"name": "referenced", "experimentRef": {"name": "template"}},
                {"name": "again", "spec": experiment_spec(&ns.name, &node, "3s", json!({}))},
            ],
            "failurePolicy": "Continue",
            "pauseBetween": "2s",
        }),
    );
    api.create(&PostParams::default(), &gd).await.unwrap();

    // The first step runs as an Experiment owned by the game day, alone.
    let running = wait_for_game_day(&api, "drill", 60, "running its first step", |g| {
        g.status.as_ref().is_some_and(|s| s.results.len() == 1)
    })
    .await;
    assert!(running.finalizers().iter().any(|f| f == GAMEDAY_FINALIZER));
    let first = experiments.get("drill-freeze").await.unwrap();
    let owner = &first.owner_references()[0];
    assert_eq!(owner.kind, "GameDay");
    assert_eq!(owner.uid, running.uid().unwrap());
    assert!(first.labels().contains_key(GAMEDAY_UID_LABEL));
    assert!(
        experiments
            .get_opt("drill-referenced")
            .await
            .unwrap()
            .is_none()
    );

    // The operator restarts mid-step: the new one resumes from status.
    operator.shutdown().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let operator = Operator::start(&client, &ns, Controllers::All);

    let done = wait_for_game_day(&api, "drill", 240, "completed", completed).await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.progress.as_deref(), Some("3/3"));
    let names: Vec<_> = status.results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["freeze", "referenced", "again"]);
    // The dry run is Skipped (it proves nothing), so the game day is not Passed, and with
    // failurePolicy Continue the last step ran anyway.
    let verdicts: Vec<_> = status.results.iter().map(|r| r.verdict).collect();
    assert_eq!(
        verdicts,
        [
            Some(Verdict::Passed),
            Some(Verdict::Skipped),
            Some(Verdict::Passed)
        ],
        "{status:#?}"
    );
    assert_eq!(status.verdict, Some(Verdict::Failed), "{status:#?}");
    assert!(
        status.results[1]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("dry run")),
        "{status:#?}"
    );
    assert_eq!(
        status.results[0].experiment.as_deref(),
        Some("drill-freeze")
    );
    assert_eq!(status.results[0].fault.as_deref(), Some("opsToolOutage"));
    // The node stayed ready throughout: nothing to recover from, so no time to recover.
    assert_eq!(
        status.results[0].time_to_recover_seconds, None,
        "{status:#?}"
    );
    // In order, with the pause between.
    let first_done = status.results[0].finished_at.unwrap();
    let second_start = status.results[1].started_at.unwrap();
    assert!(
        second_start >= first_done + chrono::TimeDelta::milliseconds(1900),
        "{status:#?}"
    );
    // The first step ran once: its Experiment is the one created before the restart.
    let first_after = experiments.get("drill-freeze").await.unwrap();
    assert_eq!(first_after.uid(), first.uid());
    // The referenced step's Experiment is a copy of the template's spec.
    let second = experiments.get("drill-referenced").await.unwrap();
    assert!(second.spec.dry_run);
    assert_eq!(second.spec.duration, template.spec.duration);
    let third_start = status.results[2].started_at.unwrap();
    assert!(third_start >= status.results[1].finished_at.unwrap());

    // Deleting a finished game day is immediate.
    api.delete("drill", &DeleteParams::default()).await.unwrap();
    assert!(
        gone(&api, "drill", 30).await,
        "the game day was not deleted"
    );
    operator.shutdown().await;
    drop(agent);
    release(&client, &ns.name).await;
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn its_abort_annotation_stops_a_game_day_after_reverting_its_current_step() {
    let test = "game_day_abort";
    let Some((client, node)) = setup(test).await else {
        return;
    };
    let ns = TestNamespace::new(&client, "gdabort", true).await;
    victim(&client, &ns.name, "victim", &node).await;
    let agent = FakeAgent::start(&client, &ns.firedrill);
    let operator = Operator::start(&client, &ns, Controllers::All);
    let api: Api<GameDay> = Api::namespaced(client.clone(), &ns.name);
    let experiments: Api<Experiment> = Api::namespaced(client.clone(), &ns.name);
    let gd = game_day(
        "stopped",
        &ns.name,
        json!({"experiments": [
            {"name": "hold", "spec": experiment_spec(&ns.name, &node, "10m", json!({}))},
            {"name": "after", "spec": experiment_spec(&ns.name, &node, "3s", json!({}))},
        ], "failurePolicy": "Continue"}),
    );
    api.create(&PostParams::default(), &gd).await.unwrap();
    let held = eventually(Duration::from_secs(90), || async {
        let e = experiments.get("stopped-hold").await.ok()?;
        (e.status?.phase == Phase::Holding).then_some(())
    })
    .await;
    assert!(held.is_some(), "the first step never held its fault");
    let abort = json!({"metadata": {"annotations": {ABORT_ANNOTATION: "wrong cluster"}}});
    api.patch("stopped", &PatchParams::default(), &Patch::Merge(&abort))
        .await
        .unwrap();
    let done = wait_for_game_day(&api, "stopped", 60, "stopped", completed).await;
    let status = done.status.unwrap();
    assert_eq!(status.verdict, Some(Verdict::Aborted), "{status:#?}");
    assert_eq!(status.results.len(), 2);
    assert_eq!(status.results[0].verdict, Some(Verdict::Aborted));
    assert_eq!(status.results[1].verdict, Some(Verdict::Skipped));
    assert!(
        status.results[1]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("wrong cluster")),
        "{:?}",
        status.results[1]
    );
    assert!(
        experiments
            .get_opt("stopped-after")
            .await
            .unwrap()
            .is_none(),
        "never started"
    );
    let reverted = eventually(Duration::from_secs(30), || async {
        let left = Api::<Injection>::namespaced(client.clone(), &ns.firedrill)
            .list(&ListParams::default())
            .await
            .ok()?;
        left.items.is_empty().then_some(())
    })
    .await;
    assert!(
        reverted.is_some(),
        "the aborted step's fault was not reverted"
    );
    operator.shutdown().await;
    drop(agent);
    ns.delete().await;
}

/// Here because these tests run all of the leader's tasks (`controllers::run`), the sweep
/// of orphaned Injections included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injections_of_an_experiment_removed_without_its_finalizer_are_swept() {
    let test = "injections_swept";
    let Some((client, node)) = setup(test).await else {
        return;
    };
    let ns = TestNamespace::new(&client, "sweep", true).await;
    victim(&client, &ns.name, "victim", &node).await;
    let agent = FakeAgent::start(&client, &ns.firedrill);
    let operator = Operator::start(&client, &ns, Controllers::All);
    let experiments: Api<Experiment> = Api::namespaced(client.clone(), &ns.name);
    let injections: Api<Injection> = Api::namespaced(client.clone(), &ns.firedrill);
    let spec = experiment_spec(&ns.name, &node, "10m", json!({}));
    let exp: Experiment = labelled("forced", &ns.name, "gameday", spec).unwrap();
    experiments
        .create(&PostParams::default(), &exp)
        .await
        .unwrap();
    let held = eventually(Duration::from_secs(90), || async {
        let e = experiments.get("forced").await.ok()?;
        (e.status?.phase == Phase::Holding).then_some(())
    })
    .await;
    assert!(held.is_some(), "never held its fault");
    assert_eq!(
        injections
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    // The sweep reads the operator's stores, as it does in production once they have listed.
    let stores = eventually(Duration::from_secs(30), || async {
        operator.ctx.metrics.inventory().map(|_| ())
    })
    .await;
    assert!(stores.is_some(), "the inventory's stores never listed");
    // Someone removes the finalizer by hand and deletes it: no revert through the engine.
    let clear = json!({"metadata": {"finalizers": null}});
    experiments
        .patch("forced", &PatchParams::default(), &Patch::Merge(&clear))
        .await
        .unwrap();
    experiments
        .delete("forced", &DeleteParams::default())
        .await
        .unwrap();
    let swept = eventually(Duration::from_secs(60), || async {
        let left = injections.list(&ListParams::default()).await.ok()?;
        left.items.is_empty().then_some(())
    })
    .await;
    assert!(swept.is_some(), "the orphaned Injection was never deleted");
    operator.shutdown().await;
    drop(agent);
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_game_days_queue_and_deleting_one_aborts_its_step() {
    let test = "overlapping_game_days";
    let Some((client, node)) = setup(test).await else {
        return;
    };
    let ns = TestNamespace::new(&client, "gdq", true).await;
    victim(&client, &ns.name, "victim", &node).await;
    let agent = FakeAgent::start(&client, &ns.firedrill);
    let operator = Operator::start(&client, &ns, Controllers::All);
    let api: Api<GameDay> = Api::namespaced(client.clone(), &ns.name);
    let experiments: Api<Experiment> = Api::namespaced(client.clone(), &ns.name);
    let injections: Api<Injection> = Api::namespaced(client.clone(), &ns.firedrill);
    let long = game_day(
        "long",
        &ns.name,
        json!({"experiments": [{"name": "hold", "spec": experiment_spec(&ns.name, &node, "10m", json!({}))}]}),
    );
    api.create(&PostParams::default(), &long).await.unwrap();
    // Its fault is in place.
    let held = eventually(Duration::from_secs(90), || async {
        let e = experiments.get("long-hold").await.ok()?;
        (e.status?.phase == Phase::Holding).then_some(())
    })
    .await;
    assert!(held.is_some(), "long-hold never held its fault");

    // A second game day on the same pod waits.
    let short = game_day(
        "short",
        &ns.name,
        json!({"experiments": [{"name": "quick", "spec": experiment_spec(&ns.name, &node, "3s", json!({}))}]}),
    );
    api.create(&PostParams::default(), &short).await.unwrap();
    let queued = wait_for_game_day(&api, "short", 60, "queued", |g| {
        g.status
            .as_ref()
            .and_then(|s| s.message.as_deref())
            .is_some_and(|m| m.contains("queued") && m.contains("long-hold"))
    })
    .await;
    assert!(queued.status.unwrap().results.is_empty());
    assert!(experiments.get_opt("short-quick").await.unwrap().is_none());

    // Deleting the first aborts its step (reverting the fault) and frees the target.
    api.delete("long", &DeleteParams::default()).await.unwrap();
    assert!(
        gone(&api, "long", 90).await,
        "the long game day was not deleted"
    );
    assert!(
        experiments.get_opt("long-hold").await.unwrap().is_none(),
        "its experiment outlived it"
    );
    let left: Vec<_> = injections
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|i| i.name_any().starts_with("long-hold"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    let done = wait_for_game_day(&api, "short", 180, "completed", completed).await;
    assert_eq!(done.status.unwrap().verdict, Some(Verdict::Passed));
    operator.shutdown().await;
    drop(agent);
    release(&client, &ns.name).await;
    ns.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_every_minute_schedule_fires_and_records_its_drill() {
    let test = "drill_schedule_fires";
    let Some((client, node)) = setup(test).await else {
        return;
    };
    let ns = TestNamespace::new(&client, "drill", true).await;
    victim(&client, &ns.name, "victim", &node).await;
    let agent = FakeAgent::start(&client, &ns.firedrill);
    let operator = Operator::start(&client, &ns, Controllers::All);
    let spec = json!({
        "schedule": "* * * * *",
        "timeZone": "Asia/Seoul",
        "startingDeadline": "5m",
        "historyLimit": 3,
        "gameDay": {
            "experiments": [{"name": "freeze", "spec": experiment_spec(&ns.name, &node, "3s", json!({}))}],
            "pauseBetween": "0s",
        },
    });
    let schedule: DrillSchedule = labelled("minutely", &ns.name, "schedule", spec).unwrap();
    let api: Api<DrillSchedule> = Api::namespaced(client.clone(), &ns.name);
    api.create(&PostParams::default(), &schedule).await.unwrap();

    // The next run time is shown before anything runs.
    let next = eventually(Duration::from_secs(30), || async {
        api.get("minutely").await.ok()?.status?.next_run_at
    })
    .await
    .expect("no nextRunAt");
    assert!(next > chrono::Utc::now() - chrono::TimeDelta::seconds(70));

    // Within two minutes a drill starts, and its verdict lands in the history.
    let recorded = eventually(Duration::from_secs(240), || async {
        let status = api.get("minutely").await.ok()?.status?;
        let done = status.history.iter().find(|r| r.verdict.is_some())?.clone();
        Some((status, done))
    })
    .await;
    let Some((status, record)) = recorded else {
        panic!(
            "no drill recorded in 240 s: {:#}",
            debug_state(&client, &ns.name).await
        );
    };
    assert_eq!(record.verdict, Some(Verdict::Passed), "{status:#?}");
    assert_eq!(record.passed, Some(1));
    assert_eq!(record.failed, Some(0));
    assert!(record.started_at.is_some() && record.finished_at.is_some());
    assert_eq!(record.scheduled_for.timestamp() % 60, 0);
    assert!(status.last_run_at.is_some());
    assert!(status.next_run_at.is_some());
    let game_days: Api<GameDay> = Api::namespaced(client.clone(), &ns.name);
    let drill = game_days.get(&record.game_day).await.unwrap();
    assert!(drill.labels().contains_key(SCHEDULE_UID_LABEL));
    assert_eq!(
        drill.labels().get(TEST_LABEL).map(String::as_str),
        Some("schedule")
    );
    assert_eq!(drill.owner_references()[0].kind, "DrillSchedule");
    assert_eq!(
        drill.status.unwrap().verdict,
        Some(Verdict::Passed),
        "the drill's game day"
    );

    operator.shutdown().await;
    drop(agent);
    release(&client, &ns.name).await;
    ns.delete().await;
}

async fn debug_state(client: &Client, namespace: &str) -> Value {
    let api: Api<DrillSchedule> = Api::namespaced(client.clone(), namespace);
    let game_days: Api<GameDay> = Api::namespaced(client.clone(), namespace);
    json!({
        "schedule": api.get("minutely").await.ok().and_then(|s| s.status),
        "gameDays": game_days.list(&ListParams::default()).await.ok().map(|l| l.items.into_iter().map(|g| (g.name_any(), g.status)).collect::<Vec<_>>()),
    })
}

/// Frees the namespace's GameDays of the operator's finalizer (the operator is stopped), so
/// the namespace can go.
async fn release(client: &Client, namespace: &str) {
    release_finalizers::<GameDay>(client, namespace)
        .await
        .unwrap();
}
