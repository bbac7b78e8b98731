//! Reading `/proc/self/mountinfo`, to find and verify the mounts firedrill made (and, in
//! firedrill-powerloss, to see whether a FUSE mount is live). The one parser of that file in
//! the workspace.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
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

    /// Whether this is a FUSE file system (type `fuse` or `fuse.*`, such as
    /// `fuse.powerloss`).
    pub fn is_fuse(&self) -> bool {
        self.fs_type == "fuse" || self.fs_type.starts_with("fuse.")
    }
}

/// Where the kernel shows this process's mount table.
pub const PATH: &str = "/proc/self/mountinfo";

/// The mount table of this process's mount namespace.
pub fn read() -> Result<Vec<Mount>> {
    let path = Path::new(PATH);
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

/// One line of mountinfo text; `None` when it is not one.
pub fn parse_line(line: &str) -> Option<Mount> {
    // id parent major:minor root mount_point options [optional fields...] - fstype source super
    // Fields are separated by single spaces; spaces inside a field are escaped (`\040`), so
    // the lone `-` that ends the optional fields is the first " - ".
    let (left, right) = line.split_once(" - ")?;
    let l: Vec<&str> = left.split(' ').collect();
    let r: Vec<&str> = right.split(' ').collect();
    Some(Mount {
        id: l.first()?.parse().ok()?,
        parent: l.get(1)?.parse().ok()?,
        root: path_of(l.get(3)?),
        mount_point: path_of(l.get(4)?),
        options: (*l.get(5)?).to_string(),
        fs_type: (*r.first()?).to_string(),
        source: String::from_utf8_lossy(&unescape(r.get(1)?)).into_owned(),
    })
}

/// A path field: unescaped, and kept byte for byte (paths need not be UTF-8).
fn path_of(field: &str) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape(field)))
}

/// Undoes the kernel's octal escaping (`\040` for space, `\134` for backslash, ...). A
/// backslash not followed by three octal digits is kept as it is.
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| {
                d.iter()
                    .fold(0u8, |v, c| v.wrapping_mul(8).wrapping_add(c - b'0'))
            });
        match octal {
            Some(escaped) if c == b'\\' => {
                out.push(escaped);
                i += 4;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
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

    // The lines firedrill-powerloss looks for: FUSE mounts, an escaped space, optional
    // fields of several kinds (or none).
    const FUSE_SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/root rw
97 22 0:50 / /tmp/a\\040b rw,nosuid,nodev,relatime shared:60 - fuse.powerloss powerloss:/x rw,user_id=0
98 22 0:51 / /tmp/c rw,relatime - fuse /dev/fuse rw
99 22 0:52 / /tmp/d rw,relatime master:3 - tmpfs tmpfs rw
";

    #[test]
    fn parses_fuse_lines_and_optional_fields() {
        let m: Vec<Mount> = FUSE_SAMPLE
            .lines()
            .map(|l| parse_line(l).unwrap())
            .collect();
        assert_eq!(m[1].mount_point, Path::new("/tmp/a b"));
        assert_eq!(m[1].fs_type, "fuse.powerloss");
        assert_eq!(m[1].source, "powerloss:/x");
        assert!(m[1].is_fuse());
        assert_eq!(m[2].mount_point, Path::new("/tmp/c"));
        assert!(m[2].is_fuse());
        assert_eq!(m[3].fs_type, "tmpfs");
        assert!(!m[3].is_fuse());
        assert!(!m[0].is_fuse());
        assert_eq!(parse_line("not a mount"), None);
        assert_eq!(parse_line(""), None);
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape("/a\\040b\\134c"), b"/a b\\c");
        assert_eq!(unescape("/trailing\\04"), b"/trailing\\04");
        // Not octal digits: kept as written (a sign is not a digit either).
        assert_eq!(unescape("/x\\089\\+12"), b"/x\\089\\+12");
        // Paths that are not UTF-8 survive byte for byte.
        assert_eq!(path_of("/d\\377").as_os_str().as_encoded_bytes(), b"/d\xff");
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
