//! firedrill's CRDs on the cluster under test, as this build defines them: the agent's and
//! the operator's tests run before (or without) the chart that would install them.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::error::{Error, Result};
use crate::wait::eventually;

/// The field manager the tests apply CRDs with.
pub const FIELD_MANAGER: &str = "firedrill-tests";

/// How long a new CRD has to be established.
const ESTABLISHED: Duration = Duration::from_secs(30);

/// Installs those of firedrill's CRDs that are missing, and waits until each is
/// established (served). A CRD already there is left as it is (see [`update`]).
pub async fn install_missing(client: &Client) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, crd) in firedrill_core::crd::all() {
        let name = crd.name_any();
        if api.get_opt(&name).await?.is_none() {
            apply(&api, &crd).await?;
        }
        established(&api, &name).await?;
    }
    Ok(())
}

/// Applies the CRDs `which` picks (by name) as this build defines them over whatever the
/// cluster has (an older one's schema would prune newer status fields), then gives the API
/// server two seconds to serve the new schema.
pub async fn update(client: &Client, which: impl Fn(&str) -> bool) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, crd) in firedrill_core::crd::all() {
        let name = crd.name_any();
        if which(&name) {
            apply(&api, &crd).await?;
            established(&api, &name).await?;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}

async fn apply(api: &Api<CustomResourceDefinition>, crd: &CustomResourceDefinition) -> Result<()> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&crd.name_any(), &params, &Patch::Apply(crd))
        .await?;
    Ok(())
}

async fn established(api: &Api<CustomResourceDefinition>, name: &str) -> Result<()> {
    eventually(ESTABLISHED, || async {
        let crd = api.get(name).await.ok()?;
        crd.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await
    .ok_or_else(|| Error::Timeout {
        what: format!("CRD {name} established"),
        timeout: ESTABLISHED,
    })
}
