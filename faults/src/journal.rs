//! The crash journal: one JSON file per applied fault, written before the fault is applied
//! and removed after it is reverted, so a restarted agent or lab knows what to undo.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::InjectionId;
use crate::process::stat;
use crate::target::{Fault, Target};

/// The entry format this build writes. Entries without a version are version 1 (before the
/// field existed) and read the same; an entry from a newer format is unreadable here, never
/// guessed at.
pub const FORMAT_VERSION: u32 = 1;

fn first_version() -> u32 {
    1
}

/// One applied fault as recorded on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The entry format ([`FORMAT_VERSION`] when written by this build).
    #[serde(default = "first_version")]
    pub version: u32,
    pub id: InjectionId,
    /// The fault kind (also implied by `target`; stored for people reading the files).
    pub kind: String,
    /// The fault as asked for.
    pub fault: Fault,
    /// Everything needed to revert, resolved before applying.
    pub target: Target,
    /// Unix seconds when the entry was written.
    pub created_at: u64,
    /// Unix seconds after which the fault must be reverted even if nobody asks.
    pub expires_at: u64,
}

/// Result of reading the journal: the entries that parsed and the files that did not.
#[derive(Debug, Default)]
pub struct Scan {
    pub entries: Vec<Entry>,
    /// Unreadable or corrupt files; they are left in place for a human to look at.
    pub errors: Vec<Error>,
    /// The injections whose entry exists but could not be read, by the id in the file name,
    /// with why. What such an entry held is not known, so it must never count as reverted.
    pub unreadable: Vec<(InjectionId, String)>,
}

/// A journal directory.
///
/// Reading it stays reading the files (they are the truth: what another process wrote, a
/// file damaged on disk, an entry removed by hand are all seen by the next read), but an
/// entry is parsed again only when its file's bytes changed: a node agent re-reads its
/// whole journal every re-check pass, and parsing was most of what that cost.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
    /// Each file's bytes as last read and the entry they parsed to, by file name; shared
    /// by the clones (the agent's calls run on threads of their own).
    parsed: Arc<Mutex<Parsed>>,
}

/// Entries as parsed, by file name, with the bytes they were parsed from.
type Parsed = BTreeMap<String, (Vec<u8>, Entry)>;

const SUFFIX: &str = ".json";
const TMP_SUFFIX: &str = ".json.tmp";

impl Journal {
    /// Opens (creating it, mode 0700) the journal directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| Error::Journal {
                path: dir.clone(),
                source,
            })?;
        Ok(Self {
            dir,
            parsed: Arc::default(),
        })
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: &InjectionId) -> PathBuf {
        self.dir.join(format!("{id}{SUFFIX}"))
    }

    fn err(&self, path: &Path) -> impl Fn(std::io::Error) -> Error + use<> {
        let path = path.to_path_buf();
        move |source| Error::Journal {
            path: path.clone(),
            source,
        }
    }

    /// Writes `entry` atomically and durably: temp file, fsync, rename, fsync directory.
    /// Once this returns, a crash cannot lose the entry or leave half of it.
    pub fn record(&self, entry: &Entry) -> Result<()> {
        let path = self.path(&entry.id);
        // The writer's pid is in the name so a concurrent `scan` (the lab supervisor's, say)
        // can tell a write in flight from a crashed one.
        let tmp = self
            .dir
            .join(format!(".{}.{}{TMP_SUFFIX}", entry.id, std::process::id()));
        let bytes = serde_json::to_vec_pretty(entry).map_err(|e| Error::Internal(e.to_string()))?;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(self.err(&tmp))?;
        f.write_all(&bytes).map_err(self.err(&tmp))?;
        f.sync_all().map_err(self.err(&tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(self.err(&path))?;
        self.sync_dir()
    }

    /// Removes the entry of `id`; absent is fine.
    pub fn remove(&self, id: &InjectionId) -> Result<()> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(&path)(e)),
        }
    }

    fn sync_dir(&self) -> Result<()> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(self.err(&self.dir))
    }

    /// The entry of `id`, if recorded.
    pub fn get(&self, id: &InjectionId) -> Result<Option<Entry>> {
        let path = self.path(id);
        match fs::read(&path) {
            Ok(bytes) => parse_cached(&mut self.parsed(), &path, bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(&path)(e)),
        }
    }

    fn parsed(&self) -> std::sync::MutexGuard<'_, Parsed> {
        // A panic elsewhere while it was held leaves a map of whole entries: keep using it.
        self.parsed.lock().unwrap_or_else(PoisonError::into_inner)
    }
    /// Reads every entry, collecting (not failing on) corrupt files. Temp files whose writer
    /// is gone come from a crash before the rename, i.e. before the fault was applied, and
    /// are deleted; those of a live writer are a write in flight and are left alone.
    pub fn scan(&self) -> Result<Scan> {
        let mut scan = Scan::default();
        let mut parsed = self.parsed();
        let mut seen = BTreeSet::new();
        for dirent in fs::read_dir(&self.dir).map_err(self.err(&self.dir))? {
            let dirent = dirent.map_err(self.err(&self.dir))?;
            let path = dirent.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.ends_with(TMP_SUFFIX) {
                if writer_alive(name) {
                    continue;
                }
                if let Err(e) = fs::remove_file(&path) {
                    scan.errors.push(self.err(&path)(e));
                }
                continue;
            }
            if !name.ends_with(SUFFIX) {
                continue;
            }
            seen.insert(name.to_owned());
            let read = fs::read(&path)
                .map_err(self.err(&path))
                .and_then(|bytes| parse_cached(&mut parsed, &path, bytes));
            match read {
                Ok(entry) => scan.entries.push(entry),
                Err(e) => {
                    if let Some(Ok(id)) = name.strip_suffix(SUFFIX).map(InjectionId::new) {
                        scan.unreadable.push((id, e.to_string()));
                    }
                    scan.errors.push(e);
                }
            }
        }
        // Files gone (reverted, or removed by hand) are forgotten with them.
        parsed.retain(|name, _| seen.contains(name));
        scan.entries.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(scan)
    }

    /// Every entry; fails on the first corrupt file.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let mut scan = self.scan()?;
        match scan.errors.pop() {
            Some(e) => Err(e),
            None => Ok(scan.entries),
        }
    }

    /// Entries whose expiry is at or before `now` (unix seconds).
    pub fn expired(&self, now: u64) -> Result<Vec<Entry>> {
        Ok(self
            .scan()?
            .entries
            .into_iter()
            .filter(|e| e.expires_at <= now)
            .collect())
    }
}

