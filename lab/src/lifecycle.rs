//! `lab up`, `lab down` and `lab status`.
//!
//! `down` finds what to remove from the system itself (namespaces by name, processes by
//! the namespace they run in, mounts under the run directory, faults from the journal), not
//! only from the state file, so it also cleans up after a chaosctl killed at any moment.

use std::collections::BTreeSet;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use firedrill_faults::{ProcessRef, mountinfo, process};
use nix::mount::{MntFlags, umount2};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use os_path::locate;
use talk::nats::process::BINARY_ENV;
use talk::nats::{NatsBinary, SyncPolicy};

use crate::error::{LabError, Result};
use crate::net;
use crate::render::Binaries;
use crate::state::{Failures, LabState, RunDir};
use crate::sweep;
use crate::topology::{Kind, Process, TalkSettings, Topology, Weakness};

mod os_path {
    use std::path::{Path, PathBuf};

    /// The first executable called one of `names` on PATH.
    pub fn locate(names: &[&str]) -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        for dir in std::env::split_paths(&path) {
            for name in names {
                let candidate = dir.join(name);
                if is_executable(&candidate) {
                    return Some(candidate);
                }
            }
        }
        None
    }

    pub fn is_executable(path: &Path) -> bool {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
}

/// Where `lab up` finds its programs.
#[derive(Debug, Clone, Default)]
pub struct Programs {
    /// Directory holding talk-server, talk-load and firedrill-powerloss (default: next to
    /// chaosctl).
    pub bin_dir: Option<PathBuf>,
}

/// The pinned nats-server that `scripts/install-deps.sh` builds.
const PINNED_NATS: &str = "/var/cache/firedrill/nats-server-v2.12.15/nats-server";

impl Programs {
    /// Finds every program, or says which is missing and how to get it.
    pub fn locate(&self) -> Result<Binaries> {
        let missing = |what: &str, hint: &str| LabError::MissingProgram {
            what: what.to_owned(),
            hint: hint.to_owned(),
        };
        let bin_dir = match &self.bin_dir {
            // The supervisor starts them from another directory: a relative path given
            // here would name nothing there, and every process would fail to start.
            Some(d) => std::path::absolute(d).unwrap_or_else(|_| d.clone()),
            None => std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .unwrap_or_default(),
        };
        let ours = |name: &str| -> Result<PathBuf> {
            let p = bin_dir.join(name);
            if os_path::is_executable(&p) {
                Ok(p)
            } else {
                Err(missing(
                    name,
                    &format!(
                        "expected at {} (build it with `cargo build --release --workspace \
                         --bins`, or set --bin-dir)",
                        p.display()
                    ),
                ))
            }
        };
        let nats_hint = "run scripts/install-deps.sh (builds the pinned 2.12.15), or set \
                         TALK_NATS_SERVER";
        let nats_path = std::env::var_os(BINARY_ENV)
            .map(PathBuf::from)
            .filter(|p| os_path::is_executable(p))
            .or_else(|| Some(PathBuf::from(PINNED_NATS)).filter(|p| os_path::is_executable(p)))
            .or_else(|| locate(&["nats-server"]))
            .ok_or_else(|| missing("nats-server", nats_hint))?;
        // The lab promises fsync on every write; a server too old to honour it is refused,
        // not run with weaker durability than the game day assumes.
        let nats_server = NatsBinary::at(nats_path)
            .and_then(|b| b.check(SyncPolicy::Always).map(|()| b.path))
            .map_err(|e| missing("a usable nats-server", &format!("{e}; {nats_hint}")))?;
        for tool in ["ip", "nft"] {
            locate(&[tool]).ok_or_else(|| {
                missing(
                    tool,
                    "install iproute2 and nftables (scripts/install-deps.sh)",
                )
            })?;
        }
        Ok(Binaries {
            nats_server,
            talk_server: ours("talk-server")?,
            talk_load: ours("talk-load")?,
            powerloss: ours("firedrill-powerloss")?,
            prometheus: locate(&["prometheus"])
                .ok_or_else(|| missing("prometheus", "apt-get install prometheus"))?,
            alertmanager: locate(&["prometheus-alertmanager", "alertmanager"]).ok_or_else(
                || missing("alertmanager", "apt-get install prometheus-alertmanager"),
            )?,
        })
    }
}

