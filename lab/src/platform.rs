//! The lab adapter of the fault planner, and the platform that carries plans out: the
//! topology becomes the planner's inventory (every process a pod of namespace `talk`, every
//! node a network namespace), the planner decides what the fault means — the same
//! [`firedrill_core::planner`] the operator uses — and its node actions become the lab's
//! steps, applied and reverted with the fault library, journalled, plus holds that keep
//! killed processes down for the fault's duration.
//!
//! One experiment becomes several injections (`<id>-0`, `<id>-1`, ...), one per node or
//! process touched, so each is reverted on its own and the supervisor can revert any of
//! them at its expiry.

use std::collections::{BTreeMap, BTreeSet};

use firedrill_core::api::{
    ExperimentSpec, NODE_FAULT_GRANT_LABEL, NODE_FAULT_GRANT_VALUE, NetworkCut, OPT_IN_LABEL,
    OPT_IN_VALUE, PodRef, ProcessSignal, TrafficDirection, ZONE_LABEL,
};
use firedrill_core::planner::{
    self, ClaimVolume, FaultPlan, Inventory, NamespaceInfo, NodeInfo, PodInfo, Policy,
};
use firedrill_faults::{
    Cidr, Direction, Entry, Fault, InjectionId, Injector, Ports, Protocol, RuleSet, now_unix,
};

use crate::error::{LabError, Result};
use crate::net::netns_path;
use crate::state::{Hold, LabState, PidRecord, RunDir};
use crate::topology::{Kind, NAMESPACE, Topology};

/// One thing to do to the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Keep a process down until the revert (or the expiry).
    Hold { process: String, reason: String },
    /// Kill a process (the supervisor restarts it unless held).
    Kill { process: String },
    /// Stop a process until the revert.
    Freeze { process: String },
    /// Cut a node's traffic.
    Network { node: String, rules: RuleSet },
    /// Delete a process's data.
    Wipe { process: String },
    /// Make a process's data read-only until the revert.
    ReadOnly { process: String },
}

/// What a fault does in the lab, before doing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// What the planner decided, as it would on a cluster.
    pub fault: FaultPlan,
    /// Targets as counted for the blast radius, by their lab names (nodes or processes).
    pub targets: Vec<String>,
    /// How many candidates there were (for the percentage).
    pub candidates: usize,
    pub steps: Vec<Step>,
}

fn plan_err(msg: impl Into<String>) -> LabError {
    LabError::Plan(msg.into())
}

/// The volume every lab process with data keeps it in, and the claim that stands for it.
const DATA_VOLUME: &str = "data";

/// The planner's view of the lab: namespace `talk` (opted in, and allowed node faults: the
/// lab is the operator's own machine), the nodes with their zones and addresses, and every
/// process but the page caches as a pod. A page cache is the node's memory, not a
/// workload: it goes with its node's power and with its volume (see [`steps`]).
pub fn inventory(topology: &Topology) -> Inventory {
    let talk = NamespaceInfo {
        name: NAMESPACE.to_owned(),
        labels: BTreeMap::from([
            (OPT_IN_LABEL.to_owned(), OPT_IN_VALUE.to_owned()),
            (
                NODE_FAULT_GRANT_LABEL.to_owned(),
                NODE_FAULT_GRANT_VALUE.to_owned(),
            ),
        ]),
        annotations: BTreeMap::new(),
    };
    let host = |addr: std::net::Ipv4Addr| format!("{addr}/32");
    Inventory {
        source: talk.clone(),
        namespaces: vec![talk],
        nodes: topology
            .nodes
            .iter()
            .map(|n| NodeInfo {
                name: n.name.clone(),
                labels: n
                    .zone
                    .iter()
                    .map(|z| (ZONE_LABEL.to_owned(), z.clone()))
                    .collect(),
                cidrs: vec![host(n.addr)],
            })
            .collect(),
        pods: topology
            .processes
            .iter()
            .filter(|p| !matches!(p.kind, Kind::PageCache { .. }))
            .map(|p| PodInfo {
                pod: PodRef {
                    namespace: NAMESPACE.to_owned(),
                    name: p.name.clone(),
                    uid: p.name.clone(),
                },
                node: p.node.clone(),
                labels: p.labels.clone(),
                // A process has its node's address: the node is its network namespace.
                cidrs: topology
                    .node(&p.node)
                    .map(|n| host(n.addr))
                    .into_iter()
                    .collect(),
                claims: if p.has_data {
                    vec![ClaimVolume {
                        volume: DATA_VOLUME.to_owned(),
                        claim: format!("{DATA_VOLUME}-{}", p.name),
                    }]
                } else {
                    vec![]
                },
            })
            .collect(),
    }
}

