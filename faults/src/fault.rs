//! Faults applied under the journal and reverted idempotently.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bounded::{CALL_TIMEOUT, bounded};
use crate::disk::{self, MountTarget};
use crate::error::{Error, Result};
use crate::id::InjectionId;
use crate::journal::{Entry, Journal, now_unix};
use crate::netns::{Netns, NetnsIdentity};
use crate::nft;
use crate::process::{self, PidResult, ProcessOutcome, ProcessRef};
pub use crate::target::{Fault, Target};

/// What applying a fault did.
#[derive(Debug)]
pub struct Applied {
    pub id: InjectionId,
    pub target: Target,
    /// Per-process results for freeze and kill (including pids already gone).
    pub processes: Vec<PidResult>,
    /// For a wipe: top-level entries deleted.
    pub wiped_entries: Option<usize>,
}

/// How a revert ended; every variant is a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevertOutcome {
    /// The fault was in place and is now undone.
    Reverted,
    /// Nothing was in place (already reverted, or never applied).
    AlreadyReverted,
    /// The target no longer exists (namespace or processes gone), so nothing is left.
    TargetGone,
    /// The fault cannot be undone by design (kill, wipe); nothing was done.
    Irreversible,
}

/// What reverting a fault did.
#[derive(Debug)]
pub struct Reverted {
    pub id: InjectionId,
    pub outcome: RevertOutcome,
    /// Per-process results for a thaw.
    pub processes: Vec<PidResult>,
}

/// Applies and reverts faults, journalling each one first.
#[derive(Debug, Clone)]
pub struct Injector {
    journal: Journal,
    /// How long one resolve, apply, check or revert may take (see [`crate::bounded`]).
    call_timeout: Duration,
}

impl Injector {
    /// An injector recording into the journal at `journal_dir`.
    pub fn new(journal_dir: impl Into<PathBuf>) -> Result<Self> {
        Ok(Self {
            journal: Journal::open(journal_dir)?,
            call_timeout: CALL_TIMEOUT,
        })
    }

