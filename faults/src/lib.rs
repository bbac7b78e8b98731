//! firedrill's fault primitives, shared by the node agent and the lab runner.
//!
//! - [`nft`] / [`rules`]: nftables rule sets in firedrill's own table, one set of chains per
//!   injection, inside any network namespace ([`netns`]), sent over netlink ([`nfnl`]).
//! - [`process`]: freeze, thaw and kill processes.
//! - [`disk`]: take a data directory away, make it read-only, or wipe it.
//! - [`target`]: a fault as asked for and as resolved to what it touches.
//! - [`group`]: the faults of one injection, applied all or none and re-checked together.
//! - [`journal`] and [`fault`]: every fault is recorded on disk before it is applied, so
//!   [`cleanup_all`] can revert everything after a crash.
//!
//! - [`bounded`]: every call that can hang in the kernel runs with a time limit.
//!
//! Everything is typed: no shell, no command strings built from input.

pub mod bounded;
pub mod disk;
pub mod error;
pub mod fault;
pub mod group;
pub mod id;
pub mod journal;
pub mod mountinfo;
pub mod netns;
pub mod nfnl;
pub mod nft;
pub mod process;
pub mod rules;
pub mod target;

pub use error::{Error, Result};
pub use fault::{
    Applied, CleanupReport, Fault, Injector, RevertOutcome, Reverted, Target, cleanup_all,
};
pub use group::GroupApplied;
pub use id::InjectionId;
pub use journal::{Entry, Journal, now_unix};
pub use netns::{Netns, run_in};
pub use process::{PidResult, ProcessOutcome, ProcessRef};
pub use rules::{Cidr, Direction, Ports, Protocol, RuleSet};
