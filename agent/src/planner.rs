//! The pure core of the agent: given this node's Injections (as last seen), what the journal
//! holds, what this process remembers and the time, decide what to apply, what to revert,
//! which status to report and when to wake up next. No I/O; the shell in [`crate::run`]
//! carries the steps out and asks again.
//!
//! The rules, in order of precedence for one Injection:
//!
//! 1. **Deleted** (revert asked for): revert what is held; then report `Reverted` (if it was
//!    applied) and remove the agent's finalizer.
//! 2. **Expired, or ended** (`Reverted`/`Failed`/`Refused`): revert what is held; report
//!    `Reverted` (or `Failed` if it expired before it could be applied); remove the finalizer.
//! 3. **Live**: held and complete → report `Applied` if not yet, and for a kill keep the
//!    pods down; held but not known complete (a crash during apply) → revert, to apply it
//!    whole again; not held → apply (once: a failure is reported, never retried; a refusal,
//!    decided just before applying, is reported `Refused` and never applied).
//!
//! A journal entry that cannot be read (corrupt, or from a newer format) is never taken for
//! "nothing held": its Injection is never reported `Reverted` and keeps its finalizer. The
//! agent reverts what it can read, inspects the node for the rest (**salvage**) and reports
//! `Failed`, saying what it found; a person removes the entry file to let it go.
//!
//! Held faults with no Injection: reverted when the Injection list is known (it was
//! deleted, perhaps while the agent was down); while it is not known (the API server is
//! unreachable, e.g. during a zone blackout) they stay until their own expiry and are
//! reverted then. That is the agent's own timer.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use firedrill_core::api::{InjectionState, Lapse, keep_longest_lapses};
use firedrill_faults::InjectionId;

/// An Injection's journal key (see [`crate::translate::key_of`]).
pub type Key = String;

/// How often a kill is enforced again while it lasts (a restarted container is killed
/// again: the power is still off).
pub const ENFORCE_EVERY: TimeDelta = TimeDelta::seconds(2);

/// What the planner needs of one Injection of this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub key: Key,
    pub expires_at: DateTime<Utc>,
    /// Being deleted: the operator asks for a revert.
    pub deleting: bool,
    /// Carries the agent's finalizer.
    pub finalized: bool,
    /// `status.state` as last seen.
    pub state: InjectionState,
    /// A kill, which is enforced again while it lasts.
    pub kill: bool,
    /// The driver's heartbeat, when the Injection names one.
    pub driver: Option<Driver>,
}

/// What the agent knows of an Injection's driver (see
/// [`firedrill_core::api::Heartbeat`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Driver {
    /// The heartbeat Lease's name.
    pub lease: String,
    /// Without a renewal this long, the driver is gone.
    pub timeout: TimeDelta,
    /// Since when, by this agent's clock, the Lease's renew time has been what it is now,
    /// as long as the API server's last answer said so; `None` while the agent cannot tell
    /// (no answer yet, or the API server unreachable: a node cut off holds its fault).
    pub unchanged_since: Option<DateTime<Utc>>,
}

impl Driver {
    /// When the driver counts as gone, if the agent can tell.
    fn gone_at(&self) -> Option<DateTime<Utc>> {
        self.unchanged_since.map(|since| since + self.timeout)
    }

    /// Why the fault ends, in plain words.
    fn gone(&self) -> String {
        format!(
            "its driver's heartbeat (Lease {}) was not renewed for {}s while the API server \
             answered: nobody is watching its hypothesis any more",
            self.lease,
            self.timeout.num_seconds()
        )
    }
}

/// What the journal holds of one Injection (all of its faults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub key: Key,
    pub ids: Vec<InjectionId>,
    /// When the first of its faults was recorded.
    pub created_at: DateTime<Utc>,
    /// The earliest expiry recorded.
    pub expires_at: DateTime<Utc>,
    /// Why each of its journal entries that could not be read could not be.
    pub unreadable: Vec<String>,
}

