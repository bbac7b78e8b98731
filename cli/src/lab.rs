//! `chaosctl lab up | down | status | stop-all | resume` (and the hidden `lab supervise` the lab runs itself).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use firedrill_lab::lifecycle::{self, ProcessStatus, Programs, UpOptions};
use firedrill_lab::{LabError, RunDir, TalkSettings, TalkTransport, Weakness};

use crate::output::{Column, Table, width_budget};

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build the lab and start everything in it; returns once every process is ready.
    ///
    /// Three zones (zone-a, zone-b, zone-c) of two nodes each, every node a network
    /// namespace wired through a router namespace (10.77.0.0/16, reachable from the host).
    /// In them: three NATS JetStream servers (one per zone, the TALK stream replicated three
    /// ways, fsync on every write), a talk-server per zone, talk-load on a client node
    /// outside the zones, Prometheus in zone-a and zone-b, and Alertmanager in zone-c. A
    /// supervisor restarts processes the way a kubelet would, and reverts faults at their
    /// expiry even if chaosctl dies. An earlier lab is cleaned up first.
    ///
    /// Example: sudo chaosctl lab up --weaken stream-r1
    Up {
        /// Deploy with a weakness: stream-r1, single-zone, no-fsync or single-monitor.
        #[arg(long, value_name = "NAME")]
        weaken: Option<Weakness>,
        /// Directory holding talk-server and talk-load (default: next to chaosctl).
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
        /// How long to wait for every process to be ready.
        #[arg(long, value_name = "SECONDS", default_value_t = 120)]
        timeout: u64,
        #[command(flatten)]
        talk: TalkArgs,
    },
    /// Stop everything and remove every namespace, rule, mount and process of the lab.
    ///
    /// Works after a crash too: it finds what to remove on the system (namespaces named
    /// fdlab-*, processes inside them, mounts under the lab directory, faults in the journal),
    /// not only in the state file. Logs and data stay in the lab directory.
    Down,
    /// Show nodes, processes, holds and faults in place. Exits 0 when the lab is up and
    /// healthy, 1 when something is down, 3 when no lab is up.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The lab's kill switch: pause the lab and revert every fault in place.
    ///
    /// Writes a pause to the lab directory. A running game day sees it within a second,
    /// reverts its experiment's fault (the experiment ends Aborted) and skips its remaining
    /// steps; no game day starts while the pause stands, and it outlives `lab down`. Then it
    /// waits up to --timeout for the journal to empty and reverts whatever is still there
    /// itself (a game day that died or hangs). Exits 0 when the journal is empty, 1 when
    /// something could not be reverted.
    ///
    /// Example: sudo chaosctl lab stop-all && sudo chaosctl lab resume
    StopAll {
        /// How long a running game day gets to revert its own fault.
        #[arg(long, value_name = "SECONDS", default_value_t = 10)]
        timeout: u64,
    },
    /// Lift the pause `lab stop-all` set: game days may run again.
    Resume,
    /// Run the lab's supervisor in the foreground (started by `lab up`).
    #[command(hide = true)]
    Supervise,
}

/// How the lab launches talk-load and talk-server; unset, the lab's defaults.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TalkArgs {
    /// How talk-load sends: channel (a send channel per talk-server, sends pipelined) or
    /// http (a request per send). Default: channel, as a chat app's client sends.
    #[arg(long, value_name = "TRANSPORT")]
    pub talk_transport: Option<TalkTransport>,
    /// Sends one talk-server send channel may hold in flight. Default: talk-server's own.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub talk_channel_window: Option<u64>,
}

impl TalkArgs {
    /// Whether any was given (they mean nothing on a cluster).
    pub fn is_set(&self) -> bool {
        self.talk_transport.is_some() || self.talk_channel_window.is_some()
    }

    pub fn settings(&self) -> TalkSettings {
        let defaults = TalkSettings::default();
        TalkSettings {
            transport: self.talk_transport.unwrap_or(defaults.transport),
            channel_window: self
                .talk_channel_window
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(defaults.channel_window),
        }
    }
}

pub fn progress_line(line: &str) {
    eprintln!("lab: {line}");
}

/// The runtime every lab command runs its async work on (two workers: the machine has two
/// cores and the lab's processes need them).
pub fn runtime() -> Result<tokio::runtime::Runtime, LabError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| LabError::State(format!("tokio runtime: {e}")))
}

/// Brings the lab up; shared with `game-day`.
pub fn up(
    run: &RunDir,
    weakness: Option<Weakness>,
    talk: TalkSettings,
    bin_dir: Option<PathBuf>,
    timeout: Duration,
) -> Result<(), LabError> {
    let exe = std::env::current_exe().map_err(|e| LabError::io("/proc/self/exe", e))?;
    let opts = UpOptions {
        weakness,
        talk,
        programs: Programs { bin_dir },
        supervisor_exe: exe,
        ready_timeout: timeout,
    };
    let started = std::time::Instant::now();
    runtime()?.block_on(lifecycle::up(run, &opts, &progress_line))?;
    progress_line(&format!(
        "up in {:.1}s{} (dir {})",
        started.elapsed().as_secs_f64(),
        weakness
            .map(|w| format!(", weakened: {w}"))
            .unwrap_or_default(),
        run.root().display()
    ));
    Ok(())
}

