//! The Injections as the Experiment controller's own watch last delivered them.
//!
//! At 1,000 live experiments a label-selected LIST per reconciliation was the API server's
//! largest request class (37 % of all requests). The controller's Injection watch already
//! carries every change, and it fills this store before it wakes the experiment, so a
//! reconciliation sees at least the change that woke it. What the store cannot show is this
//! operator's own writes that the watch has not delivered yet, so it only ever says "keep
//! waiting": a conclusion (applied, reverted, gone) is read again from the API server
//! before it counts (see `reconcile::injection_news`).

use std::sync::Mutex;

use firedrill_core::api::Injection;
use futures_util::FutureExt;
use kube::ResourceExt;
use kube::runtime::reflector::{self, Store, store::Writer};

use crate::EXPERIMENT_UID_LABEL;

/// The controller's view of the Injections; empty until a controller attaches a watch.
#[derive(Default)]
pub struct SeenInjections {
    store: Mutex<Option<Store<Injection>>>,
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
}
