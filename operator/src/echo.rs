//! Telling a reconciliation's own status write, coming back through the Experiment watch
//! (an "echo"), from news.
//!
//! Every status write changes the Experiment, so the watch hands it straight back: one more
//! reconciliation that lists the Injections and steps the engine to find nothing new. At a
//! thousand experiments sampling every few seconds that is half of all reconciliations and a
//! third of the API calls. A reconciliation is an echo when the Experiment is exactly what
//! the last successful one left (same resourceVersion), none of its Injections changed since
//! that one started (the Injection watch marks them), and the engine's next time has not come:
//! then nothing can have changed that the engine would act on, and the reconciliation only
//! requeues at that time. Anything else — a spec, annotation, finalizer or deletion change, an
//! agent's report, a failed or unrecorded reconciliation, the time come — reconciles in full.
//!
//! The other way round, a reconciliation can start from a copy that *predates* the last one's
//! status write: an agent's report or the engine's time wakes it before the watch has brought
//! that write back (at N=1,000, 17,347 of 66,640 reconciliations). Its status write would be
//! refused (it is conditional on the copy's resourceVersion) after it had sampled and listed
//! for nothing. Only the operator writes an Experiment's status, so a copy whose status is not
//! the one last written, soon after that write, is stale ([`Echoes::stale`]): it waits for the
//! watch, keeping the marks, and a copy changed by someone else (metadata) is not stale.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

#[derive(Debug, Default)]
struct Entry {
    /// The Experiment's resourceVersion as the last successful reconciliation left it.
    resource_version: Option<String>,
    /// When the engine wants to be stepped again.
    due: Option<DateTime<Utc>>,
    /// An Injection of it changed since the last reconciliation started.
    touched: bool,
    /// The status the last reconciliation wrote (its digest) and when.
    wrote: Option<(u64, DateTime<Utc>)>,
}

/// How long after a status write a copy without it is taken for stale: past that, the
/// reconciliation runs in full (and a truly stale copy's write is refused).
pub const STALE_FOR: TimeDelta = TimeDelta::seconds(10);

/// A digest of a status as the API server returned it, to tell copies with and without a
/// write apart. Statuses hold floats, so they are digested as JSON.
pub fn digest(status: &impl serde::Serialize) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let json = serde_json::to_vec(status).ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    json.hash(&mut hasher);
    Some(hasher.finish())
}

/// What the last successful reconciliation of each experiment left, by `namespace/name`.
#[derive(Debug, Default)]
pub struct Echoes {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Echoes {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> T) -> Option<T> {
        // A poisoned lock only loses the shortcut: every reconciliation then runs in full.
        self.entries.lock().ok().map(|mut entries| f(&mut entries))
    }

    /// An Injection of `key` changed: its next reconciliation is news.
    pub fn touched(&self, key: &str) {
        self.with(|e| e.entry(key.to_owned()).or_default().touched = true);
    }

    /// A full reconciliation of `key` starts: what it reads is newer than any mark so far,
    /// and until it succeeds nothing of it is recorded.
    pub fn begin(&self, key: &str) {
        self.with(|e| e.remove(key));
    }

    /// The reconciliation of `key` succeeded and left the Experiment at `resource_version`,
    /// due again at `due`; `wrote` is the digest of the status it wrote and when, if it did.
    /// A mark made meanwhile stays.
    pub fn done(
        &self,
        key: &str,
        resource_version: Option<String>,
        wrote: Option<(u64, DateTime<Utc>)>,
        due: DateTime<Utc>,
    ) {
        self.with(|e| {
            let entry = e.entry(key.to_owned()).or_default();
            entry.resource_version = resource_version;
            entry.wrote = wrote;
            entry.due = Some(due);
        });
    }

    /// Whether a copy of `key` at `resource_version` with `status` predates the last
    /// reconciliation's status write (see the module's docs). The status is digested only
    /// when the copy is another version soon after a write, outside the lock.
    pub fn stale(
        &self,
        key: &str,
        resource_version: Option<&str>,
        status: &impl serde::Serialize,
        now: DateTime<Utc>,
    ) -> bool {
        let wrote = self
            .with(|e| {
                let entry = e.get(key)?;
                let (wrote, at) = entry.wrote?;
                let other = resource_version.is_some()
                    && entry.resource_version.as_deref() != resource_version;
                (other && now - at < STALE_FOR).then_some(wrote)
            })
            .flatten();
        wrote.is_some_and(|wrote| digest(status) != Some(wrote))
    }

