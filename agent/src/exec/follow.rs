//! A held fault follows its pods: what runs in them now is compared with what the journal
//! recorded, so a pod whose sandbox or containers were recreated does not run unfaulted
//! while the fault is reported held.

use firedrill_core::api::{InjectionSpec, NetworkCut, PodRef, ProcessSignal};
use firedrill_faults::fault::Target;
use firedrill_faults::{Entry, Fault, InjectionId, Netns, process};

use super::{Executor, pod_name};
use crate::error::Result;
use crate::pods::PodProcesses;
use crate::translate::{pod_network_faults, sub_id};

/// The pods a held fault follows (see [`Executor::follow_pods`]): a freeze's and a network
/// cut's; none for the rest.
pub(super) fn followed_pods(spec: &InjectionSpec) -> &[PodRef] {
    match (&spec.action.processes, &spec.action.network) {
        (Some(p), _) if p.signal == ProcessSignal::Freeze => &p.pods,
        (_, Some(cut)) => &cut.pods,
        _ => &[],
    }
}

impl Executor {
    /// Follows the pods of a held fault to what runs in them now; returns each part found
    /// not in place and how putting it back went. A freeze: [`Self::follow_frozen_pods`];
    /// a network cut: [`Self::follow_cut_pods`].
    ///
    /// `entries` are what the journal held for `key` when the pass began, `pods` the
    /// processes of the spec's pods then.
    pub(super) fn follow_pods(
        &self,
        key: &str,
        spec: &InjectionSpec,
        entries: &[Entry],
        pods: &PodProcesses,
    ) -> Result<Vec<String>> {
        match (&spec.action.processes, &spec.action.network) {
            (Some(p), _) if p.signal == ProcessSignal::Freeze => {
                self.follow_frozen_pods(key, &p.pods, pods)
            }
            (_, Some(cut)) => self.follow_cut_pods(key, cut, entries, pods),
            _ => Ok(vec![]),
        }
    }

    /// Puts each pod's part of a network cut into the pod's sandbox of now where it is not
    /// there: the sandbox was recreated (the recorded namespace is gone, or no longer the
    /// pod's), or the part has no record while others of the injection do (an earlier
    /// put-back failed). A pod with no sandbox on the node (deleted, or between sandboxes)
    /// is skipped: nothing of it runs unfaulted.
    fn follow_cut_pods(
        &self,
        key: &str,
        cut: &NetworkCut,
        entries: &[Entry],
        pods: &PodProcesses,
    ) -> Result<Vec<String>> {
        // A part put back keeps the injection's own end, never a later one.
        let Some(expires_at) = entries.iter().map(|e| e.expires_at).min() else {
            // Nothing held: the planner applies the whole injection again.
            return Ok(vec![]);
        };
        let mut moved = Vec::new();
        for (index, pod) in cut.pods.iter().enumerate() {
            let name = pod_name(pod);
            let Some(sandbox) = self.procfs.sandbox_among(pods.of(&pod.uid), &name)? else {
                continue;
            };
            let now_in = Netns::Path(sandbox.netns.clone());
            for (id, fault) in pod_network_faults(key, cut, index, &now_in)? {
                let entry = self.injector.journal().get(&id)?;
                let what = match &entry {
                    None => format!("the rules of {id} for pod {name} were not in place"),
                    Some(Entry {
                        target:
                            Target::Network {
                                identity: Some(was),
                                ..
                            },
                        ..
                    }) if *was != sandbox.identity => format!(
                        "pod {name}'s sandbox was recreated: its new network namespace had \
                         none of the rules of {id}"
                    ),
                    Some(_) => continue,
                };
                let outcome = match self.put_back(entry.as_ref(), &id, &fault, expires_at)? {
                    Ok(()) => "re-applied there".to_owned(),
                    Err(e) => format!("re-applying there failed: {e}"),
                };
                moved.push(format!("{what} ({outcome})"));
            }
        }
        Ok(moved)
    }

    /// Freezes what runs in a frozen pod but is not in the record: a pod whose sandbox or
    /// containers were recreated (the frozen ones are killed and new ones start), or a
    /// process started in it since (`kubectl exec`). The record is reverted (its processes
    /// thawed, or gone) and the freeze applied again to every process of the pods now.
    fn follow_frozen_pods(
        &self,
        key: &str,
        pods: &[PodRef],
        now: &PodProcesses,
    ) -> Result<Vec<String>> {
        let id = sub_id(key, 0)?;
        let Some(entry) = self.injector.journal().get(&id)? else {
            return Ok(vec![]);
        };
        let Target::Freeze { processes: frozen } = &entry.target else {
            return Ok(vec![]);
        };
        let pids: Vec<i32> = pods
            .iter()
            .flat_map(|p| now.of(&p.uid).iter().map(|p| p.pid))
            .collect();
        let unfrozen: Vec<i32> = process::resolve(&pids)?
            .into_iter()
            .filter(|p| !frozen.contains(p))
            .map(|p| p.pid)
            .collect();
        if unfrozen.is_empty() {
            return Ok(vec![]);
        }
        let outcome =
            match self.put_back(Some(&entry), &id, &Fault::Freeze { pids }, entry.expires_at)? {
                Ok(()) => "frozen now".to_owned(),
                Err(e) => format!("freezing them failed: {e}"),
            };
        Ok(vec![format!(
            "process(es) {unfrozen:?} of the frozen pods ran unfrozen ({outcome})"
        )])
    }

    /// Replaces part `id` of a held fault: reverts what its record says (`old`, as the same
    /// id cannot be recorded twice) and applies `fault` until `expires_at`. The outer
    /// error is the revert's; the inner result the apply's. A failed apply leaves no
    /// record, which the next re-check finds again.
    fn put_back(
        &self,
        old: Option<&Entry>,
        id: &InjectionId,
        fault: &Fault,
        expires_at: u64,
    ) -> Result<firedrill_faults::Result<()>> {
        if let Some(old) = old {
            self.revert_entry(old)?;
        }
        Ok(self.injector.apply(id, fault, expires_at).map(|_| ()))
    }
}