/// Plans `spec`'s fault against the lab. Refuses (never trims) a plan over the blast radius.
pub fn plan(spec: &ExperimentSpec, topology: &Topology) -> Result<Plan> {
    let fault = planner::plan(spec, &inventory(topology), &Policy::new(""))?;
    let steps = steps(&fault, topology)?;
    Ok(Plan {
        targets: fault.targets.iter().map(|t| t.name().to_owned()).collect(),
        candidates: fault.candidates,
        steps,
        fault,
    })
}

/// The lab's steps for a plan: how this platform carries out each node action.
pub fn steps(fault: &FaultPlan, topology: &Topology) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    let mut sides: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for work in &fault.work {
        let action = &work.action;
        if let Some(p) = &action.processes {
            let whole_node = fault.hits_whole_node(&work.node);
            let mut processes: Vec<String> = p.pods.iter().map(|p| p.name.clone()).collect();
            if whole_node {
                // The node's memory goes with its power: unsynced writes are lost.
                processes.extend(page_caches_on(topology, &work.node));
            }
            // In the order the lab starts them (a page cache before the process that
            // writes through it), so the journal reverts them in that order too.
            processes.sort_by_key(|name| topology.processes.iter().position(|p| &p.name == name));
            for process in processes {
                match p.signal {
                    ProcessSignal::Kill => {
                        steps.push(Step::Hold {
                            process: process.clone(),
                            reason: if whole_node {
                                format!("{} has no power", work.node)
                            } else {
                                "scaled to zero".to_owned()
                            },
                        });
                        steps.push(Step::Kill { process });
                    }
                    ProcessSignal::Freeze => steps.push(Step::Freeze { process }),
                }
            }
        }
        if let Some(cut) = &action.network {
            if !cut.all {
                sides.entry(&work.node).or_default().insert(&work.key);
            }
            steps.extend(network_steps(&work.node, cut, topology)?);
        }
        if let Some(v) = &action.read_only_volume {
            steps.push(Step::ReadOnly {
                process: v.pod.name.clone(),
            });
        }
    }
    // Processes of a node share its network namespace: it cannot be on both sides.
    if let Some((node, _)) = sides.iter().find(|(_, keys)| keys.len() > 1) {
        return Err(plan_err(format!(
            "node {node} is on both sides of the partition: its processes share one network \
             namespace in the lab"
        )));
    }
    for deletion in &fault.deletions {
        let process = deletion.pod.name.clone();
        if deletion.claims.is_empty() {
            steps.push(Step::Kill { process });
            continue;
        }
        // A new disk comes with an empty page cache: the old one goes too.
        let cache = topology.page_cache_for(&process).map(|c| c.name.clone());
        for down in std::iter::once(&process).chain(cache.as_ref()) {
            steps.push(Step::Hold {
                process: down.clone(),
                reason: "waiting for a new volume".to_owned(),
            });
            steps.push(Step::Kill {
                process: down.clone(),
            });
        }
        steps.push(Step::Wipe { process });
    }
    Ok(steps)
}

fn page_caches_on(topology: &Topology, node: &str) -> Vec<String> {
    topology
        .processes_on(node)
        .into_iter()
        .filter(|p| matches!(p.kind, Kind::PageCache { .. }))
        .map(|p| p.name.clone())
        .collect()
}

/// A cut in the lab: a node's namespace is every process's on it, so a whole-node cut or a
/// partition is the node's, and isolating one process cuts only its port.
fn network_steps(node: &str, cut: &NetworkCut, topology: &Topology) -> Result<Vec<Step>> {
    let on_node = |rules| Step::Network {
        node: node.to_owned(),
        rules,
    };
    if !cut.all {
        let peers = cut
            .peers
            .iter()
            .map(|c| c.parse::<Cidr>().map_err(LabError::from))
            .collect::<Result<Vec<_>>>()?;
        let direction = match cut.direction {
            TrafficDirection::Both => Direction::Both,
            TrafficDirection::Egress => Direction::Egress,
            TrafficDirection::Ingress => Direction::Ingress,
        };
        return Ok(vec![on_node(RuleSet::Partition {
            peers,
            direction,
            loss_percent: cut.loss_percent,
            ports: None,
        })]);
    }
    if cut.pods.is_empty() {
        return Ok(vec![on_node(RuleSet::Blackout { ports: None })]);
    }
    cut.pods
        .iter()
        .map(|pod| {
            let endpoint = topology
                .process(&pod.name)
                .and_then(|p| p.kind.endpoint())
                .ok_or_else(|| plan_err(format!("{} serves nothing to isolate", pod.name)))?;
            Ok(on_node(RuleSet::Blackout {
                ports: Some(Ports {
                    protocol: Protocol::Tcp,
                    ports: vec![endpoint.port()],
                }),
            }))
        })
        .collect()
}

