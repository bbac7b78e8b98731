//! talk: the sample messaging workload that firedrill drills against.
//!
//! - [`server`]: the talk-server HTTP API (send, history, live stream) over JetStream.
//! - [`store`]: the JetStream-backed message store used by the server.
//! - [`nats`]: config rendering and process control for an N-server JetStream cluster.
//! - [`load`]: the talk-load generator, SLI prober and Jepsen-style loss checker.

pub mod duration;
pub mod load;
pub mod nats;
pub mod room;
pub mod server;
pub mod store;
pub mod wire;
