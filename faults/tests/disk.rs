//! Disk faults on real directories with real mounts (needs root).
// Test helpers outside #[test] fns may unwrap too: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use firedrill_faults::{Fault, InjectionId, Injector, RevertOutcome, mountinfo};

/// Reverts whatever the test left recorded, so a failing test leaks no mount.
struct Guard(tempfile::TempDir);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = firedrill_faults::cleanup_all(self.0.path());
    }
}

fn setup() -> (tempfile::TempDir, Guard, Injector) {
    common::require_root();
    let data = tempfile::tempdir().unwrap();
    fs::write(data.path().join("segment-1"), b"acked messages").unwrap();
    fs::create_dir(data.path().join("sub")).unwrap();
    fs::write(data.path().join("sub/meta"), b"m").unwrap();
    let journal = tempfile::tempdir().unwrap();
    let injector = Injector::new(journal.path()).unwrap();
    (data, Guard(journal), injector)
}

fn mounted_at(dir: &Path) -> usize {
    let dir = dir.canonicalize().unwrap();
    mountinfo::read()
        .unwrap()
        .iter()
        .filter(|m| m.mount_point == dir)
        .count()
}

fn expiry() -> u64 {
    firedrill_faults::now_unix() + 60
}

#[test]
fn read_only_makes_writes_fail_with_erofs_and_revert_restores() {
    let (data, _j, injector) = setup();
    let id = InjectionId::new("ro-1").unwrap();
    let fault = Fault::ReadOnly {
        dir: data.path().to_path_buf(),
    };
    injector.apply(&id, &fault, expiry()).unwrap();
    // Applying the same injection again is a no-op, not a second mount.
    injector.apply(&id, &fault, expiry()).unwrap();
    assert_eq!(mounted_at(data.path()), 1);

    let err = fs::write(data.path().join("new"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EROFS), "{err}");
    let err = fs::OpenOptions::new()
        .append(true)
        .open(data.path().join("segment-1"))
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EROFS));
    assert_eq!(
        fs::read(data.path().join("segment-1")).unwrap(),
        b"acked messages",
        "reads still work"
    );

    assert_eq!(
        injector.revert(&id).unwrap().outcome,
        RevertOutcome::Reverted
    );
    assert_eq!(mounted_at(data.path()), 0);
    fs::write(data.path().join("new"), b"x").unwrap();
    assert_eq!(
        injector.revert(&id).unwrap().outcome,
        RevertOutcome::AlreadyReverted
    );
}

#[test]
fn take_away_hides_contents_and_revert_restores_them() {
    let (data, _j, injector) = setup();
    let id = InjectionId::new("away-1").unwrap();
    let fault = Fault::TakeAway {
        dir: data.path().to_path_buf(),
    };
    injector.apply(&id, &fault, expiry()).unwrap();

    assert_eq!(fs::read_dir(data.path()).unwrap().count(), 0, "looks empty");
    assert!(!data.path().join("segment-1").exists());
    fs::write(data.path().join("written-while-away"), b"x").unwrap();

    assert_eq!(
        injector.revert(&id).unwrap().outcome,
        RevertOutcome::Reverted
    );
    assert_eq!(
        fs::read(data.path().join("segment-1")).unwrap(),
        b"acked messages"
    );
    assert_eq!(fs::read(data.path().join("sub/meta")).unwrap(), b"m");
    assert!(!data.path().join("written-while-away").exists());
    assert_eq!(mounted_at(data.path()), 0);
    assert_eq!(
        injector.revert(&id).unwrap().outcome,
        RevertOutcome::AlreadyReverted
    );
}

#[test]
fn take_away_and_read_only_stack_and_revert_in_any_safe_order() {
    let (data, _j, injector) = setup();
    let away = InjectionId::new("away-2").unwrap();
    let ro = InjectionId::new("ro-2").unwrap();
    let dir = data.path().to_path_buf();
    injector
        .apply(&away, &Fault::TakeAway { dir: dir.clone() }, expiry())
        .unwrap();
    injector
        .apply(&ro, &Fault::ReadOnly { dir: dir.clone() }, expiry())
        .unwrap();
    // The take-away mount is covered by the read-only one: refuse rather than unmount
    // the wrong one.
    assert_eq!(injector.revert(&away).unwrap_err().category(), "mount");
    injector.revert(&ro).unwrap();
    injector.revert(&away).unwrap();
    assert_eq!(mounted_at(&dir), 0);
    assert!(dir.join("segment-1").exists());
}

