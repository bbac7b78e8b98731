//! Mounts the real `firedrill-powerloss` binary over temporary directories and checks what
//! the backing directory holds after a power cut (SIGKILL, SIGUSR1) or a clean SIGTERM.
//! Needs root and /dev/fuse, like the repository's other lab tests (CI runs as root).

#![allow(clippy::unwrap_used)] // test harness: a panic is the failure report

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use firedrill_powerloss::mountinfo::{detach, fuse_mounted};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_firedrill-powerloss");

fn require_root() {
    let euid = nix::unistd::geteuid();
    assert!(
        euid.is_root(),
        "firedrill-powerloss tests mount FUSE and need root; run them as root, e.g. \
         `sudo -E cargo test -p firedrill-powerloss` (current euid {euid})"
    );
    assert!(Path::new("/dev/fuse").exists(), "/dev/fuse is missing");
}

/// A running daemon over its own temp dirs; SIGKILLed and detached on drop, so a failing
/// test leaves no mount behind.
struct Mounted {
    child: Option<Child>,
    stderr: Arc<Mutex<Vec<String>>>,
    mnt: TempDir,
    backing: TempDir,
}

impl Mounted {
    fn start() -> Self {
        require_root();
        let backing = tempfile::tempdir().expect("backing tempdir");
        let mnt = tempfile::tempdir().expect("mountpoint tempdir");
        let mut child = Command::new(BIN)
            .arg("--backing")
            .arg(backing.path())
            .arg("--mountpoint")
            .arg(mnt.path())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn firedrill-powerloss");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().expect("stderr pipe");
        let lines = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
        let mut m = Mounted {
            child: Some(child),
            stderr,
            mnt,
            backing,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !m.logged("powerloss: serving") {
            if let Some(status) = m.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon exited early ({status}): {:?}", m.stderr_lines());
            }
            assert!(Instant::now() < deadline, "daemon not ready in 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The documented readiness signal, checked too.
        assert!(fuse_mounted(m.mnt.path()).unwrap(), "not in mountinfo");
        m
    }

    fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    fn logged(&self, prefix: &str) -> bool {
        self.stderr_lines().iter().any(|l| l.starts_with(prefix))
    }

    /// Path inside the mount.
    fn m(&self, name: &str) -> PathBuf {
        self.mnt.path().join(name)
    }

    /// Path inside the backing directory.
    fn b(&self, name: &str) -> PathBuf {
        self.backing.path().join(name)
    }

    /// Sends `sig` and waits for the daemon to exit.
    fn signal(&mut self, sig: Signal) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        kill(Pid::from_raw(child.id() as i32), sig).unwrap();
        child.wait().unwrap()
    }

    /// The power cut: SIGKILL, then detach the dead mount as a caller would.
    fn power_cut(&mut self) {
        let status = self.signal(Signal::SIGKILL);
        assert_eq!(status.code(), None, "killed by a signal");
        detach(self.mnt.path()).unwrap();
        assert!(!fuse_mounted(self.mnt.path()).unwrap());
    }

    /// Waits until the stderr reader has seen a line starting with `prefix`.
    fn wait_logged(&self, prefix: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.logged(prefix) {
            assert!(
                Instant::now() < deadline,
                "no {prefix:?} in {:?}",
                self.stderr_lines()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if fuse_mounted(self.mnt.path()).unwrap_or(false) {
            let _ = detach(self.mnt.path());
        }
    }
}

fn write_new(path: &Path, data: &[u8]) -> File {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .unwrap();
    f.write_all(data).unwrap();
    f
}

fn append(path: &Path, data: &[u8]) -> File {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(data).unwrap();
    f
}

/// Deterministic pseudo-random numbers (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn sigkill_keeps_exactly_the_fsynced_bytes() {
    let mut m = Mounted::start();
    let a = write_new(&m.m("a"), b"synced-1");
    a.sync_all().unwrap();
    drop(a);
    drop(write_new(&m.m("b"), b"never synced"));
    // Appended and closed, but not fsynced: close is not durable.
    drop(append(&m.m("a"), b"+lost"));

    // The mount shows everything that was written...
    assert_eq!(fs::read(m.m("a")).unwrap(), b"synced-1+lost");
    assert_eq!(fs::read(m.m("b")).unwrap(), b"never synced");
    assert_eq!(fs::metadata(m.m("a")).unwrap().len(), 13);
    // ...while the backing directory already holds only the synced part.
    assert_eq!(fs::read(m.b("a")).unwrap(), b"synced-1");

    m.power_cut();
    assert_eq!(fs::read(m.b("a")).unwrap(), b"synced-1");
    let b = fs::metadata(m.b("b")).expect("b was created (metadata is durable)");
    assert_eq!(b.len(), 0, "b's data was never fsynced");
}

#[test]
fn fdatasync_persists_and_later_writes_do_not() {
    let mut m = Mounted::start();
    let f = write_new(&m.m("log"), b"one\n");
    f.sync_data().unwrap();
    f.write_all_at(b"two\n", 4).unwrap();
    f.sync_data().unwrap();
    f.write_all_at(b"three\n", 8).unwrap();
    // Overwrite inside the synced region without syncing: the old bytes must come back.
    f.write_all_at(b"ONE\n", 0).unwrap();
    assert_eq!(fs::read(m.m("log")).unwrap(), b"ONE\ntwo\nthree\n");
    m.power_cut();
    drop(f);
    assert_eq!(fs::read(m.b("log")).unwrap(), b"one\ntwo\n");
}

#[test]
fn sigterm_flushes_everything_and_unmounts() {
    let mut m = Mounted::start();
    drop(write_new(&m.m("x"), b"hello"));
    drop(append(&m.m("x"), b" world"));
    fs::create_dir(m.m("d")).unwrap();
    drop(write_new(&m.m("d/y"), &[7u8; 100_000]));
    assert_eq!(fs::metadata(m.b("x")).unwrap().len(), 0);

    let status = m.signal(Signal::SIGTERM);
    assert!(status.success(), "clean shutdown exits 0: {status}");
    assert!(!fuse_mounted(m.mnt.path()).unwrap(), "unmounted");
    assert_eq!(fs::read(m.b("x")).unwrap(), b"hello world");
    assert_eq!(fs::read(m.b("d/y")).unwrap(), vec![7u8; 100_000]);
    m.wait_logged("powerloss: clean shutdown: flushed 100011 bytes in 2 file(s)");
}

#[test]
fn sigusr1_cuts_power_and_unmounts() {
    let mut m = Mounted::start();
    let f = write_new(&m.m("x"), b"kept");
    f.sync_all().unwrap();
    drop(f);
    drop(append(&m.m("x"), b"+dropped"));
    let status = m.signal(Signal::SIGUSR1);
    assert!(status.success(), "power cut on request exits 0: {status}");
    assert!(!fuse_mounted(m.mnt.path()).unwrap(), "unmounted");
    assert_eq!(fs::read(m.b("x")).unwrap(), b"kept");
    m.wait_logged("powerloss: power cut: dropped 8 unsynced bytes");
}

#[test]
fn rename_carries_dirty_data_and_fsync_after_rename_persists() {
    let mut m = Mounted::start();
    fs::create_dir(m.m("sub")).unwrap();
    drop(write_new(&m.m("tmp1"), b"first payload"));
    drop(write_new(&m.m("tmp2"), b"second payload"));
    fs::rename(m.m("tmp1"), m.m("sub/final1")).unwrap();
    fs::rename(m.m("tmp2"), m.m("final2")).unwrap();
    // Renaming a directory moves the files below it, dirty data included.
    fs::rename(m.m("sub"), m.m("sub2")).unwrap();
    assert_eq!(fs::read(m.m("sub2/final1")).unwrap(), b"first payload");
    assert_eq!(fs::read(m.m("final2")).unwrap(), b"second payload");
    assert!(!m.m("tmp1").exists());

    // Rename over an existing file replaces it; its old dirty data must not leak.
    drop(write_new(&m.m("victim"), b"victim data"));
    drop(write_new(&m.m("tmp3"), b"new"));
    fs::rename(m.m("tmp3"), m.m("victim")).unwrap();
    assert_eq!(fs::read(m.m("victim")).unwrap(), b"new");

    File::open(m.m("sub2/final1")).unwrap().sync_all().unwrap();
    m.power_cut();
    assert_eq!(fs::read(m.b("sub2/final1")).unwrap(), b"first payload");
    assert_eq!(fs::metadata(m.b("final2")).unwrap().len(), 0);
    assert!(!m.b("tmp1").exists() && !m.b("tmp2").exists());
    assert_eq!(fs::metadata(m.b("victim")).unwrap().len(), 0);
}

#[test]
fn truncate_is_durable_and_clips_dirty_data() {
    let mut m = Mounted::start();
    for name in ["lost", "synced"] {
        let f = write_new(&m.m(name), &[b'a'; 1000]);
        f.sync_all().unwrap();
        f.write_all_at(&[b'b'; 1000], 1000).unwrap();
        f.set_len(500).unwrap();
        assert_eq!(fs::read(m.m(name)).unwrap(), vec![b'a'; 500]);
        // Writing past the new end leaves a hole that reads as zeros, not as the old 'b's.
        f.write_all_at(b"abc", 800).unwrap();
        let mut want = vec![b'a'; 500];
        want.extend_from_slice(&[0; 300]);
        want.extend_from_slice(b"abc");
        assert_eq!(fs::read(m.m(name)).unwrap(), want);
        assert_eq!(f.metadata().unwrap().len(), 803);
        if name == "synced" {
            f.sync_all().unwrap();
        }
    }
    // Truncating to zero through open(O_TRUNC) drops dirty data as well.
    let f = write_new(&m.m("otrunc"), b"0123456789");
    f.sync_all().unwrap();
    f.write_all_at(b"dirty", 10).unwrap();
    drop(f);
    drop(File::create(m.m("otrunc")).unwrap());
    assert_eq!(fs::metadata(m.m("otrunc")).unwrap().len(), 0);

    m.power_cut();
    assert_eq!(fs::read(m.b("lost")).unwrap(), vec![b'a'; 500]);
    let mut want = vec![b'a'; 500];
    want.extend_from_slice(&[0; 300]);
    want.extend_from_slice(b"abc");
    assert_eq!(fs::read(m.b("synced")).unwrap(), want);
    assert_eq!(fs::metadata(m.b("otrunc")).unwrap().len(), 0);
}

#[test]
fn many_small_appends_read_back_correctly() {
    let mut m = Mounted::start();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut want = Vec::new();
    let mut synced_len = 0;
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(m.m("blk"))
        .unwrap();
    while want.len() < 4 << 20 {
        let n = 1 + rng.below(8192) as usize;
        let chunk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        f.write_all(&chunk).unwrap();
        want.extend_from_slice(&chunk);
        if rng.below(50) == 0 {
            f.sync_data().unwrap();
            synced_len = want.len();
        }
    }
    drop(f);
    assert!(synced_len > 0 && synced_len < want.len());
    let mut got = Vec::new();
    File::open(m.m("blk"))
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "content differs");
    // Random preads across synced and dirty regions.
    let r = File::open(m.m("blk")).unwrap();
    for _ in 0..200 {
        let off = rng.below(want.len() as u64) as usize;
        let len = (1 + rng.below(300_000) as usize).min(want.len() - off);
        let mut buf = vec![0; len];
        r.read_exact_at(&mut buf, off as u64).unwrap();
        assert!(buf == want[off..off + len], "pread at {off}+{len}");
    }
    drop(r);
    m.power_cut();
    let backing = fs::read(m.b("blk")).unwrap();
    assert_eq!(backing.len(), synced_len);
    assert!(
        backing == want[..synced_len],
        "backing holds the synced prefix"
    );
}

#[test]
fn metadata_is_durable_at_once() {
    let mut m = Mounted::start();
    fs::create_dir_all(m.m("a/b")).unwrap();
    drop(write_new(&m.m("a/b/f"), b"data"));
    drop(write_new(&m.m("a/gone"), b"x"));
    fs::remove_file(m.m("a/gone")).unwrap();
    fs::create_dir(m.m("empty")).unwrap();
    fs::remove_dir(m.m("empty")).unwrap();
    std::os::unix::fs::symlink("b/f", m.m("a/link")).unwrap();
    assert_eq!(fs::read_link(m.m("a/link")).unwrap(), Path::new("b/f"));
    assert_eq!(fs::read(m.m("a/link")).unwrap(), b"data");
    fs::set_permissions(
        m.m("a/b/f"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let mut names: Vec<String> = fs::read_dir(m.m("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["b", "link"]);
    assert!(fs::hard_link(m.m("a/b/f"), m.m("a/hard")).is_err());

    m.power_cut();
    assert!(m.b("a/b").is_dir());
    assert_eq!(fs::metadata(m.b("a/b/f")).unwrap().len(), 0);
    assert_eq!(fs::metadata(m.b("a/b/f")).unwrap().mode() & 0o777, 0o600);
    assert!(!m.b("a/gone").exists() && !m.b("empty").exists());
    assert_eq!(fs::read_link(m.b("a/link")).unwrap(), Path::new("b/f"));
}

#[test]
fn unlinked_open_file_stays_usable_and_its_inode_starts_clean_when_reused() {
    let mut m = Mounted::start();
    let f = write_new(&m.m("old"), b"dirty bytes of a deleted file");
    fs::remove_file(m.m("old")).unwrap();
    let mut buf = vec![0; 5];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, b"dirty");
    assert_eq!(f.metadata().unwrap().len(), 29);
    f.write_all_at(b"DIRTY", 0).unwrap();
    f.sync_all().unwrap();
    drop(f);
    // New files may reuse the old inode number; they must not see its overlay.
    for i in 0..20 {
        let name = format!("new{i}");
        drop(write_new(&m.m(&name), b""));
        assert_eq!(fs::metadata(m.m(&name)).unwrap().len(), 0);
        assert_eq!(fs::read(m.m(&name)).unwrap(), b"");
    }
    m.power_cut();
}

#[test]
fn refuses_bad_input_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs::write(&file, b"").unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let missing = dir.path().join("missing");
    let (status, err) = run(&[
        "--backing".as_ref(),
        missing.as_os_str(),
        "--mountpoint".as_ref(),
        dir.path().as_os_str(),
    ]);
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains("backing directory") && err.contains("does not exist"),
        "{err}"
    );
    let (status, err) = run(&[
        "--backing".as_ref(),
        dir.path().as_os_str(),
        "--mountpoint".as_ref(),
        file.as_os_str(),
    ]);
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains("mountpoint") && err.contains("not a directory"),
        "{err}"
    );
    let inner = dir.path().join("inner");
    fs::create_dir(&inner).unwrap();
    let (status, err) = run(&[
        "--backing".as_ref(),
        dir.path().as_os_str(),
        "--mountpoint".as_ref(),
        inner.as_os_str(),
    ]);
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("outside the backing directory"), "{err}");

    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "fsync",
        "SIGKILL",
        "SIGTERM",
        "SIGUSR1",
        "mountinfo",
        "umount -l",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
}

