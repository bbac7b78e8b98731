//! The Injections as the Experiment controller's own watch last delivered them.
//!
//! At 1,000 live experiments a label-selected LIST per reconciliation was the API server's
//! largest request class (37 % of all requests). The controller's Injection watch already
//! carries every change, and it fills this store before it wakes the experiment, so a
//! reconciliation sees at least the change that woke it. What the store cannot show is this
//! operator's own writes that the watch has not delivered yet, so it only ever says "keep
//! waiting": a conclusion (applied, reverted, gone) is read again from the API server
//! before it counts (see `reconcile::injection_news`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use firedrill_core::api::Injection;
use futures_util::FutureExt;
use kube::ResourceExt;
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::watcher::Event;

use crate::EXPERIMENT_UID_LABEL;

/// The latest `revertedAt` among each experiment's deleted Injections, by experiment UID.
type RevertedAndGone = Arc<Mutex<HashMap<String, DateTime<Utc>>>>;

/// The controller's view of the Injections; empty until a controller attaches a watch.
#[derive(Default)]
pub struct SeenInjections {
    store: Mutex<Option<Store<Injection>>>,
    /// When the agents reverted the Injections that are gone now, from the watch's last copy
    /// of each: an Injection the operator deleted disappears once its agent has reverted
    /// and let it go, and the time its agent reported goes with it. Without this, a revert
    /// read after the deletion was dated when the operator got to read it (up to 68 s late
    /// at 1,000 experiments ending together, operator/README.md "Scale").
    reverted_and_gone: RevertedAndGone,
}

impl SeenInjections {
    /// A new store for a controller that starts now; a previous one (a controller that
    /// stopped when its replica lost the lease) is forgotten with it.
    pub fn attach(&self) -> Writer<Injection> {
        let (store, writer) = reflector::store();
        if let Ok(mut slot) = self.store.lock() {
            *slot = Some(store);
        }
        writer
    }

    /// The Injections of the experiment with `uid` as the watch shows them, or `None` when
    /// there is no watch or it has not listed yet (read the API server then).
    pub fn of(&self, uid: &str) -> Option<Vec<Injection>> {
        let store = self.store.lock().ok()?.clone()?;
        // Ready once the watch's first list is in; before that it would show nothing.
        let listed = store.wait_until_ready().now_or_never()?.is_ok();
        listed.then(|| {
            // Filtered under the store's lock: a reconciliation copies its own few, not an
            // `Arc` of every Injection of the cluster.
            store
                .state_filter(|i| {
                    i.labels().get(EXPERIMENT_UID_LABEL).map(String::as_str) == Some(uid)
                })
                .iter()
                .map(|i| Injection::clone(i))
                .collect()
        })
    }
}

impl SeenInjections {
    /// Records, for the watch's deletions, when each deleted Injection's agent reverted it.
    pub fn recorder(&self) -> impl Fn(&Event<Injection>) + Send + Sync + 'static {
        let gone = self.reverted_and_gone.clone();
        move |event| {
            if let Event::Delete(injection) = event
                && let Some(uid) = injection.labels().get(EXPERIMENT_UID_LABEL)
                && let Some(at) = injection.status.as_ref().and_then(|s| s.reverted_at)
                && let Ok(mut gone) = gone.lock()
            {
                let latest = gone.entry(uid.clone()).or_insert(at);
                *latest = (*latest).max(at);
            }
        }
    }

    /// The latest time an agent reverted an Injection of the experiment with `uid` that is
    /// gone now, if the watch saw one go with that time.
    fn reverted_and_gone(&self, uid: &str) -> Option<DateTime<Utc>> {
        self.reverted_and_gone.lock().ok()?.get(uid).copied()
    }

    /// The latest time an agent said it reverted an Injection of the experiment with `uid`,
    /// as the watch showed it: the last copy of those gone, and those it still shows. A
    /// fresh read can find every Injection gone before the watch has delivered their
    /// deletions (it lags under load), but the agent's status report comes before its
    /// finalizer is let go, so the watch has nearly always delivered that.
    pub fn reverted_at(&self, uid: &str) -> Option<DateTime<Utc>> {
        let shown = self
            .of(uid)
            .into_iter()
            .flatten()
            .filter_map(|i| i.status?.reverted_at);
        shown.chain(self.reverted_and_gone(uid)).max()
    }

    /// Forgets the experiment with `uid` (it completed or is gone).
    pub fn forget(&self, uid: &str) {
        if let Ok(mut gone) = self.reverted_and_gone.lock() {
            gone.remove(uid);
        }
    }
}

