//! Kube access for `get`, `describe`, `history` and `stop-all`: which kinds there are, which
//! namespaces a command reads, and the list/get calls, with errors that name the operation.

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use firedrill_core::api::Experiment;
use kube::api::ListParams;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::cluster::{ClusterError, Op};

/// The kinds `get` and `describe` know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Experiment objects (also: experiment, exp).
    #[value(alias = "experiment", alias = "exp")]
    Experiments,
    /// GameDay objects (also: gameday, gd).
    #[value(alias = "gameday", alias = "gd")]
    Gamedays,
    /// DrillSchedule objects (also: drill, drillschedules, drillschedule).
    #[value(alias = "drill", alias = "drillschedules", alias = "drillschedule")]
    Drills,
}

impl Kind {
    pub fn resource(self) -> &'static str {
        match self {
            Self::Experiments => "experiments",
            Self::Gamedays => "gamedays",
            Self::Drills => "drillschedules",
        }
    }
}

/// Which namespace(s) to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One namespace; `None` is the context's default namespace.
    Namespace(Option<String>),
    All,
}

pub fn scope(namespace: Option<String>, all: bool) -> Scope {
    if all {
        Scope::All
    } else {
        Scope::Namespace(namespace)
    }
}

/// When the object was created, from its metadata.
pub fn created<K: Resource>(object: &K) -> Option<DateTime<Utc>> {
    object
        .meta()
        .creation_timestamp
        .as_ref()
        .and_then(crate::cluster::time)
}

/// The experiment's fault: the name the status gives, else the spec's kind.
pub fn fault_of(e: &Experiment) -> String {
    e.status
        .as_ref()
        .and_then(|s| s.fault.clone())
        .unwrap_or_else(|| e.spec.fault.name().to_owned())
}

fn api<K>(client: &Client, scope: &Scope) -> Api<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match scope {
        Scope::All => Api::all(client.clone()),
        Scope::Namespace(Some(ns)) => Api::namespaced(client.clone(), ns),
        Scope::Namespace(None) => Api::default_namespaced(client.clone()),
    }
}

/// Lists (or gets by name) objects of one kind, sorted by namespace and name.
pub async fn fetch<K>(
    client: &Client,
    scope: &Scope,
    name: Option<&str>,
    resource: &'static str,
    selector: Option<&str>,
) -> Result<Vec<K>, ClusterError>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = api(client, scope);
    let ns = match scope {
        Scope::Namespace(Some(ns)) => Some(ns.clone()),
        Scope::Namespace(None) => Some(client.default_namespace().to_owned()),
        Scope::All => None,
    };
    match name {
        Some(name) => {
            let op = Op::new("get", resource).ns(ns.as_deref()).name(name);
            let object = api
                .get(name)
                .await
                .map_err(|e| ClusterError::from_kube(e, &op))?;
            Ok(vec![object])
        }
        None => {
            let op = Op::new("list", resource).ns(ns.as_deref());
            let mut params = ListParams::default();
            if let Some(selector) = selector {
                params = params.labels(selector);
            }
            let mut items = api
                .list(&params)
                .await
                .map_err(|e| ClusterError::from_kube(e, &op))?
                .items;
            items.sort_by_key(|o| (o.meta().namespace.clone(), o.meta().name.clone()));
            Ok(items)
        }
    }
}