/// Whether the process that named temp file `name` (`.<id>.<pid>.json.tmp`) still runs.
fn writer_alive(name: &str) -> bool {
    name.strip_suffix(TMP_SUFFIX)
        .and_then(|stem| stem.rsplit_once('.'))
        .and_then(|(_, pid)| pid.parse::<i32>().ok())
        .is_some_and(|pid| pid > 0 && matches!(stat(pid), Ok(Some(_))))
}

/// The entry in `bytes`, read from `path` now: the one parsed before if the bytes are the
/// same, else parsed (and remembered, or forgotten when it does not parse).
fn parse_cached(parsed: &mut Parsed, path: &Path, bytes: Vec<u8>) -> Result<Entry> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    if let Some((seen, entry)) = parsed.get(&name)
        && *seen == bytes
    {
        return Ok(entry.clone());
    }
    match parse(path, &bytes) {
        Ok(entry) => {
            parsed.insert(name, (bytes, entry.clone()));
            Ok(entry)
        }
        Err(e) => {
            parsed.remove(&name);
            Err(e)
        }
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Entry> {
    let entry: Entry = serde_json::from_slice(bytes).map_err(|source| Error::JournalCorrupt {
        path: path.to_path_buf(),
        source,
    })?;
    if entry.version > FORMAT_VERSION {
        return Err(Error::Journal {
            path: path.to_path_buf(),
            source: std::io::Error::other(format!(
                "entry format {} is newer than this build's {FORMAT_VERSION}",
                entry.version
            )),
        });
    }
    // The file name is the id; a mismatch means someone edited or copied it.
    let expected = format!("{}{SUFFIX}", entry.id);
    if path.file_name().and_then(|n| n.to_str()) != Some(expected.as_str()) {
        return Err(Error::Journal {
            path: path.to_path_buf(),
            source: std::io::Error::other(format!("file name does not match id {}", entry.id)),
        });
    }
    Ok(entry)
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A kill of nothing: the smallest entry there is.
    fn entry(id: &str, expires_at: u64) -> Entry {
        let (fault, target) = (
            Fault::Kill { pids: vec![] },
            Target::Kill { processes: vec![] },
        );
        let kind = "kill".to_owned();
        let id = InjectionId::new(id).unwrap();
        let (version, created_at) = (FORMAT_VERSION, 1);
        Entry {
            version,
            id,
            kind,
            fault,
            target,
            created_at,
            expires_at,
        }
    }

    #[test]
    fn an_entry_is_parsed_once_and_read_again_from_its_file_on_every_scan() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        journal.record(&entry("a", 100)).unwrap();
        journal.record(&entry("b", 200)).unwrap();
        assert_eq!(journal.scan().unwrap().entries.len(), 2);
        // What was parsed is kept with the bytes it came from.
        let file = |id: &str| dir.path().join(format!("{id}{SUFFIX}"));
        let cached = |id: &str| journal.parsed().get(&format!("{id}{SUFFIX}")).cloned();
        assert_eq!(cached("a").unwrap().0, fs::read(file("a")).unwrap());
        assert_eq!(cached("a").unwrap().1, entry("a", 100));

        // The files stay the truth. Rewritten by someone else: the new entry.
        let other = Journal::open(dir.path()).unwrap();
        other.record(&entry("a", 300)).unwrap();
        let scan = journal.scan().unwrap();
        assert_eq!(scan.entries[0].expires_at, 300);
        assert_eq!(
            journal.get(&entry("a", 0).id).unwrap().unwrap().expires_at,
            300
        );
        // Damaged in place: unreadable at once, never the entry parsed before.
        fs::write(file("a"), b"{\"id\":").unwrap();
        let scan = journal.scan().unwrap();
        assert_eq!(scan.entries, vec![entry("b", 200)]);
        assert_eq!(scan.unreadable.len(), 1);
        assert!(journal.get(&entry("a", 0).id).is_err());
        assert!(cached("a").is_none());
        // Removed (by hand or by another process): gone, and forgotten.
        fs::remove_file(file("a")).unwrap();
        other.remove(&entry("b", 0).id).unwrap();
        let scan = journal.scan().unwrap();
        assert!(scan.entries.is_empty() && scan.unreadable.is_empty());
        assert!(journal.parsed().is_empty());
    }
}
