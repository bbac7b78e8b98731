//! Kubernetes Events (`events.k8s.io/v1`) about the objects the operator reconciles, written
//! without kube-runtime's `Recorder`.
//!
//! The `Recorder` keeps every Event it wrote for six minutes, to count a repeat into the
//! first one's series. The operator's Events are news by construction (a new timeline
//! entry, a new condition, the Injections just created: see `status::notes`), so they
//! hardly ever repeat, and the cache only grew: at 1,000 live Experiments it held 9,000
//! Events and its hash table was the largest single allocation of the operator, 35 MiB of a
//! 99 MiB heap peak (heaptrack, `operator/benches/scale.rs`). Here each Event is written
//! once and forgotten.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::events::EventType;
use kube::{Api, Client};

use crate::status::Note;

/// Writes Events as one controller instance.
#[derive(Clone)]
pub struct EventWriter {
    client: Client,
    /// `reportingController`, e.g. `firedrill.dev/operator`.
    controller: String,
    /// `reportingInstance`: the replica.
    instance: String,
}

impl std::fmt::Debug for EventWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWriter")
            .field("controller", &self.controller)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl EventWriter {
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Self {
            client,
            controller: controller.to_owned(),
            instance: instance.to_owned(),
        }
    }

    /// Writes `note` as an Event about `regarding`, in its namespace (`default` for an
    /// object of the cluster's scope, as kubectl looks for them).
    pub async fn publish(&self, note: &Note, regarding: &ObjectReference) -> kube::Result<()> {
        let event = self.event(note, regarding, Timestamp::now());
        let namespace = event.metadata.namespace.as_deref().unwrap_or("default");
        Api::<Event>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), &event)
            .await
            .map(drop)
    }

    fn event(&self, note: &Note, regarding: &ObjectReference, now: Timestamp) -> Event {
        let subject = regarding.name.as_deref().unwrap_or(&self.controller);
        Event {
            metadata: ObjectMeta {
                // Unique per object and nanosecond, as kubectl's and client-go's are.
                name: Some(format!("{subject}.{:x}", now.as_nanosecond())),
                namespace: Some(
                    regarding
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".to_owned()),
                ),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(
                match note.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_owned(),
            ),
            reason: Some(note.reason.clone()),
            note: Some(note.note.clone()),
            action: Some(note.action.clone()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> EventWriter {
        // Never called: `event` only builds.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        EventWriter::new(client, "firedrill.dev/operator", "replica-1")
    }

    #[tokio::test]
    async fn an_event_says_what_happened_to_which_object_and_who_said_so() {
        let regarding = ObjectReference {
            kind: Some("Experiment".into()),
            namespace: Some("talk".into()),
            name: Some("zone-blackout".into()),
            uid: Some("u1".into()),
            ..ObjectReference::default()
        };
        let note = Note::new(EventType::Warning, "Failed", "p99 above 500 ms", "Verdict");
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let e = writer().event(&note, &regarding, now);
        assert_eq!(e.metadata.namespace.as_deref(), Some("talk"));
        let name = e.metadata.name.unwrap();
        assert!(name.starts_with("zone-blackout."), "{name}");
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.reason.as_deref(), Some("Failed"));
        assert_eq!(e.note.as_deref(), Some("p99 above 500 ms"));
        assert_eq!(e.action.as_deref(), Some("Verdict"));
        assert_eq!(e.regarding, Some(regarding));
        assert_eq!(e.event_time, Some(MicroTime(now)));
        assert_eq!(
            e.reporting_controller.as_deref(),
            Some("firedrill.dev/operator")
        );
        assert_eq!(e.reporting_instance.as_deref(), Some("replica-1"));
        assert!(e.series.is_none(), "written once, never a series");
    }

    #[tokio::test]
    async fn two_events_about_one_object_have_two_names_and_a_cluster_object_goes_to_default() {
        let regarding = ObjectReference {
            kind: Some("Node".into()),
            name: Some("zone-a".into()),
            ..ObjectReference::default()
        };
        let note = Note::new(EventType::Normal, "Cut", "", "Inject");
        let w = writer();
        let t = Timestamp::from_second(1_800_000_000).unwrap();
        let a = w.event(&note, &regarding, t);
        let b = w.event(
            &note,
            &regarding,
            t + k8s_openapi::jiff::SignedDuration::from_nanos(1),
        );
        assert_ne!(a.metadata.name, b.metadata.name);
        assert_eq!(a.metadata.namespace.as_deref(), Some("default"));
    }
}
