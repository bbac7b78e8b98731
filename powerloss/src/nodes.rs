//! The FUSE inode table: which backing file each kernel node id stands for.
//!
//! Nodes are located by (parent, name) rather than by a cached path, so renaming a directory
//! moves everything below it for free. Node ids are our own counter, not backing inode
//! numbers: a backing inode number is reused after unlink while the kernel may still hold
//! the old node (an open, unlinked file), and two files must never share a node id.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// The kernel's id of the root directory.
pub const ROOT: u64 = 1;

/// Identity of a backing file: survives rename, unique while the file exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackingKey {
    /// `st_dev` of the backing file.
    pub dev: u64,
    /// `st_ino` of the backing file.
    pub ino: u64,
}

#[derive(Debug)]
struct Node {
    parent: u64,
    name: OsString,
    key: BackingKey,
    /// Lookups the kernel has not forgotten yet.
    nlookup: u64,
    /// Nodes whose parent is this one; a parent outlives its children so paths resolve.
    children: u64,
    /// False once the backing file is unlinked (the node may live on while it is open).
    linked: bool,
}

/// Kernel node ids and where their backing files are.
#[derive(Debug)]
pub struct NodeTable {
    nodes: HashMap<u64, Node>,
    by_key: HashMap<BackingKey, u64>,
    next: u64,
}

