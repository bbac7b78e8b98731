//! The lab's kubelet: keeps every process running on its node unless a hold keeps it down,
//! and, like a node agent, reverts faults and lifts holds at their expiry on its own clock
//! and as soon as their driver's heartbeat stops (the dead man's switch), so a fault
//! outlives neither its experiment nor a chaosctl killed mid-way.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use firedrill_faults::{Injector, ProcessRef, now_unix, process, run_in};
use nix::mount::{MntFlags, umount2};

use crate::error::{LabError, Result};
use crate::heartbeat::{self, now_millis};
use crate::net::netns_path;
use crate::platform::LabPlatform;
use crate::render::launch;
use crate::state::{LabState, PidRecord, RunDir};
use crate::topology::{Kind, Process};

const TICK: Duration = Duration::from_millis(200);
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A process that ran this long before exiting restarts without backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(10);

struct Slot {
    child: Option<(Child, Instant)>,
    restarts: u32,
    backoff: Duration,
    not_before: Instant,
}

/// Runs until killed. `lab down` kills it first, then everything it started.
pub fn supervise(run: &RunDir) -> Result<()> {
    let state = run.require_state()?;
    let me = i32::try_from(std::process::id())
        .map_err(|_| LabError::State("pid out of range".to_owned()))?;
    let start_time = process::stat(me)?
        .ok_or_else(|| LabError::State("cannot read own /proc stat".to_owned()))?
        .start_time;
    run.write_supervisor(&ProcessRef {
        pid: me,
        start_time,
    })?;
    let injector = Injector::new(run.journal_dir())?;
    let platform = LabPlatform::open(run.clone())?;
    run.event(&format!("supervisor started (pid {me})"));
    let now = Instant::now();
    let mut slots: BTreeMap<String, Slot> = state
        .topology
        .processes
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                Slot {
                    child: None,
                    restarts: 0,
                    backoff: MIN_BACKOFF,
                    not_before: now,
                },
            )
        })
        .collect();
    loop {
        enforce_heartbeats(run, &platform);
        enforce_expiry(run, &injector);
        let held: BTreeSet<String> = run
            .holds()
            .unwrap_or_default()
            .into_iter()
            .filter(|h| h.expires_at > now_unix())
            .map(|h| h.process)
            .collect();
        for p in &state.topology.processes {
            let Some(slot) = slots.get_mut(&p.name) else {
                continue;
            };
            reap(run, p, slot);
            if slot.child.is_none()
                && !held.contains(&p.name)
                && Instant::now() >= slot.not_before
                && volume_ready(run, &state, p)
            {
                start(run, &state, p, slot);
            }
            if held.contains(&p.name) {
                // Back on power, start at once.
                slot.backoff = MIN_BACKOFF;
                slot.not_before = Instant::now();
            }
        }
        std::thread::sleep(TICK);
    }
}

/// The dead man's switch: reverts every injection whose driver stopped renewing its
/// heartbeat (see [`crate::heartbeat`]).
fn enforce_heartbeats(run: &RunDir, platform: &LabPlatform) {
    for lapsed in run.lapsed_heartbeats(now_millis(), heartbeat::TIMEOUT) {
        let id = &lapsed.injection;
        let silent = lapsed.silent.as_secs_f64();
        match platform.is_active(id) {
            Ok(false) => {}
            Ok(true) => match platform.revert(id) {
                Ok(()) => run.event(&format!(
                    "injection {id} reverted: its driver's heartbeat was not renewed for {silent:.1}s"
                )),
                Err(e) => {
                    run.event(&format!(
                        "reverting {id} after its driver's heartbeat stopped failed: {e}"
                    ));
                    // Kept: tried again on the next tick.
                    continue;
                }
            },
            Err(e) => {
                run.event(&format!("cannot tell whether {id} is in place: {e}"));
                continue;
            }
        }
        run.clear_heartbeat(id);
    }
}

fn enforce_expiry(run: &RunDir, injector: &Injector) {
    let now = now_unix();
    match injector.revert_expired(now) {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(r) => run.event(&format!("expired injection {} reverted", r.id)),
                    Err(e) => run.event(&format!("reverting an expired injection failed: {e}")),
                }
            }
        }
        Err(e) => run.event(&format!("reading the journal failed: {e}")),
    }
    match run.release_expired_holds(now) {
        Ok(holds) => {
            for h in holds {
                run.event(&format!(
                    "hold on {} ({}) expired and lifted",
                    h.process, h.injection
                ));
            }
        }
        Err(e) => run.event(&format!("lifting expired holds failed: {e}")),
    }
}