pub fn run(command: LabCommand, dir: &Path) -> Result<ExitCode, LabError> {
    let run = RunDir::new(dir);
    match command {
        LabCommand::Up {
            weaken,
            bin_dir,
            timeout,
            talk,
        } => {
            up(
                &run,
                weaken,
                talk.settings(),
                bin_dir,
                Duration::from_secs(timeout),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Down => {
            let report = lifecycle::down(&run)?;
            if report.is_empty() {
                progress_line("nothing to take down");
            } else {
                progress_line(&format!("down: {}", report.summary()));
            }
            for problem in &report.problems {
                eprintln!("lab: warning: {problem}");
            }
            Ok(if report.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        LabCommand::Status { json } => status(&run, json),
        LabCommand::StopAll { timeout } => stop_all(&run, Duration::from_secs(timeout)),
        LabCommand::Resume => {
            if firedrill_lab::pause::resume(&run)? {
                progress_line("resumed: game days may run again");
            } else {
                progress_line("not paused: nothing to lift");
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Supervise => {
            firedrill_lab::supervisor::supervise(&run)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn stop_all(run: &RunDir, timeout: Duration) -> Result<ExitCode, LabError> {
    lifecycle::check_privileges()?;
    let started = std::time::Instant::now();
    let stopped = firedrill_lab::pause::stop_all(run, &crate::stop::whoami(), timeout)?;
    progress_line(&format!(
        "stop-all: paused; {} fault(s) reverted by the running game day, {} here, {} hold(s) lifted, in {:.1}s",
        stopped.reverted_by_runner,
        stopped.reverted_here,
        stopped.holds_lifted,
        started.elapsed().as_secs_f64()
    ));
    for problem in &stopped.problems {
        eprintln!("lab: stop-all: NOT REVERTED: {problem}");
    }
    progress_line("no game day starts until `chaosctl lab resume`");
    Ok(if stopped.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn status(run: &RunDir, json: bool) -> Result<ExitCode, LabError> {
    if run.read_state()?.is_none() {
        eprintln!("lab: no lab is up in {}", run.root().display());
        return Ok(ExitCode::from(3));
    }
    let status = lifecycle::status(run)?;
    if json {
        let text =
            serde_json::to_string_pretty(&status).map_err(|e| LabError::State(e.to_string()))?;
        println!("{text}");
    } else {
        if let Some(pause) = firedrill_lab::pause::paused(run)? {
            println!("PAUSED: {}", pause.describe());
        }
        println!(
            "lab in {}: supervisor {}, {} namespaces{}",
            status.dir.display(),
            if status.supervisor_running {
                "running"
            } else {
                "NOT RUNNING"
            },
            status.namespaces,
            status
                .weakness
                .map(|w| format!(", weakened: {w}"))
                .unwrap_or_default()
        );
        print!(
            "{}",
            processes_table(&status.processes, Some(width_budget()))
        );
        if status.active_faults.is_empty() {
            println!("faults in place: none");
        } else {
            println!("faults in place: {}", status.active_faults.join(", "));
        }
    }
    Ok(if status.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `lab status`'s table: one row per process, the hold on it (if any) last, cut to fit
/// `width` (see [`crate::output`]).
pub fn processes_table(processes: &[ProcessStatus], width: Option<usize>) -> String {
    let mut table = Table::new([
        Column::keep("PROCESS"),
        Column::keep("NODE"),
        Column::keep("ZONE"),
        Column::keep("STATE"),
        Column::keep("PID").right(),
        Column::keep("RESTARTS").right(),
        Column::keep("ENDPOINT"),
        Column::cut("NOTE"),
    ]);
    for p in processes {
        table.push(vec![
            p.name.clone(),
            p.node.clone(),
            p.zone.clone().unwrap_or_else(|| "-".to_owned()),
            if p.running { "running" } else { "down" }.to_owned(),
            p.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            // The first start is not a restart.
            p.restarts.saturating_sub(1).to_string(),
            p.endpoint.map_or_else(|| "-".to_owned(), |e| e.to_string()),
            p.held_by
                .as_ref()
                .map(|h| format!("held: {h}"))
                .unwrap_or_default(),
        ]);
    }
    table.render(width)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(name: &str, node: &str, held_by: Option<&str>) -> ProcessStatus {
        ProcessStatus {
            name: name.to_owned(),
            node: node.to_owned(),
            zone: Some("zone-a".to_owned()),
            pid: held_by.is_none().then_some(4242),
            running: held_by.is_none(),
            restarts: 2,
            held_by: held_by.map(str::to_owned),
            endpoint: "10.77.1.2:4222".parse().ok(),
        }
    }

    #[test]
    fn the_status_table_stays_aligned_with_long_names_and_holds() {
        let long_hold = format!("inj-zone-blackout ({})", "zone-a is dark; ".repeat(10));
        let processes = [
            process("nats-a", "fd-zone-a-1", None),
            process(
                "talk-server-zone-a-with-a-long-name",
                "fd-zone-a-2",
                Some(&long_hold),
            ),
        ];
        let text = processes_table(&processes, Some(120));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let node = lines[0].find("NODE").unwrap();
        let restarts_end = lines[0].find("RESTARTS").unwrap() + "RESTARTS".len();
        for line in &lines[1..] {
            assert_eq!(line.find("fd-zone-a-"), Some(node), "{text}");
            assert_eq!(
                line.find("  1  ").map(|i| i + 3),
                Some(restarts_end),
                "{text}"
            );
            assert!(line.chars().count() <= 120, "{line:?}");
        }
        assert!(
            lines[1].contains("running") && lines[1].contains("4242"),
            "{text}"
        );
        assert!(
            lines[2].contains("down") && lines[2].contains("held: inj-zone-"),
            "{text}"
        );
        assert!(lines[2].ends_with('…'), "the hold is cut: {text}");
    }
}
