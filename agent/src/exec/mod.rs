//! The fault shell: resolves an Injection's pods on this node and carries out its faults
//! with the shared primitives (`firedrill-faults`), journalled, exactly as the lab does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use firedrill_core::api::{InjectionSpec, PodRef, ProcessSignal};
use firedrill_faults::bounded::{CALL_TIMEOUT, bounded};
use firedrill_faults::fault::Target;
use firedrill_faults::journal::Entry;
use firedrill_faults::{Fault, InjectionId, Injector, Netns, RevertOutcome, nft, process};

use crate::contract::own_expiry;
use crate::error::{Error, Result};
use crate::planner::{Held, Key};
use crate::pods::{PodProcesses, ProcFs, Sandbox};
use crate::translate::{key_of_id, network_faults, sub_id};
use crate::volume::volume_dir;
use follow::followed_pods;

fn pod_name(pod: &PodRef) -> String {
    format!("{}/{}", pod.namespace, pod.name)
}

fn unix(at: DateTime<Utc>) -> u64 {
    u64::try_from(at.timestamp()).unwrap_or(0)
}

fn time(unix: u64) -> DateTime<Utc> {
    i64::try_from(unix)
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .unwrap_or_default()
}

/// Applies and reverts Injections on this node.
#[derive(Debug, Clone)]
pub struct Executor {
    injector: Injector,
    procfs: ProcFs,
    kubelet_root: PathBuf,
    /// The journal's entries as last read: what expiry reverts work from while the journal
    /// directory cannot be read.
    remembered: Arc<Mutex<Vec<Entry>>>,
}

impl Executor {
    /// An executor journalling into `journal_dir` (a hostPath, so it outlives the agent).
    pub fn new(journal_dir: &Path, kubelet_root: &Path, procfs: ProcFs) -> Result<Self> {
        Ok(Self {
            injector: Injector::new(journal_dir)?,
            procfs,
            kubelet_root: kubelet_root.to_path_buf(),
            remembered: Arc::default(),
        })
    }

    /// Reverts, from the journal as last read, every fault whose expiry has passed at
    /// `now`, without the journal (whose directory cannot be read now). Returns how many.
    pub fn revert_remembered_due(&self, now: DateTime<Utc>) -> usize {
        let Ok(mut remembered) = self.remembered.lock() else {
            return 0;
        };
        let mut undone = 0;
        remembered.retain(|entry| {
            if time(entry.expires_at) > now {
                return true;
            }
            match self.injector.undo(entry) {
                Ok(_) => {
                    undone += 1;
                    false
                }
                Err(e) => {
                    tracing::error!(id = %entry.id, category = e.category(), error = %e, "undoing an expired fault failed; will try again");
                    true
                }
            }
        });
        undone
    }

    pub fn procfs(&self) -> &ProcFs {
        &self.procfs
    }

    /// What the journal holds, by Injection, and the journal files that cannot be read
    /// (left in place for a human; they are logged).
    pub fn held(&self) -> Result<(Vec<Held>, Vec<firedrill_faults::Error>)> {
        let scan = self.injector.journal().scan()?;
        if let Ok(mut remembered) = self.remembered.lock() {
            remembered.clone_from(&scan.entries);
        }
        let mut by_key: BTreeMap<Key, Held> = BTreeMap::new();
        for entry in scan.entries {
            let key = key_of_id(&entry.id).to_owned();
            let held = by_key.entry(key.clone()).or_insert_with(|| Held {
                key,
                ids: vec![],
                created_at: time(entry.created_at),
                expires_at: time(entry.expires_at),
                unreadable: vec![],
            });
            held.created_at = held.created_at.min(time(entry.created_at));
            held.expires_at = held.expires_at.min(time(entry.expires_at));
            held.ids.push(entry.id);
        }
        for (id, why) in scan.unreadable {
            let key = key_of_id(&id).to_owned();
            // What it recorded is unknown, its expiry too: due now, never later.
            let now = Utc::now();
            by_key
                .entry(key.clone())
                .or_insert_with(|| Held {
                    key,
                    ids: vec![],
                    created_at: now,
                    expires_at: now,
                    unreadable: vec![],
                })
                .unreadable
                .push(why);
        }
        Ok((by_key.into_values().collect(), scan.errors))
    }

