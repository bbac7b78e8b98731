//! Carries out an experiment's fault in the lab: plans it against the topology (pure), then
//! applies and reverts it with the fault library, journalled, plus holds that keep killed
//! processes down for the fault's duration.
//!
//! One experiment becomes several injections (`<id>-0`, `<id>-1`, ...), one per node or
//! process touched, so each is reverted on its own and the supervisor can revert any of
//! them at its expiry.

use std::collections::BTreeSet;
use std::net::IpAddr;

use firedrill_core::api::{
    BlackoutMode, DiskLossMode, ExperimentSpec, FaultKind, LabelSelector, OutageMode,
    PartitionDirection, PeerGroup,
};
use firedrill_faults::{
    Cidr, Direction, Entry, Fault, InjectionId, Injector, Ports, Protocol, RuleSet, now_unix,
};

use crate::error::{LabError, Result};
use crate::net::netns_path;
use crate::state::{Hold, LabState, PidRecord, RunDir};
use crate::topology::{NAMESPACE, Process, Topology};

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
    /// Targets as counted for the blast radius (nodes or processes).
    pub targets: Vec<String>,
    /// How many candidates there were (for the percentage).
    pub candidates: usize,
    pub steps: Vec<Step>,
}

fn plan_err(msg: impl Into<String>) -> LabError {
    LabError::Plan(msg.into())
}

fn selected<'a>(topology: &'a Topology, selector: Option<&LabelSelector>) -> Vec<&'a Process> {
    topology
        .processes
        .iter()
        .filter(|p| selector.is_none_or(|s| s.matches(&p.labels)))
        .collect()
}

/// Nodes of a peer group: its zones' nodes, or the nodes running selected processes.
fn group_nodes(topology: &Topology, group: &PeerGroup) -> Vec<String> {
    let mut nodes: BTreeSet<String> = BTreeSet::new();
    for zone in &group.zones {
        nodes.extend(topology.nodes_in(zone).iter().map(|n| n.name.clone()));
    }
    if let Some(sel) = &group.selector {
        nodes.extend(
            selected(topology, Some(sel))
                .into_iter()
                .map(|p| p.node.clone()),
        );
    }
    nodes.into_iter().collect()
}

fn cidrs(topology: &Topology, nodes: &[String]) -> Result<Vec<Cidr>> {
    nodes
        .iter()
        .filter_map(|n| topology.node(n))
        .map(|n| Cidr::new(IpAddr::V4(n.addr), 32).map_err(LabError::from))
        .collect()
}