/// How often a held fault is checked against the node (and what is gone re-applied). Not
/// longer than the shortest default sample interval (2 s) that the lapse rule measures
/// against: a lapse that long is always seen.
pub const RECHECK_EVERY: TimeDelta = TimeDelta::seconds(2);

/// The first instant of the shared grid of period `every` (multiples of `every` since the
/// Unix epoch) strictly after `now`: so never later than `now + every`.
///
/// Every periodic check (re-checks, kills enforced again, heartbeat reads) falls due on
/// this grid, so a node holding N faults wakes once per period and checks them all in one
/// pass, rather than N times on N staggered timers.
pub fn next_tick(now: DateTime<Utc>, every: TimeDelta) -> DateTime<Utc> {
    let (Some(step), Some(t)) = (every.num_nanoseconds(), now.timestamp_nanos_opt()) else {
        return now + every;
    };
    if step <= 0 {
        return now + every;
    }
    let next = t.div_euclid(step).saturating_add(1).saturating_mul(step);
    DateTime::from_timestamp_nanos(next)
}

/// The re-checks of one held fault by this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checks {
    /// When the next check is due.
    pub next_at: DateTime<Utc>,
    /// The last time the whole fault was known in place.
    pub whole_at: DateTime<Utc>,
    /// The lapses found, oldest first (at most `MAX_LAPSES`, the longest kept).
    pub lapses: Vec<Lapse>,
    /// The lapses as last written to the status.
    pub reported: Vec<Lapse>,
}

impl Checks {
    /// Checks of a fault known whole at `whole_at`, the first due now.
    pub fn new(whole_at: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        Self {
            next_at: now,
            whole_at,
            lapses: vec![],
            reported: vec![],
        }
    }

    /// Takes in one check at `now`: `missing` is what was found gone (and re-applied); empty
    /// when the whole fault was in place. A lapse runs from the last whole check to the next
    /// one; right after a lapse the next check is due at once, to measure the repair. The
    /// next check is on the shared grid ([`next_tick`]), at most [`RECHECK_EVERY`] away.
    pub fn record(&mut self, missing: &[String], now: DateTime<Utc>) {
        let open = self.lapses.last_mut().filter(|l| l.healed_at.is_none());
        if missing.is_empty() {
            if let Some(open) = open {
                open.healed_at = Some(now);
            }
            self.whole_at = now;
            self.next_at = next_tick(now, RECHECK_EVERY);
            return;
        }
        let what: String = missing.join("; ").chars().take(MAX_LAPSE_TEXT).collect();
        match open {
            Some(open) => open.what = what,
            None => {
                self.lapses.push(Lapse {
                    since: self.whole_at,
                    seen_at: now,
                    healed_at: None,
                    what,
                });
                keep_longest_lapses(&mut self.lapses);
            }
        }
        self.next_at = now;
    }
}

/// The most characters of what a lapse found missing that the status carries.
const MAX_LAPSE_TEXT: usize = 500;

/// How often a heartbeat is read (see [`firedrill_core::api::HEARTBEAT_POLL`]).
pub fn heartbeat_poll() -> TimeDelta {
    TimeDelta::from_std(firedrill_core::api::HEARTBEAT_POLL).unwrap_or(TimeDelta::seconds(2))
}

/// What this agent process did that the API server may not show yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// Applied completely by this process (every fault journalled and in place).
    pub complete: BTreeSet<Key>,
    /// Failed to apply in this process, with the reason; never tried again.
    pub failed: BTreeMap<Key, String>,
    /// Refused by this process (a protected node or namespace), with the reason; never
    /// applied.
    pub refused: BTreeMap<Key, String>,
    /// The state this process last wrote to each status.
    pub reported: BTreeMap<Key, InjectionState>,
    /// Injections with unreadable journal entries that this process salvaged: what the
    /// inspection of the node found and did.
    pub salvaged: BTreeMap<Key, String>,
    /// The re-checks of each held fault.
    pub checks: BTreeMap<Key, Checks>,
    /// When this process last reverted each Injection's faults.
    pub reverted_at: BTreeMap<Key, DateTime<Utc>>,
    /// Injections whose finalizer this process removed (or found gone with its object):
    /// not released again while the watch still shows the copy from before. At 1,000
    /// reverts each was patched again on every pass until its watch event came, ~11
    /// times, the API server answering 404 to 10,876 patches (operator/README.md, "Scale").
    pub released: BTreeSet<Key>,
}