    /// Every running process of the pods.
    fn pod_pids(&self, pods: &[PodRef]) -> Result<Vec<i32>> {
        Ok(self
            .procfs
            .pids_of_pods(pods.iter().map(|p| p.uid.as_str()))?
            .into_values()
            .flatten()
            .collect())
    }

    /// Runs `f` on a clone of this executor within [`CALL_TIMEOUT`]: the `/proc` and
    /// kubelet reads it makes can hang like a mount (see `firedrill_faults::bounded`).
    fn in_time<T, F>(&self, what: String, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Executor) -> Result<T> + Send + 'static,
    {
        let this = self.clone();
        bounded(None, &what, CALL_TIMEOUT, move || f(this))
    }

    /// The faults `spec` becomes on this node now (resolving its pods), without applying.
    pub fn faults(&self, key: &str, spec: &InjectionSpec) -> Result<Vec<(InjectionId, Fault)>> {
        self.faults_among(key, spec, &PodProcesses::default())
    }

    /// [`Self::faults`], taking each sandbox from `found` (see [`Self::find_cut_pods`])
    /// when it is there and still runs.
    fn faults_among(
        &self,
        key: &str,
        spec: &InjectionSpec,
        found: &PodProcesses,
    ) -> Result<Vec<(InjectionId, Fault)>> {
        let found = found.only(followed_pods(spec).iter().map(|p| p.uid.as_str()));
        let (key, spec) = (key.to_owned(), spec.clone());
        self.in_time(format!("finding the targets of {key}"), move |this| {
            this.faults_now(&key, &spec, &found)
        })
    }