/// Fails at once, saying what is needed, when the lab cannot be built by this user.
pub fn check_privileges() -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    Err(LabError::Privileges(
        "the lab creates network namespaces, nftables rules and mounts, which needs root \
         (CAP_SYS_ADMIN and CAP_NET_ADMIN in the initial namespaces). Run it as root, e.g. \
         `sudo chaosctl lab up`. A rootless lab through a user namespace is not supported: \
         the faults must act on the same mount and network namespaces as the processes, \
         and Prometheus and NATS would need the same user namespace."
            .to_owned(),
    ))
}

/// Options for `lab up`.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    pub weakness: Option<Weakness>,
    /// talk-load's transport and talk-server's channel window.
    pub talk: TalkSettings,
    pub programs: Programs,
    /// The program to run as `<exe> lab supervise --dir <dir>` (chaosctl itself).
    pub supervisor_exe: PathBuf,
    /// How long to wait for everything to be ready.
    pub ready_timeout: Duration,
}

/// Brings the lab up in `run`, cleaning up whatever an earlier lab left first. `progress`
/// receives one line per step.
pub async fn up(run: &RunDir, opts: &UpOptions, progress: &dyn Fn(&str)) -> Result<LabState> {
    check_privileges()?;
    if let Some(other) = sweep::other_live_labs(run)?.into_iter().next() {
        return Err(LabError::OtherLabUp(other));
    }
    let binaries = opts.programs.locate()?;
    let leftovers = down(run)?;
    if !leftovers.is_empty() {
        progress(&format!(
            "cleaned up an earlier lab: {}",
            leftovers.summary()
        ));
    }
    net::check_address_range_free()?;
    let topology = Topology::new(opts.weakness).with_talk(opts.talk);
    // A fresh deployment: no data or logs from an earlier one.
    for dir in [run.root().join("procs"), run.holds_dir()] {
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LabError::io(&dir, e)),
        }
    }
    let _ = fs::remove_file(run.events_log());
    run.prepare(&topology)?;
    let state = LabState {
        topology,
        binaries,
        created_at: firedrill_faults::now_unix(),
    };
    run.write_state(&state)?;
    progress(&format!(
        "network: {} nodes in {} zones",
        state.topology.nodes.len(),
        crate::topology::ZONES.len()
    ));
    if let Err(e) = net::create(&state.topology) {
        let _ = down(run);
        return Err(e);
    }
    spawn_supervisor(run, &opts.supervisor_exe)?;
    progress("supervisor started; waiting for every process to be ready");
    let timeout = if opts.ready_timeout.is_zero() {
        Duration::from_secs(120)
    } else {
        opts.ready_timeout
    };
    if let Err(e) = wait_ready(run, &state, timeout, progress).await {
        // Nothing half-up stays behind; the processes' logs stay in the run directory.
        progress("not ready: taking the lab down again");
        let _ = down(run);
        return Err(e);
    }
    Ok(state)
}

fn spawn_supervisor(run: &RunDir, exe: &Path) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let log_path = run.supervisor_log();
    let log = fs::File::create(&log_path).map_err(|e| LabError::io(&log_path, e))?;
    let err = log.try_clone().map_err(|e| LabError::io(&log_path, e))?;
    Command::new(exe)
        .args(["lab", "supervise", "--dir"])
        .arg(run.root())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        // Its own process group: a Ctrl-C meant for chaosctl must not take the lab down.
        .process_group(0)
        .spawn()
        .map_err(|e| LabError::io(exe, e))?;
    Ok(())
}

/// The URL that answers when a process is ready; `None` for a page cache, which is ready
/// once its volume is mounted.
pub fn ready_url(kind: &Kind) -> Option<String> {
    Some(match kind {
        Kind::Nats { monitor, .. } => format!("http://{monitor}/healthz?js-enabled-only=true"),
        Kind::TalkServer { listen, .. } => format!("http://{listen}/readyz"),
        Kind::TalkLoad { listen, .. } => format!("http://{listen}/sli"),
        Kind::Prometheus { listen, .. } | Kind::Alertmanager { listen } => {
            format!("http://{listen}/-/ready")
        }
        Kind::PageCache { .. } => return None,
    })
}

