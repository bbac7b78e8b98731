//! A held fault follows its pods: what runs in them now is compared with what the journal
//! recorded, so a pod whose sandbox or containers were recreated does not run unfaulted
//! while the fault is reported held.

use firedrill_core::api::{InjectionSpec, PodRef, ProcessSignal};
use firedrill_faults::fault::Target;
use firedrill_faults::{Fault, Netns, process};

use super::{Executor, pod_name};
use crate::error::Result;
use crate::translate::{pod_network_faults, sub_id};

impl Executor {
    /// Follows the pods of a held fault to what runs in them now. A freeze: see
    /// [`Self::follow_frozen_pods`]. A network cut: moves a pod's part into the pod's sandbox of now, where that is not
    /// the namespace it was applied in: the old record is reverted (its namespace is gone,
    /// or no longer the pod's) and the part applied again, under the same ids and expiry.
    /// A pod with no sandbox on the node (deleted, or between sandboxes) is skipped: nothing
    /// of it runs unfaulted. Returns what was found moved.
    pub(super) fn follow_sandboxes(&self, key: &str, spec: &InjectionSpec) -> Result<Vec<String>> {
        if let Some(p) = &spec.action.processes
            && p.signal == ProcessSignal::Freeze
        {
            return self.follow_frozen_pods(key, &p.pods);
        }
        let Some(cut) = &spec.action.network else {
            return Ok(vec![]);
        };
        let mut moved = Vec::new();
        for (index, pod) in cut.pods.iter().enumerate() {
            let name = pod_name(pod);
            let Some(sandbox) = self.procfs.sandbox(&pod.uid, &name)? else {
                continue;
            };
            let now_in = Netns::Path(sandbox.netns.clone());
            for (id, fault) in pod_network_faults(key, cut, index, &now_in)? {
                let Some(entry) = self.injector.journal().get(&id)? else {
                    continue;
                };
                let Target::Network {
                    identity: Some(was),
                    ..
                } = &entry.target
                else {
                    continue;
                };
                if *was == sandbox.identity {
                    continue;
                }
                self.revert_entry(&entry)?;
                let outcome = match self.injector.apply(&id, &fault, entry.expires_at) {
                    Ok(_) => "re-applied there".to_owned(),
                    Err(e) => format!("re-applying there failed: {e}"),
                };
                moved.push(format!(
                    "pod {name}'s sandbox was recreated: its new network namespace had none \
                     of the rules of {id} ({outcome})"
                ));
            }
        }
        Ok(moved)
    }

    /// Freezes what runs in a frozen pod but is not in the record: a pod whose sandbox or
    /// containers were recreated (the frozen ones are killed and new ones start), or a
    /// process started in it since (`kubectl exec`). The record is reverted (its processes
    /// thawed, or gone) and the freeze applied again to every process of the pods now.
    fn follow_frozen_pods(&self, key: &str, pods: &[PodRef]) -> Result<Vec<String>> {
        let id = sub_id(key, 0)?;
        let Some(entry) = self.injector.journal().get(&id)? else {
            return Ok(vec![]);
        };
        let Target::Freeze { processes: frozen } = &entry.target else {
            return Ok(vec![]);
        };
        let pids = self.pod_pids(pods)?;
        let unfrozen: Vec<i32> = process::resolve(&pids)?
            .into_iter()
            .filter(|p| !frozen.contains(p))
            .map(|p| p.pid)
            .collect();
        if unfrozen.is_empty() {
            return Ok(vec![]);
        }
        self.revert_entry(&entry)?;
        let outcome = match self
            .injector
            .apply(&id, &Fault::Freeze { pids }, entry.expires_at)
        {
            Ok(_) => "frozen now".to_owned(),
            Err(e) => format!("freezing them failed: {e}"),
        };
        Ok(vec![format!(
            "process(es) {unfrozen:?} of the frozen pods ran unfrozen ({outcome})"
        )])
    }
}
