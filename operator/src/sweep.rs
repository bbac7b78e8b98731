//! The safety net that owner references cannot give across namespaces: Injections live in
//! firedrill's namespace, their Experiments elsewhere, so an Experiment removed without its
//! finalizer (by hand, `kubectl patch … finalizers: null`) would leave its Injections — and
//! their faults, until `expiresAt` — behind. Every [`SWEEP_EVERY`] the leader deletes the
//! Injections whose Experiment no longer exists (or is another one of the same name), which
//! asks their agents to revert now.
//!
//! It looks in the operator's own stores first (the inventory's watches, on every replica):
//! an Injection whose Experiment the store holds is not an orphan, and costs no request.
//! Only an owner the store lacks is read from the API server, and only that answer can get
//! Injections deleted. At 1,000 live Experiments that is no read a sweep instead of 1,000
//! (one at a time, so a sweep took 20-30 s and the API server 15 % of its requests).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use firedrill_core::api::{Experiment, Injection};
use kube::api::{DeleteParams, ListParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};

use crate::cluster::list_all;
use crate::reconcile::Context;
use crate::{EXPERIMENT_UID_LABEL, Error, FIELD_MANAGER, MANAGED_BY_LABEL};

/// How often the leader looks for orphaned Injections.
pub const SWEEP_EVERY: Duration = Duration::from_secs(15);

/// An Injection's Experiment: namespace, name and UID, as the Injection records them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// The Injections by the Experiment they belong to; those of other namespaces than `only`
/// (when the operator watches one) are none of this operator's business.
pub fn by_owner<'a>(
    injections: impl IntoIterator<Item = &'a Injection>,
    only: Option<&str>,
) -> BTreeMap<Owner, Vec<&'a Injection>> {
    let mut owners: BTreeMap<Owner, Vec<&Injection>> = BTreeMap::new();
    for i in injections {
        let Some((namespace, name)) = i.spec.experiment.split_once('/') else {
            continue;
        };
        let Some(uid) = i.labels().get(EXPERIMENT_UID_LABEL) else {
            continue;
        };
        if only.is_some_and(|o| o != namespace) {
            continue;
        }
        owners
            .entry(Owner {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                uid: uid.clone(),
            })
            .or_default()
            .push(i);
    }
    owners
}

/// Whether `experiments` (a store of the Experiments this operator watches) holds the
/// Experiment that `owner` names, the same one (UID).
fn stored(experiments: &Store<Experiment>, owner: &Owner) -> bool {
    let key = ObjectRef::new(&owner.name).within(&owner.namespace);
    experiments
        .get(&key)
        .is_some_and(|e| e.uid().as_deref() == Some(owner.uid.as_str()))
}

/// One sweep: deletes the Injections whose Experiment is gone. Returns how many it deleted.
pub async fn sweep(ctx: &Context) -> Result<usize, Error> {
    let api: Api<Injection> = Api::namespaced(ctx.client.clone(), &ctx.injection_namespace);
    let inventory = ctx.metrics.inventory();
    let injections: Vec<Arc<Injection>> = match &inventory {
        Some(inventory) => inventory.injections.state(),
        None => {
            let selector = format!("{MANAGED_BY_LABEL}={FIELD_MANAGER}");
            let listed = list_all(&api, &ListParams::default().labels(&selector)).await?;
            listed.into_iter().map(Arc::new).collect()
        }
    };
    let mut deleted = 0;
    let owners = by_owner(
        injections.iter().map(AsRef::as_ref),
        ctx.watch_namespace.as_deref(),
    );
    for (owner, orphans) in owners {
        if inventory
            .as_ref()
            .is_some_and(|i| stored(&i.experiments, &owner))
        {
            continue;
        }
        // The store may lag (or not watch that Experiment): only the API server's answer
        // makes an orphan.
        let experiments: Api<Experiment> = Api::namespaced(ctx.client.clone(), &owner.namespace);
        let alive = experiments
            .get_opt(&owner.name)
            .await?
            .is_some_and(|e| e.uid().as_deref() == Some(owner.uid.as_str()));
        if alive {
            continue;
        }
        for i in orphans
            .iter()
            .filter(|i| i.metadata.deletion_timestamp.is_none())
        {
            match api.delete(&i.name_any(), &DeleteParams::background()).await {
                Ok(_) => deleted += 1,
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        tracing::warn!(
            experiment = %format!("{}/{}", owner.namespace, owner.name),
            uid = %owner.uid,
            injections = orphans.len(),
            "the Experiment is gone but its Injections were not: deleted them (their agents revert now)"
        );
    }
    Ok(deleted)
}

/// Sweeps every [`SWEEP_EVERY`] until `stop` completes.
pub async fn run(ctx: Arc<Context>, stop: impl Future<Output = ()> + Send) {
    let mut stop = std::pin::pin!(stop);
    loop {
        if let Err(e) = sweep(&ctx).await {
            tracing::warn!(category = e.category().as_str(), error = %e, "sweeping orphaned Injections failed; trying again");
        }
        tokio::select! {
            () = tokio::time::sleep(SWEEP_EVERY) => {}
            () = &mut stop => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firedrill_core::api::InjectionSpec;

    fn inj(name: &str, experiment: &str, uid: Option<&str>) -> Injection {
        let spec: InjectionSpec = serde_json::from_value(serde_json::json!({
            "nodeName": "n1",
            "experiment": experiment,
            "action": {"network": {"all": true}},
            "expiresAt": "2026-01-01T00:10:00Z",
        }))
        .unwrap();
        let mut i = Injection::new(name, spec);
        if let Some(uid) = uid {
            i.labels_mut()
                .insert(EXPERIMENT_UID_LABEL.into(), uid.into());
        }
        i
    }

    #[test]
    fn injections_are_grouped_by_the_experiment_they_record() {
        let all = [
            inj("a-1", "talk/a", Some("u1")),
            inj("a-2", "talk/a", Some("u1")),
            inj("a-old", "talk/a", Some("u0")),
            inj("b-1", "team/b", Some("u2")),
            inj("stray", "no-slash", Some("u3")),
            inj("unlabelled", "talk/a", None),
        ];
        let owners = by_owner(&all, None);
        assert_eq!(owners.len(), 3, "{owners:?}");
        let a = Owner {
            namespace: "talk".into(),
            name: "a".into(),
            uid: "u1".into(),
        };
        assert_eq!(owners[&a].len(), 2);
        assert!(
            owners.keys().any(|o| o.uid == "u0"),
            "another Experiment of the same name"
        );
        let only_talk = by_owner(&all, Some("talk"));
        assert!(only_talk.keys().all(|o| o.namespace == "talk"));
        assert_eq!(only_talk.len(), 2);
    }

    #[test]
    fn only_the_same_experiment_in_the_store_spares_its_injections_a_read() {
        use kube::runtime::reflector;
        use kube::runtime::watcher::Event;

        let (store, mut writer) = reflector::store();
        let mut stored_one = Experiment::new("a", crate::testing::catalog("zone-blackout"));
        stored_one.metadata.namespace = Some("talk".into());
        stored_one.metadata.uid = Some("u1".into());
        writer.apply_watcher_event(&Event::Apply(stored_one));
        let owner = |namespace: &str, uid: &str| Owner {
            namespace: namespace.into(),
            name: "a".into(),
            uid: uid.into(),
        };
        assert!(stored(&store, &owner("talk", "u1")));
        assert!(
            !stored(&store, &owner("talk", "u0")),
            "another Experiment of the same name"
        );
        assert!(!stored(&store, &owner("team", "u1")), "another namespace");
    }
}
