//! The agent's liveness: its loop stamps a file after every pass (at least every
//! [`crate::run::MAX_SLEEP`]), and the kubelet's exec probe (`firedrill-agent
//! --check-heartbeat`) fails once the stamp is older than [`STALE_AFTER`]. A wedged loop
//! is then restarted, and the new agent reverts from its journal whatever expired.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Where the stamp goes by default: an emptyDir of the agent's pod (not the host).
pub const DEFAULT_PATH: &str = "/run/firedrill-agent/alive";
/// How old the stamp may be: several loop passes (each at most 30 s apart, and no call
/// inside one blocks longer than an nft run's 10 s or an API call's 5 s).
pub const STALE_AFTER: Duration = Duration::from_secs(120);

/// Stamps `path` now (creating its directory).
pub fn beat(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    std::fs::write(path, format!("{now}\n"))
}

/// How old the stamp at `path` is at `now`; an error when it is missing, unreadable or
/// older than `stale_after` (the probe's failure message).
pub fn check(path: &Path, now: SystemTime, stale_after: Duration) -> Result<Duration, String> {
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| format!("no heartbeat at {}: {e}", path.display()))?;
    let age = now.duration_since(modified).unwrap_or_default();
    if age > stale_after {
        return Err(format!(
            "the agent's loop last beat {}s ago (more than {}s): it is stuck",
            age.as_secs(),
            stale_after.as_secs()
        ));
    }
    Ok(age)
}

/// The path, as given or the default.
pub fn path_or_default(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_beat_passes_a_stale_or_missing_one_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("alive");
        assert!(
            check(&path, SystemTime::now(), STALE_AFTER)
                .unwrap_err()
                .contains("no heartbeat")
        );
        beat(&path).unwrap();
        let age = check(&path, SystemTime::now(), STALE_AFTER).unwrap();
        assert!(age < Duration::from_secs(5));
        let later = SystemTime::now() + STALE_AFTER + Duration::from_secs(1);
        assert!(
            check(&path, later, STALE_AFTER)
                .unwrap_err()
                .contains("stuck")
        );
    }
}
