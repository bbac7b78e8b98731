//! Freeze, thaw and kill real processes (needs root).
// Test helpers outside #[test] fns may unwrap too: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use firedrill_faults::process::{self, ProcessOutcome, ProcessRef};
use firedrill_faults::{Fault, InjectionId, Injector, RevertOutcome};

/// A `sleep` child killed on drop.
struct Sleeper(Child);

impl Sleeper {
    fn new() -> Self {
        common::require_root();
        Sleeper(Command::new("sleep").arg("60").spawn().unwrap())
    }
    fn pid(&self) -> i32 {
        i32::try_from(self.0.id()).unwrap()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn state(pid: i32) -> char {
    process::stat(pid).unwrap().expect("process exists").state
}

fn wait_state(pid: i32, want: char) -> char {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let s = state(pid);
        if s == want || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn freeze_stops_and_thaw_resumes() {
    let s1 = Sleeper::new();
    let s2 = Sleeper::new();
    let procs = process::resolve(&[s1.pid(), s2.pid()]).unwrap();
    assert_eq!(procs.len(), 2);

    for r in process::freeze(&procs) {
        assert_eq!(r.outcome.unwrap(), ProcessOutcome::Done);
        assert_eq!(state(r.pid), 'T', "pid {} stopped", r.pid);
    }
    for r in process::thaw(&procs) {
        assert_eq!(r.outcome.unwrap(), ProcessOutcome::Done);
        assert_eq!(wait_state(r.pid, 'S'), 'S', "pid {} resumed", r.pid);
    }
}

#[test]
fn kill_kills_and_gone_is_not_an_error() {
    let mut s = Sleeper::new();
    let p = ProcessRef::of(s.pid()).unwrap().unwrap();
    let results = process::kill(&[p]);
    assert_eq!(results[0].outcome.as_ref().unwrap(), &ProcessOutcome::Done);
    let status = s.0.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9));

    let again = process::kill(&[p]);
    assert_eq!(again[0].outcome.as_ref().unwrap(), &ProcessOutcome::Gone);
}

#[test]
fn reused_pid_is_never_signalled() {
    let s = Sleeper::new();
    let stale = ProcessRef {
        pid: s.pid(),
        start_time: 1,
    };
    let r = process::freeze(&[stale]);
    assert_eq!(r[0].outcome.as_ref().unwrap(), &ProcessOutcome::Gone);
    assert_ne!(state(s.pid()), 'T');
}

#[test]
fn freeze_through_the_journal() {
    let s = Sleeper::new();
    let gone_pid = i32::MAX - 7;
    let dir = tempfile::tempdir().unwrap();
    let injector = Injector::new(dir.path()).unwrap();
    let id = InjectionId::new("freeze-1").unwrap();
    let fault = Fault::Freeze {
        pids: vec![s.pid(), gone_pid],
    };
    let applied = injector
        .apply(&id, &fault, firedrill_faults::now_unix() + 60)
        .unwrap();
    assert_eq!(applied.processes.len(), 2);
    let gone = applied
        .processes
        .iter()
        .find(|r| r.pid == gone_pid)
        .unwrap();
    assert_eq!(gone.outcome.as_ref().unwrap(), &ProcessOutcome::Gone);
    assert_eq!(state(s.pid()), 'T');

    let reverted = injector.revert(&id).unwrap();
    assert_eq!(reverted.outcome, RevertOutcome::Reverted);
    assert_eq!(wait_state(s.pid(), 'S'), 'S');
}

#[test]
fn overlapping_freezes_thaw_only_when_the_last_one_is_reverted() {
    let shared = Sleeper::new();
    let own = Sleeper::new();
    let dir = tempfile::tempdir().unwrap();
    let injector = Injector::new(dir.path()).unwrap();
    let expires = firedrill_faults::now_unix() + 60;
    let first = InjectionId::new("freeze-a").unwrap();
    let second = InjectionId::new("freeze-b").unwrap();
    injector
        .apply(
            &first,
            &Fault::Freeze {
                pids: vec![shared.pid(), own.pid()],
            },
            expires,
        )
        .unwrap();
    injector
        .apply(
            &second,
            &Fault::Freeze {
                pids: vec![shared.pid()],
            },
            expires,
        )
        .unwrap();
    // The first revert thaws only what no other freeze holds.
    injector.revert(&first).unwrap();
    assert_eq!(wait_state(own.pid(), 'S'), 'S');
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(state(shared.pid()), 'T', "still frozen by the second");
    assert_eq!(
        injector
            .missing(&injector.journal().get(&second).unwrap().unwrap())
            .unwrap(),
        None
    );
    // The last one thaws it.
    injector.revert(&second).unwrap();
    assert_eq!(wait_state(shared.pid(), 'S'), 'S');
}

#[test]
fn kill_through_the_journal_is_irreversible() {
    let mut s = Sleeper::new();
    let dir = tempfile::tempdir().unwrap();
    let injector = Injector::new(dir.path()).unwrap();
    let id = InjectionId::new("kill-1").unwrap();
    injector
        .apply(
            &id,
            &Fault::Kill {
                pids: vec![s.pid()],
            },
            0,
        )
        .unwrap();
    assert!(s.0.wait().is_ok());
    assert_eq!(
        injector.revert(&id).unwrap().outcome,
        RevertOutcome::Irreversible
    );
}

#[test]
fn a_recheck_finds_a_frozen_process_running_again() {
    let s = Sleeper::new();
    let dir = tempfile::tempdir().unwrap();
    let injector = Injector::new(dir.path()).unwrap();
    let id = InjectionId::new("lapse-freeze").unwrap();
    let fault = Fault::Freeze {
        pids: vec![s.pid()],
    };
    injector
        .apply(&id, &fault, firedrill_faults::now_unix() + 3600)
        .unwrap();
    let entry = injector.journal().get(&id).unwrap().expect("recorded");
    assert_eq!(injector.missing(&entry).unwrap(), None, "frozen");

    // A SIGCONT from anyone else thaws it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.pid()),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    assert_eq!(wait_state(s.pid(), 'S'), 'S');
    let what = injector.missing(&entry).unwrap().expect("a lapse");
    assert!(what.contains(&s.pid().to_string()), "{what}");

    injector
        .apply(&id, &fault, firedrill_faults::now_unix() + 3600)
        .unwrap();
    assert_eq!(injector.missing(&entry).unwrap(), None, "frozen again");
    injector.revert(&id).unwrap();
}

/// One injection's parts go in all or none: a part that fails undoes those before it, so a
/// half-applied injection is never left to hold (or to be reported as applied).
#[test]
fn a_group_that_fails_part_way_undoes_the_parts_before_it() {
    let sleeper = Sleeper::new();
    let journal = tempfile::tempdir().unwrap();
    let injector = Injector::new(journal.path()).unwrap();
    let parts = vec![
        (
            InjectionId::new("group-0").unwrap(),
            Fault::Freeze {
                pids: vec![sleeper.pid()],
            },
        ),
        (
            InjectionId::new("group-1").unwrap(),
            Fault::ReadOnly {
                dir: journal.path().join("no-such-volume"),
            },
        ),
    ];
    let far = firedrill_faults::now_unix() + 600;

    assert!(injector.apply_all(&parts, far).is_err());
    assert_ne!(
        wait_state(sleeper.pid(), 'S'),
        'T',
        "the frozen part was thawed"
    );
    assert!(injector.journal().entries().unwrap().is_empty());

    // The same parts without the failing one hold, and count their processes.
    let applied = injector.apply_all(&parts[..1], far).unwrap();
    assert_eq!(applied.processes(), 1);
    assert_eq!(wait_state(sleeper.pid(), 'T'), 'T');
    injector.revert(&parts[0].0).unwrap();
}
