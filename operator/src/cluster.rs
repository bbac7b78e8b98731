//! The operator's calls to the API server, and nothing else: listing what planning needs,
//! creating and deleting Injections, deleting pods for one-shot faults.

use firedrill_core::api::{ExperimentSpec, Injection};
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::plan::{Candidates, PodDeletion};
use crate::{AGENT_FINALIZER, EXPERIMENT_UID_LABEL, Error, FIELD_MANAGER};

/// Whether an API error means "already so": the object is gone, exists, or was replaced.
fn already(error: &kube::Error, codes: &[u16]) -> bool {
    matches!(error, kube::Error::Api(s) if codes.contains(&s.code))
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
            pods.extend(api.list(&ListParams::default()).await?.items);
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
    Ok(api.list(&ListParams::default()).await?.items)
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
    let list = injections_api(client, namespace)
        .list(&ListParams::default().labels(&selector))
        .await?;
    Ok(list.items)
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
