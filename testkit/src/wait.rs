//! Waiting for something to be so on the cluster: a check polled until it gives a value or
//! the time is up. Every cluster test waits on the controllers it drives.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use firedrill_core::api::{Experiment, Phase};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// How often [`eventually`], [`until`] and [`gone`] look.
pub const POLL: Duration = Duration::from_millis(200);

/// Polls `check` every [`POLL`] until it gives a value, or `None` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_every(timeout, POLL, check).await
}

/// Polls `check` every `every` until it gives a value, or `None` after `timeout` (a slower
/// pace for the long waits of the e2e tests).
pub async fn eventually_every<T, F, Fut>(
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// [`eventually`], for a test that cannot go on without the value.
///
/// # Panics
///
/// With `timed out: <what>` when `check` gives nothing within `timeout`.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match eventually(timeout, check).await {
        Some(value) => value,
        None => panic!("timed out: {what} (within {timeout:?})"),
    }
}

/// Whether object `name` is gone from `api` (not found) within `timeout`.
pub async fn gone<K>(api: &Api<K>, name: &str, timeout: Duration) -> bool
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    eventually(timeout, || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await
    .is_some()
}

/// Experiment `name` once it is in `phase`, looked at every `every`.
///
/// # Panics
///
/// When it is not in `phase` within `timeout`, with its status then.
pub async fn phase(
    api: &Api<Experiment>,
    name: &str,
    phase: Phase,
    timeout: Duration,
    every: Duration,
) -> Experiment {
    let found = eventually_every(timeout, every, || async {
        let e = api.get(name).await.ok()?;
        (e.status.as_ref()?.phase == phase).then_some(e)
    })
    .await;
    match found {
        Some(e) => e,
        None => {
            let now = api.get(name).await.ok().and_then(|e| e.status);
            panic!("{name} did not reach {phase:?} in {timeout:?}; status: {now:#?}")
        }
    }
}
