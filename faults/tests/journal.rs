//! Crash safety: what was applied is recorded first and `cleanup_all` undoes it all.
// Test helpers outside #[test] fns may unwrap too: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::process::{Child, Command};

use common::{Lab, addr, udp_works};
use firedrill_faults::journal::{self, Entry};
use firedrill_faults::process::{self, ProcessOutcome};
use firedrill_faults::{
    Direction, Fault, InjectionId, Injector, Journal, RevertOutcome, RuleSet, Target, cleanup_all,
    mountinfo, nft,
};

fn id(s: &str) -> InjectionId {
    InjectionId::new(s).unwrap()
}

struct Sleeper(Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn cleanup_all_after_a_simulated_crash_leaves_nothing_behind() {
    let lab = Lab::mesh(2);
    let (a, b) = (lab.ns(0), lab.ns(1));
    let b_ip = addr(0, 1);
    let data = tempfile::tempdir().unwrap();
    fs::write(data.path().join("keep"), b"k").unwrap();
    let ro_dir = tempfile::tempdir().unwrap();
    let sleeper = Sleeper(Command::new("sleep").arg("60").spawn().unwrap());
    let pid = i32::try_from(sleeper.0.id()).unwrap();
    let journal_dir = tempfile::tempdir().unwrap();

    {
        let injector = Injector::new(journal_dir.path()).unwrap();
        let until = firedrill_faults::now_unix() + 600;
        let faults = [
            (
                "net-a",
                Fault::Network {
                    netns: a.clone(),
                    rules: RuleSet::Partition {
                        peers: vec![b_ip.to_string().parse().unwrap()],
                        direction: Direction::Both,
                        loss_percent: None,
                        ports: None,
                    },
                },
            ),
            (
                "blackout-b",
                Fault::Network {
                    netns: b.clone(),
                    rules: RuleSet::Blackout { ports: None },
                },
            ),
            ("freeze", Fault::Freeze { pids: vec![pid] }),
            (
                "away",
                Fault::TakeAway {
                    dir: data.path().to_path_buf(),
                },
            ),
            (
                "ro",
                Fault::ReadOnly {
                    dir: ro_dir.path().to_path_buf(),
                },
            ),
        ];
        for (name, fault) in &faults {
            injector.apply(&id(name), fault, until).unwrap();
        }
        assert!(!udp_works(&a, &b, b_ip));
        assert_eq!(process::stat(pid).unwrap().unwrap().state, 'T');
        assert!(!data.path().join("keep").exists());
        assert_eq!(injector.journal().entries().unwrap().len(), 5);
        // The "crash": everything in memory is dropped without reverting.
    }

    let report = cleanup_all(journal_dir.path()).unwrap();
    assert!(report.is_clean(), "{:?}", report.errors);
    assert_eq!(report.reverted.len(), 5);
    assert!(
        report
            .reverted
            .iter()
            .all(|r| r.outcome == RevertOutcome::Reverted)
    );
    assert_eq!(report.tables_removed, 2);

    assert_eq!(nft::list(&a).unwrap(), None, "no table left in a");
    assert_eq!(nft::list(&b).unwrap(), None, "no table left in b");
    assert!(udp_works(&a, &b, b_ip));
    let mounts = mountinfo::read().unwrap();
    for dir in [data.path(), ro_dir.path()] {
        let dir = dir.canonicalize().unwrap();
        assert!(!mounts.iter().any(|m| m.mount_point == dir), "mount left");
    }
    assert!(data.path().join("keep").exists());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while process::stat(pid).unwrap().unwrap().state == 'T' && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_ne!(process::stat(pid).unwrap().unwrap().state, 'T', "thawed");
    assert!(fs::read_dir(journal_dir.path()).unwrap().next().is_none());

    // Running it again finds nothing to do.
    let again = cleanup_all(journal_dir.path()).unwrap();
    assert!(again.reverted.is_empty() && again.is_clean());
}

fn entry(name: &str, expires_at: u64) -> Entry {
    Entry {
        version: journal::FORMAT_VERSION,
        id: id(name),
        kind: "kill".into(),
        fault: Fault::Kill { pids: vec![] },
        target: Target::Kill { processes: vec![] },
        created_at: 1,
        expires_at,
    }
}

#[test]
fn journal_is_atomic_readable_and_reports_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path().join("nested/journal")).unwrap();
    journal.record(&entry("early", 100)).unwrap();
    journal.record(&entry("late", 200)).unwrap();
    // Re-recording replaces atomically.
    journal.record(&entry("late", 300)).unwrap();
    // A crash before the rename leaves only a temp file, which means "not applied". A temp
    // file of a live writer is a write in flight that a concurrent scan must not delete.
    fs::write(journal.dir().join(".half.json.tmp"), b"{").unwrap();
    let dead_writer = format!(".crashed.{}.json.tmp", i32::MAX);
    fs::write(journal.dir().join(&dead_writer), b"{").unwrap();
    let in_flight = format!(".writing.{}.json.tmp", std::process::id());
    fs::write(journal.dir().join(&in_flight), b"{").unwrap();

    let expired: Vec<_> = journal
        .expired(150)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(expired, vec![id("early")]);
    assert_eq!(journal.expired(300).unwrap().len(), 2);
    assert_eq!(journal.get(&id("late")).unwrap().unwrap().expires_at, 300);
    assert!(!journal.dir().join(".half.json.tmp").exists());
    assert!(!journal.dir().join(&dead_writer).exists());
    assert!(journal.dir().join(&in_flight).exists());

    let on_disk: serde_json::Value =
        serde_json::from_slice(&fs::read(journal.dir().join("early.json")).unwrap()).unwrap();
    assert_eq!(on_disk["id"], "early");
    assert_eq!(on_disk["kind"], "kill");
    assert_eq!(on_disk["expires_at"], 100);

    journal.remove(&id("early")).unwrap();
    journal.remove(&id("early")).unwrap();
    assert_eq!(journal.entries().unwrap().len(), 1);
}

