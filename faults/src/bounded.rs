//! Calls into the kernel that can hang, bounded in time.
//!
//! A mount onto a path below a hung FUSE or NFS server, a `/proc` read that waits on the
//! mount table's lock while such a mount is stuck, a signal round to a process in
//! uninterruptible sleep: any of these can block its thread for good. A fault operation
//! therefore runs on a thread of its own and the caller stops waiting after a limit, so one
//! hung call cannot hold up the reverts of the other injections on the node. (`nft` runs
//! are child processes and are killed instead, and the netlink path stops waiting for the
//! kernel's answers: see [`crate::nft::NFT_TIMEOUT`].)
//!
//! A call that timed out may still finish later. While it runs, its injection is *busy*:
//! another call on the same injection is refused at once rather than run beside it, so a
//! revert can never report "nothing in place" and drop the journal record just before a
//! late apply lands. The record stays and a later revert (the retry, expiry or
//! `cleanup_all`) undoes whatever the late call did.

use std::collections::BTreeSet;
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::id::InjectionId;

/// The longest one fault operation may take: resolving a target (`/proc`, the mount table),
/// applying, checking or reverting it. Each takes milliseconds when the kernel answers; an
/// `nft` apply is itself bounded by 10 s, so this leaves room for one plus its checks.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Injections with a call still running on a thread, including ones that timed out.
static BUSY: Mutex<BTreeSet<InjectionId>> = Mutex::new(BTreeSet::new());

fn with_busy<T>(f: impl FnOnce(&mut BTreeSet<InjectionId>) -> T) -> T {
    // A panic elsewhere while the set was held leaves it intact: keep using it.
    f(&mut BUSY.lock().unwrap_or_else(PoisonError::into_inner))
}

/// Marks `id` busy until dropped (on the worker thread, when the call really returns).
struct BusyGuard(InjectionId);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        with_busy(|busy| busy.remove(&self.0));
    }
}

/// Runs `f` on its own thread and waits at most `limit` for it; `what` names the call in
/// the timeout error. With `id`, the injection is busy while `f` runs, and a call on an
/// injection that is already busy fails at once.
pub fn bounded<T, E, F>(id: Option<&InjectionId>, what: &str, limit: Duration, f: F) -> Result<T, E>
where
    T: Send + 'static,
    E: From<Error> + Send + 'static,
    F: FnOnce() -> Result<T, E> + Send + 'static,
{
    let guard = match id {
        Some(id) => {
            if !with_busy(|busy| busy.insert(id.clone())) {
                return Err(Error::Busy {
                    id: id.to_string(),
                    what: what.to_owned(),
                }
                .into());
            }
            Some(BusyGuard(id.clone()))
        }
        None => None,
    };
    let (done, result) = sync_channel(1);
    std::thread::Builder::new()
        .name("firedrill-call".into())
        .spawn(move || {
            let out = f();
            drop(guard);
            // The caller may have stopped waiting: nobody to tell then.
            let _ = done.send(out);
        })
        .map_err(|e| Error::Internal(format!("cannot start a thread for {what}: {e}")))?;
    match result.recv_timeout(limit) {
        Ok(out) => out,
        Err(RecvTimeoutError::Timeout) => Err(Error::Timeout {
            what: what.to_owned(),
            after: limit,
        }
        .into()),
        Err(RecvTimeoutError::Disconnected) => {
            Err(Error::Internal(format!("the thread of {what} panicked")).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    fn id(s: &str) -> InjectionId {
        InjectionId::new(s).expect("valid id")
    }

    #[test]
    fn a_call_that_answers_in_time_returns_its_result() {
        let out: Result<u32> = bounded(Some(&id("quick")), "adding", CALL_TIMEOUT, || Ok(2 + 2));
        assert_eq!(out.expect("in time"), 4);
        // Its injection is free again for the next call.
        let again: Result<()> = bounded(Some(&id("quick")), "again", CALL_TIMEOUT, || Ok(()));
        assert!(again.is_ok());
    }

    #[test]
    fn a_hung_call_times_out_and_keeps_its_injection_busy_until_it_returns() {
        let (release, hung) = channel::<()>();
        let started = std::time::Instant::now();
        let out: Result<()> = bounded(
            Some(&id("hung")),
            "mounting",
            Duration::from_millis(100),
            move || {
                let _ = hung.recv();
                Ok(())
            },
        );
        let waited = started.elapsed();
        assert!(
            matches!(&out, Err(Error::Timeout { what, .. }) if what == "mounting"),
            "{out:?}"
        );
        assert!(waited < Duration::from_secs(5), "waited {waited:?}");

        // A revert of the same injection does not run beside the late apply...
        let beside: Result<()> = bounded(Some(&id("hung")), "reverting", CALL_TIMEOUT, || Ok(()));
        assert!(matches!(beside, Err(Error::Busy { .. })), "{beside:?}");
        // ...while other injections go on.
        let other: Result<()> = bounded(Some(&id("other")), "reverting", CALL_TIMEOUT, || Ok(()));
        assert!(other.is_ok());

        // Once the hung call returns, its injection is free again.
        release.send(()).expect("the hung call waits");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let after: Result<()> =
                bounded(Some(&id("hung")), "reverting", CALL_TIMEOUT, || Ok(()));
            if after.is_ok() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still busy: {after:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_call_that_panics_is_an_internal_error() {
        let out: Result<()> = bounded(None, "panicking", CALL_TIMEOUT, || panic!("a bug"));
        assert!(matches!(out, Err(Error::Internal(_))), "{out:?}");
    }
}
