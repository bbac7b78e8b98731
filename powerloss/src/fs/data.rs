//! File contents: open, create, read, write, fsync and release, through the per-file
//! overlay that holds unsynced writes.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use fuser::{Errno, FileAttr, FileHandle, Request};
use nix::fcntl::OFlag;

use super::state::{FileEntry, Handle, OpResult, Shared, attr, flush_entry};
use super::util::{accmode_mask, key_of, read_full_at};

impl Shared {
    pub(super) fn open(&self, ino: u64, flags: i32) -> OpResult<u64> {
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

    pub(super) fn add_handle(
        &self,
        ino: u64,
        file: File,
        entry: Arc<FileEntry>,
        writable: bool,
    ) -> u64 {
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

    pub(super) fn create(
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

    pub(super) fn read(&self, fh: FileHandle, offset: u64, size: u32) -> OpResult<Vec<u8>> {
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

    pub(super) fn write(&self, fh: FileHandle, offset: u64, data: &[u8]) -> OpResult<u32> {
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

    pub(super) fn fsync(&self, fh: FileHandle, datasync: bool) -> OpResult<()> {
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

    pub(super) fn release(&self, fh: FileHandle) {
        let Some(h) = self.handles.lock().remove(&fh.0) else {
            return;
        };
        {
            let mut st = h.entry.state.write();
            st.handles = st.handles.saturating_sub(1);
        }
        self.forget_if_idle(&h.entry);
    }
}
