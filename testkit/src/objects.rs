//! The objects the cluster tests make, and what the cluster says of them: every suite
//! writes firedrill objects labelled [`TEST_LABEL`](crate::TEST_LABEL) and reads the
//! Events its controller under test records.

use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::TEST_LABEL;
use crate::error::Result;

/// A `K` (an Experiment, a GameDay, …) named `name` in namespace `ns` with `spec`,
/// labelled `firedrill.dev/test=<test>`: the tests' objects, which a deployed operator
/// leaves alone.
pub fn labelled<K>(name: &str, ns: &str, test: &str, spec: Value) -> Result<K>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    Ok(serde_json::from_value(json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": name, "namespace": ns, "labels": {TEST_LABEL: test}},
        "spec": spec,
    }))?)
}

/// The reasons of the Events (events.k8s.io) in namespace `ns` regarding the object
/// `name`, oldest first as the API server lists them.
pub async fn event_reasons(client: &Client, ns: &str, name: &str) -> Result<Vec<String>> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    Ok(events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect())
}