    /// The same injector with another limit on each call ([`CALL_TIMEOUT`] by default).
    pub fn with_call_timeout(mut self, limit: Duration) -> Self {
        self.call_timeout = limit;
        self
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Resolves, records, then applies `fault` as injection `id`, to be reverted by
    /// `expires_at` (unix seconds). If applying fails, what was applied is undone and the
    /// record removed, so a failure never leaves a partial injection.
    ///
    /// Applying an id that is already recorded with the same fault applies the recorded
    /// target again (the agent re-reconciling after a restart) and keeps the original
    /// expiry; a kill only reaches processes with the recorded start times, a wipe runs
    /// again (finishing one a crash interrupted).
    pub fn apply(&self, id: &InjectionId, fault: &Fault, expires_at: u64) -> Result<Applied> {
        // Applying a recorded injection again re-applies what was recorded (resolving anew
        // would see our own mounts or stopped processes); a different fault under the same
        // id is refused.
        let (target, gone) = match self.journal.get(id)? {
            Some(existing) if existing.fault == *fault => (existing.target, vec![]),
            Some(_) => {
                return Err(Error::invalid(
                    "id",
                    format!("injection {id} is already recorded with a different fault"),
                ));
            }
            None => {
                let resolving = fault.clone();
                let (target, gone) = bounded(
                    Some(id),
                    "resolving the target",
                    self.call_timeout,
                    move || resolving.resolve(),
                )?;
                let entry = Entry {
                    version: crate::journal::FORMAT_VERSION,
                    id: id.clone(),
                    kind: target.kind().to_string(),
                    fault: fault.clone(),
                    target: target.clone(),
                    created_at: now_unix(),
                    expires_at,
                };
                self.journal.record(&entry)?;
                (target, gone)
            }
        };
        match self.bounded_call(id, &target, "applying", apply_target) {
            Ok((mut processes, wiped_entries)) => {
                processes.extend(gone.into_iter().map(|pid| PidResult {
                    pid,
                    outcome: Ok(ProcessOutcome::Gone),
                }));
                tracing::info!(%id, kind = target.kind(), "fault applied");
                Ok(Applied {
                    id: id.clone(),
                    target,
                    processes,
                    wiped_entries,
                })
            }
            Err(e) => {
                tracing::warn!(%id, error = %e, "apply failed; undoing");
                let undo = self.not_held_by_others(id, &target)?;
                if self
                    .bounded_call(id, &undo, "undoing", revert_target)
                    .is_ok()
                {
                    self.journal.remove(id)?;
                }
                Err(e)
            }
        }
    }

    /// Reverts injection `id` and removes its record. Reverting an id that is not recorded
    /// is success ([`RevertOutcome::AlreadyReverted`]).
    pub fn revert(&self, id: &InjectionId) -> Result<Reverted> {
        match self.journal.get(id)? {
            Some(entry) => self.revert_entry(&entry),
            None => Ok(Reverted {
                id: id.clone(),
                outcome: RevertOutcome::AlreadyReverted,
                processes: vec![],
            }),
        }
    }

    /// Reverts a recorded entry and removes it from the journal on success.
    pub fn revert_entry(&self, entry: &Entry) -> Result<Reverted> {
        let target = self.not_held_by_others(&entry.id, &entry.target)?;
        let (outcome, processes) =
            self.bounded_call(&entry.id, &target, "reverting", revert_target)?;
        self.journal.remove(&entry.id)?;
        tracing::info!(id = %entry.id, ?outcome, "fault reverted");
        Ok(Reverted {
            id: entry.id.clone(),
            outcome,
            processes,
        })
    }

    /// Undoes a recorded fault on the system without touching the journal: for when the
    /// journal cannot be read or written (its directory gone or failing) and the fault's
    /// expiry has come. The entry stays, so whoever reads the journal next reverts it again,
    /// which is harmless. Overlapping freezes cannot be counted without the journal: the
    /// processes are thawed.
    pub fn undo(&self, entry: &Entry) -> Result<RevertOutcome> {
        let (outcome, _) = self.bounded_call(&entry.id, &entry.target, "undoing", revert_target)?;
        tracing::warn!(id = %entry.id, ?outcome, "fault undone without the journal");
        Ok(outcome)
    }

    /// What reverting `target` of injection `id` may undo: a freeze leaves stopped the
    /// processes another recorded freeze still holds (overlapping freezes are counted by
    /// their journal entries: the last one to go thaws). Other targets are their own.
    fn not_held_by_others(&self, id: &InjectionId, target: &Target) -> Result<Target> {
        let Target::Freeze { processes } = target else {
            return Ok(target.clone());
        };
        let held: std::collections::HashSet<ProcessRef> = self
            .journal
            .scan()?
            .entries
            .into_iter()
            .filter(|e| &e.id != id)
            .filter_map(|e| match e.target {
                Target::Freeze { processes } => Some(processes),
                _ => None,
            })
            .flatten()
            .collect();
        let (kept, thawed): (Vec<ProcessRef>, Vec<ProcessRef>) =
            processes.iter().partition(|p| held.contains(p));
        if !kept.is_empty() {
            tracing::info!(%id, kept = kept.len(), "left frozen: another injection still freezes them");
        }
        Ok(Target::Freeze { processes: thawed })
    }

    /// Re-checks a recorded injection against the real system: `Ok(None)` when all of it
    /// is still in place, otherwise what is missing (its rules deleted, a frozen process
    /// running, its mount gone or writable). A target that no longer exists is not a
    /// lapse: nothing of it can run unfaulted. Kills and wipes are done once and have
    /// nothing to hold.
    pub fn missing(&self, entry: &Entry) -> Result<Option<String>> {
        self.bounded_call(&entry.id, &entry.target, "checking", missing_from)
    }

    /// Runs `call` (apply, revert or check) on `target` of injection `id` within
    /// the injector's call timeout; see [`crate::bounded`] for what a call that times out leaves behind.
    fn bounded_call<T: Send + 'static>(
        &self,
        id: &InjectionId,
        target: &Target,
        doing: &str,
        call: fn(&InjectionId, &Target) -> Result<T>,
    ) -> Result<T> {
        let (owned_id, owned_target) = (id.clone(), target.clone());
        bounded(
            Some(id),
            &format!("{doing} {} of {id}", target.kind()),
            self.call_timeout,
            move || call(&owned_id, &owned_target),
        )
    }

    /// Reverts every entry past its expiry at `now`.
    pub fn revert_expired(&self, now: u64) -> Result<Vec<Result<Reverted>>> {
        Ok(self
            .journal
            .expired(now)?
            .iter()
            .map(|e| self.revert_entry(e))
            .collect())
    }
}

type ApplyDetail = (Vec<PidResult>, Option<usize>);

fn apply_target(id: &InjectionId, target: &Target) -> Result<ApplyDetail> {
    match target {
        Target::Network { netns, rules, .. } => {
            nft::apply(netns, id, rules).map(|()| (vec![], None))
        }
        Target::Freeze { processes } => Ok((process::freeze(processes), None)),
        Target::Kill { processes } => Ok((process::kill(processes), None)),
        Target::TakeAway(t) => disk::take_away(t, id).map(|()| (vec![], None)),
        Target::ReadOnly(t) => disk::read_only(t).map(|()| (vec![], None)),
        Target::Wipe { dir } => disk::wipe(dir).map(|n| (vec![], Some(n))),
    }
}

