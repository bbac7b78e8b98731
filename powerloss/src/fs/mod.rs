//! The filesystem: a passthrough over the backing directory in which file contents go to a
//! per-file [`Overlay`] (our "page cache") until fsync, while metadata operations hit the
//! backing directory at once. `adapter` maps FUSE requests onto the operations here.
//!
//! Locks are always taken in this order: nodes, files, handles, dirs, then one file's state.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, File, Metadata, OpenOptions, Permissions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, DirEntryExt, FileExt, MetadataExt, OpenOptionsExt};
use std::os::unix::fs::{PermissionsExt, fchown, lchown};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use fuser::{Errno, FileAttr, FileHandle, FileType, RenameFlags, Request, TimeOrNow};
use nix::fcntl::{AT_FDCWD, OFlag};
use nix::sys::stat::UtimensatFlags;
use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::nodes::{BackingKey, NodeTable, ROOT};
use crate::overlay::Overlay;

mod adapter;
mod util;

use util::{accmode_mask, attr, key_of, nix_errno, read_full_at, timespec};

type OpResult<T> = std::result::Result<T, Errno>;

/// Volatile state of one backing file (one inode, whatever its name).
#[derive(Debug, Default)]
struct FileState {
    overlay: Overlay,
    /// A writable descriptor of the inode, kept while dirty so fsync and shutdown can write
    /// the overlay back even after every handle was closed or the file renamed.
    writer: Option<Arc<File>>,
    /// Time of the last dirty write, reported as mtime (the backing mtime lags until fsync).
    dirty_mtime: Option<SystemTime>,
    /// Open handles on this inode.
    handles: usize,
}

#[derive(Debug)]
struct FileEntry {
    key: BackingKey,
    state: RwLock<FileState>,
}

impl FileEntry {
    fn new(key: BackingKey) -> Arc<Self> {
        Arc::new(Self {
            key,
            state: RwLock::new(FileState::default()),
        })
    }
}

#[derive(Debug)]
struct Handle {
    ino: u64,
    file: Arc<File>,
    entry: Arc<FileEntry>,
    writable: bool,
}

#[derive(Debug)]
struct DirItem {
    ino: u64,
    kind: FileType,
    name: OsString,
}

#[derive(Debug)]
struct Shared {
    root: PathBuf,
    nodes: Mutex<NodeTable>,
    /// Volatile state by backing inode: entries live while dirty or open.
    files: Mutex<HashMap<BackingKey, Arc<FileEntry>>>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    dirs: Mutex<HashMap<u64, Arc<Vec<DirItem>>>>,
    next_fh: AtomicU64,
    power_lost: AtomicBool,
    euid: u32,
    egid: u32,
}

/// The filesystem handed to FUSE. Create it with [`PowerlossFs::new`], keep a [`Control`] to
/// flush or drop dirty data from another thread, then mount it with `fuser`.
#[derive(Debug)]
pub struct PowerlossFs {
    shared: Arc<Shared>,
}

/// A handle on a running filesystem's volatile state, usable from any thread.
#[derive(Debug, Clone)]
pub struct Control {
    shared: Arc<Shared>,
}

/// Outcome of writing dirty data back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Files that had dirty data.
    pub files: usize,
    /// Bytes written back.
    pub bytes: u64,
}

