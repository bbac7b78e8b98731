//! Freezing, thawing and killing processes.
//!
//! Freezing uses SIGSTOP/SIGCONT rather than the cgroup v1 freezer. The freezer would need
//! firedrill to move target processes out of the cgroups the kubelet and the container
//! runtime manage (which use the freezer themselves) and to move them back after a crash;
//! SIGSTOP leaves cgroups alone, works the same on cgroup v1 and v2 and in the lab, and its
//! revert is stateless (SIGCONT). The price: a stopped process's parent gets SIGCHLD and can
//! notice the stop, and a tracer could interfere; neither happens with the targets we run.
//!
//! Every process is identified by pid *and* start time, so a signal never reaches a
//! different process that reused the pid (e.g. a thaw after a crash and a reboot).

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill as send_signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A process: its pid and its start time (clock ticks after boot, `/proc/PID/stat` field 22).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProcessRef {
    pub pid: i32,
    pub start_time: u64,
}

/// What happened to one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessOutcome {
    /// The signal was delivered (and, for freeze, the process is stopped).
    Done,
    /// The process no longer exists (or its pid now belongs to another process).
    Gone,
}

/// The result for one pid.
#[derive(Debug)]
pub struct PidResult {
    pub pid: i32,
    pub outcome: Result<ProcessOutcome>,
}

/// How long [`freeze`] waits for processes to reach the stopped state.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// Parsed fields of `/proc/PID/stat` we need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `D`, `T`, `t`, `Z`, ...
    pub state: char,
    pub start_time: u64,
}

/// Reads `/proc/PID/stat`; `Ok(None)` when the process does not exist.
pub fn stat(pid: i32) -> Result<Option<Stat>> {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => parse_stat(&s).map(Some).ok_or_else(|| Error::Process {
            pid,
            source: std::io::Error::other("unparseable /proc/PID/stat"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Process { pid, source }),
    }
}

impl Stat {
    /// Stopped by a signal (`T`) or while traced (`t`): what a freeze leaves behind.
    pub fn is_stopped(&self) -> bool {
        matches!(self.state, 'T' | 't')
    }
}

fn parse_stat(s: &str) -> Option<Stat> {
    // The command name (field 2) is in parentheses and may itself contain ") ".
    let rest = &s[s.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 22 overall; fields after ')' start at field 3.
    let start_time = fields.get(22 - 3)?.parse().ok()?;
    Some(Stat { state, start_time })
}

impl ProcessRef {
    /// Identifies a running process; `Ok(None)` when it does not exist.
    pub fn of(pid: i32) -> Result<Option<Self>> {
        check_pid(pid)?;
        Ok(stat(pid)?.map(|s| ProcessRef {
            pid,
            start_time: s.start_time,
        }))
    }

    /// Whether the pid still names this very process, and it has not exited: a zombie
    /// waiting for its parent to reap it counts as gone.
    pub fn alive(&self) -> Result<bool> {
        Ok(stat(self.pid)?.is_some_and(|s| s.start_time == self.start_time && s.state != 'Z'))
    }
}

/// Resolves pids to [`ProcessRef`]s, dropping ones that are already gone.
pub fn resolve(pids: &[i32]) -> Result<Vec<ProcessRef>> {
    let mut out = Vec::with_capacity(pids.len());
    for &pid in pids {
        if let Some(p) = ProcessRef::of(pid)? {
            out.push(p);
        }
    }
    Ok(out)
}

/// Refuses pids whose signalling would take down the machine or firedrill itself.
fn check_pid(pid: i32) -> Result<()> {
    if pid <= 1 {
        return Err(Error::invalid(
            "pid",
            format!("{pid} is not a valid target"),
        ));
    }
    if u32::try_from(pid).ok() == Some(std::process::id()) {
        return Err(Error::invalid("pid", "firedrill does not target itself"));
    }
    Ok(())
}

fn signal(p: &ProcessRef, sig: Signal) -> Result<ProcessOutcome> {
    check_pid(p.pid)?;
    if !p.alive()? {
        return Ok(ProcessOutcome::Gone);
    }
    match send_signal(Pid::from_raw(p.pid), sig) {
        Ok(()) => Ok(ProcessOutcome::Done),
        Err(Errno::ESRCH) => Ok(ProcessOutcome::Gone),
        Err(Errno::EPERM) => Err(Error::Permission(format!("signal {sig} to pid {}", p.pid))),
        Err(e) => Err(Error::Process {
            pid: p.pid,
            source: e.into(),
        }),
    }
}

fn signal_all(procs: &[ProcessRef], sig: Signal) -> Vec<PidResult> {
    procs
        .iter()
        .map(|p| PidResult {
            pid: p.pid,
            outcome: signal(p, sig),
        })
        .collect()
}

/// Stops every process (SIGSTOP) and waits up to a second until each is stopped. A process
/// that is gone is reported as [`ProcessOutcome::Gone`]; one that does not stop in time
/// (e.g. stuck in uninterruptible I/O) as an error.
pub fn freeze(procs: &[ProcessRef]) -> Vec<PidResult> {
    let mut results = signal_all(procs, Signal::SIGSTOP);
    let deadline = Instant::now() + STOP_WAIT;
    for r in &mut results {
        if !matches!(r.outcome, Ok(ProcessOutcome::Done)) {
            continue;
        }
        r.outcome = wait_stopped(r.pid, deadline);
    }
    results
}

fn wait_stopped(pid: i32, deadline: Instant) -> Result<ProcessOutcome> {
    loop {
        match stat(pid)? {
            None => return Ok(ProcessOutcome::Gone),
            Some(s) if matches!(s.state, 'T' | 't' | 'Z' | 'X') => return Ok(ProcessOutcome::Done),
            Some(s) if Instant::now() >= deadline => {
                return Err(Error::Process {
                    pid,
                    source: std::io::Error::other(format!("not stopped yet (state {})", s.state)),
                });
            }
            Some(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// Resumes every process (SIGCONT). Gone processes are reported, not errors.
pub fn thaw(procs: &[ProcessRef]) -> Vec<PidResult> {
    signal_all(procs, Signal::SIGCONT)
}

/// Kills every process (SIGKILL). Already gone is [`ProcessOutcome::Gone`], not an error.
pub fn kill(procs: &[ProcessRef]) -> Vec<PidResult> {
    signal_all(procs, Signal::SIGKILL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let line =
            "1234 (a) b (c)) S 1 1234 1234 0 -1 4194304 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                start_time: 98765
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn refuses_init_and_self() {
        assert!(ProcessRef::of(1).is_err());
        assert!(ProcessRef::of(0).is_err());
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(ProcessRef::of(me).is_err());
    }

    #[test]
    fn stat_of_missing_pid_is_none() {
        assert_eq!(stat(i32::MAX).unwrap(), None);
    }
}
