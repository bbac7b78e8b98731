//! The filesystem's volatile state: per-file page cache entries, open handles, directory
//! listings, and the helpers every operation uses to reach them.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::fs::{fchown, lchown};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileHandle, FileType, INodeNo, Request};
use parking_lot::{Mutex, RwLock};

use crate::nodes::{BackingKey, NodeTable};
use crate::overlay::Overlay;

use super::util::{key_of, system_time};

pub(super) type OpResult<T> = std::result::Result<T, Errno>;

/// Volatile state of one backing file (one inode, whatever its name).
#[derive(Debug, Default)]
pub(super) struct FileState {
    pub(super) overlay: Overlay,
    /// A writable descriptor of the inode, kept while dirty so fsync and shutdown can write
    /// the overlay back even after every handle was closed or the file renamed.
    pub(super) writer: Option<Arc<File>>,
    /// Time of the last dirty write, reported as mtime (the backing mtime lags until fsync).
    pub(super) dirty_mtime: Option<SystemTime>,
    /// Open handles on this inode.
    pub(super) handles: usize,
}

#[derive(Debug)]
pub(super) struct FileEntry {
    pub(super) key: BackingKey,
    pub(super) state: RwLock<FileState>,
}

impl FileEntry {
    pub(super) fn new(key: BackingKey) -> Arc<Self> {
        Arc::new(Self {
            key,
            state: RwLock::new(FileState::default()),
        })
    }
}

#[derive(Debug)]
pub(super) struct Handle {
    pub(super) ino: u64,
    pub(super) file: Arc<File>,
    pub(super) entry: Arc<FileEntry>,
    pub(super) writable: bool,
}

#[derive(Debug)]
pub(super) struct DirItem {
    pub(super) ino: u64,
    pub(super) kind: FileType,
    pub(super) name: OsString,
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) root: PathBuf,
    pub(super) nodes: Mutex<NodeTable>,
    /// Volatile state by backing inode: entries live while dirty or open.
    pub(super) files: Mutex<HashMap<BackingKey, Arc<FileEntry>>>,
    pub(super) handles: Mutex<HashMap<u64, Arc<Handle>>>,
    pub(super) dirs: Mutex<HashMap<u64, Arc<Vec<DirItem>>>>,
    pub(super) next_fh: AtomicU64,
    pub(super) power_lost: AtomicBool,
    pub(super) euid: u32,
    pub(super) egid: u32,
}

impl Shared {
    pub(super) fn alive(&self) -> OpResult<()> {
        if self.power_lost.load(Ordering::SeqCst) {
            Err(Errno::EIO)
        } else {
            Ok(())
        }
    }

    pub(super) fn handle(&self, fh: FileHandle) -> OpResult<Arc<Handle>> {
        self.handles.lock().get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    /// Drops a file's volatile entry once it is clean and closed.
    pub(super) fn forget_if_idle(&self, entry: &Arc<FileEntry>) {
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
    pub(super) fn gone(&self, nodes: &mut NodeTable, key: BackingKey) {
        nodes.unlinked(key);
        self.files.lock().remove(&key);
    }

    pub(super) fn attr_of(&self, ino: u64, meta: &Metadata) -> FileAttr {
        let entry = self.files.lock().get(&key_of(meta)).cloned();
        match entry {
            Some(e) => attr(ino, meta, Some(&e.state.read())),
            None => attr(ino, meta, None),
        }
    }

    /// Gives a new backing object the requester's ownership (we run as root).
    pub(super) fn chown_new(
        &self,
        req: &Request,
        path: &Path,
        file: Option<&File>,
    ) -> io::Result<()> {
        if req.uid() == self.euid && req.gid() == self.egid {
            return Ok(());
        }
        match file {
            Some(f) => fchown(f, Some(req.uid()), Some(req.gid())),
            None => lchown(path, Some(req.uid()), Some(req.gid())),
        }
    }
}

/// Writes one file's dirty extents to its backing file and clears them. Returns the file to
/// fsync (None when nothing was dirty). The fsync itself is left to the caller, outside the
/// lock, so readers and writers of the file are not held up by the disk.
pub(super) fn flush_entry(entry: &FileEntry) -> io::Result<Option<Arc<File>>> {
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

/// FUSE attributes of a backing object, with the logical size and mtime of dirty data.
pub(super) fn attr(ino: u64, meta: &Metadata, dirty: Option<&FileState>) -> FileAttr {
    let mut size = meta.len();
    let mut blocks = meta.blocks();
    let mut mtime = system_time(meta.mtime(), meta.mtime_nsec());
    if let Some(st) = dirty.filter(|st| !st.overlay.is_empty()) {
        size = st.overlay.size(size);
        blocks = blocks.max(size.div_ceil(512));
        if let Some(t) = st.dirty_mtime {
            mtime = mtime.max(t);
        }
    }
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks,
        atime: system_time(meta.atime(), meta.atime_nsec()),
        mtime,
        ctime: system_time(meta.ctime(), meta.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: FileType::from_std(meta.file_type()).unwrap_or(FileType::RegularFile),
        perm: u16::try_from(meta.mode() & 0o7777).unwrap_or(0o644),
        nlink: u32::try_from(meta.nlink()).unwrap_or(u32::MAX),
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: u32::try_from(meta.rdev()).unwrap_or(0),
        blksize: u32::try_from(meta.blksize()).unwrap_or(4096),
        flags: 0,
    }
}
