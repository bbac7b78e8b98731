//! `kubernetes` probes: an object's condition or ready replicas. Objects come from an
//! [`ObjectSource`], so this crate needs no Kubernetes client; the operator provides one.

use std::future::Future;
use std::pin::Pin;

use firedrill_core::api::KubernetesProbe;
use firedrill_core::engine::Outcome;
use serde_json::Value;
use tokio::time::Instant;

/// A boxed, sendable future, so that [`ObjectSource`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Reads Kubernetes objects as JSON.
pub trait ObjectSource: Send + Sync {
    /// The object `kind` of `api_version` (e.g. `apps/v1`, `Deployment`) called `name`;
    /// `namespace` is the probe's or the prober's default, `None` when neither is set; a
    /// source ignores it for cluster-scoped kinds. The error says why the object could not
    /// be read (not found, forbidden, API server unreachable).
    fn get<'a>(
        &'a self,
        api_version: &'a str,
        kind: &'a str,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Value, String>>;
}

pub(crate) async fn check(
    source: &dyn ObjectSource,
    probe: &KubernetesProbe,
    default_namespace: Option<&str>,
    deadline: Instant,
) -> Outcome {
    let namespace = probe.namespace.as_deref().or(default_namespace);
    let what = display_name(&probe.kind, namespace, &probe.name);
    let get = source.get(&probe.api_version, &probe.kind, namespace, &probe.name);
    match tokio::time::timeout_at(deadline, get).await {
        Ok(Ok(object)) => evaluate_object(probe, &object),
        Ok(Err(why)) => Outcome::Unhealthy(format!("could not read {what}: {why}")),
        Err(_) => Outcome::Unhealthy(format!("could not read {what} before the timeout")),
    }
}

/// The condition checked when the probe names none.
pub fn default_condition(kind: &str) -> &'static str {
    if kind == "Deployment" {
        "Available"
    } else {
        "Ready"
    }
}

/// Judges an object: `minReadyReplicas` when set, and the condition when one is named or
/// no replica count is asked for (so setting both checks both).
pub fn evaluate_object(probe: &KubernetesProbe, object: &Value) -> Outcome {
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .or(probe.namespace.as_deref());
    let what = display_name(&probe.kind, namespace, &probe.name);
    let status = object.get("status");
    if let Some(min) = probe.min_ready_replicas {
        // Kubernetes omits zero counts from status.
        let ready = status
            .and_then(|s| s.get("readyReplicas"))
            .map_or(Some(0), Value::as_u64);
        match ready {
            None => {
                return Outcome::Unhealthy(format!(
                    "{what} has a status.readyReplicas that is not a count"
                ));
            }
            Some(ready) if ready < u64::from(min) => {
                return Outcome::Unhealthy(format!(
                    "{what} has {ready} ready replicas, needs at least {min}"
                ));
            }
            Some(_) => {}
        }
    }
    if probe.condition.is_none() && probe.min_ready_replicas.is_some() {
        return Outcome::Healthy;
    }
    let wanted = probe
        .condition
        .as_deref()
        .unwrap_or_else(|| default_condition(&probe.kind));
    let condition = status
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .and_then(|all| {
            all.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(wanted))
        });
    let Some(condition) = condition else {
        return Outcome::Unhealthy(format!("{what} has no {wanted} condition"));
    };
    let value = condition
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("missing");
    if value == "True" {
        return Outcome::Healthy;
    }
    let detail: Vec<&str> = ["reason", "message"]
        .iter()
        .filter_map(|k| condition.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .collect();
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(" ({})", detail.join(": "))
    };
    Outcome::Unhealthy(format!("{what}: {wanted} is {value}{detail}"))
}

fn display_name(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}
