//! Mounting, serving in the foreground, and the signals that end it.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsFd, IntoRawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fuser::{Config, MountOption, Session, SessionACL};
use nix::errno::Errno;
use nix::mount::MntFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::fs::{FlushStats, PowerlossFs};

/// The FUSE device.
pub const FUSE_DEVICE: &str = "/dev/fuse";
/// Filesystem type shown in /proc/self/mountinfo.
pub const FSTYPE: &str = "fuse.powerloss";

/// What to mount where.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory holding the durable data.
    pub backing: PathBuf,
    /// Empty directory to mount on.
    pub mountpoint: PathBuf,
    /// FUSE worker threads (so one slow fsync does not stall every other request).
    pub threads: usize,
}

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// SIGTERM or SIGINT: dirty data was written back and fsynced, then unmounted.
    Clean(FlushStats),
    /// SIGUSR1: dirty data was dropped (power loss on request), then unmounted.
    PowerCut {
        /// Unsynced bytes that were lost.
        dropped_bytes: u64,
    },
    /// Someone unmounted the filesystem (`umount`); like a clean shutdown, data was flushed.
    Unmounted(FlushStats),
}

/// Validated, canonical paths.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Canonical backing directory.
    pub backing: PathBuf,
    /// Canonical mountpoint.
    pub mountpoint: PathBuf,
}

/// Checks the paths: both directories, neither inside the other (we would serve ourselves).
pub fn check_paths(backing: &Path, mountpoint: &Path) -> Result<Paths> {
    let backing = check_dir("backing directory", backing)?;
    let mountpoint = check_dir("mountpoint", mountpoint)?;
    if crate::mountinfo::fuse_mounted(&mountpoint).unwrap_or(false) {
        // stat may be answered from the kernel's attribute cache; opendir always reaches the
        // daemon, so it tells a dead mount (ENOTCONN) from a live one.
        if let Err(e) = fs::read_dir(&mountpoint)
            && e.raw_os_error() == Some(Errno::ENOTCONN as i32)
        {
            return Err(Error::StaleMount(mountpoint));
        }
        return Err(Error::BadPath {
            what: "mountpoint",
            path: mountpoint,
            reason: "already has a FUSE filesystem mounted on it (another firedrill-powerloss?)"
                .into(),
        });
    }
    if mountpoint.starts_with(&backing) || backing.starts_with(&mountpoint) {
        return Err(Error::BadPath {
            what: "mountpoint",
            path: mountpoint,
            reason: format!(
                "must be outside the backing directory {} and not contain it",
                backing.display()
            ),
        });
    }
    Ok(Paths {
        backing,
        mountpoint,
    })
}