    /// Forgets `key` (deleted, completed).
    pub fn forget(&self, key: &str) {
        self.begin(key);
    }

    /// When `key`, at `resource_version`, is due, if reconciling it now would be an echo.
    pub fn echo(
        &self,
        key: &str,
        resource_version: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        self.with(|e| {
            let entry = e.get(key)?;
            let same =
                resource_version.is_some() && entry.resource_version.as_deref() == resource_version;
            let due = entry.due?;
            (same && !entry.touched && now < due).then_some(due)
        })
        .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::at;

    #[test]
    fn only_the_same_object_untouched_before_its_time_is_an_echo() {
        let echoes = Echoes::default();
        assert_eq!(echoes.echo("ns/e", Some("1"), at(0)), None, "never seen");
        echoes.begin("ns/e");
        echoes.done("ns/e", Some("7".into()), None, at(10));
        assert_eq!(echoes.echo("ns/e", Some("7"), at(5)), Some(at(10)));
        assert_eq!(echoes.echo("ns/e", Some("8"), at(5)), None, "changed since");
        assert_eq!(echoes.echo("ns/e", None, at(5)), None, "no version");
        assert_eq!(echoes.echo("ns/e", Some("7"), at(10)), None, "due");
        assert_eq!(echoes.echo("ns/other", Some("7"), at(5)), None);
        echoes.touched("ns/e");
        assert_eq!(
            echoes.echo("ns/e", Some("7"), at(5)),
            None,
            "an agent reported"
        );
    }

    #[test]
    fn a_mark_made_during_a_reconciliation_survives_it() {
        let echoes = Echoes::default();
        echoes.begin("ns/e");
        echoes.touched("ns/e");
        echoes.done("ns/e", Some("7".into()), None, at(10));
        assert_eq!(echoes.echo("ns/e", Some("7"), at(5)), None);
        // The reconciliation that mark causes reads everything again.
        echoes.begin("ns/e");
        echoes.done("ns/e", Some("7".into()), None, at(10));
        assert_eq!(echoes.echo("ns/e", Some("7"), at(5)), Some(at(10)));
    }

    #[test]
    fn a_copy_without_the_last_status_write_is_stale_for_a_while() {
        let echoes = Echoes::default();
        let (older, written) = (
            serde_json::json!({"phase": "SteadyStateBefore"}),
            serde_json::json!({"phase": "Injecting"}),
        );
        echoes.begin("ns/e");
        let wrote = digest(&written).map(|d| (d, at(0)));
        echoes.done("ns/e", Some("8".into()), wrote, at(5));
        // The copy from before the write (version 7, another status): stale.
        assert!(echoes.stale("ns/e", Some("7"), &older, at(1)));
        // The write itself come back, or a newer copy that carries it: not stale.
        assert!(!echoes.stale("ns/e", Some("8"), &written, at(1)));
        assert!(
            !echoes.stale("ns/e", Some("9"), &written, at(1)),
            "annotated since"
        );
        // Long after the write, a copy without it has another writer: reconcile in full.
        assert!(!echoes.stale("ns/e", Some("7"), &older, at(10)));
        // No write recorded, or none at all: nothing is stale.
        echoes.done("ns/e", Some("8".into()), None, at(5));
        assert!(!echoes.stale("ns/e", Some("7"), &older, at(1)));
        assert!(!echoes.stale("ns/other", Some("7"), &older, at(1)));
    }

    #[test]
    fn a_failed_or_forgotten_reconciliation_leaves_nothing_to_skip() {
        let echoes = Echoes::default();
        echoes.begin("ns/e");
        echoes.done("ns/e", Some("7".into()), None, at(10));
        // The next one started and failed: no record, its retry runs in full.
        echoes.begin("ns/e");
        assert_eq!(echoes.echo("ns/e", Some("7"), at(5)), None);
        echoes.done("ns/e", Some("7".into()), None, at(10));
        echoes.forget("ns/e");
        assert_eq!(echoes.echo("ns/e", Some("7"), at(5)), None);
    }
}
