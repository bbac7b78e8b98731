//! Namespace and metadata operations: lookup, attributes, links, mkdir, unlink, rename.
//! They go to the backing directory at once.

use std::ffi::OsStr;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::fs::{PermissionsExt, fchown, lchown};
use std::path::Path;
use std::sync::Arc;

use fuser::{Errno, FileAttr, FileHandle, RenameFlags, Request, TimeOrNow};
use nix::fcntl::AT_FDCWD;
use nix::sys::stat::UtimensatFlags;

use super::state::{OpResult, Shared, attr};
use super::util::{key_of, nix_errno, timespec};

impl Shared {
    pub(super) fn lookup(&self, parent: u64, name: &OsStr) -> OpResult<FileAttr> {
        let mut nodes = self.nodes.lock();
        let path = nodes
            .child_path(parent, name, &self.root)
            .ok_or(Errno::ENOENT)?;
        let meta = fs::symlink_metadata(&path)?;
        let ino = nodes.remember(parent, name, key_of(&meta));
        Ok(self.attr_of(ino, &meta))
    }

    pub(super) fn getattr(&self, ino: u64, fh: Option<FileHandle>) -> OpResult<FileAttr> {
        if let Some(h) = fh.and_then(|fh| self.handles.lock().get(&fh.0).cloned()) {
            let meta = h.file.metadata()?;
            return Ok(attr(ino, &meta, Some(&h.entry.state.read())));
        }
        let nodes = self.nodes.lock();
        if let Some(path) = nodes.path(ino, &self.root) {
            let meta = fs::symlink_metadata(&path)?;
            if Some(key_of(&meta)) != nodes.key(ino) {
                return Err(Errno::ESTALE);
            }
            return Ok(self.attr_of(ino, &meta));
        }
        // An unlinked file that is still open: answer from one of its handles.
        let h = self
            .handles
            .lock()
            .values()
            .find(|h| h.ino == ino)
            .cloned()
            .ok_or(Errno::ENOENT)?;
        let meta = h.file.metadata()?;
        Ok(attr(ino, &meta, Some(&h.entry.state.read())))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn setattr(
        &self,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<FileHandle>,
    ) -> OpResult<FileAttr> {
        self.alive()?;
        let nodes = self.nodes.lock();
        let handle = fh.and_then(|fh| self.handles.lock().get(&fh.0).cloned());
        let path = nodes.path(ino, &self.root);
        if path.is_none() && handle.is_none() {
            return Err(Errno::ENOENT);
        }
        if let Some(size) = size {
            let file = match (&handle, &path) {
                (Some(h), _) if h.writable => Arc::clone(&h.file),
                (_, Some(p)) => Arc::new(OpenOptions::new().write(true).open(p)?),
                (Some(h), None) => Arc::clone(&h.file),
                (None, None) => return Err(Errno::ENOENT),
            };
            let entry = match &handle {
                Some(h) => Some(Arc::clone(&h.entry)),
                None => nodes
                    .key(ino)
                    .and_then(|k| self.files.lock().get(&k).cloned()),
            };
            // Truncation is metadata: applied to the backing file now, and clipped from the
            // overlay so bytes past the new end do not come back.
            match entry {
                Some(e) => {
                    let mut st = e.state.write();
                    file.set_len(size)?;
                    st.overlay.truncate(size);
                }
                None => file.set_len(size)?,
            }
        }
        if let Some(mode) = mode {
            let perms = Permissions::from_mode(mode & 0o7777);
            match (&path, &handle) {
                (Some(p), _) => fs::set_permissions(p, perms)?,
                (None, Some(h)) => h.file.set_permissions(perms)?,
                (None, None) => {}
            }
        }
        if uid.is_some() || gid.is_some() {
            match (&path, &handle) {
                (Some(p), _) => lchown(p, uid, gid)?,
                (None, Some(h)) => fchown(&*h.file, uid, gid)?,
                (None, None) => {}
            }
        }
        if atime.is_some() || mtime.is_some() {
            let (a, m) = (timespec(atime), timespec(mtime));
            match (&path, &handle) {
                (Some(p), _) => nix::sys::stat::utimensat(
                    AT_FDCWD,
                    p.as_path(),
                    &a,
                    &m,
                    UtimensatFlags::NoFollowSymlink,
                )
                .map_err(nix_errno)?,
                (None, Some(h)) => nix::sys::stat::futimens(&*h.file, &a, &m).map_err(nix_errno)?,
                (None, None) => {}
            }
        }
        match (&handle, &path) {
            (Some(h), _) => {
                let meta = h.file.metadata()?;
                Ok(attr(ino, &meta, Some(&h.entry.state.read())))
            }
            (None, Some(p)) => {
                let meta = fs::symlink_metadata(p)?;
                Ok(self.attr_of(ino, &meta))
            }
            (None, None) => Err(Errno::ENOENT),
        }
    }

    pub(super) fn readlink(&self, ino: u64) -> OpResult<Vec<u8>> {
        let path = self
            .nodes
            .lock()
            .path(ino, &self.root)
            .ok_or(Errno::ENOENT)?;
        Ok(fs::read_link(path)?.as_os_str().as_bytes().to_vec())
    }

    pub(super) fn mkdir(
        &self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        mode: u32,
    ) -> OpResult<FileAttr> {
        self.alive()?;
        let mut nodes = self.nodes.lock();
        let path = nodes
            .child_path(parent, name, &self.root)
            .ok_or(Errno::ENOENT)?;
        DirBuilder::new().mode(mode & 0o7777).create(&path)?;
        self.chown_new(req, &path, None)?;
        let meta = fs::symlink_metadata(&path)?;
        let ino = nodes.remember(parent, name, key_of(&meta));
        Ok(attr(ino, &meta, None))
    }

    pub(super) fn symlink(
        &self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        target: &Path,
    ) -> OpResult<FileAttr> {
        self.alive()?;
        let mut nodes = self.nodes.lock();
        let path = nodes
            .child_path(parent, name, &self.root)
            .ok_or(Errno::ENOENT)?;
        std::os::unix::fs::symlink(target, &path)?;
        self.chown_new(req, &path, None)?;
        let meta = fs::symlink_metadata(&path)?;
        let ino = nodes.remember(parent, name, key_of(&meta));
        Ok(attr(ino, &meta, None))
    }

    pub(super) fn unlink(&self, parent: u64, name: &OsStr, dir: bool) -> OpResult<()> {
        self.alive()?;
        let mut nodes = self.nodes.lock();
        let path = nodes
            .child_path(parent, name, &self.root)
            .ok_or(Errno::ENOENT)?;
        let meta = fs::symlink_metadata(&path)?;
        if dir {
            fs::remove_dir(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
        if dir || meta.nlink() <= 1 {
            self.gone(&mut nodes, key_of(&meta));
        }
        Ok(())
    }

    pub(super) fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> OpResult<()> {
        self.alive()?;
        if flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return Err(Errno::EINVAL);
        }
        let mut nodes = self.nodes.lock();
        let from = nodes
            .child_path(parent, name, &self.root)
            .ok_or(Errno::ENOENT)?;
        let to = nodes
            .child_path(newparent, newname, &self.root)
            .ok_or(Errno::ENOENT)?;
        let src = fs::symlink_metadata(&from)?;
        let dst = fs::symlink_metadata(&to).ok();
        let nix_flags = nix::fcntl::RenameFlags::from_bits_truncate(flags.bits());
        nix::fcntl::renameat2(AT_FDCWD, from.as_path(), AT_FDCWD, to.as_path(), nix_flags)
            .map_err(nix_errno)?;
        let src_key = key_of(&src);
        if let Some(dst) = dst {
            let dst_key = key_of(&dst);
            if dst_key == src_key {
                // Two links to one inode: rename(2) does nothing.
                return Ok(());
            }
            if flags.contains(RenameFlags::RENAME_EXCHANGE) {
                nodes.moved(dst_key, parent, name);
            } else if dst.is_dir() || dst.nlink() <= 1 {
                self.gone(&mut nodes, dst_key);
            }
        }
        // The overlay is keyed by inode, so dirty data follows the file to its new name.
        nodes.moved(src_key, newparent, newname);
        Ok(())
    }
}
