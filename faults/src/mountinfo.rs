//! Reading `/proc/self/mountinfo`, to find and verify the mounts firedrill made.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub id: u64,
    pub parent: u64,
    /// Directory of the file system that is mounted (for bind mounts, not `/`).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Per-mount options (`rw`/`ro`, ...).
    pub options: String,
    pub fs_type: String,
    pub source: String,
}

impl Mount {
    /// Whether this mount is read-only.
    pub fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

/// The mount table of this process's mount namespace.
pub fn read() -> Result<Vec<Mount>> {
    let path = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(path).map_err(|source| Error::Mount {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .map(|l| {
            parse_line(l).ok_or_else(|| Error::Mount {
                path: path.to_path_buf(),
                source: std::io::Error::other(format!("unparseable line {l:?}")),
            })
        })
        .collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    // id parent major:minor root mount_point options [optional fields...] - fstype source super
    let (left, right) = line.split_once(" - ")?;
    let l: Vec<&str> = left.split(' ').collect();
    let r: Vec<&str> = right.split(' ').collect();
    Some(Mount {
        id: l.first()?.parse().ok()?,
        parent: l.get(1)?.parse().ok()?,
        root: PathBuf::from(unescape(l.get(3)?)),
        mount_point: PathBuf::from(unescape(l.get(4)?)),
        options: (*l.get(5)?).to_string(),
        fs_type: (*r.first()?).to_string(),
        source: unescape(r.get(1)?),
    })
}

/// Undoes the kernel's octal escaping of space, tab, newline and backslash.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).and_then(|d| {
            let d = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(d, 8).ok()
        });
        match (b.get(i), octal) {
            (Some(b'\\'), Some(c)) => {
                out.push(c);
                i += 4;
            }
            (Some(&c), _) => {
                out.push(c);
                i += 1;
            }
            (None, _) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The visible (topmost) mount whose mount point is exactly `point`.
pub fn top_at<'a>(mounts: &'a [Mount], point: &Path) -> Option<&'a Mount> {
    let at: Vec<&Mount> = mounts.iter().filter(|m| m.mount_point == point).collect();
    at.iter()
        .find(|m| !at.iter().any(|other| other.parent == m.id))
        .copied()
}

/// The visible mount containing `path` (the topmost at the longest matching mount point).
/// `path` must be canonical.
pub fn containing<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    let point = path
        .ancestors()
        .find(|a| mounts.iter().any(|m| m.mount_point == *a))?;
    top_at(mounts, point)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:30 / /data rw,relatime shared:2 - ext4 /dev/vdb rw
40 30 0:30 /x /data/a\\040b ro,relatime shared:2 - ext4 /dev/vdb rw
41 30 0:44 / /data/t rw - tmpfs firedrill-e1 rw,size=1024k
42 41 0:30 /t /data/t ro - ext4 /dev/vdb rw";

    fn sample() -> Vec<Mount> {
        SAMPLE.lines().map(|l| parse_line(l).unwrap()).collect()
    }

    #[test]
    fn parses_lines() {
        let m = sample();
        assert_eq!(m[2].mount_point, Path::new("/data/a b"));
        assert_eq!(m[2].root, Path::new("/x"));
        assert!(m[2].read_only());
        assert_eq!(m[3].source, "firedrill-e1");
        assert_eq!(m[3].fs_type, "tmpfs");
        assert!(!m[3].read_only());
    }

    #[test]
    fn finds_topmost_and_containing() {
        let m = sample();
        assert_eq!(top_at(&m, Path::new("/data/t")).unwrap().id, 42);
        assert_eq!(containing(&m, Path::new("/data/q/r")).unwrap().id, 30);
        assert_eq!(containing(&m, Path::new("/data/t/x")).unwrap().id, 42);
        assert_eq!(containing(&m, Path::new("/etc")).unwrap().id, 22);
    }

    #[test]
    fn reads_own_mount_table() {
        assert!(
            read()
                .unwrap()
                .iter()
                .any(|m| m.mount_point == Path::new("/"))
        );
    }
}