/// Applies and reverts planned faults in a running lab.
#[derive(Debug)]
pub struct LabPlatform {
    run: RunDir,
    state: LabState,
    injector: Injector,
}

impl LabPlatform {
    pub fn open(run: RunDir) -> Result<Self> {
        let state = run.require_state()?;
        let injector = Injector::new(run.journal_dir())?;
        Ok(Self {
            run,
            state,
            injector,
        })
    }

    pub fn topology(&self) -> &Topology {
        &self.state.topology
    }

    pub fn run_dir(&self) -> &RunDir {
        &self.run
    }

    fn pid_of(&self, process: &str) -> Result<Option<PidRecord>> {
        self.run.read_pid(process)
    }

    fn sub_id(id: &str, n: usize) -> Result<InjectionId> {
        Ok(InjectionId::new(format!("{id}-{n}"))?)
    }

    /// Applies `plan` as injection `id`, to be undone by `expires_at` (unix seconds) even if
    /// nobody reverts it. On failure everything applied is reverted before returning.
    pub fn apply(&self, id: &str, plan: &Plan, expires_at: u64) -> Result<()> {
        let result = self.apply_steps(id, plan, expires_at);
        if result.is_err() {
            let _ = self.revert(id);
        }
        result
    }

    fn apply_steps(&self, id: &str, plan: &Plan, expires_at: u64) -> Result<()> {
        // Holds go in first, so the supervisor does not restart what is killed next.
        for step in &plan.steps {
            if let Step::Hold { process, reason } = step {
                self.run.add_hold(&Hold {
                    process: process.clone(),
                    injection: id.to_owned(),
                    expires_at,
                    reason: reason.clone(),
                })?;
            }
        }
        let mut parts = Vec::new();
        for step in &plan.steps {
            let fault = match step {
                Step::Hold { .. } => continue,
                Step::Kill { process } | Step::Freeze { process } => {
                    let Some(record) = self.pid_of(process)? else {
                        // Not running (already down): nothing to kill or freeze.
                        continue;
                    };
                    let pids = vec![record.process.pid];
                    if matches!(step, Step::Kill { .. }) {
                        Fault::Kill { pids }
                    } else {
                        Fault::Freeze { pids }
                    }
                }
                Step::Network { node, rules } => {
                    let node = self
                        .state
                        .topology
                        .node(node)
                        .ok_or_else(|| plan_err(format!("node {node} is not in the lab")))?;
                    Fault::Network {
                        netns: netns_path(&node.netns()),
                        rules: rules.clone(),
                    }
                }
                // Behind a page cache the volume's bytes live on its disk.
                Step::Wipe { process } => Fault::Wipe {
                    dir: if self.state.topology.page_cache_for(process).is_some() {
                        self.run.disk_dir(process)
                    } else {
                        self.run.data_dir(process)
                    },
                },
                Step::ReadOnly { process } => Fault::ReadOnly {
                    dir: self.run.data_dir(process),
                },
            };
            parts.push((Self::sub_id(id, parts.len())?, fault));
        }
        self.injector.apply_all(&parts, expires_at)?;
        Ok(())
    }

    /// The journalled parts of injection `id` (sub-ids `{id}-N`, see `sub_id`).
    fn entries_of(&self, id: &str) -> Result<Vec<Entry>> {
        let prefix = format!("{id}-");
        let mut entries = self.injector.journal().entries()?;
        entries.retain(|e| e.id.as_str().starts_with(&prefix));
        Ok(entries)
    }

