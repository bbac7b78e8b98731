//! `chaosctl game-day`: one command line ([`args`]), one way to load the plan ([`plan`]) and
//! to end with reports and an exit code ([`report`]); run in the lab ([`lab`]) or applied
//! to a cluster and followed there ([`cluster`], with the pure [`follow`]).

pub mod args;
pub mod cluster;
pub mod follow;
pub mod lab;
pub mod plan;
pub mod report;

pub use args::{GameDayArgs, Output};
