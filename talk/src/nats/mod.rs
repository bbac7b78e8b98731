//! Running NATS JetStream: config files, server processes, local clusters.
//!
//! The pieces are separable so the lab runner can reuse them with its own
//! addresses (inside network namespaces): [`config`] renders a server's
//! config from a [`config::ServerSpec`], [`process`] finds the binary and
//! owns a running server, and [`cluster`] wires N servers on loopback.

pub mod cluster;
pub mod config;
mod error;
pub mod process;

pub use cluster::{LocalCluster, LocalClusterSpec};
pub use config::{ServerSpec, SyncPolicy};
pub use error::NatsError;
pub use process::{NatsBinary, NatsProcess};
