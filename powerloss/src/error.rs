//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// What can go wrong setting up, serving or shutting down the filesystem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Mounting FUSE needs root here (no fusermount helper is assumed).
    #[error("firedrill-powerloss must run as root to mount FUSE (euid is {euid})")]
    NotRoot {
        /// The effective uid we run with.
        euid: u32,
    },
    /// `--backing` or `--mountpoint` is unusable.
    #[error("{what} {path}: {reason}")]
    BadPath {
        /// "backing directory" or "mountpoint".
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// The mountpoint still has a dead FUSE mount on it (its daemon was killed).
    #[error(
        "mountpoint {0} is a dead FUSE mount (transport endpoint is not connected); \
         detach it first with `umount -l {0}`"
    )]
    StaleMount(PathBuf),
    /// The kernel has no FUSE device.
    #[error(
        "/dev/fuse is missing: load the fuse module (`modprobe fuse`); in a container, pass the \
         device in (e.g. `--device /dev/fuse`)"
    )]
    NoFuseDevice,
    /// mount(2) or the FUSE handshake failed.
    #[error("mounting FUSE at {mountpoint}: {source}")]
    Mount {
        /// Where we tried to mount.
        mountpoint: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The FUSE session loop stopped with an error.
    #[error("FUSE session failed: {0}")]
    Session(io::Error),
    /// A backing-file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// On which backing path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Writing dirty data to the backing files failed during a clean shutdown.
    #[error(
        "flushing {failed} dirty file(s) to the backing directory failed; first error: {first}"
    )]
    Flush {
        /// Files whose data could not be made durable.
        failed: usize,
        /// The first error seen.
        first: io::Error,
    },
    /// Unmounting failed.
    #[error("unmounting {mountpoint}: {source}")]
    Unmount {
        /// The mountpoint.
        mountpoint: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Signal setup or waiting failed.
    #[error("signal handling: {0}")]
    Signal(#[from] nix::Error),
}

/// Result with the crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
