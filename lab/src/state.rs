//! The run directory: the lab's state file, each process's config, data and log, the holds
//! that keep processes down, and the fault journal.
//!
//! ```text
//! <dir>/lab.json                  topology and programs (written by `lab up`)
//! <dir>/supervisor.json           the supervisor's process identity
//! <dir>/events.log                what the supervisor did, one line each
//! <dir>/procs/<name>/{config,data,log,pid.json}
//! <dir>/holds/<process>@<injection>.json
//! <dir>/journal/                  the fault library's journal
//! ```

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use firedrill_faults::ProcessRef;
use serde::{Deserialize, Serialize};

use crate::binaries::Binaries;
use crate::error::{LabError, Result};
use crate::topology::Topology;

/// Where the lab lives unless told otherwise.
pub const DEFAULT_DIR: &str = "/var/lib/firedrill/lab";

/// What `lab up` deployed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    pub topology: Topology,
    pub binaries: Binaries,
    /// Unix seconds.
    pub created_at: u64,
}

/// A process kept down until `expires_at` (a node without power, a stopped ops tool, a
/// replica waiting for a new disk). Expiry is enforced by the supervisor on its own clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub process: String,
    pub injection: String,
    pub expires_at: u64,
    pub reason: String,
}

/// A running process as the supervisor recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidRecord {
    pub process: ProcessRef,
    pub restarts: u32,
    /// Unix seconds.
    pub started_at: u64,
}

/// How often a process failed to start or exited, as the supervisor counts them: `lab up`
/// gives up at once on a process that keeps failing instead of waiting out its timeout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failures {
    pub count: u32,
    /// The latest, as said in the events log.
    pub last: String,
}

/// Paths inside a run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, contents).map_err(|e| LabError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| LabError::io(path, e))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| LabError::State(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LabError::io(path, e)),
    }
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(|e| LabError::State(e.to_string()))
}