fn revert_target(id: &InjectionId, target: &Target) -> Result<(RevertOutcome, Vec<PidResult>)> {
    match target {
        Target::Network {
            netns, identity, ..
        } => {
            if netns_gone(netns, identity)? {
                return Ok((RevertOutcome::TargetGone, vec![]));
            }
            nft::revert(netns, id)?;
            Ok((RevertOutcome::Reverted, vec![]))
        }
        Target::Freeze { processes } => {
            let results = process::thaw(processes);
            if let Some(failed) = results.iter().position(|r| r.outcome.is_err()) {
                let mut results = results;
                let r = results.swap_remove(failed);
                return Err(r
                    .outcome
                    .err()
                    .unwrap_or_else(|| Error::Internal("thaw".into())));
            }
            let outcome = if results
                .iter()
                .all(|r| matches!(r.outcome, Ok(ProcessOutcome::Gone)))
                && !results.is_empty()
            {
                RevertOutcome::TargetGone
            } else {
                RevertOutcome::Reverted
            };
            Ok((outcome, results))
        }
        Target::Kill { .. } | Target::Wipe { .. } => Ok((RevertOutcome::Irreversible, vec![])),
        Target::TakeAway(t) | Target::ReadOnly(t) => {
            if !t.dir.exists() && !disk_mount_present(t)? {
                return Ok((RevertOutcome::TargetGone, vec![]));
            }
            let outcome = if disk::unmount_ours(t)? {
                RevertOutcome::Reverted
            } else {
                RevertOutcome::AlreadyReverted
            };
            Ok((outcome, vec![]))
        }
    }
}

fn missing_from(id: &InjectionId, target: &Target) -> Result<Option<String>> {
    match target {
        Target::Network {
            netns, identity, ..
        } => {
            if netns_gone(netns, identity)? {
                return Ok(None);
            }
            let present =
                nft::list(netns)?.is_some_and(|installed| installed.injections().contains_key(id));
            Ok((!present)
                .then(|| format!("the rules of {id} are gone from netns {}", netns.display())))
        }
        Target::Freeze { processes } => {
            let mut running = Vec::new();
            for p in processes {
                if let Some(stat) = process::stat(p.pid)?
                    && stat.start_time == p.start_time
                    && !matches!(stat.state, 'T' | 't' | 'Z' | 'X')
                {
                    running.push(p.pid.to_string());
                }
            }
            Ok((!running.is_empty()).then(|| {
                format!(
                    "frozen process(es) {} of {id} are running again",
                    running.join(", ")
                )
            }))
        }
        Target::Kill { .. } | Target::Wipe { .. } => Ok(None),
        Target::TakeAway(t) | Target::ReadOnly(t) => {
            if !t.dir.exists() {
                return Ok(None);
            }
            let mounts = crate::mountinfo::read()?;
            let ours = mounts.iter().rev().find(|m| is_our_mount(m, t));
            let dir = t.dir.display();
            Ok(match (ours, target) {
                (None, _) => Some(format!("the mount of {id} is gone from {dir}")),
                (Some(m), Target::ReadOnly(_)) if !m.read_only() => {
                    Some(format!("{dir} is writable again ({id})"))
                }
                _ => None,
            })
        }
    }
}

/// Whether `m` is the mount a disk fault put over `t` (on the mount `t` lived on).
fn is_our_mount(m: &crate::mountinfo::Mount, t: &MountTarget) -> bool {
    m.mount_point == t.dir && m.parent == t.parent_mount_id
}

fn disk_mount_present(t: &MountTarget) -> Result<bool> {
    Ok(crate::mountinfo::read()?.iter().any(|m| is_our_mount(m, t)))
}

/// Whether the namespace we changed no longer exists (path gone or reused by another one).
fn netns_gone(netns: &Netns, recorded: &Option<NetnsIdentity>) -> Result<bool> {
    match (netns, recorded) {
        (Netns::Host, _) | (_, None) => Ok(false),
        (Netns::Path(_), Some(recorded)) => Ok(netns.identity()?.as_ref() != Some(recorded)),
    }
}

/// What [`cleanup_all`] did.
#[derive(Debug, Default)]
pub struct CleanupReport {
    pub reverted: Vec<Reverted>,
    /// Entries that could not be reverted (they stay in the journal) and unreadable files.
    pub errors: Vec<Error>,
    /// Namespaces whose now-empty firedrill table was deleted.
    pub tables_removed: usize,
}

impl CleanupReport {
    /// True when everything recorded was reverted.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Reverts everything recorded in the journal at `journal_dir`: what an agent or lab runs
/// when it starts after a crash. Continues past failures and reports them; then deletes
/// firedrill's table in every touched namespace where it is left empty.
pub fn cleanup_all(journal_dir: &Path) -> Result<CleanupReport> {
    let injector = Injector::new(journal_dir)?;
    let scan = injector.journal.scan()?;
    let mut report = CleanupReport {
        errors: scan.errors,
        ..CleanupReport::default()
    };
    let mut namespaces: BTreeSet<String> = BTreeSet::new();
    let mut touched: Vec<Netns> = Vec::new();
    for entry in &scan.entries {
        match injector.revert_entry(entry) {
            Ok(r) => {
                if let (RevertOutcome::Reverted, Target::Network { netns, .. }) =
                    (r.outcome, &entry.target)
                    && namespaces.insert(netns.display())
                {
                    touched.push(netns.clone());
                }
                report.reverted.push(r);
            }
            Err(e) => report.errors.push(e),
        }
    }
    for ns in &touched {
        match nft::remove_table_if_empty(ns) {
            Ok(true) => report.tables_removed += 1,
            Ok(false) => {}
            Err(e) => report.errors.push(e),
        }
    }
    Ok(report)
}
