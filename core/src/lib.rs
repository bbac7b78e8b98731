//! firedrill's core: the API types, manifest validation and the pure experiment engine.
//!
//! Nothing in this crate does I/O. The operator and the lab are thin shells around it.

pub mod api;
pub mod crd;
pub mod engine;
pub mod manifest;
pub mod planner;
pub mod report;
pub mod sequencer;
pub mod yaml;
