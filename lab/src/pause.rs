//! The lab's kill switch: `chaosctl lab stop-all` pauses the lab and reverts what is in
//! place; while paused no game day starts and a running one reverts its fault and skips
//! the rest; only `chaosctl lab resume` lifts it. The pause is a file in the lab
//! directory, so it outlives every process (and `lab down`).

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use firedrill_faults::{Journal, cleanup_all};
use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::state::{RunDir, to_json, write_atomic};

/// Who paused the lab, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub by: String,
    pub at: DateTime<Utc>,
}

impl Pause {
    /// For messages: "since 12:00:00Z by alice; `chaosctl lab resume` lifts it".
    pub fn describe(&self) -> String {
        format!(
            "paused since {} by {}; `chaosctl lab resume` lifts it",
            self.at.format("%Y-%m-%d %H:%M:%SZ"),
            self.by
        )
    }
}

fn pause_file(run: &RunDir) -> PathBuf {
    run.root().join("paused.json")
}

/// The pause in force, if any.
pub fn paused(run: &RunDir) -> Result<Option<Pause>> {
    let path = pause_file(run);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).or_else(|e| {
            // A damaged pause file still pauses: the switch fails safe.
            Ok(Some(Pause {
                by: format!("unknown (unreadable {}: {e})", path.display()),
                at: DateTime::<Utc>::MIN_UTC,
            }))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LabError::io(&path, e)),
    }
}

/// Lifts the pause; `false` when there was none.
pub fn resume(run: &RunDir) -> Result<bool> {
    let path = pause_file(run);
    match fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(LabError::io(&path, e)),
    }
}

/// What [`stop_all`] did.
#[derive(Debug, Default)]
pub struct Stopped {
    /// Faults the running game day reverted itself after seeing the pause.
    pub reverted_by_runner: usize,
    /// Faults reverted here because no runner did within the wait (it is dead or wedged).
    pub reverted_here: usize,
    /// Holds on killed processes lifted here, so the supervisor restarts them.
    pub holds_lifted: usize,
    /// What could not be reverted (left in the journal).
    pub problems: Vec<String>,
}

/// Pauses the lab, gives a running game day `wait` to revert its fault, then reverts
/// whatever the journal still holds itself.
pub fn stop_all(run: &RunDir, by: &str, wait: Duration) -> Result<Stopped> {
    fs::create_dir_all(run.root()).map_err(|e| LabError::io(run.root(), e))?;
    let pause = Pause {
        by: by.to_owned(),
        at: Utc::now(),
    };
    write_atomic(&pause_file(run), &to_json(&pause)?)?;

    let mut stopped = Stopped::default();
    let journal = Journal::open(run.journal_dir())?;
    let at_first = journal.scan()?.entries.len();
    let deadline = Instant::now() + wait;
    let mut left = at_first;
    while left > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        left = journal.scan()?.entries.len();
    }
    stopped.reverted_by_runner = at_first.saturating_sub(left);
    if left > 0 {
        let report = cleanup_all(&run.journal_dir())?;
        stopped.reverted_here = report.reverted.len();
        stopped.problems = report.errors.iter().map(ToString::to_string).collect();
        for hold in run.holds()? {
            stopped.holds_lifted += run.release_holds(&hold.injection)?;
        }
    }
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_holds_until_resumed_and_a_damaged_one_still_pauses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = RunDir::new(dir.path());
        assert_eq!(paused(&run).expect("read"), None);
        let stopped = stop_all(&run, "alice", Duration::ZERO).expect("stop-all");
        assert_eq!(stopped.reverted_here, 0);
        let pause = paused(&run).expect("read").expect("paused");
        assert_eq!(pause.by, "alice");
        assert!(pause.describe().contains("chaosctl lab resume"));
        assert!(resume(&run).expect("resume"));
        assert!(!resume(&run).expect("again"), "nothing to lift");
        assert_eq!(paused(&run).expect("read"), None);

        fs::write(pause_file(&run), b"{").expect("damage");
        let pause = paused(&run).expect("read").expect("still paused");
        assert!(pause.by.contains("unreadable"), "{pause:?}");
    }
}