impl PowerlossFs {
    /// A filesystem over `backing`, which must be an existing directory.
    pub fn new(backing: &Path) -> Result<Self> {
        let meta = fs::metadata(backing).map_err(|source| Error::Io {
            op: "stat",
            path: backing.to_path_buf(),
            source,
        })?;
        let shared = Shared {
            root: backing.to_path_buf(),
            nodes: Mutex::new(NodeTable::new(key_of(&meta))),
            files: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            power_lost: AtomicBool::new(false),
            euid: nix::unistd::geteuid().as_raw(),
            egid: nix::unistd::getegid().as_raw(),
        };
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// A control handle for flushing or dropping dirty data.
    pub fn control(&self) -> Control {
        Control {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Control {
    /// Clean shutdown path: writes every file's dirty data to its backing file and fsyncs it.
    /// Returns an error naming how many files failed (the others are still flushed).
    pub fn flush_all(&self) -> Result<FlushStats> {
        let entries: Vec<Arc<FileEntry>> = self.shared.files.lock().values().cloned().collect();
        let mut stats = FlushStats::default();
        let mut failed = 0;
        let mut first = None;
        for entry in entries {
            let bytes = entry.state.read().overlay.dirty_bytes();
            let res = flush_entry(&entry).and_then(|f| f.map_or(Ok(()), |f| f.sync_all()));
            match res {
                Ok(()) if bytes > 0 => {
                    stats.files += 1;
                    stats.bytes += bytes;
                }
                Ok(()) => {}
                Err(e) => {
                    failed += 1;
                    first.get_or_insert(e);
                }
            }
            self.shared.forget_if_idle(&entry);
        }
        match first {
            Some(first) => Err(Error::Flush { failed, first }),
            None => Ok(stats),
        }
    }

    /// Power loss: forgets all dirty data and fails every later operation with EIO.
    /// Returns the number of bytes dropped.
    pub fn cut_power(&self) -> u64 {
        self.shared.power_lost.store(true, Ordering::SeqCst);
        let entries: Vec<Arc<FileEntry>> = self.shared.files.lock().values().cloned().collect();
        let handles: Vec<Arc<Handle>> = self.shared.handles.lock().values().cloned().collect();
        let mut dropped = 0;
        let mut seen = std::collections::HashSet::new();
        // Handles also reach unlinked files that are no longer in the map.
        let all = entries.iter().chain(handles.iter().map(|h| &h.entry));
        for entry in all {
            if seen.insert(Arc::as_ptr(entry)) {
                let mut st = entry.state.write();
                dropped += st.overlay.dirty_bytes();
                st.overlay.clear();
                st.writer = None;
            }
        }
        dropped
    }

    /// Bytes written but not yet fsynced, over all files still linked.
    pub fn dirty_bytes(&self) -> u64 {
        let entries: Vec<Arc<FileEntry>> = self.shared.files.lock().values().cloned().collect();
        entries
            .iter()
            .map(|e| e.state.read().overlay.dirty_bytes())
            .sum()
    }
}

/// Writes one file's dirty extents to its backing file and clears them. Returns the file to
/// fsync (None when nothing was dirty). The fsync itself is left to the caller, outside the
/// lock, so readers and writers of the file are not held up by the disk.
fn flush_entry(entry: &FileEntry) -> io::Result<Option<Arc<File>>> {
    let mut st = entry.state.write();
    if st.overlay.is_empty() {
        return Ok(None);
    }
    let Some(writer) = st.writer.clone() else {
        return Err(io::Error::other("dirty file without a writable descriptor"));
    };
    for (offset, data) in st.overlay.extents() {
        writer.write_all_at(data, offset)?;
    }
    st.overlay.clear();
    st.writer = None;
    st.dirty_mtime = None;
    Ok(Some(writer))
}

impl Shared {
    fn alive(&self) -> OpResult<()> {
        if self.power_lost.load(Ordering::SeqCst) {
            Err(Errno::EIO)
        } else {
            Ok(())
        }
    }

    fn handle(&self, fh: FileHandle) -> OpResult<Arc<Handle>> {
        self.handles.lock().get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    /// Drops a file's volatile entry once it is clean and closed.
    fn forget_if_idle(&self, entry: &Arc<FileEntry>) {
        let mut files = self.files.lock();
        let idle = {
            let st = entry.state.read();
            st.handles == 0 && st.overlay.is_empty()
        };
        if idle && files.get(&entry.key).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            files.remove(&entry.key);
        }
    }

    /// The last link of a backing file is gone: its dirty data can never become durable, and
    /// its inode number may be reused by a new file, which must start clean.
    fn gone(&self, nodes: &mut NodeTable, key: BackingKey) {
        nodes.unlinked(key);
        self.files.lock().remove(&key);
    }

    fn attr_of(&self, ino: u64, meta: &Metadata) -> FileAttr {
        let entry = self.files.lock().get(&key_of(meta)).cloned();
        match entry {
            Some(e) => attr(ino, meta, Some(&e.state.read())),
            None => attr(ino, meta, None),
        }
    }

    /// Gives a new backing object the requester's ownership (we run as root).
    fn chown_new(&self, req: &Request, path: &Path, file: Option<&File>) -> io::Result<()> {
        if req.uid() == self.euid && req.gid() == self.egid {
            return Ok(());
        }
        match file {
            Some(f) => fchown(f, Some(req.uid()), Some(req.gid())),
            None => lchown(path, Some(req.uid()), Some(req.gid())),
        }
    }

    fn lookup(&self, parent: u64, name: &OsStr) -> OpResult<FileAttr> {
        let mut nodes = self.nodes.lock();
        let path = nodes
            .child_path(parent, name, &self.root)
            .ok_or(Errno::ENOENT)?;
        let meta = fs::symlink_metadata(&path)?;
        let ino = nodes.remember(parent, name, key_of(&meta));
        Ok(self.attr_of(ino, &meta))
    }

    fn getattr(&self, ino: u64, fh: Option<FileHandle>) -> OpResult<FileAttr> {
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
    fn setattr(
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

    fn readlink(&self, ino: u64) -> OpResult<Vec<u8>> {
        let path = self
            .nodes
            .lock()
            .path(ino, &self.root)
            .ok_or(Errno::ENOENT)?;
        Ok(fs::read_link(path)?.as_os_str().as_bytes().to_vec())
    }

    fn mkdir(&self, req: &Request, parent: u64, name: &OsStr, mode: u32) -> OpResult<FileAttr> {
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

    fn symlink(
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

    fn unlink(&self, parent: u64, name: &OsStr, dir: bool) -> OpResult<()> {
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

    fn rename(
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

    fn open(&self, ino: u64, flags: i32) -> OpResult<u64> {
        let writable = flags & accmode_mask() != OFlag::O_RDONLY.bits();
        let trunc = writable && flags & OFlag::O_TRUNC.bits() != 0;
        if writable {
            self.alive()?;
        }
        let nodes = self.nodes.lock();
        let path = nodes.path(ino, &self.root).ok_or(Errno::ENOENT)?;
        // Never O_APPEND (pwrite would ignore offsets; the kernel computes them) nor O_DIRECT.
        let file = OpenOptions::new().read(true).write(writable).open(&path)?;
        let meta = file.metadata()?;
        let key = key_of(&meta);
        if Some(key) != nodes.key(ino) {
            return Err(Errno::ESTALE);
        }
        let entry = Arc::clone(
            self.files
                .lock()
                .entry(key)
                .or_insert_with(|| FileEntry::new(key)),
        );
        {
            let mut st = entry.state.write();
            if trunc {
                file.set_len(0)?;
                st.overlay.truncate(0);
            }
            st.handles += 1;
        }
        drop(nodes);
        Ok(self.add_handle(ino, file, entry, writable))
    }

    fn add_handle(&self, ino: u64, file: File, entry: Arc<FileEntry>, writable: bool) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let handle = Handle {
            ino,
            file: Arc::new(file),
            entry,
            writable,
        };
        self.handles.lock().insert(fh, Arc::new(handle));
        fh
    }

    fn create(
        &self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> OpResult<(FileAttr, u64)> {
        self.alive()?;
        let writable = flags & accmode_mask() != OFlag::O_RDONLY.bits();
        let excl = flags & OFlag::O_EXCL.bits() != 0;
        let trunc = flags & OFlag::O_TRUNC.bits() != 0;
        let mut nodes = self.nodes.lock();
        let path = nodes
            .child_path(parent, name, &self.root)
            .ok_or(Errno::ENOENT)?;
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).mode(mode & 0o7777);
        // create_new tells a fresh inode (which must start clean) from an existing file.
        let (file, fresh) = match opts.clone().create_new(true).open(&path) {
            Ok(f) => (f, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && !excl => {
                (opts.open(&path)?, false)
            }
            Err(e) => return Err(e.into()),
        };
        if fresh {
            self.chown_new(req, &path, Some(&file))?;
        }
        let key = key_of(&file.metadata()?);
        if fresh {
            // A reused inode number must not inherit a dead file's node or overlay.
            self.gone(&mut nodes, key);
        }
        let entry = Arc::clone(
            self.files
                .lock()
                .entry(key)
                .or_insert_with(|| FileEntry::new(key)),
        );
        let ino = {
            let mut st = entry.state.write();
            if trunc && !fresh {
                file.set_len(0)?;
                st.overlay.truncate(0);
            }
            st.handles += 1;
            nodes.remember(parent, name, key)
        };
        let meta = file.metadata()?;
        let attr = attr(ino, &meta, Some(&entry.state.read()));
        drop(nodes);
        let fh = self.add_handle(ino, file, entry, writable);
        Ok((attr, fh))
    }

    fn read(&self, fh: FileHandle, offset: u64, size: u32) -> OpResult<Vec<u8>> {
        self.alive()?;
        let h = self.handle(fh)?;
        let st = h.entry.state.read();
        let backing_len = h.file.metadata()?.len();
        let total = st.overlay.size(backing_len);
        if offset >= total {
            return Ok(Vec::new());
        }
        let n = u64::from(size).min(total - offset);
        let mut buf = vec![0u8; usize::try_from(n).map_err(|_| Errno::EINVAL)?];
        if !st.overlay.covers(offset, n) && offset < backing_len {
            let from_backing = usize::try_from((backing_len - offset).min(n)).unwrap_or(buf.len());
            read_full_at(&h.file, &mut buf[..from_backing], offset)?;
        }
        st.overlay.apply(offset, &mut buf);
        Ok(buf)
    }

    fn write(&self, fh: FileHandle, offset: u64, data: &[u8]) -> OpResult<u32> {
        self.alive()?;
        let h = self.handle(fh)?;
        if !h.writable {
            return Err(Errno::EBADF);
        }
        let written = u32::try_from(data.len()).map_err(|_| Errno::EINVAL)?;
        let mut st = h.entry.state.write();
        st.overlay.write(offset, data);
        if st.writer.is_none() {
            st.writer = Some(Arc::clone(&h.file));
        }
        st.dirty_mtime = Some(SystemTime::now());
        Ok(written)
    }

    fn fsync(&self, fh: FileHandle, datasync: bool) -> OpResult<()> {
        self.alive()?;
        let h = self.handle(fh)?;
        // Always fsync, even when clean here: another thread may have written our data back
        // and still be waiting for its own fsync.
        let file = flush_entry(&h.entry)?.unwrap_or_else(|| Arc::clone(&h.file));
        if datasync {
            file.sync_data()?;
        } else {
            file.sync_all()?;
        }
        Ok(())
    }

    fn release(&self, fh: FileHandle) {
        let Some(h) = self.handles.lock().remove(&fh.0) else {
            return;
        };
        {
            let mut st = h.entry.state.write();
            st.handles = st.handles.saturating_sub(1);
        }
        self.forget_if_idle(&h.entry);
    }

    fn opendir(&self, ino: u64) -> OpResult<u64> {
        let nodes = self.nodes.lock();
        let path = nodes.path(ino, &self.root).ok_or(Errno::ENOENT)?;
        let dev = fs::symlink_metadata(&path)?.dev();
        let parent = nodes.parent(ino).unwrap_or(ROOT);
        let mut items = vec![
            DirItem {
                ino,
                kind: FileType::Directory,
                name: ".".into(),
            },
            DirItem {
                ino: parent,
                kind: FileType::Directory,
                name: "..".into(),
            },
        ];
        for entry in fs::read_dir(&path)? {
            let entry = entry?;
            let kind = FileType::from_std(entry.file_type()?).unwrap_or(FileType::RegularFile);
            let key = BackingKey {
                dev,
                ino: entry.ino(),
            };
            // d_ino is informational; use our node id when the kernel knows the file.
            let ino = nodes.ino_of(key).unwrap_or(entry.ino());
            items.push(DirItem {
                ino,
                kind,
                name: entry.file_name(),
            });
        }
        drop(nodes);
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.dirs.lock().insert(fh, Arc::new(items));
        Ok(fh)
    }

    fn fsyncdir(&self, ino: u64) -> OpResult<()> {
        self.alive()?;
        let path = self
            .nodes
            .lock()
            .path(ino, &self.root)
            .ok_or(Errno::ENOENT)?;
        File::open(path)?.sync_all()?;
        Ok(())
    }
}