/// The disk behind the volume mounted at `data_dir` (`procs/<name>/disk`).
pub fn disk_beside(data_dir: &Path) -> PathBuf {
    data_dir.with_file_name("disk")
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn state_file(&self) -> PathBuf {
        self.root.join("lab.json")
    }

    pub fn supervisor_file(&self) -> PathBuf {
        self.root.join("supervisor.json")
    }

    pub fn supervisor_log(&self) -> PathBuf {
        self.root.join("supervisor.log")
    }

    pub fn events_log(&self) -> PathBuf {
        self.root.join("events.log")
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.root.join("journal")
    }

    pub fn holds_dir(&self) -> PathBuf {
        self.root.join("holds")
    }

    pub fn proc_dir(&self, process: &str) -> PathBuf {
        self.root.join("procs").join(process)
    }

    pub fn config_dir(&self, process: &str) -> PathBuf {
        self.proc_dir(process).join("config")
    }

    /// What the process sees as its volume (a page cache's mount point when it has one).
    pub fn data_dir(&self, process: &str) -> PathBuf {
        self.proc_dir(process).join("data")
    }

    /// Whether a page cache has mounted `process`'s volume (its data dir is a FUSE mount).
    pub fn page_cache_mounted(&self, process: &str) -> bool {
        let data = self.data_dir(process);
        firedrill_faults::mountinfo::read().is_ok_and(|mounts| {
            firedrill_faults::mountinfo::top_at(&mounts, &data)
                .is_some_and(|m| m.fs_type.starts_with("fuse"))
        })
    }

    /// The disk behind a page cache: what survives a power cut.
    pub fn disk_dir(&self, process: &str) -> PathBuf {
        disk_beside(&self.data_dir(process))
    }

    pub fn log_file(&self, process: &str) -> PathBuf {
        self.proc_dir(process).join("log")
    }

    fn pid_file(&self, process: &str) -> PathBuf {
        self.proc_dir(process).join("pid.json")
    }

    fn failures_file(&self, process: &str) -> PathBuf {
        self.proc_dir(process).join("failures.json")
    }

    /// Counts one more failure of `process` (only the supervisor writes this file).
    pub fn record_failure(&self, process: &str, what: &str) -> Result<()> {
        let mut failures = self.failures(process)?.unwrap_or_default();
        failures.count += 1;
        what.clone_into(&mut failures.last);
        write_atomic(&self.failures_file(process), &to_json(&failures)?)
    }

    pub fn failures(&self, process: &str) -> Result<Option<Failures>> {
        read_json(&self.failures_file(process))
    }

    /// Creates the directories for `topology`.
    pub fn prepare(&self, topology: &Topology) -> Result<()> {
        for dir in [self.root.clone(), self.journal_dir(), self.holds_dir()] {
            fs::create_dir_all(&dir).map_err(|e| LabError::io(&dir, e))?;
        }
        for p in &topology.processes {
            for dir in [self.config_dir(&p.name), self.data_dir(&p.name)] {
                fs::create_dir_all(&dir).map_err(|e| LabError::io(&dir, e))?;
            }
        }
        Ok(())
    }

    pub fn write_state(&self, state: &LabState) -> Result<()> {
        write_atomic(&self.state_file(), &to_json(state)?)
    }

    /// The lab's state, or `None` when no lab was brought up here.
    pub fn read_state(&self) -> Result<Option<LabState>> {
        read_json(&self.state_file())
    }

    /// The state, or an error telling how to bring the lab up.
    pub fn require_state(&self) -> Result<LabState> {
        self.read_state()?.ok_or_else(|| {
            LabError::State(format!(
                "no lab is up in {} (run `chaosctl lab up` first)",
                self.root.display()
            ))
        })
    }

    pub fn remove_state(&self) -> Result<()> {
        for path in [self.state_file(), self.supervisor_file()] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LabError::io(&path, e)),
            }
        }
        Ok(())
    }

    pub fn write_supervisor(&self, process: &ProcessRef) -> Result<()> {
        write_atomic(&self.supervisor_file(), &to_json(process)?)
    }

    pub fn read_supervisor(&self) -> Result<Option<ProcessRef>> {
        read_json(&self.supervisor_file())
    }

    pub fn write_pid(&self, name: &str, record: &PidRecord) -> Result<()> {
        write_atomic(&self.pid_file(name), &to_json(record)?)
    }

    pub fn read_pid(&self, name: &str) -> Result<Option<PidRecord>> {
        read_json(&self.pid_file(name))
    }

    pub fn clear_pid(&self, name: &str) {
        let _ = fs::remove_file(self.pid_file(name));
    }

    fn hold_file(&self, process: &str, injection: &str) -> PathBuf {
        self.holds_dir().join(format!("{process}@{injection}.json"))
    }

    pub fn add_hold(&self, hold: &Hold) -> Result<()> {
        write_atomic(
            &self.hold_file(&hold.process, &hold.injection),
            &to_json(hold)?,
        )
    }

    /// Lifts every hold of `injection`; returns how many there were.
    pub fn release_holds(&self, injection: &str) -> Result<usize> {
        let mut n = 0;
        for hold in self.holds()? {
            if hold.injection == injection {
                let path = self.hold_file(&hold.process, &hold.injection);
                fs::remove_file(&path).map_err(|e| LabError::io(&path, e))?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Every hold, expired or not. Unreadable hold files count as holds of nothing.
    pub fn holds(&self) -> Result<Vec<Hold>> {
        let dir = self.holds_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(LabError::io(&dir, e)),
        };
        let mut holds = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json")
                && let Ok(Some(hold)) = read_json::<Hold>(&path)
            {
                holds.push(hold);
            }
        }
        holds.sort_by(|a, b| (&a.process, &a.injection).cmp(&(&b.process, &b.injection)));
        Ok(holds)
    }

    /// Lifts holds past their expiry; returns them.
    pub fn release_expired_holds(&self, now: u64) -> Result<Vec<Hold>> {
        let mut released = Vec::new();
        for hold in self.holds()? {
            if hold.expires_at <= now {
                let path = self.hold_file(&hold.process, &hold.injection);
                match fs::remove_file(&path) {
                    Ok(()) => released.push(hold),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(LabError::io(&path, e)),
                }
            }
        }
        Ok(released)
    }

    /// Appends a line to the events log (best effort: the log is for people).
    pub fn event(&self, line: &str) {
        if let Ok(mut f) = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.events_log())
        {
            let now = chrono::Utc::now().format("%H:%M:%S%.3f");
            let _ = writeln!(f, "{now} {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_are_released_by_injection_and_by_expiry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = RunDir::new(dir.path());
        run.prepare(&Topology::new(None)).expect("prepare");
        let hold = |p: &str, i: &str, at| Hold {
            process: p.into(),
            injection: i.into(),
            expires_at: at,
            reason: "test".into(),
        };
        run.add_hold(&hold("nats-0", "blackout", 100)).expect("add");
        run.add_hold(&hold("talk-server-a", "blackout", 100))
            .expect("add");
        run.add_hold(&hold("prometheus-a", "outage", 50))
            .expect("add");
        assert_eq!(run.holds().expect("holds").len(), 3);
        let expired = run.release_expired_holds(60).expect("expire");
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].process, "prometheus-a");
        assert_eq!(run.release_holds("blackout").expect("release"), 2);
        assert!(run.holds().expect("holds").is_empty());
    }

    #[test]
    fn missing_state_says_how_to_bring_the_lab_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = RunDir::new(dir.path())
            .require_state()
            .expect_err("no state");
        assert!(err.to_string().contains("chaosctl lab up"), "{err}");
    }
}
