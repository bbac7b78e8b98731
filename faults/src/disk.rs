//! Disk faults on a data directory: take it away, make it read-only, or wipe it.
//!
//! Take-away mounts an empty tmpfs over the directory (a fresh, empty "disk"; the old
//! contents are hidden, not touched), read-only stacks a read-only bind mount of the
//! directory onto itself. Both are reverted by unmounting what we stacked, which brings the
//! original back. Mounts happen in this process's mount namespace.
//!
//! Which mount is ours is decided from facts recorded *before* mounting (the id of the mount
//! the directory lived on), so a revert after a crash finds it without guessing: our mount
//! sits exactly at the directory with that mount as parent.
//!
//! Limits: processes that already hold files or their working directory inside keep using
//! the original for those handles (read-only affects new opens; existing writable fds
//! continue), so combine with a kill/restart when the target must really lose its disk.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::InjectionId;
use crate::mountinfo;

/// Size cap of the empty tmpfs that replaces a taken-away directory.
pub const TAKE_AWAY_SIZE: &str = "256m";

/// A data directory resolved for a mount fault: canonical path plus the id of the mount it
/// lived on before the fault.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MountTarget {
    pub dir: PathBuf,
    pub parent_mount_id: u64,
}

fn mount_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Mount {
        path: path.to_path_buf(),
        source,
    }
}

/// Canonicalises `dir` and refuses paths no fault should ever touch.
fn check_dir(dir: &Path) -> Result<PathBuf> {
    if !dir.is_absolute() {
        return Err(Error::invalid(
            "dir",
            format!("{} is not absolute", dir.display()),
        ));
    }
    let canonical = dir
        .canonicalize()
        .map_err(|e| Error::invalid("dir", format!("{}: {e}", dir.display())))?;
    if canonical == Path::new("/") {
        return Err(Error::invalid("dir", "refusing to target /"));
    }
    if !canonical.is_dir() {
        return Err(Error::invalid(
            "dir",
            format!("{} is not a directory", dir.display()),
        ));
    }
    Ok(canonical)
}

/// Resolves `dir` before a mount fault is recorded and applied.
pub fn prepare(dir: &Path) -> Result<MountTarget> {
    let dir = check_dir(dir)?;
    let mounts = mountinfo::read()?;
    let parent = mountinfo::containing(&mounts, &dir)
        .ok_or_else(|| Error::invalid("dir", format!("{} is on no mount", dir.display())))?;
    Ok(MountTarget {
        parent_mount_id: parent.id,
        dir,
    })
}

fn tmpfs_source(id: &InjectionId) -> String {
    format!("firedrill-{id}")
}

/// Hides the directory's contents behind an empty tmpfs with the same owner and mode.
/// Applying again while ours is in place does nothing.
pub fn take_away(target: &MountTarget, id: &InjectionId) -> Result<()> {
    if find_ours(target)?.is_some() {
        return Ok(());
    }
    let meta = std::fs::metadata(&target.dir).map_err(mount_err(&target.dir))?;
    let data = format!(
        "size={TAKE_AWAY_SIZE},mode={:o},uid={},gid={}",
        meta.mode() & 0o7777,
        meta.uid(),
        meta.gid()
    );
    mount(
        Some(tmpfs_source(id).as_str()),
        &target.dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(|e| mount_err(&target.dir)(e.into()))
}

/// Makes the directory read-only for new opens (a read-only bind mount onto itself).
pub fn read_only(target: &MountTarget) -> Result<()> {
    if find_ours(target)?.is_some_and(|m| m.read_only()) {
        return Ok(());
    }
    // An earlier attempt may have left the writable bind (crash between the two calls).
    let bound = find_ours(target)?.is_some();
    let none: Option<&str> = None;
    if !bound {
        mount(Some(&target.dir), &target.dir, none, MsFlags::MS_BIND, none)
            .map_err(|e| mount_err(&target.dir)(e.into()))?;
    }
    let remount = mount(
        none,
        &target.dir,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        none,
    );
    if let Err(e) = remount {
        // Never leave a half-applied fault behind.
        let _ = unmount_ours(target);
        return Err(mount_err(&target.dir)(e.into()));
    }
    Ok(())
}

/// Our mount at the target, if it is there.
fn find_ours(target: &MountTarget) -> Result<Option<mountinfo::Mount>> {
    let mounts = mountinfo::read()?;
    Ok(mounts
        .iter()
        .find(|m| m.mount_point == target.dir && m.parent == target.parent_mount_id)
        .cloned())
}

/// Removes the mount a take-away or read-only fault stacked on the directory.
/// `Ok(false)` when it is not there (already reverted).
pub fn unmount_ours(target: &MountTarget) -> Result<bool> {
    let mounts = mountinfo::read()?;
    let Some(ours) = mounts
        .iter()
        .find(|m| m.mount_point == target.dir && m.parent == target.parent_mount_id)
    else {
        return Ok(false);
    };
    let top = mountinfo::top_at(&mounts, &target.dir);
    if top.map(|t| t.id) != Some(ours.id) {
        return Err(mount_err(&target.dir)(std::io::Error::other(
            "another mount was stacked on top of firedrill's; not unmounting it",
        )));
    }
    // Detach so a process with files open inside cannot block the revert.
    match umount2(&target.dir, MntFlags::MNT_DETACH) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::EINVAL) if find_ours(target)?.is_none() => Ok(false),
        Err(e) => Err(mount_err(&target.dir)(e.into())),
    }
}

/// Deletes everything inside `dir` (not `dir` itself). Irreversible by design; returns the
/// number of top-level entries removed. Symlinks are removed, never followed.
pub fn wipe(dir: &Path) -> Result<usize> {
    let dir = check_dir(dir)?;
    let wipe_err = |source| Error::Wipe {
        path: dir.clone(),
        source,
    };
    let mut removed = 0;
    for entry in std::fs::read_dir(&dir).map_err(wipe_err)? {
        let entry = entry.map_err(wipe_err)?;
        let path = entry.path();
        let is_dir = entry.file_type().map_err(wipe_err)?.is_dir();
        let r = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match r {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(wipe_err(e)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_root_and_relative_paths() {
        assert_eq!(
            prepare(Path::new("/")).unwrap_err().category(),
            "invalid_input"
        );
        assert_eq!(
            prepare(Path::new("data")).unwrap_err().category(),
            "invalid_input"
        );
        assert_eq!(
            wipe(Path::new("/")).unwrap_err().category(),
            "invalid_input"
        );
        assert_eq!(
            wipe(Path::new("/nonexistent-fd")).unwrap_err().category(),
            "invalid_input"
        );
    }
}
