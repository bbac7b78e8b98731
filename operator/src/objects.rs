//! Reads any Kubernetes object for `kubernetes` probes (the probes crate has no client).

use std::collections::HashMap;
use std::sync::Mutex;

use firedrill_probes::{BoxFuture, ObjectSource};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::{ApiCapabilities, ApiResource, Scope, pinned_kind};
use kube::{Api, Client};
use serde_json::Value;

/// An [`ObjectSource`] over the API server, with the discovery of each kind cached.
pub struct KubeObjects {
    client: Client,
    kinds: Mutex<HashMap<(String, String), (ApiResource, ApiCapabilities)>>,
}

impl std::fmt::Debug for KubeObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeObjects").finish_non_exhaustive()
    }
}

/// `apps/v1` → (`apps`, `v1`); `v1` → (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

impl KubeObjects {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    async fn resource(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, ApiCapabilities), String> {
        let key = (api_version.to_owned(), kind.to_owned());
        if let Some(found) = self.kinds.lock().ok().and_then(|k| k.get(&key).cloned()) {
            return Ok(found);
        }
        let (group, version) = split_api_version(api_version);
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let found = pinned_kind(&self.client, &gvk)
            .await
            .map_err(|e| format!("{api_version} {kind} is not served: {e}"))?;
        if let Ok(mut kinds) = self.kinds.lock() {
            kinds.insert(key, found.clone());
        }
        Ok(found)
    }

    async fn read(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, String> {
        let (resource, capabilities) = self.resource(api_version, kind).await?;
        let api: Api<DynamicObject> = match (capabilities.scope, namespace) {
            (Scope::Cluster, _) => Api::all_with(self.client.clone(), &resource),
            (Scope::Namespaced, Some(ns)) => {
                Api::namespaced_with(self.client.clone(), ns, &resource)
            }
            (Scope::Namespaced, None) => {
                return Err(format!(
                    "{kind} is namespaced and the probe names no namespace"
                ));
            }
        };
        let object = api.get(name).await.map_err(|e| match e {
            kube::Error::Api(s) if s.is_not_found() => "not found".to_owned(),
            kube::Error::Api(s) if s.is_forbidden() => {
                format!("forbidden to the operator: {}", s.message)
            }
            other => other.to_string(),
        })?;
        serde_json::to_value(object).map_err(|e| e.to_string())
    }
}

impl ObjectSource for KubeObjects {
    fn get<'a>(
        &'a self,
        api_version: &'a str,
        kind: &'a str,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(self.read(api_version, kind, namespace, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_split_into_group_and_version() {
        assert_eq!(split_api_version("apps/v1"), ("apps", "v1"));
        assert_eq!(split_api_version("v1"), ("", "v1"));
        assert_eq!(
            split_api_version("firedrill.dev/v1alpha1"),
            ("firedrill.dev", "v1alpha1")
        );
    }
}