    /// The processes of every pod that the network cuts of `specs` name, from one walk of
    /// `/proc`: a batch of applies reads each process's cgroup once, not once per
    /// Injection (at N=200, an agent's apply spent ~100 ms walking `/proc` for each).
    pub fn find_cut_pods<'a>(
        &self,
        specs: impl IntoIterator<Item = &'a InjectionSpec>,
    ) -> Result<PodProcesses> {
        let uids: Vec<String> = specs
            .into_iter()
            .filter_map(|spec| spec.action.network.as_ref())
            .flat_map(|cut| cut.pods.iter().map(|p| p.uid.clone()))
            .collect();
        self.walk_for(uids, "finding the sandboxes of a batch")
    }

    /// The processes of the pods `uids`, from one bounded walk of `/proc` (none without
    /// pods).
    fn walk_for(&self, uids: Vec<String>, what: &str) -> Result<PodProcesses> {
        if uids.is_empty() {
            return Ok(PodProcesses::default());
        }
        self.in_time(what.into(), move |this| {
            this.procfs
                .processes_of_pods(uids.iter().map(String::as_str))
        })
    }

    /// The pod's sandbox: from `found` when every process found there still runs (the
    /// same pid with the same start time, so not a pid reused since), else from a walk now.
    fn sandbox_of(&self, pod: &PodRef, found: &PodProcesses) -> Result<Option<Sandbox>> {
        let name = pod_name(pod);
        let known = found.of(&pod.uid);
        if !known.is_empty() {
            let mut still = true;
            for process in known {
                if !self.procfs.still_runs(process)? {
                    still = false;
                    break;
                }
            }
            if still && let Some(sandbox) = self.procfs.sandbox_among(known, &name)? {
                return Ok(Some(sandbox));
            }
        }
        self.procfs.sandbox(&pod.uid, &name)
    }

    fn faults_now(
        &self,
        key: &str,
        spec: &InjectionSpec,
        found: &PodProcesses,
    ) -> Result<Vec<(InjectionId, Fault)>> {
        let action = &spec.action;
        match (&action.network, &action.processes, &action.read_only_volume) {
            (Some(cut), None, None) => {
                let targets = if cut.pods.is_empty() {
                    // The agent runs with hostNetwork: its namespace is the node's.
                    vec![Netns::Host]
                } else {
                    let mut targets = Vec::with_capacity(cut.pods.len());
                    for pod in &cut.pods {
                        let sandbox = self
                            .sandbox_of(pod, found)?
                            .ok_or_else(|| Error::PodNotFound { pod: pod_name(pod) })?;
                        targets.push(Netns::Path(sandbox.netns));
                    }
                    targets
                };
                network_faults(key, cut, &targets)
            }
            (None, Some(p), None) => {
                let pids = self.pod_pids(&p.pods)?;
                let fault = match p.signal {
                    ProcessSignal::Freeze => Fault::Freeze { pids },
                    ProcessSignal::Kill => Fault::Kill { pids },
                };
                Ok(vec![(sub_id(key, 0)?, fault)])
            }
            (None, None, Some(v)) => {
                let dir = volume_dir(&self.kubelet_root, &v.pod.uid, &pod_name(&v.pod), &v.volume)?;
                Ok(vec![(sub_id(key, 0)?, Fault::ReadOnly { dir })])
            }
            _ => Err(Error::Invalid(
                "exactly one of network, processes and readOnlyVolume must be set".into(),
            )),
        }
    }

    /// Applies `spec` as Injection `key`: every fault or none (a failure part-way reverts
    /// what was applied before returning the error). Returns a summary for the logs.
    pub fn apply(&self, key: &str, spec: &InjectionSpec) -> Result<String> {
        let cut_off = spec.action.cuts_node_off();
        self.apply_among(key, spec, &PodProcesses::default(), cut_off)
    }

    /// [`Self::apply`], taking the sandboxes from `found` where they still run (see
    /// [`Self::find_cut_pods`]), on a node its experiment cuts off or not (`cut_off`, for
    /// the end journalled).
    pub fn apply_among(
        &self,
        key: &str,
        spec: &InjectionSpec,
        found: &PodProcesses,
        cut_off: bool,
    ) -> Result<String> {
        let faults = self.faults_among(key, spec, found)?;
        // The journal keeps the agent's own end of the fault, so it holds across restarts.
        let expires_at = unix(own_expiry(spec, Utc::now(), cut_off));
        let applied = self.injector.apply_all(&faults, expires_at)?;
        Ok(match faults.first() {
            Some((_, Fault::Network { .. })) => {
                format!("{} network namespace rule set(s)", faults.len())
            }
            Some((_, Fault::ReadOnly { dir })) => format!("{} read-only", dir.display()),
            _ => format!("{} process(es)", applied.processes()),
        })
    }

    /// Kills again whatever processes of a kill's pods are running; returns how many.
    pub fn enforce(&self, spec: &InjectionSpec) -> Result<usize> {
        let Some(p) = &spec.action.processes else {
            return Ok(0);
        };
        let pods = p.pods.clone();
        let found = self.in_time("finding the killed pods' processes".into(), move |this| {
            Ok(process::resolve(&this.pod_pids(&pods)?)?)
        })?;
        let results = process::kill(&found);
        let killed = results
            .iter()
            .filter(|r| matches!(r.outcome, Ok(process::ProcessOutcome::Done)))
            .count();
        if let Some(e) = results.into_iter().find_map(|r| r.outcome.err()) {
            return Err(e.into());
        }
        Ok(killed)
    }

    /// Reverts everything the journal holds for `key`, removing each record once undone.
    /// Carries on past failures (they stay recorded, to be tried again) and returns the
    /// first. Returns how many faults were reverted.
    pub fn revert(&self, key: &str) -> Result<usize> {
        let entries = self.entries_of(key)?;
        let mut first_error = None;
        let mut reverted = 0;
        for entry in &entries {
            match self.revert_entry(entry) {
                Ok(()) => reverted += 1,
                Err(e) => {
                    tracing::error!(id = %entry.id, category = e.category(), error = %e, "revert failed; will try again");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(reverted), Err)
    }

    fn entries_of(&self, key: &str) -> Result<Vec<Entry>> {
        Ok(self
            .injector
            .journal()
            .scan()?
            .entries
            .into_iter()
            .filter(|e| key_of_id(&e.id) == key)
            .collect())
    }

    /// Re-checks every fault the journal holds for `key` against the node, and re-applies
    /// a part found gone (from the recorded fault, so it never reaches new processes).
    /// Returns what was missing; empty when all of it held.
    ///
    /// With the Injection's `spec`, a pod whose sandbox was recreated since the cut (a new
    /// network namespace, without the rules) is a lapse too, and the cut is put into the
    /// new namespace.
    pub fn recheck(&self, key: &str, spec: Option<&InjectionSpec>) -> Result<Vec<String>> {
        let mut checked = self.recheck_many(&[(key.to_owned(), spec.cloned())])?;
        checked
            .pop()
            .map(|(_, result)| result)
            .unwrap_or_else(|| Ok(vec![]))
    }

    /// [`Self::recheck`] for many held faults in one pass: the journal is read once and
    /// `/proc` walked once for all their pods. Returns each key's result, in order; the
    /// outer error is that the journal or `/proc` could not be read at all.
    pub fn recheck_many(
        &self,
        items: &[(Key, Option<InjectionSpec>)],
    ) -> Result<Vec<(Key, Result<Vec<String>>)>> {
        let mut by_key: BTreeMap<&str, Vec<Entry>> =
            items.iter().map(|(k, _)| (k.as_str(), vec![])).collect();
        for entry in self.injector.journal().scan()?.entries {
            if let Some(entries) = by_key.get_mut(key_of_id(&entry.id)) {
                entries.push(entry);
            }
        }
        let uids: Vec<String> = items
            .iter()
            .filter_map(|(_, spec)| spec.as_ref())
            .flat_map(|spec| followed_pods(spec).iter().map(|p| p.uid.clone()))
            .collect();
        let pods = self.walk_for(uids, "finding the held pods' processes")?;
        Ok(items
            .iter()
            .map(|(key, spec)| {
                let entries = by_key.remove(key.as_str()).unwrap_or_default();
                let result = self.recheck_one(key, spec.as_ref(), entries, &pods);
                (key.clone(), result)
            })
            .collect())
    }

    fn recheck_one(
        &self,
        key: &str,
        spec: Option<&InjectionSpec>,
        entries: Vec<Entry>,
        pods: &PodProcesses,
    ) -> Result<Vec<String>> {
        let mut missing = self.injector.recheck(&entries)?;
        if let Some(spec) = spec {
            let pods = pods.only(followed_pods(spec).iter().map(|p| p.uid.as_str()));
            let (key, spec) = (key.to_owned(), spec.clone());
            missing.extend(
                self.in_time(format!("finding the sandboxes of {key}"), move |this| {
                    this.follow_pods(&key, &spec, &entries, &pods)
                })?,
            );
        }
        Ok(missing)
    }

    fn revert_entry(&self, entry: &Entry) -> Result<()> {
        let mut touched = None;
        if let Target::Network {
            netns,
            identity: Some(identity),
            ..
        } = &entry.target
            && netns.identity()?.as_ref() != Some(identity)
        {
            // The recorded process (the sandbox) is gone, but the namespace may live on,
            // held by another process: find it by identity and take our chains out.
            let identity = *identity;
            let found = self.in_time(format!("finding netns {identity:?}"), move |this| {
                this.procfs.find_netns(identity)
            })?;
            if let Some(path) = found {
                let ns = Netns::Path(path);
                nft::revert(&ns, &entry.id)?;
                tracing::info!(id = %entry.id, netns = %ns.display(), "reverted in a namespace found again by identity");
                touched = Some(ns);
            }
        }
        let reverted = self.injector.revert_entry(entry)?;
        if let (RevertOutcome::Reverted, Target::Network { netns, .. }) =
            (reverted.outcome, &entry.target)
        {
            touched = Some(netns.clone());
        }
        if let Some(ns) = touched {
            // Leave no empty firedrill table behind (other injections' chains stay).
            nft::remove_table_if_empty(&ns)?;
        }
        Ok(())
    }

    /// For an Injection whose journal entries cannot all be read: reverts what can be read,
    /// then undoes by inspection what `spec` would have done on this node (its chains taken
    /// out of the pods' namespaces, its pods' stopped processes resumed). Returns what it
    /// found and did, for the Injection's status; never fails.
    pub fn salvage(&self, key: &str, spec: &InjectionSpec) -> String {
        let mut said = Vec::new();
        match self.revert(key) {
            Ok(n) => said.push(format!("reverted {n} readable journal entr(y/ies)")),
            Err(e) => said.push(format!("reverting the readable entries failed: {e}")),
        }
        let faults = match self.faults(key, spec) {
            Ok(faults) => faults,
            Err(e) => {
                said.push(format!("could not find the targets to inspect: {e}"));
                return said.join("; ");
            }
        };
        let mut namespaces = 0;
        let mut resumed = 0;
        for (id, fault) in &faults {
            match fault {
                Fault::Network { netns, .. } => {
                    match nft::revert(netns, id).and_then(|()| nft::remove_table_if_empty(netns)) {
                        Ok(_) => namespaces += 1,
                        Err(e) => said.push(format!("{}: {e}", netns.display())),
                    }
                }
                Fault::Freeze { pids } => match stopped(pids) {
                    Ok(procs) => {
                        for r in process::thaw(&procs) {
                            match r.outcome {
                                Ok(process::ProcessOutcome::Done) => resumed += 1,
                                Ok(process::ProcessOutcome::Gone) => {}
                                Err(e) => said.push(format!("resuming pid {}: {e}", r.pid)),
                            }
                        }
                    }
                    Err(e) => said.push(format!("reading the pods' processes: {e}")),
                },
                Fault::ReadOnly { dir } | Fault::TakeAway { dir } => said.push(format!(
                    "a mount on {} cannot be told apart from the volume's own without its \
                     entry: check it by hand",
                    dir.display()
                )),
                Fault::Kill { .. } | Fault::Wipe { .. } => {}
            }
        }
        if faults
            .iter()
            .any(|(_, f)| matches!(f, Fault::Network { .. }))
        {
            said.push(format!("took its chains out of {namespaces} namespace(s)"));
        }
        if faults
            .iter()
            .any(|(_, f)| matches!(f, Fault::Freeze { .. }))
        {
            said.push(format!("resumed {resumed} stopped process(es) of its pods"));
        }
        said.join("; ")
    }

    /// Reverts everything the journal holds (shutdown). Returns the first error.
    pub fn revert_all(&self) -> Result<usize> {
        let (held, _) = self.held()?;
        let mut first_error = None;
        let mut reverted = 0;
        for h in held {
            match self.revert(&h.key) {
                Ok(n) => reverted += n,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(reverted), Err)
    }
}

/// The processes among `pids` that are stopped (one `/proc/PID/stat` read each).
fn stopped(pids: &[i32]) -> firedrill_faults::Result<Vec<process::ProcessRef>> {
    let mut out = Vec::new();
    for &pid in pids {
        if let Some(stat) = process::stat(pid)?
            && stat.is_stopped()
        {
            out.push(process::ProcessRef {
                pid,
                start_time: stat.start_time,
            });
        }
    }
    Ok(out)
}

mod follow;

#[cfg(test)]
mod tests;
