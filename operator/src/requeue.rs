//! What every controller of the operator shares: how a failed reconciliation is logged and
//! retried, and how a parent kind is watched together with the children it owns.

use std::fmt::Debug;
use std::time::Duration;

use kube::core::NamespaceResourceScope;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::Error;
use crate::error::ErrorCategory;
use crate::reconcile::Context;

/// How often a refused plan is tried again (a namespace may opt in meanwhile).
pub const PLAN_RETRY: Duration = Duration::from_secs(30);

/// How soon a failed reconciliation is retried, by category.
pub fn retry_after(error: &Error) -> Duration {
    use ErrorCategory as C;
    match error.category() {
        C::RevertPending | C::Conflict => Duration::from_secs(1),
        C::Plan => PLAN_RETRY,
        C::NotFound
        | C::Forbidden
        | C::Rejected
        | C::KubeApi
        | C::Finalizer
        | C::Object
        | C::Encode
        | C::Lease
        | C::Setup
        | C::Serve => Duration::from_secs(5),
    }
}

/// The error policy of every controller: log what failed, with its category, and retry as
/// [`retry_after`] says.
pub fn on_error<K>(object: &K, error: &Error) -> Action
where
    K: Resource<DynamicType = ()>,
{
    tracing::warn!(
        kind = %K::kind(&()),
        name = %object.name_any(),
        namespace = ?object.namespace(),
        category = error.category().as_str(),
        error = %error,
        "reconcile failed"
    );
    Action::requeue(retry_after(error))
}

/// A controller of `P` (in the watched namespace or all, matching the operator's selector)
/// that also wakes a parent when a child labelled `owner_label` that it owns changes.
pub fn owning<P, C>(ctx: &Context, owner_label: &str) -> Controller<P>
where
    P: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
    C: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let client = ctx.client.clone();
    let (parents, children): (Api<P>, Api<C>) = match &ctx.watch_namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let mut watched = watcher::Config::default();
    if let Some(selector) = &ctx.experiment_selector {
        watched = watched.labels(selector);
    }
    let owned = watcher::Config::default().labels(owner_label);
    Controller::new(parents, watched).owns(children, owned)
}
