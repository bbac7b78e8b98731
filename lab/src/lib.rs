//! The lab: firedrill's embedded platform. A multi-zone deployment of talk made of network
//! namespaces and real processes on one Linux machine, faults applied to it with the same
//! primitives the cluster agent uses, and the game-day runner that drives the engine over it.

pub mod binaries;
pub mod error;
pub mod heartbeat;
pub mod lifecycle;
pub mod net;
pub mod pause;
pub mod platform;
pub mod render;
pub mod runner;
pub mod state;
pub mod supervisor;
pub mod sweep;
pub mod topology;

pub use error::{LabError, Result};
pub use state::RunDir;
pub use talk::load::Transport as TalkTransport;
pub use topology::{TalkSettings, Topology, Weakness};