impl Memory {
    /// Forgets every Injection that neither the watch (`view`, complete) nor the journal
    /// (`held`) knows any more: nothing can ask about it again (a recreated Injection has
    /// a new UID, so a new key), and an agent that runs for months must not grow with
    /// every Injection it ever saw. Without a complete view nothing is forgotten.
    pub fn forget_gone(&mut self, view: Option<&[Wanted]>, held: &[Held]) {
        let Some(view) = view else {
            return;
        };
        let live: BTreeSet<&str> = view
            .iter()
            .map(|w| w.key.as_str())
            .chain(held.iter().map(|h| h.key.as_str()))
            .collect();
        let keep = |key: &Key| live.contains(key.as_str());
        self.complete.retain(|k| keep(k));
        self.failed.retain(|k, _| keep(k));
        self.refused.retain(|k, _| keep(k));
        self.reported.retain(|k, _| keep(k));
        self.salvaged.retain(|k, _| keep(k));
        self.checks.retain(|k, _| keep(k));
        self.reverted_at.retain(|k, _| keep(k));
        self.released.retain(|k| keep(k));
    }
}

/// Why something is reverted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevertReason {
    /// The Injection is being deleted.
    Deleted,
    /// Its `expiresAt` has passed.
    Expired,
    /// Its status says it ended (`Reverted` or `Failed`) yet something is held.
    Ended,
    /// No Injection wants it any more (deleted while the agent was away).
    Gone,
    /// An apply was interrupted (the agent crashed part-way); it is applied again after.
    Interrupted,
    /// Its driver's heartbeat stopped: nobody is watching the hypothesis any more.
    DriverGone,
}

impl RevertReason {
    /// Plain words for status messages and logs.
    pub fn describe(self) -> &'static str {
        match self {
            RevertReason::Deleted => "reverted: the Injection was deleted",
            RevertReason::Expired => {
                "reverted by the agent's own timer: the fault's duration (holdFor) or its expiresAt was up"
            }
            RevertReason::Ended => "reverted: the Injection had already ended",
            RevertReason::Gone => "reverted: no Injection wants it any more",
            RevertReason::Interrupted => "reverted an interrupted apply, to apply it again",
            RevertReason::DriverGone => {
                "reverted: the driver's heartbeat Lease was not renewed within its timeout"
            }
        }
    }
}

/// A status to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Applied {
        at: DateTime<Utc>,
    },
    Reverted {
        at: DateTime<Utc>,
        why: String,
    },
    Failed {
        message: String,
    },
    /// Failed because its journal entry cannot be read: said as a condition and a Warning
    /// too, as a person must act on it.
    JournalUnreadable {
        at: DateTime<Utc>,
        message: String,
    },
    Refused {
        message: String,
    },
    /// The held fault's lapses, as the re-checks found them; the state stays `Applied`
    /// (since `applied_at`, should the status last seen not show it yet).
    Checked {
        applied_at: DateTime<Utc>,
        lapses: Vec<Lapse>,
    },
}

impl Report {
    pub fn state(&self) -> InjectionState {
        match self {
            Report::Applied { .. } => InjectionState::Applied,
            Report::Reverted { .. } => InjectionState::Reverted,
            Report::Failed { .. } | Report::JournalUnreadable { .. } => InjectionState::Failed,
            Report::Refused { .. } => InjectionState::Refused,
            Report::Checked { .. } => InjectionState::Applied,
        }
    }
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Revert everything held for the key.
    Revert { key: Key, reason: RevertReason },
    /// Write the status.
    Report { key: Key, report: Report },
    /// Remove the agent's finalizer.
    Release(Key),
    /// Add the agent's finalizer, then apply, then report.
    Apply(Key),
    /// Kill again whatever of the pods came back.
    Enforce(Key),
    /// Check the held fault against the node; re-apply what is gone.
    Recheck(Key),
    /// Revert what the journal can still read for the key, then inspect the node for what
    /// its unreadable entries may hold and undo that too.
    Salvage(Key),
}

