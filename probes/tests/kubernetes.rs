//! `kubernetes` probes: the pure evaluation on JSON objects, and the prober with a fake
//! object source (the objects are the input; the logic under test is real).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use firedrill_core::api::{KubernetesProbe, Probe};
use firedrill_core::engine::Outcome;
use firedrill_probes::{BoxFuture, ObjectSource, Prober, default_condition, evaluate_object};
use serde_json::{Value, json};

fn k8s(spec: Value) -> KubernetesProbe {
    serde_json::from_value(spec).expect("a valid kubernetes probe")
}

fn deployment(available: &str, ready: Option<u64>) -> Value {
    let mut status = json!({
        "replicas": 3,
        "conditions": [
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            {"type": "Available", "status": available, "reason": "MinimumReplicasUnavailable",
             "message": "Deployment does not have minimum availability."},
        ],
    });
    if let Some(ready) = ready {
        status["readyReplicas"] = json!(ready);
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "talk-server", "namespace": "talk"},
        "status": status,
    })
}

fn unhealthy(outcome: Outcome) -> String {
    match outcome {
        Outcome::Unhealthy(why) => why,
        other => panic!("expected Unhealthy, got {other:?}"),
    }
}

#[test]
fn default_conditions() {
    assert_eq!(default_condition("Deployment"), "Available");
    assert_eq!(default_condition("Pod"), "Ready");
    assert_eq!(default_condition("Node"), "Ready");
}

#[test]
fn deployment_available_condition() {
    let p = k8s(json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "talk-server"}));
    assert_eq!(
        evaluate_object(&p, &deployment("True", Some(3))),
        Outcome::Healthy
    );
    let why = unhealthy(evaluate_object(&p, &deployment("False", Some(1))));
    assert_eq!(
        why,
        "Deployment talk/talk-server: Available is False (MinimumReplicasUnavailable: \
         Deployment does not have minimum availability.)"
    );
}

#[test]
fn named_condition_and_missing_condition() {
    let p = k8s(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "talk-server",
                       "condition": "Progressing"}),
    );
    assert_eq!(
        evaluate_object(&p, &deployment("False", None)),
        Outcome::Healthy
    );
    let p = k8s(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "talk-server",
                       "condition": "ReplicaFailure"}),
    );
    let why = unhealthy(evaluate_object(&p, &deployment("True", Some(3))));
    assert_eq!(
        why,
        "Deployment talk/talk-server has no ReplicaFailure condition"
    );
    let no_status = json!({"metadata": {"name": "talk-server"}});
    let why = unhealthy(evaluate_object(&p, &no_status));
    assert!(why.contains("has no ReplicaFailure condition"), "{why}");
}

#[test]
fn pods_default_to_ready() {
    let p = k8s(json!({"apiVersion": "v1", "kind": "Pod", "name": "nats-0", "namespace": "talk"}));
    let pod = |ready: &str| {
        json!({"status": {"conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": ready, "reason": "ContainersNotReady"},
        ]}})
    };
    assert_eq!(evaluate_object(&p, &pod("True")), Outcome::Healthy);
    let why = unhealthy(evaluate_object(&p, &pod("False")));
    assert_eq!(why, "Pod talk/nats-0: Ready is False (ContainersNotReady)");
    let why = unhealthy(evaluate_object(&p, &pod("Unknown")));
    assert!(why.contains("Ready is Unknown"), "{why}");
}