#[test]
fn wipe_deletes_for_real_and_revert_says_so() {
    let (data, _j, injector) = setup();
    let id = InjectionId::new("wipe-1").unwrap();
    let applied = injector
        .apply(
            &id,
            &Fault::Wipe {
                dir: data.path().to_path_buf(),
            },
            expiry(),
        )
        .unwrap();
    assert_eq!(applied.wiped_entries, Some(2));
    assert_eq!(fs::read_dir(data.path()).unwrap().count(), 0);
    assert!(data.path().exists(), "the directory itself stays");
    assert_eq!(
        injector.revert(&id).unwrap().outcome,
        RevertOutcome::Irreversible
    );
}

#[test]
fn wipe_does_not_follow_symlinks() {
    let (data, _j, injector) = setup();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("keep"), b"k").unwrap();
    std::os::unix::fs::symlink(outside.path(), data.path().join("link")).unwrap();
    let id = InjectionId::new("wipe-2").unwrap();
    injector
        .apply(
            &id,
            &Fault::Wipe {
                dir: data.path().to_path_buf(),
            },
            expiry(),
        )
        .unwrap();
    assert!(outside.path().join("keep").exists());
}

/// A FUSE mount whose server never answers: every lookup below it blocks until the
/// connection is closed, as below a hung FUSE or NFS server. Dropping it aborts the
/// connection (the blocked calls return ENOTCONN) and detaches the mount.
struct HungMount {
    point: tempfile::TempDir,
    fuse: Option<std::os::fd::OwnedFd>,
}

impl HungMount {
    fn new() -> Self {
        use std::os::fd::AsRawFd;
        let point = tempfile::tempdir().unwrap();
        let fuse: std::os::fd::OwnedFd = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .unwrap()
            .into();
        let options = format!(
            "fd={},rootmode=40000,user_id=0,group_id=0",
            fuse.as_raw_fd()
        );
        nix::mount::mount(
            Some("firedrill-hung"),
            point.path(),
            Some("fuse"),
            nix::mount::MsFlags::empty(),
            Some(options.as_str()),
        )
        .unwrap();
        Self {
            point,
            fuse: Some(fuse),
        }
    }
}

impl Drop for HungMount {
    fn drop(&mut self) {
        drop(self.fuse.take());
        let _ = nix::mount::umount2(self.point.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A mount fault below a hung server times out instead of hanging the caller, and the
/// other injections on the node are still reverted meanwhile.
#[test]
fn a_hung_mount_times_out_and_does_not_hold_up_other_reverts() {
    let (data, _guard, injector) = setup();
    let injector = injector.with_call_timeout(std::time::Duration::from_millis(500));
    let healthy = InjectionId::new("healthy").unwrap();
    injector
        .apply(
            &healthy,
            &Fault::ReadOnly {
                dir: data.path().to_path_buf(),
            },
            expiry(),
        )
        .unwrap();

    let hung = HungMount::new();
    let started = std::time::Instant::now();
    let stuck = injector.apply(
        &InjectionId::new("stuck").unwrap(),
        &Fault::ReadOnly {
            dir: hung.point.path().join("data"),
        },
        expiry(),
    );
    let waited = started.elapsed();
    assert!(
        matches!(stuck, Err(firedrill_faults::Error::Timeout { .. })),
        "{stuck:?}"
    );
    assert!(
        waited < std::time::Duration::from_secs(5),
        "waited {waited:?}"
    );

    let reverted = injector.revert(&healthy).unwrap();
    assert_eq!(reverted.outcome, RevertOutcome::Reverted);
    assert_eq!(mounted_at(data.path()), 0);
    drop(hung);
}