fn check_dir(what: &'static str, path: &Path) -> Result<PathBuf> {
    let bad = |reason: String| Error::BadPath {
        what,
        path: path.to_path_buf(),
        reason,
    };
    match fs::metadata(path) {
        Err(e) if e.raw_os_error() == Some(Errno::ENOTCONN as i32) => {
            Err(Error::StaleMount(path.to_path_buf()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(bad("does not exist".into())),
        Err(e) => Err(bad(e.to_string())),
        Ok(m) if !m.is_dir() => Err(bad("is not a directory".into())),
        Ok(_) => path.canonicalize().map_err(|e| bad(e.to_string())),
    }
}

/// Checks the environment: the FUSE device exists and we are root.
pub fn check_environment() -> Result<()> {
    if !Path::new(FUSE_DEVICE).exists() {
        return Err(Error::NoFuseDevice);
    }
    let euid = nix::unistd::geteuid();
    if !euid.is_root() {
        return Err(Error::NotRoot {
            euid: euid.as_raw(),
        });
    }
    Ok(())
}

/// Mounts, prints the ready line to stderr, and serves until a signal or an unmount.
pub fn serve(opts: &Options) -> Result<Shutdown> {
    let paths = check_paths(&opts.backing, &opts.mountpoint)?;
    check_environment()?;
    fill_std_fds();
    // Modes asked for by callers are already masked by the kernel; do not mask them twice.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());

    // Block the signals before any thread starts so that all of them inherit the mask and
    // only our sigwait below receives them.
    let mut signals = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        signals.add(s);
    }
    signals.thread_block()?;

    let fs = PowerlossFs::new(&paths.backing)?;
    let control = fs.control();
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!("powerloss:{}", paths.backing.display())),
        // A kernel option (fuser's Subtype is for fusermount only): fstype fuse.powerloss.
        MountOption::CUSTOM("subtype=powerloss".into()),
        MountOption::DefaultPermissions,
    ];
    // allow_other: root processes in other network namespaces of this mount namespace.
    config.acl = SessionACL::All;
    config.n_threads = Some(opts.threads.max(1));
    config.clone_fd = true;
    // Returns after mount(2) and the FUSE handshake: from here on requests are served.
    let session = Session::new(fs, &paths.mountpoint, &config).map_err(|source| Error::Mount {
        mountpoint: paths.mountpoint.clone(),
        source,
    })?;
    let session_ended = Arc::new(AtomicBool::new(false));
    let session_error = Arc::new(Mutex::new(None));
    let (ended, error) = (Arc::clone(&session_ended), Arc::clone(&session_error));
    std::thread::Builder::new()
        .name("fuse-session".into())
        .spawn(move || {
            if let Err(e) = session.run() {
                *error.lock() = Some(e);
            }
            // Wake the main thread: the mount is gone (unmounted from outside, or failed).
            ended.store(true, Ordering::SeqCst);
            let _ = nix::sys::signal::kill(Pid::this(), Signal::SIGUSR2);
        })
        .map_err(|source| Error::Mount {
            mountpoint: paths.mountpoint.clone(),
            source,
        })?;
    let _ = writeln!(
        io::stderr(),
        "powerloss: serving {} over {} (pid {})",
        paths.mountpoint.display(),
        paths.backing.display(),
        std::process::id()
    );

    loop {
        match signals.wait()? {
            Signal::SIGUSR1 => {
                let dropped_bytes = control.cut_power();
                unmount(&paths.mountpoint)?;
                return Ok(Shutdown::PowerCut { dropped_bytes });
            }
            // Only our session thread's SIGUSR2 counts; a stray one is ignored.
            Signal::SIGUSR2 if session_ended.load(Ordering::SeqCst) => {
                let flushed = control.flush_all();
                if let Some(e) = session_error.lock().take() {
                    return Err(Error::Session(e));
                }
                return Ok(Shutdown::Unmounted(flushed?));
            }
            Signal::SIGUSR2 => {}
            _ => {
                let first = control.flush_all();
                let unmounted = unmount(&paths.mountpoint);
                // Writes that raced with the first pass (files still open) are caught here.
                let second = control.flush_all();
                let (first, second) = (first?, second?);
                unmounted?;
                return Ok(Shutdown::Clean(FlushStats {
                    files: first.files + second.files,
                    bytes: first.bytes + second.bytes,
                }));
            }
        }
    }
}

/// umount(2), falling back to a lazy detach while files are still open on the mount.
fn unmount(mountpoint: &Path) -> Result<()> {
    let res = match nix::mount::umount2(mountpoint, MntFlags::empty()) {
        Err(Errno::EBUSY) => nix::mount::umount2(mountpoint, MntFlags::MNT_DETACH),
        other => other,
    };
    res.map_err(|e| Error::Unmount {
        mountpoint: mountpoint.to_path_buf(),
        source: io::Error::from(e),
    })
}

/// fuser asserts that /dev/fuse does not land on fd 0-2; a caller that closed them would
/// make that happen, so park /dev/null there.
fn fill_std_fds() {
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    for fd in [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()] {
        if nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD) == Err(Errno::EBADF) {
            // open() takes the lowest free descriptor: the missing one, as lower ones are
            // filled first.
            if let Ok(f) = File::options().read(true).write(true).open("/dev/null") {
                let _ = f.into_raw_fd();
            }
        }
    }
}
