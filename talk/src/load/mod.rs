//! talk-load: open-loop load, live SLIs and a Jepsen-style loss checker.
//!
//! [`generator`] sends, [`reader`] follows rooms for the continuous loss
//! check, [`sli`] keeps the sliding window behind `GET /sli`, [`drain`]
//! reads everything back at the end and [`checker`] gives the verdict.

pub mod balancer;
pub mod channel;
pub mod checker;
pub mod client;
pub mod config;
pub mod drain;
mod error;
pub mod generator;
pub mod ranges;
pub mod reader;
pub mod run;
pub mod shared;
pub mod sli;
pub mod targets;
pub mod verify;

pub use config::{LoadConfig, Profile, Transport};

/// Locks `m`, ignoring poisoning: a panicked holder cannot leave talk-load's shared state
/// half-updated in a way that matters more than losing the run.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
pub use error::LoadError;
pub use run::{LoadReport, run};
