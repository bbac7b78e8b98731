//! `chaosctl abort NAME` and `chaosctl stop-all`, the kill switch.
//!
//! Aborting sets the annotation the operator honours (`firedrill.dev/abort: <reason>`); the
//! operator then reverts through the engine. `stop-all` also deletes every Injection itself
//! (revert = delete in the agent contract), so it works when the operator is down, and it is
//! done only when the agents confirm: every Injection gone or `Reverted`.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use firedrill_core::api::{Experiment, GameDay, Injection, InjectionState, Phase};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::access::{Scope, fetch};
use crate::cluster::{
    ABORT_ANNOTATION, ClusterArgs, ClusterError, FIELD_MANAGER, Op, connect, runtime,
};

/// True while an experiment may still inject or hold a fault.
pub fn is_running(e: &Experiment) -> bool {
    e.status
        .as_ref()
        .is_none_or(|s| s.phase != Phase::Completed)
}

/// An experiment stop-all has to annotate: running and not already asked to abort.
pub fn needs_abort(e: &Experiment) -> bool {
    is_running(e) && !e.annotations().contains_key(ABORT_ANNOTATION)
}

/// True until the agent confirms the revert (`Reverted`) or refusal (`Refused`: never
/// applied), or the object is gone. A `Failed` or `Pending` Injection may be partly
/// applied, so it counts as active.
pub fn is_active(i: &Injection) -> bool {
    i.status
        .as_ref()
        .is_none_or(|s| !matches!(s.state, InjectionState::Reverted | InjectionState::Refused))
}

/// `namespace/name` of an Injection's Experiment, as its spec names it.
fn owner_key(i: &Injection) -> &str {
    &i.spec.experiment
}

fn key(e: &Experiment) -> String {
    format!("{}/{}", e.namespace().unwrap_or_default(), e.name_any())
}

/// The Injections stop-all waits for: all of them, or with a selector only those of the
/// selected experiments.
pub fn in_scope<'a>(
    injections: &'a [Injection],
    experiments: Option<&BTreeSet<String>>,
) -> Vec<&'a Injection> {
    injections
        .iter()
        .filter(|i| experiments.is_none_or(|set| set.contains(owner_key(i))))
        .collect()
}

/// One line per active Injection: what, where, in which state.
pub fn describe_active(active: &[&Injection], now: DateTime<Utc>) -> Vec<String> {
    active
        .iter()
        .map(|i| {
            let state = i
                .status
                .as_ref()
                .map_or_else(|| "Pending".to_owned(), |s| format!("{:?}", s.state));
            let message = i
                .status
                .as_ref()
                .and_then(|s| s.message.clone())
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            format!(
                "{}/{} on node {} ({state}{}, experiment {}, agent expiry {}){message}",
                i.namespace().unwrap_or_default(),
                i.name_any(),
                i.spec.node_name,
                if i.metadata.deletion_timestamp.is_some() {
                    ", revert requested"
                } else {
                    ""
                },
                i.spec.experiment,
                crate::output::due(Some(i.spec.expires_at), now),
            )
        })
        .collect()
}

/// The progress line printed when the number of active Injections changes.
pub fn progress(active: usize, total_seen: usize, elapsed: Duration) -> String {
    format!(
        "stop-all: {:>4.1}s: {active} injection(s) still active ({} of {total_seen} confirmed reverted or gone)",
        elapsed.as_secs_f64(),
        total_seen.saturating_sub(active)
    )
}

/// Sets the abort annotation on one object (merge patch, field manager chaosctl).
async fn annotate<K>(
    client: &Client,
    object: &K,
    resource: &'static str,
    reason: &str,
) -> Result<(), ClusterError>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let ns = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    let patch = serde_json::json!({"metadata": {"annotations": {ABORT_ANNOTATION: reason}}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    };
    api.patch(&name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|err| {
            ClusterError::from_kube(err, &Op::new("patch", resource).ns(Some(&ns)).name(&name))
        })?;
    Ok(())
}

