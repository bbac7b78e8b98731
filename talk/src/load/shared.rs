//! The state a run's tasks share: its clock, the SLI window and the checker's ledger.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::checker::Ledger;
use super::sli::SliWindow;

/// State shared by the generator, the reader and the SLI endpoint.
#[derive(Debug)]
pub struct Shared {
    pub start: Instant,
    pub sli: SliWindow,
    /// Every send and read, compactly: settled messages take no memory of their own, so a
    /// run may last days.
    ledger: Mutex<Ledger>,
}

impl Shared {
    pub(super) fn new(window: Duration) -> Self {
        Self {
            start: Instant::now(),
            sli: SliWindow::new(window),
            ledger: Mutex::new(Ledger::default()),
        }
    }

    /// Microseconds since the run started (the checker's clock).
    pub fn micros(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        super::lock(&self.ledger)
    }
}
