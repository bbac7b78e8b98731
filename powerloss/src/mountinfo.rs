//! Readiness and cleanup helpers for callers: is a FUSE mount live at a path, and detaching
//! the dead mount a SIGKILLed daemon leaves behind.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use firedrill_faults::mountinfo;

use crate::error::{Error, Result};

/// True when /proc/self/mountinfo lists a FUSE filesystem (fstype `fuse` or `fuse.*`)
/// mounted at `mountpoint`. This is the readiness signal of `firedrill-powerloss`: the mount
/// appears only after the FUSE handshake, so any access from then on is served. A dead mount
/// (daemon killed) is still listed until detached.
pub fn fuse_mounted(mountpoint: &Path) -> io::Result<bool> {
    let info = fs::read_to_string(mountinfo::PATH)?;
    Ok(lists_fuse_mount(&info, &canonical(mountpoint)))
}

/// Whether mountinfo text lists a FUSE mount at exactly `mountpoint` (already canonical).
/// Lines that do not parse are passed over.
pub fn lists_fuse_mount(info: &str, mountpoint: &Path) -> bool {
    info.lines()
        .filter_map(mountinfo::parse_line)
        .any(|m| m.is_fuse() && m.mount_point == mountpoint)
}

/// Lazily unmounts (`umount -l`) whatever is mounted at `mountpoint`: the way to clean up
/// after SIGKILL, when the mount is dead and every access fails with ENOTCONN.
pub fn detach(mountpoint: &Path) -> Result<()> {
    nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH).map_err(|e| Error::Unmount {
        mountpoint: mountpoint.to_path_buf(),
        source: io::Error::from(e),
    })
}

/// Canonical form of a path that may be a dead mount: stat of a dead FUSE mount fails
/// (ENOTCONN), so only its parent is resolved then.
pub fn canonical(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => parent
            .canonicalize()
            .map_or_else(|_| path.to_path_buf(), |p| p.join(name)),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/root rw
97 22 0:50 / /tmp/a\\040b rw,nosuid,nodev,relatime shared:60 - fuse.powerloss powerloss:/x rw,user_id=0
98 22 0:51 / /tmp/c rw,relatime - fuse /dev/fuse rw
99 22 0:52 / /tmp/d rw,relatime master:3 - tmpfs tmpfs rw
";

    #[test]
    fn finds_fuse_mounts_only() {
        assert!(lists_fuse_mount(INFO, Path::new("/tmp/a b")));
        assert!(lists_fuse_mount(INFO, Path::new("/tmp/c")));
        assert!(!lists_fuse_mount(INFO, Path::new("/tmp/d")));
        assert!(!lists_fuse_mount(INFO, Path::new("/tmp/a")));
        assert!(!lists_fuse_mount(INFO, Path::new("/")));
    }
}