async fn is_ready(client: &reqwest::Client, run: &RunDir, p: &Process) -> bool {
    match (&p.kind, ready_url(&p.kind)) {
        (_, Some(url)) => answers(client, &url).await,
        (Kind::PageCache { volume_of }, None) => run.page_cache_mounted(volume_of),
        (_, None) => false,
    }
}

fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .map_err(|e| LabError::State(format!("http client: {e}")))
}

async fn answers(client: &reqwest::Client, url: &str) -> bool {
    client
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Failures before readiness after which `lab up` stops waiting for a process: a program
/// that cannot start, or exits this often while the lab comes up, will not come up by
/// itself (the supervisor's backoff puts the third about 3.5 s after the first).
const FAILURES_BEFORE_GIVING_UP: u32 = 3;

/// The supervisor's count of `process`'s failures, once it has reached
/// [`FAILURES_BEFORE_GIVING_UP`].
fn keeps_failing(run: &RunDir, process: &str) -> Option<Failures> {
    run.failures(process)
        .ok()
        .flatten()
        .filter(|f| f.count >= FAILURES_BEFORE_GIVING_UP)
}

/// Why `process` is given up on: the supervisor's count, its latest failure and the end of
/// its log, which usually names the cause.
fn failing_account(run: &RunDir, process: &str, failures: &Failures) -> String {
    const TAIL: usize = 5;
    let log = run.log_file(process);
    let text = fs::read_to_string(&log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(TAIL)..]
        .iter()
        .map(|l| format!("\n  | {l}"))
        .collect::<String>();
    format!(
        "{process} failed {} times before it was ready (latest: {}); the end of its log {}:{}",
        failures.count,
        failures.last,
        log.display(),
        if tail.is_empty() {
            "\n  | (empty)".to_owned()
        } else {
            tail
        }
    )
}

async fn wait_ready(
    run: &RunDir,
    state: &LabState,
    timeout: Duration,
    progress: &dyn Fn(&str),
) -> Result<()> {
    let client = http_client()?;
    let deadline = Instant::now() + timeout;
    let mut ready: BTreeSet<String> = BTreeSet::new();
    let total = state.topology.processes.len();
    while ready.len() < total {
        for p in &state.topology.processes {
            if !ready.contains(&p.name) && is_ready(&client, run, p).await {
                ready.insert(p.name.clone());
                progress(&format!("  ready: {} ({}/{total})", p.name, ready.len()));
            }
        }
        if ready.len() == total {
            break;
        }
        if let Some((p, failures)) = state
            .topology
            .processes
            .iter()
            .filter(|p| !ready.contains(&p.name))
            .find_map(|p| Some((p, keeps_failing(run, &p.name)?)))
        {
            return Err(LabError::NotReady(failing_account(run, &p.name, &failures)));
        }
        if Instant::now() >= deadline {
            let waiting: Vec<String> = state
                .topology
                .processes
                .iter()
                .filter(|p| !ready.contains(&p.name))
                .map(|p| format!("{} (log: {})", p.name, run.log_file(&p.name).display()))
                .collect();
            return Err(LabError::NotReady(format!(
                "not ready after {}s: {}",
                timeout.as_secs(),
                waiting.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Sends made before every talk-server answered count as failed for one SLI window; the
    // first steady-state check must not see them.
    if let Some(url) = state
        .topology
        .processes
        .iter()
        .find(|p| matches!(p.kind, Kind::TalkLoad { .. }))
        .and_then(|load| ready_url(&load.kind))
    {
        loop {
            let slis = match client.get(&url).send().await {
                Ok(r) => r.json::<serde_json::Value>().await.ok(),
                Err(_) => None,
            };
            let sli = |k: &str| {
                slis.as_ref()
                    .and_then(|v| v.get(k))
                    .and_then(|x| x.as_f64())
            };
            let ratio = sli("deliverySuccessRatio");
            // Sends retried while the stream formed are slow; wait until they left the window.
            if ratio.is_some_and(|r| r >= 0.99) && sli("p99LatencyMs").is_some_and(|p| p < 250.0) {
                progress("  talk delivers (success >= 0.99 and p99 < 250ms over the window)");
                break;
            }
            if Instant::now() >= deadline {
                return Err(LabError::NotReady(format!(
                    "talk's delivery success ratio is {ratio:?} after {}s (logs: {})",
                    timeout.as_secs(),
                    run.root().join("procs").display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    // The game day's probes read talk's SLIs through Prometheus too: wait until every
    // Prometheus has scraped talk-load, so the first steady-state check is fair.
    for p in &state.topology.processes {
        if let Kind::Prometheus { listen, .. } = &p.kind {
            let url =
                format!("http://{listen}/api/v1/query?query=up%7Bjob%3D%22talk-load%22%7D%3D%3D1");
            loop {
                let scraped = match client.get(&url).send().await {
                    Ok(r) => r.text().await.is_ok_and(|t| t.contains("\"value\"")),
                    Err(_) => false,
                };
                if scraped {
                    progress(&format!("  {} scrapes talk-load", p.name));
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(LabError::NotReady(format!(
                        "{} has not scraped talk-load after {}s (log: {})",
                        p.name,
                        timeout.as_secs(),
                        run.log_file(&p.name).display()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    Ok(())
}

/// What `down` removed.
#[derive(Debug, Default)]
pub struct DownReport {
    pub supervisor: bool,
    pub faults_reverted: usize,
    pub processes_killed: usize,
    pub mounts_removed: usize,
    pub namespaces_deleted: Vec<String>,
    pub problems: Vec<String>,
}

impl DownReport {
    pub fn is_empty(&self) -> bool {
        !self.supervisor
            && self.faults_reverted == 0
            && self.processes_killed == 0
            && self.mounts_removed == 0
            && self.namespaces_deleted.is_empty()
    }

    pub fn summary(&self) -> String {
        format!(
            "supervisor {}, {} fault(s) reverted, {} process(es) stopped, {} mount(s) removed, \
             {} namespace(s) deleted",
            if self.supervisor {
                "stopped"
            } else {
                "not running"
            },
            self.faults_reverted,
            self.processes_killed,
            self.mounts_removed,
            self.namespaces_deleted.len()
        )
    }
}

/// Takes the lab down: supervisor, faults, processes, mounts, namespaces. Idempotent, and
/// safe after a crash at any point. Logs and data stay in the run directory for reading.
pub fn down(run: &RunDir) -> Result<DownReport> {
    check_privileges()?;
    let mut report = DownReport::default();
    // 1. The supervisor first, or it restarts what we stop: the recorded one, and any other
    //    found by its command line.
    let mut supervisors = sweep::supervisors_of(run)?;
    supervisors.extend(
        run.read_supervisor()?
            .filter(|s| s.alive().unwrap_or(false)),
    );
    for sup in &supervisors {
        let _ = kill(Pid::from_raw(sup.pid), Signal::SIGKILL);
        report.supervisor = true;
    }
    // 2. Faults: thaw what is frozen, unmount what was hidden, drop rules.
    if run.journal_dir().exists() {
        let cleanup = firedrill_faults::cleanup_all(&run.journal_dir())?;
        report.faults_reverted = cleanup.reverted.len();
        report
            .problems
            .extend(cleanup.errors.iter().map(|e| e.to_string()));
    }
    // 3. Every process of this lab: recorded, working in its directories, or living in a
    //    lab namespace. The namespaces are shared by name, so while another run
    //    directory's lab is up they and their processes are that lab's to take down.
    let others = sweep::other_live_labs(run)?;
    let shared = others.is_empty();
    report.processes_killed = stop_processes(&sweep::processes_of(run, shared)?);
    // 4. Any mount left under the run directory (belt and braces: the journal covers ours).
    report.mounts_removed = unmount_under(run.root(), &mut report.problems);
    // 5. Namespaces, and with them links, bridges and nftables tables.
    if shared {
        report.namespaces_deleted = net::delete_all()?;
    } else {
        report.problems.extend(others.iter().map(|dir| {
            format!(
                "left the network namespaces to the lab that is up in {}",
                dir.display()
            )
        }));
    }
    if run.holds_dir().exists() {
        let _ = fs::remove_dir_all(run.holds_dir());
    }
    run.remove_state()?;
    Ok(report)
}

/// SIGTERM (and SIGCONT, in case they are frozen), then SIGKILL after a grace period.
fn stop_processes(procs: &[ProcessRef]) -> usize {
    if procs.is_empty() {
        return 0;
    }
    for p in procs {
        let _ = kill(Pid::from_raw(p.pid), Signal::SIGTERM);
        let _ = kill(Pid::from_raw(p.pid), Signal::SIGCONT);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && procs.iter().any(|p| p.alive().unwrap_or(false)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stubborn: Vec<ProcessRef> = procs
        .iter()
        .copied()
        .filter(|p| p.alive().unwrap_or(false))
        .collect();
    process::kill(&stubborn);
    procs.len()
}

fn unmount_under(root: &Path, problems: &mut Vec<String>) -> usize {
    let Ok(mounts) = mountinfo::read() else {
        return 0;
    };
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    // Deepest first, so stacked mounts come off in order.
    let mut points: Vec<&Path> = mounts
        .iter()
        .map(|m| m.mount_point.as_path())
        .filter(|p| p.starts_with(&root) && *p != root)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    let mut n = 0;
    for point in points {
        match umount2(point, MntFlags::MNT_DETACH) {
            Ok(()) => n += 1,
            Err(e) => problems.push(format!("unmount {}: {e}", point.display())),
        }
    }
    n
}

/// One process in `lab status`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessStatus {
    pub name: String,
    pub node: String,
    pub zone: Option<String>,
    pub pid: Option<i32>,
    pub running: bool,
    pub restarts: u32,
    /// Why it is kept down, if it is.
    pub held_by: Option<String>,
    pub endpoint: Option<SocketAddr>,
}

/// `lab status`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabStatus {
    pub dir: PathBuf,
    pub weakness: Option<Weakness>,
    pub supervisor_running: bool,
    pub namespaces: usize,
    pub processes: Vec<ProcessStatus>,
    /// Injections in the journal (faults in place or not yet reverted).
    pub active_faults: Vec<String>,
}

impl LabStatus {
    /// Up and every process running or deliberately held down.
    pub fn healthy(&self) -> bool {
        self.supervisor_running
            && self
                .processes
                .iter()
                .all(|p| p.running || p.held_by.is_some())
    }
}

/// The lab's state as found now.
pub fn status(run: &RunDir) -> Result<LabStatus> {
    let state = run.require_state()?;
    let supervisor_running = run
        .read_supervisor()?
        .is_some_and(|p| p.alive().unwrap_or(false));
    let holds = run.holds()?;
    let now = firedrill_faults::now_unix();
    let mut processes = Vec::new();
    for p in &state.topology.processes {
        let record = run.read_pid(&p.name)?;
        let running = record
            .as_ref()
            .is_some_and(|r| r.process.alive().unwrap_or(false));
        processes.push(ProcessStatus {
            name: p.name.clone(),
            node: p.node.clone(),
            zone: state.topology.node(&p.node).and_then(|n| n.zone.clone()),
            pid: record.as_ref().filter(|_| running).map(|r| r.process.pid),
            running,
            restarts: record.map_or(0, |r| r.restarts),
            held_by: holds
                .iter()
                .find(|h| h.process == p.name && h.expires_at > now)
                .map(|h| format!("{} ({})", h.injection, h.reason)),
            endpoint: p.kind.endpoint(),
        });
    }
    let active_faults = firedrill_faults::Journal::open(run.journal_dir())?
        .entries()?
        .into_iter()
        .map(|e| format!("{} ({})", e.id, e.kind))
        .collect();
    Ok(LabStatus {
        dir: run.root().to_path_buf(),
        weakness: state.topology.weakness,
        supervisor_running,
        namespaces: net::existing_namespaces().len(),
        processes,
        active_faults,
    })
}