#[test]
fn refuses_live_and_dead_mounts_and_ignores_stray_sigusr2() {
    let mut m = Mounted::start();
    let again = |m: &Mounted| {
        let other = tempfile::tempdir().unwrap();
        let out = Command::new(BIN)
            .arg("--backing")
            .arg(other.path())
            .arg("--mountpoint")
            .arg(m.mnt.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = again(&m);
    assert_eq!(code, Some(1));
    assert!(err.contains("already has a FUSE filesystem"), "{err}");

    // SIGUSR2 is internal (session ended); one from outside changes nothing.
    let pid = Pid::from_raw(m.child.as_ref().unwrap().id() as i32);
    kill(pid, Signal::SIGUSR2).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(m.child.as_mut().unwrap().try_wait().unwrap().is_none());
    drop(write_new(&m.m("still-served"), b"yes"));
    assert_eq!(fs::read(m.m("still-served")).unwrap(), b"yes");

    // SIGKILL without detaching leaves a dead mount, which is refused with the fix.
    let status = m.signal(Signal::SIGKILL);
    assert_eq!(status.code(), None);
    let (code, err) = again(&m);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("dead FUSE mount") && err.contains("umount -l"),
        "{err}"
    );
    detach(m.mnt.path()).unwrap();
}

#[test]
fn external_umount_is_a_clean_shutdown() {
    let mut m = Mounted::start();
    drop(write_new(&m.m("f"), b"flushed on umount"));
    // The kernel releases the closed file asynchronously; until then umount says EBUSY.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match nix::mount::umount2(m.mnt.path(), nix::mount::MntFlags::empty()) {
            Err(nix::errno::Errno::EBUSY) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            other => break other.unwrap(),
        }
    }
    let status = m.child.take().unwrap().wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(fs::read(m.b("f")).unwrap(), b"flushed on umount");
    m.wait_logged("powerloss: unmounted: flushed 17 bytes in 1 file(s)");
}
