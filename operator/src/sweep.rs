//! The safety net that owner references cannot give across namespaces: Injections live in
//! firedrill's namespace, their Experiments elsewhere, so an Experiment removed without its
//! finalizer (by hand, `kubectl patch … finalizers: null`) would leave its Injections — and
//! their faults, until `expiresAt` — behind. Every [`SWEEP_EVERY`] the leader deletes the
//! Injections whose Experiment no longer exists (or is another one of the same name), which
//! asks their agents to revert now.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use firedrill_core::api::{Experiment, Injection};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};

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
    injections: &'a [Injection],
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

/// One sweep: deletes the Injections whose Experiment is gone. Returns how many it deleted.
pub async fn sweep(ctx: &Context) -> Result<usize, Error> {
    let api: Api<Injection> = Api::namespaced(ctx.client.clone(), &ctx.injection_namespace);
    let selector = format!("{MANAGED_BY_LABEL}={FIELD_MANAGER}");
    let injections = api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let mut deleted = 0;
    for (owner, orphans) in by_owner(&injections, ctx.watch_namespace.as_deref()) {
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
}
