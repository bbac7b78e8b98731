//! A fault as one typed request ([`Fault`]) and as resolved against the live system
//! ([`Target`], what the journal records). Below both the injector and the journal.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::disk::{self, MountTarget};
use crate::error::{Error, Result};
use crate::netns::{Netns, NetnsIdentity};
use crate::process::{self, ProcessRef};
use crate::rules::RuleSet;

/// A fault as asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Install `rules` in a network namespace.
    Network { netns: Netns, rules: RuleSet },
    /// Stop processes until reverted.
    Freeze { pids: Vec<i32> },
    /// Kill processes (irreversible).
    Kill { pids: Vec<i32> },
    /// Hide a data directory behind an empty file system until reverted.
    TakeAway { dir: PathBuf },
    /// Make a data directory read-only until reverted.
    ReadOnly { dir: PathBuf },
    /// Delete a data directory's contents (irreversible).
    Wipe { dir: PathBuf },
}

/// A fault resolved to exactly what it touches; this is what the journal records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Network {
        netns: Netns,
        /// The namespace's identity when applied; `None` for [`Netns::Host`].
        identity: Option<NetnsIdentity>,
        rules: RuleSet,
    },
    Freeze {
        processes: Vec<ProcessRef>,
    },
    Kill {
        processes: Vec<ProcessRef>,
    },
    TakeAway(MountTarget),
    ReadOnly(MountTarget),
    Wipe {
        dir: PathBuf,
    },
}

impl Target {
    /// The stable kind name (`network`, `freeze`, `kill`, `take_away`, `read_only`, `wipe`).
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Network { .. } => "network",
            Target::Freeze { .. } => "freeze",
            Target::Kill { .. } => "kill",
            Target::TakeAway(_) => "take_away",
            Target::ReadOnly(_) => "read_only",
            Target::Wipe { .. } => "wipe",
        }
    }
}

impl Fault {
    /// Validates the fault and resolves it against the live system (namespace identity,
    /// process start times, mount ids) without changing anything. Processes that are
    /// already gone are left out and reported by [`Injector::apply`](crate::Injector::apply).
    pub fn resolve(&self) -> Result<(Target, Vec<i32>)> {
        let procs = |pids: &[i32]| -> Result<(Vec<ProcessRef>, Vec<i32>)> {
            let found = process::resolve(pids)?;
            let gone = pids
                .iter()
                .copied()
                .filter(|p| !found.iter().any(|f| f.pid == *p))
                .collect();
            Ok((found, gone))
        };
        Ok(match self {
            Fault::Network { netns, rules } => {
                let rules = rules.validated()?;
                let identity = match netns {
                    Netns::Host => None,
                    Netns::Path(p) => Some(netns.identity()?.ok_or_else(|| {
                        Error::invalid("netns", format!("{} does not exist", p.display()))
                    })?),
                };
                let target = Target::Network {
                    netns: netns.clone(),
                    identity,
                    rules,
                };
                (target, vec![])
            }
            Fault::Freeze { pids } => {
                let (processes, gone) = procs(pids)?;
                (Target::Freeze { processes }, gone)
            }
            Fault::Kill { pids } => {
                let (processes, gone) = procs(pids)?;
                (Target::Kill { processes }, gone)
            }
            Fault::TakeAway { dir } => (Target::TakeAway(disk::prepare(dir)?), vec![]),
            Fault::ReadOnly { dir } => (Target::ReadOnly(disk::prepare(dir)?), vec![]),
            Fault::Wipe { dir } => {
                // prepare() does the path safety checks; the mount id is not needed.
                let dir = disk::prepare(dir)?.dir;
                (Target::Wipe { dir }, vec![])
            }
        })
    }
}