#[test]
fn ready_replicas() {
    let p = k8s(
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "nats",
                       "minReadyReplicas": 2}),
    );
    let set = |ready: Option<u64>| {
        let mut o = json!({"metadata": {"namespace": "talk"}, "status": {"replicas": 3}});
        if let Some(r) = ready {
            o["status"]["readyReplicas"] = json!(r);
        }
        o
    };
    assert_eq!(evaluate_object(&p, &set(Some(3))), Outcome::Healthy);
    assert_eq!(evaluate_object(&p, &set(Some(2))), Outcome::Healthy);
    let why = unhealthy(evaluate_object(&p, &set(Some(1))));
    assert_eq!(
        why,
        "StatefulSet talk/nats has 1 ready replicas, needs at least 2"
    );
    // Kubernetes leaves readyReplicas out when it is zero.
    let why = unhealthy(evaluate_object(&p, &set(None)));
    assert!(why.contains("has 0 ready replicas"), "{why}");
    let mut odd = set(None);
    odd["status"]["readyReplicas"] = json!("two");
    let why = unhealthy(evaluate_object(&p, &odd));
    assert!(why.contains("not a count"), "{why}");
}

#[test]
fn replicas_and_an_explicit_condition_are_both_checked() {
    let p = k8s(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "talk-server",
                       "minReadyReplicas": 2, "condition": "Available"}),
    );
    assert_eq!(
        evaluate_object(&p, &deployment("True", Some(2))),
        Outcome::Healthy
    );
    let why = unhealthy(evaluate_object(&p, &deployment("False", Some(3))));
    assert!(why.contains("Available is False"), "{why}");
    let why = unhealthy(evaluate_object(&p, &deployment("True", Some(1))));
    assert!(why.contains("1 ready replicas"), "{why}");
}

/// Objects keyed by (kind, namespace, name); records the namespaces asked for.
#[derive(Default)]
struct FakeObjects {
    objects: HashMap<(String, Option<String>, String), Value>,
    asked: Mutex<Vec<Option<String>>>,
    hang: bool,
}

impl ObjectSource for FakeObjects {
    fn get<'a>(
        &'a self,
        _api_version: &'a str,
        kind: &'a str,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            self.asked
                .lock()
                .expect("lock")
                .push(namespace.map(str::to_owned));
            if self.hang {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            let key = (
                kind.to_owned(),
                namespace.map(str::to_owned),
                name.to_owned(),
            );
            self.objects
                .get(&key)
                .cloned()
                .ok_or_else(|| format!("{kind} {name} not found"))
        })
    }
}

fn probe(kubernetes: Value, timeout: &str) -> Probe {
    serde_json::from_value(json!({"name": "k", "kubernetes": kubernetes, "timeout": timeout}))
        .expect("a valid probe")
}

#[tokio::test]
async fn prober_reads_from_the_source_in_the_right_namespace() {
    let mut fake = FakeObjects::default();
    fake.objects.insert(
        (
            "Deployment".into(),
            Some("talk".into()),
            "talk-server".into(),
        ),
        deployment("True", Some(3)),
    );
    let fake = Arc::new(fake);
    let prober = Prober::builder()
        .objects(fake.clone())
        .default_namespace("talk")
        .build()
        .expect("prober");
    let p = probe(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "talk-server"}),
        "1s",
    );
    assert_eq!(prober.sample(&p).await, Outcome::Healthy);
    let p = probe(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "talk-server",
               "namespace": "other"}),
        "1s",
    );
    let why = unhealthy(prober.sample(&p).await);
    assert_eq!(
        why,
        "could not read Deployment other/talk-server: Deployment talk-server not found"
    );
    assert_eq!(
        *fake.asked.lock().expect("lock"),
        vec![Some("talk".to_owned()), Some("other".to_owned())]
    );
}

#[tokio::test]
async fn a_hanging_source_is_cut_off_and_a_missing_one_is_unhealthy() {
    let fake = Arc::new(FakeObjects {
        hang: true,
        ..FakeObjects::default()
    });
    let prober = Prober::builder().objects(fake).build().expect("prober");
    let p = probe(
        json!({"apiVersion": "v1", "kind": "Node", "name": "node-a"}),
        "300ms",
    );
    let start = Instant::now();
    let why = unhealthy(prober.sample(&p).await);
    assert!(
        start.elapsed() < Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(why, "could not read Node node-a before the timeout");

    let without = Prober::builder().build().expect("prober");
    let why = unhealthy(without.sample(&p).await);
    assert!(why.contains("need an object source"), "{why}");
}
