//! `lab down` finds every process of its lab, however it lost track of them, and leaves
//! another run directory's lab alone. Needs root (skips with a message otherwise).

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use firedrill_faults::ProcessRef;
use firedrill_lab::lifecycle::{self, UpOptions};
use firedrill_lab::state::PidRecord;
use firedrill_lab::{LabError, RunDir, sweep};

fn root_or_skip() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        // `make test` sets it: there a skipped root test would be a test that cannot fail.
        assert!(
            std::env::var_os("FIREDRILL_ROOT_REQUIRE").is_none(),
            "lab down needs root (FIREDRILL_ROOT_REQUIRE is set)"
        );
        eprintln!("skipped: lab down needs root");
    }
    root
}

/// A long sleep, so that only `down` can end it in time.
fn sleeper(cwd: &Path) -> Child {
    Command::new("sleep")
        .arg("600")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep")
}

/// A process that looks like `chaosctl lab supervise --dir DIR` to anyone reading its
/// command line.
fn fake_supervisor(dir: &Path) -> Child {
    Command::new("python3")
        .args([
            "-c",
            "import time; time.sleep(600)",
            "lab",
            "supervise",
            "--dir",
        ])
        .arg(dir)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn python3")
}

fn reference(child: &Child) -> ProcessRef {
    ProcessRef::of(child.id() as i32)
        .expect("stat")
        .expect("running")
}

/// Whether the child has exited (and reaps it), within a short wait.
fn ended(child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if child.try_wait().expect("wait").is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn down_stops_processes_it_knows_by_record_or_directory_without_their_namespaces() {
    if !root_or_skip() {
        return;
    }
    let lab = tempfile::tempdir().expect("tempdir");
    let run = RunDir::new(lab.path());
    let nats_dir = run.proc_dir("nats-0");
    let talk_dir = run.proc_dir("talk-server-1");
    fs::create_dir_all(&nats_dir).expect("mkdir");
    fs::create_dir_all(&talk_dir).expect("mkdir");
    let elsewhere = tempfile::tempdir().expect("tempdir");

    // Neither lives in a lab namespace: as after their namespaces were deleted under them.
    let mut by_directory = sleeper(&nats_dir);
    let mut by_record = sleeper(elsewhere.path());
    run.write_pid(
        "talk-server-1",
        &PidRecord {
            process: reference(&by_record),
            restarts: 0,
            started_at: 0,
        },
    )
    .expect("pid record");
    let mut bystander = sleeper(elsewhere.path());

    let report = lifecycle::down(&run).expect("down");

    let directory_gone = ended(&mut by_directory);
    let record_gone = ended(&mut by_record);
    let bystander_alive = bystander.try_wait().expect("wait").is_none();
    stop(by_directory);
    stop(by_record);
    stop(bystander);
    assert!(
        directory_gone,
        "a process working in procs/nats-0 survived down"
    );
    assert!(record_gone, "a process named in a pid record survived down");
    assert!(
        bystander_alive,
        "down killed a process that is not the lab's"
    );
    assert!(report.processes_killed >= 2, "report: {}", report.summary());
}

#[test]
fn a_second_lab_is_refused_while_another_is_up_and_down_leaves_it_alone() {
    if !root_or_skip() {
        return;
    }
    let other = tempfile::tempdir().expect("tempdir");
    let mut supervisor = fake_supervisor(other.path());
    let mine = tempfile::tempdir().expect("tempdir");
    let run = RunDir::new(mine.path());

    // The supervisor needs a moment to have its command line in place.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = vec![];
    while Instant::now() < deadline {
        seen = sweep::other_live_labs(&run).expect("scan");
        if !seen.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let other_dir = other.path().canonicalize().expect("canonical");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let up = runtime.block_on(lifecycle::up(&run, &UpOptions::default(), &|_| {}));
    let down = lifecycle::down(&run);
    let survived = supervisor.try_wait().expect("wait").is_none();
    stop(supervisor);

    assert_eq!(seen, vec![other_dir.clone()]);
    match up {
        Err(LabError::OtherLabUp(dir)) => assert_eq!(dir, other_dir),
        Err(e) => panic!("up failed for another reason: {e}"),
        Ok(_) => panic!("a second lab came up beside the first"),
    }
    let down = down.expect("down");
    assert!(
        survived,
        "down of one run directory killed another lab's supervisor"
    );
    assert!(
        down.problems
            .iter()
            .any(|p| p.contains(&other_dir.display().to_string())),
        "down should say it left the namespaces to the other lab: {:?}",
        down.problems
    );
}
