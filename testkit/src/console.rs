//! What a cluster test tells its reader: that it skips, and why (`e2e/run.sh` fails a run
//! that prints `SKIPPED`), and its progress, with the time.

use std::io::Write;

/// The variable `e2e/run.sh` sets once its cluster is up: a test that cannot reach the
/// cluster (or what it needs on it) then fails instead of skipping.
pub const REQUIRE_VAR: &str = "FIREDRILL_E2E_REQUIRE";

/// Whether a skip is a failure here ([`REQUIRE_VAR`] is `1`).
pub fn required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1")
}

/// Says why `test` is skipped, as `SKIPPED <test>: <why>` on stderr directly so the test
/// harness does not swallow it.
///
/// # Panics
///
/// With `FIREDRILL_E2E_REQUIRE=1`, after printing: there a skip is a failure.
pub fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
    assert!(!required(), "{test}: {why} ({REQUIRE_VAR}=1)");
}

/// A progress line with the time on stderr (shown even without `--nocapture` on failure).
pub fn note(what: impl AsRef<str>) {
    let _ = writeln!(
        std::io::stderr(),
        "[{}] {}",
        chrono::Utc::now().format("%H:%M:%S%.3f"),
        what.as_ref()
    );
}