fn reap(run: &RunDir, p: &Process, slot: &mut Slot) {
    let Some((child, started)) = slot.child.as_mut() else {
        return;
    };
    match child.try_wait() {
        Ok(None) => {}
        Ok(Some(status)) => {
            let ran = started.elapsed();
            let what = format!("exited ({status}) after {:.1}s", ran.as_secs_f64());
            run.event(&format!("{} {what}", p.name));
            let _ = run.record_failure(&p.name, &what);
            run.clear_pid(&p.name);
            slot.child = None;
            slot.backoff = if ran >= HEALTHY_RUN {
                MIN_BACKOFF
            } else {
                (slot.backoff * 2).min(MAX_BACKOFF)
            };
            slot.not_before = Instant::now() + slot.backoff;
        }
        Err(e) => run.event(&format!("waiting for {} failed: {e}", p.name)),
    }
}

fn start(run: &RunDir, state: &LabState, p: &Process, slot: &mut Slot) {
    match spawn(run, state, p) {
        Ok(child) => {
            let pid = child.id();
            let record = i32::try_from(pid)
                .ok()
                .and_then(|pid| ProcessRef::of(pid).ok().flatten());
            if let Some(process) = record {
                let _ = run.write_pid(
                    &p.name,
                    &PidRecord {
                        process,
                        restarts: slot.restarts,
                        started_at: now_unix(),
                    },
                );
            }
            run.event(&format!(
                "{} started on {} (pid {pid}, restart {})",
                p.name, p.node, slot.restarts
            ));
            slot.restarts += 1;
            slot.child = Some((child, Instant::now()));
        }
        Err(e) => {
            run.event(&format!("starting {} failed: {e}", p.name));
            let _ = run.record_failure(&p.name, &format!("could not be started: {e}"));
            slot.backoff = (slot.backoff * 2).min(MAX_BACKOFF);
            slot.not_before = Instant::now() + slot.backoff;
        }
    }
}

/// Whether `p`'s volume can be used: always, unless it sits behind a page cache, which must
/// have mounted it first (a process must not write into the bare mount point).
fn volume_ready(run: &RunDir, state: &LabState, p: &Process) -> bool {
    if state.topology.page_cache_for(&p.name).is_none() {
        return true;
    }
    run.page_cache_mounted(&p.name)
}

/// Readies a page cache's mount point: detaches the mount a killed predecessor left (its
/// memory, and the writes in it, are gone) and makes sure disk and mount point exist.
fn prepare_page_cache(run: &RunDir, volume_of: &str) -> Result<PathBuf> {
    let data = run.data_dir(volume_of);
    // EINVAL (nothing mounted there) is the usual answer and fine.
    let _ = umount2(&data, MntFlags::MNT_DETACH);
    for dir in [&data, &run.disk_dir(volume_of)] {
        fs::create_dir_all(dir).map_err(|e| LabError::io(dir, e))?;
    }
    Ok(data)
}

/// Starts `p` inside its node's network namespace, output appended to its log.
fn spawn(run: &RunDir, state: &LabState, p: &Process) -> Result<Child> {
    let node = state.topology.node(&p.node).ok_or_else(|| {
        LabError::State(format!("{} is placed on unknown node {}", p.name, p.node))
    })?;
    let data = match &p.kind {
        Kind::PageCache { volume_of } => prepare_page_cache(run, volume_of)?,
        _ => run.data_dir(&p.name),
    };
    let launch = launch(
        &state.topology,
        p,
        &state.binaries,
        &run.config_dir(&p.name),
        &data,
    );
    // A wiped or taken-away volume comes back empty; the process gets a fresh directory.
    if !matches!(p.kind, Kind::PageCache { .. }) {
        fs::create_dir_all(&data).map_err(|e| LabError::io(&data, e))?;
    }
    for (path, contents) in &launch.files {
        fs::write(path, contents).map_err(|e| LabError::io(path, e))?;
    }
    let log_path = run.log_file(&p.name);
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| LabError::io(&log_path, e))?;
    let err_log = log.try_clone().map_err(|e| LabError::io(&log_path, e))?;
    let mut command = Command::new(&launch.program);
    command
        .args(&launch.args)
        .current_dir(run.proc_dir(&p.name))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log);
    // A child inherits the network namespace of the thread that forks it.
    run_in(&netns_path(&node.netns()), move || command.spawn())?
        .map_err(|e| LabError::io(&launch.program, e))
}