impl Step {
    pub fn key(&self) -> &str {
        match self {
            Step::Revert { key, .. } | Step::Report { key, .. } => key,
            Step::Release(key)
            | Step::Apply(key)
            | Step::Enforce(key)
            | Step::Recheck(key)
            | Step::Salvage(key) => key,
        }
    }

    /// Reverts first (safety), applies last.
    fn rank(&self) -> u8 {
        match self {
            Step::Revert { .. } | Step::Salvage(_) => 0,
            Step::Report { .. } => 1,
            Step::Release(_) => 2,
            Step::Enforce(_) | Step::Recheck(_) => 3,
            Step::Apply(_) => 4,
        }
    }
}

/// What to do now and when to look again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// The next time something falls due (an expiry, a kill to enforce), if any.
    pub wake: Option<DateTime<Utc>>,
}

impl Plan {
    fn wake_at(&mut self, at: DateTime<Utc>) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }
}

/// Decides. `view` is `None` while the Injection list is not known (not listed yet since
/// the agent started); then only expiry reverts anything.
pub fn plan(view: Option<&[Wanted]>, held: &[Held], memory: &Memory, now: DateTime<Utc>) -> Plan {
    let held: BTreeMap<&str, &Held> = held.iter().map(|h| (h.key.as_str(), h)).collect();
    let mut out = Plan::default();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for w in view.unwrap_or_default() {
        seen.insert(w.key.as_str());
        let h = held.get(w.key.as_str()).copied();
        let state = memory.reported.get(&w.key).copied().unwrap_or(w.state);
        match h {
            Some(h) if !h.unreadable.is_empty() => unreadable(&mut out, w, h, state, memory, now),
            _ => decide(&mut out, w, h, state, memory, now),
        }
    }
    for (key, h) in &held {
        if seen.contains(key) {
            continue;
        }
        if view.is_some() {
            out.steps.push(Step::Revert {
                key: (*key).to_owned(),
                reason: RevertReason::Gone,
            });
        } else if h.expires_at <= now {
            out.steps.push(Step::Revert {
                key: (*key).to_owned(),
                reason: RevertReason::Expired,
            });
        } else {
            out.wake_at(h.expires_at);
        }
    }
    out.steps.sort_by_key(Step::rank);
    out
}

/// An Injection whose journal cannot be fully read: salvage once, then say so as `Failed`.
/// Never `Reverted`, never released: nothing proves the fault is gone.
fn unreadable(
    out: &mut Plan,
    w: &Wanted,
    h: &Held,
    state: InjectionState,
    memory: &Memory,
    now: DateTime<Utc>,
) {
    let Some(found) = memory.salvaged.get(&w.key) else {
        out.steps.push(Step::Salvage(w.key.clone()));
        return;
    };
    if state != InjectionState::Failed {
        out.steps.push(Step::Report {
            key: w.key.clone(),
            report: Report::JournalUnreadable {
                at: now,
                message: format!(
                    "the agent cannot read its journal entry for this Injection ({}), so it \
                     cannot prove the fault was reverted. It inspected the node instead: {found}. \
                     Its finalizer stays until the entry file is removed from the agent's \
                     journal directory",
                    h.unreadable.join("; ")
                ),
            },
        });
    }
}

