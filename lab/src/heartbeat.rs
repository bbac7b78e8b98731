//! The lab's dead man's switch. Whoever drives an experiment (chaosctl's runner) renews the
//! heartbeat of its injection on every pass of its loop; the supervisor reverts an
//! injection whose heartbeat has gone [`TIMEOUT`] without a renewal, so a killed or wedged
//! chaosctl leaves its fault in place for seconds, not until its expiry. One file per
//! injection (`heartbeats/<id>`, the renewal time in unix milliseconds): both sides run on
//! the same machine, so one clock.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{LabError, Result};
use crate::state::{RunDir, write_atomic};

/// Without a renewal this long, the driver is gone and its fault is reverted.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Milliseconds since the epoch, now.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A driver's heartbeat that has run out: the injection and how long ago it was renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lapsed {
    pub injection: String,
    pub silent: Duration,
}

impl RunDir {
    pub fn heartbeats_dir(&self) -> PathBuf {
        self.root().join("heartbeats")
    }

    fn heartbeat_file(&self, injection: &str) -> PathBuf {
        self.heartbeats_dir().join(injection)
    }

    /// Renews the heartbeat of `injection` (the driver, on every pass of its loop).
    pub fn renew_heartbeat(&self, injection: &str) -> Result<()> {
        let dir = self.heartbeats_dir();
        fs::create_dir_all(&dir).map_err(|e| LabError::io(&dir, e))?;
        write_atomic(
            &self.heartbeat_file(injection),
            now_millis().to_string().as_bytes(),
        )
    }

    /// Ends the heartbeat of `injection`: its driver is done with it (everything reverted).
    pub fn clear_heartbeat(&self, injection: &str) {
        let _ = fs::remove_file(self.heartbeat_file(injection));
    }

    /// The heartbeats not renewed within `timeout` of `now` (unix ms). One that cannot be
    /// read counts as silent since forever: nothing proves its driver alive.
    pub fn lapsed_heartbeats(&self, now: u64, timeout: Duration) -> Vec<Lapsed> {
        let Ok(entries) = fs::read_dir(self.heartbeats_dir()) else {
            return vec![];
        };
        let mut lapsed: Vec<Lapsed> = entries
            .flatten()
            .filter_map(|entry| {
                let injection = entry.file_name().to_str()?.to_owned();
                if injection.ends_with(".tmp") {
                    return None;
                }
                let renewed = fs::read_to_string(entry.path())
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                let silent = Duration::from_millis(now.saturating_sub(renewed));
                (silent >= timeout).then_some(Lapsed { injection, silent })
            })
            .collect();
        lapsed.sort_by(|a, b| a.injection.cmp(&b.injection));
        lapsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_lapses_once_it_goes_the_timeout_without_a_renewal() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        assert!(
            run.lapsed_heartbeats(now_millis(), TIMEOUT).is_empty(),
            "none yet"
        );
        run.renew_heartbeat("exp-1").unwrap();
        let now = now_millis();
        assert!(
            run.lapsed_heartbeats(now, TIMEOUT).is_empty(),
            "just renewed"
        );
        let later = now + 10_500;
        let lapsed = run.lapsed_heartbeats(later, TIMEOUT);
        assert_eq!(lapsed.len(), 1);
        assert_eq!(lapsed[0].injection, "exp-1");
        assert!(lapsed[0].silent >= TIMEOUT, "{lapsed:?}");
        run.clear_heartbeat("exp-1");
        assert!(run.lapsed_heartbeats(later, TIMEOUT).is_empty(), "cleared");
    }

    #[test]
    fn an_unreadable_heartbeat_counts_as_lapsed() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        fs::create_dir_all(run.heartbeats_dir()).unwrap();
        fs::write(run.heartbeats_dir().join("exp-2"), "garbage").unwrap();
        let lapsed = run.lapsed_heartbeats(now_millis(), TIMEOUT);
        assert_eq!(lapsed.len(), 1, "{lapsed:?}");
    }
}