#[test]
fn corrupt_entries_are_reported_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    journal.record(&entry("fine", 0)).unwrap();
    fs::write(dir.path().join("broken.json"), b"not json").unwrap();
    fs::copy(
        dir.path().join("fine.json"),
        dir.path().join("renamed.json"),
    )
    .unwrap();

    let scan = journal.scan().unwrap();
    assert_eq!(scan.entries.len(), 1);
    assert_eq!(scan.errors.len(), 2);
    // Each unreadable file is tied to the injection its name gives, so it can never be
    // taken for "nothing held".
    let ids: Vec<&str> = scan.unreadable.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), 2, "{:?}", scan.unreadable);
    assert!(
        ids.contains(&"broken") && ids.contains(&"renamed"),
        "{ids:?}"
    );
    assert!(journal.entries().is_err());

    let report = cleanup_all(dir.path()).unwrap();
    assert!(!report.is_clean());
    assert_eq!(report.reverted.len(), 1);
    assert_eq!(report.reverted[0].outcome, RevertOutcome::Irreversible);
    let categories: Vec<_> = report.errors.iter().map(|e| e.category()).collect();
    assert!(categories.contains(&"journal_corrupt"), "{categories:?}");
    assert!(dir.path().join("broken.json").exists());
}

#[test]
fn entries_of_an_older_format_are_read_and_newer_ones_are_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    // What an agent wrote before entries had a version.
    let mut old = serde_json::to_value(entry("before-versions", 100)).unwrap();
    old.as_object_mut().unwrap().remove("version");
    fs::write(
        dir.path().join("before-versions.json"),
        serde_json::to_vec(&old).unwrap(),
    )
    .unwrap();
    let mut newer = serde_json::to_value(entry("from-the-future", 100)).unwrap();
    newer["version"] = (journal::FORMAT_VERSION + 1).into();
    fs::write(
        dir.path().join("from-the-future.json"),
        serde_json::to_vec(&newer).unwrap(),
    )
    .unwrap();

    let scan = journal.scan().unwrap();
    assert_eq!(scan.entries.len(), 1, "{:?}", scan.errors);
    assert_eq!(scan.entries[0].id.as_str(), "before-versions");
    assert_eq!(scan.entries[0].version, 1);
    assert_eq!(scan.unreadable.len(), 1);
    let (id, why) = &scan.unreadable[0];
    assert_eq!(id.as_str(), "from-the-future");
    assert!(why.contains("newer than this build"), "{why}");
    // The old entry is reverted as any other.
    let report = cleanup_all(dir.path()).unwrap();
    assert_eq!(report.reverted.len(), 1);
    assert!(!dir.path().join("before-versions.json").exists());
    assert!(
        dir.path().join("from-the-future.json").exists(),
        "left for a human"
    );
}

#[test]
fn revert_expired_reverts_only_what_is_due() {
    common::require_root();
    let sleeper = Sleeper(Command::new("sleep").arg("60").spawn().unwrap());
    let pid = i32::try_from(sleeper.0.id()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let injector = Injector::new(dir.path()).unwrap();
    let now = firedrill_faults::now_unix();
    injector
        .apply(&id("due"), &Fault::Freeze { pids: vec![pid] }, now - 1)
        .unwrap();
    injector
        .apply(&id("later"), &Fault::Kill { pids: vec![] }, now + 600)
        .unwrap();
    let results = injector.revert_expired(now).unwrap();
    assert_eq!(results.len(), 1);
    let r = results.into_iter().next().unwrap().unwrap();
    assert_eq!(r.id, id("due"));
    assert_eq!(
        r.processes[0].outcome.as_ref().unwrap(),
        &ProcessOutcome::Done
    );
    assert_eq!(injector.journal().entries().unwrap().len(), 1);
}
