//! The operator's calls to the API server, and nothing else: listing what planning needs,
//! creating and deleting Injections, deleting pods for one-shot faults.
//!
//! Every list is paged ([`PAGE_SIZE`] objects a request, following `continue`), so no one
//! answer holds a whole large namespace: the API server serves and the operator decodes at
//! most a page at a time, whatever the cluster's size.

use std::fmt::Debug;
use std::future::Future;

use firedrill_core::api::{ExperimentSpec, Injection};
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::plan::{Candidates, PodDeletion};
use crate::{AGENT_FINALIZER, EXPERIMENT_UID_LABEL, Error, FIELD_MANAGER};

/// Whether an API error means "already so": the object is gone, exists, or was replaced.
fn already(error: &kube::Error, codes: &[u16]) -> bool {
    matches!(error, kube::Error::Api(s) if codes.contains(&s.code))
}

/// Objects asked for per list request: the API server's own suggestion for a chunk
/// (client-go's pager and kube-runtime's watcher use the same).
pub const PAGE_SIZE: u32 = 500;

/// Collects every page: `fetch` gets the `continue` token of the page before (none for the
/// first) and returns a page's items and the next token (none or empty after the last).
pub async fn paged<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, Error>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), Error>>,
{
    let mut all = Vec::new();
    let mut token = None;
    loop {
        let (items, next) = fetch(token).await?;
        all.extend(items);
        match next.filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t),
            None => return Ok(all),
        }
    }
}

/// Everything `params` selects, [`PAGE_SIZE`] objects a request.
pub async fn list_all<K>(api: &Api<K>, params: &ListParams) -> Result<Vec<K>, Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    paged(|token| {
        let mut page = params.clone().limit(PAGE_SIZE);
        page.continue_token = token;
        async move {
            let list = api.list(&page).await?;
            Ok((list.items, list.metadata.continue_))
        }
    })
    .await
}

/// The experiment's own namespace (`source`), its target namespaces (those that exist),
/// every node, and every pod of the target namespaces.
pub async fn candidates(
    client: &Client,
    source: &str,
    spec: &ExperimentSpec,
) -> Result<Candidates, Error> {
    let namespaces_api: Api<Namespace> = Api::all(client.clone());
    let source = namespaces_api.get(source).await?;
    let mut namespaces = Vec::new();
    let mut pods = Vec::new();
    for name in &spec.target.namespaces {
        if let Some(namespace) = namespaces_api.get_opt(name).await? {
            namespaces.push(namespace);
            let api: Api<Pod> = Api::namespaced(client.clone(), name);
            pods.extend(list_all(&api, &ListParams::default()).await?);
        }
    }
    Ok(Candidates {
        source,
        namespaces,
        nodes: nodes(client).await?,
        pods,
    })
}

pub async fn nodes(client: &Client) -> Result<Vec<Node>, Error> {
    let api: Api<Node> = Api::all(client.clone());
    list_all(&api, &ListParams::default()).await
}

fn injections_api(client: &Client, namespace: &str) -> Api<Injection> {
    Api::namespaced(client.clone(), namespace)
}

/// The Injections of the experiment with `uid`, read from the API server (not a cache), so
/// what the operator just did is always seen.
pub async fn injections(
    client: &Client,
    namespace: &str,
    uid: &str,
) -> Result<Vec<Injection>, Error> {
    let selector = format!("{EXPERIMENT_UID_LABEL}={uid}");
    list_all(
        &injections_api(client, namespace),
        &ListParams::default().labels(&selector),
    )
    .await
}

/// Creates the Injections that do not exist yet. Injections are immutable, so one that
/// exists is left as it is. Returns how many were created.
pub async fn create_injections(
    client: &Client,
    namespace: &str,
    wanted: &[Injection],
) -> Result<usize, Error> {
    let api = injections_api(client, namespace);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    let mut created = 0;
    for injection in wanted {
        match api.create(&params, injection).await {
            Ok(_) => created += 1,
            Err(e) if already(&e, &[409]) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(created)
}

/// Asks for a revert: deletes the Injections (the agents finish the deletion once reverted).
pub async fn delete_injections(
    client: &Client,
    namespace: &str,
    doomed: &[&Injection],
) -> Result<(), Error> {
    let api = injections_api(client, namespace);
    for injection in doomed {
        match api
            .delete(&injection.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(e) if already(&e, &[404]) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Removes the agent's finalizer from Injections whose node no longer exists.
pub async fn release_orphans(
    client: &Client,
    namespace: &str,
    orphans: &[&Injection],
) -> Result<(), Error> {
    let api = injections_api(client, namespace);
    for injection in orphans {
        let finalizers: Vec<&String> = injection
            .finalizers()
            .iter()
            .filter(|f| f.as_str() != AGENT_FINALIZER)
            .collect();
        // The resourceVersion makes this fail rather than drop a finalizer added meanwhile.
        let patch = json!({
            "metadata": {
                "finalizers": finalizers,
                "resourceVersion": injection.resource_version(),
            }
        });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        match api
            .patch(&injection.name_any(), &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if already(&e, &[404, 409]) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Deletes pods for one-shot faults: first their claims (so the replacement gets a new, empty
/// volume), then the pod itself, pinned by UID so a replacement is never hit.
pub async fn delete_pods(client: &Client, deletions: &[PodDeletion]) -> Result<(), Error> {
    for deletion in deletions {
        let pod = &deletion.pod;
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &pod.namespace);
        for claim in &deletion.claims {
            match claims.delete(claim, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(e) if already(&e, &[404]) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(deletion.grace_period_seconds),
            preconditions: Some(Preconditions {
                uid: Some(pod.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match pods.delete(&pod.name, &params).await {
            Ok(_) => {}
            // Gone already, or replaced (the UID precondition failed).
            Err(e) if already(&e, &[404, 409]) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake API: `total` numbered items, `size` a page, tokens are the next index.
    fn page(total: usize, size: usize, token: Option<String>) -> (Vec<usize>, Option<String>) {
        let start = token.map_or(0, |t| t.parse().unwrap());
        let end = (start + size).min(total);
        let next = (end < total).then(|| end.to_string());
        ((start..end).collect(), next)
    }

    #[tokio::test]
    async fn paging_follows_continue_to_the_last_page() {
        for (total, size) in [(0, 500), (1, 500), (500, 500), (501, 500), (1234, 100)] {
            let mut requests = 0;
            let all = paged(|token| {
                requests += 1;
                let answer = page(total, size, token);
                async move { Ok(answer) }
            })
            .await
            .unwrap();
            assert_eq!(all, (0..total).collect::<Vec<_>>(), "{total} by {size}");
            assert_eq!(requests, total.div_ceil(size).max(1), "{total} by {size}");
        }
    }

    #[tokio::test]
    async fn an_empty_continue_token_ends_the_list() {
        let mut requests = 0;
        let all = paged(|_| {
            requests += 1;
            async { Ok((vec![1, 2], Some(String::new()))) }
        })
        .await
        .unwrap();
        assert_eq!((all, requests), (vec![1, 2], 1));
    }

    #[tokio::test]
    async fn a_failed_page_fails_the_list() {
        let mut requests = 0;
        let result: Result<Vec<u8>, Error> = paged(|token| {
            requests += 1;
            async move {
                match token {
                    None => Ok((vec![1], Some("next".to_owned()))),
                    Some(_) => Err(Error::MissingField("page")),
                }
            }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(requests, 2);
    }
}
