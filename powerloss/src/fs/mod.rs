//! The filesystem: a passthrough over the backing directory in which file contents go to a
//! per-file [`Overlay`] (our "page cache") until fsync, while metadata operations hit the
//! backing directory at once. `adapter` maps FUSE requests onto the operations here.
//!
//! Locks are always taken in this order: nodes, files, handles, dirs, then one file's state.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::nodes::NodeTable;

mod adapter;
mod data;
mod dirs;
mod names;
mod state;
mod util;

use state::{FileEntry, Handle, Shared, flush_entry};
use util::key_of;

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