fn decide(
    out: &mut Plan,
    w: &Wanted,
    h: Option<&Held>,
    state: InjectionState,
    memory: &Memory,
    now: DateTime<Utc>,
) {
    let key = || w.key.clone();
    let expires_at = h.map_or(w.expires_at, |h| h.expires_at.min(w.expires_at));
    let expired = expires_at <= now;
    let ended = state.is_final();
    let driver_gone_at = w.driver.as_ref().and_then(Driver::gone_at);
    let driver_gone = driver_gone_at.is_some_and(|at| at <= now);
    // Reverted here and not held since: it ended (an interrupted apply, the one revert
    // meant to be applied again, leaves no revert time). Never applied again, even while
    // the watch still shows a copy older than its own report: a node its blackout cut off
    // sees no update until the cut ends, and its own timer ends the fault first.
    let reverted_here = h.is_none() && memory.reverted_at.contains_key(&w.key);
    if w.deleting || expired || ended || driver_gone || reverted_here {
        let reason = if w.deleting {
            RevertReason::Deleted
        } else if expired {
            RevertReason::Expired
        } else if ended {
            RevertReason::Ended
        } else if driver_gone {
            RevertReason::DriverGone
        } else {
            // Only the journal's own end comes before the copy's: its duration was up.
            RevertReason::Expired
        };
        if h.is_some() {
            // Report and release once nothing is held any more (the next plan).
            out.steps.push(Step::Revert { key: key(), reason });
            return;
        }
        let report = match state {
            _ if state == InjectionState::Applied || (reverted_here && !ended) => {
                Some(Report::Reverted {
                    at: memory.reverted_at.get(&w.key).copied().unwrap_or(now),
                    why: match (&w.driver, reason) {
                        (Some(d), RevertReason::DriverGone) => d.gone(),
                        _ => reason.describe().to_owned(),
                    },
                })
            }
            InjectionState::Pending if !w.deleting => Some(Report::Failed {
                message: memory.failed.get(&w.key).cloned().unwrap_or_else(|| {
                    match (&w.driver, reason) {
                        (Some(d), RevertReason::DriverGone) => {
                            format!("not applied: {}", d.gone())
                        }
                        _ => format!(
                            "expired at {} before the agent could apply it",
                            w.expires_at
                        ),
                    }
                }),
            }),
            _ => None,
        };
        if let Some(report) = report {
            out.steps.push(Step::Report { key: key(), report });
        }
        if w.finalized && !memory.released.contains(&w.key) {
            out.steps.push(Step::Release(key()));
        }
        return;
    }
    out.wake_at(expires_at);
    if let Some(d) = &w.driver {
        // Read the heartbeat again on the grid, and decide when it would run out.
        out.wake_at(next_tick(now, heartbeat_poll()));
        if let Some(at) = d.gone_at() {
            out.wake_at(at);
        }
    }
    match h {
        Some(h) => {
            let complete = state == InjectionState::Applied || memory.complete.contains(&w.key);
            if !complete {
                out.steps.push(Step::Revert {
                    key: key(),
                    reason: RevertReason::Interrupted,
                });
                return;
            }
            if state != InjectionState::Applied {
                out.steps.push(Step::Report {
                    key: key(),
                    report: Report::Applied { at: h.created_at },
                });
            }
            if w.kill {
                out.steps.push(Step::Enforce(key()));
                out.wake_at(next_tick(now, ENFORCE_EVERY));
                return;
            }
            // Held, whole and reported: check it is still in place, and say what lapsed.
            if state != InjectionState::Applied {
                return;
            }
            let checks = memory.checks.get(&w.key);
            if let Some(c) = checks.filter(|c| c.lapses != c.reported) {
                out.steps.push(Step::Report {
                    key: key(),
                    report: Report::Checked {
                        applied_at: h.created_at,
                        lapses: c.lapses.clone(),
                    },
                });
            }
            let due = checks.map_or(now, |c| c.next_at);
            if due <= now {
                out.steps.push(Step::Recheck(key()));
                out.wake_at(next_tick(now, RECHECK_EVERY));
            } else {
                out.wake_at(due);
            }
        }
        None => match (memory.refused.get(&w.key), memory.failed.get(&w.key)) {
            (Some(message), _) => out.steps.push(Step::Report {
                key: key(),
                report: Report::Refused {
                    message: message.clone(),
                },
            }),
            (None, Some(message)) => out.steps.push(Step::Report {
                key: key(),
                report: Report::Failed {
                    message: message.clone(),
                },
            }),
            (None, None) => out.steps.push(Step::Apply(key())),
        },
    }
}

#[cfg(test)]
mod tests;