impl NodeTable {
    /// A table holding only the root, which maps to the backing directory.
    pub fn new(root: BackingKey) -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            Node {
                parent: ROOT,
                name: OsString::new(),
                key: root,
                nlookup: 1,
                children: 0,
                linked: true,
            },
        );
        Self {
            nodes,
            by_key: HashMap::from([(root, ROOT)]),
            next: ROOT + 1,
        }
    }

    /// Backing path of a linked node, below `root`; None if unknown or unlinked.
    pub fn path(&self, ino: u64, root: &Path) -> Option<PathBuf> {
        let mut names: Vec<&OsStr> = Vec::new();
        let mut cur = ino;
        // A parent chain can't be longer than the table; the bound guards against a cycle.
        for _ in 0..=self.nodes.len() {
            if cur == ROOT {
                let mut path = root.to_path_buf();
                path.extend(names.iter().rev());
                return Some(path);
            }
            let node = self.nodes.get(&cur)?;
            if !node.linked {
                return None;
            }
            names.push(&node.name);
            cur = node.parent;
        }
        None
    }

    /// Backing path of `name` inside directory node `parent`.
    pub fn child_path(&self, parent: u64, name: &OsStr, root: &Path) -> Option<PathBuf> {
        self.path(parent, root).map(|p| p.join(name))
    }

    /// Backing key of a node.
    pub fn key(&self, ino: u64) -> Option<BackingKey> {
        self.nodes.get(&ino).map(|n| n.key)
    }

    /// True if the node exists and its backing file is still linked.
    pub fn is_linked(&self, ino: u64) -> bool {
        self.nodes.get(&ino).is_some_and(|n| n.linked)
    }

    /// The node currently standing for a linked backing file.
    pub fn ino_of(&self, key: BackingKey) -> Option<u64> {
        self.by_key.get(&key).copied()
    }

    /// Parent node of a node (the root is its own parent).
    pub fn parent(&self, ino: u64) -> Option<u64> {
        self.nodes.get(&ino).map(|n| n.parent)
    }

    /// Records a kernel lookup of `name` in `parent` resolving to `key` (also for create,
    /// mkdir, symlink) and returns the node id, counting one more lookup.
    pub fn remember(&mut self, parent: u64, name: &OsStr, key: BackingKey) -> u64 {
        if let Some(ino) = self.ino_of(key)
            && self.nodes.contains_key(&ino)
        {
            if ino != ROOT {
                self.relocate(ino, parent, name);
            }
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.nlookup += 1;
            }
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.nodes.insert(
            ino,
            Node {
                parent,
                name: name.to_os_string(),
                key,
                nlookup: 1,
                children: 0,
                linked: true,
            },
        );
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children += 1;
        }
        self.by_key.insert(key, ino);
        ino
    }

    /// The kernel dropped `n` lookups of a node; it is removed once unused and childless.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.nlookup = node.nlookup.saturating_sub(n);
        }
        self.collect(ino);
    }

    /// The backing file of `key` was renamed to `name` in `parent`.
    pub fn moved(&mut self, key: BackingKey, parent: u64, name: &OsStr) {
        if let Some(ino) = self.ino_of(key)
            && ino != ROOT
        {
            self.relocate(ino, parent, name);
        }
    }

    /// The last link of the backing file of `key` is gone: its node (if any) only serves
    /// open handles from now on, and the key may be reused by a new file.
    pub fn unlinked(&mut self, key: BackingKey) {
        if let Some(ino) = self.by_key.remove(&key)
            && let Some(node) = self.nodes.get_mut(&ino)
        {
            node.linked = false;
        }
    }

    /// Number of nodes, root included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never true: the root is always there.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn relocate(&mut self, ino: u64, parent: u64, name: &OsStr) {
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        let old_parent = node.parent;
        node.name = name.to_os_string();
        if old_parent == parent {
            return;
        }
        node.parent = parent;
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children += 1;
        }
        if let Some(p) = self.nodes.get_mut(&old_parent) {
            p.children = p.children.saturating_sub(1);
        }
        self.collect(old_parent);
    }

    /// Removes `ino` and then its ancestors while they are unused and childless.
    fn collect(&mut self, mut ino: u64) {
        while ino != ROOT {
            let Some(node) = self.nodes.get(&ino) else {
                return;
            };
            if node.nlookup > 0 || node.children > 0 {
                return;
            }
            let (parent, key) = (node.parent, node.key);
            self.nodes.remove(&ino);
            if self.by_key.get(&key) == Some(&ino) {
                self.by_key.remove(&key);
            }
            match self.nodes.get_mut(&parent) {
                Some(p) => p.children = p.children.saturating_sub(1),
                None => return,
            }
            ino = parent;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ino: u64) -> BackingKey {
        BackingKey { dev: 1, ino }
    }

    #[test]
    fn paths_follow_directory_renames() {
        let root = Path::new("/b");
        let mut t = NodeTable::new(key(2));
        let dir = t.remember(ROOT, OsStr::new("d"), key(10));
        let file = t.remember(dir, OsStr::new("f"), key(11));
        assert_eq!(t.path(file, root), Some(PathBuf::from("/b/d/f")));
        t.moved(key(10), ROOT, OsStr::new("e"));
        assert_eq!(t.path(file, root), Some(PathBuf::from("/b/e/f")));
        let other = t.remember(ROOT, OsStr::new("o"), key(12));
        t.moved(key(11), other, OsStr::new("g"));
        assert_eq!(t.path(file, root), Some(PathBuf::from("/b/o/g")));
        assert_eq!(t.path(ROOT, root), Some(PathBuf::from("/b")));
    }

    #[test]
    fn lookup_of_same_key_reuses_node() {
        let mut t = NodeTable::new(key(2));
        let a = t.remember(ROOT, OsStr::new("a"), key(10));
        let b = t.remember(ROOT, OsStr::new("a"), key(10));
        assert_eq!(a, b);
        t.forget(a, 1);
        assert!(t.is_linked(a));
        t.forget(a, 1);
        assert!(!t.is_linked(a));
        assert_eq!(t.ino_of(key(10)), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn unlinked_key_gets_a_fresh_node_when_reused() {
        let root = Path::new("/b");
        let mut t = NodeTable::new(key(2));
        let old = t.remember(ROOT, OsStr::new("a"), key(10));
        t.unlinked(key(10));
        assert_eq!(t.path(old, root), None);
        let new = t.remember(ROOT, OsStr::new("b"), key(10));
        assert_ne!(old, new);
        // Forgetting the old node must not drop the new mapping.
        t.forget(old, 1);
        assert_eq!(t.ino_of(key(10)), Some(new));
    }

    #[test]
    fn parents_outlive_children() {
        let root = Path::new("/b");
        let mut t = NodeTable::new(key(2));
        let d = t.remember(ROOT, OsStr::new("d"), key(10));
        let f = t.remember(d, OsStr::new("f"), key(11));
        t.forget(d, 1);
        assert_eq!(t.path(f, root), Some(PathBuf::from("/b/d/f")));
        t.forget(f, 1);
        assert_eq!(t.len(), 1, "dir collected with its last child");
    }
}