/// Plans `spec`'s fault against the lab. Refuses (never trims) a plan over the blast radius.
pub fn plan(spec: &ExperimentSpec, topology: &Topology) -> Result<Plan> {
    if !spec.target.namespaces.iter().any(|n| n == NAMESPACE) {
        return Err(plan_err(format!(
            "the lab deploys everything in namespace {NAMESPACE:?}; the experiment targets {:?}",
            spec.target.namespaces
        )));
    }
    let selector = spec.target.selector.as_ref();
    let kind = spec
        .fault
        .kind()
        .ok_or_else(|| plan_err("the experiment has no single fault"))?;
    let zone_nodes = topology.nodes.iter().filter(|n| n.zone.is_some()).count();
    let mut steps = Vec::new();
    let (targets, candidates) = match kind {
        FaultKind::ZoneBlackout(b) => {
            let mut nodes = Vec::new();
            for zone in b.all_zones() {
                let in_zone = topology.nodes_in(zone);
                if in_zone.is_empty() {
                    return Err(plan_err(format!("the lab has no zone {zone:?}")));
                }
                nodes.extend(in_zone);
            }
            for node in &nodes {
                for p in topology.processes_on(&node.name) {
                    let process = p.name.clone();
                    match b.mode {
                        BlackoutMode::Kill => {
                            steps.push(Step::Hold {
                                process: process.clone(),
                                reason: format!("{} has no power", node.name),
                            });
                            steps.push(Step::Kill { process });
                        }
                        BlackoutMode::Freeze => steps.push(Step::Freeze { process }),
                    }
                }
                if b.cut_network {
                    steps.push(Step::Network {
                        node: node.name.clone(),
                        rules: RuleSet::Blackout { ports: None },
                    });
                }
            }
            (
                nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>(),
                zone_nodes,
            )
        }
        FaultKind::NetworkPartition(np) => {
            let left = group_nodes(topology, &np.left);
            let right = group_nodes(topology, &np.right);
            if left.is_empty() || right.is_empty() {
                return Err(plan_err(
                    "a side of the partition matches no node in the lab",
                ));
            }
            if let Some(both) = left.iter().find(|n| right.contains(n)) {
                return Err(plan_err(format!(
                    "node {both} is on both sides of the partition"
                )));
            }
            let (left_dir, right_dir) = match np.direction {
                PartitionDirection::Both => (Direction::Both, Direction::Both),
                // Left cannot reach right: left's packets towards right are dropped, and
                // right drops what arrives from left.
                PartitionDirection::LeftToRight => (Direction::Egress, Direction::Ingress),
                PartitionDirection::RightToLeft => (Direction::Ingress, Direction::Egress),
            };
            let (left_peers, right_peers) = (cidrs(topology, &right)?, cidrs(topology, &left)?);
            for (nodes, peers, direction) in [
                (&left, &left_peers, left_dir),
                (&right, &right_peers, right_dir),
            ] {
                for node in nodes {
                    steps.push(Step::Network {
                        node: node.clone(),
                        rules: RuleSet::Partition {
                            peers: peers.clone(),
                            direction,
                            ports: None,
                        },
                    });
                }
            }
            // The isolated side is what the blast radius counts.
            (left, zone_nodes)
        }
        FaultKind::DiskLoss(d) => {
            let candidates = selected(topology, None)
                .into_iter()
                .filter(|p| p.has_data)
                .count();
            let picked: Vec<&Process> = selected(topology, selector)
                .into_iter()
                .filter(|p| p.has_data)
                .collect();
            for p in &picked {
                let process = p.name.clone();
                match d.mode {
                    DiskLossMode::Wipe => {
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
                    DiskLossMode::ReadOnly => steps.push(Step::ReadOnly { process }),
                }
            }
            (picked.iter().map(|p| p.name.clone()).collect(), candidates)
        }
        FaultKind::OpsToolOutage(o) => {
            let picked = selected(topology, selector);
            for p in &picked {
                let process = p.name.clone();
                match o.mode {
                    OutageMode::Stop => {
                        steps.push(Step::Hold {
                            process: process.clone(),
                            reason: "scaled to zero".to_owned(),
                        });
                        steps.push(Step::Kill { process });
                    }
                    OutageMode::Freeze => steps.push(Step::Freeze { process }),
                    // The node may run other processes: cut only the tool's own port.
                    OutageMode::Isolate => {
                        let endpoint = p.kind.endpoint().ok_or_else(|| {
                            plan_err(format!("{} serves nothing to isolate", p.name))
                        })?;
                        steps.push(Step::Network {
                            node: p.node.clone(),
                            rules: RuleSet::Blackout {
                                ports: Some(Ports {
                                    protocol: Protocol::Tcp,
                                    ports: vec![endpoint.port()],
                                }),
                            },
                        });
                    }
                }
            }
            (
                picked.iter().map(|p| p.name.clone()).collect(),
                topology.processes.len(),
            )
        }
        FaultKind::PodKill(_) => {
            let picked = selected(topology, selector);
            for p in &picked {
                steps.push(Step::Kill {
                    process: p.name.clone(),
                });
            }
            (
                picked.iter().map(|p| p.name.clone()).collect(),
                topology.processes.len(),
            )
        }
    };
    if targets.is_empty() {
        return Err(plan_err("the fault selects nothing in the lab"));
    }
    let radius = &spec.blast_radius;
    let percent = targets.len() * 100 / candidates.max(1);
    if targets.len() > radius.max_targets as usize || percent > radius.max_percent as usize {
        return Err(plan_err(format!(
            "{} target(s) ({percent}% of {candidates}) exceed the blast radius (at most {} and \
             {}%): {}",
            targets.len(),
            radius.max_targets,
            radius.max_percent,
            targets.join(", ")
        )));
    }
    Ok(Plan {
        targets,
        candidates,
        steps,
    })
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
        let mut n = 0;
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
            self.injector
                .apply(&Self::sub_id(id, n)?, &fault, expires_at)?;
            n += 1;
        }
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
        let mut missing = Vec::new();
        for entry in self.entries_of(id)? {
            if let Some(what) = self.injector.missing(&entry)? {
                match self
                    .injector
                    .apply(&entry.id, &entry.fault, entry.expires_at)
                {
                    Ok(_) => missing.push(format!("{what} (re-applied)")),
                    Err(e) => missing.push(format!("{what} (re-applying failed: {e})")),
                }
            }
        }
        Ok(missing)
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
