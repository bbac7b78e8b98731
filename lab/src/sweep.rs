//! Which processes on this machine belong to a lab. `lab down` must find every one of them,
//! even when the namespaces they ran in are gone (deleted by hand, or by a crash half-way
//! through an earlier `down`): a process left running is a fault that outlives the lab.
//!
//! Three independent ways to recognise one, so that losing any one record is harmless:
//! - its network namespace is one of the lab's named namespaces;
//! - the supervisor recorded it in `procs/<name>/pid.json` (pid and start time);
//! - it works in one of the lab's process directories (`procs/<name>`), which is where the
//!   supervisor starts everything.

use std::fs;
use std::path::{Path, PathBuf};

use firedrill_faults::netns::NetnsIdentity;
use firedrill_faults::{Netns, ProcessRef};

use crate::error::{LabError, Result};
use crate::net;
use crate::state::RunDir;

/// A process found on this machine, with what it is known by.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    process: ProcessRef,
    cwd: Option<PathBuf>,
    netns: Option<NetnsIdentity>,
    cmdline: Vec<String>,
}

/// Every process but this one, its ancestors and pid 1: `down` may be run from a shell
/// whose working directory is inside the lab, and must not kill that shell.
fn scan() -> Result<Vec<Found>> {
    let spared = ancestors_of_self();
    let entries = fs::read_dir("/proc").map_err(|e| LabError::io("/proc", e))?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid <= 1 || spared.contains(&pid) {
            continue;
        }
        // A process that exits during the scan simply drops out.
        let Ok(Some(process)) = ProcessRef::of(pid) else {
            continue;
        };
        let proc_dir = entry.path();
        found.push(Found {
            process,
            cwd: fs::read_link(proc_dir.join("cwd")).ok(),
            netns: Netns::of_pid(pid).identity().ok().flatten(),
            cmdline: fs::read(proc_dir.join("cmdline"))
                .map(|raw| {
                    raw.split(|b| *b == 0)
                        .filter(|arg| !arg.is_empty())
                        .map(|arg| String::from_utf8_lossy(arg).into_owned())
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    Ok(found)
}

fn ancestors_of_self() -> Vec<i32> {
    let mut chain = Vec::new();
    let mut pid = std::process::id() as i32;
    while pid > 1 && !chain.contains(&pid) {
        chain.push(pid);
        pid = parent_of(pid).unwrap_or(0);
    }
    chain
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

fn lab_identities() -> Result<Vec<NetnsIdentity>> {
    let mut ids = Vec::new();
    for name in net::existing_namespaces() {
        if let Some(id) = net::netns_path(&name).identity()? {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The processes `down` of `run` must stop. With `shared_namespaces`, that includes every
/// process in a lab namespace, whichever run directory it came from; without, only those
/// this run directory recorded or started.
pub fn processes_of(run: &RunDir, shared_namespaces: bool) -> Result<Vec<ProcessRef>> {
    let ids = if shared_namespaces {
        lab_identities()?
    } else {
        vec![]
    };
    let recorded = recorded(run);
    let procs_dir = canonical(&run.root().join("procs"));
    Ok(scan()?
        .into_iter()
        .filter(|f| {
            recorded.contains(&f.process)
                || f.cwd
                    .as_deref()
                    .is_some_and(|cwd| cwd.starts_with(&procs_dir))
                || f.netns.as_ref().is_some_and(|id| ids.contains(id))
        })
        .map(|f| f.process)
        .collect())
}

/// Live processes named in the run directory's pid files.
fn recorded(run: &RunDir) -> Vec<ProcessRef> {
    let Ok(entries) = fs::read_dir(run.root().join("procs")) else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|name| run.read_pid(&name).ok().flatten())
        .map(|record| record.process)
        .filter(|p| p.alive().unwrap_or(false))
        .collect()
}

/// Live supervisors of `run`, found by their command line, so that a lost or stale
/// `supervisor.json` cannot leave one running to restart what `down` stops.
pub fn supervisors_of(run: &RunDir) -> Result<Vec<ProcessRef>> {
    let mine = canonical(run.root());
    Ok(scan()?
        .into_iter()
        .filter(|f| supervised_dir(&f.cmdline).is_some_and(|dir| canonical(&dir) == mine))
        .map(|f| f.process)
        .collect())
}

/// Run directories, other than `run`'s, whose supervisor is alive. The lab's namespaces
/// have fixed names, so only one lab can be up on a machine at a time.
pub fn other_live_labs(run: &RunDir) -> Result<Vec<PathBuf>> {
    let mine = canonical(run.root());
    let mut dirs: Vec<PathBuf> = scan()?
        .iter()
        .filter_map(|f| supervised_dir(&f.cmdline))
        .map(|dir| canonical(&dir))
        .filter(|dir| *dir != mine)
        .collect();
    dirs.sort();
    dirs.dedup();
    Ok(dirs)
}

/// The run directory of a `chaosctl lab supervise --dir DIR` command line.
fn supervised_dir(cmdline: &[String]) -> Option<PathBuf> {
    let at = cmdline
        .windows(2)
        .position(|w| w[0] == "lab" && w[1] == "supervise")?;
    let args = &cmdline[at + 2..];
    args.iter().enumerate().find_map(|(i, arg)| {
        if arg == "--dir" {
            args.get(i + 1).map(PathBuf::from)
        } else {
            arg.strip_prefix("--dir=").map(PathBuf::from)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn supervisor_command_lines_name_their_run_directory() {
        assert_eq!(
            supervised_dir(&args("/x/chaosctl lab supervise --dir /var/lib/a")),
            Some(PathBuf::from("/var/lib/a"))
        );
        assert_eq!(
            supervised_dir(&args("chaosctl -v lab supervise --dir=/tmp/b")),
            Some(PathBuf::from("/tmp/b"))
        );
        assert_eq!(supervised_dir(&args("chaosctl lab down --dir /a")), None);
        assert_eq!(supervised_dir(&args("chaosctl lab supervise")), None);
        assert_eq!(supervised_dir(&[]), None);
    }

    #[test]
    fn the_parent_of_this_process_is_found() {
        let me = std::process::id() as i32;
        let parent = parent_of(me).expect("parent");
        assert!(parent >= 1);
        assert_eq!(ancestors_of_self()[0], me);
        assert!(ancestors_of_self().contains(&parent) || parent == 1);
    }
}