/// What the store keeps of an Injection: all but the managed fields, which no reader needs.
pub fn slim(injection: &mut Injection) {
    injection.managed_fields_mut().clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::at;
    use firedrill_core::api::InjectionSpec;
    use kube::runtime::watcher::Event;

    fn injection(name: &str, uid: &str) -> Injection {
        let spec = InjectionSpec {
            node_name: "node-a".into(),
            experiment: "talk/x".into(),
            action: crate::plan::isolate(vec![]),
            expires_at: at(100),
            hold_for: None,
            heartbeat: None,
        };
        let mut i = Injection::new(name, spec);
        i.metadata.namespace = Some("firedrill-system".into());
        i.labels_mut()
            .insert(EXPERIMENT_UID_LABEL.to_owned(), uid.to_owned());
        i
    }

    #[test]
    fn nothing_is_seen_before_a_watch_attaches_and_lists() {
        let seen = SeenInjections::default();
        assert!(seen.of("u1").is_none(), "no watch: read the API server");
        let mut writer = seen.attach();
        assert!(
            seen.of("u1").is_none(),
            "not listed yet: an empty store is no news"
        );
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(injection("a-1", "u1")));
        writer.apply_watcher_event(&Event::InitDone);
        assert_eq!(seen.of("u1").map(|v| v.len()), Some(1));
    }

    #[test]
    fn an_experiment_sees_only_its_own_injections_and_a_deletion_removes_one() {
        let seen = SeenInjections::default();
        let mut writer = seen.attach();
        writer.apply_watcher_event(&Event::Init);
        for (name, uid) in [("a-1", "u1"), ("a-2", "u1"), ("b-1", "u2")] {
            writer.apply_watcher_event(&Event::InitApply(injection(name, uid)));
        }
        writer.apply_watcher_event(&Event::InitDone);
        let mut names: Vec<String> = seen
            .of("u1")
            .unwrap()
            .iter()
            .map(|i| i.name_any())
            .collect();
        names.sort();
        assert_eq!(names, ["a-1", "a-2"]);
        writer.apply_watcher_event(&Event::Delete(injection("a-1", "u1")));
        assert_eq!(seen.of("u1").map(|v| v.len()), Some(1));
        assert_eq!(seen.of("u3").map(|v| v.len()), Some(0));
    }

    #[test]
    fn a_new_controller_starts_from_a_new_store() {
        let seen = SeenInjections::default();
        let mut first = seen.attach();
        first.apply_watcher_event(&Event::Init);
        first.apply_watcher_event(&Event::InitApply(injection("a-1", "u1")));
        first.apply_watcher_event(&Event::InitDone);
        let _second = seen.attach();
        assert!(
            seen.of("u1").is_none(),
            "the old store's view is not the new watch's"
        );
    }

    #[test]
    fn a_deleted_injection_leaves_the_time_its_agent_reverted_it() {
        use firedrill_core::api::{InjectionState, InjectionStatus};
        let reverted = |name: &str, uid: &str, at_s: i64| {
            let mut i = injection(name, uid);
            i.status = Some(InjectionStatus {
                state: InjectionState::Reverted,
                reverted_at: Some(at(at_s)),
                ..InjectionStatus::default()
            });
            i
        };
        let seen = SeenInjections::default();
        let record = seen.recorder();
        // Changes are no deletion; a deletion without a revert time (never applied) says
        // nothing.
        record(&Event::Apply(reverted("a-1", "u1", 50)));
        record(&Event::Delete(injection("a-0", "u1")));
        assert_eq!(seen.reverted_and_gone("u1"), None);
        record(&Event::Delete(reverted("a-1", "u1", 50)));
        record(&Event::Delete(reverted("a-2", "u1", 53)));
        record(&Event::Delete(reverted("a-3", "u1", 51)));
        record(&Event::Delete(reverted("b-1", "u2", 70)));
        assert_eq!(seen.reverted_and_gone("u1"), Some(at(53)), "the latest");
        assert_eq!(seen.reverted_and_gone("u2"), Some(at(70)));
        seen.forget("u1");
        assert_eq!(seen.reverted_and_gone("u1"), None);
        assert_eq!(seen.reverted_and_gone("u2"), Some(at(70)));
    }

    #[test]
    fn a_revert_is_known_from_the_watch_before_its_deletion_arrives() {
        use firedrill_core::api::{InjectionState, InjectionStatus};
        let mut reverted = injection("a-1", "u1");
        reverted.status = Some(InjectionStatus {
            state: InjectionState::Reverted,
            reverted_at: Some(at(58)),
            ..InjectionStatus::default()
        });
        let seen = SeenInjections::default();
        let mut writer = seen.attach();
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(injection("a-0", "u1")));
        writer.apply_watcher_event(&Event::InitDone);
        assert_eq!(seen.reverted_at("u1"), None, "nothing reverted yet");
        // The agent's report is in; its deletion is not (a fresh read may already miss it).
        writer.apply_watcher_event(&Event::Apply(reverted.clone()));
        assert_eq!(seen.reverted_at("u1"), Some(at(58)));
        // Gone: the recorder keeps what the store forgets.
        seen.recorder()(&Event::Delete(reverted.clone()));
        writer.apply_watcher_event(&Event::Delete(reverted));
        assert_eq!(seen.reverted_at("u1"), Some(at(58)));
        assert_eq!(seen.reverted_at("u2"), None);
    }
}
