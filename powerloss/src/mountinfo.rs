//! Readiness and cleanup helpers for callers: is a FUSE mount live at a path, and detaching
//! the dead mount a SIGKILLed daemon leaves behind.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// True when /proc/self/mountinfo lists a FUSE filesystem (fstype `fuse` or `fuse.*`)
/// mounted at `mountpoint`. This is the readiness signal of `firedrill-powerloss`: the mount
/// appears only after the FUSE handshake, so any access from then on is served. A dead mount
/// (daemon killed) is still listed until detached.
pub fn fuse_mounted(mountpoint: &Path) -> io::Result<bool> {
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(lists_fuse_mount(&info, &canonical(mountpoint)))
}

/// Whether mountinfo text lists a FUSE mount at exactly `mountpoint` (already canonical).
pub fn lists_fuse_mount(mountinfo: &str, mountpoint: &Path) -> bool {
    mountinfo.lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(point) = fields.get(4) else {
            return false;
        };
        // Optional fields end at a lone "-"; the filesystem type comes right after it.
        let fstype = fields
            .iter()
            .skip(6)
            .position(|f| *f == "-")
            .and_then(|i| fields.get(i + 7));
        let is_fuse = fstype.is_some_and(|t| *t == "fuse" || t.starts_with("fuse."));
        is_fuse && Path::new(&unescape(point)) == mountpoint
    })
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

/// Undoes mountinfo's octal escapes (`\040` for space and so on).
fn unescape(field: &str) -> OsString {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) if b[i] == b'\\' => {
                out.push(
                    d.iter()
                        .fold(0u8, |v, c| v.wrapping_mul(8).wrapping_add(c - b'0')),
                );
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    OsString::from_vec(out)
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

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape("/a\\040b\\134c"), OsString::from("/a b\\c"));
        assert_eq!(unescape("/trailing\\04"), OsString::from("/trailing\\04"));
    }
}