/// `chaosctl abort NAME`: an Experiment, or a GameDay and its running experiments.
pub fn run_abort(
    cluster: &ClusterArgs,
    name: &str,
    namespace: Option<String>,
    reason: &str,
) -> Result<ExitCode, ClusterError> {
    runtime()?.block_on(async {
        let (client, _) = connect(cluster).await?;
        let scope = Scope::Namespace(namespace);
        let reason = format!("{reason} (chaosctl abort by {})", whoami());
        match fetch::<Experiment>(&client, &scope, Some(name), "experiments", None).await {
            Ok(items) => {
                for e in &items {
                    if !is_running(e) {
                        println!(
                            "experiment {} already completed ({}); nothing to abort",
                            key(e),
                            e.status.as_ref().and_then(|s| s.verdict).map_or("-".to_owned(), |v| format!("{v:?}"))
                        );
                        continue;
                    }
                    annotate(&client, e, "experiments", &reason).await?;
                    println!(
                        "experiment {} aborting: {ABORT_ANNOTATION}={reason:?} set; the operator reverts its fault (follow with `chaosctl describe experiment {name}`)",
                        key(e)
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(ClusterError::NotFound { .. }) => {
                let game_days: Vec<GameDay> =
                    fetch(&client, &scope, Some(name), "gamedays", None).await.map_err(|e| match e {
                        ClusterError::NotFound { scope, .. } => ClusterError::NotFound {
                            resource: "experiments",
                            name: name.to_owned(),
                            scope,
                        },
                        other => other,
                    })?;
                for g in &game_days {
                    let ns = g.namespace().unwrap_or_default();
                    annotate(&client, g, "gamedays", &reason).await?;
                    let in_namespace: Vec<Experiment> =
                        fetch(&client, &Scope::Namespace(Some(ns.clone())), None, "experiments", None).await?;
                    let children = crate::gameday::follow::children(g, &in_namespace);
                    let mut aborted = 0;
                    for e in children.into_iter().filter(|e| needs_abort(e)) {
                        annotate(&client, e, "experiments", &reason).await?;
                        println!("experiment {} aborting", key(e));
                        aborted += 1;
                    }
                    println!(
                        "game day {ns}/{name}: {aborted} running experiment(s) aborted; its abort annotation is set, so \
                         no step after the running one starts and the game day ends Aborted"
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(other) => Err(other),
        }
    })
}

/// Who stops experiments, for the reason recorded on them.
pub(crate) fn whoami() -> String {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok().map(|m| m.uid());
    person(|name| std::env::var(name).ok(), uid)
}

/// The person behind sudo first (`USER` is root then), then the login; CI jobs and
/// containers often set neither, and a uid still says more than nothing.
fn person(env: impl Fn(&str) -> Option<String>, uid: Option<u32>) -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .into_iter()
        .find_map(|name| env(name).filter(|value| !value.trim().is_empty()))
        .or_else(|| uid.map(|uid| format!("uid {uid}")))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Options of `stop-all`.
#[derive(Debug, Clone)]
pub struct StopAll {
    pub timeout: Duration,
    /// Only experiments with these labels (and their Injections).
    pub selector: Option<String>,
    /// Leave deleting the Injections to the operator.
    pub no_delete: bool,
}

/// `chaosctl stop-all`: abort every running Experiment in every namespace, revert every
/// Injection, and wait until the agents confirm.
pub fn run_stop_all(cluster: &ClusterArgs, options: &StopAll) -> Result<ExitCode, ClusterError> {
    runtime()?.block_on(async {
        let started = std::time::Instant::now();
        let (client, server) = connect(cluster).await?;
        eprintln!("stop-all: cluster {server}");
        let experiments: Vec<Experiment> =
            fetch(&client, &Scope::All, None, "experiments", options.selector.as_deref()).await?;
        let reason = format!("kill switch: chaosctl stop-all by {} at {}", whoami(), Utc::now().format("%H:%M:%SZ"));
        // Cluster-wide, the pause comes first: nothing starts between the list and the aborts.
        // With a selector only the selected experiments stop and nothing is paused.
        let firedrill = cluster.firedrill_namespace();
        let mut not_paused = None;
        if options.selector.is_none() {
            match crate::pause::set(&client, firedrill, &reason).await {
                Ok(()) => eprintln!(
                    "stop-all: firedrill in {firedrill} paused: nothing starts until `chaosctl resume`"
                ),
                Err(e) => {
                    eprintln!("stop-all: WARNING: could not pause firedrill in {firedrill}: {e}");
                    not_paused = Some(e);
                }
            }
        }
        let mut aborted = 0usize;
        for e in experiments.iter().filter(|e| needs_abort(e)) {
            annotate(&client, e, "experiments", &reason).await?;
            eprintln!("stop-all: aborting experiment {}", key(e));
            aborted += 1;
        }
        let running = experiments.iter().filter(|e| is_running(e)).count();
        eprintln!(
            "stop-all: {aborted} experiment(s) newly aborted, {running} running of {} {}",
            experiments.len(),
            if options.selector.is_some() { "selected" } else { "in the cluster" }
        );
        let selected: Option<BTreeSet<String>> =
            options.selector.as_ref().map(|_| experiments.iter().map(key).collect());
        let mut seen = BTreeSet::new();
        let mut last = None;
        loop {
            let all: Vec<Injection> = fetch(&client, &Scope::All, None, "injections", None).await?;
            let injections = in_scope(&all, selected.as_ref());
            let active: Vec<&Injection> = injections.iter().copied().filter(|i| is_active(i)).collect();
            for i in &injections {
                seen.insert(format!("{}/{}", i.namespace().unwrap_or_default(), i.name_any()));
            }
            if !options.no_delete {
                for i in active.iter().filter(|i| i.metadata.deletion_timestamp.is_none()) {
                    let ns = i.namespace().unwrap_or_default();
                    let api: Api<Injection> = Api::namespaced(client.clone(), &ns);
                    match api.delete(&i.name_any(), &DeleteParams::background()).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(err) => {
                            return Err(ClusterError::from_kube(
                                err,
                                &Op::new("delete", "injections").ns(Some(&ns)).name(&i.name_any()),
                            ));
                        }
                    }
                }
            }
            if active.is_empty() {
                eprintln!(
                    "stop-all: done in {:.1}s: no active injection ({} confirmed reverted or gone)",
                    started.elapsed().as_secs_f64(),
                    seen.len()
                );
                if let Some(e) = &not_paused {
                    eprintln!(
                        "stop-all: but firedrill is NOT paused ({e}): new experiments may start. \
                         Is it installed in {firedrill}? Say where with --firedrill-namespace"
                    );
                    return Ok(ExitCode::FAILURE);
                }
                return Ok(ExitCode::SUCCESS);
            }
            if last != Some(active.len()) {
                eprintln!("{}", progress(active.len(), seen.len(), started.elapsed()));
                last = Some(active.len());
            }
            if started.elapsed() >= options.timeout {
                eprintln!(
                    "stop-all: TIMEOUT after {}s: {} injection(s) are not confirmed reverted:",
                    options.timeout.as_secs(),
                    active.len()
                );
                for line in describe_active(&active, Utc::now()) {
                    println!("  {line}");
                }
                eprintln!(
                    "what to do: check the agents on those nodes (kubectl -n {firedrill} get pods -o wide); \
                     an agent reverts on its own at the end of the fault's duration (holdFor) even when it cannot reach \
                     the API server, and within the heartbeat timeout once no operator leader renews its Lease"
                );
                return Ok(ExitCode::FAILURE);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use firedrill_core::api::{ExperimentStatus, InjectionStatus};

    use super::*;

    fn injection(name: &str, experiment: &str, state: Option<InjectionState>) -> Injection {
        let spec: firedrill_core::api::InjectionSpec = serde_json::from_value(serde_json::json!({
            "nodeName": "fd-zone-a",
            "experiment": experiment,
            "action": {"network": {"all": true}},
            "expiresAt": "2026-01-01T00:10:00Z",
        }))
        .unwrap();
        let mut i = Injection::new(name, spec);
        i.metadata.namespace = Some("talk".into());
        i.status = state.map(|state| InjectionStatus {
            state,
            message: None,
            applied_at: None,
            reverted_at: None,
            lapses: vec![],
            ..InjectionStatus::default()
        });
        i
    }

    #[test]
    fn only_agent_confirmed_reverts_count_as_done() {
        assert!(is_active(&injection("a", "talk/x", None)));
        assert!(is_active(&injection(
            "a",
            "talk/x",
            Some(InjectionState::Pending)
        )));
        assert!(is_active(&injection(
            "a",
            "talk/x",
            Some(InjectionState::Applied)
        )));
        assert!(is_active(&injection(
            "a",
            "talk/x",
            Some(InjectionState::Failed)
        )));
        assert!(!is_active(&injection(
            "a",
            "talk/x",
            Some(InjectionState::Reverted)
        )));
        assert!(!is_active(&injection(
            "a",
            "talk/x",
            Some(InjectionState::Refused)
        )));
    }

    #[test]
    fn a_selector_limits_the_wait_to_the_selected_experiments() {
        let all = vec![
            injection("a", "talk/x", None),
            injection("b", "other/y", None),
        ];
        assert_eq!(in_scope(&all, None).len(), 2);
        let set: BTreeSet<String> = ["talk/x".to_owned()].into();
        let picked = in_scope(&all, Some(&set));
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].name_any(), "a");
    }

    #[test]
    fn running_experiments_are_aborted_once() {
        let mut e = crate::fixtures::experiment("zb");
        assert!(
            needs_abort(&e),
            "no status yet: may start injecting any moment"
        );
        e.status = Some(ExperimentStatus {
            phase: Phase::Holding,
            ..Default::default()
        });
        assert!(needs_abort(&e));
        e.annotations_mut()
            .insert(ABORT_ANNOTATION.into(), "x".into());
        assert!(!needs_abort(&e) && is_running(&e));
        e.status = Some(ExperimentStatus {
            phase: Phase::Completed,
            ..Default::default()
        });
        e.annotations_mut().clear();
        assert!(!needs_abort(&e) && !is_running(&e));
    }

    #[test]
    fn the_leftover_list_names_node_state_and_expiry() {
        let i = injection("zb-fd-zone-a-1", "talk/zb", Some(InjectionState::Applied));
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 5, 0).unwrap();
        let lines = describe_active(&[&i], now);
        assert_eq!(
            lines,
            [
                "talk/zb-fd-zone-a-1 on node fd-zone-a (Applied, experiment talk/zb, agent expiry in 5m)"
            ]
        );
        assert_eq!(
            progress(2, 5, Duration::from_millis(1500)),
            "stop-all:  1.5s: 2 injection(s) still active (3 of 5 confirmed reverted or gone)"
        );
    }

    #[test]
    fn the_person_is_the_sudoer_then_the_login_then_the_uid() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            }
        };
        let sudo = env(&[("USER", "root"), ("SUDO_USER", "alice")]);
        assert_eq!(person(sudo, Some(0)), "alice");
        assert_eq!(person(env(&[("USER", "bob")]), Some(1000)), "bob");
        assert_eq!(person(env(&[("LOGNAME", "carol")]), None), "carol");
        assert_eq!(person(env(&[("USER", " ")]), Some(0)), "uid 0");
        assert_eq!(person(env(&[]), None), "unknown");
    }
}
