//! What every controller of the operator shares: when an object is looked at again (one
//! clamp for every requeue), how a failed reconciliation is reported and retried, how a
//! parent kind is watched together with the children it owns, and the run loop.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use kube::core::NamespaceResourceScope;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::Error;
use crate::error::ErrorCategory;
use crate::reconcile::Context;
use crate::status::Note;

/// The soonest an object is looked at again. A wait computed from a time already passed
/// (or zero) would requeue at once and spin against the API server; 100 ms is far below
/// any probe interval or phase deadline, so nothing due is noticeably late.
pub const FLOOR: Duration = Duration::from_millis(100);

/// The longest an object is left alone, whatever its schedule says: clocks move and a
/// watch event can be missed, so every object is looked at again within five minutes.
pub const CEILING: Duration = Duration::from_secs(300);

/// Retry after a conflict (someone wrote since we read) or while agents are still
/// reverting: both settle within about a second.
pub const FAST_RETRY: Duration = Duration::from_secs(1);

/// Retry after any other failure: the API server or the network may need a moment.
pub const ERROR_RETRY: Duration = Duration::from_secs(5);

/// How often a refused plan is tried again (a namespace may opt in meanwhile).
pub const PLAN_RETRY: Duration = Duration::from_secs(30);

/// Reconciliations a controller runs at once, by default (`--max-concurrent-reconciles`).
/// Each is a short sequence of API calls (and probe reads), so this bounds what the
/// operator has in flight at the API server: unbounded, 1,000 experiments due together
/// were 1,000 reconciliations each waiting seconds for their calls (operator/README.md,
/// "Scale"); bounded, the rest wait their turn in the queue and each runs at the speed
/// the API server answers. kube-rs has no client-side rate limiter (client-go's QPS
/// and burst): this bound is the operator's rate limit, and the API server's priority
/// and fairness is the server's. Measured on the e2e cluster with 200 live experiments
/// (a reconciliation took ~1 s there, the API server at under half a core): 32 fell
/// behind (apply to fault asked for p50 52 s, experiments waiting minutes for their first
/// reconciliation), 128 kept up (p50 19 s, the 5 s steady-state window included).
pub const CONCURRENCY: u16 = 128;
// kube-runtime takes 0 for "unbounded".
const _: () = assert!(CONCURRENCY > 0);

/// Triggers of one object this close together are one reconciliation: an agent's two
/// writes when it applies (finalizer, then status), or a burst of watch events. Short
/// beside every deadline the engine keeps.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// The controller settings every controller of the operator runs with.
pub fn config(concurrency: u16) -> controller::Config {
    controller::Config::default()
        .concurrency(concurrency)
        .debounce(DEBOUNCE)
}

/// `wait` within [`FLOOR`] and [`CEILING`].
pub fn clamped(wait: Duration) -> Duration {
    wait.clamp(FLOOR, CEILING)
}

/// Look at the object again after `wait`, clamped: the one way the controllers requeue.
#[allow(clippy::disallowed_methods)] // the one call clippy.toml leaves to this function
pub fn after(wait: Duration) -> Action {
    Action::requeue(clamped(wait))
}

/// How long from `now` until `at`; zero once it has passed.
pub fn until(at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or(Duration::ZERO)
}

/// Look at the object again at `at` (by [`after`]: a time passed is [`FLOOR`] away).
pub fn at(at: DateTime<Utc>, now: DateTime<Utc>) -> Action {
    after(until(at, now))
}

/// How soon a failed reconciliation is retried, by category.
pub fn retry_after(error: &Error) -> Duration {
    use ErrorCategory as C;
    match error.category() {
        C::RevertPending | C::Conflict => FAST_RETRY,
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
        | C::Serve => ERROR_RETRY,
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
    after(retry_after(error))
}

/// Runs one reconciliation of `object` as every controller does: counted and timed, a
/// failure counted by category and, unless its category is in `quiet` (retried soon, or
/// reported otherwise), published as a Warning Event on the object.
pub async fn reported<K>(
    ctx: &Context,
    object: &K,
    quiet: &[ErrorCategory],
    reconciliation: impl Future<Output = Result<Action, Error>>,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
{
    let _timer = ctx.metrics.reconcile();
    let result = reconciliation.await;
    if let Err(error) = &result {
        ctx.metrics.failure(error);
        if !quiet.contains(&error.category()) {
            let note = Note::new(
                EventType::Warning,
                error.reason(),
                &error.to_string(),
                "Reconcile",
            );
            ctx.publish(object, &note).await;
        }
    }
    result
}

/// Runs `controller` with `reconcile` and the [`on_error`] policy until `stop` completes;
/// reconciliations in flight finish first.
pub async fn run<K, Ctx, Fut>(
    controller: Controller<K>,
    reconcile: impl FnMut(Arc<K>, Arc<Ctx>) -> Fut,
    ctx: Arc<Ctx>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    controller
        .graceful_shutdown_on(stop)
        .run(
            reconcile,
            |object, error, _| on_error(object.as_ref(), error),
            ctx,
        )
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(%object, "reconciled"),
                Err(e) => tracing::debug!(kind = %K::kind(&()), error = %e, "controller"),
            }
        })
        .await;
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
    Controller::new(parents, watched)
        .owns(children, owned)
        .with_config(config(ctx.concurrency))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::at as t;

    #[test]
    fn the_clamp_holds_at_its_edges() {
        let nano = Duration::from_nanos(1);
        assert_eq!(clamped(Duration::ZERO), FLOOR);
        assert_eq!(clamped(FLOOR - nano), FLOOR);
        assert_eq!(clamped(FLOOR), FLOOR);
        assert_eq!(clamped(FLOOR + nano), FLOOR + nano);
        assert_eq!(clamped(Duration::from_secs(60)), Duration::from_secs(60));
        assert_eq!(clamped(CEILING - nano), CEILING - nano);
        assert_eq!(clamped(CEILING), CEILING);
        assert_eq!(clamped(CEILING + nano), CEILING);
        assert_eq!(clamped(Duration::MAX), CEILING);
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // the expected values are the raw requeues
    fn a_requeue_at_a_time_is_clamped_too() {
        assert_eq!(at(t(0), t(10)), Action::requeue(FLOOR), "passed");
        assert_eq!(at(t(10), t(10)), Action::requeue(FLOOR), "now");
        assert_eq!(
            at(t(12), t(10)),
            Action::requeue(Duration::from_secs(2)),
            "soon"
        );
        assert_eq!(at(t(86_400), t(0)), Action::requeue(CEILING), "far off");
        assert_eq!(until(t(0), t(10)), Duration::ZERO);
        assert_eq!(until(t(12), t(10)), Duration::from_secs(2));
    }

    #[test]
    fn the_debounce_is_far_below_every_wait() {
        assert!(DEBOUNCE < FLOOR * 2);
    }

    #[test]
    fn every_retry_is_inside_the_clamp() {
        for retry in [FAST_RETRY, ERROR_RETRY, PLAN_RETRY] {
            assert_eq!(clamped(retry), retry);
        }
    }
}