    /// Reverts everything of injection `id`: its journalled faults and its holds.
    /// Idempotent.
    pub fn revert(&self, id: &str) -> Result<()> {
        let mut errors = Vec::new();
        for entry in self.entries_of(id)? {
            if let Err(e) = self.injector.revert_entry(&entry) {
                errors.push(e.to_string());
            }
        }
        self.run.release_holds(id)?;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(LabError::Plan(format!(
                "reverting {id} failed: {}",
                errors.join("; ")
            )))
        }
    }

    /// Re-checks every part of injection `id` against the real system and re-applies any
    /// part found gone (the recorded target, so a re-apply never reaches new processes).
    /// Returns what was found missing; empty when the whole fault held.
    pub fn recheck(&self, id: &str) -> Result<Vec<String>> {
        Ok(self.injector.recheck(&self.entries_of(id)?)?)
    }

    /// Whether anything of injection `id` is still in place.
    pub fn is_active(&self, id: &str) -> Result<bool> {
        let journalled = !self.entries_of(id)?.is_empty();
        let now = now_unix();
        let held = self
            .run
            .holds()?
            .iter()
            .any(|h| h.injection == id && h.expires_at > now);
        Ok(journalled || held)
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use firedrill_core::manifest::{Manifest, load_str};

    fn catalog(name: &str) -> ExperimentSpec {
        let path = format!("{}/../experiments/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("catalog file");
        match load_str(&text).expect("valid").pop() {
            Some(Manifest::Experiment(e)) => e.spec,
            other => panic!("not an experiment: {other:?}"),
        }
    }

    #[test]
    fn blackout_holds_and_kills_every_process_of_the_zone_and_cuts_its_nodes() {
        let t = Topology::new(None);
        let plan = plan(&catalog("zone-blackout"), &t).expect("plan");
        assert_eq!(plan.targets, vec!["zone-a-1", "zone-a-2"]);
        let killed: Vec<_> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Kill { process } => Some(process.as_str()),
                _ => None,
            })
            .collect();
        assert!(killed.contains(&"nats-0") && killed.contains(&"prometheus-a"));
        for p in &killed {
            assert!(plan.steps.contains(&Step::Hold {
                process: (*p).to_owned(),
                reason: format!("{} has no power", t.process(p).expect("p").node),
            }));
        }
        let cut = plan
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Network { .. }))
            .count();
        assert_eq!(cut, 2);
    }

    #[test]
    fn partition_cuts_both_sides_towards_each_other() {
        let t = Topology::new(None);
        let plan = plan(&catalog("network-partition"), &t).expect("plan");
        let zone_a_1 = t.node("zone-a-1").expect("node").addr;
        let zone_b_1 = t.node("zone-b-1").expect("node").addr;
        let on = |node: &str| -> Vec<Cidr> {
            plan.steps
                .iter()
                .find_map(|s| match s {
                    Step::Network {
                        node: n,
                        rules: RuleSet::Partition { peers, .. },
                    } if n == node => Some(peers.clone()),
                    _ => None,
                })
                .expect("rules on node")
        };
        assert!(
            on("zone-a-1")
                .iter()
                .any(|c| c.addr() == IpAddr::V4(zone_b_1))
        );
        assert!(
            on("zone-b-1")
                .iter()
                .any(|c| c.addr() == IpAddr::V4(zone_a_1))
        );
        assert!(
            !on("zone-a-1")
                .iter()
                .any(|c| c.addr() == IpAddr::V4(zone_a_1))
        );
        // The client node (talk-load) is on neither side.
        assert!(
            !plan
                .steps
                .iter()
                .any(|s| matches!(s, Step::Network { node, .. } if node == "client-1"))
        );
    }

    #[test]
    fn disk_loss_and_ops_outage_pick_what_the_selectors_say() {
        let t = Topology::new(None);
        let disk = plan(&catalog("disk-loss"), &t).expect("plan");
        assert_eq!(disk.targets, vec!["nats-0"]);
        assert!(disk.steps.contains(&Step::Wipe {
            process: "nats-0".into()
        }));
        let ops = plan(&catalog("ops-tool-outage"), &t).expect("plan");
        assert_eq!(ops.targets, vec!["prometheus-a"]);
    }

    fn killed(plan: &Plan) -> Vec<&str> {
        plan.steps
            .iter()
            .filter_map(|s| match s {
                Step::Kill { process } => Some(process.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_new_disk_comes_with_an_empty_page_cache() {
        let t = Topology::new(None);
        let disk = plan(&catalog("disk-loss"), &t).expect("plan");
        assert_eq!(killed(&disk), vec!["nats-0", "nats-0-page-cache"]);
        // The page cache is not a target of its own: the blast radius counts volumes.
        assert_eq!(disk.targets, vec!["nats-0"]);
    }

    #[test]
    fn a_site_power_loss_takes_every_zone_and_every_page_cache() {
        let t = Topology::new(None);
        let site = plan(&catalog("site-power-loss"), &t).expect("plan");
        assert_eq!(site.targets.len(), 6);
        let down = killed(&site);
        for i in 0..3 {
            assert!(down.contains(&format!("nats-{i}").as_str()), "{down:?}");
            assert!(
                down.contains(&format!("nats-{i}-page-cache").as_str()),
                "{down:?}"
            );
        }
        assert!(
            !down.contains(&"talk-load"),
            "the client is outside the site"
        );
        // A single-zone blackout leaves the other zones' memory alone.
        let zone = plan(&catalog("zone-blackout"), &t).expect("plan");
        assert!(!killed(&zone).contains(&"nats-1-page-cache"));
    }

    #[test]
    fn over_the_blast_radius_is_refused_not_trimmed() {
        let t = Topology::new(None);
        let mut spec = catalog("zone-blackout");
        spec.blast_radius.max_targets = 1;
        let err = plan(&spec, &t).expect_err("refused");
        assert!(err.to_string().contains("blast radius"), "{err}");
        spec.target.namespaces = vec!["other".into()];
        assert!(plan(&spec, &t).is_err());
    }
}
