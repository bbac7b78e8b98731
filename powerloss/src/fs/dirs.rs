//! Directory handles: listing and fsync of directories.

use std::fs::{self, File};
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use fuser::{Errno, FileType};

use crate::nodes::{BackingKey, ROOT};

use super::state::{DirItem, OpResult, Shared};

impl Shared {
    pub(super) fn opendir(&self, ino: u64) -> OpResult<u64> {
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

    pub(super) fn fsyncdir(&self, ino: u64) -> OpResult<()> {
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
