//! A namespace of its own for each test, uniquely named, so tests can run side by side on
//! one cluster and leave nothing behind: created labelled, freed of the finalizers a test
//! may leave on its objects, deleted.

use std::fmt::Debug;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::{Error, Result};
use crate::wait::eventually_every;

/// `<prefix>-<six hex digits of the clock>`: a fresh name for each run of a test (a
/// namespace still terminating from the last run never collides).
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{:06x}", Utc::now().timestamp_micros() & 0xff_ffff)
}

/// A namespace a test made. Deleting it is explicit ([`TestNamespace::delete`]): the
/// deletion is an API call, which a `Drop` could not wait for.
#[derive(Clone)]
pub struct TestNamespace {
    /// Its name (read it; the namespace keeps this one).
    pub name: String,
    client: Client,
}

impl Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TestNamespace {
    /// Creates namespace `name` with `labels`.
    pub async fn create(client: &Client, name: &str, labels: &[(&str, &str)]) -> Result<Self> {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        Ok(Self {
            name: name.to_owned(),
            client: client.clone(),
        })
    }

    /// Frees every `K` in this namespace of its finalizers (see [`release_finalizers`]).
    pub async fn release<K>(&self) -> Result<()>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        release_finalizers::<K>(&self.client, &self.name).await
    }

    /// Asks for the namespace to be deleted, without waiting for it to go.
    pub async fn delete(self) -> Result<()> {
        Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::background())
            .await?;
        Ok(())
    }

    /// Deletes the namespace and waits, looking every second, until it is gone.
    pub async fn delete_and_wait(self, timeout: Duration) -> Result<()> {
        let (client, name) = (self.client.clone(), self.name.clone());
        self.delete().await?;
        let namespaces: Api<Namespace> = Api::all(client);
        eventually_every(timeout, Duration::from_secs(1), || async {
            matches!(namespaces.get_opt(&name).await, Ok(None)).then_some(())
        })
        .await
        .ok_or_else(|| Error::Timeout {
            what: format!("namespace {name} gone"),
            timeout,
        })
    }
}

/// Frees every `K` in namespace `ns` of its finalizers, so the namespace can go although
/// the controller or agent that would remove them is stopped (or is the test itself).
/// Each object is patched on its own; one that cannot be is passed over.
pub async fn release_finalizers<K>(client: &Client, ns: &str) -> Result<()>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let clear = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    for object in api.list(&ListParams::default()).await?.items {
        let _ = api
            .patch(&object.name_any(), &PatchParams::default(), &clear)
            .await;
    }
    Ok(())
}
